"""What size to make: parsing ``--target`` / ``--noise`` and planning the output size.

Pure functions, no JAX, no I/O. Every user mistake raises :class:`TargetError` (a ``ValueError``)
whose message can be shown as is.

Target grammar (case-insensitive, surrounding spaces ignored):

* a scale factor: ``2``, ``2x``, ``2.7x``, ``x3``, ``2.7``, ``.5x`` (a positive finite decimal,
  at most :data:`MAX_SCALE`);
* an exact size ``WIDTHxHEIGHT``: ``1920x1080``, ``1920X1080``, ``1920*1080`` (whole pixels);
* a name: ``720p`` = 1280x720, ``1080p``/``fhd`` = 1920x1080, ``1440p``/``2k``/``qhd`` =
  2560x1440, ``4k``/``2160p``/``uhd`` = 3840x2160.

How a size is reached (``fit``), for an input of ``h x w`` and a box of ``W x H``:

* ``contain`` (default): one uniform scale so the whole image fits inside the box; the aspect
  ratio is kept (to within rounding, < 1 px) and one side equals the box;
* ``cover``: one uniform scale so the image covers the box, then a centre crop to exactly
  ``W x H``; the aspect ratio of what is kept is never distorted;
* ``stretch``: exactly ``W x H``, distorting if the aspect ratios differ.

Noise grammar: ``auto`` (the model's default for the scale), a fraction ``0.35`` of the
diffusion process (0 <= f <= 1), or an explicit step ``t=350`` (an integer >= 0).
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, Optional, Union

__all__ = [
    "MAX_INPUT_PIXELS",
    "MAX_OUTPUT_PIXELS",
    "MAX_SCALE",
    "NAMED_SIZES",
    "FITS",
    "Target",
    "OutputPlan",
    "TargetError",
    "parse_target",
    "parse_noise",
    "output_size",
    "check_input_size",
    "check_output_size",
    "as_target",
    "scale_target",
    "apply_crop",
]

#: Largest output the library will produce (model output, before any ``cover`` crop): 8192x8192.
MAX_OUTPUT_PIXELS = 8192 * 8192
#: Largest input it will read (larger inputs would only make sense with ``--allow-downscale``).
MAX_INPUT_PIXELS = 8192 * 8192

#: Largest scale factor accepted (a bigger number is almost surely a typo, e.g. "1080" for 1080p).
MAX_SCALE = 64

#: Named sizes, as (width, height).
NAMED_SIZES: dict[str, tuple[int, int]] = {
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "fhd": (1920, 1080),
    "1440p": (2560, 1440),
    "2k": (2560, 1440),
    "qhd": (2560, 1440),
    "4k": (3840, 2160),
    "2160p": (3840, 2160),
    "uhd": (3840, 2160),
}

FITS = ("contain", "cover", "stretch")
Fit = Literal["contain", "cover", "stretch"]

TARGET_HELP = (
    "a scale (2, 2x, 2.7x, x3), a size WIDTHxHEIGHT (1920x1080) or a name "
    "(720p, 1080p/fhd, 1440p/2k/qhd, 4k/2160p/uhd)"
)
NOISE_HELP = "'auto', a fraction between 0 and 1 (0.35) or a step 't=350'"


class TargetError(ValueError):
    """A target, fit, noise setting or size limit the user asked for is invalid or impossible."""


@dataclass(frozen=True)
class Target:
    """A parsed ``--target``: either ``kind == "scale"`` (``scale`` set) or ``"size"``."""

    kind: Literal["scale", "size"]
    scale: Optional[float] = None
    width: Optional[int] = None
    height: Optional[int] = None
    name: Optional[str] = None  # "4k" etc. when given by name
    # Exact decimal value of the scale as typed ("2.7" -> 27/10), so 10 * 2.7 is exactly 27.
    scale_exact: Optional[Fraction] = None

    @property
    def label(self) -> str:
        """A short, file-name-safe description: ``2x``, ``2.7x``, ``1920x1080``, ``4k``."""
        if self.kind == "scale":
            return f"{_fmt_decimal(self.scale_exact or Fraction(self.scale))}x"
        if self.name:
            return self.name
        return f"{self.width}x{self.height}"

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.label


@dataclass(frozen=True)
class OutputPlan:
    """How to go from an input of ``in_hw`` to the final output.

    ``out_h x out_w`` is what the model produces (the bicubic-upsampled size it refines). When
    ``crop`` is set (``cover`` only) the caller then takes the centre crop
    ``[top:top+height, left:left+width]`` of that, giving ``final_hw``.
    """

    in_hw: tuple[int, int]
    out_h: int
    out_w: int
    crop: Optional[tuple[int, int, int, int]]  # (top, left, height, width) or None
    fit: str

    @property
    def out_hw(self) -> tuple[int, int]:
        return (self.out_h, self.out_w)

    @property
    def final_hw(self) -> tuple[int, int]:
        if self.crop is not None:
            return (self.crop[2], self.crop[3])
        return (self.out_h, self.out_w)

    @property
    def scale_y(self) -> float:
        return self.out_h / self.in_hw[0]

    @property
    def scale_x(self) -> float:
        return self.out_w / self.in_hw[1]

    @property
    def uniform(self) -> bool:
        """True when the image is scaled by one factor (to within rounding: < 1 px each side)."""
        h, w = self.in_hw
        s = self.scale_x
        return abs(h * s - self.out_h) < 1.0 and abs(w * self.scale_y - self.out_w) < 1.0

    @property
    def scale(self) -> float:
        """The effective scale: the geometric mean of the two (equal for uniform scaling)."""
        return math.sqrt(self.scale_x * self.scale_y)

    def scale_label(self) -> str:
        """``4.00x`` for uniform scaling, ``w 4.00x, h 2.00x`` otherwise."""
        if self.uniform:
            return f"{self.scale_x:.2f}x"
        return f"w {self.scale_x:.2f}x, h {self.scale_y:.2f}x"

    def crop_box(self) -> Optional[tuple[slice, slice]]:
        if self.crop is None:
            return None
        top, left, h, w = self.crop
        return (slice(top, top + h), slice(left, left + w))


# ---------------------------------------------------------------------------------------------
# parsing

_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)"
_SCALE_RE = re.compile(rf"^(?:x\s*({_NUM})|({_NUM})\s*x?)$")
_SIZE_RE = re.compile(r"^(\S+?)\s*[x*×]\s*(\S+)$")
_INT_RE = re.compile(r"^\d+$")


def _fmt_decimal(f: Fraction) -> str:
    if f.denominator == 1:
        return str(f.numerator)
    s = f"{float(f):.6f}".rstrip("0").rstrip(".")
    return s


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def parse_target(spec: str) -> Target:
    """Parses a target spec (see the module docstring). Raises :class:`TargetError`."""
    if not isinstance(spec, str):
        raise TargetError(f"invalid target {spec!r}: expected text, {TARGET_HELP}")
    raw = spec
    s = spec.strip().lower()
    if not s:
        raise TargetError(f"empty target: expected {TARGET_HELP}")
    if s in NAMED_SIZES:
        w, h = NAMED_SIZES[s]
        return Target(kind="size", width=w, height=h, name=s)
    if re.fullmatch(r"x?\s*[+-]?(nan|inf|infinity)\s*x?", s):
        raise TargetError(f"invalid target {raw!r}: the scale must be a finite number")
    if s.startswith("-") or re.search(r"[x*×]\s*-", s):
        raise TargetError(f"invalid target {raw!r}: scale and size must be positive")

    m = _SCALE_RE.match(s)
    if m:
        text = m.group(1) or m.group(2)
        value = Fraction(text)
        if value <= 0:
            raise TargetError(f"invalid target {raw!r}: the scale must be greater than 0")
        if value > MAX_SCALE:
            raise TargetError(
                f"invalid target {raw!r}: a scale of {_fmt_decimal(value)} is above the maximum of "
                f"{MAX_SCALE} (for a size write WIDTHxHEIGHT, e.g. 1920x1080, or a name like 1080p)"
            )
        return Target(kind="scale", scale=float(value), scale_exact=value)

    m = _SIZE_RE.match(s)
    if m:
        a, b = m.group(1), m.group(2)
        if not (_INT_RE.match(a) and _INT_RE.match(b)):
            if re.match(rf"^{_NUM}$", a) and re.match(rf"^{_NUM}$", b):
                raise TargetError(
                    f"invalid target {raw!r}: a size WIDTHxHEIGHT needs whole numbers of pixels"
                )
            raise TargetError(f"invalid target {raw!r}: expected {TARGET_HELP}")
        w, h = int(a), int(b)
        if w < 1 or h < 1:
            raise TargetError(f"invalid target {raw!r}: width and height must be at least 1 pixel")
        if w * h > MAX_OUTPUT_PIXELS:
            raise TargetError(
                f"target {raw!r} is {w}x{h} = {_fmt_int(w * h)} pixels; the limit is "
                f"{_fmt_int(MAX_OUTPUT_PIXELS)} pixels (8192x8192)"
            )
        return Target(kind="size", width=w, height=h)

    raise TargetError(f"invalid target {raw!r}: expected {TARGET_HELP}")


def parse_noise(spec: str) -> tuple[str, Union[float, int, None]]:
    """``auto`` -> ("auto", None); ``0.35`` -> ("fraction", 0.35); ``t=350`` -> ("step", 350)."""
    if not isinstance(spec, str):
        raise TargetError(f"invalid noise {spec!r}: expected {NOISE_HELP}")
    raw = spec
    s = spec.strip().lower()
    if s == "auto":
        return ("auto", None)
    m = re.match(r"^t\s*=\s*(.*)$", s)
    if m:
        v = m.group(1).strip()
        if not _INT_RE.match(v):
            raise TargetError(
                f"invalid noise {raw!r}: the step in 't=N' must be a whole number >= 0"
            )
        return ("step", int(v))
    if re.match(rf"^[+-]?{_NUM}$", s):
        f = float(s)
        if not (0.0 <= f <= 1.0):
            raise TargetError(
                f"invalid noise {raw!r}: a noise fraction must be between 0 and 1 "
                "(use 't=N' for a diffusion step)"
            )
        return ("fraction", f)
    raise TargetError(f"invalid noise {raw!r}: expected {NOISE_HELP}")


# ---------------------------------------------------------------------------------------------
# planning


def _round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def _pixels(value, what: str, spec) -> int:
    """A whole number of pixels >= 1 (an int, a numpy integer or a float like 32.0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"the output {what} must be a whole number of pixels, got {value!r} in {spec!r}")
    if not isinstance(value, numbers.Integral) and not (math.isfinite(value) and int(value) == value):
        raise TargetError(f"the output {what} must be a whole number of pixels, got {value!r} in {spec!r}")
    if int(value) < 1:
        raise TargetError(f"the output {what} must be at least 1 pixel, got {int(value)} in {spec!r}")
    return int(value)


