"""diffsr_jax.degradation: knowing how the input was degraded (issue 31, items 1 and 4).

Only the bundled examples and generated images are used (never ../shared). numpy/PIL only.
"""

import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from diffsr_jax import degradation as D
from diffsr_jax.image_io import read_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = ("bsd_108005_small.png", "sun_small.png")


def _example(name):
    return np.asarray(Image.open(os.path.join(REPO, "examples", name)).convert("RGB"), np.float32) / 255


def _noisy(a, sigma255, seed):
    """Gaussian noise on every channel, clipped and rounded to 8 bits like a real noisy PNG."""
    rng = np.random.default_rng(seed)
    x = a + rng.standard_normal(a.shape).astype(np.float32) * np.float32(sigma255 / 255)
    return (np.round(np.clip(x, 0, 1) * 255) / 255).astype(np.float32)


def _jpeg_file(a, path, quality):
    Image.fromarray(np.round(a * 255).astype(np.uint8)).save(path, "JPEG", quality=quality)
    return path


@pytest.fixture(scope="module")
def examples():
    return {n: _example(n) for n in EXAMPLES}


# ---------------------------------------------------------------------------------------------
# noise


@pytest.mark.parametrize("sigma", [2, 3, 5, 10, 15, 20, 30])
def test_noise_estimate_within_20_percent(examples, sigma):
    for name, a in examples.items():
        for seed in (0, 1):
            est = D.estimate_noise_sigma(_noisy(a, sigma, seed)) * 255
            assert abs(est / sigma - 1) <= 0.2, (name, seed, sigma, est)


def test_noise_estimate_near_zero_on_clean(examples):
    for name, a in examples.items():
        assert D.estimate_noise_sigma(a) < 1.0 / 255, name
    assert D.estimate_noise_sigma(np.full((64, 64, 3), 0.4, np.float32)) == 0.0
    smooth = np.linspace(0, 1, 96 * 96, dtype=np.float32).reshape(96, 96)  # a ramp, gray
    assert D.estimate_noise_sigma(smooth) < 0.3 / 255


def test_noise_estimate_gray_and_saturated():
    rng = np.random.default_rng(3)
    base = np.full((96, 128), 0.5, np.float32)
    g = np.clip(base + rng.standard_normal(base.shape).astype(np.float32) * 0.04, 0, 1)
    assert abs(D.estimate_noise_sigma(g) / 0.04 - 1) < 0.2  # (H, W) works
    rgb = np.repeat(g[..., None], 3, -1)  # identical channels: same per-channel σ
    assert abs(D.estimate_noise_sigma(rgb) / 0.04 - 1) < 0.2
    # a saturated half (0 and 1 hide noise) must not pull the estimate down
    sat = rgb.copy()
    sat[:, :64] = 1.0
    sat[:48, :64] = 0.0
    assert abs(D.estimate_noise_sigma(sat) / 0.04 - 1) < 0.2
    assert D.estimate_noise_sigma(np.zeros((8, 8, 3), np.float32)) == 0.0  # too small
    with pytest.raises(ValueError):
        D.estimate_noise_sigma(np.zeros((32, 32, 3), np.uint8))  # floats in [0, 1] only


def test_noise_estimate_ignores_noise_like_texture_beside_a_flat_area():
    # A pixel-level checkerboard (like the aliased window grids of a downscaled facade) passes
    # the high-pass like strong noise; the flat part beside it tells the real level.
    yy, xx = np.mgrid[0:96, 0:128]
    img = np.full((96, 128, 3), 0.5, np.float32)
    img[:, :80] += (0.2 * (-1.0) ** (yy + xx))[:, :80, None]
    assert abs(D.estimate_noise_sigma(_noisy(img, 3, 0)) * 255 / 3 - 1) < 0.2


def test_noise_calibration_constants_are_current():
    tau, c = D._calibrate_noise(seed=1, size=512)
    assert abs(tau / D._TAU - 1) < 0.02 and abs(c / D._C - 1) < 0.01, (tau, c)


# ---------------------------------------------------------------------------------------------
# JPEG


def test_ijg_tables():
    luma50, chroma50 = D.ijg_tables(50)
    np.testing.assert_array_equal(luma50, D._STD_LUMA)
    np.testing.assert_array_equal(chroma50, D._STD_CHROMA)
    assert D.ijg_tables(100)[0].max() == 1 and D.ijg_tables(1)[0].min() == 255
    # zigzag order starts 0, 1, 8, 16, 9, 2 and visits every coefficient once
    assert list(D._ZIGZAG[:6]) == [0, 1, 8, 16, 9, 2] and sorted(D._ZIGZAG) == list(range(64))


