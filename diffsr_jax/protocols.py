"""How LR and HR images are made: 8-bit conversion, PIL resizes and the evaluation protocols.

One definition used by evaluation (Table 1), calibration (the noise table) and the PRF analysis,
so that all three see the same images. Everything here is numpy + Pillow (no JAX).

Protocols (``PROTOCOLS``), both on 8-bit RGB so HR and LR are exactly what saving them as PNG
would give (the form published SR test sets take):

- ``paper`` (§4): centre crop to a square, PIL-bicubic resize to 256², then degrade by a PIL
  bicubic downscale to round(256/s) per side (PIL antialiases when shrinking); every method
  restores 256².
- ``native``: no crop and no 256² cap; LR = PIL bicubic to (round(H/s), round(W/s)), every method
  restores exactly H×W.

Degraded LR inputs (issue 31, ``benchmarks/degradations.py``): :data:`LR_DEGRADATIONS`, parsed by
:func:`parse_lr_degradation` ("noise10", "jpeg75", "area", "blur1.2", "jpeg75+noise5", "clean"),
made by :func:`degrade_lr_u8` / :func:`degraded_paper_pair` (seeded noise, PIL JPEG with its
quantisation tables, box downscale, Gaussian blur of the HR).
"""

from __future__ import annotations

import io
import math
import re
import zlib
from typing import NamedTuple, Optional

import numpy as np
from PIL import Image

EVAL_SIZE = 256

PIL_FILTERS = {"nearest": Image.NEAREST, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def to_uint8(x01) -> np.ndarray:
    """Float image in [0, 1] → uint8 (NaN → 0, clipped, rounded half to even). Float arrays are
    scaled in their own precision; anything else in float64."""
    x = np.asarray(x01)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return np.round(np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)


def to_uint16(x01) -> np.ndarray:
    """Float image in [0, 1] → uint16, as :func:`to_uint8` does for 8 bits."""
    x = np.asarray(x01)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return np.round(np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0) * 65535.0).astype(np.uint16)


