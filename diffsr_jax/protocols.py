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
"""

from __future__ import annotations

import math

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
