"""Inference modes of issue 6 measured on training photos: plain Diff-SR vs data consistency
(pinv / bicubic lift) vs colour fixes, per scale and noise level, and quality vs DDIM step count.

    python benchmarks/consistency_quality.py                       # bundled model, ~15 min on 2 cores
    python benchmarks/consistency_quality.py --images 2 --crop 64 --t-grid 0 0.05   # smoke run

Calibration photos (CBSD68, never the evaluation sets) so the defaults chosen from this table are
not tuned on the test sets. Every mode runs through ``sweep.sweep`` (one compiled call per mode for
all scales and t), with the same noise draws per image. Baselines: bicubic and Lanczos (PIL,
float) from the same LR. Writes a Markdown report and a JSON next to it.
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

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from diffsr_jax import api, calibration, protocols, sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = {  # name → sweep.sweep options
    "plain": dict(),
    "plain+wavelet": dict(colour_fix="wavelet"),
    "plain+adain": dict(colour_fix="adain"),
    "cons-pinv": dict(consistency=1.0, lift="pinv"),
    "cons-bicubic×3": dict(consistency=1.0, lift="bicubic", guide_iters=3),
    "cons-pinv+wavelet": dict(consistency=1.0, lift="pinv", colour_fix="wavelet"),
}


def classical(hr01: np.ndarray, scale: float, resample) -> np.ndarray:
    """PIL float resize per channel: HR → LR (bicubic, antialiased) → HR with ``resample``."""
    n, h, w, _ = hr01.shape
    lr_hw = (max(1, round(h / scale)), max(1, round(w / scale)))
    lr = np.asarray(jax.image.resize(jnp.asarray(hr01), (n, *lr_hw, 3), "bicubic", antialias=True))
    out = np.stack([np.stack([np.asarray(Image.fromarray(img[..., c], "F").resize((w, h), resample))
                              for c in range(3)], -1) for img in lr])
    return np.clip(out, 0, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(REPO), "shared", "data", "CBSD68"))
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--scales", type=float, nargs="+", default=[2.0, 2.7, 4.0])
    ap.add_argument("--t-grid", type=float, nargs="+", default=[0.0, 0.025, 0.05, 0.1, 0.2, 0.3],
                    help="noise levels as fractions of T")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--step-grid", type=int, nargs="+", default=[1, 2, 5, 10, 20, 50],
                    help="DDIM step counts for the step curve (at each scale's best t of the best mode)")
    ap.add_argument("--curve-at", choices=("lpips", "psnr"), default="lpips",
                    help="the step curve runs at each scale's best t > 0 by this metric (lpips: the t "
                         "that calibrate.py's empirical-lpips rule would pick)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "consistency_quality.md"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    model = api.load_model(args.checkpoint)
    T = model.num_timesteps
    hr = calibration.load_crops(args.data, args.images, args.crop, args.seed)
    lpips = sweep.make_lpips()
    ts = sorted({int(round(f * T)) for f in args.t_grid})
    key = jax.random.key(args.seed)
    results, timings = {}, {}
    for name in args.modes:
        t0 = time.perf_counter()
        res = sweep.sweep(model.model, model.params, model.schedule, hr, args.scales, ts, key, args.steps,
                        lpips=lpips, **MODES[name])
        timings[name] = time.perf_counter() - t0
        results[name] = {m: res.mean(m).tolist() for m in ("psnr", "ssim", "lpips")}
        print(f"{name}: {timings[name]:.0f} s", flush=True)

    import dm_pix
    baselines = {}
    for bname, resample in (("bicubic", Image.BICUBIC), ("lanczos", Image.LANCZOS)):
        rows = {"psnr": [], "ssim": [], "lpips": []}
        for s in args.scales:
            out = jnp.asarray(classical(hr, s, resample))
            ref = jnp.asarray(hr)
            rows["psnr"].append(float(dm_pix.psnr(out, ref).mean()))
            rows["ssim"].append(float(dm_pix.ssim(out, ref).mean()))
            rows["lpips"].append(float(lpips.lpips.apply(lpips.params, out * 2 - 1, ref * 2 - 1).mean()))
        baselines[bname] = rows

    # Step curve: for the best mode by PSNR, at each scale's best t > 0 (--curve-at).
    best_mode = max(args.modes, key=lambda n: np.max(results[n]["psnr"]))
    step_curve = {}
    for si, s in enumerate(args.scales):
        score = np.asarray(results[best_mode][args.curve_at][si]) * (1 if args.curve_at == "psnr" else -1)
        cand = [i for i, t in enumerate(ts) if t > 0]
        t_best = ts[max(cand, key=lambda i: score[i])]
        curve = []
        for k in sorted(set(args.step_grid + [t_best])):
            if k > t_best:
                continue
            res = sweep.sweep(model.model, model.params, model.schedule, hr, [s], [t_best], key, int(k), lpips=lpips,
                            **MODES[best_mode])
            curve.append({"steps": int(k), "psnr": float(res.mean("psnr")[0, 0]),
                          "lpips": float(res.mean("lpips")[0, 0])})
        step_curve[str(s)] = {"t": t_best, "curve": curve}
        print(f"steps at {s}×: {curve}", flush=True)

    report = dict(date=datetime.date.today().isoformat(), command="python " + " ".join(map(shlex.quote, sys.argv)),
                  checkpoint=model.directory, step=model.meta.get("step"), images=args.images, crop=args.crop,
                  data=args.data, scales=args.scales, t=ts, steps=args.steps, modes=results, baselines=baselines,
                  best_mode=best_mode, curve_at=args.curve_at, step_curve=step_curve, seconds=timings)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(report, f, indent=1)
    with open(args.out, "w") as f:
        f.write(render(report))
    print(render(report))


def render(r) -> str:
    lines = [f"# Inference modes on calibration photos ({r['date']})", "",
             f"`{r['command']}` — checkpoint `{os.path.relpath(r['checkpoint'], REPO)}`, {r['images']} random "
             f"{r['crop']}² crops of {os.path.basename(r['data'])} (training photos), DDIM {r['steps']} steps, "
             "RGB PSNR (dB) / LPIPS-Alex, mean over images.", ""]
    for si, s in enumerate(r["scales"]):
        lines += [f"## {s:g}×", "", "| mode | " + " | ".join(f"t={t}" for t in r["t"]) + " |",
                  "|---|" + "---|" * len(r["t"])]
        for name, m in r["modes"].items():
            cells = [f"{p:.2f} / {l:.3f}" for p, l in zip(m["psnr"][si], m["lpips"][si])]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        for name, m in r["baselines"].items():
            lines.append(f"| {name} | {m['psnr'][si]:.2f} / {m['lpips'][si]:.3f} (no t) |" + " |" * (len(r["t"]) - 1))
        lines.append("")
    lines += [f"## Quality vs DDIM steps ({r['best_mode']}, each scale at its {r.get('curve_at', 'psnr').upper()}-best t)", "",
              "| scale | t | " + " | ".join("steps" for _ in range(1)) + " → PSNR / LPIPS |", "|---|---|---|"]
    for s, sc in r["step_curve"].items():
        lines.append(f"| {float(s):g}× | {sc['t']} | " + ", ".join(
            f"{c['steps']}: {c['psnr']:.2f} / {c['lpips']:.3f}" for c in sc["curve"]) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
