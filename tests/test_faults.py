"""The faults of issue 33, Part B (a bad-input sweep): each reproduction is a test here.

1 seeds >= 2**63; 2 model.json disagreeing with params/; 3 float images outside [0, 1], NaN/inf,
integer images given to upscale_array, empty images; 5 a CMYK profile written on RGB pixels;
6 numbers, (height, width) pairs, None and PIL images as upscale's target / image; 7 out_hw
unchecked in upscale_array / upscale_batch; also: --steps without an upper bound, animated GIF /
multi-page TIFF read silently as their first frame, upscale_array(noise="bogus").
"""

import io
import json
import os
import shutil
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageCms

from diffsr_jax import api, checkpointing, cli, image_io, pipeline, targets
from diffsr_jax.options import MAX_SEED, InferenceOptions


def smooth_image(h, w, seed=0):
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    return np.clip(np.stack([yy, xx, 0.5 + 0.4 * np.sin(8 * xx * yy)], -1) + 0.02 * rng.normal(size=(h, w, 3)),
                   0, 1).astype(np.float32)


BICUBIC = dict(noise=0.0)  # t = 0: no network call, so these API tests stay fast


# --- 1: seeds -----------------------------------------------------------------------------------


def test_seed_above_int64_is_a_clear_value_error(model, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"seed must be in \[0, 9223372036854775807\]"):
        InferenceOptions(seed=2 ** 70)
    with pytest.raises(ValueError, match="seed must be in"):
        api.upscale_array(smooth_image(8, 8), (16, 16), model=model, seed=2 ** 63)
    assert InferenceOptions(seed=MAX_SEED).seed == 2 ** 63 - 1 == MAX_SEED
    assert InferenceOptions(seed=np.int64(7)).seed == 7  # numpy integers are whole numbers too
    # The largest seed runs (JAX takes a signed 64-bit seed).
    out, _ = api.upscale_array(smooth_image(8, 8), (16, 16), model=model, noise=("step", 2), steps=1,
                               consistency=0.0, seed=MAX_SEED)
    assert np.isfinite(out).all()
    # The CLI turns it into a usage error (exit 2, one line) before loading anything.
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    rc = cli.main([str(tmp_path / "a.png"), "--target", "2x", "-o", str(tmp_path / "b.png"),
                   "--seed", "1180591620717411303424"])
    err = capsys.readouterr().err
    assert rc == 2 and "seed must be in [0, 9223372036854775807]" in err and "Traceback" not in err
    assert not (tmp_path / "b.png").exists()


# --- 2: model.json that does not match params/ ---------------------------------------------------


@pytest.mark.parametrize("change", [{"base_channels": 16}, {"num_res_blocks": 2}])
def test_checkpoint_whose_model_json_disagrees_with_its_params(tiny_model_dir, tmp_path, change):
    bad = tmp_path / "model"
    shutil.copytree(tiny_model_dir, bad)
    meta = json.loads((bad / "model.json").read_text())
    meta["model"].update(change)
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(checkpointing.CheckpointError, match="does not match the architecture in model.json") as e:
        api.load_model(str(bad))
    assert "of another shape, e.g. " in str(e.value) and len(str(e.value)) < 600
    api.load_model(tiny_model_dir)  # the untouched export still loads


# --- 3: float images outside [0, 1], NaN / inf, integer images to upscale_array, empty images -----


