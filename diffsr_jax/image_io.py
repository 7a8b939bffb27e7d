"""Reading and writing user images for inference, keeping what the model does not see.

The model works on float RGB in [0, 1]. :func:`read_image` gives that plus what is needed to
write the result back faithfully: the alpha channel, whether the file was grayscale and whether
it had 16 bits per sample. :func:`write_image` writes atomically (temp file + ``os.replace``).

16-bit PNG: Pillow opens 16-bit *grayscale* PNG natively (mode ``I;16``) but silently reduces
16-bit RGB, RGBA and gray+alpha PNG to 8 bits. For those, :func:`read_image` decodes the file a
second time with Pillow's own PNG decoder asking for the *low* byte of every sample (the
little-endian 16-bit raw mode applied to big-endian data), and joins the two halves: lossless
16-bit, interlaced files included. If that ever fails (a Pillow change), it falls back to the
8-bit decode and says so in ``LoadedImage.notes``. Pillow cannot write 16-bit RGB(A) or gray+alpha
either, so 16-bit PNG output uses a small built-in PNG encoder. Other formats are written at
8 bits (TIFF keeps 16 bits for plain grayscale); a note says when precision or alpha is dropped.

EXIF orientation is applied on read (the output is written upright, without EXIF). CMYK goes to
sRGB through its embedded CMYK profile, else (like other colour spaces) by Pillow's conversion with
a note; an ICC profile is kept and written only when it describes the pixels (see
:mod:`diffsr_jax.colour_profiles`). Animated / multi-page files give their first frame, with a note.
"""

from __future__ import annotations

import os
import struct
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import colour_profiles
from .protocols import to_uint8, to_uint16
from .targets import MAX_INPUT_PIXELS

__all__ = [
    "ImageReadError",
    "LoadedImage",
    "WrittenImage",
    "IMAGE_EXTENSIONS",
    "FORMAT_BY_EXTENSION",
    "read_image",
    "write_image",
    "resize_alpha",
    "format_for_path",
    "read_rgb_u8",
    "list_image_files",
]

