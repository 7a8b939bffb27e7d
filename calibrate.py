"""Calibrate a checkpoint's per-scale noise level (its prf.json) on *training* photos.

    python calibrate.py --checkpoint DIR --overwrite --plots benchmarks/results/prf_plots   # plain
    python calibrate.py --checkpoint DIR --overwrite --consistency 1                       # consistent

(benchmarks/results/prf_sweep.txt gives the sweep's speed.)

Rules (diffsr_jax/calibration.py): ``empirical-lpips`` restores a scale × t × image grid in one
compiled call (diffsr_jax/sweep.py), measures mean LPIPS and PSNR per cell and ships, by default
(``--pick lpips-psnr``), the t that minimises mean LPIPS + k·(the grid's best PSNR − PSNR) with
k = 0.012 LPIPS per dB; ``analytic`` uses the paper's Perceptual Recoverable Field (signature and
fidelity losses, diffsr_jax/prf.py). ``--pick psnr-floor --psnr-floor-from REF/prf.json`` ships
instead, per scale, the lowest-LPIPS t whose mean PSNR is at least what the reference table ships
(same protocol, same crops), less ``--psnr-floor-slack`` (0.02 dB): how a new checkpoint or step
count is calibrated against the bundled one so that it gives back no fidelity. It is monotone in
scale unless ``--no-monotone-in-scale``: no scale ships less noise than a smaller one (picked from
the smallest scale up), so a near-tie at one scale cannot make the table fall with scale.
``--pick one-se`` ships the smallest step within one paired standard error of the LPIPS argmin
(the one-standard-error rule), ``--pick argmin`` the argmin. ``--repick prf.json`` re-derives the
shipped t of an existing table from its stored measurements (no sweep; seconds). Refuses to
overwrite an existing output unless --overwrite; writes atomically.

The defaults are the evaluation protocol applied to training photos: 16 photos pooled from CBSD68
and CSun_Hays80, each framed as Table 1 frames its images (centre square resized to 256², 8-bit)
and degraded as Table 1 degrades them (PIL bicubic on 8-bit RGB), restored with the inference
step count and sampler (those of the checkpoint's current table). Which photos are used matters
more than how the LR is made: calibrate with the framing the images will be used at. The output
lists, per scale, the LPIPS argmin and the grid steps the calibration images cannot tell apart
from it (within one paired standard error).

``--consistency λ`` calibrates the data-consistent mode instead (a consistent run tolerates a
larger t): its table is stored under ``"modes": {"consistent": ...}`` of the existing prf.json,
which ``noise="auto"`` reads when consistency is on; the plain table is left as it is.
"""

import argparse
import datetime
import json
import math
import os
import sys

from diffsr_jax import noise_table  # no JAX: --help and refusals stay instant
from diffsr_jax.defaults import DEFAULT_SAMPLER, DEFAULT_STEPS, EVALUATION_SETS, SAMPLERS

