import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cpu, default, tiny
from diffsr_jax import train_lib
from diffsr_jax.models import build_unet
from diffsr_jax.models.unet import depth_to_space, space_to_depth


def n_params(model, hw=64):
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, hw, hw, 3)), jnp.zeros((1,))))
    return sum(x.size for x in jax.tree.leaves(shapes))


def test_paper_config_matches_appendix_d_parameter_count():
    n = n_params(train_lib.build_model(default.get_config()))
    assert abs(n - 35.71e6) / 35.71e6 < 0.10, n


def test_small_configs_are_small():
    assert 1e6 < n_params(train_lib.build_model(cpu.get_config())) < 5e6
    assert n_params(train_lib.build_model(tiny.get_config())) < 50_000


def test_pixel_shuffle_round_trip():
    x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
    np.testing.assert_array_equal(depth_to_space(space_to_depth(x, 2), 2), x)


def test_fully_convolutional_any_divisible_size():
    model = train_lib.build_model(tiny.get_config())
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), jnp.zeros((1,), jnp.int32))
    # Break the zero-initialised head so the output depends on the input.
    params = jax.tree.map(lambda p: p + 0.01, params)
    for h, w in [(8, 8), (16, 24), (40, 12)]:
        x = jax.random.normal(jax.random.key(1), (2, h, w, 3))
        y = model.apply(params, x, jnp.array([3, 70]))
        assert y.shape == x.shape and bool(jnp.all(jnp.isfinite(y)))
    with pytest.raises(ValueError, match="divisible"):
        model.apply(params, jnp.zeros((1, 10, 8, 3)), jnp.zeros((1,), jnp.int32))


def test_timestep_changes_output():
    model = build_unet(base_channels=8, channel_mult=(1, 2), num_res_blocks=1, norm_groups=4)
    params = jax.tree.map(lambda p: p + 0.01, model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), jnp.zeros((1,))))
    x = jnp.ones((2, 8, 8, 3))
    y = model.apply(params, x, jnp.array([1, 900]))
    assert float(jnp.abs(y[0] - y[1]).max()) > 1e-4


def test_unknown_hyperparameter_is_an_error():
    with pytest.raises(ValueError, match="unknown UNet"):
        build_unet(base_channel=8)
