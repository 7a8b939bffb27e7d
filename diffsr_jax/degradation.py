"""Knowing the input: how a low-resolution image was degraded (noise, JPEG, softness).

Pure numpy/scipy (no JAX), so it imports fast and runs before any model is built. Images are
float arrays in [0, 1], ``(H, W, 3)`` or ``(H, W)``.

* :class:`Degradation` describes an input: additive noise std ``noise_sigma`` (in [0, 1] units,
  i.e. σ/255 for 8-bit), JPEG ``jpeg_quality`` (IJG scale 1..100, or None), the downscaling
  ``kernel`` and an extra Gaussian ``blur_sigma`` in LR pixels. ``source`` says where it came
  from: ``"estimated"``, ``"given"`` (parsed from the user) or ``"clean"`` (:data:`CLEAN`).
* :func:`parse_degradation` reads the CLI/API grammar ``auto | clean | noise=σ,jpeg=Q,...``.
* :func:`estimate` estimates everything from the pixels (and the JPEG file's quantisation
  tables when given, see ``LoadedImage.jpeg_quantization``); the parts are public too:
  :func:`estimate_noise_sigma`, :func:`jpeg_quality_from_tables`, :func:`blockiness`,
  :func:`estimate_jpeg_quality_from_pixels`, :func:`estimate_softness`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Union

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "KERNELS", "SOURCES", "Degradation", "CLEAN", "parse_degradation", "estimate",
    "estimate_noise_sigma", "jpeg_quality_from_tables", "ijg_tables", "blockiness",
    "estimate_jpeg_quality_from_pixels", "estimate_softness",
]

KERNELS = ("bicubic", "area", "lanczos", "gaussian", "unknown")
SOURCES = ("estimated", "given", "clean")


@dataclass(frozen=True)
class Degradation:
    """How an LR input was degraded. Immutable; ``dataclasses.replace`` makes variants.

    ``noise_sigma``: std of additive noise in [0, 1] units (σ/255 for 8-bit); for an estimate,
    the white noise still present at the finest scale (see :func:`estimate_noise_sigma`).
    ``jpeg_quality``: IJG/libjpeg quality 1..100 that explains the compression, None = not
    JPEG-compressed (or not detectable). ``kernel``: downscaler family, one of :data:`KERNELS`.
    ``blur_sigma``: extra Gaussian blur in LR pixels (0 = none).
    """

    noise_sigma: float = 0.0
    jpeg_quality: Optional[int] = None
    kernel: str = "bicubic"
    blur_sigma: float = 0.0
    source: str = "given"

    def __post_init__(self):
        if not (math.isfinite(self.noise_sigma) and self.noise_sigma >= 0):
            raise ValueError(f"noise_sigma must be a finite number >= 0, got {self.noise_sigma!r}")
        q = self.jpeg_quality
        if q is not None and (isinstance(q, bool) or int(q) != q or not 1 <= q <= 100):
            raise ValueError(f"jpeg_quality must be None or an integer 1..100, got {q!r}")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {self.kernel!r}")
        if not (math.isfinite(self.blur_sigma) and self.blur_sigma >= 0):
            raise ValueError(f"blur_sigma must be a finite number >= 0, got {self.blur_sigma!r}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        object.__setattr__(self, "noise_sigma", float(self.noise_sigma))
        object.__setattr__(self, "blur_sigma", float(self.blur_sigma))
        if q is not None:
            object.__setattr__(self, "jpeg_quality", int(q))

    def describe(self) -> str:
        """Short human text, e.g. ``"noise σ≈6.1/255, JPEG q≈75"`` or ``"clean"``."""
        eq = "≈" if self.source == "estimated" else "="
        parts = []
        if self.noise_sigma > 0 or self.source == "estimated":
            parts.append(f"noise σ{eq}{self.noise_sigma * 255:.1f}/255")
        if self.jpeg_quality is not None:
            parts.append(f"JPEG q{eq}{self.jpeg_quality}")
        if self.kernel not in ("bicubic", "unknown"):
            parts.append(f"{self.kernel} downscale")
        if self.blur_sigma > 0:
            parts.append(f"blur σ{eq}{self.blur_sigma:.1f} px")
        return ", ".join(parts) if parts else "clean"

    def as_dict(self) -> dict:
        """JSON-ready dict of the fields plus ``noise_sigma_255`` (σ in 8-bit units, rounded)."""
        d = asdict(self)
        d["noise_sigma_255"] = round(self.noise_sigma * 255, 2)
        return d


#: What today's pipeline assumes: a noise-free PIL-bicubic downscale.
CLEAN = Degradation(0.0, None, "bicubic", 0.0, "clean")


# ---------------------------------------------------------------------------------------------
# parsing

_ITEMS = {  # key: (field, min, max, unit, integer, range message)
    "noise": ("noise_sigma", 0, 255, 255.0, False, "σ is in 8-bit units, 0..255 (e.g. noise=10)"),
    "jpeg": ("jpeg_quality", 1, 100, 1, True, "quality is an integer 1..100"),
    "blur": ("blur_sigma", 0, 20, 1.0, False, "σ in LR pixels, 0..20"),
}

def parse_degradation(spec: Union[str, Degradation]) -> Union[str, Degradation]:
    """``"auto"`` -> ``"auto"``; ``"clean"`` -> :data:`CLEAN`; ``"noise=10,jpeg=75"`` -> Degradation.

    Items, comma-separated, each at most once (unset ones stay clean): ``noise=σ`` with σ in
    8-bit units 0..255 (``noise=10`` or ``noise=10/255``), ``jpeg=Q`` (integer 1..100),
    ``kernel=NAME`` (one of :data:`KERNELS`), ``blur=σ`` (LR pixels, 0..20). Case and spaces
    are ignored. A :class:`Degradation` is returned unchanged. Bad input: ``ValueError``.
    """
    if isinstance(spec, Degradation):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"degradation must be a string or a Degradation, got {type(spec).__name__}")
    s = spec.strip().lower()
    if not s:
        raise ValueError("empty degradation spec: use auto, clean or items like noise=10,jpeg=75")
    if s in ("auto", "clean"):
        return "auto" if s == "auto" else CLEAN
    fields: dict = {}
    for item in s.split(","):
        key, eq, val = (t.strip() for t in item.partition("="))
        if not (eq and key and val):
            raise ValueError(f"bad degradation item {item.strip()!r} in {spec!r}: expected KEY=VALUE with KEY "
                             f"one of {', '.join(_ITEMS)}, kernel (or just auto / clean)")
        if key == "kernel":
            if val not in KERNELS:
                raise ValueError(f"unknown kernel {val!r}: use one of {', '.join(KERNELS)}")
            x, name = val, "kernel"
        elif key in _ITEMS:
            name, lo, hi, unit, integer, what = _ITEMS[key]
            try:
                x = float(val[:-4] if key == "noise" and val.endswith("/255") else val)
            except ValueError:
                raise ValueError(f"{key}={val!r} is not a number") from None
            if not math.isfinite(x):
                raise ValueError(f"{key}={val!r} is not a finite number")
            if not lo <= x <= hi or (integer and x != int(x)):
                raise ValueError(f"{key}={val} out of range: {what}")
            x = int(x) if integer else x / unit
        else:
            raise ValueError(f"unknown degradation key {key!r} in {spec!r}: use {', '.join(_ITEMS)}, kernel")
        if name in fields:
            raise ValueError(f"degradation key {key!r} given twice in {spec!r}")
        fields[name] = x
    return Degradation(source="given", **fields)


# ---------------------------------------------------------------------------------------------
# noise

_D4 = np.array([1.0, -4.0, 6.0, -4.0, 1.0]) / math.sqrt(70.0)  # 4th difference, unit norm
_BS = 8  # a unit is an 8x8 window of one channel ...
_STRIDE = 4  # ... every 4 pixels (overlapping: finds the flat spots of small images)
_TILE = 128  # tile size when a large image is subsampled
_MAX_PIXELS = 1 << 19  # above this many pixels, features come from evenly spread tiles
_MIN_UNITS = 8
# Weak-texture threshold and correction, from pure Gaussian noise (see _calibrate_noise):
# _TAU = 1.5 x the 99% quantile of a unit's gradient energy T / σ²; _C = 1 / rms residual of
# the units under it. Checked by tests/test_degradation.py.
_TAU = 9.01
_C = 0.9997


def _as_image(img01) -> np.ndarray:
    a = np.asarray(img01)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 1|3|4) image, got shape {np.shape(img01)}")
    if a.shape[-1] == 4:
        a = a[..., :3]
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"expected a float image in [0, 1], got dtype {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0)
    return a


def _tiles(a: np.ndarray, tile: int, max_pixels: int):
    """The whole image, or evenly spread ``tile``-sized crops at offsets on the 8-pixel grid."""
    h, w = a.shape[:2]
    if h * w <= max_pixels or h < 2 * tile or w < 2 * tile:
        return [a]
    n = max(2, int(math.sqrt(max_pixels / (tile * tile))))
    ys = sorted({int(round(v / 8)) * 8 for v in np.linspace(0, h - tile, n)})
    xs = sorted({int(round(v / 8)) * 8 for v in np.linspace(0, w - tile, n)})
    return [a[y:y + tile, x:x + tile] for y in ys for x in xs]


def _window_means(x: np.ndarray) -> np.ndarray:
    """Means of ``x`` (H, W, C) over 8x8 windows every 4 pixels, flattened channel by channel."""
    s = np.zeros((x.shape[0] + 1, x.shape[1] + 1, x.shape[2]))
    s[1:, 1:] = x.cumsum(0, dtype=np.float64).cumsum(1)
    s = s[::_STRIDE, ::_STRIDE]  # windows start on the stride grid; 8 = 2 strides
    k = _BS // _STRIDE
    m = (s[k:, k:] - s[:-k, k:] - s[k:, :-k] + s[:-k, :-k]) / (_BS * _BS)
    return np.maximum(m, 0.0).transpose(2, 0, 1).reshape(-1)  # >= 0 despite rounding


def _noise_units(a: np.ndarray):
    """Per unit: mean squared residual, gradient energy T, touches-a-clipped-sample flag."""
    if a.shape[0] < 4 + _BS or a.shape[1] < 4 + _BS:
        return np.zeros(0), np.zeros(0), np.zeros(0, bool)
    r = ndi.correlate1d(ndi.correlate1d(a, _D4, axis=0, mode="nearest"), _D4, axis=1, mode="nearest")
    r = r[2:-2, 2:-2]
    h, w = r.shape[:2]
    gx = (a[:, 1:] - a[:, :-1])[2:2 + h, 2:2 + w]
    gy = (a[1:] - a[:-1])[2:2 + h, 2:2 + w]
    clipped = ndi.maximum_filter(((a <= 0) | (a >= 1)).astype(np.float32), size=(5, 5, 1))[2:-2, 2:-2]
    return _window_means(r * r), _window_means(gx * gx + gy * gy), _window_means(clipped) > 0.5 / _BS ** 2


def estimate_noise_sigma(img01) -> float:
    """Std of additive white noise in a float image in [0, 1] (result in [0, 1] units).

    A weak-texture estimator after Liu, Tanaka & Okutomi (IEEE TIP 2013), made for small
    images. Units are 8x8 windows of one channel, every 4 pixels. Each has a noise proxy, the
    mean square of a unit-norm 4th-difference high-pass ([1,-4,6,-4,1]/√70 both ways: white
    noise passes at exactly σ², smooth or mildly textured content hardly at all), and a texture
    strength T, its first-difference energy (very texture-sensitive). From all units, iterate
    σ = rms proxy of the units whose T is under 1.5x the 99% quantile of T for pure noise of
    std σ (the margin keeps the set from collapsing onto units quiet by chance), >= 8 units.
    If iterating up from the 8 flattest units ends below half of that, the lower value wins
    (a flat area beside noise-like texture, e.g. fine aliased window grids). Units touching a
    clipped sample (0 or 1) are skipped per channel: clipping hides noise.
    Over 0.5 MP, evenly spread 132-px tiles are read. Plain MAD of a wavelet band, or PCA
    over all patches (Chen et al., ICCV 2015), read several /255 on the clean 160-px examples:
    every patch there is textured; this needs only a few flat spots.

    Per channel, pooled: ``noise_sigma`` is what Gaussian noise of std σ on every channel gives,
    for colour and gray images alike (luma would read ≈0.67σ for noise independent between
    channels but σ for identical ones). Accuracy (8-bit, σ in /255): the bundled examples read
    0.3..0.7 clean, within ±17% for σ = 2..30; bicubic 2x/4x downscales of photos within ±20%
    for most (see tests and the issue). Weak spots: (1) images textured everywhere at the
    pixel scale (foliage, gravel; small downscales) have no flat spot, so texture reads as
    noise: up to 2.5..5 on clean images, over-estimating σ <= 5; (2) mostly saturated images
    at high σ under-estimate (black-and-white photo, σ=30 -> 21); (3) JPEG removes most of the
    noise this sees (noise 5, then q75: reads 0.1..1.8): on JPEG input it is the noise left
    after compression; block edges do not raise it (clean q30 reads <= clean); (4) noise that
    varies over the image reads as its quieter flat areas' level when that is under half the
    rest. Images under 12x12 pixels give 0.
    """
    a = _as_image(img01)
    parts = [_noise_units(t) for t in _tiles(a, _TILE + 4, _MAX_PIXELS)]
    ms = np.concatenate([p[0] for p in parts])
    t = np.concatenate([p[1] for p in parts])
    clipped = np.concatenate([p[2] for p in parts])
    if len(ms) == 0:
        return 0.0
    if (~clipped).sum() >= _MIN_UNITS:
        ms, t = ms[~clipped], t[~clipped]
    order = np.argsort(t, kind="stable")
    t = t[order]
    mean_ms = np.cumsum(ms[order], dtype=np.float64) / np.arange(1, len(ms) + 1)
    kmin = min(len(t), _MIN_UNITS)

    def fixed_point(sigma):  # iterate to a fixed point (in a few steps in practice; capped)
        for _ in range(1000):
            k = max(int(np.searchsorted(t, _TAU * sigma * sigma, side="right")), kmin)
            new = _C * math.sqrt(mean_ms[k - 1])
            if abs(new - sigma) <= 1e-9:
                break
            sigma = new
        return sigma

    # From all units down (stable), unless the flattest units lead to a far lower fixed point:
    # then noise-like texture (fine aliased patterns) sits above a clearly separate flat area.
    high = fixed_point(_C * math.sqrt(mean_ms[-1]))
    low = fixed_point(_C * math.sqrt(mean_ms[kmin - 1]))
    return float(low if low < 0.5 * high else high)


def _calibrate_noise(seed: int = 0, size: int = 1024) -> tuple[float, float]:
    """(_TAU, _C) from unit-σ Gaussian noise: how the two constants above were made."""
    rng = np.random.default_rng(seed)
    ms, t, _ = _noise_units(rng.standard_normal((size, size, 3)).astype(np.float32) * 0.01 + 0.5)
    ms, t = ms / 1e-4, t / 1e-4
    tau = 1.5 * float(np.quantile(t, 0.99))
    return tau, float(1.0 / math.sqrt(ms[t <= tau].mean()))


# ---------------------------------------------------------------------------------------------
# JPEG

# ITU-T T.81 Annex K tables (natural row-major order), as libjpeg scales them.
_STD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])
_STD_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32)
# _ZIGZAG[i] = natural index of the i-th coefficient in zigzag order.
_ZIGZAG = np.array(sorted(range(64), key=lambda n: (n // 8 + n % 8, (n % 8) if (n // 8 + n % 8) % 2 == 0 else n // 8)))


def ijg_tables(quality: int) -> tuple[np.ndarray, np.ndarray]:
    """(luma, chroma) quantisation tables libjpeg writes for ``quality`` (natural order)."""
    q = min(max(int(quality), 1), 100)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return tuple(np.clip((t * scale + 50) // 100, 1, 255) for t in (_STD_LUMA, _STD_CHROMA))


_IJG = np.stack([np.stack(ijg_tables(q)) for q in range(1, 101)])  # (100, 2, 64)


def jpeg_quality_from_tables(quantization: Optional[Mapping]) -> Optional[int]:
    """The IJG quality (1..100) whose tables best match a JPEG file's quantisation tables.

    ``quantization`` is Pillow's ``Image.quantization`` (or ``LoadedImage.jpeg_quantization``):
    table id -> 64 values. Pillow >= 8 gives them in natural (row-major) order, older versions
    in zigzag (file) order; both are tried and the better fit wins. Table 0 is matched with the
    standard luminance table, table 1 (if any) with the chrominance one, in log space, so files
    written by libjpeg (Pillow, most software) read back exactly; other encoders' custom tables
    give the nearest equivalent quality. None when there is no usable table.
    """
    if not quantization:
        return None
    try:
        tabs = {int(k): np.asarray(v, np.float64).reshape(-1) for k, v in dict(quantization).items()}
    except (TypeError, ValueError):
        return None
    ids = [i for i in (0, 1) if i in tabs and tabs[i].size == 64 and np.all(tabs[i] >= 1)]
    if not ids:
        return None
    best = None
    for order in (np.arange(64), np.argsort(_ZIGZAG)):  # natural, then zigzag -> natural
        err = sum(np.abs(np.log(_IJG[:, i, :]) - np.log(tabs[i][order])[None]).sum(1) for i in ids)
        q = int(np.argmin(err))
        if best is None or err[q] < best[0]:
            best = (err[q], q + 1)
    return best[1]


def _luma(a: np.ndarray) -> np.ndarray:
    return a[..., 0] if a.shape[-1] == 1 else a[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)


def _grid_profile(y: np.ndarray):
    """(ratio, z) per direction: mean |difference| across 8x8 grid lines vs inside blocks."""
    out = []
    for d in (np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0)).T):
        n = (d.shape[1] // 8) * 8
        d = d[:, :n]
        cap = np.quantile(d[::4, ::4], 0.9) + 1e-6  # strong edges must not dominate
        p = np.minimum(d, cap).reshape(d.shape[0], -1, 8).mean((0, 1))
        inner = p[:7]  # differences x[8k+j+1] - x[8k+j], j < 7; p[7] crosses the grid line
        out.append((p[7] / max(inner.mean(), 1e-12), (p[7] - inner.mean()) / max(inner.std(ddof=1), 1e-12)))
    return out


def blockiness(img01) -> float:
    """JPEG blockiness of a decoded image: how much stronger luma steps are across the 8x8
    grid lines than inside the blocks (geometric mean of the horizontal and vertical ratios).

    ≈1.0 (0.95..1.07 measured) for images without blocking; 1.1..1.5 for JPEG q75..q30 of
    photos, more for flat content or lower quality. Assumes the grid starts at the top-left
    pixel, as in a decoded JPEG that was not cropped or resized since. Edges are capped at the
    90th percentile so a few strong edges cannot fake it. 1.0 for images under 16x16.
    """
    y = _luma(_as_image(img01))
    if min(y.shape) < 16:
        return 1.0
    (rh, _), (rv, _) = _grid_profile(y)
    return float(math.sqrt(rh * rv))


# Median blockiness of JPEGs of photos (2-4x bicubic downscales of CBSD432 training photos)
# at each quality (see the calibration note in estimate_jpeg_quality_from_pixels).
_BLOCK_Q = np.array([10, 20, 30, 40, 50, 60, 75, 85, 90])
_BLOCK_R = np.array([1.90, 1.54, 1.40, 1.32, 1.27, 1.22, 1.13, 1.06, 1.03])
_BLOCK_MIN_RATIO = 1.05
_BLOCK_MIN_Z = 2.0
# JPEG blocking steps both ways; a pattern that repeats every 8 px in one direction (a facade,
# a fence) steps one way. The weaker direction's excess ratio must be >= this share of the
# stronger's: on JPEG'd training photos it keeps 98% of the q30/q50 detections.
_BLOCK_MIN_BALANCE = 0.2


def estimate_jpeg_quality_from_pixels(img01) -> Optional[int]:
    """A rough JPEG quality from blocking in decoded pixels, or None without clear evidence.

    Needs both directions to show steps on the 8x8 grid: ratio >= 1.05 and the grid column
    standing out from the 7 in-block positions by >= 2 of their standard deviations, and
    the two directions' excesses within a factor of 5 of each other (blocking is 2-D). The
    ratio is mapped to a quality with the median curve of JPEG'd photos, rounded to 5; it
    varies with content (q30 reads 25..55 on most photos, 10 on a flat one), so read it as a
    rough class. Above q≈75 it is mostly None, as for images resized or cropped after coding.
    """
    y = _luma(_as_image(img01))
    if min(y.shape) < 32:
        return None
    (rh, zh), (rv, zv) = _grid_profile(y)
    ratio = math.sqrt(rh * rv)
    if min(rh, rv) < 1.0 or ratio < _BLOCK_MIN_RATIO or min(zh, zv) < _BLOCK_MIN_Z:
        return None
    if min(rh, rv) - 1.0 < _BLOCK_MIN_BALANCE * (max(rh, rv) - 1.0):
        return None
    q = float(np.interp(-ratio, -_BLOCK_R, _BLOCK_Q))
    return int(min(max(5 * round(q / 5), 5), 90))


# ---------------------------------------------------------------------------------------------
# softness


# log(power in 0.28..0.42 cycles/px / power in 0.10..0.22) of luma: median over bicubic
# 2-4x downscales of CBSD432 training photos (area and Lanczos downscales: -2.0..-2.1, not
# separable from it). Gaussian blur of std s LR pixels before the downscale lowers it by
# _SOFT_KAPPA * s^2 (fitted: 3.6..3.8 for every scale and s in 0.2..1.2).
_SOFT_REF = -2.2
_SOFT_KAPPA = 3.7
_SOFT_DEADZONE = 0.8  # clean photos spread ±0.5 around _SOFT_REF (10..90%)


def _soft_log_ratio(a: np.ndarray, noise_sigma: float) -> Optional[float]:
    y = _luma(a).astype(np.float64)
    if min(y.shape) < 32:
        return None
    power = 0.0
    tiles = _tiles(y[..., None], 256, _MAX_PIXELS)
    for t in tiles:
        t = t[..., 0] - t.mean()
        win = np.outer(np.hanning(t.shape[0]), np.hanning(t.shape[1]))
        power = power + np.abs(np.fft.rfft2(t * win)) ** 2 / (win ** 2).sum()
    power = power / len(tiles)
    fy = np.fft.fftfreq(t.shape[0])[:, None]
    fx = np.fft.rfftfreq(t.shape[1])[None]
    f = np.hypot(fx, fy)
    # white noise and 8-bit rounding (1/12 LSB²) put a floor under both bands
    white = (noise_sigma ** 2 + 1 / (12 * 255 ** 2)) * (0.447 if a.shape[-1] == 3 else 1.0)
    mid = power[(f >= 0.10) & (f < 0.22)].mean() - white
    high = power[(f >= 0.28) & (f < 0.42)].mean() - white
    if mid <= 4 * white:  # no mid frequencies to compare with (flat, or a strong upscale)
        return None
    return math.log(max(high, 1e-6 * mid) / mid)


def estimate_softness(img01, noise_sigma: Optional[float] = None) -> float:
    """Extra Gaussian blur (std, LR pixels) beyond what a PIL-bicubic downscale of a photo has.

    Compares the luma power spectrum at high frequencies (0.28..0.42 cycles/px) with mid ones
    (0.10..0.22), after removing the white noise power of ``noise_sigma`` (estimated if None),
    against the median ratio of bicubic-downscaled photos. Natural images differ, so only a
    clear deficit counts: below ≈0.45 px it returns 0. Measured on 2-4x downscales of photos:
    blur of 1.2 HR px before a 2x bicubic downscale (0.6 LR px) reads ≈0.6; the same before 4x
    (0.3 LR px) is not detected. Bicubic, area and Lanczos downscales cannot be told apart from
    one image (their spectra differ less than photos do), hence ``kernel="unknown"`` in
    :func:`estimate`. JPEG removes high frequencies too: do not use this on JPEG'd input.
    Images with (almost) nothing at mid frequencies, flat ones or strong upscales, give 0.
    """
    a = _as_image(img01)
    if noise_sigma is None:
        noise_sigma = estimate_noise_sigma(a)
    r = _soft_log_ratio(a, float(noise_sigma))
    if r is None or _SOFT_REF - r < _SOFT_DEADZONE:
        return 0.0
    return float(round(math.sqrt((_SOFT_REF - r) / _SOFT_KAPPA), 2))


# ---------------------------------------------------------------------------------------------
# all together


def estimate(img01, *, jpeg_tables: Optional[Mapping] = None) -> Degradation:
    """Estimates an LR image's degradation: a :class:`Degradation` with ``source="estimated"``.

    ``noise_sigma`` from :func:`estimate_noise_sigma`; ``jpeg_quality`` from the file's
    quantisation tables when given (``LoadedImage.jpeg_quantization``: exact), else from
    blocking (:func:`estimate_jpeg_quality_from_pixels`: rough, None unless clear);
    ``blur_sigma`` from :func:`estimate_softness`, skipped (0) for JPEG input, whose missing
    high frequencies would read as blur; ``kernel`` is always ``"unknown"`` (bicubic, area and
    Lanczos cannot be told apart from one image). On JPEG input ``noise_sigma`` counts only
    the noise that survived compression (see :func:`estimate_noise_sigma`). Large images are
    read in tiles: ≈0.15 s for 1920x1080 (busy 2-core CPU).
    """
    a = _as_image(img01)
    noise = estimate_noise_sigma(a)
    q = jpeg_quality_from_tables(jpeg_tables) if jpeg_tables else None
    if q is None:
        q = estimate_jpeg_quality_from_pixels(a)
    blur = 0.0 if q is not None else estimate_softness(a, noise_sigma=noise)
    return Degradation(noise, q, "unknown", blur, "estimated")