#: Extensions read from folders and accepted for output (lower case, with the dot).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
FORMAT_BY_EXTENSION = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
MODES = ("rgb", "gray", "rgba", "gray_alpha")
JPEG_QUALITY = 95
WEBP_QUALITY = 95

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageReadError(ValueError):
    """An input image cannot be used: missing, empty, corrupt, truncated, unsupported, too big.

    ``str(e)`` is ``"<path>: <reason>"``; ``e.path`` and ``e.reason`` hold the two parts.
    """

    def __init__(self, path: str, reason: Optional[str] = None):
        super().__init__(path if reason is None else f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class LoadedImage:
    rgb: np.ndarray  # float32 (H, W, 3) in [0, 1]
    alpha: Optional[np.ndarray]  # float32 (H, W) in [0, 1] or None
    mode: str  # "rgb" | "gray" | "rgba" | "gray_alpha"
    bit_depth: int  # 8 or 16
    path: str = ""
    format: Optional[str] = None  # Pillow's format name of the source ("PNG", "JPEG", ...)
    icc_profile: Optional[bytes] = None
    notes: list[str] = field(default_factory=list)  # things the user may want to know
    # JPEG files only: the quantisation tables (table id -> 64 ints, as Pillow gives them), for
    # degradation.jpeg_quality_from_tables; None for other formats.
    jpeg_quantization: Optional[dict] = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return (int(self.rgb.shape[0]), int(self.rgb.shape[1]))


@dataclass
class WrittenImage:
    path: str
    format: str
    mode: str
    bit_depth: int
    notes: list[str] = field(default_factory=list)  # e.g. "alpha dropped: JPEG has no alpha"


# ---------------------------------------------------------------------------------------------
# reading


def _fail(path: str, reason: str) -> ImageReadError:
    return ImageReadError(path, reason)


def _png_header(path: str) -> Optional[tuple[int, int, int]]:
    """(bit_depth, color_type, interlace) of a PNG file, or None if it is not a PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(33)
    except OSError:
        return None
    if len(head) < 29 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    return head[24], head[25], head[28]


def _replace_rawmode(im: Image.Image, old: str, new: str) -> bool:
    tiles = []
    for t in im.tile:
        args = t.args if hasattr(t, "args") else t[3]
        if isinstance(args, tuple):
            if not args or not isinstance(args[0], str) or args[0] != old:
                return False
            args = (new,) + tuple(args[1:])
        elif args != old:
            return False
        else:
            args = new
        tiles.append(t._replace(args=args) if hasattr(t, "_replace") else (t[0], t[1], t[2], args))
    if not tiles:
        return False
    im.tile = tiles
    return True


def _decode_png16_low_bytes(path: str, color_type: int, shape: tuple[int, ...]) -> Optional[np.ndarray]:
    """The low byte of every 16-bit sample of a PNG, decoded by Pillow (see module docstring)."""
    # Pillow's raw modes for 16-bit PNG: RGB;16B (2), LA;16B into RGBA (4), RGBA;16B (6).
    with Image.open(path) as im:
        if color_type == 2:
            ok = _replace_rawmode(im, "RGB;16B", "RGB;16L")
        elif color_type == 6:
            ok = _replace_rawmode(im, "RGBA;16B", "RGBA;16L")
        elif color_type == 4:
            # 4 bytes a pixel (L hi, L lo, A hi, A lo): decode the raw bytes as 8-bit RGBA,
            # which has the same pixel stride so PNG un-filtering is identical.
            ok = _replace_rawmode(im, "LA;16B", "RGBA")
        else:
            return None
        if not ok:
            return None
        im.load()
        raw = np.asarray(im)
    if color_type == 4:
        raw = raw[..., [1, 1, 1, 3]]  # low bytes of L (replicated, like Pillow does) and A
    if raw.shape != shape:
        return None
    return raw.astype(np.uint16)


def read_image(
    path: str | os.PathLike,
    *,
    max_pixels: int = MAX_INPUT_PIXELS,
    apply_exif_orientation: bool = True,
) -> LoadedImage:
    """Reads an image file for upscaling. Raises :class:`ImageReadError` naming the file.

    Handles 8-bit RGB/RGBA/L/LA/P (palette transparency becomes alpha), 1-bit, 16-bit PNG of
    every colour type (see module docstring), 16-bit grayscale TIFF, JPEG (incl. CMYK) and
    anything else Pillow opens that converts to RGB. Animated / multi-page files give their first
    frame, with a note.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise _fail(path, "no such file")
    if os.path.isdir(path):
        raise _fail(path, "is a folder, not an image file")
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise _fail(path, f"cannot read: {e.strerror or e}") from None
    if size == 0:
        raise _fail(path, "empty file (0 bytes)")

    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            # A decompression-bomb *warning* becomes an error we report, not noise on stderr.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise _fail(
                        path,
                        f"too large: {w}x{h} = {w * h:,} pixels; the limit is {max_pixels:,} pixels",
                    )
                frames = _frame_count(im)
                im.load()  # full decode now, so truncated files fail here
                fmt = im.format
                if frames > 1 and fmt != "MPO":  # MPO: a camera JPEG's extra images are previews
                    notes.append(f"animated/multi-page file: only the first of {frames} frames was upscaled")
                icc = im.info.get("icc_profile")
                qtables = _jpeg_quantization(im)
                png = _png_header(path) if fmt == "PNG" else None
                orientation = _exif_orientation(im) if apply_exif_orientation else 1
                srgb = colour_profiles.cmyk_to_srgb(im, icc, notes) if im.mode == "CMYK" else None
                rgb, alpha, mode, bit_depth = _convert(im if srgb is None else srgb, path, png, notes)
                # CMYK: the pixels are sRGB now (or converted without the profile): no profile.
                icc = None if im.mode == "CMYK" else colour_profiles.keep_if_fits(icc, mode, notes)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except PermissionError:
        raise _fail(path, "permission denied") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _fail(path, f"too large (possible decompression bomb): {e}") from None
    except UnidentifiedImageError:
        raise _fail(path, "not an image, or a format that cannot be read") from None
    except MemoryError:
        raise _fail(path, "out of memory while decoding") from None
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, ...
        msg = str(e) or type(e).__name__
        if "truncated" in msg.lower() or isinstance(e, EOFError):
            raise _fail(path, f"truncated or corrupt file ({msg})") from None
        raise _fail(path, f"corrupt or unsupported image ({msg})") from None

    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise _fail(path, "image has no pixels")
    if orientation != 1:
        rgb = _orient(rgb, orientation)
        alpha = None if alpha is None else _orient(alpha, orientation)
    return LoadedImage(
        rgb=rgb, alpha=alpha, mode=mode, bit_depth=bit_depth, path=path, format=fmt,
        icc_profile=icc, notes=notes, jpeg_quantization=qtables,
    )


def _frame_count(im: Image.Image) -> int:
    try:
        return max(int(getattr(im, "n_frames", 1) or 1), 1)
    except Exception:  # a damaged later frame: the first one is still read (or fails) below
        return 1


