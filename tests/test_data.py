"""Tests for diffsr_jax.data on tiny generated fixtures (never reads ../shared)."""

import os
import time

import numpy as np
import pytest
from PIL import Image

from diffsr_jax import data


def _rgb(seed, h, w):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture()
def folder(tmp_path):
    """A folder with every supported flavour of image plus two broken files."""
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(_rgb(0, 40, 48)).save(d / "a_rgb.png")
    Image.fromarray(_rgb(1, 36, 44)[..., 0]).save(d / "b_gray.png")  # mode L
    g16 = np.random.default_rng(2).integers(0, 65536, (33, 41), dtype=np.uint16)
    Image.fromarray(g16).save(d / "c_gray16.png")  # mode I;16
    rgba = np.concatenate([_rgb(3, 34, 34), np.full((34, 34, 1), 7, np.uint8)], -1)
    Image.fromarray(rgba).save(d / "sub" / "d_rgba.PNG")  # upper-case extension, nested
    Image.fromarray(_rgb(4, 40, 40)).save(d / "e_photo.jpg", quality=90)
    (d / "f_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (d / "g_empty.jpg").write_bytes(b"")
    (d / "notes.txt").write_text("not an image")
    return d


GOOD = ["a_rgb.png", "b_gray.png", "c_gray16.png", "e_photo.jpg", "sub/d_rgba.PNG"]


def test_load_image_rgb_modes(folder):
    a = data.load_image_rgb(folder / "a_rgb.png")
    assert a.dtype == np.uint8 and a.shape == (40, 48, 3)
    np.testing.assert_array_equal(a, _rgb(0, 40, 48))

    g = data.load_image_rgb(folder / "b_gray.png")
    assert g.shape == (36, 44, 3)
    np.testing.assert_array_equal(g[..., 0], _rgb(1, 36, 44)[..., 0])
    np.testing.assert_array_equal(g[..., 0], g[..., 2])

    g16 = data.load_image_rgb(folder / "c_gray16.png")
    raw = np.random.default_rng(2).integers(0, 65536, (33, 41), dtype=np.uint16)
    assert g16.shape == (33, 41, 3)
    np.testing.assert_array_equal(g16[..., 1], np.round(raw / 257.0).astype(np.uint8))

    rgba = data.load_image_rgb(folder / "sub" / "d_rgba.PNG")  # alpha dropped, colours kept
    np.testing.assert_array_equal(rgba, _rgb(3, 34, 34))

    j = data.load_image_rgb(folder / "e_photo.jpg")
    assert j.shape == (40, 40, 3)


def test_load_image_rgb_bad_files(folder, tmp_path):
    for name in ["f_corrupt.png", "g_empty.jpg"]:
        with pytest.raises(data.DataError, match=name):
            data.load_image_rgb(folder / name)
    full = tmp_path / "trunc_src.png"
    Image.fromarray(_rgb(5, 64, 64)).save(full)
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(full.read_bytes()[:400])
    with pytest.raises(data.DataError, match="trunc.png"):
        data.load_image_rgb(trunc)
    with pytest.raises(data.DataError, match="missing.png"):
        data.load_image_rgb(tmp_path / "missing.png")


def test_prepare_round_trip_and_reuse(folder, tmp_path):
    dd = tmp_path / "tfds"
    with pytest.warns(UserWarning, match="skipping unreadable") as rec:
        src = data.prepare_folder_dataset(str(folder), str(dd))
    warned = " ".join(str(w.message) for w in rec)
    assert "f_corrupt.png" in warned and "g_empty.jpg" in warned
    assert len(src) == len(GOOD)
    expected = {str(folder / p): data.load_image_rgb(folder / p) for p in GOOD}
    for i in range(len(src)):
        path = src.record(i)["path"]
        path = path.decode() if isinstance(path, bytes) else path
        np.testing.assert_array_equal(src[i], expected[os.path.realpath(path)])
    assert [os.path.basename(src.record(i)["path"].decode()) for i in range(len(src))] == \
        [os.path.basename(p) for p in GOOD]
    assert list(dd.rglob("*.array_record*"))

    mtimes = {p: p.stat().st_mtime_ns for p in dd.rglob("*") if p.is_file()}
    t0 = time.perf_counter()
    src2 = data.prepare_folder_dataset(str(folder), str(dd))  # no rebuild: no warnings, same files
    assert time.perf_counter() - t0 < 5
    assert src2.name == src.name and len(src2) == len(src)
    assert {p: p.stat().st_mtime_ns for p in dd.rglob("*") if p.is_file()} == mtimes


def test_merge_two_folders_and_no_collision(tmp_path):
    f1, f2 = tmp_path / "one", tmp_path / "two"
    f1.mkdir(), f2.mkdir()
    Image.fromarray(_rgb(10, 20, 20)).save(f1 / "x.png")
    Image.fromarray(_rgb(11, 21, 22)).save(f2 / "x.png")  # same name, different folder
    Image.fromarray(_rgb(12, 23, 20)).save(f2 / "y.bmp")
    dd = str(tmp_path / "tfds")
    s1 = data.prepare_folder_dataset(str(f1), dd)
    s12 = data.open_image_source([str(f1), str(f2)], dd)
    assert len(s1) == 1 and len(s12) == 3 and s1.name != s12.name
    np.testing.assert_array_equal(s12[0], _rgb(10, 20, 20))
    np.testing.assert_array_equal(s12[1], _rgb(11, 21, 22))
    np.testing.assert_array_equal(s12[2], _rgb(12, 23, 20))


def test_empty_or_unreadable_folder_raises(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(data.DataError, match="no image files"):
        data.prepare_folder_dataset(str(empty), str(tmp_path / "tfds"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "z.png").write_bytes(b"nope")
    with pytest.warns(UserWarning), pytest.raises(data.DataError, match="no readable images"):
        data.prepare_folder_dataset(str(bad), str(tmp_path / "tfds"))
    with pytest.raises(data.DataError, match="does not exist"):
        data.prepare_folder_dataset(str(tmp_path / "nowhere"), str(tmp_path / "tfds"))


IMAGES = [_rgb(20, 64, 80), _rgb(21, 50, 50), _rgb(22, 96, 70)]


def test_sample_batch_shape_range_determinism():
    kw = dict(max_downscale=3.0)
    b = data.sample_batch(IMAGES, 6, 16, (7, 3), **kw)
    assert b.shape == (6, 16, 16, 3) and b.dtype == np.float32
    assert b.min() >= -1.0 and b.max() <= 1.0 and b.std() > 0.1
    np.testing.assert_array_equal(b, data.sample_batch(IMAGES, 6, 16, (7, 3), **kw))
    assert not np.array_equal(b, data.sample_batch(IMAGES, 6, 16, (7, 4), **kw))
    assert not np.array_equal(b, data.sample_batch(IMAGES, 6, 16, (8, 3), **kw))
    g = np.random.default_rng([7, 3])
    np.testing.assert_array_equal(b, data.sample_batch(IMAGES, 6, 16, g, **kw))


def test_sample_batch_plain_crops_are_exact_pixels():
    # max_downscale=1 and no augmentation: every crop is a window of some image, pixel for pixel.
    b = data.sample_batch(IMAGES, 4, 8, (0, 0), max_downscale=1.0, flip=False, rot90=False)
    u8 = np.round((b + 1.0) * 127.5).astype(np.uint8)
    for crop in u8:
        found = any((np.lib.stride_tricks.sliding_window_view(im, (8, 8, 3))[..., :, :, :]
                     == crop).all(axis=(-3, -2, -1)).any() for im in IMAGES)
        assert found


def test_too_small_images():
    small = [_rgb(30, 10, 40)]
    with pytest.raises(data.DataError, match="at least 16x16"):
        data.sample_batch(small, 2, 16, (0, 0))
    with pytest.warns(UserWarning, match="smaller than 16px"):
        s = data.CropSampler(small + IMAGES[:1], batch_size=2, crop_size=16, seed=0)
    assert len(s.images) == 1


def test_crop_sampler_matches_sample_batch():
    s = data.CropSampler(IMAGES, batch_size=3, crop_size=16, seed=5, max_downscale=2.0)
    np.testing.assert_array_equal(s.batch(9), data.sample_batch(IMAGES, 3, 16, (5, 9), max_downscale=2.0))


def test_batch_iterator_resume():
    kw = dict(batch_size=2, crop_size=16, seed=3, max_downscale=2.0, prefetch=2)
    with data.BatchIterator(IMAGES, **kw) as it:
        first = [next(it) for _ in range(5)]
    assert [s for s, _ in first] == [0, 1, 2, 3, 4]
    with data.BatchIterator(IMAGES, start_step=3, **kw) as it:
        resumed = [next(it) for _ in range(2)]
    assert [s for s, _ in resumed] == [3, 4]
    for (_, a), (_, b) in zip(first[3:], resumed):
        np.testing.assert_array_equal(a, b)
    assert not it._thread.is_alive()
    with pytest.raises(StopIteration):
        next(it)


def test_batch_iterator_num_steps_and_errors():
    it = data.BatchIterator(IMAGES, batch_size=1, crop_size=8, seed=0, start_step=2, num_steps=4)
    assert [s for s, _ in it] == [2, 3]
    it.close()
    with pytest.raises(data.DataError):
        data.BatchIterator([_rgb(0, 4, 4)], batch_size=1, crop_size=8, seed=0)


def test_tfds_offline_fails_fast(tmp_path, monkeypatch):
    probed = []
    monkeypatch.setattr(data, "_host_reachable", lambda host, *a, **k: probed.append(host) or False)
    t0 = time.perf_counter()
    with pytest.raises(data.DataError, match="unreachable"):
        data.open_image_source("tfds:div2k/bicubic_x2:train", str(tmp_path / "tfds"))
    assert time.perf_counter() - t0 < 10
    assert probed  # the (patched) network check ran instead of TFDS's download retries


def test_tfds_unknown_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_host_reachable", lambda *a, **k: False)
    with pytest.raises(data.DataError, match="unknown TFDS dataset"):
        data.open_image_source("tfds:no_such_dataset_xyz", str(tmp_path / "tfds"))


def test_parse_tfds_spec():
    assert data.parse_tfds_spec("tfds:div2k/bicubic_x2:train") == ("div2k/bicubic_x2", "train")
    assert data.parse_tfds_spec("tfds:div2k") == ("div2k", "train")
    assert data.parse_tfds_spec("tfds:foo:train[:10%]") == ("foo", "train[:10%]")