def test_float_images_must_be_finite_and_in_unit_range(model, tmp_path):
    u8 = (smooth_image(8, 10) * 255).round().astype(np.uint8)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got \[.*\]; it looks like 0-255"):
        api.upscale(u8.astype(np.float64), "2x", model=model)
    # Refused before the model is even loaded.
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        api.upscale(u8.astype(np.float32), "2x", checkpoint=str(tmp_path / "no-such-model"))
    with pytest.raises(ValueError, match=r"looks like \[-1, 1\]"):
        api.upscale(smooth_image(8, 8) * 2 - 1, "2x", model=model)
    for bad in (np.nan, np.inf, -np.inf):
        img = smooth_image(8, 8)
        img[3, 4, 1] = bad
        with pytest.raises(ValueError, match="1 NaN or infinite values"):
            api.upscale(img, "2x", model=model)
        with pytest.raises(ValueError, match="NaN or infinite"):
            api.upscale_array(img, (16, 16), model=model)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        api.upscale_array(u8.astype(np.float32), (16, 20), model=model)
    # upscale_array takes floats in [0, 1]: integers are a TypeError saying what to do.
    with pytest.raises(TypeError, match=r"got uint8 values: divide by 255 .*diffsr_jax.upscale"):
        api.upscale_array(u8, (16, 20), model=model)
    with pytest.raises(TypeError, match="divide by 65535"):
        api.upscale_array(u8.astype(np.uint16) * 257, (16, 20), model=model)
    with pytest.raises(TypeError, match="not a PIL image"):
        api.upscale_array(Image.fromarray(u8), (16, 20), model=model)
    # Empty images.
    for shape in [(0, 5, 3), (5, 0, 3), (0, 0)]:
        with pytest.raises(ValueError, match="no pixels|nothing to upscale"):
            api.upscale(np.zeros(shape, np.float32), "2x", model=model)
    with pytest.raises(ValueError, match="nothing to upscale"):
        api.upscale_array(np.zeros((0, 5, 3), np.float32), (16, 16), model=model)
    # Float rounding just outside [0, 1] is clipped, not refused: the same output as the clipped input.
    img = smooth_image(8, 8)
    img[0, 0, 0], img[1, 1, 1] = 1.0 + 5e-4, -5e-4
    a, _ = api.upscale_array(img, (16, 16), model=model, **BICUBIC)
    b, _ = api.upscale_array(np.clip(img, 0, 1), (16, 16), model=model, **BICUBIC)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(api.upscale(img, "2x", model=model, **BICUBIC),
                                  api.upscale(np.clip(img, 0, 1), "2x", model=model, **BICUBIC))


# --- 5: ICC profiles ------------------------------------------------------------------------------


def _s15(v):
    return struct.pack(">i", int(round(v * 65536)))


