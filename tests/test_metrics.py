"""Every evaluation metric against a reference on tiny generated images."""

import numpy as np
import pytest

from diffsr_jax import metrics


def pair(h=32, w=40, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    a = np.stack([yy, xx, 0.5 + 0.4 * np.sin(9 * xx * yy)], -1) + 0.05 * rng.normal(size=(h, w, 3))
    a = np.clip(a, 0, 1).astype(np.float32)
    b = np.clip(a + noise * rng.normal(size=a.shape), 0, 1).astype(np.float32)
    return a, b


def hand_ssim(x, y, max_val=1.0, size=11, sigma=1.5):
    """Wang et al. 2004 with a separable Gaussian window, 'valid' filtering, mean over pixels and
    channels: written out with numpy convolutions, independent of dm-pix."""
    k = np.exp(-0.5 * ((np.arange(size) - (size - 1) / 2) / sigma) ** 2)
    k /= k.sum()

    def filt(z):
        z = np.apply_along_axis(lambda v: np.convolve(v, k, "valid"), 0, z)
        return np.apply_along_axis(lambda v: np.convolve(v, k, "valid"), 1, z)

    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    vals = []
    for c in range(x.shape[-1]):
        a, b = x[..., c].astype(np.float64), y[..., c].astype(np.float64)
        mu_a, mu_b = filt(a), filt(b)
        va, vb, cov = filt(a * a) - mu_a ** 2, filt(b * b) - mu_b ** 2, filt(a * b) - mu_a * mu_b
        vals.append(((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_psnr_matches_hand_and_dm_pix():
    import dm_pix

    a = np.zeros((8, 8, 3), np.float32)
    assert metrics.psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-5)  # MSE 0.01
    x, y = pair()
    hand = 10 * np.log10(1.0 / np.mean((x.astype(np.float64) - y) ** 2))
    assert metrics.psnr(x, y) == pytest.approx(hand, abs=1e-9)
    assert metrics.psnr(x, y) == pytest.approx(float(dm_pix.psnr(x, y)), abs=1e-3)
    assert metrics.psnr(x, x) == float("inf")
    # a border shave measures only the interior
    assert metrics.psnr(x, y, crop_border=3) == pytest.approx(metrics.psnr(x[3:-3, 3:-3], y[3:-3, 3:-3]))


def test_y_channel_is_bt601_studio_range():
    colours = np.array([[[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0]]], np.float32)
    y = metrics.rgb_to_y(colours)[0, :, 0] * 255
    np.testing.assert_allclose(y, [16, 235, 16 + 65.481, 16 + 128.553], atol=1e-9)
    x, z = pair()
    hand = 10 * np.log10(1.0 / np.mean((metrics.rgb_to_y(x) - metrics.rgb_to_y(z)) ** 2))
    assert metrics.psnr(x, z, channel="y") == pytest.approx(hand, abs=1e-9)
    # the luma range is 219/255 of RGB's and averages out chroma noise: Y-PSNR is higher here
    assert metrics.psnr(x, z, channel="y") > metrics.psnr(x, z)


def test_ssim_matches_hand_computation():
    x, y = pair(noise=0.08)
    assert metrics.ssim(x, y) == pytest.approx(hand_ssim(x, y), abs=2e-5)
    assert metrics.ssim(x, y, channel="y") == pytest.approx(
        hand_ssim(metrics.rgb_to_y(x), metrics.rgb_to_y(y)), abs=2e-5)
    assert metrics.ssim(x, x) == pytest.approx(1.0, abs=1e-6)


def test_bad_inputs_raise():
    x, y = pair()
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(x, y[:-1])
    with pytest.raises(ValueError, match="channel"):
        metrics.ssim(x, y, channel="lab")
    with pytest.raises(ValueError, match="HxWx3"):
        metrics.psnr(x[..., 0], y[..., 0])


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_zero_for_identical_and_grows_with_noise(net):
    lp = metrics.Lpips(net)
    x, _ = pair(32, 32)  # the smallest size both networks' pooling stacks accept
    assert abs(lp(x, x)) < 1e-6
    rng = np.random.default_rng(1)
    eps = rng.normal(size=x.shape)
    vals = [lp(x, np.clip(x + s * eps, 0, 1).astype(np.float32)) for s in (0.02, 0.08, 0.25)]
    assert 0 < vals[0] < vals[1] < vals[2]
    with pytest.raises(ValueError):
        metrics.Lpips("resnet")


def test_band_errors_split_low_and_high_frequencies():
    x, _ = pair(32, 32, noise=0)
    yy, xx = np.mgrid[0:32, 0:32]
    checker = (0.05 * (-1.0) ** (yy + xx))[..., None] * np.ones(3)   # Nyquist: all high band
    lo, hi = metrics.band_errors(x + checker, x)
    assert lo < 1e-10 and hi > 1e-3
    lo, hi = metrics.band_errors(x + 0.05, x)                      # DC offset: all low band
    assert hi < 1e-10 and lo > 1e-4
    # the relative error is Σ|ΔF|² / Σ|F|² over the band: Parseval gives it by hand for the DC case
    hand_lo = (0.05 ** 2 * 32 * 32 * 3) / np.sum(np.abs(np.fft.fft2(x, axes=(0, 1))[
        np.sqrt(np.fft.fftfreq(32)[:, None] ** 2 + np.fft.fftfreq(32)[None] ** 2) <= 0.125]) ** 2) * 32 * 32
    assert lo == pytest.approx(hand_lo, rel=1e-3)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    d1, d2 = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    # diagonal covariances: ‖Δμ‖² + Σ (√d1 − √d2)²
    hand = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    assert metrics.frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(hand, rel=1e-9)
    a = rng.normal(size=(50, 3))
    cov = np.cov(a, rowvar=False)
    assert metrics.frechet_distance(a.mean(0), cov, a.mean(0), cov) == pytest.approx(0.0, abs=1e-7)
    assert metrics.fid_from_features(a, a + 1.0) == pytest.approx(3.0, abs=1e-6)  # a shift of 1 per dim
    with pytest.raises(ValueError):
        metrics.feature_stats(a[:1])


def test_inception_needs_real_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="Inception"):
        metrics.InceptionFeatures(str(tmp_path / "missing.pb"))
