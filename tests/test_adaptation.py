"""Degradation-aware inference (diffsr_jax.adaptation): clean inputs keep today's pipeline, noisy
ones get weaker consistency, and the noise level is data to the compiled program."""

import jax
import numpy as np
import pytest

from diffsr_jax import adaptation, api, consistency, noise_table, pipeline
from diffsr_jax.degradation import Degradation


def photo(h, w, seed=0):
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([yy, xx, 0.5 + 0.4 * np.sin(9 * xx * yy)], -1)
    return (0.15 + 0.7 * np.clip(img, 0, 1)).astype(np.float32)


def noisy(img, sigma255, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(np.round((img + rng.normal(0, sigma255 / 255, img.shape)) * 255) / 255, 0, 1).astype(np.float32)


def test_clean_input_gives_todays_output_and_noise_lowers_the_consistency(model):
    img = photo(16, 16)
    auto, info = api.upscale_array(img, (32, 32), model=model, steps=2)            # degradation="auto"
    clean, clean_info = api.upscale_array(img, (32, 32), model=model, steps=2, degradation="clean")
    assert info["degradation"]["source"] == "estimated" and clean_info["degradation"] is None
    assert info["response"]["effective_sigma_255"] == 0.0 and info["response"]["final_consistency"] == 1.0
    assert np.abs(auto - clean).max() < 1e-6
    noisy_img = noisy(img, 15)
    _, ninfo = api.upscale_array(noisy_img, (32, 32), model=model, steps=2)
    assert ninfo["degradation"]["noise_sigma_255"] > 10 and ninfo["response"]["effective_sigma_255"] > 8
    assert 0 < ninfo["response"]["final_consistency"] < 0.5
    given, ginfo = api.upscale_array(noisy_img, (32, 32), model=model, steps=2, degradation="noise=15")
    assert ginfo["degradation"]["source"] == "given" and ginfo["response"]["effective_sigma_255"] == 15.0


def test_an_estimated_blur_is_reported_with_how_to_use_it_but_not_acted_on(model):
    from scipy import ndimage as ndi

    x = ndi.gaussian_filter(np.random.default_rng(0).uniform(size=(48, 48, 3)), (1.0, 1.0, 0))
    x = (np.round((x - x.min()) / (x.max() - x.min()) * 255) / 255).astype(np.float32)
    out, info = api.upscale_array(x, (96, 96), model=model, steps=2)
    blur = info["degradation"]["blur_sigma"]
    assert blur > 0.3 and info["response"]["blur"] == 0.0 and info["response"]["kernel"] == "bicubic"
    assert f"blur={blur:g} would sharpen" in info["degradation_text"]
    _, told = api.upscale_array(x, (96, 96), model=model, steps=2, degradation=f"blur={blur:g}")
    assert told["response"]["kernel"] == "gaussian" and "would sharpen" not in told["degradation_text"]


def test_noise_weight_is_one_for_clean_input_and_falls_with_noise_and_step():
    from diffsr_jax.schedules import make_schedule

    abar = np.asarray(make_schedule("linear", 1000).alphas_cumprod)
    t = np.array([10, 50, 200])
    np.testing.assert_array_equal(consistency.noise_weight(abar, t, 0.0), 1.0)
    w = np.asarray(consistency.noise_weight(abar, t, 0.2))
    assert np.all(np.diff(w) > 0) and 0 < w[0] < w[-1] < 1          # less weight near the end
    assert np.all(np.asarray(consistency.noise_weight(abar, t, 0.4)) < w)


def test_the_noise_level_is_traced_one_program_for_every_sigma(model):
    img = photo(16, 16)
    calls = pipeline.restore_batch_jit._cache_size()
    for spec in ("noise=5", "noise=10", "noise=20,jpeg=60"):
        api.upscale_array(img, (32, 32), model=model, steps=2, degradation=spec, noise="t=40")
    assert pipeline.restore_batch_jit._cache_size() - calls <= 1


def test_response_dead_zone_jpeg_and_kernel():
    est = Degradation(2.0 / 255, None, "unknown", 0.9, "estimated")
    assert adaptation.response(est) == adaptation.CLEAN                 # texture, not noise; estimated blur ignored
    r = adaptation.response(Degradation(5.0 / 255, 75, "area", 0.0, "given"))
    assert r.kernel == "area" and r.sigma == pytest.approx(np.hypot(5.0, 7.5) / 255, rel=1e-6)
    assert adaptation.response(Degradation(0.0, None, "bicubic", 1.0, "given")).kernel == "gaussian"
    assert r.consistency_noise(4.0) == pytest.approx(2 * r.sigma * adaptation.LIFT_GAIN["pinv"] * 4)


def test_area_and_gaussian_kernels_make_the_consistency_operator():
    x = np.random.default_rng(0).uniform(size=(1, 24, 20, 3))
    ops = consistency.image_operator((24, 20), (12, 10), kernel="area")
    box = x.reshape(1, 12, 2, 10, 2, 3).mean((2, 4))
    np.testing.assert_allclose(consistency.degrade(ops, x), box, atol=1e-12)
    proj = np.asarray(consistency.project_onto_lr(x, box * 0.5, ops))
    np.testing.assert_allclose(consistency.degrade(ops, proj), box * 0.5, atol=1e-5)   # exact for that kernel
    g = consistency.image_operator((24, 20), (12, 10), kernel="gaussian", blur=0.8)
    assert np.abs(consistency.degrade(g, x) - consistency.degrade(consistency.image_operator((24, 20), (12, 10)), x)).max() > 1e-3


def test_noise_table_noise_axis_interpolates_in_sigma():
    raw = {"format_version": 2, "scales": [2, 4], "noise_fraction": [0.1, 0.2],
           "noise_levels_255": [10, 20], "noise_fraction_by_level": [[0.15, 0.25], [0.3, 0.4]]}
    mode = noise_table.parse(raw).mode(False)
    assert mode.fraction_at(2, 0.0) == pytest.approx(0.1) and mode.fraction_at(2, 10 / 255) == pytest.approx(0.15)
    assert mode.fraction_at(2, 15 / 255) == pytest.approx(0.225) and mode.fraction_at(4, 40 / 255) == pytest.approx(0.4)
    with pytest.raises(noise_table.NoiseTableError, match="one row per noise level"):
        noise_table.parse(dict(raw, noise_fraction_by_level=[[0.1, 0.2]]))