def check_output_size(out_hw, *, max_output_pixels: int = MAX_OUTPUT_PIXELS) -> tuple[int, int]:
    """An explicit output size ``(height, width)`` (numpy's shape order) as two ints.

    TypeError unless it is a pair of numbers; :class:`TargetError` (a ValueError) unless both
    are whole numbers >= 1 and ``height * width`` is at most ``max_output_pixels``.
    """
    if isinstance(out_hw, (str, bytes)) or not hasattr(out_hw, "__len__") or len(out_hw) != 2:
        raise TypeError(f"an output size must be a (height, width) pair of whole numbers, got {out_hw!r}")
    h, w = _pixels(out_hw[0], "height", out_hw), _pixels(out_hw[1], "width", out_hw)
    if h * w > max_output_pixels:
        raise TargetError(
            f"an output of (height, width) = ({h}, {w}) is {_fmt_int(h * w)} pixels; the limit is "
            f"{_fmt_int(max_output_pixels)} pixels"
        )
    return h, w


def scale_target(value) -> Target:
    """A scale target from a number (2, 2.5, np.float32(3)): finite, > 0, at most MAX_SCALE."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"a scale must be a number, got {value!r}")
    if isinstance(value, numbers.Integral):
        exact = Fraction(int(value))
    else:
        f = float(value)
        if not math.isfinite(f):
            raise TargetError(f"invalid target {value!r}: the scale must be a finite number")
        exact = Fraction(repr(f))  # the decimal as written: 2.7 -> 27/10, like the text "2.7"
    if exact <= 0:
        raise TargetError(f"invalid target {value!r}: the scale must be greater than 0")
    if exact > MAX_SCALE:
        raise TargetError(f"invalid target {value!r}: a scale of {_fmt_decimal(exact)} is above the maximum of "
                          f"{MAX_SCALE} (for an exact size give (height, width))")
    return Target(kind="scale", scale=float(exact), scale_exact=exact)


def as_target(spec) -> Target:
    """A :class:`Target` from any form the API accepts.

    * a :class:`Target` (returned as is) or text (:func:`parse_target`: "2x", "1920x1080", "4k");
    * a number: the scale factor (``2``, ``2.5``, ``np.float32(3)``), like the text ``"2.5x"``;
    * a pair ``(height, width)`` of whole numbers (tuple or list), **in numpy's shape order**:
      the size target ``(1080, 1920)`` is the text target ``"1920x1080"`` and, like it, is
      reached according to ``fit`` (``"stretch"`` gives exactly that shape).

    TypeError for anything else (None, a dict, ...); :class:`TargetError` for a bad value.
    """
    if isinstance(spec, Target):
        return spec
    if isinstance(spec, str):
        return parse_target(spec)
    if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
        return scale_target(spec)
    if isinstance(spec, (tuple, list)):
        h, w = check_output_size(spec)
        return Target(kind="size", width=w, height=h)
    raise TypeError(
        f"target must be text ({TARGET_HELP}), a number (the scale) or a (height, width) pair, "
        f"got {spec!r} ({type(spec).__name__})"
    )


def check_input_size(in_hw: tuple[int, int], *, max_input_pixels: int = MAX_INPUT_PIXELS) -> None:
    """Raises :class:`TargetError` when an ``(h, w)`` input is empty or above the pixel limit."""
    h, w = int(in_hw[0]), int(in_hw[1])
    if h < 1 or w < 1:
        raise TargetError(f"the input is {w}x{h} pixels: nothing to upscale")
    if h * w > max_input_pixels:
        raise TargetError(
            f"the input is {w}x{h} = {_fmt_int(h * w)} pixels; the limit is "
            f"{_fmt_int(max_input_pixels)} pixels"
        )


def output_size(
    in_hw: tuple[int, int],
    target: Target,
    fit: str = "contain",
    *,
    allow_downscale: bool = False,
    max_input_pixels: int = MAX_INPUT_PIXELS,
    max_output_pixels: int = MAX_OUTPUT_PIXELS,
) -> OutputPlan:
    """Plans the output for an input of ``in_hw = (height, width)``.

    A scale ``s`` gives ``round(H*s) x round(W*s)`` (``fit`` is ignored). A size is reached
    according to ``fit`` (see the module docstring). The model output must not be smaller than
    the input in either dimension unless ``allow_downscale``; the same size is allowed (a pure
    refine). With ``cover`` the final crop may be smaller than the input: that is cropping, not
    downscaling. Raises :class:`TargetError` for an unknown fit or a size that breaks a limit.
    """
    if fit not in FITS:
        raise TargetError(f"invalid fit {fit!r}: expected one of {', '.join(FITS)}")
    check_input_size(in_hw, max_input_pixels=max_input_pixels)
    h, w = int(in_hw[0]), int(in_hw[1])
    crop = None

    if target.kind == "scale":
        s = target.scale_exact if target.scale_exact is not None else Fraction(repr(target.scale))
        out_h, out_w = _round_half_up(h * s), _round_half_up(w * s)
        used_fit = "scale"
    else:
        W, H = int(target.width), int(target.height)
        used_fit = fit
        if fit == "stretch":
            out_h, out_w = H, W
        else:
            # Compare W/w with H/h exactly, in integers.
            width_limits = W * h <= H * w  # the width ratio is the smaller one
            if fit == "contain":
                if width_limits:
                    out_w, out_h = W, _round_half_up(Fraction(h * W, w))
                else:
                    out_h, out_w = H, _round_half_up(Fraction(w * H, h))
            else:  # cover
                if width_limits:
                    out_h, out_w = H, _round_half_up(Fraction(w * H, h))
                else:
                    out_w, out_h = W, _round_half_up(Fraction(h * W, w))
                out_h, out_w = max(out_h, H), max(out_w, W)
                if (out_h, out_w) != (H, W):
                    crop = ((out_h - H) // 2, (out_w - W) // 2, H, W)

    if out_h < 1 or out_w < 1:
        raise TargetError(
            f"target {target.label} makes the {w}x{h} input {max(out_w, 0)}x{max(out_h, 0)} "
            "pixels: nothing would be left"
        )
    if out_h * out_w > max_output_pixels:
        raise TargetError(
            f"target {target.label} makes the {w}x{h} input {out_w}x{out_h} = "
            f"{_fmt_int(out_h * out_w)} pixels; the limit is {_fmt_int(max_output_pixels)} pixels"
        )
    if not allow_downscale and (out_h < h or out_w < w):
        raise TargetError(
            f"target {target.label} would shrink the {w}x{h} input to {out_w}x{out_h}; "
            "this tool upscales (use --allow-downscale / allow_downscale=True to shrink anyway)"
        )
    return OutputPlan(in_hw=(h, w), out_h=out_h, out_w=out_w, crop=crop, fit=used_fit)


def apply_crop(array, plan: OutputPlan):
    """The final centre crop of ``plan`` (``cover``) applied to an (out_h, out_w, ...) array."""
    box = plan.crop_box()
    if box is None:
        return array
    if tuple(array.shape[:2]) != plan.out_hw:
        raise ValueError(f"expected an array of {plan.out_hw} (h, w), got {tuple(array.shape[:2])}")
    return array[box]
