"""Calibrate a checkpoint's per-scale noise level (its prf.json) on *training* photos.

    python calibrate.py --checkpoint diffsr_jax/assets/default_model --out /tmp/prf.json \
        --plots benchmarks/results/prf_plots --images 4 --crop 96 [--rule analytic]

Rules (see diffsr_jax/prf.py): ``empirical-lpips`` restores a scale × t × image grid in one
compiled call and keeps the t with the lowest mean LPIPS; ``analytic`` uses the paper's
Perceptual Recoverable Field (signature and fidelity losses). Refuses to overwrite an existing
output unless --overwrite; writes atomically.

``--consistency λ`` calibrates the data-consistent mode instead (a consistent run tolerates a
larger t): its table is stored under ``"modes": {"consistent": ...}`` of the existing prf.json,
which ``noise="auto"`` reads when consistency is on; the plain table is left as it is.
"""

import argparse
import datetime
import json
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(REPO, "..", "shared", "data", "CBSD68")
DEFAULT_T_GRID = (0.0, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=os.path.join(REPO, "diffsr_jax", "assets", "default_model"))
    ap.add_argument("--data", default=DEFAULT_DATA, help="folder of training photos (never an evaluation set)")
    ap.add_argument("--images", type=int, default=4, help="number of calibration crops (one per photo)")
    ap.add_argument("--crop", type=int, default=96, help="crop side in pixels")
    ap.add_argument("--scales", type=float, nargs="+", default=[2, 2.7, 4, 8])
    ap.add_argument("--t-grid", type=float, nargs="+", default=list(DEFAULT_T_GRID),
                    help="noise levels as fractions of T for the empirical sweep (t = 0 is always added)")
    ap.add_argument("--steps", type=int, default=10,
                    help="DDIM steps from t (the shipped tables used 10; inference defaults to diffsr_jax.defaults.DEFAULT_STEPS)")
    ap.add_argument("--rule", choices=("empirical-lpips", "analytic"), default="empirical-lpips")
    ap.add_argument("--variance", choices=("ddpm", "ddim"), default="ddpm", help="Σ_i² of the signature loss")
    ap.add_argument("--omega", type=float, default=0.004)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=16, help="grid cells per compiled chunk")
    ap.add_argument("--consistency", type=float, default=0.0, metavar="λ",
                    help="calibrate the data-consistent mode with this strength (stored under modes.consistent)")
    ap.add_argument("--lift", choices=("pinv", "bicubic"), default="pinv", help="lift of the consistent mode")
    ap.add_argument("--tolerance", type=float, default=0.0, metavar="ε",
                    help="empirical rule: pick the smallest t whose mean LPIPS is within ε of the best "
                         "(0 = the argmin; e.g. 0.005 where the curve is flat within the calibration noise)")
    ap.add_argument("--out", default=None, help="output JSON (default <checkpoint>/prf.json)")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--plots", default=None, metavar="DIR", help="write PNG plots (paper Fig. 4 and Fig. 6) here")
    return ap


def write_json_atomic(path: str, obj: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".prf-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out or os.path.join(args.checkpoint, "prf.json")
    consistent = args.consistency > 0
    if not 0.0 <= args.consistency <= 1.0:
        print("error: --consistency must be in [0, 1]", file=sys.stderr)
        return 2
    existing = None
    if consistent:
        # The consistent table is one entry of an existing prf.json (the plain table stays).
        if not os.path.exists(out):
            print(f"error: {out} does not exist; calibrate the plain mode first", file=sys.stderr)
            return 2
        with open(out) as f:
            existing = json.load(f)
        if "consistent" in existing.get("modes", {}) and not args.overwrite:
            print(f"error: {out} already has a consistent table; pass --overwrite to replace it", file=sys.stderr)
            return 2
    elif os.path.exists(out) and not args.overwrite:
        print(f"error: {out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    if os.path.basename(os.path.normpath(args.data)) in ("CSet5", "CSet14", "CUrban100"):
        print(f"error: {args.data} is an evaluation set; calibrate on training photos", file=sys.stderr)
        return 2
    if consistent and args.rule == "analytic":
        print("error: the analytic rule does not model consistency; use --rule empirical-lpips", file=sys.stderr)
        return 2

    from diffsr_jax import api, prf

    model = api.load_model(args.checkpoint)
    hr = prf.load_crops(args.data, args.images, args.crop, args.seed)
    options = dict(consistency=args.consistency, lift=args.lift) if consistent else None
    table, ana, sw = prf.calibrate(model.model, model.params, model.schedule, hr, args.scales, rule=args.rule,
                                   t_fractions=[0.0, *args.t_grid], num_steps=args.steps, seed=args.seed,
                                   omega=args.omega, variance=args.variance, chunk=args.chunk,
                                   sweep_options=options, tolerance=args.tolerance)
    table["calibration"] = {"checkpoint": os.path.relpath(os.path.abspath(args.checkpoint), REPO),
                            "checkpoint_step": model.meta.get("step"),
                            "data": os.path.relpath(os.path.abspath(args.data), REPO), "images": args.images,
                            "crop": args.crop, "seed": args.seed, "steps": args.steps,
                            "t_grid": sorted({0.0, *args.t_grid})}
    table["date"] = datetime.date.today().isoformat()
    if consistent:
        table.pop("analytic", None)  # the plain table carries it
        existing.setdefault("modes", {})["consistent"] = table
        write_json_atomic(out, existing)
    else:
        if existing is None and os.path.exists(out):
            with open(out) as f:
                modes = json.load(f).get("modes")
            if modes:  # re-calibrating the plain mode keeps the other modes' tables
                table["modes"] = modes
        write_json_atomic(out, table)
    T = table["T"]
    for s, t, p in zip(table["scales"], table["t"], table["prf"]):
        field = "empty" if p is None else ", ".join(f"{a / T:.3f}–{b / T:.3f}" for a, b in p)
        print(f"{s:g}x: t* = {t} ({t / T:.3f} T), PRF {field}")
    print(f"wrote {out}")
    if args.plots:
        os.makedirs(args.plots, exist_ok=True)
        prf.plot_analytic(ana, os.path.join(args.plots, "prf_analytic.png"))
        if sw is not None:
            prf.plot_sweep(sw, T, os.path.join(args.plots, "prf_sweep.png"),
                           prf.empirical_fields(sw, tolerance=args.tolerance))
        print(f"plots in {args.plots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
