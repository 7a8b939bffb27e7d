"""Geometric self-ensemble of the ε-model (diffsr_jax.ensemble) and its plumbing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffsr_jax import ensemble


def _lopsided(x, t):
    """Not equivariant to any flip or transpose: mixes in a ramp, a shifted copy and t."""
    h, w = x.shape[1:3]
    ramp = jnp.linspace(0.0, 1.0, h)[None, :, None, None] * jnp.linspace(1.0, 2.0, w)[None, None, :, None]
    return x * ramp + 0.3 * jnp.roll(x, 1, axis=2) + t[:, None, None, None] / 100.0


def _group(x, m):
    return ensemble._forward(x, *m)


@pytest.mark.parametrize("bad", [0, 3, 5, 16, -2, 2.5, True, "8"])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="self-ensemble size"):
        ensemble.self_ensemble(_lopsided, bad)


def test_size_one_is_the_model_itself():
    assert ensemble.self_ensemble(_lopsided, 1) is _lopsided


def test_members_form_the_dihedral_group():
    # 8 distinct transforms of a non-symmetric square, each undone exactly by its inverse.
    x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
    images = {np.asarray(_group(x, m)).tobytes() for m in ensemble.members(8)}
    assert len(images) == 8
    for m in ensemble.members(8):
        np.testing.assert_array_equal(ensemble._inverse(_group(x, m), *m), x)
    # the first four keep H x W (they run as one batch even for non-square tiles)
    assert all(not m[0] for m in ensemble.members(4))


@pytest.mark.parametrize("n", [2, 4, 8])
def test_equivariant_model_is_unchanged(n):
    # A per-pixel function commutes with every flip/transpose: averaging changes nothing.
    x = jax.random.normal(jax.random.key(0), (2, 6, 10, 3))
    t = jnp.array([5, 50], jnp.int32)
    f = lambda x, t: jnp.tanh(x) * (1.0 + t[:, None, None, None] / 10.0)
    np.testing.assert_allclose(ensemble.self_ensemble(f, n)(x, t), f(x, t), rtol=1e-6, atol=1e-6)


def test_pair_is_the_mean_of_the_model_and_its_mirrored_run():
    x = jax.random.normal(jax.random.key(1), (2, 6, 8, 3))
    t = jnp.array([3, 7], jnp.int32)
    by_hand = 0.5 * (_lopsided(x, t) + _lopsided(x[:, :, ::-1], t)[:, :, ::-1])
    np.testing.assert_allclose(ensemble.self_ensemble(_lopsided, 2)(x, t), by_hand, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [4, 8])
def test_full_averages_are_equivariant(n):
    # Averaging over a group makes any model equivariant to that group: E(g x) = g E(x). A wrong
    # inverse (or a member applied to the wrong axis) breaks this.
    x = jax.random.normal(jax.random.key(2), (1, 6, 6, 3))
    t = jnp.array([11], jnp.int32)
    avg = ensemble.self_ensemble(_lopsided, n)
    base = avg(x, t)
    assert not np.allclose(base, _lopsided(x, t), atol=1e-3)  # the test model is really lopsided
    for m in ensemble.members(n):
        np.testing.assert_allclose(avg(_group(x, m), t), _group(base, m), rtol=1e-5, atol=1e-5)


def test_non_square_batches_keep_their_shape_under_jit():
    x = jax.random.normal(jax.random.key(3), (3, 4, 12, 3))
    t = jnp.array([1, 2, 3], jnp.int32)
    out = jax.jit(ensemble.self_ensemble(_lopsided, 8))(x, t)
    assert out.shape == x.shape and np.all(np.isfinite(out))


def test_pipeline_and_api_pass_the_size_through(model):
    from diffsr_jax import api, pipeline

    x_t = jax.random.normal(jax.random.key(4), (1, 16, 24, 3))
    t = jnp.array([model.num_timesteps // 3], jnp.int32)
    one = pipeline.restore_batch_jit(model.model, model.params, model.schedule, x_t, t, jax.random.key(5),
                                     num_steps=2)
    eight = pipeline.restore_batch_jit(model.model, model.params, model.schedule, x_t, t, jax.random.key(5),
                                       num_steps=2, self_ensemble=8)
    assert eight.shape == one.shape and not np.allclose(one, eight, atol=1e-4)

    img = np.random.default_rng(0).uniform(size=(8, 12, 3)).astype(np.float32)
    out, info = api.upscale_array(img, (16, 24), model=model, noise=("fraction", 0.3), self_ensemble=2)
    assert out.shape == (16, 24, 3) and info["self_ensemble"] == 2
    _, info = api.upscale_array(img, (16, 24), model=model, noise=("fraction", 0.3))
    assert info["self_ensemble"] == 1
    with pytest.raises(ValueError, match="self-ensemble size"):
        api.upscale_array(img, (16, 24), model=model, noise=("fraction", 0.3), self_ensemble=3)


def test_sharded_restore_passes_the_size_through(model):
    from diffsr_jax import pipeline, sharding

    mesh = sharding.make_mesh()
    x_t = np.asarray(jax.random.normal(jax.random.key(6), (2, 16, 16, 3)))
    t = model.num_timesteps // 3
    want = pipeline.restore_batch_jit(model.model, model.params, model.schedule, jnp.asarray(x_t),
                                      jnp.full((2,), t, jnp.int32), jax.random.key(7), num_steps=2, self_ensemble=4)
    got = pipeline.restore_batch_on_mesh(mesh, model.model, model.params, model.schedule, x_t, t, jax.random.key(7),
                                 num_steps=2, self_ensemble=4)
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-4, atol=1e-4)
