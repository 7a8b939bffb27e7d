"""Evaluation: datasets, the metric suite and the loop that runs every method on every (dataset,
scale, image) under a protocol (:mod:`diffsr_jax.protocols`), plus :func:`run_table`, the whole
Table 1 run behind evaluate.py. Methods come from :mod:`diffsr_jax.eval_methods`, reports are
written by :mod:`diffsr_jax.reports`.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import os
import re
import sys
import time
from typing import Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from diffsr_jax import api, data, eval_methods, image_io, metrics, reports
from diffsr_jax.options import InferenceOptions
from diffsr_jax.protocols import PROTOCOL_TEXT, PROTOCOLS

PER_IMAGE_METRICS = ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y", "lpips_alex", "lpips_vgg", "lf_err", "hf_err")


# ---------------------------------------------------------------------------------------------
# Datasets

_RANGE_RE = re.compile(r"^(?P<name>.+?)\[(?P<a>\d+)\s*[-–:]\s*(?P<b>\d+)\]$")


def parse_dataset_spec(spec: str) -> tuple[str, Optional[tuple[int, int]]]:
    """"CUrban100[1-20]" → ("CUrban100", (1, 20)) (1-based, inclusive, in sorted file order)."""
    m = _RANGE_RE.match(spec.strip())
    if not m:
        return spec.strip(), None
    a, b = int(m.group("a")), int(m.group("b"))
    if a < 1 or b < a:
        raise ValueError(f"bad image range in {spec!r}: need 1 ≤ first ≤ last")
    return m.group("name"), (a, b)


def load_dataset(spec: str, *, data_root: Optional[str] = None, data_dir: Optional[str] = None,
                 limit: Optional[int] = None) -> list[tuple[str, np.ndarray]]:
    """[(image name, float RGB HxWx3 in [0, 1])] from a folder, a name under ``data_root``, or a
    TFDS catalog dataset ``tfds:NAME[/CONFIG][:split]`` (its ``hr`` or ``image`` feature; needs
    ``data_dir``). Folder files are sorted by name; grayscale comes back as 3 equal channels.
    An optional ``[first-last]`` suffix (1-based) selects images, ``limit`` keeps the first N."""
    name, rng = parse_dataset_spec(spec)
    if name.startswith("tfds:"):
        if data_dir is None:
            raise ValueError("a TFDS dataset needs data_dir (where it is or will be prepared)")
        source = data.open_image_source(name, data_dir)
        items = [(f"{i:04d}", np.asarray(source[i], np.float32) / 255.0) for i in range(len(source))]
    else:
        folder = name if os.path.isdir(name) else os.path.join(data_root or "", name)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"dataset not found: {name!r} (not a folder, nor under {data_root!r})")
        files = sorted(f for f in glob.glob(os.path.join(folder, "*")) if f.lower().endswith(image_io.IMAGE_EXTENSIONS))
        if not files:
            raise FileNotFoundError(f"no image files in {folder}")
        items = [(os.path.splitext(os.path.basename(f))[0], image_io.read_image(f).rgb) for f in files]
    if rng:
        items = items[rng[0] - 1:rng[1]]
    if limit:
        items = items[:limit]
    if not items:
        raise ValueError(f"dataset {spec!r} selects no images")
    return items


def dataset_label(spec: str) -> str:
    """A short column label: the folder's base name plus any range ("CUrban100[1-20]")."""
    name, rng = parse_dataset_spec(spec)
    base = name if name.startswith("tfds:") else os.path.basename(os.path.normpath(name))
    return base + (f"[{rng[0]}-{rng[1]}]" if rng else "")



# ---------------------------------------------------------------------------------------------
# Metrics and the evaluation loop


class MetricSuite:
    """Every per-image metric of one (output, HR) pair, plus optional FID features."""

    def __init__(self, lpips_nets: Sequence[str] = ("alex", "vgg"), fid_features=None):
        self._m = metrics
        self.lpips = {net: metrics.Lpips(net) for net in lpips_nets}
        self.fid_features = fid_features  # None → FID unavailable

    def __call__(self, out: np.ndarray, hr: np.ndarray) -> dict:
        m = self._m
        vals = {"psnr_rgb": m.psnr(out, hr), "ssim_rgb": m.ssim(out, hr),
                "psnr_y": m.psnr(out, hr, channel="y"), "ssim_y": m.ssim(out, hr, channel="y")}
        for net in ("alex", "vgg"):
            vals[f"lpips_{net}"] = self.lpips[net](out, hr) if net in self.lpips else float("nan")
        vals["lf_err"], vals["hf_err"] = m.band_errors(out, hr)
        return vals


