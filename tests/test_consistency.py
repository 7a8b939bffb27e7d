import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffsr_jax import api, consistency, pipeline


def smooth_image(h, w, seed=0):
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    # Kept inside [0.15, 0.85]: a consistent HR image must be able to exist within [0, 1].
    img = np.stack([yy, xx, 0.5 + 0.4 * np.sin(8 * xx * yy)], -1) + 0.05 * rng.normal(size=(h, w, 3))
    return (0.15 + 0.7 * np.clip(img, 0, 1)).astype(np.float32)


def downscale(x01, lr_hw):
    return np.asarray(jax.image.resize(jnp.asarray(x01), (*lr_hw, 3), "bicubic", antialias=True))


@pytest.mark.parametrize("hr,lr", [(32, 16), (27, 10), (40, 10), (17, 17)])
def test_operator_matches_resize(hr, lr):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, hr, hr + 3, 3)), jnp.float32)
    lr_w = max(1, round((hr + 3) * lr / hr))
    ops = consistency.image_operator((hr, hr + 3), (lr, lr_w))
    ref = jax.image.resize(x, (2, lr, lr_w, 3), "bicubic", antialias=True)
    np.testing.assert_allclose(consistency.degrade(ops, x), ref, atol=2e-5)


def test_projection_is_exact_for_identity_operator():
    # Same size in and out: A = I, so one step with λ = 1 returns the input exactly.
    rng = np.random.default_rng(1)
    x, y = (jnp.asarray(rng.normal(size=(1, 12, 9, 3)), jnp.float32) for _ in range(2))
    for lift in consistency.LIFTS:
        ops = consistency.image_operator((12, 9), (12, 9), lift)
        np.testing.assert_allclose(consistency.project_onto_lr(x, y, ops), y, atol=1e-5)
        P = consistency.guide_bands(ops)
        np.testing.assert_allclose(consistency.correct(x, consistency.lift(ops, y), *P, 1.0), y, atol=1e-5)


@pytest.mark.parametrize("scale", [2.0, 2.7, 4.0])
def test_pinv_projection_is_exact_at_any_scale(scale):
    rng = np.random.default_rng(2)
    hr_hw, lr_hw = (40, 36), (round(40 / scale), round(36 / scale))
    x = jnp.asarray(rng.normal(size=(1, *hr_hw, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(1, *lr_hw, 3)), jnp.float32)
    ops = consistency.image_operator(hr_hw, lr_hw, "pinv")
    before = float(np.abs(consistency.degrade(ops, x) - y).max())
    after = float(np.abs(consistency.degrade(ops, consistency.project_onto_lr(x, y, ops)) - y).max())
    assert after < 1e-4 < before
    # Iterated bicubic back-projection converges towards the same constraint.
    bops = consistency.image_operator(hr_hw, lr_hw, "bicubic")
    errs = [float(np.abs(consistency.degrade(bops, consistency.project_onto_lr(x, y, bops, 1.0, n)) - y).mean())
            for n in (1, 4, 16)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.05 * before


def test_strength_zero_is_identity_and_traced():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32)
    ops = consistency.image_operator((8, 8), (4, 4))
    P = consistency.guide_bands(ops)
    f = jax.jit(lambda lam: consistency.correct(x, jnp.zeros_like(x), *P, lam))
    np.testing.assert_allclose(f(jnp.float32(0.0)), x)
    assert not np.allclose(f(jnp.float32(1.0)), x)
    assert f._cache_size() == 1


def test_tile_operator_of_whole_image_is_global_projector():
    ops = consistency.image_operator((24, 20), (9, 7))
    rows, cols = consistency.tile_operator(consistency.guide_bands(ops), 0, 0, 24, 20)
    np.testing.assert_allclose(consistency.to_dense(rows), consistency.to_dense(ops[0].diags), atol=1e-6)
    np.testing.assert_allclose(consistency.to_dense(cols), consistency.to_dense(ops[1].diags), atol=1e-6)


def test_guide_bands_round_their_width_so_nearby_scales_share_a_program():
    widths = {consistency.guide_bands(consistency.image_operator((256, 256), (n, n)))[0].shape[1]
              for n in (120, 125, 128)}  # 2.13x .. 2x: K 28..31 → one width
    assert widths == {2 * 32 + 1}


@pytest.mark.parametrize("lr_hw,out_hw", [((16, 16), (32, 32)), ((9, 10), (24, 27)), ((11, 11), (44, 44))])
def test_consistent_output_downscales_to_input(model, lr_hw, out_hw):  # 2×, 2.7×, 4×
    img = smooth_image(*lr_hw)
    errs = {}
    for lam in (0.0, 1.0):
        out, info = api.upscale_array(img, out_hw, model=model, degradation="clean", noise=("fraction", 0.5), steps=3,
                                      consistency=lam, colour_fix="none", tile=0)
        errs[lam] = np.sqrt(np.mean((downscale(out, lr_hw) - img) ** 2))
        assert info["consistency"] == lam
    assert errs[1.0] < 0.01, errs            # only clipping to [0, 1] can leave a residual
    assert errs[1.0] < 0.2 * errs[0.0], errs


def test_consistent_tiles_are_consistent(model):
    img = smooth_image(20, 18)
    out, info = api.upscale_array(img, (54, 48), model=model, degradation="clean", noise=("fraction", 0.5), steps=2,
                                  consistency=1.0, tile=24, tile_overlap=8, colour_fix="none")
    assert info["tile"] == 24
    assert np.sqrt(np.mean((downscale(out, img.shape[:2]) - img) ** 2)) < 0.01


def test_tiles_run_the_asked_number_of_consistency_iterations(model, monkeypatch):
    # Regression: the tile loop used to reset consistency_iters to 1 inside every tile's sampler
    # (only the final whole-image projection saw the asked count).
    from diffsr_jax import pipeline

    seen = []
    real = pipeline.restore_batch_jit

    def spy(*args, **kwargs):
        seen.append(kwargs["guide_iters"])
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "restore_batch_jit", spy)
    api.upscale_array(smooth_image(10, 10), (32, 32), model=model, degradation="clean", noise=("fraction", 0.5), steps=1,
                      consistency=1.0, lift="bicubic", consistency_iters=3, tile=16, tile_overlap=4)
    assert seen and set(seen) == {3}


