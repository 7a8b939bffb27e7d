"""Evaluation harness: protocol sizes, datasets, methods registry, Table 1 marks, an end-to-end run
on tiny generated images with a tiny random Diff-SR model (never ../shared)."""

import math
import os
import sys
import types

import numpy as np
import pytest
from PIL import Image

from diffsr_jax import ablations, eval_methods, protocols, reports
from diffsr_jax import evaluation as ev
from diffsr_jax.metrics import FID_UNAVAILABLE
from diffsr_jax.options import InferenceOptions


def photo(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([yy, xx, 0.5 + 0.4 * np.sin(7 * xx * yy)], -1) + 0.03 * rng.normal(size=(h, w, 3))
    return np.clip(img, 0, 1).astype(np.float32)


def plugin_identity_bicubic(lr, target_hw):
    """A user method imported by name in a test ("test_evaluation:plugin_identity_bicubic")."""
    return protocols.pil_resize_float(lr, target_hw, "bicubic")


@pytest.mark.parametrize("scale", [1.6, 2.0, 2.7, 3.5, 4.0, 4.5, 8.0])
def test_paper_protocol_sizes(scale):
    hr, lr = protocols.paper_protocol(photo(300, 200), scale)
    n = round(256 / scale)
    assert hr.shape == (256, 256, 3) and lr.shape == (n, n, 3)
    for a in (hr, lr):  # 8-bit values, as saved PNGs would be
        np.testing.assert_allclose(a * 255, np.round(a * 255), atol=1e-4)


def test_paper_protocol_crops_the_centre():
    img = np.zeros((100, 300, 3), np.float32)
    img[:, 100:200] = 1.0  # the centre square is white, the sides black
    hr, _ = protocols.paper_protocol(img, 2.0, size=64)
    assert hr.min() == 1.0


def test_native_protocol_keeps_exact_size():
    hr, lr = protocols.native_protocol(photo(37, 53), 2.7)
    assert hr.shape == (37, 53, 3) and lr.shape == (14, 20, 3)  # round(37/2.7), round(53/2.7)
    with pytest.raises(ValueError, match="scale"):
        protocols.lr_size((10, 10), 0)
    with pytest.raises(ValueError, match="RGB"):
        protocols.native_protocol(photo(8, 8)[..., 0], 2)


def test_load_dataset_folder_range_and_limit(image_folder):
    all_ = ev.load_dataset(image_folder)
    assert [n for n, _ in all_] == ["0", "1", "2"] and all_[0][1].shape == (40, 48, 3)
    assert [n for n, _ in ev.load_dataset(os.path.basename(image_folder) + "[2-3]",
                                          data_root=os.path.dirname(image_folder))] == ["1", "2"]
    assert len(ev.load_dataset(image_folder, limit=1)) == 1
    assert ev.dataset_label("/x/CUrban100[1-20]") == "CUrban100[1-20]"
    with pytest.raises(FileNotFoundError):
        ev.load_dataset("no-such-set", data_root=image_folder)
    with pytest.raises(ValueError, match="range"):
        ev.load_dataset(image_folder + "[3-1]")


def test_peer_model_choice_follows_the_nearest_integer():
    assert eval_methods.nearest_model_scale([2, 3, 4], 2.7) == 3
    assert eval_methods.nearest_model_scale([2, 4, 8], 2.7) == 2   # LapSRN: no ×3
    assert eval_methods.nearest_model_scale([2, 4, 8], 3.0) == 4   # tie → the larger model, then shrink
    assert eval_methods.nearest_model_scale([2, 3, 4], 1.6) == 2
    assert eval_methods.nearest_model_scale([2, 3, 4], 4.5) == 4


def test_rank_marks_best_and_second():
    assert reports.rank_marks([1.0, 3.0, 2.0, 3.0], True, 2) == ["", "best", "second", "best"]
    assert reports.rank_marks([0.3, 0.1, 0.2], False, 2) == ["", "best", "second"]
    # compared at the shown precision: 0.12344 and 0.12341 tie at 4 digits
    assert reports.rank_marks([0.12344, 0.12341, 0.2], False, 4) == ["best", "best", "second"]
    assert reports.rank_marks([FID_UNAVAILABLE, float("nan"), 1.0], False, 3) == ["", "", "best"]


def test_table_marks_the_right_cells():
    summary = [{"dataset": d, "scale": 2.0, "method": m, "psnr_rgb": p, "lpips_alex": l, "fid": FID_UNAVAILABLE}
               for d in ("A", "B")
               for m, p, l in [("m1", 30.0, 0.30), ("m2", 32.0, 0.20), ("m3", 31.0, 0.10)]]
    md = reports.table1_markdown(summary, 2.0, ["A", "B"], ["m1", "m2", "m3"], ["fid", "psnr_rgb", "lpips_alex"])
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines()[2:]}
    assert "| **32.00** |" in rows["m2"] and "<u>0.2000</u>" in rows["m2"]
    assert "<u>31.00</u>" in rows["m3"] and "**0.1000**" in rows["m3"]
    assert "**" not in rows["m1"] and "<u>" not in rows["m1"] and "unavailable" in rows["m1"]
    assert md.splitlines()[0].count("PSNR-RGB↑") == 2 and "LPIPS-Alex↓" in md


