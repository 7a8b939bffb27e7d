"""Sampler steps vs quality: a steps × t × scale grid on calibration photos, and the fewest steps
that come within a tolerance of the best LPIPS at every scale.

    python benchmarks/steps_quality.py --checkpoint DIR            # ≈ 15 min on 2 cores (8 photos)
    python benchmarks/steps_quality.py --images 2 --crop 64 --step-grid 1 2 --t-grid 0.05   # smoke run

Each step count is compared at *its own* best t: more steps rebuild more from a larger t, so a
step curve measured at one t (the one the fewest steps liked best) understates them; that is how
the 2-step default of the first model was chosen. Photos, framing and LR follow ``calibrate.py``'s
defaults (training photos only; never an evaluation set), and every cell of an image shares its
noise draw, so the columns are paired. ``--mode consistent`` (the default) sweeps the inference
default (data consistency, pinv lift; no colour fix, as in calibration), ``--mode plain`` the
paper's plain Diff-SR. Writes a Markdown report and a JSON next to it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from diffsr_jax.defaults import EVALUATION_SETS, SAMPLERS  # no JAX import: --help and refusals stay instant

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = [os.path.join(os.path.dirname(REPO), "shared", "data", d) for d in ("CBSD68", "CSun_Hays80")]
MODES = {"consistent": dict(consistency=1.0, lift="pinv"), "plain": {}}


def fewest_steps_within(best_lpips: dict, tolerance: float) -> int:
    """``best_lpips``: step count → per-scale best mean LPIPS (over t). The smallest step count
    within ``tolerance`` of the per-scale best (over all counts) at every scale; when none is (the
    best counts differ by scale), the count with the smallest worst-scale excess."""
    counts = sorted(best_lpips)
    table = np.asarray([best_lpips[n] for n in counts], np.float64)   # (counts, scales)
    excess = (table - table.min(axis=0)).max(axis=1)
    within = np.flatnonzero(excess <= tolerance)
    return int(counts[within[0]] if within.size else counts[int(np.argmin(excess))])


def markdown(res: dict) -> str:
    scales, ts = res["scales"], res["t"]
    lines = [f"# Sampler steps vs quality ({res['date']})", "",
             f"`{res['command']}` — checkpoint `{res['checkpoint']}` (step {res['step']}), {res['images']} "
             f"calibration photos ({', '.join(os.path.basename(d) for d in res['data'])}, {res['framing']} framing, "
             f"{res['crop']}², {res['degradation']} LR), mode {res['mode']}, {res['sampler'].upper()}; "
             "mean LPIPS-Alex / RGB PSNR (dB); each cell shares its image's noise draw.", ""]
    for i, s in enumerate(scales):
        lines += [f"## {s:g}×", "", "| steps | " + " | ".join(f"t={t}" for t in ts) + " | best t |",
                  "|---|" + "---|" * (len(ts) + 1)]
        for n in res["step_grid"]:
            L, P = res["lpips"][str(n)][i], res["psnr"][str(n)][i]
            b = int(np.argmin(L))
            cells = [f"**{l:.3f}** / {p:.2f}" if j == b else f"{l:.3f} / {p:.2f}" for j, (l, p) in enumerate(zip(L, P))]
            lines.append(f"| {n} | " + " | ".join(cells) + f" | {ts[b]} |")
        lines.append("")
    lines += ["## Best LPIPS over t per step count", "", "| steps | " + " | ".join(f"{s:g}×" for s in scales) + " | seconds |",
              "|---|" + "---|" * (len(scales) + 1)]
    for n in res["step_grid"]:
        lines.append(f"| {n} | " + " | ".join(f"{v:.3f}" for v in res["best_lpips"][str(n)]) + f" | {res['seconds'][str(n)]:.0f} |")
    lines += ["", f"Fewest steps within {res['tolerance']} LPIPS of the best at every scale: **{res['pick']}** "
              "by LPIPS alone; the PSNR columns show what the extra steps cost (seconds: the grid's wall time, "
              "compile included, on this machine).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="exported model folder (default: the bundled model)")
    ap.add_argument("--data", nargs="+", default=DATA, help="training photo folders, pooled (never an evaluation set)")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--framing", choices=("crop", "paper"), default="paper")
    ap.add_argument("--degradation", choices=("jax", "pil"), default="pil")
    ap.add_argument("--scales", type=float, nargs="+", default=[2.0, 2.7, 4.0, 8.0])
    ap.add_argument("--t-grid", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3], help="noise levels as fractions of T")
    ap.add_argument("--step-grid", type=int, nargs="+", default=[2, 5, 10, 20])
    ap.add_argument("--mode", choices=sorted(MODES), default="consistent")
    ap.add_argument("--sampler", choices=SAMPLERS, default="ddim")
    ap.add_argument("--tolerance", type=float, default=0.01, help="LPIPS within which fewer steps count as as good")
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "steps_quality.md"))
    args = ap.parse_args(argv)
    if min(args.step_grid) < 1 or args.images < 1:
        ap.error("--step-grid counts and --images must be >= 1")
    for folder in args.data:
        if os.path.basename(os.path.normpath(folder)) in EVALUATION_SETS:
            ap.error(f"{folder} is an evaluation set; measure on training photos")

    import jax
    from diffsr_jax import api, calibration, sweep

    model = api.load_model(args.checkpoint)
    T = model.num_timesteps
    ts = sorted({int(round(f * T)) for f in args.t_grid})
    hr = calibration.load_crops(args.data, args.images, args.crop, args.seed, framing=args.framing)
    lpips = sweep.make_lpips()
    res = {"date": datetime.date.today().isoformat(), "command": "python " + shlex.join(sys.argv if argv is None else ["benchmarks/steps_quality.py", *argv]),
           "checkpoint": os.path.relpath(model.directory, REPO), "step": model.meta.get("total_steps", model.meta.get("step")),
           "data": [os.path.relpath(os.path.abspath(d), REPO) for d in args.data], "images": args.images,
           "crop": args.crop, "framing": args.framing, "degradation": args.degradation, "mode": args.mode,
           "sampler": args.sampler, "scales": args.scales, "t": ts, "step_grid": sorted(set(args.step_grid)),
           "tolerance": args.tolerance, "lpips": {}, "psnr": {}, "best_lpips": {}, "seconds": {}}
    for n in res["step_grid"]:
        start = time.perf_counter()
        sw = sweep.sweep(model.model, model.params, model.schedule, hr, args.scales, ts, jax.random.PRNGKey(args.seed), n,
                       lpips=lpips, chunk=args.chunk, sampler=args.sampler, degradation=args.degradation,
                       **MODES[args.mode])
        L, P = sw.mean("lpips"), sw.mean("psnr")
        res["seconds"][str(n)] = time.perf_counter() - start
        res["lpips"][str(n)], res["psnr"][str(n)] = L.tolist(), P.tolist()
        res["best_lpips"][str(n)] = L.min(axis=1).tolist()
        print(f"{n} steps: best LPIPS per scale " + ", ".join(f"{s:g}×: {v:.3f}" for s, v in zip(args.scales, L.min(axis=1)))
              + f" ({res['seconds'][str(n)]:.0f} s)", file=sys.stderr, flush=True)
    res["pick"] = fewest_steps_within({n: res["best_lpips"][str(n)] for n in res["step_grid"]}, args.tolerance)
    text = markdown(res)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)) or ".", exist_ok=True)
    for path, body in ((args.out, text), (os.path.splitext(args.out)[0] + ".json", json.dumps(res, indent=1))):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(body)
        os.replace(tmp, path)  # never a half-written report
    return 0


if __name__ == "__main__":
    sys.exit(main())