def test_consistency_inside_sampler_matters(model):
    # The per-step correction, not only the final projection, changes the result.
    img = smooth_image(12, 12)
    a, _ = api.upscale_array(img, (24, 24), model=model, degradation="clean", noise=("fraction", 0.6), steps=4, consistency=1.0, tile=0)
    lr = jnp.asarray(img[None] * 2 - 1)
    plain, _ = api.upscale_array(img, (24, 24), model=model, degradation="clean", noise=("fraction", 0.6), steps=4, consistency=0.0,
                                 tile=0, colour_fix="none")
    ops = consistency.image_operator((24, 24), (12, 12))
    post = (np.asarray(consistency.project_onto_lr(jnp.asarray(plain[None] * 2 - 1), lr, ops))[0] + 1) / 2
    assert np.abs(a - np.clip(post, 0, 1)).max() > 1e-3


def test_diffsr_from_lr_consistency_is_jittable_over_strength(model):
    lr = jnp.asarray(smooth_image(8, 8)[None] * 2 - 1)
    f = jax.jit(lambda lam, t: pipeline.diffsr_from_lr(model.model, model.params, model.schedule, lr, t,
                                                       jax.random.key(0), out_hw=(16, 16), num_steps=2,
                                                       consistency_strength=lam))
    outs = [f(jnp.float32(lam), jnp.int32(t)) for lam, t in [(0.0, 40), (1.0, 40), (1.0, 70)]]
    assert f._cache_size() == 1
    ops = consistency.image_operator((16, 16), (8, 8))
    err = lambda o: float(np.abs(consistency.degrade(ops, jnp.clip(o, -1, 1)) - lr).mean())
    assert err(outs[1]) < 0.2 * err(outs[0])


@pytest.mark.parametrize("method", ["wavelet", "adain"])
def test_colour_fix_preserves_mean_colour(method):
    rng = np.random.default_rng(4)
    ref = jnp.asarray(smooth_image(32, 24)[None] * 2 - 1)
    out = jnp.asarray(np.clip(np.asarray(ref) * 0.7 + 0.3 + 0.1 * rng.normal(size=ref.shape), -1, 1), jnp.float32)
    fixed = consistency.colour_fix(out, ref, method)
    before = np.abs(np.asarray(out.mean((1, 2)) - ref.mean((1, 2)))).max()
    after = np.abs(np.asarray(fixed.mean((1, 2)) - ref.mean((1, 2)))).max()
    assert after < 0.02 * before and after < 5e-3, (before, after)
    # Fine detail of the output survives: the change is a smooth field.
    if method == "wavelet":
        change = np.asarray(fixed - out)[0]
        assert np.abs(np.diff(change, axis=0)).max() < 0.25 * np.abs(np.diff(np.asarray(out)[0], axis=0)).max()


def test_bad_options_fail_clearly(model):
    img = smooth_image(8, 8)
    with pytest.raises(ValueError, match="consistency strength"):
        api.upscale_array(img, (16, 16), model=model, consistency=1.5)
    with pytest.raises(ValueError, match="lift"):
        api.upscale_array(img, (16, 16), model=model, consistency=1.0, lift="nearest")
    with pytest.raises(ValueError, match="colour fix"):
        api.upscale_array(img, (16, 16), model=model, colour_fix="sepia")


def test_sweep_consistency_mode_is_consistent_and_traced_once(model):
    from diffsr_jax import sweep

    hr = np.stack([smooth_image(24, 24, seed=i) for i in range(2)])
    sweep.TRACES["sweep"] = 0
    res = {lam: sweep.sweep(model.model, model.params, model.schedule, hr, [2.0, 3.0], [0, 30, 60], jax.random.key(0),
                          2, chunk=4, consistency=lam, return_images=True) for lam in (0.0, 1.0)}
    for si, s in enumerate([2.0, 3.0]):
        lr_hw = (round(24 / s),) * 2
        lr = np.stack([downscale(h, lr_hw) for h in hr])
        resid = lambda imgs: np.sqrt(np.mean((np.stack([downscale(o, lr_hw) for o in imgs]) - lr) ** 2))
        for ti in range(3):
            assert resid(res[1.0].images[si, ti]) < (1e-4 if ti == 0 else 0.02)  # clipping to [0, 1] only
            if ti > 0:
                assert resid(res[1.0].images[si, ti]) < 0.2 * resid(res[0.0].images[si, ti])
    assert sweep.TRACES["sweep"] == 2  # plain and consistent: one trace each, for all scales and t
