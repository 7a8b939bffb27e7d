"""Tests for diffsr_jax.cli, in-process, with diffsr_jax.api replaced by a fast bicubic fake."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from diffsr_jax import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
import fake_api  # noqa: E402  (the bicubic stand-in for diffsr_jax.api)


@pytest.fixture()
def api(monkeypatch, tmp_path):
    return fake_api.install(monkeypatch, tmp_path)


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture()
def imgs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(_rgb(12, 16)).save(d / "a.png")
    Image.fromarray(_rgb(10, 10, 1)[..., 0]).save(d / "b_gray.png")
    Image.fromarray(np.dstack([_rgb(8, 12, 2), np.full((8, 12), 100, np.uint8)])).save(d / "c.png")
    Image.fromarray(_rgb(16, 16, 3)).save(d / "d.jpg", quality=90)
    (d / "notes.txt").write_text("ignored: not an image extension")
    return d


def _err_lines(capsys):
    cap = capsys.readouterr()
    return cap.out, [l for l in cap.err.splitlines() if l.strip()]


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for needle in ["1920x1080", "2.7x", "4k", "contain", "cover", "stretch", "t=350", "0.35",
                   "auto", "--overwrite", "--batch-size", "one at a time", "examples", "--recursive",
                   "--skip-existing", "--manifest", "--shard", "@LIST", "--batch-images", "glob"]:
        assert needle in out, needle


def test_infer_py_help_subprocess():
    r = subprocess.run([sys.executable, os.path.join(REPO, "infer.py"), "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--target" in r.stdout


@pytest.mark.parametrize("argv_extra, needle", [
    (["--target", "0x"], "greater than 0"),
    (["--target", "banana"], "invalid target"),
    (["--target", "2x", "--noise", "1.5"], "between 0 and 1"),
    (["--target", "2x", "--noise", "t=-3"], "noise"),
    (["--target", "2x", "--steps", "0"], "--steps"),
    (["--target", "2x", "--tile", "64", "--tile-overlap", "64"], "--tile-overlap"),
    (["--target", "2x", "--fit", "zoom"], "--fit"),
    (["--target", "2x", "--consistency", "2"], "--consistency"),
    (["--target", "2x", "--consistency", "maybe"], "--consistency"),
    (["--target", "2x", "--colour-fix", "sepia"], "--colour-fix"),
    (["--target", "2x", "--lift", "nearest"], "--lift"),
    (["--target", "2x", "--self-ensemble", "3"], "--self-ensemble"),
    (["--target", "2x", "--self-ensemble", "two"], "--self-ensemble"),
    (["--target", "2x", "--sampler", "euler"], "--sampler"),
    (["--target", "2x", "--cpu-devices", "0"], "--cpu-devices"),
    (["--target", "2x", "--cpu-devices", "two"], "--cpu-devices"),
    (["--target", "2x", "--bogus"], "unrecognized"),
    (["--target", "2x", "--shard", "2/2"], "--shard"),
    (["--target", "2x", "--shard", "1of2"], "--shard"),
    (["--target", "2x", "--shard", "-1/2"], "--shard"),
    (["--target", "2x", "--batch-images", "0"], "--batch-images"),
    (["--target", "2x", "--skip-existing", "--overwrite"], "choose one"),
    (["--target", "2x", "--distributed", "maybe"], "--distributed"),
    ([], "--target"),
])
def test_usage_errors_exit_2_one_line_nothing_written(api, imgs, tmp_path, capsys, argv_extra,
                                                       needle):
    out = tmp_path / "out"
    rc = cli.main([str(imgs), "-o", str(out)] + argv_extra)
    _, err = _err_lines(capsys)
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert not out.exists() and api.load_calls == []


def test_checkpoint_errors(api, imgs, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main([str(imgs / "a.png"), "-t", "2x", "-o", str(out), "--checkpoint",
                   str(tmp_path / "nope")])
    _, err = _err_lines(capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "nope" in err[0]
    bad = tmp_path / "ckpt"
    bad.mkdir()
    (bad / "CORRUPT").write_text("")
    rc = cli.main([str(imgs / "a.png"), "-t", "2x", "-o", str(out), "--checkpoint", str(bad)])
    _, err = _err_lines(capsys)
    assert rc == 2 and len(err) == 1 and "corrupt checkpoint" in err[0]
    assert "Traceback" not in "".join(err) and not out.exists()


def test_single_file_to_file(api, imgs, tmp_path, capsys):
    dst = tmp_path / "res" / "big.png"
    rc = cli.main([str(imgs / "a.png"), "--target", "2.5x", "-o", str(dst)])
    out, err = _err_lines(capsys)
    assert rc == 0, err
    with Image.open(dst) as im:
        assert im.size == (40, 30) and im.mode == "RGB"
    assert api.load_calls == [None] and api.cache_calls == [1]
    (call,) = api.calls
    assert call["out_hw"] == (30, 40) and call["noise"] == ("auto", None)
    assert call["steps"] is None and call["seed"] == 0 and call["tile"] is None
    assert call["tile_overlap"] == 32 and call["progress"] is True
    assert f"a.png: 16x12 -> 40x30 (2.50x), t=400 (40%)" in out and f"-> {dst}" in out
    assert " s -> " in out


def test_options_are_passed(api, imgs, tmp_path, capsys):
    rc = cli.main([str(imgs / "a.png"), "-t", "x2", "-o", str(tmp_path / "o"), "--noise", "t=350",
                   "--steps", "10", "--seed", "7", "--tile", "64", "--tile-overlap", "8",
                   "--quiet", "--batch-size", "4"])
    out, err = _err_lines(capsys)
    assert rc == 0 and out == "" and err == []  # --quiet: nothing but errors
    (call,) = api.calls
    assert call["noise"] == ("step", 350) and call["steps"] == 10 and call["seed"] == 7
    assert call["tile"] == 64 and call["tile_overlap"] == 8 and call["progress"] is False
    rc = cli.main([str(imgs / "a.png"), "-t", "x2", "-o", str(tmp_path / "o2"), "--noise", "0.3",
                   "--tile", "0"])
    assert rc == 0 and api.calls[-1]["noise"] == ("fraction", 0.3) and api.calls[-1]["tile"] == 0
    assert api.calls[-1]["consistency"] is None and api.calls[-1]["colour_fix"] is None  # library defaults
    assert api.calls[-1]["self_ensemble"] is None and api.calls[-1]["sampler"] is None
    for flag, value, key, expected in [("--consistency", "on", "consistency", 1.0),
                                       ("--consistency", "off", "consistency", 0.0),
                                       ("--consistency", "0.5", "consistency", 0.5),
                                       ("--lift", "bicubic", "lift", "bicubic"),
                                       ("--colour-fix", "wavelet", "colour_fix", "wavelet"),
                                       ("--self-ensemble", "8", "self_ensemble", 8),
                                       ("--sampler", "ddim-quad", "sampler", "ddim-quad")]:
        rc = cli.main([str(imgs / "a.png"), "-t", "x2", "-o", str(tmp_path / f"o_{key}_{value}.png"), flag, value])
        assert rc == 0 and api.calls[-1][key] == expected


def test_folder_input_modes_kept(api, imgs, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main([str(imgs), "--target", "2x", "-o", str(out)])
    _, err = _err_lines(capsys)
    assert rc == 0, err
    assert sorted(os.listdir(out)) == ["a.png", "b_gray.png", "c.png", "d.jpg"]
    assert len(api.load_calls) == 1 and len(api.calls) == 4  # model loaded once
    assert [c["shape"] for c in api.calls] == [(12, 16), (10, 10), (8, 12), (16, 16)]  # sorted
    with Image.open(out / "b_gray.png") as im:
        assert im.mode == "L" and im.size == (20, 20)
    with Image.open(out / "c.png") as im:
        assert im.mode == "RGBA" and im.size == (24, 16)
        assert np.abs(np.asarray(im)[..., 3].astype(int) - 100).max() <= 1
    with Image.open(out / "d.jpg") as im:
        assert im.format == "JPEG" and im.size == (32, 32)


def test_format_and_suffix(api, imgs, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main([str(imgs / "d.jpg"), str(imgs / "a.png"), "-t", "2x", "-o", str(out),
                   "--format", "png", "--suffix", "_{target}"])
    assert rc == 0
    assert sorted(os.listdir(out)) == ["a_2x.png", "d_2x.png"]


def test_batch_with_bad_files_still_writes_the_others(api, imgs, tmp_path, capsys):
    good = Image.open(imgs / "a.png")
    good.load()
    import io

    buf = io.BytesIO()
    good.save(buf, "PNG")
    (imgs / "e_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 30)
    (imgs / "f_empty.png").write_bytes(b"")
    (imgs / "g_trunc.png").write_bytes(buf.getvalue()[:60])
    (imgs / "h_text.jpg").write_text("hello, not a jpeg")
    out = tmp_path / "out"
    rc = cli.main([str(imgs), "-t", "2x", "-o", str(out)])
    stdout, err = _err_lines(capsys)
    assert rc == 2
    assert sorted(os.listdir(out)) == ["a.png", "b_gray.png", "c.png", "d.jpg"]
    assert len(err) == 4, err
    # unreadable headers are refused before the model is loaded, a truncated body when decoded
    err = sorted(err)
    for line, name in zip(err, ["e_corrupt.png", "f_empty.png", "g_trunc.png", "h_text.jpg"]):
        assert line.startswith("error: ") and name in line, line
    assert "0 bytes" in err[1] and "truncated" in err[2]
    assert "Traceback" not in "\n".join(err)
    assert stdout.count(" -> ") == 8  # four summary lines


def test_missing_input_and_empty_folder(api, imgs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = cli.main([str(imgs / "a.png"), str(tmp_path / "missing.png"), str(empty), "-t", "2x",
                   "-o", str(tmp_path / "out")])
    _, err = _err_lines(capsys)
    assert rc == 2 and len(err) == 2
    assert "missing.png" in err[0] and "no such file" in err[0]
    assert "no images" in err[1]
    assert os.listdir(tmp_path / "out") == ["a.png"]


def test_no_overwrite(api, imgs, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"precious")
    rc = cli.main([str(imgs / "a.png"), str(imgs / "c.png"), "-t", "2x", "-o", str(out)])
    _, err = _err_lines(capsys)
    assert rc == 2 and len(err) == 1 and "a.png" in err[0] and "--overwrite" in err[0]
    assert (out / "a.png").read_bytes() == b"precious"
    assert sorted(os.listdir(out)) == ["a.png", "c.png"]
    assert [c["shape"] for c in api.calls] == [(8, 12)]  # the existing one was not computed
    rc = cli.main([str(imgs / "a.png"), "-t", "2x", "-o", str(out), "--overwrite"])
    assert rc == 0
    with Image.open(out / "a.png") as im:
        assert im.size == (32, 24)
    assert sorted(os.listdir(out)) == ["a.png", "c.png"]  # no temp files left


def test_all_outputs_exist_skips_model(api, imgs, tmp_path, capsys):
    dst = tmp_path / "o.png"
    dst.write_bytes(b"x")
    assert cli.main([str(imgs / "a.png"), "-t", "2x", "-o", str(dst)]) == 2
    assert api.load_calls == [] and dst.read_bytes() == b"x"


def test_never_replaces_input(api, imgs, capsys):
    rc = cli.main([str(imgs / "a.png"), "-t", "2x", "-o", str(imgs), "--overwrite"])
    _, err = _err_lines(capsys)
    assert rc == 2 and "replace the input" in err[0]
    with Image.open(imgs / "a.png") as im:
        assert im.size == (16, 12)


def test_output_name_collision(api, imgs, tmp_path, capsys):
    Image.fromarray(_rgb(6, 6)).save(imgs / "a.jpg")
    rc = cli.main([str(imgs / "a.png"), str(imgs / "a.jpg"), "-t", "2x", "-o", str(tmp_path / "o"),
                   "--format", "png"])
    _, err = _err_lines(capsys)
    assert rc == 2 and len(err) == 1 and "a.jpg" in err[0] and "also" in err[0]
    assert os.listdir(tmp_path / "o") == ["a.png"]


def test_file_output_needs_single_input(api, imgs, tmp_path, capsys):
    rc = cli.main([str(imgs), "-t", "2x", "-o", str(tmp_path / "x.png")])
    _, err = _err_lines(capsys)
    assert rc == 2 and len(err) == 1 and "folder" in err[0]
    assert not (tmp_path / "x.png").exists() and api.load_calls == []


def test_downscale_refused_per_image(api, imgs, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main([str(imgs / "a.png"), str(imgs / "c.png"), "-t", "14x10", "-o", str(out)])
    _, err = _err_lines(capsys)
    # a.png (16x12) would shrink to fit 14x10; c.png (12x8) grows to 14x9 (contain)
    assert rc == 2 and len(err) == 1 and "a.png" in err[0] and "--allow-downscale" in err[0]
    assert os.listdir(out) == ["c.png"]
    with Image.open(out / "c.png") as im:
        assert im.size == (14, 9)
    rc = cli.main([str(imgs / "a.png"), "-t", "14x10", "-o", str(out), "--allow-downscale"])
    assert rc == 0
    with Image.open(out / "a.png") as im:
        assert im.size == (13, 10)


def test_cover_and_stretch_exact_size(api, imgs, tmp_path, capsys):
    rc = cli.main([str(imgs / "c.png"), "-t", "40x20", "--fit", "cover", "-o",
                   str(tmp_path / "cover.png")])
    out, _ = _err_lines(capsys)
    assert rc == 0 and api.calls[-1]["out_hw"] == (27, 40)  # 12x8 * 3.33 -> 40x27, crop to 40x20
    assert "centre crop of 40x27" in out
    with Image.open(tmp_path / "cover.png") as im:
        assert im.size == (40, 20) and im.mode == "RGBA"
    rc = cli.main([str(imgs / "c.png"), "-t", "40x20", "--fit", "stretch", "-o",
                   str(tmp_path / "stretch.png")])
    with Image.open(tmp_path / "stretch.png") as im:
        assert rc == 0 and im.size == (40, 20)


def test_16bit_stays_16bit(api, tmp_path, capsys):
    g = np.random.default_rng(0).integers(0, 65536, (9, 7), dtype=np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    rc = cli.main([str(tmp_path / "g16.png"), "-t", "2x", "-o", str(tmp_path / "out")])
    assert rc == 0
    with Image.open(tmp_path / "out" / "g16.png") as im:
        assert im.mode.startswith("I;16") and im.size == (14, 18)


def test_model_failure_on_one_image(api, imgs, tmp_path, capsys):
    api.fail_on = {(10, 10)}
    out = tmp_path / "out"
    rc = cli.main([str(imgs), "-t", "2x", "-o", str(out)])
    _, err = _err_lines(capsys)
    assert rc == 2 and len(err) == 1 and "b_gray.png" in err[0] and "RESOURCE_EXHAUSTED" in err[0]
    assert "long XLA details" not in err[0]
    assert sorted(os.listdir(out)) == ["a.png", "c.png", "d.jpg"]


def test_compilation_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli._compilation_cache_dir() == os.path.join(str(tmp_path), "diffsr_jax", "jax")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cli._compilation_cache_dir() == os.path.join(str(tmp_path), "home", ".cache",
                                                          "diffsr_jax", "jax")


def test_enable_compilation_cache_sets_real_jax_options(monkeypatch, tmp_path):
    import jax

    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    real_update = jax.config.update

    def record(name, value):
        getattr(jax.config, name)  # the option exists in this JAX (AttributeError otherwise)
        calls.append((name, value))

    monkeypatch.setattr(jax.config, "update", record)
    cli._enable_compilation_cache()
    assert calls == [("jax_compilation_cache_dir", os.path.join(str(tmp_path), "diffsr_jax", "jax")),
                     ("jax_persistent_cache_min_compile_time_secs", 0)]


def test_noise_step_beyond_T_is_one_usage_error(api, imgs, tmp_path, capsys):
    code = cli.main([str(imgs / "a.png"), "--target", "2x", "-o", str(tmp_path / "o.png"), "--noise", "t=5000"])
    assert code == 2
    err = capsys.readouterr().err
    assert "T = 1000" in err and err.count("error:") == 1
    assert not (tmp_path / "o.png").exists()


def test_tiles_go_to_the_local_mesh(api, imgs, tmp_path, capsys):
    rc = cli.main([str(imgs / "a.png"), "-t", "x2", "-o", str(tmp_path / "one.png")])
    out, _ = _err_lines(capsys)
    assert rc == 0 and api.calls[-1]["mesh"] is None and "devices" not in out
    api.mesh = "MESH"  # several local devices
    rc = cli.main([str(imgs / "a.png"), "-t", "x2", "-o", str(tmp_path / "two.png")])
    out, _ = _err_lines(capsys)
    assert rc == 0 and api.calls[-1]["mesh"] == "MESH" and "2 devices" in out


def test_infer_py_splits_tiles_over_two_cpu_devices(tiny_model_dir, tmp_path, capsys):
    """A fresh infer.py process with --cpu-devices 2 denoises its tiles on both devices and writes
    the image this (one-device) process writes, up to 1/255 of float rounding."""
    rng = np.random.default_rng(5)
    src = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (14, 18, 3), dtype=np.uint8)).save(src)
    common = ["-t", "3x", "--checkpoint", tiny_model_dir, "--noise", "0.4", "--steps", "2", "--tile", "16",
              "--tile-overlap", "4"]
    assert cli.main([str(src), "-o", str(tmp_path / "one.png"), *common]) == 0
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                                if "host_platform_device_count" not in f)
    r = subprocess.run([sys.executable, os.path.join(REPO, "infer.py"), str(src), "-o", str(tmp_path / "two.png"),
                        *common, "--cpu-devices", "2"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 devices" in r.stdout
    one = np.asarray(Image.open(tmp_path / "one.png"), np.int16)
    two = np.asarray(Image.open(tmp_path / "two.png"), np.int16)
    assert one.shape == two.shape == (42, 54, 3)
    assert np.abs(one - two).max() <= 1


def test_summary_shows_a_fractional_noise_percentage(api, imgs, tmp_path, capsys):
    api.info_extra = {"t": 25, "noise_fraction": 0.025}  # the bundled 2x default: 2.5%, not "2%"
    assert cli.main([str(imgs / "a.png"), "-t", "x2", "-o", str(tmp_path / "o.png")]) == 0
    out, _ = _err_lines(capsys)
    assert "t=25 (2.5%)" in out


def test_degradation_option_reaches_the_api_and_bad_specs_are_usage_errors(api, imgs, tmp_path, capsys):
    from diffsr_jax.degradation import Degradation

    assert cli.main([str(imgs / "a.png"), "-t", "x2", "-o", str(tmp_path / "d.png")]) == 0
    assert api.calls[-1]["degradation"] == "auto"                                   # the default
    assert cli.main([str(imgs / "a.png"), "-t", "x2", "-o", str(tmp_path / "e.png"), "--degradation",
                     "noise=10,jpeg=75"]) == 0
    given = api.calls[-1]["degradation"]
    assert isinstance(given, dict) or isinstance(given, Degradation)
    g = given if isinstance(given, dict) else given.__dict__
    assert round(g["noise_sigma"] * 255, 6) == 10 and g["jpeg_quality"] == 75
    n = len(api.calls)
    assert cli.main([str(imgs / "a.png"), "-t", "x2", "-o", str(tmp_path / "f.png"), "--degradation", "bogus=3"]) == 2
    assert len(api.calls) == n and "degradation" in capsys.readouterr().err
