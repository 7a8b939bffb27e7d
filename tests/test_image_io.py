"""Tests for diffsr_jax.image_io on tiny generated files (never reads ../shared)."""

import io
import os
import stat
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from diffsr_jax import image_io
from diffsr_jax.image_io import ImageReadError, read_image, resize_alpha, write_image



def _u8(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _u16(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)


def _listing(d):
    return sorted(os.listdir(d))


# --- an independent 16-bit PNG encoder (all five filter types, optional Adam7 interlace) -------


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filter_rows(arr):
    h = arr.shape[0]
    bpp = 2 * (arr.shape[2] if arr.ndim == 3 else 1)
    rows = [np.frombuffer(arr[i].astype(">u2").tobytes(), np.uint8).astype(int) for i in range(h)]
    out = b""
    for y, r in enumerate(rows):
        f = y % 5
        prev = rows[y - 1] if y else np.zeros_like(r)
        o = []
        for x in range(len(r)):
            a = r[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, c)][f]
            o.append((r[x] - pred) % 256)
        out += bytes([f]) + bytes(o)
    return out


def _png16(arr, color_type, interlace=False):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    h, w = arr.shape[:2]
    if interlace:
        raw = b""
        for sy, sx, dy, dx in [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4),
                               (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1)]:
            sub = arr[sy::dy, sx::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += _filter_rows(sub)
    else:
        raw = _filter_rows(arr)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, int(interlace))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


# --- reading -----------------------------------------------------------------------------------


def test_read_rgb_png(tmp_path):
    a = _u8((9, 11, 3))
    Image.fromarray(a).save(tmp_path / "a.png")
    im = read_image(tmp_path / "a.png")
    assert im.mode == "rgb" and im.bit_depth == 8 and im.alpha is None and im.size == (9, 11)
    assert im.rgb.dtype == np.float32 and im.rgb.shape == (9, 11, 3)
    np.testing.assert_allclose(im.rgb, a / 255.0, atol=1e-6)


def test_read_modes(tmp_path):
    g = _u8((8, 10), 1)
    Image.fromarray(g).save(tmp_path / "l.png")
    Image.fromarray(np.stack([g, 255 - g], -1)).save(tmp_path / "la.png")  # mode LA
    Image.fromarray(_u8((8, 10, 4), 2)).save(tmp_path / "rgba.png")
    Image.fromarray(g > 128).save(tmp_path / "bilevel.png")  # mode 1
    pal = Image.fromarray(_u8((8, 10, 3), 3)).quantize(16)
    pal.save(tmp_path / "p.png")
    pal.save(tmp_path / "pt.png", transparency=0)

    im = read_image(tmp_path / "l.png")
    assert im.mode == "gray" and im.alpha is None
    np.testing.assert_allclose(im.rgb[..., 1], g / 255.0, atol=1e-6)
    assert np.array_equal(im.rgb[..., 0], im.rgb[..., 2])
    im = read_image(tmp_path / "la.png")
    assert im.mode == "gray_alpha"
    np.testing.assert_allclose(im.alpha, (255 - g) / 255.0, atol=1e-6)
    im = read_image(tmp_path / "rgba.png")
    assert im.mode == "rgba" and im.alpha.shape == (8, 10)
    assert read_image(tmp_path / "bilevel.png").mode == "gray"
    im = read_image(tmp_path / "p.png")
    assert im.mode == "rgb" and im.alpha is None
    im = read_image(tmp_path / "pt.png")
    assert im.mode == "rgba" and set(np.unique(im.alpha)) <= {0.0, 1.0} and im.alpha.min() == 0.0


def test_read_jpeg_and_cmyk(tmp_path):
    Image.fromarray(_u8((16, 16, 3))).save(tmp_path / "a.jpg", quality=90)
    im = read_image(tmp_path / "a.jpg")
    assert im.mode == "rgb" and im.format == "JPEG" and im.rgb.shape == (16, 16, 3)
    Image.fromarray(_u8((16, 16, 3))).convert("CMYK").save(tmp_path / "c.jpg")
    im = read_image(tmp_path / "c.jpg")
    assert im.mode == "rgb" and im.rgb.shape == (16, 16, 3)
    assert any("CMYK" in n for n in im.notes)


def test_read_gray16(tmp_path):
    g = _u16((7, 9))
    Image.fromarray(g).save(tmp_path / "g16.png")  # mode I;16
    im = read_image(tmp_path / "g16.png")
    assert im.mode == "gray" and im.bit_depth == 16
    np.testing.assert_array_equal(np.round(im.rgb[..., 0] * 65535).astype(np.uint16), g)


