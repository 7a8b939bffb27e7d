"""The package's shape: layered modules without import cycles (function-level imports included),
none over 600 lines, no dates in the code's comments; and the small JAX-free modules the layers
rest on (options, noise table, protocols)."""

import ast
import json
import os
import re

import numpy as np
import pytest

from conftest import REPO
from diffsr_jax import noise_table, protocols
from diffsr_jax.options import InferenceOptions

PACKAGE = os.path.join(REPO, "diffsr_jax")


def _modules() -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return out


def _imports(path: str, name: str, known: set[str]) -> set[str]:
    """Package modules imported anywhere in the file (module level and inside functions)."""
    tree = ast.parse(open(path).read())
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in known and m != name}


def test_the_import_graph_has_no_cycle():
    mods = _modules()
    graph = {name: _imports(path, name, set(mods)) for name, path in mods.items()}
    graph["diffsr_jax"] = set()  # the package face re-exports; nothing inside imports it back
    state, cycle = {}, []

    def visit(n, stack):
        state[n] = "open"
        for m in sorted(graph.get(n, ())):
            if state.get(m) == "open":
                cycle.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m, stack + [m])
        state[n] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert not cycle, f"import cycle(s): {[' -> '.join(c) for c in cycle]}"


def test_no_module_is_over_600_lines():
    long = {n: sum(1 for _ in open(p)) for n, p in _modules().items()}
    assert not {n: k for n, k in long.items() if k > 600}


def test_no_dates_in_the_codes_comments():
    date = re.compile(r"\b20\d\d-\d\d-\d\d\b")
    hits = [f"{n}:{i}" for n, p in _modules().items() for i, line in enumerate(open(p), 1) if date.search(line)]
    assert not hits


# ---------------------------------------------------------------------------------------------
# options


def test_the_readme_and_the_model_card_stay_short():
    """README for users (≤ 15,000), model card (≤ 10,000), counted in UTF-8 bytes (σ, ×, – count
    2–3 each): history goes to CHANGELOG.md."""
    assert os.path.getsize(os.path.join(REPO, "README.md")) <= 15_000
    assert os.path.getsize(os.path.join(REPO, "diffsr_jax", "assets", "default_model", "README.md")) <= 10_000


def test_options_are_validated_and_normalised():
    o = InferenceOptions(noise="t=100", consistency=1, self_ensemble=8.0)
    assert o.noise == ("step", 100) and o.consistency == 1.0 and o.self_ensemble == 8
    assert InferenceOptions(noise=0.3).noise == ("fraction", 0.3)
    assert o.replace(noise="auto").noise == ("auto", None) and o.noise == ("step", 100)  # frozen
    for bad, match in ((dict(noise="bogus"), "noise"), (dict(noise=1.5), "noise"), (dict(consistency=2), "consistency"),
                       (dict(lift="svd"), "lift"), (dict(colour_fix="x"), "colour fix"), (dict(steps=0), "steps"),
                       (dict(self_ensemble=3), "self-ensemble"), (dict(sampler="euler"), "sampler"),
                       (dict(tile=-1), "tile"), (dict(seed=-1), "seed")):
        with pytest.raises(ValueError, match=match):
            InferenceOptions(**bad)
    with pytest.raises(TypeError, match="unknown inference option"):
        o.replace(nosie="auto")


def test_options_from_a_mapping_and_their_defaults():
    from ml_collections import ConfigDict

    o = InferenceOptions.from_mapping(ConfigDict({"steps": 3, "colour_fix": "none"}), seed=2)
    assert (o.steps, o.colour_fix, o.seed) == (3, "none", 2)
    d = InferenceOptions().with_defaults()
    assert (d.consistency, d.lift, d.colour_fix, d.self_ensemble) == (1.0, "pinv", "wavelet", 1)
    assert d.steps is None and d.noise == ("auto", None)  # these come from the model's noise table


# ---------------------------------------------------------------------------------------------
# noise table


def test_noise_table_modes_lookup_and_version(tmp_path):
    raw = {"scales": [2, 4], "noise_fraction": [0.1, 0.2], "calibration": {"steps": 3, "sampler": "ddim-quad"},
           "modes": {"consistent": {"scales": [2, 4], "noise_fraction": [0.2, 0.4]}}}
    t = noise_table.parse(raw)
    assert t.version == 1 and t.mode(False).steps == 3 and t.mode(False).sampler == "ddim-quad"
    assert t.mode(True).fraction_at(2 ** 1.5) == pytest.approx(0.3) and t.mode(True).steps == noise_table.DEFAULT_STEPS
    noise_table.write_atomic(str(tmp_path / "prf.json"), raw)
    written = json.load(open(tmp_path / "prf.json"))
    assert written["format_version"] == noise_table.FORMAT_VERSION
    assert noise_table.load(str(tmp_path)).mode(True).noise_fraction == (0.2, 0.4)
    with pytest.raises(noise_table.NoiseTableError, match="newer"):
        noise_table.parse(dict(raw, format_version=noise_table.FORMAT_VERSION + 1))
    with pytest.raises(noise_table.NoiseTableError, match="equal length"):
        noise_table.parse({"scales": [2, 4], "noise_fraction": [0.1]})
    assert noise_table.load(str(tmp_path / "none")).plain.scales == (1.0, 2.0, 4.0, 8.0)  # the fallback
    assert 1 <= noise_table.parse(json.load(open(os.path.join(PACKAGE, "assets", "default_model", "prf.json")))).version <= noise_table.FORMAT_VERSION


# ---------------------------------------------------------------------------------------------
# protocols


def test_uint8_conversion_rounds_clips_and_maps_nan_to_zero():
    x = np.array([[[-0.2, 0.5 / 255, 1.5 / 255], [np.nan, 0.999, 7.0]]], np.float32)
    assert protocols.to_uint8(x).tolist() == [[[0, 0, 2], [0, 255, 255]]]
    assert protocols.to_uint16(np.array([0.5])).tolist() == [32768]
    k = np.arange(256, dtype=np.uint8)
    assert np.array_equal(protocols.to_uint8(k.astype(np.float32) / 255), k)  # 8-bit values survive


def test_paper_protocol_sizes_and_pil_downscale():
    hr01 = np.random.default_rng(0).uniform(size=(40, 50, 3))
    hr, lr = protocols.paper_protocol(hr01, 2.7, size=32)
    assert hr.shape == (32, 32, 3) and lr.shape == (12, 12, 3)
    assert np.array_equal(protocols.pil_downscale_u8(hr[None], 2.7)[0], np.round(lr * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="scale"):
        protocols.lr_size((10, 10), 0)


def test_the_cli_and_the_package_face_import_without_jax():
    """infer.py --help stays instant: the package's names load on first use."""
    import subprocess
    import sys

    code = ("import sys, diffsr_jax, diffsr_jax.cli, diffsr_jax.options, diffsr_jax.noise_table; "
            "assert 'jax' not in sys.modules, 'jax imported'; "
            "assert diffsr_jax.InferenceOptions(noise='t=5').noise == ('step', 5)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