@dataclasses.dataclass
class EvalResult:
    rows: list               # per image
    summary: list            # per (dataset, scale, method)
    grids: dict              # (dataset, scale) → {"image", "lr", "hr", "outputs": {method: img}}
    fid_note: str            # what the FID column means (or why it is unavailable)


def evaluate(datasets: dict, scales: Sequence[float], methods: dict, suite: MetricSuite, *,
             protocol: str = "paper", grid_image: int = 0, progress: bool = True) -> EvalResult:
    """Runs every method on every (dataset, scale, image) under ``protocol``.

    ``datasets``: label → [(image name, float RGB)]. The first call of each method per LR/HR shape
    is an untimed warm-up (compilation, model loading), so ``seconds`` is steady-state time.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {tuple(PROTOCOLS)}, got {protocol!r}")
    make_pair = PROTOCOLS[protocol]
    rows, grids, feats, warmed = [], {}, {}, set()
    total = sum(len(v) for v in datasets.values()) * len(scales) * len(methods)
    bar = tqdm(total=total, unit="img", desc="evaluate", disable=not progress)
    for scale in scales:
        for label, images in datasets.items():
            pairs = [(name, *make_pair(rgb, scale)) for name, rgb in images]
            gi = min(grid_image, len(pairs) - 1)
            grids[(label, scale)] = {"image": pairs[gi][0], "lr": pairs[gi][2], "hr": pairs[gi][1], "outputs": {}}
            for mname, fn in methods.items():
                bar.set_postfix_str(f"{label} {scale:g}× {mname}")
                outs = []
                for i, (iname, hr, lr) in enumerate(pairs):
                    hw = hr.shape[:2]
                    if (mname, lr.shape, hw) not in warmed:
                        fn(lr, hw)
                        warmed.add((mname, lr.shape, hw))
                    t0 = time.perf_counter()
                    out = np.asarray(fn(lr, hw), np.float32)
                    secs = time.perf_counter() - t0
                    if out.shape != hr.shape:
                        raise ValueError(f"method {mname!r} returned shape {out.shape}, expected {hr.shape}")
                    out = np.clip(out, 0.0, 1.0)
                    rows.append({"dataset": label, "scale": float(scale), "image": iname, "method": mname,
                                 "lr_h": lr.shape[0], "lr_w": lr.shape[1], "hr_h": hw[0], "hr_w": hw[1],
                                 **suite(out, hr), "seconds": secs, "note": getattr(fn, "note", "")})
                    if suite.fid_features is not None:
                        outs.append(out)
                    if i == gi:
                        grids[(label, scale)]["outputs"][mname] = out
                    bar.update(1)
                if suite.fid_features is not None:
                    feats[(label, scale, mname)] = (suite.fid_features(outs),
                                                    suite.fid_features([p[1] for p in pairs]))
    bar.close()
    summary = summarize(rows, fid=_fid_table(feats) if suite.fid_features is not None else None)
    note = (f"FID: Fréchet distance of Inception features ({getattr(suite.fid_features, 'path', 'user network')})"
            f"; with n ≤ 20 images per set it is dominated by covariance estimation noise"
            if suite.fid_features is not None else
            "FID: unavailable (no Inception weights given; pass --fid-inception PATH). No other network is used in its place.")
    return EvalResult(rows=rows, summary=summary, grids=grids, fid_note=note)


def _fid_table(feats: dict) -> dict:
    return {k: metrics.fid_from_features(a, b) for k, (a, b) in feats.items()}


def summarize(rows: list, fid: Optional[dict] = None) -> list:
    """Per (dataset, scale, method): n, mean of each per-image metric and of seconds, FID (or
    "unavailable"), the notes; in first-seen order."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["scale"], r["method"]), []).append(r)
    out = []
    for (d, s, m), rs in groups.items():
        rec = {"dataset": d, "scale": s, "method": m, "n": len(rs), "lr_h": rs[0]["lr_h"], "lr_w": rs[0]["lr_w"],
               "hr_h": rs[0]["hr_h"], "hr_w": rs[0]["hr_w"]}
        for k in PER_IMAGE_METRICS + ("seconds",):
            rec[k] = float(np.mean([r[k] for r in rs]))
        rec["fid"] = metrics.FID_UNAVAILABLE if fid is None else fid[(d, s, m)]
        rec["note"] = "; ".join(dict.fromkeys(r["note"] for r in rs if r["note"]))
        out.append(rec)
    return out



