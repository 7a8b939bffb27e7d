"""models/conv.py: the nn.Conv drop-in and its one-GEMM weight gradient."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from diffsr_jax import train_lib
from diffsr_jax.models.conv import Conv, conv_gemm_weight_grad
from conftest import random_params


# Odd sizes exercise "SAME"'s asymmetric padding (the extra pixel goes to the end).
CASES = [((2, 7, 9, 3), (3, 3), (1, 1), 5), ((1, 7, 8, 4), (3, 3), (2, 2), 6),
         ((2, 6, 6, 5), (1, 1), (1, 1), 3)]


@pytest.mark.parametrize("shape,kernel,strides,features", CASES)
def test_forward_equals_flax_conv_with_the_same_params(shape, kernel, strides, features):
    x = jax.random.normal(jax.random.key(0), shape)
    ref = nn.Conv(features, kernel, strides=strides)
    params = ref.init(jax.random.key(1), x)
    params = jax.tree.map(lambda p: p + 0.1, params)  # non-zero bias too
    for weight_grad in ("xla", "gemm"):
        ours = Conv(features, kernel, strides=strides, weight_grad=weight_grad)
        assert jax.tree.structure(ours.init(jax.random.key(1), x)) == jax.tree.structure(params)
        np.testing.assert_allclose(jax.jit(ours.apply)(params, x), jax.jit(ref.apply)(params, x),
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape,kernel,strides,features", CASES)
def test_gemm_weight_gradient_equals_autodiff(shape, kernel, strides, features):
    x = jax.random.normal(jax.random.key(0), shape)
    k = jax.random.normal(jax.random.key(1), (*kernel, shape[-1], features))
    plain = lambda x, k: jax.lax.conv_general_dilated(x, k, strides, "SAME",
                                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
    w = jax.random.normal(jax.random.key(2), plain(x, k).shape)  # a random cotangent
    loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)) * w)
    gx, gk = jax.jit(jax.grad(loss(plain), argnums=(0, 1)))(x, k)
    ox, ok = jax.jit(jax.grad(loss(lambda x, k: conv_gemm_weight_grad(x, k, strides)), argnums=(0, 1)))(x, k)
    np.testing.assert_allclose(ok, gk, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ox, gx, rtol=1e-4, atol=1e-4)
    assert float(jnp.abs(gk).max()) > 0.1  # the comparison is not between zeros


def test_unet_gradients_agree_between_weight_grad_modes():
    c = tiny.get_config()
    models = {}
    for mode in ("xla", "gemm"):
        c.train.conv_weight_grad = mode
        models[mode] = train_lib.build_model(c)
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    t = jnp.array([10, 500])
    # Non-zero everywhere (zero-initialised output convs would make most gradients vanish).
    params = {"params": random_params(models["xla"])}
    shapes = {m: jax.eval_shape(lambda: models[m].init(jax.random.key(1), x, t)) for m in models}
    assert jax.tree.structure(shapes["gemm"]) == jax.tree.structure(params)
    assert jax.tree.structure(shapes["xla"]) == jax.tree.structure(params)
    outs = {m: jax.jit(models[m].apply)(params, x, t) for m in models}
    np.testing.assert_array_equal(outs["gemm"], outs["xla"])  # same forward program
    grads = {m: jax.jit(jax.grad(lambda p: jnp.mean(models[m].apply(p, x, t) ** 2)))(params) for m in models}
    for a, b in zip(jax.tree.leaves(grads["gemm"]), jax.tree.leaves(grads["xla"])):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


def test_unknown_weight_grad_is_an_error():
    with pytest.raises(ValueError, match="weight_grad"):
        Conv(3, (3, 3), weight_grad="fft").init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))


@pytest.mark.parametrize("weight_grad", ["xla", "gemm"])
@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 4, 4, 6)])
def test_upsample2_equals_conv_of_the_nearest_upsampled_input(weight_grad, shape):
    x = jax.random.normal(jax.random.key(0), shape)
    up = lambda a: jnp.repeat(jnp.repeat(a, 2, axis=1), 2, axis=2)
    ref = nn.Conv(4, (3, 3))
    params = jax.tree.map(lambda p: p + 0.1, ref.init(jax.random.key(1), up(x)))
    ours = Conv(4, (3, 3), upsample=2, weight_grad=weight_grad)
    assert jax.tree.structure(ours.init(jax.random.key(1), x)) == jax.tree.structure(params)
    np.testing.assert_allclose(jax.jit(ours.apply)(params, x), jax.jit(ref.apply)(params, up(x)),
                               rtol=1e-5, atol=1e-5)
    w = jax.random.normal(jax.random.key(2), (shape[0], 2 * shape[1], 2 * shape[2], 4))
    loss = lambda f: lambda p, x: jnp.sum(jnp.sin(f(p, x)) * w)
    g_ref = jax.jit(jax.grad(loss(lambda p, x: ref.apply(p, up(x))), argnums=(0, 1)))(params, x)
    g_ours = jax.jit(jax.grad(loss(ours.apply), argnums=(0, 1)))(params, x)
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert float(jnp.abs(g_ref[0]["params"]["kernel"]).max()) > 0.1


def test_upsample2_needs_a_3x3_stride_1_kernel():
    with pytest.raises(ValueError, match="3×3"):
        Conv(3, (1, 1), upsample=2).init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="upsample"):
        Conv(3, (3, 3), upsample=3).init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