REPO = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = [os.path.join(REPO, "..", "shared", "data", name) for name in ("CBSD68", "CSun_Hays80")]
DEFAULT_T_GRID = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=os.path.join(REPO, "diffsr_jax", "assets", "default_model"))
    ap.add_argument("--data", nargs="+", default=DEFAULT_DATA,
                    help="folder(s) of training photos, pooled (never an evaluation set)")
    ap.add_argument("--images", type=int, default=16, help="number of calibration images (one per photo)")
    ap.add_argument("--crop", type=int, default=256, help="calibration image side in pixels")
    ap.add_argument("--framing", choices=("crop", "paper"), default="paper",
                    help="crop: a random window at the photo's resolution; paper: the evaluation protocol's "
                         "HR (centre square resized to crop², PIL bicubic, 8-bit)")
    ap.add_argument("--degradation", choices=("jax", "pil"), default="pil",
                    help="LR inputs: jax = float antialiased bicubic; pil = PIL bicubic on 8-bit RGB "
                         "(the evaluation protocol's LR)")
    ap.add_argument("--scales", type=float, nargs="+", default=[2, 2.7, 4, 8])
    ap.add_argument("--t-grid", type=float, nargs="+", default=list(DEFAULT_T_GRID),
                    help="noise levels as fractions of T for the empirical sweep (t = 0 is always added)")
    ap.add_argument("--steps", type=int, default=None,
                    help="DDIM steps from t; calibrate with the count you infer with (default: the step count "
                         f"of the checkpoint's current prf.json, calibration.steps; {DEFAULT_STEPS} without one)")
    ap.add_argument("--sampler", choices=SAMPLERS, default=None,
                    help="reverse sampler of the sweep, as inference will run it (default: the checkpoint's "
                         f"current prf.json's calibration.sampler; {DEFAULT_SAMPLER} without one)")
    ap.add_argument("--rule", choices=("empirical-lpips", "analytic"), default="empirical-lpips")
    ap.add_argument("--variance", choices=("ddpm", "ddim"), default="ddpm", help="Σ_i² of the signature loss")
    ap.add_argument("--omega", type=float, default=0.004)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=16, help="grid cells per compiled chunk (per device)")
    ap.add_argument("--cpu-devices", default="auto", metavar="auto|N",
                    help="on a CPU-only machine, split the sweep's grid over this many XLA CPU devices: "
                         "'auto' = one per core, 1 = JAX's default; the table is the same up to float rounding")
    ap.add_argument("--consistency", type=float, default=0.0, metavar="λ",
                    help="calibrate the data-consistent mode with this strength (stored under modes.consistent)")
    ap.add_argument("--lift", choices=("pinv", "bicubic"), default="pinv", help="lift of the consistent mode")
    ap.add_argument("--pick", choices=("lpips-psnr", "psnr-floor", "one-se", "argmin"), default="lpips-psnr",
                    help="empirical rule: which measured step ships — lpips-psnr: the t minimising mean "
                         "LPIPS + k·(best PSNR − PSNR), k = --psnr-weight; psnr-floor: the lowest-LPIPS t whose "
                         "mean PSNR is at least what --psnr-floor-from ships at that scale (a new checkpoint or "
                         "step count gives back no fidelity); one-se: the smallest t within one "
                         "paired standard error of the LPIPS argmin (the one-standard-error rule); "
                         "argmin: the LPIPS argmin itself (argmin and tied steps are always stored)")
    ap.add_argument("--psnr-weight", type=float, default=None, metavar="k",
                    help="LPIPS per dB of PSNR for --pick lpips-psnr (default: diffsr_jax.calibration.DEFAULT_PSNR_WEIGHT, "
                         "0.012)")
    ap.add_argument("--psnr-floor-from", default=None, metavar="PRF_JSON",
                    help="for --pick psnr-floor: the reference calibration (e.g. the bundled model's prf.json), "
                         "measured with the same protocol (data, images, crop, framing, degradation, seed); "
                         "its shipped mean PSNR per scale, same mode, is the floor")
    ap.add_argument("--psnr-floor-slack", type=float, default=None, metavar="DB",
                    help="for --pick psnr-floor: a step whose mean PSNR is at most this far below the floor "
                         "still keeps it (default: diffsr_jax.calibration.DEFAULT_PSNR_FLOOR_SLACK, 0.02 dB; with "
                         "--repick, the slack the table stores)")
    ap.add_argument("--monotone-in-scale", action=argparse.BooleanOptionalAction, default=None,
                    help="for --pick psnr-floor: pick scales from the smallest up, each among the steps no "
                         "smaller than a smaller scale's pick, so the table never ships less noise at a larger "
                         "scale (default: on; with --repick, what the table stores)")
    ap.add_argument("--repick", default=None, metavar="PRF_JSON",
                    help="run no sweep: re-derive the shipped t of an existing calibration table (both modes) "
                         "from the measurements it stores with --pick/--psnr-weight, and write it to --out "
                         "(default: the same file, which needs --overwrite)")
    ap.add_argument("--tolerance", type=float, default=0.0, metavar="ε",
                    help="with --pick argmin: pick the smallest t whose mean LPIPS is within ε of the best "
                         "instead (0 = the argmin)")
    ap.add_argument("--noise-levels", type=float, nargs="+", default=None, metavar="σ",
                    help="add a noise axis to the mode's existing table instead of re-calibrating it: per input "
                         "noise σ (8-bit units, e.g. 5 10 15 25) the t per scale for noisy inputs (seeded noise on "
                         "the calibration LR images, consistency weighed for it; the lowest-LPIPS t that keeps the "
                         "PSNR of the smallest allowed t, never less noise than a smaller σ or scale). The σ = 0 "
                         "row stays as it is")
    ap.add_argument("--out", default=None, help="output JSON (default <checkpoint>/prf.json)")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--plots", default=None, metavar="DIR", help="write PNG plots (paper Fig. 4 and Fig. 6) here")
    return ap