@pytest.mark.parametrize("quality", [30, 50, 75, 90, 95])
def test_jpeg_quality_read_back_from_file(examples, tmp_path, quality):
    path = _jpeg_file(examples["sun_small.png"], str(tmp_path / f"q{quality}.jpg"), quality)
    img = read_image(path)
    assert img.format == "JPEG" and set(img.jpeg_quantization) == {0, 1}
    assert all(isinstance(v, int) for t in img.jpeg_quantization.values() for v in t)
    assert D.jpeg_quality_from_tables(img.jpeg_quantization) == quality
    # the same tables in zigzag (file) order, as older Pillow versions give them
    zigzag = {k: [t[i] for i in D._ZIGZAG] for k, t in img.jpeg_quantization.items()}
    assert D.jpeg_quality_from_tables(zigzag) == quality
    deg = D.estimate(img.rgb, jpeg_tables=img.jpeg_quantization)
    assert deg.jpeg_quality == quality and deg.blur_sigma == 0.0


def test_jpeg_tables_absent_or_unusable(examples, tmp_path):
    png = str(tmp_path / "x.png")
    Image.fromarray(np.round(examples["sun_small.png"] * 255).astype(np.uint8)).save(png)
    assert read_image(png).jpeg_quantization is None
    gray = str(tmp_path / "g.jpg")
    Image.fromarray(np.round(examples["sun_small.png"][..., 1] * 255).astype(np.uint8)).save(gray, quality=60)
    assert D.jpeg_quality_from_tables(read_image(gray).jpeg_quantization) == 60  # luma table only
    for bad in (None, {}, {0: [1, 2, 3]}, {5: [10] * 64}, {0: [0] * 64}):
        assert D.jpeg_quality_from_tables(bad) is None


def test_blockiness_none_on_clean_and_found_in_quality_30(examples, tmp_path):
    for name, a in examples.items():
        assert 0.9 < D.blockiness(a) < 1.06, name
        assert D.estimate_jpeg_quality_from_pixels(a) is None, name
        assert D.estimate_jpeg_quality_from_pixels(_noisy(a, 10, 0)) is None, name
        smaller = Image.fromarray(np.round(a * 255).astype(np.uint8)).resize((107, 71), Image.BICUBIC)
        assert D.estimate_jpeg_quality_from_pixels(np.asarray(smaller, np.float32) / 255) is None, name
        jpg = read_image(_jpeg_file(a, str(tmp_path / f"{name}.jpg"), 30)).rgb
        assert D.blockiness(jpg) > 1.2, name
        q = D.estimate_jpeg_quality_from_pixels(jpg)
        assert q is not None and 10 <= q <= 60, (name, q)
        # no tables given: the estimate falls back to the pixels
        assert D.estimate(jpg).jpeg_quality == q


