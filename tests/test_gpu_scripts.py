"""scripts/ for the GPU campaign (scripts/README.md), run on CPU with tiny settings and generated
images: packing, the worker-process batches, train_lib's time-budget stop, gpu_train.py end to end
and the flat export's way back into a loadable model. The GPU path itself runs only on a machine with a GPU."""

import itertools
import json
import os
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from diffsr_jax import api, checkpointing, data, train_lib

sys.path.insert(0, os.path.join(REPO, "scripts"))
import gpu_inputs  # noqa: E402
import gpu_train  # noqa: E402
import unpack_gpu_model  # noqa: E402


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Generated photo-like images, never ../shared: an RGB PNG, a JPEG and a grayscale PNG."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    for i, (h, w, ext) in enumerate([(40, 48, "png"), (36, 44, "jpg"), (48, 40, "png")]):
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        img = np.stack([yy, xx, 0.5 + 0.5 * np.sin(7 * (xx - yy + i))], -1) + 0.05 * rng.normal(size=(h, w, 3))
        im = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
        (im.convert("L") if i == 2 else im).save(folder / f"{i}.{ext}")
    return str(folder)


@pytest.fixture(scope="module")
def packed(photos, tmp_path_factory):
    return gpu_inputs.pack_images([photos], str(tmp_path_factory.mktemp("pack") / "imgs.npz"))["path"]


def test_pack_images_round_trip_in_both_formats(photos, packed, tmp_path):
    want = [data.load_image_rgb(os.path.join(f, r)) for f, r in data.list_image_files(photos)]
    assert np.load(packed)["format"] == "arrays"  # small enough: decoded arrays (auto)
    for fmt in ("arrays", "encoded"):
        path = gpu_inputs.pack_images([photos], str(tmp_path / f"{fmt}.npz"), fmt=fmt)["path"]
        images, info = gpu_inputs.load_packed_images(path)
        assert info == {"format": fmt, "n": 3, "mismatched": 0}
        assert all(a.dtype == np.uint8 and np.array_equal(a, b) for a, b in zip(images, want))
    with pytest.raises(ValueError, match="MiB"):
        gpu_inputs.pack_images([photos], str(tmp_path / "big.npz"), max_mib=1e-4)


def test_pack_refuses_evaluation_sets(tmp_path):
    folder = tmp_path / "data" / "CSet14"
    folder.mkdir(parents=True)
    with pytest.raises(ValueError, match="evaluation set"):
        gpu_inputs.pack_images([str(folder)], str(tmp_path / "x.npz"))


def test_process_batches_equal_crop_sampler(packed):
    images, _ = gpu_inputs.load_packed_images(packed)
    kw = dict(batch_size=3, crop_size=16, seed=5, max_downscale=2.0, flip=True, rot90=True)
    sampler = data.CropSampler(images, **kw)
    with gpu_inputs.ProcessBatches(packed, start_step=7, workers=1, in_flight=2, **kw) as it:
        got = [(s, np.array(b)) for s, b in itertools.islice(it, 5)]  # views: copy before moving on
    assert [s for s, _ in got] == list(range(7, 12))
    for s, b in got:
        np.testing.assert_array_equal(b, sampler.batch(s))


def test_process_batches_report_broken_workers_and_close_mid_stream(packed, tmp_path):
    """A worker that cannot start, or dies, is an error with its cause, not a wait; closing with
    batches still in flight returns (multiprocessing.Pool's terminate() could hang there)."""
    kw = dict(batch_size=2, crop_size=8, seed=0)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(RuntimeError, match="batch worker 0 failed at step 0"):
        gpu_inputs.ProcessBatches(str(bad), start_step=0, workers=1, first_timeout_s=60, **kw)
    with pytest.raises(ValueError, match="workers"):
        gpu_inputs.ProcessBatches(packed, start_step=0, workers=0, **kw)

    it = gpu_inputs.ProcessBatches(packed, start_step=0, workers=2, in_flight=4, **kw)
    assert [next(it)[0] for _ in range(3)] == [0, 1, 2]
    it._workers[1][0].kill()  # step 3 is worker 1's
    it._workers[1][0].join()
    with pytest.raises(RuntimeError, match="exited"):
        for _ in range(4):
            next(it)
    it.close()
    assert all(not p.is_alive() for p, _ in it._workers)
    assert list(it) == []  # a closed iterator ends

    with gpu_inputs.ProcessBatches(packed, start_step=0, workers=2, in_flight=4, **kw) as it:
        next(it)  # leaves three batches in flight
    assert all(not p.is_alive() for p, _ in it._workers)