def cmyk_profile(swap: bool = False) -> bytes:
    """A minimal valid ICC v2 CMYK input profile (Little CMS accepts it): an A2B0 lut16 to XYZ whose
    2^4 grid corners are the naive conversion R = (1-C)(1-K), G = (1-M)(1-K), B = (1-Y)(1-K)
    through sRGB's D50 matrix. ``swap`` swaps the C and Y inks (cyan ink prints yellow): only a
    conversion that applies the profile gives that, Pillow's plain CMYK → RGB gives cyan."""
    m = np.array([[0.4360747, 0.3850649, 0.1430804], [0.2225045, 0.7168786, 0.0606169],
                  [0.0139322, 0.0971045, 0.7141733]])
    clut = []
    for c in (0, 1):
        for mg in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    cc, yy = (y, c) if swap else (c, y)
                    xyz = m @ np.array([(1 - cc) * (1 - k), (1 - mg) * (1 - k), (1 - yy) * (1 - k)])
                    clut += [int(round(min(v, 1.99997) * 32768)) for v in xyz]
    a2b0 = (b"mft2" + b"\0" * 4 + bytes([4, 3, 2, 0]) + b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
            + struct.pack(">HH", 2, 2) + struct.pack(">8H", *([0, 65535] * 4))
            + struct.pack(f">{len(clut)}H", *clut) + struct.pack(">6H", *([0, 65535] * 3)))
    text = b"test CMYK\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 78
    wtpt = b"XYZ " + b"\0" * 4 + _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    tags = [(b"desc", desc), (b"wtpt", wtpt), (b"cprt", b"text" + b"\0" * 4 + b"none\0"), (b"A2B0", a2b0)]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for sig, body in tags:
        data += b"\0" * (-(offset + len(data)) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = (struct.pack(">I", offset + len(data)) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"scnrCMYKXYZ "
              + b"\0" * 12 + b"acsp" + b"\0" * 28 + _s15(0.9642) + _s15(1.0) + _s15(0.8249))
    return header + b"\0" * (128 - len(header)) + struct.pack(">I", len(tags)) + table + data


def _fake_profile(space: bytes) -> bytes:
    """A header-only 'profile' of colour space ``space``: recognisable, but not usable by Little CMS."""
    head = bytearray(128)
    head[0:4], head[16:20], head[36:40] = struct.pack(">I", 128), space, b"acsp"
    return bytes(head)


def _png_iccp(path) -> list[bytes]:
    data, chunks, pos = open(path, "rb").read(), [], 8
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"iCCP":
            chunks.append(data[pos + 8:pos + 8 + n])
        pos += 12 + n
    return chunks


def test_cmyk_jpeg_with_a_cmyk_profile_is_converted_with_it_and_never_tags_rgb_with_it(tmp_path):
    profile = cmyk_profile(swap=True)
    assert ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile.xcolor_space.strip() == "CMYK"
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(tmp_path / "c.jpg", icc_profile=profile, quality=100)
    img = image_io.read_image(tmp_path / "c.jpg")
    assert img.mode == "rgb" and img.icc_profile is None
    assert any("converted to sRGB with its embedded ICC profile" in n for n in img.notes)
    # Cyan ink through this profile is yellow (the profile applied), not Pillow's plain cyan.
    np.testing.assert_allclose(img.rgb.mean(axis=(0, 1)), [1.0, 1.0, 0.0], atol=0.05)
    written = image_io.write_image(tmp_path / "c.png", img.rgb, icc_profile=img.icc_profile)
    assert _png_iccp(tmp_path / "c.png") == [] and written.notes == []

    # A CMYK profile that cannot be applied: plain conversion, the profile dropped, both said.
    Image.new("CMYK", (16, 16), (0, 0, 0, 0)).save(tmp_path / "f.jpg", icc_profile=_fake_profile(b"CMYK"))
    img = image_io.read_image(tmp_path / "f.jpg")
    assert img.icc_profile is None and np.allclose(img.rgb, 1.0, atol=0.01)
    assert any("CMYK ICC profile could not be applied" in n for n in img.notes)
    assert any("without colour management" in n for n in img.notes)


def test_write_image_never_writes_a_profile_that_does_not_describe_the_pixels(tmp_path):
    rgb = smooth_image(8, 8)
    for ext in (".png", ".jpg", ".tif"):
        w = image_io.write_image(tmp_path / f"a{ext}", rgb, icc_profile=cmyk_profile())
        assert any("CMYK ICC profile does not describe RGB pixels: dropped" in n for n in w.notes)
        with Image.open(tmp_path / f"a{ext}") as im:
            assert "icc_profile" not in im.info
    w = image_io.write_image(tmp_path / "b.png", rgb, icc_profile=cmyk_profile(), bit_depth=16)
    assert _png_iccp(tmp_path / "b.png") == [] and w.notes
    # An RGB profile is kept, read and written (8- and 16-bit PNG, JPEG).
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray((rgb * 255).astype(np.uint8)).save(tmp_path / "s.png", icc_profile=srgb)
    img = image_io.read_image(tmp_path / "s.png")
    assert img.icc_profile == srgb and img.notes == []
    for name, depth in [("o.png", 8), ("o16.png", 16), ("o.jpg", 8)]:
        w = image_io.write_image(tmp_path / name, img.rgb, icc_profile=img.icc_profile, bit_depth=depth)
        assert w.notes == [] or all("profile" not in n for n in w.notes)
        with Image.open(tmp_path / name) as im:
            assert im.info.get("icc_profile") == srgb
    # Grayscale pixels keep a GRAY profile but not an RGB one.
    gray = _fake_profile(b"GRAY")
    image_io.write_image(tmp_path / "g.png", rgb, mode="gray", icc_profile=gray)
    assert Image.open(tmp_path / "g.png").info.get("icc_profile") == gray
    w = image_io.write_image(tmp_path / "g2.png", rgb, mode="gray", icc_profile=srgb)
    assert "icc_profile" not in Image.open(tmp_path / "g2.png").info
    assert any("RGB ICC profile does not describe grayscale pixels" in n for n in w.notes)


# --- 6: targets and PIL images in upscale --------------------------------------------------------


def test_upscale_takes_numbers_height_width_pairs_and_pil_images(model):
    u8 = (smooth_image(8, 12) * 255).round().astype(np.uint8)
    ref = api.upscale(u8, "2x", model=model, **BICUBIC)
    for target in (2, 2.0, np.float32(2), np.int64(2)):
        np.testing.assert_array_equal(api.upscale(u8, target, model=model, **BICUBIC), ref)
    # (height, width), numpy's order: the same as the text "WIDTHxHEIGHT", reached by fit.
    for target in ((16, 24), [16, 24]):
        np.testing.assert_array_equal(api.upscale(u8, target, model=model, **BICUBIC), ref)
    assert api.upscale(u8, (20, 24), model=model, fit="stretch", **BICUBIC).shape == (20, 24, 3)
    assert api.upscale(u8, (20, 24), model=model, **BICUBIC).shape == (16, 24, 3)  # contain
    np.testing.assert_array_equal(api.upscale(u8, 2.5, model=model, **BICUBIC),
                                  api.upscale(u8, "2.5x", model=model, **BICUBIC))
    for bad in (None, True, {"scale": 2}, (1, 2, 3), "two"):
        with pytest.raises((TypeError, ValueError), match="target|output size|pair"):
            api.upscale(u8, bad, model=model)
    with pytest.raises(TypeError, match=r"target must be text .* a number \(the scale\) or a \(height, width\) pair"):
        api.upscale(u8, None, model=model)
    for bad in (0, -2, float("nan"), 1000, (0, 0), (-5, 32)):
        with pytest.raises(ValueError):
            api.upscale(u8, bad, model=model)
    # PIL images in, PIL images out (same mode; a palette image comes back RGB).
    out = api.upscale(Image.fromarray(u8), "2x", model=model, **BICUBIC)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (24, 16)
    np.testing.assert_array_equal(np.asarray(out), ref)
    gray = Image.fromarray(u8[..., 0])
    out = api.upscale(gray, 2, model=model, **BICUBIC)
    assert out.mode == "L" and out.size == (24, 16)
    np.testing.assert_array_equal(np.asarray(out), api.upscale(u8[..., 0], 2, model=model, **BICUBIC))
    pal = Image.fromarray(u8).convert("P")
    out = api.upscale(pal, 2, model=model, **BICUBIC)
    assert out.mode == "RGB" and out.size == (24, 16)
    rgba = Image.fromarray(np.concatenate([u8, np.full((8, 12, 1), 200, np.uint8)], -1))
    outs = api.upscale([rgba, u8], "2x", model=model, **BICUBIC)
    assert outs[0].mode == "RGBA" and isinstance(outs[1], np.ndarray)


# --- 7: out_hw checked in upscale_array / upscale_batch ------------------------------------------


def test_out_hw_is_validated(model):
    img = smooth_image(8, 8)
    for bad in [(0, 0), (-5, 32), (32, 0), (2.5, 16)]:
        with pytest.raises(ValueError, match="output (height|width) must be"):
            api.upscale_array(img, bad, model=model)
        with pytest.raises(ValueError, match="output (height|width) must be"):
            api.upscale_batch([img, img], bad, model=model)
    with pytest.raises(ValueError, match="the limit is 67,108,864 pixels"):
        api.upscale_array(img, (8193, 8192), model=model)
    for bad in [None, 16, (16,), "16x16"]:
        with pytest.raises(TypeError, match=r"\(height, width\) pair"):
            api.upscale_array(img, bad, model=model)
    # A bad image in a batch is refused before any image is upscaled.
    with pytest.raises(TypeError, match="divide by 255"):
        api.upscale_batch([img, (img * 255).astype(np.uint8)], (16, 16), model=model)
    out, info = api.upscale_array(img, (np.int64(16), 16.0), model=model, **BICUBIC)
    assert out.shape == (16, 16, 3) and info["notes"] == []


# --- also: --steps capped at what the ladder from t can use --------------------------------------


def test_steps_above_t_are_capped_with_a_note(model):
    img = smooth_image(8, 8)
    kw = dict(model=model, consistency=0.0, colour_fix="none", tile=0, seed=3)
    out, info = api.upscale_array(img, (16, 16), noise=("step", 3), steps=100000, sampler="ddim", **kw)
    assert info["steps"] == 3 and len(info["notes"]) == 1
    assert "100000 sampler steps" in info["notes"][0] and "ran 3" in info["notes"][0]
    same, info3 = api.upscale_array(img, (16, 16), noise=("step", 3), steps=3, sampler="ddim", **kw)
    np.testing.assert_array_equal(out, same)
    assert info3["notes"] == []
    _, quad = api.upscale_array(img, (16, 16), noise=("step", 3), steps=50, sampler="ddim-quad", **kw)
    assert quad["steps"] == 6 and quad["notes"]
    _, zero = api.upscale_array(img, (16, 16), noise=("step", 0), steps=50, **kw)
    assert zero["steps"] == 50 and zero["notes"] == []  # t = 0: nothing runs, nothing to say
    assert api.cap_steps(5, 10, "ddim") == (5, []) and api.cap_steps(20, 10, "ddpm")[0] == 10


@pytest.mark.parametrize("sampler, cap", [("ddim", 3), ("ddim-quad", 6)])
def test_capping_the_steps_does_not_change_a_ddim_output(model, sampler, cap):
    """The reason the cap is safe: beyond it the ladder only repeats steps, which DDIM skips."""
    lr = jnp.asarray(smooth_image(8, 8)[None] * 2 - 1)
    run = lambda n: np.asarray(pipeline.diffsr_from_lr(model.model, model.params, model.schedule, lr, jnp.int32(3),
                                                       jax.random.key(1), out_hw=(16, 16), num_steps=n,
                                                       sampler=sampler))
    np.testing.assert_array_equal(run(cap), run(9))


# --- also: animated / multi-page files ------------------------------------------------------------


@pytest.mark.parametrize("ext", [".gif", ".tif", ".png", ".webp"])
def test_animated_and_multipage_files_say_only_the_first_frame_is_used(tmp_path, ext):
    frames = [Image.fromarray(np.full((8, 10, 3), v, np.uint8)) for v in (10, 120, 250)]
    frames[0].save(tmp_path / f"a{ext}", save_all=True, append_images=frames[1:])
    img = image_io.read_image(tmp_path / f"a{ext}")
    assert "animated/multi-page file: only the first of 3 frames was upscaled" in img.notes
    np.testing.assert_allclose(img.rgb, 10 / 255, atol=3 / 255)  # the first frame
    frames[0].save(tmp_path / f"one{ext}")
    assert not any("frames" in n for n in image_io.read_image(tmp_path / f"one{ext}").notes)


# --- also: noise given as something unparseable ---------------------------------------------------


def test_bad_noise_is_a_clear_value_error(model):
    img = smooth_image(8, 8)
    for bad, message in [("bogus", r"expected 'auto', a fraction between 0 and 1 \(0.35\) or a step 't=350'"),
                         (None, r"noise must be 'auto', a fraction in \[0, 1\] or 't=N'"),
                         ([0.3], r"noise must be 'auto'"), (1.5, r"in \[0, 1\]"),
                         (("step", -1), "whole number >= 0"), (("fraction", "x"), "must be a number")]:
        with pytest.raises(ValueError, match=message):
            api.upscale_array(img, (16, 16), model=model, noise=bad)
    with pytest.raises(ValueError, match=r"noise step must be in \[0, 100\]"):
        api.upscale_array(img, (16, 16), model=model, noise="t=101")
    # numpy scalars are numbers too
    assert InferenceOptions(noise=np.float32(0.25)).noise == ("fraction", 0.25)
    assert InferenceOptions(noise=("step", np.int64(4))).noise == ("step", 4)