@pytest.mark.parametrize("interlace", [False, True])
def test_read_rgb16_png_lossless(tmp_path, interlace):
    """Pillow alone reduces 16-bit RGB(A)/LA PNG to 8 bits; read_image recovers all 16."""
    a = _u16((11, 13, 3), 4)
    (tmp_path / "c.png").write_bytes(_png16(a, 2, interlace))
    im = read_image(tmp_path / "c.png")
    assert im.mode == "rgb" and im.bit_depth == 16 and not im.notes
    np.testing.assert_array_equal(np.round(im.rgb * 65535).astype(np.uint16), a)

    b = _u16((6, 7, 4), 5)
    (tmp_path / "d.png").write_bytes(_png16(b, 6, interlace))
    im = read_image(tmp_path / "d.png")
    assert im.mode == "rgba" and im.bit_depth == 16
    np.testing.assert_array_equal(np.round(im.rgb * 65535).astype(np.uint16), b[..., :3])
    np.testing.assert_array_equal(np.round(im.alpha * 65535).astype(np.uint16), b[..., 3])

    la = _u16((6, 7, 2), 6)
    (tmp_path / "e.png").write_bytes(_png16(la, 4, interlace))
    im = read_image(tmp_path / "e.png")
    assert im.mode == "gray_alpha" and im.bit_depth == 16
    np.testing.assert_array_equal(np.round(im.rgb[..., 2] * 65535).astype(np.uint16), la[..., 0])
    np.testing.assert_array_equal(np.round(im.alpha * 65535).astype(np.uint16), la[..., 1])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    from PIL import ImageOps

    img = Image.fromarray(_u8((5, 8, 3), orientation))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as ref:
        expect = np.asarray(ImageOps.exif_transpose(ref).convert("RGB"))
    im = read_image(tmp_path / "o.png")
    np.testing.assert_allclose(im.rgb, expect / 255.0, atol=1e-6)


# --- bad inputs --------------------------------------------------------------------------------


def _bad_files(d):
    good = io.BytesIO()
    Image.fromarray(_u8((40, 40, 3))).save(good, "PNG")
    data = good.getvalue()
    files = {
        "empty.png": b"",
        "corrupt.png": b"\x89PNG\r\n\x1a\n" + b"garbage" * 20,
        "truncated.png": data[: len(data) // 2],
        "text.png": b"this is not an image\n" * 5,
        "trunc.jpg": b"\xff\xd8\xff\xe0" + b"\x00" * 10,
    }
    jpg = io.BytesIO()
    Image.fromarray(_u8((40, 40, 3))).save(jpg, "JPEG")
    files["truncated.jpg"] = jpg.getvalue()[: len(jpg.getvalue()) // 2]
    for name, content in files.items():
        (d / name).write_bytes(content)
    return list(files)


def test_bad_inputs_raise_image_read_error(tmp_path):
    for name in _bad_files(tmp_path):
        with pytest.raises(ImageReadError) as e:
            read_image(tmp_path / name)
        assert name in str(e.value) and e.value.reason, name
    with pytest.raises(ImageReadError, match="0 bytes"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(tmp_path / "truncated.png")
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)
    assert issubclass(ImageReadError, ValueError)


def test_too_many_pixels(tmp_path):
    Image.fromarray(_u8((20, 30, 3))).save(tmp_path / "a.png")
    with pytest.raises(ImageReadError, match="too large: 30x20 = 600 pixels"):
        read_image(tmp_path / "a.png", max_pixels=599)


def test_unsupported_float_mode(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ImageReadError, match="floating-point"):
        read_image(tmp_path / "f.tif")


# --- writing -----------------------------------------------------------------------------------


def _round_trip(tmp_path, name, src_name, save):
    save(tmp_path / src_name)
    im = read_image(tmp_path / src_name)
    info = write_image(tmp_path / name, im.rgb, im.alpha, im.mode, im.bit_depth)
    return im, info


def test_round_trip_gray_stays_gray(tmp_path):
    g = _u8((8, 9))
    im, info = _round_trip(tmp_path, "out.png", "in.png", lambda p: Image.fromarray(g).save(p))
    assert info.mode == "gray"
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "L"
        np.testing.assert_array_equal(np.asarray(out), g)


def test_round_trip_rgba_keeps_alpha(tmp_path):
    a = _u8((8, 9, 4))
    _round_trip(tmp_path, "out.png", "in.png", lambda p: Image.fromarray(a).save(p))
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(out), a)


def test_round_trip_gray_alpha(tmp_path):
    la = _u8((8, 9, 2))
    _round_trip(tmp_path, "out.png", "in.png", lambda p: Image.fromarray(la).save(p))
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "LA"
        np.testing.assert_array_equal(np.asarray(out), la)


def test_round_trip_gray16_stays_16bit(tmp_path):
    g = _u16((8, 9))
    _, info = _round_trip(tmp_path, "out.png", "in.png", lambda p: Image.fromarray(g).save(p))
    assert info.bit_depth == 16
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode.startswith("I;16")
        np.testing.assert_array_equal(np.asarray(out).astype(np.uint16), g)


@pytest.mark.parametrize("color_type, shape", [(2, (7, 9, 3)), (6, (7, 9, 4)), (4, (7, 9, 2))])
def test_round_trip_rgb16_stays_16bit(tmp_path, color_type, shape):
    a = _u16(shape, color_type)
    (tmp_path / "in.png").write_bytes(_png16(a, color_type))
    im = read_image(tmp_path / "in.png")
    info = write_image(tmp_path / "out.png", im.rgb, im.alpha, im.mode, im.bit_depth)
    assert info.bit_depth == 16
    with open(tmp_path / "out.png", "rb") as f:
        head = f.read(26)
    assert head[24] == 16 and head[25] == color_type  # IHDR: bit depth, colour type
    back = read_image(tmp_path / "out.png")
    assert back.bit_depth == 16 and back.mode == im.mode
    np.testing.assert_array_equal(np.round(back.rgb * 65535), np.round(im.rgb * 65535))
    if im.alpha is not None:
        np.testing.assert_array_equal(np.round(back.alpha * 65535), np.round(im.alpha * 65535))


@pytest.mark.parametrize(
    "ext, pil_format",
    [(".jpg", "JPEG"), (".jpeg", "JPEG"), (".webp", "WEBP"), (".bmp", "BMP"), (".tif", "TIFF"),
     (".tiff", "TIFF"), (".PNG", "PNG")],
)
def test_formats_from_extension(tmp_path, ext, pil_format):
    rgb = _u8((8, 8, 3)) / 255.0
    info = write_image(tmp_path / f"o{ext}", rgb, None, "rgb", 8)
    assert info.format == pil_format
    with Image.open(tmp_path / f"o{ext}") as out:
        assert out.format == pil_format and out.size == (8, 8)


def test_format_notes(tmp_path):
    rgb = np.full((4, 4, 3), 0.5, np.float32)
    alpha = np.ones((4, 4), np.float32)
    info = write_image(tmp_path / "a.jpg", rgb, alpha, "rgba", 8)
    assert info.mode == "rgb" and any("alpha" in n for n in info.notes)
    info = write_image(tmp_path / "a.bmp", rgb, alpha, "gray_alpha", 8)
    assert info.mode == "gray" and any("alpha" in n for n in info.notes)
    info = write_image(tmp_path / "b.jpg", rgb, None, "rgb", 16)
    assert info.bit_depth == 8 and any("8 bits" in n for n in info.notes)
    info = write_image(tmp_path / "c.tif", rgb, None, "gray", 16)
    assert info.bit_depth == 16
    with Image.open(tmp_path / "c.tif") as out:
        assert out.mode.startswith("I;16")


def test_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match="extension"):
        write_image(tmp_path / "o.gif", np.zeros((2, 2, 3), np.float32), None, "rgb", 8)
    with pytest.raises(ValueError, match="extension"):
        write_image(tmp_path / "o", np.zeros((2, 2, 3), np.float32), None, "rgb", 8)
    assert _listing(tmp_path) == []