# ---------------------------------------------------------------------------------------------
# One call for evaluate.py


def training_step_text(meta: Optional[dict]) -> str:
    """' (training step N)' from a checkpoint's model.json, with the whole count for a run that was
    warm-started from another checkpoint (its own step count restarts at 0)."""
    meta = meta or {}
    step, total = meta.get("step"), meta.get("total_steps")
    if step is None:
        return ""
    if total is not None and total != step:
        return f" (training step {step} of a warm-started run: {total} in all)"
    return f" (training step {step})"


def run_table(*, datasets: Sequence[str], scales: Sequence[float], methods: Sequence[str], out_dir: str,
              name: str = "table1", protocol: str = "paper", data_root: Optional[str] = None,
              tfds_dir: Optional[str] = None, limit: Optional[int] = None, checkpoint: Optional[str] = None,
              peer_dir: Optional[str] = None, options: Optional[InferenceOptions] = None,
              lpips_nets: Sequence[str] = ("alex",), fid_inception: Optional[str] = None,
              fid_layer: str = "pool_3", command: str = "", progress: bool = True) -> EvalResult:
    """Table 1 end to end: data, methods, metrics, and every output file in ``out_dir``
    (``name``.md, .csv, _per_image.csv, and JPEG grids in ``name``_grids/). ``options`` are the
    base inference options of the Diff-SR methods (steps, seed, ...); ``command`` is recorded in
    the report's header."""
    options = options or InferenceOptions()
    labels = {dataset_label(s): s for s in datasets}
    data = {lab: load_dataset(spec, data_root=data_root, data_dir=tfds_dir, limit=limit)
            for lab, spec in labels.items()}
    mesh = api.local_mesh()  # several local devices: each Diff-SR image spread over them by rows
    mset = eval_methods.build_methods(methods, model_loader=lambda: api.load_model(checkpoint), peer_dir=peer_dir,
                                      options=options, mesh=mesh)
    for method, why in mset.skipped.items():
        print(f"note: skipping {method}: {why}", file=sys.stderr)
    if not mset.methods:
        raise ValueError("no method left to evaluate")
    fid = metrics.InceptionFeatures(fid_inception, fid_layer) if fid_inception else None
    suite = MetricSuite(lpips_nets, fid)
    result = evaluate(data, scales, mset.methods, suite, protocol=protocol, progress=progress)

    os.makedirs(out_dir, exist_ok=True)
    model = mset.model
    ckpt = "(not used)" if model is None else os.path.relpath(model.directory, os.getcwd())
    header = ["# Table 1: super-resolution quality", "",
              f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
              f"- checkpoint: {ckpt}" + (training_step_text(model.meta) if model is not None else "")]
    if command:
        header.append(f"- command: `{command}`")
    header += [f"- protocol: {protocol} ({PROTOCOL_TEXT[protocol]}); Diff-SR seed {options.seed}, "
               "the same for every image; first call per method and shape is an untimed warm-up"]
    header += [f"- skipped: {n} — {why}" for n, why in mset.skipped.items()] + [""]
    md = reports.report_markdown(result, scales, list(labels), list(mset.methods), header)
    with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
        f.write(md)
    reports.write_csv(os.path.join(out_dir, f"{name}.csv"), result.summary)
    reports.write_csv(os.path.join(out_dir, f"{name}_per_image.csv"), result.rows)
    grids = reports.write_grids(result, os.path.join(out_dir, f"{name}_grids"))
    print(md)
    print(f"wrote {out_dir}/{name}.md, .csv, _per_image.csv and {len(grids)} grids", file=sys.stderr)
    return result
