"""Issue 31: Diff-SR on degraded inputs (noise, JPEG, area downscale, blur) against the simple
baselines, per degradation × scale × evaluation set, with the issue's pass/fail verdict per cell.

    python benchmarks/degradations.py                                  # everything: ~1 h on 2 cores
    python benchmarks/degradations.py --limit 1 --datasets CSet14 --scales 2 4 \\
        --degradations clean noise10 jpeg75 area --out-dir /tmp/degr_check          # smoke run
    python benchmarks/degradations.py --resume                         # go on after an interruption

The paper protocol (centre crop → 256² 8-bit HR) with the LR made as named
(``diffsr_jax.protocols.LR_DEGRADATIONS``): clean = PIL bicubic; noiseσ = Gaussian noise of σ
(8-bit units) on the bicubic LR, rounded and clipped to 8 bits; jpegQ = PIL JPEG of the bicubic LR
(4:2:0); area = PIL box downscale of the HR; blurσ = Gaussian blur of the HR (σ in HR pixels)
then bicubic; jpeg75+noise5 = noise, then JPEG. The noise is drawn from a seed per (set, image,
scale), so every method sees the same LR and noise5 / noise10 / ... share one standard-normal draw.

Methods: ``lanczos`` (PIL, float); ``fsrcnn`` / ``espcn`` (OpenCV dnn_superres) at integer scales
with a model of that scale only; Diff-SR ``plain`` (the paper's mode: consistency 0, no colour
fix, degradation "clean"), ``default-clean`` (the default pinned to a clean input: consistency 1,
degradation "clean") and ``default`` (the library's defaults: degradation "auto", estimated per
image). Opt-in: ``default-told``, the default told the truth (``degradation`` = the cell's own
description, e.g. ``kernel=area`` or ``noise=10``): what a user who knows the input gains.
JPEG cells pass the file's quantisation tables (``jpeg_quantization=``) as a user's JPEG would.
Metrics: RGB PSNR, LPIPS-Alex (SSIM with ``--ssim``).

Verdict per cell (issue 31): default PSNR ≥ max(lanczos, plain) − 0.1 dB, default LPIPS ≤ the
lowest of lanczos, fsrcnn / espcn and plain, and on clean cells |default − default-clean| ≤ 0.02
dB (means over the cell's images). Writes ``<name>.md``, ``<name>.csv`` (cell means),
``<name>_per_image.csv`` (appended as it goes: ``--resume`` skips what it holds) and
``<name>.png``; the summaries are rewritten after every (set, degradation) block.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import datetime
import json
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from tqdm.auto import tqdm

import common
from diffsr_jax import protocols

REPO = common.REPO_ROOT
SHARED = os.path.join(os.path.dirname(REPO), "shared")
METHODS = ("lanczos", "fsrcnn", "espcn", "plain", "default-clean", "default")
OPT_IN = ("default-told",)
PEERS = ("fsrcnn", "espcn")
DIFFSR = {  # method → the options it pins (degradation only when InferenceOptions has the field)
    "plain": {"consistency": 0.0, "colour_fix": "none", "degradation": "clean"},
    "default-clean": {"consistency": 1.0, "degradation": "clean"},
    "default": {},
    "default-told": {},  # + degradation = the cell's own description (per cell)
}
PSNR_REFS, LPIPS_REFS = ("lanczos", "plain"), ("lanczos", "fsrcnn", "espcn", "plain")
PSNR_MARGIN, CLEAN_TOL = 0.1, 0.02
ROW_FIELDS = ["dataset", "image", "degradation", "scale", "method", "lr_h", "lr_w", "psnr", "lpips_alex", "ssim",
              "t", "steps", "estimated", "est_noise_255", "est_jpeg", "est_kernel", "est_blur", "response",
              "seconds", "first_call", "note", "checkpoint", "seed", "steps_option", "api"]
NUMERIC = {"scale", "psnr", "lpips_alex", "ssim", "est_noise_255", "est_blur", "seconds"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["CSet14", "CUrban100[1-20]"],
                   help="names under --data-root or folders; NAME[a-b] picks images a..b")
    p.add_argument("--data-root", default=os.path.join(SHARED, "data"))
    p.add_argument("--scales", nargs="+", type=float, default=[2.0, 2.7, 4.0])
    p.add_argument("--degradations", nargs="+", default=list(protocols.LR_DEGRADATIONS),
                   help="names as diffsr_jax.protocols.parse_lr_degradation reads them")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + OPT_IN)
    p.add_argument("--limit", type=int, default=None, help="first N images of each set")
    p.add_argument("--checkpoint", default=None, help="Diff-SR model folder; default: the bundled model")
    p.add_argument("--steps", type=int, default=None, help="Diff-SR steps (default: the noise table's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the LR noise and of Diff-SR")
    p.add_argument("--ssim", action="store_true", help="also SSIM (RGB)")
    p.add_argument("--peer-dir", default=os.path.join(SHARED, "peers", "opencv_dnn_superres"))
    p.add_argument("--cpu-devices", default="auto", metavar="auto|N",
                   help="on a CPU-only machine, spread each Diff-SR image over this many XLA CPU devices")
    p.add_argument("--out-dir", default=os.path.join(REPO, "benchmarks", "results"))
    p.add_argument("--name", default="degradations", help="stem of the output files")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows of <name>_per_image.csv made with the same checkpoint, seed, steps and API, "
                        "and compute only the rest (without it the file is started afresh)")
    args = p.parse_args(argv)
    try:
        args.degradations = [protocols.parse_lr_degradation(d).name for d in args.degradations]
    except ValueError as e:
        p.error(str(e))
    return args


def diffsr_options(base, method: str):
    return base.replace(**DIFFSR[method])


def degradation_fields(d) -> dict:
    """``info["degradation"]`` (a Degradation, a dict, or text) → the row's est_* columns."""
    if isinstance(d, dict) and "estimated" in d and not {"noise_sigma", "noise_sigma_255"} & set(d):
        d = d["estimated"]
    if d is None:
        return {"estimated": "", "est_noise_255": "", "est_jpeg": "", "est_kernel": "", "est_blur": ""}
    fields = d.as_dict() if hasattr(d, "as_dict") else (dict(d) if isinstance(d, dict) else {})
    if isinstance(d, dict) and not hasattr(d, "describe"):  # Degradation.as_dict(): describe it again
        from diffsr_jax.degradation import Degradation

        try:
            d = Degradation(**{f.name: d[f.name] for f in dataclasses.fields(Degradation) if f.name in d})
        except (TypeError, ValueError):
            pass
    text = d.describe() if hasattr(d, "describe") else (fields.get("describe") or fields.get("text") or str(d))
    noise = fields.get("noise_sigma_255", fields["noise_sigma"] * 255 if "noise_sigma" in fields else "")
    return {"estimated": text, "est_noise_255": noise, "est_jpeg": fields.get("jpeg_quality", ""),
            "est_kernel": fields.get("kernel", ""), "est_blur": fields.get("blur_sigma", "")}