def test_methods_registry_plugins_and_errors():
    ms = eval_methods.build_methods(["nearest", "lanczos", "test_evaluation:plugin_identity_bicubic"])
    assert list(ms.methods) == ["nearest", "lanczos", "test_evaluation:plugin_identity_bicubic"]
    lr = photo(10, 12)
    for fn in ms.methods.values():
        assert fn(lr, (27, 32)).shape == (27, 32, 3)
    eval_methods.register_method("mine", plugin_identity_bicubic)
    assert eval_methods.build_methods(["mine"]).methods["mine"] is plugin_identity_bicubic
    with pytest.raises(ValueError, match="unknown method"):
        eval_methods.build_methods(["bogus"])
    with pytest.raises(ValueError, match="cannot import"):
        eval_methods.build_methods(["nowhere.module:fn"])
    skipped = eval_methods.build_methods(["fsrcnn"], peer_dir="/nonexistent").skipped
    assert "fsrcnn" in skipped


def test_diffsr_names_and_option_passthrough(monkeypatch):
    from diffsr_jax import api
    from diffsr_jax.options import InferenceOptions

    paper = {"consistency": 0.0, "colour_fix": "none", "degradation": "clean"}
    assert eval_methods.parse_diffsr_name("diffsr") == {**paper, "noise": ("auto", None)}
    assert eval_methods.parse_diffsr_name("diffsr@t=100") == {**paper, "noise": ("step", 100)}
    assert eval_methods.parse_diffsr_name("diffsr-cons@0.3") == {"consistency": 1.0, "colour_fix": "none",
                                                                 "noise": ("fraction", 0.3)}
    assert eval_methods.parse_diffsr_name("bicubic") is None
    assert eval_methods.parse_diffsr_name("diffsr-cons-ens4@t=9") == {"consistency": 1.0, "colour_fix": "none",
                                                                      "self_ensemble": 4, "noise": ("step", 9)}
    assert eval_methods.parse_diffsr_name("bicubic-ens2") is None
    with pytest.raises(ValueError, match="self-ensemble size"):
        eval_methods.parse_diffsr_name("diffsr-ens3")
    seen = []

    def fake_upscale_array(image, out_hw, *, model, options, mesh=None):
        seen.append(options)
        return np.zeros((*out_hw, 3), np.float32), {"t": 7, "steps": options.steps or 10}

    class FakeModel:
        num_timesteps = 100

    monkeypatch.setattr(api, "upscale_array", fake_upscale_array)
    ms = eval_methods.build_methods(["diffsr", "diffsr@t=30", "diffsr-cons-colour", "diffsr-ens8"],
                                    model_loader=FakeModel, options=InferenceOptions(steps=3))
    for fn in ms.methods.values():
        fn(photo(8, 8), (16, 16))
    base = dict(noise=("auto", None), steps=3, consistency=0.0, colour_fix="none", tile=0)
    assert all(getattr(seen[0], k) == v for k, v in base.items()) and seen[0].self_ensemble is None
    # plain Diff-SR with an ensemble is still the paper's method (consistency off), averaged
    assert all(getattr(seen[3], k) == v for k, v in base.items()) and seen[3].self_ensemble == 8
    assert seen[1].noise == ("step", 30)
    assert seen[2].consistency == 1.0 and seen[2].colour_fix == "wavelet"
    assert ms.methods["diffsr"].note == "t=7/100, 3 DDIM steps"
    with pytest.raises(ValueError, match="Diff-SR"):
        eval_methods.build_methods(["diffsr@2.5"], model_loader=FakeModel)


@pytest.fixture()
def tiny_model(model):
    """conftest's session-wide tiny exported model (loaded once for the whole run)."""
    return model


