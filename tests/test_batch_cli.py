"""Batch jobs of the CLI (diffsr_jax.batch, diffsr_jax.batch_run): inputs at scale, resuming,
the manifest, sharding, batching by output size, and the faults found in issue 33. The model is
the bicubic FakeApi (tests/fake_api.py), in-process or, to be killed, in a subprocess."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from diffsr_jax import batch, cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_CLI = os.path.join(REPO, "tests", "fake_api.py")
sys.path.insert(0, os.path.join(REPO, "tests"))
import fake_api  # noqa: E402


@pytest.fixture()
def api(monkeypatch, tmp_path):
    return fake_api.install(monkeypatch, tmp_path)


def _save(path, h, w, seed=0, mode="RGB"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(a).convert(mode).save(path)


def _files(folder):
    """Relative paths of the (non-hidden) files under folder, sorted."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out += [os.path.relpath(os.path.join(root, f), folder) for f in files if not f.startswith(".")]
    return sorted(out)


def _bytes(folder):
    return {f: open(os.path.join(folder, f), "rb").read() for f in _files(folder)}


def _manifest(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _err(capsys):
    cap = capsys.readouterr()
    return cap.out, [l for l in cap.err.splitlines() if l.strip()]


# ---------------------------------------------------------------------------------------------
# inputs at scale


@pytest.fixture()
def tree(tmp_path):
    d = tmp_path / "in"
    _save(str(d / "a.png"), 8, 10, 0)
    _save(str(d / "sub" / "b.png"), 6, 6, 1)
    _save(str(d / "sub" / "deeper" / "c.jpg"), 8, 8, 2)
    (d / "sub" / "notes.txt").write_text("not an image")
    return d


def test_recursive_mirrors_the_tree_and_plain_folders_stay_flat(api, tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main([str(tree), "-t", "2x", "-o", str(out), "--recursive"]) == 0
    assert _files(out) == ["a.png", os.path.join("sub", "b.png"), os.path.join("sub", "deeper", "c.jpg")]
    with Image.open(out / "sub" / "deeper" / "c.jpg") as im:
        assert im.size == (16, 16)
    flat = tmp_path / "flat"
    assert cli.main([str(tree), "-t", "2x", "-o", str(flat)]) == 0  # without -r: the folder's own images
    assert _files(flat) == ["a.png"]


def test_recursive_output_inside_the_input_tree_is_not_read_back(api, tree, capsys):
    out = tree / "upscaled"
    assert cli.main([str(tree), "-t", "2x", "-o", str(out), "-r"]) == 0
    n = len(api.calls)
    assert n == 3
    assert cli.main([str(tree), "-t", "2x", "-o", str(out), "-r", "--skip-existing"]) == 0
    assert len(api.calls) == n and _files(out) == ["a.png", os.path.join("sub", "b.png"),
                                                  os.path.join("sub", "deeper", "c.jpg")]


def test_recursive_walk_survives_a_folder_link_loop(api, tree, tmp_path, capsys):
    os.symlink("..", tree / "sub" / "up")  # sub/up -> in/: a loop when links are followed
    out = tmp_path / "out"
    assert cli.main([str(tree), "-t", "2x", "-o", str(out), "-r"]) == 0
    assert len(api.calls) == 3 and len(_files(out)) == 3


def test_list_file_glob_and_dedup(api, tree, tmp_path, capsys):
    lists = tmp_path / "lists"
    lists.mkdir()
    _save(str(lists / "near.png"), 5, 7, 3)
    (lists / "todo.txt").write_text(
        "# images to do\n"
        "\n"
        "near.png\n"                           # relative to the list file's folder
        f"  {tree / 'a.png'}  \n"              # absolute, spaces around
        f"{tree / 'sub'}\n"                    # a folder: its own images
        "# the end\n")
    out = tmp_path / "out"
    rc = cli.main([f"@{lists / 'todo.txt'}", str(tree / "a.png"), str(tree / "*" / "*.png"),
                   str(tree / "**" / "*.jpg"), "-t", "2x", "-o", str(out)])
    _, err = _err(capsys)
    assert rc == 0, err
    # a.png came three ways (list, path, glob) and b.png two (list folder, glob): each done once
    assert sorted(os.path.basename(c) for c in _files(out)) == ["a.png", "b.png", "c.jpg", "near.png"]
    assert len(api.calls) == 4


def test_list_file_problems_name_the_line(api, tmp_path, capsys):
    _save(str(tmp_path / "ok.png"), 4, 4)
    (tmp_path / "l.txt").write_text("ok.png\nmissing.png\n")
    rc = cli.main([f"@{tmp_path / 'l.txt'}", f"@{tmp_path / 'nolist.txt'}", str(tmp_path / "*.nope"),
                   "-t", "2x", "-o", str(tmp_path / "out")])
    _, err = _err(capsys)
    assert rc == 2 and len(err) == 3, err
    assert "l.txt:2: " in err[0] and "missing.png: no such file" in err[0]
    assert "nolist.txt" in err[1] and "no such list file" in err[1]
    assert "*.nope" in err[2] and "matches" in err[2]
    assert _files(tmp_path / "out") == ["ok.png"]


def test_expand_inputs_is_sorted_whatever_the_argument_order(tree):
    a = batch.expand_inputs([str(tree / "sub"), str(tree / "a.png")], recursive=True)
    b = batch.expand_inputs([str(tree / "a.png"), str(tree / "sub"), str(tree / "sub" / "b.png")], recursive=True)
    assert [s.path for s in a.sources] == [s.path for s in b.sources]
    assert [os.path.basename(s.path) for s in a.sources] == ["a.png", "b.png", "c.jpg"]


# ---------------------------------------------------------------------------------------------
# resuming and the manifest


def test_skip_existing_and_manifest_lines(api, tmp_path, capsys):
    src = tmp_path / "in"
    for i, (h, w) in enumerate([(8, 8), (6, 10), (8, 8)]):
        _save(str(src / f"{i}.png"), h, w, i)
    (src / "3.png").write_bytes(b"not a png")
    out, man = tmp_path / "out", tmp_path / "logs" / "manifest.jsonl"
    api.info_extra = {"degradation": {"blur": 1.2, "jpeg": 80}, "notes": ["the degradation was estimated"]}
    rc = cli.main([str(src), "-t", "2x", "-o", str(out), "--manifest", str(man), "--seed", "3"])
    stdout, err = _err(capsys)
    assert rc == 2  # 3.png is unreadable
    first = _manifest(man)
    assert [(os.path.basename(r["input"]), r["status"]) for r in sorted(first, key=lambda r: r["input"])] == \
        [("0.png", "ok"), ("1.png", "ok"), ("2.png", "ok"), ("3.png", "error")]
    ok = next(r for r in first if r["input"].endswith("1.png"))
    assert ok["output"] == str(out / "1.png") and ok["input_size"] == [10, 6] and ok["output_size"] == [20, 12]
    assert ok["t"] == 400 and ok["steps"] == 25 and ok["mode"] == "consistent" and ok["consistency"] == 1.0
    assert ok["colour_fix"] == "wavelet" and ok["seed"] == 3 and ok["error"] is None
    assert ok["degradation"] == {"blur": 1.2, "jpeg": 80} and ok["seconds"] >= 0 and ok["shard"] == "0/1"
    bad = next(r for r in first if r["status"] == "error")
    assert "not an image" in bad["error"] and bad["t"] is None
    assert sum("note: " in l and "the degradation was estimated" in l for l in err) == 3
    assert "done: 3 written, 1 failed; 4 inputs" in stdout

    os.remove(out / "2.png")
    os.remove(src / "3.png")
    api.info_extra = {}
    rc = cli.main([str(src), "-t", "2x", "-o", str(out), "--manifest", str(man), "--skip-existing",
                   "--consistency", "off", "--colour-fix", "none"])
    stdout, err = _err(capsys)
    assert rc == 0 and err == []
    lines = _manifest(man)
    assert lines[:4] == first  # appended
    again = {os.path.basename(r["input"]): r for r in lines[4:]}
    assert {k: r["status"] for k, r in again.items()} == {"0.png": "skipped", "1.png": "skipped", "2.png": "ok"}
    assert again["0.png"]["t"] is None and again["0.png"]["output"] == str(out / "0.png")
    assert again["2.png"]["mode"] == "plain" and again["2.png"]["colour_fix"] == "none"
    assert "done: 1 written, 2 skipped (output exists); 3 inputs" in stdout


def test_existing_output_is_still_an_error_without_skip_existing(api, tmp_path, capsys):
    _save(str(tmp_path / "a.png"), 4, 4)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"precious")
    rc = cli.main([str(tmp_path / "a.png"), "-t", "2x", "-o", str(tmp_path / "out")])
    _, err = _err(capsys)
    assert rc == 2 and "--overwrite" in err[0] and "--skip-existing" in err[0]
    assert (tmp_path / "out" / "a.png").read_bytes() == b"precious" and api.load_calls == []
    rc = cli.main([str(tmp_path / "a.png"), "-t", "2x", "-o", str(tmp_path / "out"), "--skip-existing"])
    assert rc == 0 and api.load_calls == [] and (tmp_path / "out" / "a.png").read_bytes() == b"precious"


def _fake_cli(args, env_extra=None, **kw):
    env = dict(os.environ, **(env_extra or {}))
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, FAKE_CLI, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["SIGKILL", "SIGINT", "SIGTERM"])
def test_killed_job_resumes_with_skip_existing(api, tmp_path, capsys, sig):
    """A batch job killed after k outputs, rerun with --skip-existing, does only the rest, exits
    0, leaves the outputs of an uninterrupted run byte for byte, and a complete manifest."""
    src = tmp_path / "in"
    for i in range(6):
        _save(str(src / f"img{i}.png"), 6 + (i % 2), 8, i)  # two output sizes, three images each
    ref = tmp_path / "ref"
    assert cli.main([str(src), "-t", "2x", "-o", str(ref), "--batch-images", "1"]) == 0
    out, man = tmp_path / "out", tmp_path / "m.jsonl"
    args = [str(src), "-t", "2x", "-o", str(out), "--batch-images", "1", "--manifest", str(man)]
    p = _fake_cli(args, {"FAKE_API_SLEEP": "0.6"})
    deadline = time.time() + 60
    while time.time() < deadline and p.poll() is None and len(_files(out) if out.exists() else []) < 2:
        time.sleep(0.05)
    assert p.poll() is None, p.communicate()
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=60)
    done = _files(out)
    assert 2 <= len(done) < 6, (done, stderr)
    killed_lines = _manifest(man)  # whole lines only
    if sig != signal.SIGKILL:  # Ctrl-C, preemption: the writes in flight finish and are recorded
        assert (p.returncode, sig) in ((130, signal.SIGINT), (143, signal.SIGTERM)), stderr
        assert ("interrupted" if sig == signal.SIGINT else "terminated") in stderr
        assert sorted(os.path.basename(r["output"]) for r in killed_lines if r["status"] == "ok") == done
    p = _fake_cli(args + ["--skip-existing"])
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr
    assert _bytes(out) == _bytes(ref)
    rerun = _manifest(man)[len(killed_lines):]
    assert sorted((os.path.basename(r["input"]), r["status"]) for r in rerun) == \
        sorted((f"img{i}.png", "skipped" if f"img{i}.png" in done else "ok") for i in range(6))
    assert f"{6 - len(done)} written, {len(done)} skipped" in stdout


