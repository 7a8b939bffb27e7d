"""The degraded LR inputs of issue 31's benchmark (diffsr_jax/protocols.py): sizes, the noise's σ,
JPEG tables that read back their quality, area vs bicubic, blur, the name parser, determinism.
Generated images only (no ../shared)."""

import numpy as np
import pytest

from diffsr_jax import degradation, protocols
from diffsr_jax.protocols import LR_DEGRADATIONS, degrade_lr_u8, degraded_paper_pair, parse_lr_degradation


def photo(h=300, w=360, seed=0) -> np.ndarray:
    """A photo-like float RGB image: smooth gradients, a few edges and some fine texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.5 + 0.3 * np.sin(5 * xx + 2 * yy), 0.4 + 0.3 * yy, 0.6 - 0.3 * xx], -1)
    base[(xx - 0.5) ** 2 + (yy - 0.4) ** 2 < 0.04] *= 0.5  # a disc: sharp edges
    base[:, (np.arange(w) // 6) % 2 == 0] += 0.08          # stripes: fine detail
    tex = rng.standard_normal((h // 4 + 1, w // 4 + 1, 3)).repeat(4, 0).repeat(4, 1)[:h, :w] * 0.03
    return np.clip(base + tex, 0, 1).astype(np.float32)


def high_freq_energy(img_u8: np.ndarray) -> float:
    x = img_u8.astype(np.float64)
    return float(np.mean(np.diff(x, axis=0) ** 2) + np.mean(np.diff(x, axis=1) ** 2))


@pytest.mark.parametrize("scale", [2.0, 2.7, 4.0])
def test_every_named_degradation_gives_an_8bit_lr_of_the_protocol_size(scale):
    img = photo()
    n = protocols.lr_size((256, 256), scale)[0]
    for name in LR_DEGRADATIONS:
        pair = degraded_paper_pair(img, scale, name, seed=1)
        assert pair.hr_u8.shape == (256, 256, 3) and pair.hr_u8.dtype == np.uint8, name
        assert pair.lr_u8.shape == (n, n, 3) and pair.lr_u8.dtype == np.uint8, name
        assert (pair.jpeg_quantization is not None) == ("jpeg" in name), name


def test_clean_is_exactly_the_paper_protocol():
    img = photo()
    hr, lr = protocols.paper_protocol(img, 2.7)
    pair = degraded_paper_pair(img, 2.7, "clean")
    assert np.array_equal(pair.hr_u8, protocols.to_uint8(hr))
    assert np.array_equal(pair.lr_u8, protocols.to_uint8(lr))


@pytest.mark.parametrize("sigma", [5, 10, 25])
def test_noise_has_the_asked_sigma_on_mid_grey(sigma):
    grey = np.full((256, 256, 3), 128, np.uint8)
    lr, tables = degrade_lr_u8(grey, 2.0, f"noise{sigma}", seed=0)
    assert tables is None
    noise = lr.astype(np.float64) - 128.0  # no clipping at 128 ± 4σ for σ ≤ 25 (almost)
    assert abs(noise.mean()) < 0.1 * sigma
    assert abs(noise.std() / sigma - 1) < 0.15


@pytest.mark.parametrize("quality", [30, 50, 75, 90])
def test_jpeg_cells_return_tables_that_read_back_their_quality(quality):
    pair = degraded_paper_pair(photo(), 2.0, f"jpeg{quality}")
    tabs = pair.jpeg_quantization
    assert isinstance(tabs, dict) and set(tabs) >= {0, 1}
    assert all(isinstance(k, int) and len(v) == 64 and all(type(x) is int for x in v) for k, v in tabs.items())
    assert degradation.jpeg_quality_from_tables(tabs) == quality
    clean = degraded_paper_pair(photo(), 2.0, "clean").lr_u8
    assert not np.array_equal(pair.lr_u8, clean)


def test_jpeg_after_noise():
    img = photo()
    both = degraded_paper_pair(img, 2.0, "jpeg75+noise5", seed=4)
    noisy = degraded_paper_pair(img, 2.0, "noise5", seed=4).lr_u8
    assert degradation.jpeg_quality_from_tables(both.jpeg_quantization) == 75
    assert np.array_equal(both.lr_u8, protocols.jpeg_roundtrip_u8(noisy, 75)[0])  # noise first, then JPEG
    assert parse_lr_degradation("noise5+jpeg75")[1:] == parse_lr_degradation("jpeg75+noise5")[1:]


def test_area_differs_from_bicubic_and_matches_pil_box():
    img = photo()
    hr = degraded_paper_pair(img, 4.0, "clean").hr_u8
    area = degraded_paper_pair(img, 4.0, "area").lr_u8
    bic = degraded_paper_pair(img, 4.0, "clean").lr_u8
    assert not np.array_equal(area, bic)
    # 4x box = the mean of each 4x4 block (up to 8-bit rounding)
    assert np.abs(area.astype(float) - hr.reshape(64, 4, 64, 4, 3).mean((1, 3))).max() <= 1.0


def test_blur_then_bicubic_is_smoother_and_grows_with_sigma():
    img = photo()
    e = [high_freq_energy(degraded_paper_pair(img, 2.0, name).lr_u8) for name in ("clean", "blur0.8", "blur1.6")]
    assert e[0] > e[1] > e[2]


def test_gaussian_blur_matches_scipy():
    from scipy import ndimage

    x = np.random.default_rng(0).random((30, 25, 3))
    ref = ndimage.gaussian_filter(x, sigma=(1.2, 1.2, 0), mode="reflect", truncate=4.0)
    np.testing.assert_allclose(protocols.gaussian_blur01(x, 1.2), ref, atol=1e-12)


def test_parser():
    d = parse_lr_degradation(" JPEG75 + noise5 ")
    assert (d.name, d.noise, d.jpeg, d.area, d.blur) == ("jpeg75+noise5", 5.0, 75, False, 0.0)
    assert parse_lr_degradation("blur1.2") .blur == 1.2 and parse_lr_degradation("area").area
    assert parse_lr_degradation("clean") == protocols.LRDegradation("clean")
    assert parse_lr_degradation("blur1.2+area").spec(2.0) == "kernel=area,blur=0.6"
    assert parse_lr_degradation("jpeg75+noise5").spec(4) == "noise=5,jpeg=75"
    for name in LR_DEGRADATIONS:
        assert parse_lr_degradation(name).name == name
        if name != "clean":  # every spec is one the library's degradation parser accepts
            assert isinstance(degradation.parse_degradation(parse_lr_degradation(name).spec(2.7)),
                              degradation.Degradation)
    for bad in ["", "bicubic", "noise", "noise-5", "noise0", "jpeg0", "jpeg101", "jpeg7.5", "blur0",
                "noise5+noise10", "area+area", "clean+noise5", "jpeg75,noise5", "lanczos"]:
        with pytest.raises(ValueError):
            parse_lr_degradation(bad)


def test_deterministic_for_a_seed_and_common_draws_across_sigma():
    img = photo()
    a = degraded_paper_pair(img, 2.7, "jpeg75+noise5", seed=7)
    b = degraded_paper_pair(img, 2.7, "jpeg75+noise5", seed=7)
    assert np.array_equal(a.lr_u8, b.lr_u8) and a.jpeg_quantization == b.jpeg_quantization
    gen = degrade_lr_u8(a.hr_u8, 2.7, "noise10", seed=np.random.default_rng(7))[0]
    assert np.array_equal(gen, degrade_lr_u8(a.hr_u8, 2.7, "noise10", seed=7)[0])
    assert not np.array_equal(degraded_paper_pair(img, 2.7, "noise10", seed=8).lr_u8,
                              degraded_paper_pair(img, 2.7, "noise10", seed=7).lr_u8)
    # one seed, one standard-normal draw: noise10 - clean ≈ 2 (noise5 - clean) away from clipping
    clean = degraded_paper_pair(img, 2.0, "clean").lr_u8.astype(float)
    n5 = degraded_paper_pair(img, 2.0, "noise5", seed=3).lr_u8 - clean
    n10 = degraded_paper_pair(img, 2.0, "noise10", seed=3).lr_u8 - clean
    inside = (clean > 40) & (clean < 215)
    assert np.abs(n10[inside] - 2 * n5[inside]).max() <= 1.5


def test_seed_helper_is_stable():
    s = protocols.lr_degradation_seed(0, "img001", 2.7)
    assert s == protocols.lr_degradation_seed(0, "img001", np.float64(2.7))
    assert s != protocols.lr_degradation_seed(0, "img001", 4.0) != protocols.lr_degradation_seed(1, "img001", 2.7)
    assert 0 <= s < 2 ** 32