def test_a_pattern_repeating_every_8_px_one_way_is_not_jpeg_blocking(examples, tmp_path):
    """A facade or fence that repeats every 8 px steps across the grid lines in one direction
    only; JPEG blocking steps both ways. The one-way pattern alone must not read as JPEG, and
    the same pattern compressed at q30 must still."""
    a = examples["bsd_108005_small.png"][:96, :96]
    panels = ((np.arange(96) // 8) % 2).astype(np.float32)
    # panels 8 px wide across, and a faint 8-px banding down the image (as on img_016 of Urban100)
    patterned = np.clip(a * 0.8 + 0.1 * panels[None, :, None] + 0.02 * panels[:, None, None], 0, 1)
    patterned = (np.round(patterned * 255) / 255).astype(np.float32)
    (rh, zh), (rv, zv) = D._grid_profile(D._luma(patterned))
    assert rh > 2.0 and 1.0 < rv < 1.2 and min(zh, zv) > 2.0  # on the grid both ways, unevenly
    assert D.estimate_jpeg_quality_from_pixels(patterned) is None
    jpg = read_image(_jpeg_file(a, str(tmp_path / "q30.jpg"), 30)).rgb
    assert D.estimate_jpeg_quality_from_pixels(jpg) is not None


# ---------------------------------------------------------------------------------------------
# softness


def test_softness(examples):
    for name, a in examples.items():
        assert D.estimate_softness(a) == 0.0, name
        soft = np.round(ndi.gaussian_filter(a, (1.0, 1.0, 0)) * 255) / 255
        assert 0.6 <= D.estimate_softness(soft) <= 1.4, name
        assert D.estimate(soft).blur_sigma > 0


# ---------------------------------------------------------------------------------------------
# the whole estimate, the type, the grammar


def test_estimate_clean_and_noisy(examples):
    for name, a in examples.items():
        d = D.estimate(a)
        assert d.source == "estimated" and d.kernel == "unknown"
        assert d.noise_sigma < 1.0 / 255 and d.jpeg_quality is None and d.blur_sigma == 0.0, (name, d)
        n = D.estimate(_noisy(a, 10, 2))
        assert abs(n.noise_sigma * 255 / 10 - 1) < 0.2 and n.jpeg_quality is None, (name, n)
        assert n.describe().startswith("noise σ≈")


def test_estimate_is_fast_on_1080p(examples):
    a = examples["sun_small.png"]  # mirror-tiled to 1920x1080, then noise
    tile = np.concatenate([a, a[:, ::-1]], 1)
    big = _noisy(np.tile(np.concatenate([tile, tile[::-1]], 0), (5, 6, 1))[:1080, :1920], 5, 0)
    D.estimate(big[:64, :64])  # warm-up
    t = time.perf_counter()
    d = D.estimate(big)
    assert time.perf_counter() - t < 2.0  # < 0.1 s measured; a loose bound for a shared CPU
    assert abs(d.noise_sigma * 255 / 5 - 1) < 0.2 and d.jpeg_quality is None and d.blur_sigma == 0


def test_degradation_type():
    assert D.CLEAN == D.Degradation(0.0, None, "bicubic", 0.0, "clean")
    assert D.CLEAN.describe() == "clean"
    d = D.Degradation(6.1 / 255, 75, "unknown", 0.0, "estimated")
    assert d.describe() == "noise σ≈6.1/255, JPEG q≈75"
    assert D.Degradation(10 / 255, None, "area", 0.8, "given").describe() == \
        "noise σ=10.0/255, area downscale, blur σ=0.8 px"
    info = json.loads(json.dumps(d.as_dict()))
    assert info == {"noise_sigma": 6.1 / 255, "jpeg_quality": 75, "kernel": "unknown", "blur_sigma": 0.0,
                    "source": "estimated", "noise_sigma_255": 6.1}
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.noise_sigma = 0.0
    for bad in (dict(noise_sigma=-0.1), dict(noise_sigma=float("nan")), dict(jpeg_quality=0),
                dict(jpeg_quality=101), dict(jpeg_quality=7.5), dict(kernel="box"), dict(blur_sigma=-1.0),
                dict(source="guessed")):
        with pytest.raises(ValueError):
            D.Degradation(**bad)


def test_parse_degradation():
    P = D.parse_degradation
    assert P("auto") == "auto" and P(" AUTO ") == "auto"
    assert P("clean") is D.CLEAN
    assert P("noise=10") == D.Degradation(10 / 255, None, "bicubic", 0.0, "given")
    assert P("noise=10/255").noise_sigma == pytest.approx(10 / 255)
    assert P("jpeg=75") == D.Degradation(0.0, 75, "bicubic", 0.0, "given")
    assert P(" Noise = 5 , JPEG=90, kernel=Area, blur=0.8 ") == D.Degradation(5 / 255, 90, "area", 0.8, "given")
    assert P("kernel=unknown").kernel == "unknown" and P("jpeg=100.0").jpeg_quality == 100
    d = D.Degradation(1 / 255, None, "bicubic", 0.0, "estimated")
    assert P(d) is d
    errors = {
        "": "empty", "   ": "empty", "fast": "KEY=VALUE", "noise": "KEY=VALUE", "=5": "KEY=VALUE",
        "noise=": "KEY=VALUE", "noise=5,": "KEY=VALUE", "gamma=2": "unknown degradation key",
        "noise=abc": "not a number", "noise=nan": "not a finite", "noise=300": "0..255",
        "noise=-1": "0..255", "jpeg=0": "1..100", "jpeg=101": "1..100", "jpeg=7.5": "1..100",
        "kernel=box": "unknown kernel", "blur=-1": "0..20", "noise=5,noise=6": "twice",
    }
    for spec, msg in errors.items():
        with pytest.raises(ValueError, match=msg):
            P(spec)
    with pytest.raises(ValueError):
        P(10)


def test_module_does_not_import_jax():
    path = os.path.join(REPO, "diffsr_jax", "degradation.py")
    code = ("import importlib.util, sys, time; t = time.perf_counter(); "
            f"s = importlib.util.spec_from_file_location('deg', {path!r}); m = importlib.util.module_from_spec(s); "
            "sys.modules['deg'] = m; s.loader.exec_module(m); assert 'jax' not in sys.modules, 'jax imported'; "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 3.0  # ~0.3 s (numpy + scipy.ndimage) measured