def center_crop_square(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return img[y:y + s, x:x + s]


def lr_size(hr_hw: tuple, scale: float) -> tuple[int, int]:
    """round(H/s) × round(W/s), at least 1 pixel."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    return tuple(max(1, int(round(n / float(scale)))) for n in hr_hw[:2])


def pil_resize_u8(img_u8: np.ndarray, hw: tuple, resample=Image.BICUBIC) -> np.ndarray:
    """PIL resize of an 8-bit RGB image to (H, W) (bicubic antialiases when shrinking)."""
    return np.asarray(Image.fromarray(img_u8, "RGB").resize((int(hw[1]), int(hw[0])), resample))


def pil_resize_float(img01: np.ndarray, out_hw: tuple, method: str = "bicubic") -> np.ndarray:
    """Per-channel PIL resize in float32 ("F" mode: no 8-bit rounding), clipped to [0, 1]."""
    size = (int(out_hw[1]), int(out_hw[0]))
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(img01[..., c], np.float32), "F")
                        .resize(size, PIL_FILTERS[method])) for c in range(img01.shape[-1])]
    return np.clip(np.stack(chans, axis=-1), 0.0, 1.0)


def check_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {img.shape}")
    return img


def paper_hr_u8(hr_rgb01: np.ndarray, size: int = EVAL_SIZE) -> np.ndarray:
    """The paper protocol's 8-bit HR image: centre square crop, PIL bicubic to size²."""
    return pil_resize_u8(to_uint8(center_crop_square(check_rgb(hr_rgb01))), (size, size))


def paper_protocol(hr_rgb01: np.ndarray, scale: float, size: int = EVAL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(hr size×size, lr round(size/s)²) as float [0, 1]: centre crop → PIL bicubic to size² →
    PIL bicubic (antialiased) down by s, all on 8-bit RGB."""
    hr_u8 = paper_hr_u8(hr_rgb01, size)
    lr_u8 = pil_resize_u8(hr_u8, lr_size((size, size), scale))
    return hr_u8.astype(np.float32) / 255.0, lr_u8.astype(np.float32) / 255.0


def native_protocol(hr_rgb01: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(hr at its own size, lr round(H/s)×round(W/s)): no crop, no 256² cap, on 8-bit RGB."""
    hr_u8 = to_uint8(check_rgb(hr_rgb01))
    lr_u8 = pil_resize_u8(hr_u8, lr_size(hr_u8.shape, scale))
    return hr_u8.astype(np.float32) / 255.0, lr_u8.astype(np.float32) / 255.0


PROTOCOLS = {"paper": paper_protocol, "native": native_protocol}

PROTOCOL_TEXT = {
    "paper": "centre crop → 256² PIL bicubic → PIL bicubic down to round(256/s)², restore 256², 8-bit HR/LR",
    "native": "whole image, PIL bicubic down to round(H/s)×round(W/s), restore exactly H×W, 8-bit HR/LR",
}


def pil_downscale_u8(hr01, scale: float) -> np.ndarray:
    """N×H×W×3 HR batch in [0, 1] → its 8-bit PIL-bicubic LR batch, round(H/s) × round(W/s):
    exactly the LR images of the evaluation protocols."""
    hr01 = np.asarray(hr01)
    lr_hw = lr_size(hr01.shape[1:3], float(scale))
    return np.stack([pil_resize_u8(im, lr_hw) for im in to_uint8(hr01)])


# ---------------------------------------------------------------------------------------------
# The same degradations as model-space batches, for the PRF analysis and the calibration sweep.
# JAX is imported inside these two functions only: the rest of this module stays importable
# without it (the CLI and image_io import it at start-up).

DEGRADATIONS = ("jax", "pil")    # how calibration LR images are made (see downscale)


def downscale(hr01, scale: float, degradation: str = "jax"):
    """HR batch in [0, 1] → its bicubic LR, round(H/s) × round(W/s), in the model's [-1, 1] range
    (a JAX array).

    ``degradation``: ``"jax"`` = float antialiased bicubic (jax.image.resize); ``"pil"`` = PIL
    bicubic on 8-bit RGB, kept at 8 bits: exactly the LR images of the evaluation protocols, so a
    calibration can see the inputs Table 1 feeds the model."""
    import jax
    import jax.numpy as jnp

    if degradation not in DEGRADATIONS:
        raise ValueError(f"degradation must be one of {', '.join(DEGRADATIONS)}, got {degradation!r}")
    n, h, w, c = hr01.shape
    lr_hw = lr_size((h, w), float(scale))
    if degradation == "jax":
        return jax.image.resize(jnp.asarray(hr01) * 2.0 - 1.0, (n, *lr_hw, c), method="bicubic", antialias=True)
    return jnp.asarray(pil_downscale_u8(hr01, scale).astype(np.float32) / 127.5 - 1.0)


def degrade(hr01, scale: float, degradation: str = "jax"):
    """HR batch in [0, 1] → its LR (see :func:`downscale`) upsampled back to the HR size by the
    pipeline's own bicubic, in the model's [-1, 1] range."""
    from diffsr_jax import pipeline

    return pipeline.upsample(downscale(hr01, scale, degradation), hr01.shape[1:3])


# ---------------------------------------------------------------------------------------------
# Degraded LR inputs (issue 31): the paper protocol's LR made the way real photos are, for
# benchmarks/degradations.py. Pure numpy + Pillow on 8-bit RGB, seeded; "clean" is exactly
# paper_protocol's LR. Names: "clean", or "+"-joined parts, each at most once, in any order:
# "noise<σ>" (additive Gaussian, σ in 8-bit units, on the LR), "jpeg<Q>" (PIL JPEG quality Q,
# 4:2:0), "area" (PIL box downscale of the HR instead of bicubic), "blur<σ>" (Gaussian blur of
# the HR, σ in HR pixels, before the downscale). Applied as a camera would: blur → downscale
# → noise → JPEG ("jpeg75+noise5" is noise first, then compression).

#: The set of issue 31's benchmark.
LR_DEGRADATIONS = ("clean", "noise5", "noise10", "noise15", "noise25", "jpeg30", "jpeg50", "jpeg75",
                   "jpeg90", "area", "blur0.8", "blur1.2", "blur1.6", "jpeg75+noise5")

_LR_PART = re.compile(r"(noise|jpeg|blur)(\d+(?:\.\d+)?)|(area)")


class LRDegradation(NamedTuple):
    """A parsed degradation name (see :func:`parse_lr_degradation`)."""
    name: str                      # as given, lower case, without spaces
    noise: float = 0.0             # additive Gaussian σ on the 8-bit LR (0..255 units)
    jpeg: Optional[int] = None     # JPEG quality 1..100, None = no JPEG
    area: bool = False             # box (area-average) downscale instead of PIL bicubic
    blur: float = 0.0              # Gaussian σ in HR pixels before the downscale

    def spec(self, scale: float) -> str:
        """The same degradation in the grammar of ``diffsr_jax.degradation.parse_degradation``
        (blur in LR pixels: σ / scale), e.g. ``"noise=5,jpeg=75"``; ``"clean"`` for none."""
        items = ([f"noise={self.noise:g}"] if self.noise else []) + ([f"jpeg={self.jpeg}"] if self.jpeg else []) \
            + (["kernel=area"] if self.area else []) + ([f"blur={self.blur / float(scale):.3g}"] if self.blur else [])
        return ",".join(items) or "clean"


def parse_lr_degradation(name) -> LRDegradation:
    """"noise10" | "jpeg75" | "area" | "blur1.2" | "jpeg75+noise5" | "clean" → :class:`LRDegradation`.
    ValueError for anything else (unknown part, repeated part, out of range)."""
    if isinstance(name, LRDegradation):
        return name
    s = "".join(str(name).split()).lower()
    if s == "clean":
        return LRDegradation("clean")
    fields: dict = {}
    for part in s.split("+"):
        m = _LR_PART.fullmatch(part)
        if not m:
            raise ValueError(f"unknown LR degradation {part!r} in {name!r}: use clean, noise<σ>, jpeg<Q>, area, "
                             f"blur<σ> or several joined by '+' (e.g. jpeg75+noise5)")
        key = m.group(1) or "area"
        if key in fields:
            raise ValueError(f"{key} given twice in {name!r}")
        if key == "area":
            fields[key] = True
            continue
        v = float(m.group(2))
        if key == "jpeg" and not (v == int(v) and 1 <= v <= 100):
            raise ValueError(f"JPEG quality must be an integer 1..100 in {name!r}")
        if key != "jpeg" and not 0 < v <= (255 if key == "noise" else 20):
            raise ValueError(f"{key} σ out of range in {name!r} (noise: 0 < σ ≤ 255; blur: 0 < σ ≤ 20 px)")
        fields[key] = int(v) if key == "jpeg" else v
    return LRDegradation(s, **fields)


def gaussian_blur01(img01: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (std ``sigma`` pixels, kernel radius ceil(4σ), symmetric edges, as
    scipy's ``mode="reflect"``) of a float HxWxC image, in float64."""
    x = np.asarray(img01, np.float64)
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(4.0 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    for axis in (0, 1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (r, r)
        p = np.pad(x, pad, mode="symmetric")
        n = x.shape[axis]
        x = sum(w * np.take(p, np.arange(i, i + n), axis=axis) for i, w in enumerate(k))
    return x


def jpeg_roundtrip_u8(img_u8: np.ndarray, quality: int) -> tuple[np.ndarray, dict]:
    """8-bit RGB → PIL JPEG at ``quality`` (4:2:0) → decoded 8-bit RGB, and the file's quantisation
    tables as ``image_io`` reads them from a user's file: ``{table id: [64 ints]}``."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img_u8), "RGB").save(buf, "JPEG", quality=int(quality), subsampling="4:2:0")
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        tables = {int(k): [int(v) for v in t] for k, t in dict(im.quantization).items()}
        return np.asarray(im.convert("RGB")), tables


def lr_degradation_seed(seed: int, *keys) -> int:
    """A 32-bit seed from a base seed and any keys (image name, scale, ...): stable across runs and
    machines (CRC32 of the keys' text, not Python's salted hash)."""
    text = "\x1f".join(str(k) for k in keys)  # str: np.float64(2.7) and 2.7 give the same seed
    return int(np.random.SeedSequence([int(seed), zlib.crc32(text.encode())]).generate_state(1)[0])


def degrade_lr_u8(hr_u8: np.ndarray, scale: float, degradation, seed=0) -> tuple[np.ndarray, Optional[dict]]:
    """An 8-bit HR image → (its degraded 8-bit LR, round(H/s) × round(W/s); the JPEG's
    quantisation tables, or None when the LR is not JPEG'd). ``seed``: an int or a
    ``np.random.Generator``; the noise is ``σ · N(0, 1)`` from it, so one seed gives the same draw
    at every σ (and with or without JPEG after it), rounded and clipped to 8 bits."""
    d = parse_lr_degradation(degradation)
    hr_u8 = check_rgb(hr_u8)
    if d.blur:
        hr_u8 = to_uint8(gaussian_blur01(hr_u8.astype(np.float64) / 255.0, d.blur))
    lr = pil_resize_u8(hr_u8, lr_size(hr_u8.shape, scale), Image.BOX if d.area else Image.BICUBIC)
    if d.noise:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        noisy = lr.astype(np.float64) + d.noise * rng.standard_normal(lr.shape)
        lr = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    tables = None
    if d.jpeg:
        lr, tables = jpeg_roundtrip_u8(lr, d.jpeg)
    return lr, tables


class DegradedPair(NamedTuple):
    hr_u8: np.ndarray                    # size × size 8-bit HR (the paper protocol's)
    lr_u8: np.ndarray                    # its degraded 8-bit LR, round(size/s)²
    jpeg_quantization: Optional[dict]    # {table id: [64 ints]} for JPEG'd LRs, else None


def degraded_paper_pair(hr_rgb01: np.ndarray, scale: float, degradation, seed=0,
                        size: int = EVAL_SIZE) -> DegradedPair:
    """The paper protocol with a degraded LR: centre crop → PIL bicubic to size² (8-bit HR) →
    :func:`degrade_lr_u8`. ``"clean"`` gives exactly :func:`paper_protocol`'s pair."""
    hr_u8 = paper_hr_u8(hr_rgb01, size)
    return DegradedPair(hr_u8, *degrade_lr_u8(hr_u8, scale, degradation, seed))