def test_existing_file_untouched_without_overwrite(tmp_path):
    dst = tmp_path / "o.png"
    dst.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        write_image(dst, np.zeros((2, 2, 3), np.float32), None, "rgb", 8)
    assert dst.read_bytes() == b"precious" and _listing(tmp_path) == ["o.png"]
    write_image(dst, np.zeros((2, 2, 3), np.float32), None, "rgb", 8, overwrite=True)
    with Image.open(dst) as out:
        assert out.size == (2, 2)
    assert _listing(tmp_path) == ["o.png"]


def test_written_file_has_normal_permissions(tmp_path):
    write_image(tmp_path / "o.png", np.zeros((2, 2, 3), np.float32), None, "rgb", 8)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "o.png").st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("overwrite", [False, True])
def test_failure_mid_write_leaves_nothing(tmp_path, monkeypatch, bit_depth, overwrite):
    def broken_save(self, fp, format=None, **kw):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("disk full")

    def broken_encode(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    monkeypatch.setattr(image_io, "encode_png16", broken_encode)
    if overwrite:
        (tmp_path / "o.png").write_bytes(b"old")
    before = _listing(tmp_path)
    with pytest.raises(OSError, match="disk full"):
        write_image(tmp_path / "o.png", np.zeros((4, 4, 3), np.float32), None, "rgb", bit_depth,
                    overwrite=overwrite)
    assert _listing(tmp_path) == before  # no temp file, no partial output
    if overwrite:
        assert (tmp_path / "o.png").read_bytes() == b"old"


def test_failure_at_rename_leaves_nothing(tmp_path, monkeypatch):
    def broken_replace(a, b):
        raise OSError("rename failed")

    monkeypatch.setattr(image_io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="rename failed"):
        write_image(tmp_path / "o.png", np.zeros((4, 4, 3), np.float32), None, "rgb", 8,
                    overwrite=True)
    assert _listing(tmp_path) == []


def test_resize_alpha():
    a = np.zeros((4, 6), np.float32)
    a[:, 3:] = 1.0
    r = resize_alpha(a, (8, 12))
    assert r.shape == (8, 12) and r.dtype == np.float32
    assert r.min() >= 0.0 and r.max() <= 1.0  # bicubic overshoot is clipped
    assert r[:, 0].max() < 0.05 and r[:, -1].min() > 0.95
    np.testing.assert_array_equal(resize_alpha(a, (4, 6)), a)
