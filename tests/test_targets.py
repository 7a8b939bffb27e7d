"""Tests for diffsr_jax.targets: target/noise grammar and output-size planning (pure, fast)."""

import math

import pytest

from diffsr_jax import targets
from diffsr_jax.targets import TargetError, output_size, parse_noise, parse_target


@pytest.mark.parametrize(
    "spec, scale",
    [("2", 2.0), ("2x", 2.0), ("2X", 2.0), ("2.7x", 2.7), ("x3", 3.0), ("X3", 3.0), ("2.7", 2.7),
     (" 4x ", 4.0), (".5x", 0.5), ("1", 1.0), ("1.0x", 1.0), ("x 2", 2.0), ("2 x", 2.0)],
)
def test_parse_scale(spec, scale):
    t = parse_target(spec)
    assert t.kind == "scale" and t.scale == pytest.approx(scale)


@pytest.mark.parametrize(
    "spec, wh",
    [("1920x1080", (1920, 1080)), ("1920X1080", (1920, 1080)), ("1920*1080", (1920, 1080)),
     ("1920 x 1080", (1920, 1080)), ("64x48", (64, 48)), ("2x3", (2, 3)),
     ("720p", (1280, 720)), ("1080p", (1920, 1080)), ("FHD", (1920, 1080)),
     ("1440p", (2560, 1440)), ("2K", (2560, 1440)), ("qhd", (2560, 1440)),
     ("4k", (3840, 2160)), ("4K", (3840, 2160)), ("2160p", (3840, 2160)), ("UHD", (3840, 2160))],
)
def test_parse_size(spec, wh):
    t = parse_target(spec)
    assert t.kind == "size" and (t.width, t.height) == wh


@pytest.mark.parametrize(
    "spec",
    ["", "   ", "0", "0x", "x0", "0.0", "-2", "-2x", "nan", "NaNx", "inf", "infx", "1e3",
     "abc", "2xx", "x2x", "xx2", "0x1080", "1920x0", "1920x-1080", "-1920x1080", "1920.5x1080",
     "1920x1080x3", "8k", "1080", "4k2", "2,5x", "x", "*", "1920x", "x1080x", "100000x100000"],
)
def test_parse_target_rejects(spec):
    with pytest.raises(TargetError) as e:
        parse_target(spec)
    assert str(e.value)  # a message a user can read


def test_target_error_is_value_error_and_helpful():
    assert issubclass(TargetError, ValueError)
    with pytest.raises(ValueError, match="1920x1080"):
        parse_target("banana")
    with pytest.raises(TargetError, match="greater than 0"):
        parse_target("0x")
    with pytest.raises(TargetError, match="finite"):
        parse_target("nan")
    with pytest.raises(TargetError, match="1080p"):
        parse_target("1080")  # a scale above MAX_SCALE: almost surely meant 1080p
    with pytest.raises(TargetError, match="67,108,864"):
        parse_target("9000x9000")


def test_labels():
    assert parse_target("2").label == "2x"
    assert parse_target("x2.50").label == "2.5x"
    assert parse_target("1920*1080").label == "1920x1080"
    assert parse_target("4K").label == "4k"


@pytest.mark.parametrize(
    "spec, expected",
    [("auto", ("auto", None)), (" AUTO ", ("auto", None)), ("0.35", ("fraction", 0.35)),
     ("0", ("fraction", 0.0)), ("1", ("fraction", 1.0)), ("1.0", ("fraction", 1.0)),
     (".5", ("fraction", 0.5)), ("t=350", ("step", 350)), ("T=0", ("step", 0)),
     ("t = 12", ("step", 12))],
)
def test_parse_noise(spec, expected):
    kind, value = parse_noise(spec)
    assert kind == expected[0]
    if expected[1] is None:
        assert value is None
    else:
        assert value == pytest.approx(expected[1]) and type(value) is type(expected[1])


@pytest.mark.parametrize(
    "spec", ["", "1.5", "-0.1", "nan", "inf", "t=", "t=-1", "t=3.5", "t=abc", "350", "fast", "t350"]
)
def test_parse_noise_rejects(spec):
    with pytest.raises(TargetError):
        parse_noise(spec)


# ------------------------------------------------------------------------------------ planning


@pytest.mark.parametrize(
    "in_hw, spec, out_hw",
    [((270, 480), "4x", (1080, 1920)), ((10, 10), "2.7x", (27, 27)), ((5, 5), "2.5", (13, 13)),
     ((33, 47), "x3", (99, 141)), ((40, 48), "1x", (40, 48)), ((7, 3), "1.5x", (11, 5))],
)
def test_scale_plan(in_hw, spec, out_hw):
    p = output_size(in_hw, parse_target(spec))
    assert p.out_hw == out_hw and p.crop is None and p.final_hw == out_hw
    assert p.scale_x == pytest.approx(out_hw[1] / in_hw[1])


def _aspect_ok(in_hw, out_hw):
    h, w = in_hw
    oh, ow = out_hw
    # Kept aspect ratio: one uniform scale gives both sides to within 1 px (rounding).
    return abs(oh - h * ow / w) <= 1 or abs(ow - w * oh / h) <= 1


INPUTS = [(270, 480), (480, 270), (100, 100), (37, 53), (48, 13), (1, 7), (1080, 1920)]
BOXES = [(1920, 1080), (1080, 1920), (512, 512), (3840, 2160), (1999, 1001)]