# ---------------------------------------------------------------------------------------------
# sharding


def test_two_shard_processes_write_exactly_the_union(api, tmp_path, capsys):
    src = tmp_path / "in"
    for i in range(7):
        _save(str(src / f"p{i}.png"), 5, 6 + i % 3, i)
    ref = tmp_path / "ref"
    assert cli.main([str(src), "-t", "2x", "-o", str(ref)]) == 0
    out = tmp_path / "out"
    procs = [_fake_cli([str(src), "-t", "2x", "-o", str(out), "--shard", f"{k}/2", "--manifest",
                        str(tmp_path / "m-{shard}.jsonl")]) for k in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    mine = [{os.path.basename(r["input"]) for r in _manifest(tmp_path / f"m-{k}.jsonl") if r["status"] == "ok"}
            for k in range(2)]
    assert mine[0] == {"p0.png", "p2.png", "p4.png", "p6.png"} and mine[1] == {"p1.png", "p3.png", "p5.png"}
    assert _bytes(out) == _bytes(ref)
    assert "in shard 1/2 (from --shard) of 7 in all" in results[1][0]


def test_shard_defaults_to_the_jax_process(api, tmp_path, capsys, monkeypatch):
    import jax

    from diffsr_jax import sharding

    src = tmp_path / "in"
    for i in range(5):
        _save(str(src / f"p{i}.png"), 4, 4, i)
    modes = []
    monkeypatch.setattr(sharding, "maybe_initialize_distributed", lambda mode="auto", environ=None: modes.append(mode))
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    rc = cli.main([str(src), "-t", "2x", "-o", str(tmp_path / "out")])
    stdout, _ = _err(capsys)
    assert rc == 0 and modes == ["auto"]
    assert _files(tmp_path / "out") == ["p1.png", "p3.png"]
    assert "in shard 1/2 (from jax.process_index()) of 5 in all" in stdout
    modes.clear()  # --shard wins, and no distributed start-up in auto mode then
    assert cli.main([str(src), "-t", "2x", "-o", str(tmp_path / "out2"), "--shard", "0/2"]) == 0
    assert modes == [] and _files(tmp_path / "out2") == ["p0.png", "p2.png", "p4.png"]


# ---------------------------------------------------------------------------------------------
# batching by output size


def test_images_are_batched_by_output_size(api, tmp_path, capsys):
    src = tmp_path / "in"
    sizes = {"a": (8, 8), "b": (6, 10), "c": (8, 8), "d": (8, 8), "e": (6, 10), "f": (5, 5), "g": (8, 8)}
    for i, (name, hw) in enumerate(sizes.items()):
        _save(str(src / f"{name}.png"), *hw, i)
    rc = cli.main([str(src), "-t", "2x", "-o", str(tmp_path / "out"), "--batch-images", "3"])
    _, err = _err(capsys)
    assert rc == 0, err
    assert [(c["out_hw"], c["shapes"]) for c in api.batch_calls] == [
        ((16, 16), [(8, 8)] * 3),   # a c d
        ((16, 16), [(8, 8)]),       # g
        ((12, 20), [(6, 10)] * 2),  # b e
        ((10, 10), [(5, 5)]),       # f
    ]
    assert api.array_calls == [] and all(c["progress"] for c in api.batch_calls)
    assert len(_files(tmp_path / "out")) == 7


def test_decoding_and_writing_overlap_the_compute(api, tmp_path, capsys, monkeypatch):
    import threading

    from diffsr_jax import image_io

    for i in range(4):
        _save(str(tmp_path / "in" / f"{i}.png"), 8, 8, i)
    events = []
    real_read, real_write, real_batch = image_io.read_image, image_io.write_image, api.upscale_batch

    def read(path, **kw):
        events.append(("read", os.path.basename(path), threading.current_thread().name, time.perf_counter()))
        return real_read(path, **kw)

    def write(path, *a, **kw):
        events.append(("write", os.path.basename(path), threading.current_thread().name, time.perf_counter()))
        return real_write(path, *a, **kw)

    def upscale_batch(images, out_hw, **kw):
        start = time.perf_counter()
        time.sleep(0.3)
        out = real_batch(images, out_hw, **kw)
        events.append(("batch", len(images), start, time.perf_counter()))
        return out

    monkeypatch.setattr(image_io, "read_image", read)
    monkeypatch.setattr(image_io, "write_image", write)
    api.upscale_batch = upscale_batch
    assert cli.main([str(tmp_path / "in"), "-t", "2x", "-o", str(tmp_path / "out"), "--batch-images", "2"]) == 0
    (_, _, _, end1), (_, _, start2, end2) = [e for e in events if e[0] == "batch"]
    reads = {e[1]: e for e in events if e[0] == "read"}
    writes = {e[1]: e for e in events if e[0] == "write"}
    assert all(e[2].startswith("diffsr-read") for e in reads.values())
    assert all(e[2].startswith("diffsr-write") for e in writes.values())
    assert reads["2.png"][3] < end1 and reads["3.png"][3] < end1  # the next chunk decoded during the first
    assert writes["0.png"][3] < end2 and writes["1.png"][3] < end2  # the first written during the second


def test_a_failing_batch_falls_back_to_one_at_a_time(api, tmp_path, capsys):
    src = tmp_path / "in"
    for i, name in enumerate("abcde"):
        _save(str(src / f"{name}.png"), 8, 7 if name == "b" else 8, i)  # b: same output size via 'stretch'
    (src / "c.png").write_bytes(open(src / "c.png", "rb").read()[:70])  # a header, then truncated
    api.fail_on = {(8, 7)}
    rc = cli.main([str(src), "-t", "16x16", "--fit", "stretch", "-o", str(tmp_path / "out"), "--batch-images", "2"])
    _, err = _err(capsys)
    assert rc == 2
    errors = [l for l in err if l.startswith("error: ")]
    assert len(errors) == 2 and "b.png" in errors[0] and "RESOURCE_EXHAUSTED" in errors[0]
    assert "c.png" in errors[1] and "truncated" in errors[1]
    assert any(l.startswith("note: a batch of 2 images to 16x16 failed") for l in err)
    # a+b failed together; then a, b alone; the rest of the size one at a time too (c unreadable)
    assert [c["shapes"] for c in api.batch_calls] == [[(8, 8), (8, 7)]]
    assert api.array_calls == [(8, 8), (8, 7), (8, 8), (8, 8)]
    assert _files(tmp_path / "out") == ["a.png", "d.png", "e.png"]


def test_decoded_size_differs_from_header(api, tmp_path, capsys):
    """EXIF orientation 6 (rotated): the header says 10x6, the upright image is 6x10."""
    im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert batch.probe_size(str(tmp_path / "rot.jpg")) == (10, 6)
    assert cli.main([str(tmp_path / "rot.jpg"), "-t", "2x", "-o", str(tmp_path / "o.png")]) == 0
    assert api.batch_calls[0]["out_hw"] == (20, 12)
    with Image.open(tmp_path / "o.png") as o:
        assert o.size == (12, 20)


def test_a_header_that_lies_about_the_size_is_replanned_when_decoded(api, tmp_path, capsys, monkeypatch):
    for name in "abc":
        _save(str(tmp_path / "in" / f"{name}.png"), 8, 8)
    real = batch.probe_size
    monkeypatch.setattr(batch, "probe_size", lambda p: (5, 5) if p.endswith("b.png") else real(p))
    assert cli.main([str(tmp_path / "in"), "-t", "2x", "-o", str(tmp_path / "out")]) == 0
    # b was planned as 5x5 -> 10x10 (a group of its own); decoded 8x8 it goes alone, to 16x16
    assert [c["shapes"] for c in api.batch_calls] == [[(8, 8), (8, 8)]] and api.array_calls == [(8, 8)]
    with Image.open(tmp_path / "out" / "b.png") as o:
        assert o.size == (16, 16)


# ---------------------------------------------------------------------------------------------
# faults (issue 33, part B "Also")


def test_a_file_where_the_output_folder_should_be_is_refused_before_any_work(api, tmp_path, capsys):
    _save(str(tmp_path / "a.png"), 4, 4)
    (tmp_path / "afile.txt").write_text("I am a file")
    rc = cli.main([str(tmp_path / "a.png"), "-t", "2x", "-o", str(tmp_path / "afile.txt" / "res.png"), "--overwrite"])
    _, err = _err(capsys)
    assert rc == 2 and len(err) == 1, err
    assert "afile.txt is a file, not a folder" in err[0] and "exists (use --overwrite" not in err[0]
    assert api.load_calls == [] and api.calls == []
    rc = cli.main([str(tmp_path / "a.png"), "-t", "2x", "-o", str(tmp_path / "afile.txt" / "out" / "")])
    _, err = _err(capsys)
    assert rc == 2 and len(err) == 1 and "is a file, not a folder" in err[0] and api.load_calls == []


def test_an_unwritable_output_folder_is_refused_before_any_work(api, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    _save(str(tmp_path / "a.png"), 4, 4)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc = cli.main([str(tmp_path / "a.png"), "-t", "2x", "-o", str(ro / "sub")])
    finally:
        ro.chmod(0o700)
    _, err = _err(capsys)
    assert rc == 2 and "permission denied" in err[0] and api.load_calls == []


def test_a_symlink_loop_is_reported_as_such(api, tmp_path, capsys):
    os.symlink("loop.png", tmp_path / "loop.png")
    os.symlink("nowhere.png", tmp_path / "dangling.png")
    rc = cli.main([str(tmp_path / "loop.png"), str(tmp_path / "dangling.png"), "-t", "2x", "-o", str(tmp_path / "o")])
    _, err = _err(capsys)
    assert rc == 2 and len(err) == 2, err
    assert "loop.png" in err[0] and "symlink loop" in err[0] and "no such file" not in err[0]
    assert "dangling.png" in err[1] and "broken symbolic link" in err[1]
    folder = tmp_path / "f"
    folder.mkdir()
    _save(str(folder / "ok.png"), 4, 4)
    os.symlink("self.png", folder / "self.png")
    rc = cli.main([str(folder), "-t", "2x", "-o", str(tmp_path / "o2")])  # inside a folder too
    _, err = _err(capsys)
    assert rc == 2 and len(err) == 1 and "self.png" in err[0] and "symlink loop" in err[0]
    assert _files(tmp_path / "o2") == ["ok.png"]


# ---------------------------------------------------------------------------------------------
# the real model


def test_real_model_batched_equals_one_at_a_time(tiny_model_dir, tmp_path, capsys):
    """Through the real api.upscale_batch: three images of one output size in a batch of 3 give
    the images that --batch-images 1 gives (the api promises equality up to float rounding)."""
    src = tmp_path / "in"
    for i in range(3):
        _save(str(src / f"r{i}.png"), 8, 8, i)
    common = ["-t", "2x", "--checkpoint", tiny_model_dir, "--noise", "0.4", "--steps", "2", "--tile", "0", "-q"]
    assert cli.main([str(src), "-o", str(tmp_path / "batched"), "--batch-images", "3",
                     "--manifest", str(tmp_path / "m.jsonl"), *common]) == 0
    assert cli.main([str(src), "-o", str(tmp_path / "single"), "--batch-images", "1", *common]) == 0
    for name in _files(tmp_path / "single"):
        a = np.asarray(Image.open(tmp_path / "batched" / name), np.int16)
        b = np.asarray(Image.open(tmp_path / "single" / name), np.int16)
        assert a.shape == b.shape == (16, 16, 3) and np.abs(a - b).max() <= 1
    lines = _manifest(tmp_path / "m.jsonl")
    assert [r["status"] for r in lines] == ["ok"] * 3
    for r in lines:
        assert r["t"] > 0 and r["noise_fraction"] == pytest.approx(0.4, abs=0.01) and r["steps"] == 2
        assert r["mode"] in ("plain", "consistent") and r["input_size"] == [8, 8] and r["output_size"] == [16, 16]
