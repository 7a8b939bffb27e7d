"""The banded consistency operators (diffsr_jax.consistency) against dense n × n ones
(tests/dense_consistency.py, the textbook construction with a full pseudo-inverse)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dense_consistency as consistency
from diffsr_jax import consistency as banded

# (hr, lr) per axis: integer and non-integer scales, identity, a single LR pixel
PAIRS = [(256, 95), (100, 37), (64, 32), (30, 11), (17, 17), (20, 1)]
LIFTS = ("pinv", "bicubic")
bsep, dsep = jax.jit(banded.separable), jax.jit(consistency.separable)  # one compile per shape
dproject = jax.jit(consistency.project_onto_lr, static_argnames="iters")


def _padded(hr, pad):
    return hr + (-hr) % 4 if pad else hr


@pytest.mark.parametrize("lift", LIFTS)
@pytest.mark.parametrize("hr,lr,extra", [(hr, lr, e) for hr, lr in PAIRS for e in (0, 3)]
                         + [(30, 11, 7), (100, 37, 7), (3, 2, 5)])
def test_projector_matches_dense(hr, lr, lift, extra):
    # rows padded as for the UNet's stride (reflect; edge when the padding is ≥ hr)
    n = hr + extra
    dense = consistency.axis_operator(hr, lr, lift, n)
    op = banded.axis_operator(hr, lr, lift, n)
    assert op.diags.shape == (n, 2 * op.K + 1)
    np.testing.assert_allclose(banded.to_dense(op.diags), dense.projector, atol=1e-6)
    # D from jax's kernel formula = jax.image.resize's matrix (to float32 kernel rounding)
    np.testing.assert_allclose(op.down.toarray(), dense.down[:, :hr], atol=5e-7)
    if lift == "bicubic":
        np.testing.assert_allclose(op.up.toarray(), consistency.resize_matrix(lr, hr), atol=5e-7)


@pytest.mark.parametrize("lift", LIFTS)
@pytest.mark.parametrize("hw,lr_hw,pad", [((256, 100), (95, 37), True), ((30, 20), (11, 1), True)])
def test_apply_lift_and_degrade_match_dense(hw, lr_hw, pad, lift):
    padded = (_padded(hw[0], pad), _padded(hw[1], pad))
    dense = consistency.image_operator(hw, lr_hw, lift, padded)
    ops = banded.image_operator(hw, lr_hw, lift, padded)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, *padded, 3)), jnp.float32)
    P = [jnp.asarray(o.projector, jnp.float32) for o in dense]
    want = dsep(P[0], P[1], x)
    got = bsep(jnp.asarray(ops[0].diags, jnp.float32), jnp.asarray(ops[1].diags, jnp.float32), x)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # one band per image (B, n, 2K+1), as the dense (B, H, H)
    rows = jnp.stack([jnp.asarray(ops[0].diags, jnp.float32), 0.5 * jnp.asarray(ops[0].diags, jnp.float32)])
    got_b = bsep(rows, jnp.asarray(ops[1].diags, jnp.float32), x)
    np.testing.assert_allclose(got_b[1], 0.5 * want[1], atol=1e-5)
    y = rng.normal(size=(2, *lr_hw, 3)).astype(np.float32)
    np.testing.assert_allclose(banded.lift(ops, y), consistency.lift(dense, jnp.asarray(y)), atol=1e-5)
    np.testing.assert_allclose(banded.degrade(ops, x), consistency.degrade(dense, x), atol=1e-5)
    np.testing.assert_allclose(banded.project_onto_lr(x, y, ops), dproject(x, jnp.asarray(y), dense), atol=1e-4)


@pytest.mark.parametrize("scale", [2.0, 2.7, 4.0, 8.0])
def test_final_projection_is_exact(scale):
    rng = np.random.default_rng(2)
    hw = (96, 72)
    lr_hw = (round(hw[0] / scale), round(hw[1] / scale))
    x = jnp.asarray(rng.normal(size=(1, *hw, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(1, *lr_hw, 3)), jnp.float32)
    ops = banded.image_operator(hw, lr_hw, "pinv")
    out = banded.project_onto_lr(x, y, ops)
    assert np.abs(banded.degrade(ops, out) - y).max() <= 1e-5 < np.abs(banded.degrade(ops, x) - y).max()
    # the same step through the banded projector: x + (L y − P x), float32
    ref = jnp.asarray(banded.lift(ops, y))
    step = banded.correct(x, ref, ops[0].diags.astype(np.float32), ops[1].diags.astype(np.float32), 1.0)
    assert np.abs(banded.degrade(ops, step) - y).max() <= 1e-5


def test_final_projection_matches_dense():
    rng = np.random.default_rng(3)
    hw, lr_hw = (80, 72), (30, 27)
    x = jnp.asarray(rng.normal(size=(1, *hw, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(1, *lr_hw, 3)), jnp.float32)
    for lift, lam, iters in (("pinv", 1.0, 1), ("bicubic", 0.7, 3)):
        ops, dense = banded.image_operator(hw, lr_hw, lift), consistency.image_operator(hw, lr_hw, lift)
        want = dproject(x, y, dense, lam, iters=iters)
        np.testing.assert_allclose(banded.project_onto_lr(x, y, ops, lam, iters), want, atol=1e-4)
    f = jax.jit(lambda x0, lam: banded.correct(x0, x, ops[0].diags.astype(np.float32),
                                               ops[1].diags.astype(np.float32), lam))
    np.testing.assert_allclose(f(x, 0.0), x)


@pytest.mark.parametrize("lift", LIFTS)
def test_tile_operator_matches_dense(lift):
    hw, lr_hw, padded = (90, 70), (33, 26), (92, 72)
    dense = consistency.image_operator(hw, lr_hw, lift, padded)
    ops = banded.image_operator(hw, lr_hw, lift, padded)
    bands = (ops[0].diags, ops[1].diags)
    for y0, x0, th, tw in [(0, 0, 32, 32), (30, 20, 32, 24), (60, 40, 32, 32), (0, 0, 92, 72), (10, 5, 8, 8)]:
        rows, cols = banded.tile_operator(bands, y0, x0, th, tw)
        want = consistency.tile_operator((dense[0].projector, dense[1].projector), y0, x0, th, tw)
        assert rows.shape == (th, 2 * min(ops[0].K, th - 1) + 1) and rows.dtype == np.float32
        np.testing.assert_allclose(banded.to_dense(rows), want[0], atol=2e-6)
        np.testing.assert_allclose(banded.to_dense(cols), want[1], atol=2e-6)
    # a batch of tiles (B, n, 2K+1), applied as the dense (B, n, n)
    tiles = [banded.tile_operator(bands, y0, x0, 32, 32) for y0, x0 in ((0, 0), (30, 20), (60, 40))]
    dtiles = [consistency.tile_operator((dense[0].projector, dense[1].projector), y0, x0, 32, 32)
              for y0, x0 in ((0, 0), (30, 20), (60, 40))]
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 32, 32, 3)), jnp.float32)
    stack = lambda ts, k: jnp.asarray(np.stack([t[k] for t in ts]))
    np.testing.assert_allclose(bsep(stack(tiles, 0), stack(tiles, 1), x),
                               dsep(stack(dtiles, 0), stack(dtiles, 1), x), atol=1e-5)


def test_widen_keeps_the_operator():
    op = banded.axis_operator(50, 20)
    wide = banded.widen(op.diags, op.K + 5)
    np.testing.assert_array_equal(banded.to_dense(wide), banded.to_dense(op.diags))
    with pytest.raises(ValueError):
        banded.widen(op.diags, op.K - 1)


def test_long_axis_is_stored_as_a_band():
    op = banded.axis_operator(16000, 8000, "pinv", padded=16004)
    assert op.diags.shape[0] == 16004 and op.diags.shape[1] == 2 * op.K + 1 and op.K <= 64
    assert op.down.nnz <= 8000 * 12
    b = banded.axis_operator(16000, 8000, "bicubic")
    assert b.diags.shape == (16000, 2 * b.K + 1) and b.K <= 16
    y = np.random.default_rng(0).normal(size=(1, 8000, 2, 1))
    ops = (op, banded.axis_operator(4, 2))
    assert banded.lift(ops, y).shape == (1, 16004, 4, 1)


def test_bad_arguments():
    with pytest.raises(ValueError):
        banded.axis_operator(10, 20)
    with pytest.raises(ValueError):
        banded.axis_operator(10, 5, "bogus")
    with pytest.raises(ValueError):
        banded.axis_operator(10, 5, padded=8)