# ---------------------------------------------------------------------------------------------
# Per-image rows


def load_rows(path: str, config: dict) -> list:
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if all(r.get(k) == str(v) for k, v in config.items()):
                rows.append({k: (_number(v) if k in NUMERIC else v) for k, v in r.items()})
    return rows


def _number(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return "" if v is None else str(v)  # "" or a text such as "None"


def append_rows(path: str, rows: list) -> None:
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=ROW_FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerows(rows)


def row_key(r) -> tuple:
    return (r["dataset"], r["image"], r["degradation"], float(r["scale"]), r["method"])


# ---------------------------------------------------------------------------------------------
# Summaries, verdicts, reports


def summarize(rows: list) -> dict:
    """(dataset, degradation, scale) → method → means over the cell's images."""
    groups = collections.defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["degradation"], float(r["scale"]), r["method"])].append(r)
    cells = collections.defaultdict(dict)
    for (d, g, s, m), rs in groups.items():
        num = lambda k: float(np.mean([r[k] for r in rs])) if all(r[k] != "" for r in rs) else float("nan")
        warm = [r["seconds"] for r in rs if r["first_call"] != "True"]
        rec = {"dataset": d, "degradation": g, "scale": s, "method": m, "n": len(rs), "psnr": num("psnr"),
               "lpips_alex": num("lpips_alex"), "ssim": num("ssim"),
               "t": "/".join(sorted({str(r["t"]) for r in rs if r["t"] != ""}, key=int)),
               "seconds_warm_median": float(np.median(warm)) if warm else float("nan"),
               "note": "; ".join(dict.fromkeys(r["note"] for r in rs if r["note"]))}
        if m == "default":
            rec["estimated"] = estimate_summary(rs)
        cells[(d, g, s)][m] = rec
    return cells