@pytest.mark.parametrize("in_hw", INPUTS)
@pytest.mark.parametrize("box", BOXES)
def test_fit_modes_exact_and_undistorted(in_hw, box):
    W, H = box
    t = parse_target(f"{W}x{H}")
    # contain: inside the box, touching it on one side, aspect kept
    p = output_size(in_hw, t, "contain", allow_downscale=True)
    assert p.crop is None and p.out_h <= H and p.out_w <= W
    assert p.out_h == H or p.out_w == W
    assert _aspect_ok(in_hw, p.out_hw)
    # cover: model output covers the box with aspect kept, final crop exactly W x H, centred
    p = output_size(in_hw, t, "cover", allow_downscale=True)
    assert p.out_h >= H and p.out_w >= W and (p.out_h == H or p.out_w == W)
    assert _aspect_ok(in_hw, p.out_hw)
    assert p.final_hw == (H, W)
    if p.crop is not None:
        top, left, ch, cw = p.crop
        assert (ch, cw) == (H, W)
        assert abs(top - (p.out_h - H - top)) <= 1 and abs(left - (p.out_w - W - left)) <= 1
    # stretch: exactly the box
    p = output_size(in_hw, t, "stretch", allow_downscale=True)
    assert p.out_hw == (H, W) and p.final_hw == (H, W) and p.crop is None


def test_named_size_contain_and_cover():
    t = parse_target("1080p")
    p = output_size((270, 480), t)  # same aspect: every mode gives exactly 1920x1080
    assert p.final_hw == (1080, 1920) and p.uniform and p.scale_label() == "4.00x"
    p = output_size((300, 400), t, "contain")  # 4:3 in 16:9 -> height-limited
    assert p.out_hw == (1080, 1440)
    p = output_size((300, 400), t, "cover")
    assert p.out_hw == (1440, 1920) and p.crop == (180, 0, 1080, 1920)
    p = output_size((300, 400), t, "stretch")
    assert p.out_hw == (1080, 1920) and not p.uniform and p.scale_label() == "w 4.80x, h 3.60x"


def test_downscale_refused_unless_allowed():
    with pytest.raises(TargetError, match="allow-downscale"):
        output_size((48, 48), parse_target("0.5x"))
    with pytest.raises(TargetError, match="shrink"):
        output_size((1080, 1920), parse_target("720p"))
    with pytest.raises(TargetError):  # stretch shrinking one side is a downscale
        output_size((100, 100), parse_target("200x50"), "stretch")
    p = output_size((48, 48), parse_target("0.5x"), allow_downscale=True)
    assert p.out_hw == (24, 24)
    # cover only crops here (uniform 2x), which is not a downscale
    p = output_size((100, 100), parse_target("200x50"), "cover")
    assert p.out_hw == (200, 200) and p.final_hw == (50, 200)


def test_equal_size_is_a_refine():
    p = output_size((1080, 1920), parse_target("1080p"))
    assert p.out_hw == (1080, 1920) and p.scale == 1.0
    assert output_size((40, 48), parse_target("1")).out_hw == (40, 48)


def test_pixel_limits():
    big = int(math.isqrt(targets.MAX_OUTPUT_PIXELS))
    with pytest.raises(TargetError, match="limit"):
        output_size((big, big), parse_target("1.01x"))
    with pytest.raises(TargetError, match=f"{targets.MAX_INPUT_PIXELS:,}"):
        output_size((big + 1, big + 1), parse_target("1x"))
    with pytest.raises(TargetError, match="limit is 100"):
        output_size((8, 8), parse_target("2x"), max_output_pixels=100)
    with pytest.raises(TargetError, match="nothing"):
        output_size((3, 3), parse_target("0.1x"), allow_downscale=True)


def test_bad_fit():
    with pytest.raises(TargetError, match="contain"):
        output_size((10, 10), parse_target("2x"), "zoom")


def test_apply_crop():
    import numpy as np

    p = output_size((300, 400), parse_target("1080p"), "cover")
    a = np.arange(1440 * 1920).reshape(1440, 1920)
    c = targets.apply_crop(a, p)
    assert c.shape == (1080, 1920) and c[0, 0] == a[180, 0]
    p2 = output_size((300, 400), parse_target("2x"))
    b = np.zeros((600, 800, 3))
    assert targets.apply_crop(b, p2) is b
    with pytest.raises(ValueError):
        targets.apply_crop(b, p)


def test_as_target_numbers_pairs_and_refusals():
    """The API's target forms: text, a number (the scale, exact like the text), a (height, width)
    pair in numpy's order (the size "WIDTHxHEIGHT"); TypeError for other types."""
    import numpy as np

    assert targets.as_target(2) == parse_target("2x")
    assert targets.as_target(2.7) == parse_target("2.7x")  # 27/10 exactly, like the text
    assert targets.as_target(np.float32(3)).scale == 3.0
    assert targets.as_target((1080, 1920)) == parse_target("1920x1080")
    assert targets.as_target([np.int64(48), 64.0]) == parse_target("64x48")
    t = parse_target("4k")
    assert targets.as_target(t) is t and targets.as_target("4k") == t
    for bad in (None, True, {}, b"2x", (1, 2, 3), ("a", 2)):
        with pytest.raises(TypeError):
            targets.as_target(bad)
    for bad in (0, -1.5, float("inf"), float("nan"), targets.MAX_SCALE + 1, (0, 5), (-5, 32), (2.5, 3), (9000, 9000)):
        with pytest.raises(TargetError):
            targets.as_target(bad)


def test_check_output_size():
    assert targets.check_output_size((16, 24)) == (16, 24)
    with pytest.raises(TargetError, match="at least 1 pixel"):
        targets.check_output_size((0, 0))
    with pytest.raises(TargetError, match="the limit is"):
        targets.check_output_size((8193, 8192))
    assert targets.check_output_size((10, 10), max_output_pixels=100) == (10, 10)
    with pytest.raises(TypeError, match=r"\(height, width\) pair"):
        targets.check_output_size(None)