def test_end_to_end_tables_csv_and_grids(tiny_model, tmp_path):
    data = {"tiny": [(str(i), photo(24, 32, seed=i)) for i in range(2)]}
    ms = eval_methods.build_methods(["bicubic", "diffsr@t=10", "test_evaluation:plugin_identity_bicubic"],
                          model_loader=lambda: tiny_model, options=InferenceOptions(steps=2))
    result = ev.evaluate(data, [2.0], ms.methods, ev.MetricSuite(lpips_nets=()), protocol="native",
                         progress=False)
    assert len(result.rows) == 2 * 3 and len(result.summary) == 3
    row = result.rows[0]
    assert (row["lr_h"], row["lr_w"], row["hr_h"], row["hr_w"]) == (12, 16, 24, 32)
    assert all(math.isfinite(r["psnr_y"]) and r["fid"] == FID_UNAVAILABLE for r in result.summary)
    # the plug-in is bicubic under another name: identical numbers
    by = {r["method"]: r for r in result.summary}
    assert by["bicubic"]["psnr_rgb"] == by["test_evaluation:plugin_identity_bicubic"]["psnr_rgb"]
    md = reports.report_markdown(result, [2.0], ["tiny"], list(ms.methods))
    assert "FID: unavailable" in md and "LPIPS-Alex" not in md  # not computed → no column
    assert "t=10/100, 2 DDIM steps" in md
    reports.write_csv(str(tmp_path / "t.csv"), result.summary)
    assert open(tmp_path / "t.csv").readline().startswith("dataset,scale,method")
    (grid,) = reports.write_grids(result, str(tmp_path / "grids"))
    w, h = Image.open(grid).size
    assert w == 32 * 5 and h > 2 * 24  # LR, three methods, HR; two rows


def test_zoom_box_finds_the_texture():
    img = np.zeros((64, 64, 3), np.float32)
    img[40:56, 8:24] = np.random.default_rng(0).uniform(size=(16, 16, 3))
    y, x, side = reports.zoom_box(img)
    assert side == 16 and abs(y - 40) <= 2 and abs(x - 8) <= 2


def test_schedule_remapping():
    T = 100
    m = ablations.schedule_mapping("linear", T, [0.0, 0.2, 0.5, 0.9])
    assert m["linear"].tolist() == [0, 20, 50, 90]  # the model's own schedule maps to itself
    assert m["squared_cosine"].tolist() == m["cosine"].tolist()  # one ᾱ curve (see schedules.py)
    assert all(np.all(np.diff(v) >= 0) for v in m.values())
    lin, cos = ablations.alpha_bar("linear", T), ablations.alpha_bar("cosine", T)
    t = m["cosine"][2]
    assert abs(lin[t] - cos[50]) <= min(abs(lin[t - 1] - cos[50]), abs(lin[t + 1] - cos[50]))


def test_plot_metric_curves_writes_png(tmp_path):
    x = np.linspace(0, 1, 4)
    curves = {"2×": {k: np.linspace(1, 2, 4) for k, _ in ablations.SWEEP_METRICS}}
    ablations.plot_metric_curves(x, curves, str(tmp_path / "f.png"), "title", marks={"2×": 0.5})
    assert Image.open(tmp_path / "f.png").size[0] > 100


def test_training_step_text_names_the_whole_count_of_a_warm_started_run():
    from diffsr_jax.evaluation import training_step_text

    assert training_step_text({"step": 6900, "total_steps": 28600}) == \
        " (training step 6900 of a warm-started run: 28600 in all)"
    assert training_step_text({"step": 400}) == " (training step 400)"
    assert training_step_text({"step": 400, "total_steps": 400}) == " (training step 400)"
    assert training_step_text({}) == "" and training_step_text(None) == ""


def test_evaluate_py_refuses_a_bad_cpu_device_count():
    import evaluate

    with pytest.raises(SystemExit, match="--cpu-devices"):
        evaluate.main(["--cpu-devices", "zero", "--no-table", "--ablations", "none"])


@pytest.mark.parametrize("version, usable", [("4.14.0", True), ("5.1.0", False)])
def test_peer_unavailable_reason_refuses_opencv_5(monkeypatch, tmp_path, version, usable):
    # OpenCV 5 parses the peers' TensorFlow .pb files as ONNX and crashes mid-table: skip with a note.
    fake_cv2 = types.ModuleType("cv2")
    fake_cv2.__version__ = version
    fake_cv2.dnn_superres = object()
    monkeypatch.setitem(sys.modules, "cv2", fake_cv2)
    reason = eval_methods.peer_unavailable_reason(str(tmp_path))
    if usable:
        assert reason is None
    else:
        assert "OpenCV 5.1.0" in reason and "<5" in reason