def estimate_summary(rs: list) -> str:
    if not any(r["estimated"] for r in rs):
        return ""
    noise = [r["est_noise_255"] for r in rs if isinstance(r["est_noise_255"], float)]
    if len(noise) < len(rs):  # no numbers: the most common text
        text, k = collections.Counter(r["estimated"] for r in rs).most_common(1)[0]
        return f"{text} ({k}/{len(rs)})"
    parts = [f"σ≈{np.median(noise):.1f}"]
    q = [int(float(r["est_jpeg"])) for r in rs if r["est_jpeg"] not in ("", "None")]
    if q:
        parts.append(f"q≈{int(np.median(q))} ({len(q)}/{len(rs)})")
    blur = [float(r["est_blur"]) for r in rs if isinstance(r["est_blur"], float) and r["est_blur"] > 0]
    if blur:
        parts.append(f"blur≈{np.median(blur):.2f} ({len(blur)}/{len(rs)})")
    return ", ".join(parts)


def verdict(cell: dict, degradation: str):
    """(passed: bool or None, text) for one (set, degradation, scale) cell."""
    d = cell.get("default")
    if d is None:
        return None, "n/a (no default)"
    fails, missing = [], [m for m in PSNR_REFS if m not in cell]
    refs = [m for m in PSNR_REFS if m in cell]
    if refs:
        best = max(refs, key=lambda m: cell[m]["psnr"])
        if d["psnr"] < cell[best]["psnr"] - PSNR_MARGIN:
            fails.append(f"PSNR {d['psnr'] - cell[best]['psnr']:+.2f} dB vs {best}")
    refs = [m for m in LPIPS_REFS if m in cell]
    if refs:
        low = min(refs, key=lambda m: cell[m]["lpips_alex"])
        if d["lpips_alex"] > cell[low]["lpips_alex"]:
            fails.append(f"LPIPS {d['lpips_alex'] - cell[low]['lpips_alex']:+.3f} vs {low}")
    if degradation == "clean":
        if "default-clean" in cell:
            diff = d["psnr"] - cell["default-clean"]["psnr"]
            if abs(diff) > CLEAN_TOL:
                fails.append(f"{diff:+.3f} dB vs default-clean")
        else:
            missing.append("default-clean")
    text = "pass" if not fails else "**fail**: " + "; ".join(fails)
    if missing:
        text += f" (without {', '.join(missing)})"
    return not fails, text


def fmt_cell(rec, best_psnr, best_lpips) -> str:
    """"PSNR / LPIPS", each in bold when it shows the same digits as the best."""
    if rec is None:
        return "—"
    p, lp = f"{rec['psnr']:.2f}", f"{rec['lpips_alex']:.3f}".lstrip("0")
    p = f"**{p}**" if p == f"{best_psnr:.2f}" else p
    lp = f"**{lp}**" if lp == f"{best_lpips:.3f}".lstrip("0") else lp
    return f"{p} / {lp}"