def repick_file(args) -> int:
    from diffsr_jax import calibration

    out = args.out or args.repick
    if os.path.exists(out) and not args.overwrite:
        print(f"error: {out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    try:
        with open(args.repick) as f:
            table = json.load(f)
        reference = None
        if args.psnr_floor_from:
            reference = _read_reference(args.psnr_floor_from, table.get("calibration", {}), table["scales"])
        table = calibration.repick(table, args.pick, _psnr_weight(args), reference, args.psnr_floor_slack,
                           args.monotone_in_scale)
        if reference is not None:
            for mode in (table, *table.get("modes", {}).values()):
                if mode.get("pick") == "psnr-floor":
                    mode["psnr_floor_from"] = os.path.relpath(os.path.abspath(args.psnr_floor_from), REPO)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: cannot re-pick {args.repick}: {e!r}", file=sys.stderr)
        return 2
    noise_table.write_atomic(out, table)
    for name, t in (("plain", table), *table.get("modes", {}).items()):
        print(f"{name}: t = {t['t']} at scales {t['scales']} ({t.get('pick', t['rule'])})")
    print(f"wrote {out}")
    return 0


# What makes two calibrations' means comparable: the same crops, degraded the same way.
PROTOCOL_KEYS = ("data", "images", "crop", "framing", "degradation", "seed")


def _read_reference(path: str, protocol: dict, scales) -> dict:
    """The reference prf.json of --psnr-floor-from, checked to share the calibration protocol (so
    its mean PSNR is a floor measured on the same crops) and to cover ``scales``; ValueError if not."""
    with open(path) as f:
        reference = json.load(f)
    ref_protocol = reference.get("calibration", {})
    differ = [k for k in PROTOCOL_KEYS if ref_protocol.get(k) != protocol.get(k)]
    if differ:
        raise ValueError(f"{path} was calibrated with another protocol ({', '.join(differ)}: "
                         f"{[ref_protocol.get(k) for k in differ]} vs {[protocol.get(k) for k in differ]}); "
                         "its PSNR is no floor for these crops")
    missing = [s for s in scales if float(s) not in [float(r) for r in reference.get("scales", [])]]
    if missing:
        raise ValueError(f"{path} has no scale {missing}")
    return reference


def _current_steps(checkpoint: str, consistent: bool = False) -> int:
    """The step count the checkpoint's noise table was calibrated with (what inference runs by
    default), so re-calibrating it keeps it; DEFAULT_STEPS without a table."""
    return noise_table.calibrated_steps(noise_table.current_calibration(checkpoint, consistent))


def _current_sampler(checkpoint: str, consistent: bool = False) -> str:
    return noise_table.calibrated_sampler(noise_table.current_calibration(checkpoint, consistent))


def _protocol(args) -> dict:
    return {"data": [os.path.relpath(os.path.abspath(d), REPO) for d in args.data], "images": args.images,
            "crop": args.crop, "framing": args.framing, "degradation": args.degradation, "seed": args.seed}


def _psnr_weight(args) -> float:
    from diffsr_jax.calibration import DEFAULT_PSNR_WEIGHT  # JAX: imported only when needed

    return DEFAULT_PSNR_WEIGHT if args.psnr_weight is None else args.psnr_weight


def noise_axis_file(args) -> int:
    """--noise-levels: adds (or, with --overwrite, replaces) the noise axis of one mode's table."""
    out = args.out or os.path.join(args.checkpoint, "prf.json")
    consistent = args.consistency > 0
    levels = sorted(args.noise_levels)
    if levels[0] <= 0 or len(set(levels)) != len(levels):
        print("error: --noise-levels must be distinct values > 0", file=sys.stderr)
        return 2
    try:
        table = noise_table.read(os.path.join(args.checkpoint, "prf.json"))
        noise_table.parse(table)
    except noise_table.NoiseTableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mode = noise_table.mode_json(table, consistent)
    if consistent and "consistent" not in table.get("modes", {}):
        print("error: the table has no consistent mode; calibrate it first", file=sys.stderr)
        return 2
    if "noise_levels_255" in mode and not args.overwrite:
        print(f"error: the {'consistent' if consistent else 'plain'} table already has a noise axis; pass "
              "--overwrite to replace it", file=sys.stderr)
        return 2
    for folder in args.data:
        if os.path.basename(os.path.normpath(folder)) in EVALUATION_SETS:
            print(f"error: {folder} is an evaluation set; calibrate on training photos", file=sys.stderr)
            return 2
    from diffsr_jax import sharding

    try:
        sharding.setup_cpu_devices(args.cpu_devices)
    except ValueError as e:
        print(f"error: --cpu-devices: {e}", file=sys.stderr)
        return 2
    from diffsr_jax import api, calibration

    model = api.load_model(args.checkpoint)
    cal = mode.get("calibration", {})
    steps = args.steps or noise_table.calibrated_steps(cal)
    sampler = args.sampler or noise_table.calibrated_sampler(cal)
    hr = calibration.load_crops(args.data, args.images, args.crop, args.seed, framing=args.framing)
    scales = [float(s) for s in mode["scales"]]
    T = model.num_timesteps
    base_t = [int(round(f * T)) for f in mode["noise_fraction"]]
    grid = sorted({int(round(f * T)) for f in args.t_grid} | set(base_t))
    axis = calibration.noise_axis(model.model, model.params, model.schedule, hr, scales, levels, base_t,
                                  t_values=[t for t in grid if t >= min(base_t)], num_steps=steps, sampler=sampler,
                                  consistency=args.consistency if consistent else 0.0, lift=args.lift,
                                  degradation=args.degradation, seed=args.seed, chunk=args.chunk,
                                  mesh=sharding.make_mesh())
    axis["noise_axis"].update({"data": _protocol(args)["data"], "images": args.images, "crop": args.crop,
                               "framing": args.framing, "degradation": args.degradation, "seed": args.seed,
                               "steps": steps, "sampler": sampler, "date": datetime.date.today().isoformat()})
    mode.update(axis)
    noise_table.write_atomic(out, table)
    for lev, row in zip(levels, axis["noise_fraction_by_level"]):
        print(f"σ {lev:g}/255: t = {[round(f * T) for f in row]} at scales {scales}")
    print(f"wrote {out}")
    return 0


def _psnr_floor_slack(args) -> float:
    from diffsr_jax.calibration import DEFAULT_PSNR_FLOOR_SLACK

    return DEFAULT_PSNR_FLOOR_SLACK if args.psnr_floor_slack is None else args.psnr_floor_slack


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.psnr_weight is not None and (args.pick != "lpips-psnr" or not args.psnr_weight >= 0):
        print("error: --psnr-weight needs --pick lpips-psnr and a value >= 0", file=sys.stderr)
        return 2
    if args.psnr_floor_from and args.pick != "psnr-floor":
        print("error: --psnr-floor-from needs --pick psnr-floor", file=sys.stderr)
        return 2
    if args.psnr_floor_slack is not None and (args.pick != "psnr-floor" or not 0 <= args.psnr_floor_slack < math.inf):
        print("error: --psnr-floor-slack needs --pick psnr-floor and a finite value >= 0", file=sys.stderr)
        return 2
    if args.monotone_in_scale is not None and args.pick != "psnr-floor":
        print("error: --[no-]monotone-in-scale needs --pick psnr-floor", file=sys.stderr)
        return 2
    if args.pick == "psnr-floor" and not args.psnr_floor_from and not args.repick:
        # (--repick may re-use the floor a table stores.)
        print("error: --pick psnr-floor needs --psnr-floor-from PRF_JSON", file=sys.stderr)
        return 2
    if args.repick:
        return repick_file(args)
    if args.noise_levels:
        return noise_axis_file(args)
    out = args.out or os.path.join(args.checkpoint, "prf.json")
    consistent = args.consistency > 0
    if not 0.0 <= args.consistency <= 1.0:
        print("error: --consistency must be in [0, 1]", file=sys.stderr)
        return 2
    if args.tolerance and args.pick != "argmin":
        print("error: --tolerance replaces the argmin; use it with --pick argmin", file=sys.stderr)
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
    for folder in args.data:
        if os.path.basename(os.path.normpath(folder)) in EVALUATION_SETS:
            print(f"error: {folder} is an evaluation set; calibrate on training photos", file=sys.stderr)
            return 2
    if consistent and args.rule == "analytic":
        print("error: the analytic rule does not model consistency; use --rule empirical-lpips", file=sys.stderr)
        return 2
    psnr_floor = None
    if args.pick == "psnr-floor":
        if args.rule != "empirical-lpips":
            print("error: --pick psnr-floor needs --rule empirical-lpips", file=sys.stderr)
            return 2
        try:
            reference = _read_reference(args.psnr_floor_from, _protocol(args), args.scales)
            ref_mode = reference.get("modes", {}).get("consistent") if consistent else reference
            if ref_mode is None:
                raise ValueError(f"{args.psnr_floor_from} has no consistent table")
            if consistent and ref_mode.get("options") != dict(consistency=args.consistency, lift=args.lift):
                raise ValueError(f"{args.psnr_floor_from}'s consistent table has options {ref_mode.get('options')}")
            from diffsr_jax.calibration import reference_floor

            psnr_floor = reference_floor(ref_mode, args.scales)
        except (OSError, ValueError, KeyError) as e:
            print(f"error: --psnr-floor-from {args.psnr_floor_from}: {e}", file=sys.stderr)
            return 2

    if args.steps is None:
        args.steps = _current_steps(args.checkpoint, consistent)
    if args.sampler is None:
        args.sampler = _current_sampler(args.checkpoint, consistent)
    if args.steps < 1:
        print("error: --steps must be >= 1", file=sys.stderr)
        return 2

    from diffsr_jax import sharding

    try:  # before anything touches a device
        sharding.setup_cpu_devices(args.cpu_devices)
    except ValueError as e:
        print(f"error: --cpu-devices: {e}", file=sys.stderr)
        return 2
    from diffsr_jax import api, calibration, prf, sweep

    model = api.load_model(args.checkpoint)
    mesh = sharding.make_mesh()
    if mesh.devices.size > 1:
        print(f"sweep split over {mesh.devices.size} {mesh.devices.flat[0].platform} devices", file=sys.stderr)
    hr = calibration.load_crops(args.data, args.images, args.crop, args.seed, framing=args.framing)
    options = dict(consistency=args.consistency, lift=args.lift) if consistent else None
    table, ana, sw = calibration.calibrate(model.model, model.params, model.schedule, hr, args.scales, rule=args.rule,
                                   t_fractions=[0.0, *args.t_grid], num_steps=args.steps, seed=args.seed,
                                   omega=args.omega, variance=args.variance, chunk=args.chunk,
                                   sweep_options=options, tolerance=args.tolerance,
                                   degradation=args.degradation, pick=args.pick,
                                   psnr_weight=_psnr_weight(args), psnr_floor=psnr_floor,
                                   psnr_floor_slack=_psnr_floor_slack(args),
                                   monotone_in_scale=args.pick == "psnr-floor" and args.monotone_in_scale is not False,
                                   sampler=args.sampler, mesh=mesh)
    table["calibration"] = {"checkpoint": os.path.relpath(os.path.abspath(args.checkpoint), REPO),
                            "checkpoint_step": model.meta.get("step"), **_protocol(args), "steps": args.steps,
                            "sampler": args.sampler, "t_grid": sorted({0.0, *args.t_grid})}
    if psnr_floor is not None:
        table["psnr_floor_from"] = os.path.relpath(os.path.abspath(args.psnr_floor_from), REPO)
    table["date"] = datetime.date.today().isoformat()
    if consistent:
        table.pop("analytic", None)  # the plain table carries it
        existing.setdefault("modes", {})["consistent"] = table
        noise_table.write_atomic(out, existing)
    else:
        if existing is None and os.path.exists(out):
            with open(out) as f:
                modes = json.load(f).get("modes")
            if modes:  # re-calibrating the plain mode keeps the other modes' tables
                table["modes"] = modes
        noise_table.write_atomic(out, table)
    T = table["T"]
    for i, (s, t, p) in enumerate(zip(table["scales"], table["t"], table["prf"])):
        field = "empty" if p is None else ", ".join(f"{a / T:.3f}–{b / T:.3f}" for a, b in p)
        tied = ""
        if "t_tied" in table:  # empirical rule: what the calibration images cannot tell apart from the argmin
            tied = (f"; LPIPS argmin t = {table['t_best'][i]}, within 1 SE of it: "
                    f"t = {', '.join(map(str, table['t_tied'][i]))}")
        print(f"{s:g}x: t* = {t} ({t / T:.3f} T), PRF {field}{tied}")
    print(f"wrote {out}")
    if args.plots:
        os.makedirs(args.plots, exist_ok=True)
        prf.plot_analytic(ana, os.path.join(args.plots, "prf_analytic.png"))
        if sw is not None:
            sweep.plot_sweep(sw, T, os.path.join(args.plots, "prf_sweep.png"),
                           [{"t_star": t} for t in table["t"]])  # marks the shipped t
        print(f"plots in {args.plots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
