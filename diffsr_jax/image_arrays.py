"""Images at the API's edge: numpy / PIL inputs in, float RGB in [0, 1] for the pipeline, and the
result back in the input's form (dtype, channel count, alpha, PIL mode). Refuses what would be
silently wrong: out-of-range or non-finite floats, integer data where floats are expected.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from diffsr_jax import targets


def as_array(img) -> np.ndarray:
    """An image given to :func:`upscale` (a numpy array or a PIL image) as a numpy array."""
    return pil_to_array(img) if isinstance(img, Image.Image) else np.asarray(img)


def to_float_rgb(img: np.ndarray):
    """→ (float RGB in [0,1], alpha or None, fn mapping a float RGB result back to the input's form).

    uint8 / uint16 are divided by 255 / 65535; a float image must already be finite and in [0, 1]
    (± RANGE_TOLERANCE, clipped): ValueError otherwise, as for no pixels or another shape."""
    if img.dtype == np.uint8:
        scale = 255.0
    elif img.dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(img.dtype, np.floating):
        scale = 1.0
    else:
        raise ValueError(f"unsupported image dtype {img.dtype}")
    x = img.astype(np.float32) / scale
    gray = x.ndim == 2 or x.shape[-1] in (1, 2)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"expected HxW, HxWx1..4 image, got shape {img.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"the image has no pixels (shape {img.shape}): nothing to upscale")
    if scale == 1.0:  # a float image must be finite and in [0, 1] (0-255 floats would saturate)
        _check_unit_range(img, "the float image")
        x = np.clip(x, 0.0, 1.0)
    alpha = x[..., -1] if x.shape[-1] in (2, 4) else None
    rgb = x[..., :3] if x.shape[-1] >= 3 else np.repeat(x[..., :1], 3, axis=-1)

    def back(out: np.ndarray, a, out_hw) -> np.ndarray:
        y = out.mean(axis=-1, keepdims=True) if gray else out
        if a is not None:
            a_up = np.asarray(jax.image.resize(jnp.asarray(a), out_hw, method="bicubic"))
            y = np.concatenate([y, np.clip(a_up, 0, 1)[..., None]], axis=-1)
        if img.ndim == 2:
            y = y[..., 0]
        if scale == 1.0:
            return y.astype(img.dtype)
        return np.round(np.clip(y, 0, 1) * scale).astype(img.dtype)

    return rgb, alpha, back


#: How far a float image may stray outside [0, 1] (float rounding) before it is refused; values
#: within it are clipped to [0, 1].
RANGE_TOLERANCE = 1e-3


def _check_unit_range(x: np.ndarray, what: str) -> np.ndarray:
    """Float ``x`` checked finite and in [0, 1] (± RANGE_TOLERANCE, then clipped); ValueError
    with a hint at the likely mix-up (0-255 or [-1, 1] data) otherwise."""
    finite = np.isfinite(x)
    if not finite.all():
        raise ValueError(f"{what} has {int(x.size - np.count_nonzero(finite)):,} NaN or infinite values; "
                         "it must be finite, in [0, 1]")
    lo, hi = float(x.min()), float(x.max())
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        if hi > 1.0 and lo >= -RANGE_TOLERANCE and hi <= 65535.0 + RANGE_TOLERANCE:
            hint = ("it looks like 0-255 (or 0-65535) data: divide by 255 (65535), or pass the uint8 / "
                    "uint16 array to diffsr_jax.upscale")
        elif lo < 0.0 and lo >= -1.0 - RANGE_TOLERANCE and hi <= 1.0 + RANGE_TOLERANCE:
            hint = "it looks like [-1, 1] data: map it with (x + 1) / 2"
        else:
            hint = "rescale it, or clip it with np.clip(image, 0, 1)"
        raise ValueError(f"{what} values must be in [0, 1], got [{lo:.6g}, {hi:.6g}]; {hint}")
    if lo < 0.0 or hi > 1.0:
        x = np.clip(x, 0.0, 1.0)
    return x


def check_float_image(image) -> np.ndarray:
    """:func:`upscale_array`'s input as float32 HxWx3 in [0, 1], checked: TypeError for integer
    (uint8 / uint16), bool or non-numeric data and PIL images; ValueError (targets.TargetError for
    the sizes) for another shape, no pixels, more than targets.MAX_INPUT_PIXELS, NaN/inf or values
    outside [0, 1] beyond RANGE_TOLERANCE (values within it are clipped)."""
    if isinstance(image, Image.Image):
        raise TypeError("upscale_array takes a float array HxWx3 in [0, 1], not a PIL image: use "
                        "diffsr_jax.upscale, or np.asarray(image.convert('RGB'), np.float32) / 255")
    a = np.asarray(image)
    if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        hint = {np.dtype(np.uint8): "255", np.dtype(np.uint16): "65535"}.get(a.dtype, "its maximum value")
        raise TypeError(f"upscale_array takes a float image in [0, 1], got {a.dtype} values: divide by {hint} "
                        f"(e.g. image.astype(np.float32) / {hint}) or use diffsr_jax.upscale, which takes "
                        "uint8 / uint16 images")
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"upscale_array takes a float image in [0, 1], got dtype {a.dtype}")
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {a.shape}")
    targets.check_input_size(a.shape[:2])
    return _check_unit_range(a, "the image").astype(np.float32, copy=False)


def pil_to_array(im: Image.Image) -> np.ndarray:
    """A PIL image as the array :func:`upscale` works on: L, LA, RGB, RGBA as uint8, 16-bit
    grayscale (I;16*) as uint16, 32-bit integer (I) as uint16 when its values fit, float (F) as
    float32 (checked to be in [0, 1] later); 1 → L, P/PA → RGB(A), premultiplied → LA / RGBA,
    others (CMYK, YCbCr, LAB, HSV) → RGB."""
    m = im.mode
    if m in ("L", "LA", "RGB", "RGBA", "F"):
        return np.asarray(im)
    if m.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)  # big-endian I;16B → native order
    if m == "I":
        a = np.asarray(im)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ValueError("a 32-bit integer (mode I) PIL image with values outside 0..65535 is not supported")
        return a.astype(np.uint16)
    if m == "1":
        return np.asarray(im.convert("L"))
    if m in ("P", "PA"):
        return np.asarray(im.convert("RGBA" if (m == "PA" or "transparency" in im.info) else "RGB"))
    if m in ("La", "RGBa"):
        return np.asarray(im.convert(m.upper()))
    return np.asarray(im.convert("RGB"))