def report(cells: dict, header: list, datasets: list, degradations: list, scales: list, methods: list) -> str:
    lines = list(header)
    verdicts = {}
    for label in datasets:
        keys = [(label, g, s) for g in degradations for s in scales if (label, g, s) in cells]
        if not keys:
            continue
        n = max(rec["n"] for k in keys for rec in cells[k].values())
        judge = "default" in methods
        lines += ["", f"## {label} ({n} images)", "",
                  "| LR made by | scale | " + " | ".join(methods)
                  + (" | default t | estimated (default) | verdict |" if judge else " |"),
                  "|---|---|" + "---:|" * len(methods) + ("---|---|---|" if judge else "")]
        for key in keys:
            cell = cells[key]
            present = [cell[m] for m in methods if m in cell]
            best_p = max(r["psnr"] for r in present)
            best_l = min(r["lpips_alex"] for r in present)
            verdicts[key] = verdict(cell, key[1])
            d = cell.get("default", {})
            lines.append(f"| {key[1]} | {key[2]:g}× | " + " | ".join(fmt_cell(cell.get(m), best_p, best_l)
                                                                     for m in methods)
                         + (f" | {d.get('t', '')} | {d.get('estimated', '')} | {verdicts[key][1]} |" if judge else " |"))
    judged = {k: v for k, v in verdicts.items() if v[0] is not None}
    failed = [k for k, v in judged.items() if not v[0]]
    lines += ["", "## Summary", "",
              f"{len(judged) - len(failed)} of {len(judged)} cells pass the issue's criteria"
              + (f"; {len(failed)} fail:" if failed else "."), ""]
    lines += [f"- {d} {g} {s:g}×: {judged[(d, g, s)][1].replace('**fail**: ', '')}" for d, g, s in failed]
    return "\n".join(lines) + "\n"