def _jpeg_quantization(im: Image.Image) -> Optional[dict]:
    """A JPEG's quantisation tables as a plain ``{int: [64 ints]}`` dict, else None."""
    tables = getattr(im, "quantization", None) if im.format in ("JPEG", "MPO") else None
    if not tables:
        return None
    try:
        return {int(k): [int(v) for v in t] for k, t in dict(tables).items()}
    except (TypeError, ValueError):
        return None


def _exif_orientation(im: Image.Image) -> int:
    try:
        o = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:
        return 1
    return o if 1 <= o <= 8 else 1


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Applies an EXIF orientation to an (H, W, ...) array, like ``ImageOps.exif_transpose``."""
    ops = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: x.swapaxes(0, 1),
        6: lambda x: np.rot90(x, k=-1),
        7: lambda x: x.swapaxes(0, 1)[::-1, ::-1],
        8: lambda x: np.rot90(x, k=1),
    }
    return np.ascontiguousarray(ops[orientation](a)) if orientation in ops else a


def _u8(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) / np.float32(255.0)


def _u16(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) / np.float32(65535.0)


def _gray3(g: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=-1))


def _convert(im, path, png, notes):
    """-> (rgb float32 HxWx3, alpha float32 HxW | None, mode, bit_depth)."""
    m = im.mode
    # ---- 16-bit PNG that Pillow reduced to 8 bits: recover the low bytes.
    if png is not None and png[0] == 16 and png[1] in (2, 4, 6):
        color_type = png[1]
        hi = np.asarray(im)
        try:
            lo = _decode_png16_low_bytes(path, color_type, hi.shape)
        except Exception:
            lo = None
        if lo is not None:
            full = hi.astype(np.uint16) * 256 + lo
            if color_type == 2:
                alpha = _trns_alpha16(im, full)
                return _u16(full), alpha, ("rgba" if alpha is not None else "rgb"), 16
            if color_type == 6:
                return _u16(full[..., :3]), _u16(full[..., 3]), "rgba", 16
            return _gray3(_u16(full[..., 0])), _u16(full[..., 3]), "gray_alpha", 16
        notes.append("16-bit PNG read at 8 bits per sample (Pillow limitation)")
        if color_type == 4:
            a = np.asarray(im)
            return _gray3(_u8(a[..., 0])), _u8(a[..., 3]), "gray_alpha", 8
        # fall through to the 8-bit paths below

    if m in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        g = np.asarray(im)
        if m == "I":
            if g.min(initial=0) < 0 or g.max(initial=0) > 65535:
                notes.append("32-bit integer image clipped to 16 bits")
            g = np.clip(g, 0, 65535)
        alpha = None
        t = im.info.get("transparency")
        if isinstance(t, int):
            alpha = (g != t).astype(np.float32)
        g = _u16(g)
        return _gray3(g), alpha, ("gray_alpha" if alpha is not None else "gray"), 16
    if m == "F":
        raise _fail(path, "unsupported mode: 32-bit floating-point images are not supported")
    if m == "1":
        im = im.convert("L")
        m = "L"
    if m == "L":
        if "transparency" in im.info:
            a = np.asarray(im.convert("LA"))
            return _gray3(_u8(a[..., 0])), _u8(a[..., 1]), "gray_alpha", 8
        return _gray3(_u8(np.asarray(im))), None, "gray", 8
    if m in ("LA", "La"):
        a = np.asarray(im.convert("LA"))
        return _gray3(_u8(a[..., 0])), _u8(a[..., 1]), "gray_alpha", 8
    if m in ("P", "PA"):
        has_alpha = m == "PA" or "transparency" in im.info
        if has_alpha:
            a = np.asarray(im.convert("RGBA"))
            return np.ascontiguousarray(_u8(a[..., :3])), _u8(a[..., 3]), "rgba", 8
        return _u8(np.asarray(im.convert("RGB"))), None, "rgb", 8
    if m in ("RGBA", "RGBa"):
        a = np.asarray(im.convert("RGBA"))
        return np.ascontiguousarray(_u8(a[..., :3])), _u8(a[..., 3]), "rgba", 8
    if m == "RGB":
        if "transparency" in im.info:
            a = np.asarray(im.convert("RGBA"))
            return np.ascontiguousarray(_u8(a[..., :3])), _u8(a[..., 3]), "rgba", 8
        return _u8(np.asarray(im)), None, "rgb", 8
    if m == "CMYK":
        notes.append("CMYK converted to RGB without colour management")
    try:
        conv = im.convert("RGB")
    except Exception as e:
        raise _fail(path, f"unsupported mode {m!r} ({e})") from None
    return _u8(np.asarray(conv)), None, "rgb", 8


def _trns_alpha16(im: Image.Image, full: np.ndarray) -> Optional[np.ndarray]:
    t = im.info.get("transparency")
    if isinstance(t, tuple) and len(t) == 3:
        return (~np.all(full == np.asarray(t, np.uint16), axis=-1)).astype(np.float32)
    return None


def read_rgb_u8(path: str | os.PathLike, *, max_pixels: Optional[int] = None) -> np.ndarray:
    """The RGB pixels of an image file as a C-contiguous uint8 (H, W, 3) array, decoded exactly as
    :func:`read_image` decodes them (EXIF orientation, 16-bit samples rounded to 8 bits, grayscale
    replicated to three channels); alpha is dropped, not composited. For training and calibration
    photos. Raises :class:`ImageReadError` naming the file."""
    img = read_image(path, max_pixels=MAX_INPUT_PIXELS if max_pixels is None else max_pixels)
    return np.ascontiguousarray(to_uint8(img.rgb))


def list_image_files(folders) -> list[tuple[str, str]]:
    """Image files under ``folders`` (a path or a list; recursive, links followed) as
    ``(folder, relative_posix_path)`` pairs. Extensions (:data:`IMAGE_EXTENSIONS`) match
    case-insensitively; the order is folder order, then sorted relative path, so an image's index
    never depends on the file system's listing order. ImageReadError for a missing folder."""
    if isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    out: list[tuple[str, str]] = []
    for folder in (os.path.realpath(os.path.expanduser(os.fspath(f))) for f in folders):
        if not os.path.isdir(folder):
            raise ImageReadError(folder, "does not exist or is not a folder")
        rels = []
        for root, dirs, files in os.walk(folder, followlinks=True):
            dirs.sort()
            for f in files:
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    rels.append(os.path.relpath(os.path.join(root, f), folder).replace(os.sep, "/"))
        out.extend((folder, r) for r in sorted(rels))
    return out