def test_gpu_train_end_to_end_on_cpu(packed, tiny_model_dir, tmp_path):
    """Budget 0: the step-0 state seeded from the init model trains one step, which the budget stop
    saves (save_every is 2000) and exports; a second call resumes it to --num-steps 3."""
    init = gpu_inputs.model_dir_to_flat(tiny_model_dir, str(tmp_path / "init"))
    out, wd = tmp_path / "out", tmp_path / "work"
    common = ["--config", os.path.join(REPO, "configs", "tiny.py"), "--images", packed, "--init", init,
              "--workdir", str(wd), "--reserve-s", "0", "--batch-size", "4", "--log-every", "1", "--dtype", "float32"]
    rc = gpu_train.main(common + ["--out", str(out), "--minutes", "0", "--workers", "1"], t_start=time.time())
    assert rc == 0
    timings = json.loads((out / "timings.json").read_text())
    assert timings["error"] is None and timings["pipeline"].startswith("1 processes")
    assert timings["start_step"] == 0 and timings["end_step"] == timings["exported_step"] == 1
    assert gpu_train.latest_step(str(wd)) == 1
    assert timings["compute_dtype"] == "float32" and timings["images"]["mismatched"] == 0
    assert [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()] == [1]
    assert sorted(os.listdir(out)) == ["model", "timings.json", "train_log.jsonl"]
    assert gpu_train.check_out_tree(str(out)) == []

    unpack_gpu_model.main([str(out / "model"), str(tmp_path / "back")])
    back = api.load_model(str(tmp_path / "back"))
    assert back.meta["step"] == 1 and back.meta["gpu_run"]["batch_size"] == 4
    assert back.meta["train_config"]["train"]["init_from"] == init
    # The EMA params of the budget-stopped checkpoint, and not the starting point any more.
    exported = api.load_model(str(wd / "export"))
    start = api.load_model(tiny_model_dir)
    for a, b in zip(jax.tree.leaves(back.params), jax.tree.leaves(exported.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not all(np.array_equal(a, s) for a, s in zip(jax.tree.leaves(back.params), jax.tree.leaves(start.params)))

    out2 = tmp_path / "out2"
    rc = gpu_train.main(common + ["--out", str(out2), "--minutes", "10", "--num-steps", "3", "--workers", "0"],
                        t_start=time.time())
    timings = json.loads((out2 / "timings.json").read_text())
    assert rc == 0 and timings["pipeline"] == "1 thread" and timings["init_model_step"] is None
    assert timings["start_step"] == 1 and timings["end_step"] == timings["exported_step"] == 3
    assert checkpointing.read_model_meta(str(out2 / "model"))["step"] == 3

    # pack_gpu_inputs.sh's way from a workdir (its newest checkpoint's EMA) to a flat init model
    gpu_inputs.main(["flat-model", "--workdir", str(wd), "--config", os.path.join(REPO, "configs", "tiny.py"),
                     "--out", str(tmp_path / "flat3")])
    params, meta = gpu_inputs.load_flat_params(str(tmp_path / "flat3"))
    assert meta["step"] == 3
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(api.load_model(str(wd / "export")).params)):
        np.testing.assert_array_equal(a, np.asarray(b))