def write_csv(path: str, records: list) -> None:
    keys = list(dict.fromkeys(k for r in records for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(records)


def figure(rows: list, path: str, degradations: list, scales: list, methods: list) -> None:
    """ΔPSNR and ΔLPIPS against Lanczos per degradation (means over the paired images of every
    set), one column per scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lanczos = {row_key(r)[:4]: r for r in rows if r["method"] == "lanczos"}
    others = [m for m in methods if m != "lanczos"]
    if not lanczos or not others:
        return
    fig, axes = plt.subplots(2, len(scales), figsize=(4.2 * len(scales), 6.0), squeeze=False, sharey="row")
    x = np.arange(len(degradations))
    for j, s in enumerate(scales):
        for m in others:
            dp, dl = [], []
            for g in degradations:
                pairs = [(r, lanczos[row_key(r)[:4]]) for r in rows
                         if r["method"] == m and r["degradation"] == g and float(r["scale"]) == s
                         and row_key(r)[:4] in lanczos]
                dp.append(np.mean([a["psnr"] - b["psnr"] for a, b in pairs]) if pairs else np.nan)
                dl.append(np.mean([a["lpips_alex"] - b["lpips_alex"] for a, b in pairs]) if pairs else np.nan)
            style = dict(ms=3, lw=2.0 if m == "default" else 1.0, ls="--" if m in PEERS else "-", marker="o", label=m)
            axes[0, j].plot(x, dp, **style)
            axes[1, j].plot(x, dl, **style)
        for i, what in enumerate(("PSNR − Lanczos (dB)", "LPIPS − Lanczos")):
            ax = axes[i, j]
            ax.axhline(0, color="k", lw=0.6)
            ax.set_xticks(x, degradations if i else [], rotation=60, fontsize=7)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel(what, fontsize=8)
        axes[0, j].set_title(f"{s:g}×", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Degraded inputs vs Lanczos (mean over images; up = better PSNR, down = better LPIPS)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------


def main(argv=None):
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    from diffsr_jax import sharding

    try:  # before anything touches a device
        sharding.setup_cpu_devices(args.cpu_devices, note=args.cpu_devices != "auto")
    except ValueError as e:
        sys.exit(f"error: --cpu-devices: {e}")
    from diffsr_jax import api, eval_methods, evaluation, metrics
    from diffsr_jax.options import InferenceOptions

    notes = []

    data = {evaluation.dataset_label(s): evaluation.load_dataset(s, data_root=args.data_root, limit=args.limit)
            for s in args.datasets}
    methods = list(dict.fromkeys(args.methods))
    peers, skipped = {}, {}
    for name in [m for m in methods if m in PEERS]:
        why = eval_methods.peer_unavailable_reason(args.peer_dir)
        ks = [] if why else eval_methods.peer_scales(args.peer_dir, name)
        if not why and not ks:
            why = f"no {eval_methods.PEERS[name]}_x*.pb in {args.peer_dir}"
        if why:
            skipped[name] = why
            continue
        peers[name] = (eval_methods.make_opencv_peer(name, args.peer_dir), ks)
        off = [s for s in args.scales if not (float(s).is_integer() and int(s) in ks)]
        if off:
            notes.append(f"{name} only at scales with a model of that integer scale (×{', ×'.join(map(str, ks))}): "
                         f"not run at {', '.join(f'{s:g}×' for s in off)}")
    methods = [m for m in methods if m not in skipped]
    for m, why in skipped.items():
        notes.append(f"skipped {m}: {why}")
        print(f"note: skipping {m}: {why}", file=sys.stderr)

    model = mesh = None
    base = InferenceOptions(steps=args.steps, seed=args.seed, tile=0)
    opts = {}
    if any(m in DIFFSR for m in methods):
        model = api.load_model(args.checkpoint)
        mesh = api.local_mesh()
        opts = {m: diffsr_options(base, m) for m in methods if m in DIFFSR}
    ckpt = "(not used)" if model is None else os.path.relpath(model.directory, os.getcwd())
    api_text = "degradation+jpeg_quantization"  # kept in the rows: --resume matches on it
    config = {"checkpoint": ckpt, "seed": args.seed, "steps_option": "" if args.steps is None else args.steps,
              "api": api_text}

    lpips = metrics.Lpips("alex")
    os.makedirs(args.out_dir, exist_ok=True)
    per_image = os.path.join(args.out_dir, f"{args.name}_per_image.csv")
    rows = load_rows(per_image, config) if args.resume else []
    if not args.resume or not rows:
        open(per_image, "w").close()
        rows = []
    elif rows:
        print(f"resuming: {len(rows)} rows kept from {per_image}", file=sys.stderr)
        with open(per_image, "w"):
            pass
        append_rows(per_image, rows)  # only the rows that match this run's configuration
    done = {row_key(r) for r in rows}

    command = f"python benchmarks/degradations.py {shlex.join(argv)}".rstrip()
    header = ["# Diff-SR on degraded inputs (issue 31)", "",
              f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
              f"- command: `{command}`",
              f"- checkpoint: {ckpt}" + (evaluation.training_step_text(model.meta) if model is not None else ""),
              f"- machine: {common.machine_load_text()}",
              f"- protocol: {protocols.PROTOCOL_TEXT['paper']}, the LR degraded as named "
              "(diffsr_jax.protocols.degrade_lr_u8; noise seeded per set, image and scale)",
              f"- Diff-SR seed {args.seed}, steps {'from the noise table' if args.steps is None else args.steps}, "
              "whole images; plain = consistency 0, no colour fix, degradation clean; default-clean = consistency 1, "
              "degradation clean; default = the library's defaults",
              "- cells: RGB PSNR (dB) / LPIPS-Alex, means over the images; best of each in bold",
              f"- verdict: default PSNR ≥ max(lanczos, plain) − {PSNR_MARGIN} dB, default LPIPS ≤ min(lanczos, "
              f"fsrcnn/espcn, plain), clean cells |default − default-clean| ≤ {CLEAN_TOL} dB"]
    header += [f"- note: {n}" for n in notes]

    def write_reports():
        cells = summarize(rows)
        timing = collections.defaultdict(list)
        for r in rows:
            if (r["method"] in DIFFSR and r["first_call"] != "True" and r["seconds"] != ""
                    and not r["note"].startswith("same options")):
                timing[r["method"]].append(float(r["seconds"]))
        extra = [f"- time per image (median, compile calls excluded): " + ", ".join(
            f"{m} {np.median(v):.1f} s" for m, v in timing.items())] if timing else []
        md = report(cells, header + extra, list(data), args.degradations, args.scales, methods)
        with open(os.path.join(args.out_dir, f"{args.name}.md"), "w") as f:
            f.write(md)
        write_csv(os.path.join(args.out_dir, f"{args.name}.csv"), [rec for c in cells.values() for rec in c.values()])
        figure(rows, os.path.join(args.out_dir, f"{args.name}.png"), args.degradations, args.scales, methods)
        return md

    seen_shapes = set()
    units = sum(len(im) for im in data.values()) * len(args.degradations) * len(args.scales)
    bar = tqdm(total=units, unit="cell", desc="degradations", dynamic_ncols=True)
    for label, images in data.items():
        for g in args.degradations:
            for s in args.scales:
                for name, rgb in images:
                    todo = [m for m in methods if (label, name, g, float(s), m) not in done
                            and not (m in peers and not (float(s).is_integer() and int(s) in peers[m][1]))]
                    if not todo:
                        bar.update(1)
                        continue
                    bar.set_postfix_str(f"{label} {g} {s:g}× {name}")
                    pair = protocols.degraded_paper_pair(rgb, s, g, seed=protocols.lr_degradation_seed(
                        args.seed, label, name, float(s)))
                    hr = pair.hr_u8.astype(np.float32) / 255.0
                    lr = pair.lr_u8.astype(np.float32) / 255.0
                    outs, used, new = {}, {}, []  # used: the options each Diff-SR method ran with
                    for m in todo:
                        t0, info, note = time.perf_counter(), {}, ""
                        if m == "lanczos":
                            out = protocols.pil_resize_float(lr, hr.shape[:2], "lanczos")
                        elif m in peers:
                            fn = peers[m][0]
                            out = fn(lr, hr.shape[:2])
                            note = fn.note
                        else:
                            o = opts[m]
                            if m == "default-told":
                                o = o.replace(degradation=protocols.parse_lr_degradation(g).spec(s))
                            same = next((k for k, ok in used.items() if ok.with_defaults() == o.with_defaults()), None)
                            if same is not None:
                                out, info = outs[same][0], outs[same][1]
                                note = f"same options as {same}: its output"
                            else:
                                kw = {"jpeg_quantization": pair.jpeg_quantization} if (
                                    pair.jpeg_quantization is not None) else {}
                                out, info = api.upscale_array(lr, hr.shape[:2], model=model, options=o, mesh=mesh, **kw)
                            used[m] = o
                        outs[m] = (out, info)
                        secs = time.perf_counter() - t0
                        first = (m, lr.shape) not in seen_shapes
                        seen_shapes.add((m, lr.shape))
                        row = {"dataset": label, "image": name, "degradation": g, "scale": float(s), "method": m,
                               "lr_h": lr.shape[0], "lr_w": lr.shape[1], "psnr": metrics.psnr(out, hr),
                               "lpips_alex": lpips(out, hr), "ssim": metrics.ssim(out, hr) if args.ssim else "",
                               "t": info.get("t", ""), "steps": info.get("steps", ""),
                               **degradation_fields(info.get("degradation")),
                               "response": json.dumps(info["response"], default=str) if info.get("response") else "",
                               "seconds": secs,
                               "first_call": str(first), "note": note, **config}
                        new.append(row)
                    append_rows(per_image, new)
                    rows.extend({k: (_number(v) if k in NUMERIC else str(v)) for k, v in r.items()} for r in new)
                    done.update(row_key(r) for r in new)
                    bar.update(1)
            write_reports()
    bar.close()
    md = write_reports()
    print(md)
    print(f"wrote {args.out_dir}/{args.name}.md, .csv, _per_image.csv, .png", file=sys.stderr)


if __name__ == "__main__":
    main()