# ---------------------------------------------------------------------------------------------
# writing


def format_for_path(path: str | os.PathLike) -> str:
    """Pillow format name from the file extension; ValueError for an unknown extension."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    try:
        return FORMAT_BY_EXTENSION[ext]
    except KeyError:
        raise ValueError(
            f"{os.path.basename(os.fspath(path))}: unknown output extension {ext or '(none)'!r}; "
            f"use one of {', '.join(IMAGE_EXTENSIONS)}"
        ) from None


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png16(samples: np.ndarray, icc_profile: Optional[bytes] = None) -> bytes:
    """A 16-bit PNG from a uint16 array (H, W) gray, (H, W, 2) gray+alpha, (H, W, 3|4) RGB(A).

    Every row uses the PNG 'Up' filter (vectorised), compressed with zlib level 6.
    """
    a = np.asarray(samples)
    if a.dtype != np.uint16:
        raise TypeError("encode_png16 needs uint16 samples")
    if a.ndim == 2:
        a = a[..., None]
    h, w, c = a.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = a.astype(">u2").reshape(h, w * c).view(np.uint8).reshape(h, w * c * 2)
    up = rows.copy()
    up[1:] = rows[1:] - rows[:-1]  # uint8 arithmetic wraps modulo 256, as PNG wants
    filtered = np.concatenate([np.full((h, 1), 2, np.uint8), up], axis=1)
    out = [_PNG_SIGNATURE, _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))]
    if icc_profile:
        out.append(_png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc_profile)))
    out.append(_png_chunk(b"IDAT", zlib.compress(filtered.tobytes(), 6)))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def _current_umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def write_image(
    path: str | os.PathLike,
    rgb: np.ndarray,
    alpha: Optional[np.ndarray] = None,
    mode: str = "rgb",
    bit_depth: int = 8,
    *,
    overwrite: bool = False,
    icc_profile: Optional[bytes] = None,
    quality: int = JPEG_QUALITY,
) -> WrittenImage:
    """Writes float ``rgb`` (H, W, 3) in [0, 1] (+ optional ``alpha`` (H, W)) atomically.

    ``mode`` is the source's mode: ``gray``/``gray_alpha`` write one gray channel (the mean of
    the three), ``rgba``/``gray_alpha`` attach ``alpha`` when given. ``bit_depth`` 16 writes a
    16-bit PNG (16-bit grayscale TIFF); other formats are 8-bit. The format comes from the
    extension (png, jpg/jpeg at ``quality``, webp, bmp, tif/tiff); an unknown one is a
    ``ValueError``. The file is written to a temp file in the same folder, then renamed over
    ``path``; an existing ``path`` raises ``FileExistsError`` (untouched) unless ``overwrite``.
    On any failure the temp file is removed and nothing is left at ``path``.
    """
    path = os.fspath(path)
    fmt = format_for_path(path)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    rgb = np.asarray(rgb, np.float32)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"rgb must be (H, W, 3), got {rgb.shape}")
    notes: list[str] = []
    gray = mode in ("gray", "gray_alpha")
    want_alpha = mode in ("rgba", "gray_alpha") and alpha is not None
    if want_alpha:
        alpha = np.asarray(alpha, np.float32)
        if alpha.shape != rgb.shape[:2]:
            raise ValueError(f"alpha must be {rgb.shape[:2]}, got {alpha.shape}")
    if want_alpha and fmt in ("JPEG", "BMP"):
        # Pillow writes 32-bit BMP but reads it (like many programs) without its alpha.
        notes.append(f"alpha dropped: {fmt} does not reliably store transparency (use .png)")
        want_alpha = False
    if gray and fmt == "WEBP":
        notes.append("written as RGB: WebP has no grayscale")
        gray = False
    depth = bit_depth
    if depth == 16 and not (fmt == "PNG" or (fmt == "TIFF" and gray and not want_alpha)):
        notes.append(f"written at 8 bits: {fmt} output here is 8-bit only (use .png for 16-bit)")
        depth = 8

    if gray:
        chans = [rgb.mean(axis=-1)]
    else:
        chans = [rgb[..., 0], rgb[..., 1], rgb[..., 2]]
    if want_alpha:
        chans.append(alpha)
    arr = np.stack(chans, axis=-1)
    out_mode = ("gray_alpha" if want_alpha else "gray") if gray else ("rgba" if want_alpha else "rgb")
    if fmt in ("PNG", "JPEG", "WEBP", "TIFF"):  # never a profile that does not describe the pixels
        icc_profile = colour_profiles.keep_if_fits(icc_profile, out_mode, notes)

    directory = os.path.dirname(os.path.abspath(path))
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"{path} exists (refusing to overwrite)")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_current_umask())
        if depth == 16 and fmt == "PNG":
            data = encode_png16(to_uint16(arr), icc_profile)
            with open(tmp, "wb") as f:
                f.write(data)
        else:
            if depth == 16:  # 16-bit grayscale TIFF
                img = Image.fromarray(to_uint16(arr[..., 0]))  # mode I;16
            else:
                u8 = to_uint8(arr)
                pil_mode = {"gray": "L", "gray_alpha": "LA", "rgb": "RGB", "rgba": "RGBA"}[out_mode]
                img = Image.fromarray(u8[..., 0] if out_mode == "gray" else u8)
                assert img.mode == pil_mode, (img.mode, pil_mode)
            kwargs = {}
            if icc_profile and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
                kwargs["icc_profile"] = icc_profile
            if fmt == "JPEG":
                kwargs.update(quality=int(quality), subsampling=0)
            elif fmt == "WEBP":
                kwargs.update(quality=WEBP_QUALITY)
            elif fmt == "TIFF":
                kwargs.update(compression="tiff_deflate")
            img.save(tmp, format=fmt, **kwargs)
        if overwrite:
            os.replace(tmp, path)
        else:
            _publish_no_clobber(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return WrittenImage(path=path, format=fmt, mode=out_mode, bit_depth=depth, notes=notes)


def _publish_no_clobber(tmp: str, path: str) -> None:
    """Moves ``tmp`` to ``path`` only if ``path`` does not exist (atomically where possible)."""
    try:
        os.link(tmp, path)  # fails with FileExistsError if path appeared meanwhile
    except FileExistsError:
        raise FileExistsError(f"{path} exists (refusing to overwrite)") from None
    except OSError:
        # Filesystem without hard links: check, then rename (a tiny race is unavoidable here).
        if os.path.lexists(path):
            raise FileExistsError(f"{path} exists (refusing to overwrite)") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def resize_alpha(alpha: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of an (H, W) alpha map to ``out_hw`` = (h, w), clipped to [0, 1]."""
    a = np.asarray(alpha, np.float32)
    h, w = int(out_hw[0]), int(out_hw[1])
    if a.shape == (h, w):
        return a.copy()
    img = Image.fromarray(np.ascontiguousarray(a))  # mode "F"
    out = np.asarray(img.resize((w, h), Image.Resampling.BICUBIC), np.float32)
    return np.clip(out, 0.0, 1.0)
