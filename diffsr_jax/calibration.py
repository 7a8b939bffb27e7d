"""A checkpoint's noise table: calibration crops, the pick rules, and :func:`calibrate`, which
measures the analytic PRF (:mod:`diffsr_jax.prf`) and, for the empirical rule, a sweep
(:mod:`diffsr_jax.sweep`), and returns the table calibrate.py writes as prf.json
(:mod:`diffsr_jax.noise_table` reads it).
"""

from __future__ import annotations

import copy
import os
from typing import Optional, Sequence

import jax
import numpy as np

from diffsr_jax import image_io, protocols, sweep as sweep_mod
from diffsr_jax.defaults import EVALUATION_SETS  # noqa: F401  (never calibrate on these)
from diffsr_jax.prf import OMEGA, analytic_table
from diffsr_jax.schedules import Schedule

FRAMINGS = ("crop", "paper")     # how calibration HR images are cut from photos (see load_crops)


def load_crops(folder, n: int, crop: int, seed: int = 0, framing: str = "crop") -> np.ndarray:
    """n crop×crop RGB images in [0, 1] from n distinct photos (seeded choice) of a folder, or of
    several folders pooled.

    ``framing``: ``"crop"`` = a random crop×crop window at the photo's own resolution;
    ``"paper"`` = the evaluation protocol's HR (:func:`diffsr_jax.protocols.paper_hr_u8`): the centre
    square resized to crop² with PIL bicubic on 8-bit RGB. A 1024-px photo is then shrunk ~3×,
    which packs far more detail into each pixel than a native crop does; the noise level an image
    tolerates depends on that, so calibrate with the framing the images will be used at."""
    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, got {framing!r}")
    folders = [folder] if isinstance(folder, (str, os.PathLike)) else list(folder)
    files = [os.path.join(d, r) for fo in folders for d, r in image_io.list_image_files(fo)]
    if len(files) < n:
        raise ValueError(f"{', '.join(map(str, folders))} has {len(files)} images, {n} requested")
    rng = np.random.default_rng(seed)
    crops = []
    for f in rng.choice(files, n, replace=False):
        img = image_io.read_rgb_u8(f).astype(np.float32) / 255.0
        if framing == "paper":
            crops.append(protocols.paper_hr_u8(img, crop).astype(np.float32) / 255.0)
            continue
        if min(img.shape[:2]) < crop:
            raise ValueError(f"{f} is smaller than the {crop}px crop")
        y = rng.integers(0, img.shape[0] - crop + 1)
        x = rng.integers(0, img.shape[1] - crop + 1)
        crops.append(img[y:y + crop, x:x + crop])
    return np.stack(crops)


# ---------------------------------------------------------------------------------------------
# A checkpoint's calibration table (what calibrate.py writes as prf.json)

RULES = {
    "analytic": "analytic PRF (Lemma 1 / Theorem 1): t* = argmin L^S + ωL^F inside {L^S ≤ C^S, ωL^F ≤ C^F}",
    "empirical-lpips": "per scale, mean LPIPS-Alex over the t grid (its argmin is t_best; the shipped t "
                       "follows 'pick'); prf = grid steps t > 0 whose mean LPIPS beats t = 0 (bicubic)",
}

# The exchange rate of the "lpips-psnr" pick, in LPIPS per dB: more noise must buy at least this
# much LPIPS for each dB of PSNR it costs. Fixed a priori (not fitted to the model being calibrated).
DEFAULT_PSNR_WEIGHT = 0.012

# How far below the floor the "psnr-floor" pick still counts a step as keeping it, in dB: far
# under what Table 1's paired comparisons resolve (tenths of a dB), so a step is not refused for a
# difference the calibration crops cannot measure. A table that stores no slack means 0.
DEFAULT_PSNR_FLOOR_SLACK = 0.02

# How the empirical rule turns its measurements into the shipped t (the argmin is always stored).
PICKS = {
    "lpips-psnr": "the grid step minimising mean LPIPS + k·(the grid's highest mean PSNR − mean PSNR), "
                  "k = psnr_weight LPIPS per dB: more noise must buy at least k of LPIPS for each dB "
                  "of PSNR it costs (a better denoiser's small-t outputs are smoother, so LPIPS alone "
                  "drifts to more noise as the model improves)",
    "one-se": "the smallest grid step whose mean LPIPS is within one paired standard error of the "
              "argmin's (the one-standard-error rule: among steps the calibration images cannot tell "
              "apart, the least noise, i.e. the most fidelity to the input)",
    "argmin": "the argmin of the mean LPIPS",
    "psnr-floor": "the grid step with the lowest mean LPIPS among those whose mean PSNR is at least the "
                  "floor less a slack: per scale, the mean PSNR that a reference table ships on the same "
                  "calibration crops (psnr_floor), less psnr_floor_slack dB (differences the crops cannot "
                  "resolve). A new checkpoint or step count may spend its gains on perceptual quality but "
                  "gives back no fidelity; where no step reaches the floor, the step with the highest mean "
                  "PSNR",
}


def _grid_means(t_values, lpips_mean, psnr_mean):
    """Validated (t grid, LPIPS means, PSNR means) of a pick: both (S, Tn) over a strictly
    increasing grid."""
    lp, ps = np.asarray(lpips_mean, np.float64), np.asarray(psnr_mean, np.float64)
    t_values = np.asarray(t_values)
    if lp.shape != ps.shape or lp.shape[-1] != len(t_values):
        raise ValueError(f"lpips {lp.shape} and psnr {ps.shape} must both be (scales, {len(t_values)})")
    if not np.all(np.diff(t_values) > 0):
        raise ValueError("t_values must be strictly increasing")
    return t_values, lp, ps


def weighted_steps(t_values: Sequence[int], lpips_mean, psnr_mean, psnr_weight: float,
                   decimals: int = 4) -> list[int]:
    """Per scale, argmin over the grid of mean LPIPS + psnr_weight · (max mean PSNR − mean PSNR)
    (``lpips_mean``, ``psnr_mean``: (S, Tn)); ties, after rounding to ``decimals`` (as
    :func:`diffsr_jax.sweep.empirical_fields` rounds), go to the smaller t. psnr_weight = 0 is the LPIPS argmin."""
    if not psnr_weight >= 0:
        raise ValueError(f"psnr_weight must be >= 0, got {psnr_weight}")
    t_values, lp, ps = _grid_means(t_values, lpips_mean, psnr_mean)
    score = np.round(lp + psnr_weight * (ps.max(axis=-1, keepdims=True) - ps), decimals)
    return [int(t_values[int(np.argmin(row))]) for row in score]


def floor_steps(t_values: Sequence[int], lpips_mean, psnr_mean, psnr_floor: Sequence[float],
                decimals: int = 4, slack: float = 0.0, scales: Optional[Sequence[float]] = None) -> list[int]:
    """Per scale, the grid step of lowest mean LPIPS among those whose mean PSNR is at least
    ``psnr_floor[scale] - slack`` (``lpips_mean``, ``psnr_mean``: (S, Tn)); LPIPS ties, after
    rounding to ``decimals``, go to the smaller t. Where no step reaches it: the highest mean PSNR
    (the closest the sampler comes to the reference's fidelity).

    ``scales`` (the rows' scale factors), when given, makes the pick monotone in scale: scales are
    picked from the smallest up, each among the steps no smaller than any smaller scale's pick. A
    larger scale loses more of the image, so it never needs less noise (the PRF's premise); without
    the constraint a near-tie at one scale (a difference in mean LPIPS far below its error) can ship
    less noise there than at the scale below."""
    t_values, lp, ps = _grid_means(t_values, lpips_mean, psnr_mean)
    floor = np.asarray(psnr_floor, np.float64).reshape(-1)
    if len(floor) != lp.shape[0] or not np.all(np.isfinite(floor)):
        raise ValueError(f"psnr_floor needs one finite value per scale ({lp.shape[0]}), got {psnr_floor}")
    if not 0.0 <= slack < np.inf:
        raise ValueError(f"the floor's slack must be a finite number of dB >= 0, got {slack}")
    if scales is not None and len(scales) != lp.shape[0]:
        raise ValueError(f"scales needs one value per row ({lp.shape[0]}), got {scales}")
    order = range(lp.shape[0]) if scales is None else np.argsort(np.asarray(scales, np.float64), kind="stable")
    lp_r = np.round(lp, decimals)
    out, lowest = [0] * lp.shape[0], t_values[0]   # without scales, `lowest` stays the whole grid
    for i in order:
        allowed = t_values >= lowest
        ok = allowed & (ps[i] >= floor[i] - slack)
        if ok.any():
            j = int(np.argmin(np.where(ok, lp_r[i], np.inf)))
        else:
            j = int(np.argmax(np.where(allowed, ps[i], -np.inf)))
        out[i] = int(t_values[j])
        if scales is not None:
            lowest = t_values[j]
    return out


def reference_floor(reference: dict, scales: Sequence[float]) -> list[float]:
    """Per scale in ``scales``, the mean PSNR that an empirical calibration table ``reference`` (one
    mode of a prf.json) ships: its stored mean PSNR at its shipped t. The floor of the
    ``psnr-floor`` pick; it means something only when both tables were measured on the same crops
    (calibrate.py checks the protocol)."""
    if reference.get("rule") != "empirical-lpips" or "metrics" not in reference:
        raise ValueError("the reference must be an empirical-lpips table with stored metrics")
    ref_scales = [float(s) for s in reference["scales"]]
    missing = [s for s in scales if float(s) not in ref_scales]
    if missing:
        raise ValueError(f"the reference table has no scale {missing} (it has {ref_scales})")
    out = []
    for s in scales:
        i = ref_scales.index(float(s))
        out.append(float(reference["metrics"]["psnr"][i][list(reference["metrics_t"]).index(reference["t"][i])]))
    return out


def picked_steps(t_best: Sequence[int], t_tied: Sequence[Sequence[int]], pick: str, *,
                 t_values=None, lpips_mean=None, psnr_mean=None,
                 psnr_weight: float = DEFAULT_PSNR_WEIGHT, psnr_floor: Optional[Sequence[float]] = None,
                 psnr_floor_slack: float = DEFAULT_PSNR_FLOOR_SLACK,
                 scales: Optional[Sequence[float]] = None) -> list[int]:
    """Per scale, the step that ships (see :data:`PICKS`): the argmin; the smallest step tied with
    it — one standard error is the resolution of the measurement, and within it less noise keeps
    more of the input; (``lpips-psnr``, which needs the grid ``t_values`` and the (S, Tn) means)
    the best LPIPS-for-PSNR trade at ``psnr_weight``; or (``psnr-floor``, which needs them and
    ``psnr_floor``) the best LPIPS that keeps the floor's PSNR, to within ``psnr_floor_slack`` dB;
    with ``scales``, never less noise at a larger scale (psnr-floor only; see :func:`floor_steps`)."""
    if pick not in PICKS:
        raise ValueError(f"pick must be one of {', '.join(PICKS)}")
    if scales is not None and pick != "psnr-floor":
        raise ValueError(f"the monotone-in-scale constraint is part of the psnr-floor pick, not {pick!r}")
    if pick == "argmin":
        return [int(t) for t in t_best]
    if pick == "one-se":
        return [int(min(tied)) for tied in t_tied]
    if t_values is None or lpips_mean is None or psnr_mean is None:
        raise ValueError(f"pick {pick!r} needs t_values, lpips_mean and psnr_mean")
    if pick == "psnr-floor":
        if psnr_floor is None:
            raise ValueError("pick 'psnr-floor' needs psnr_floor (see reference_floor)")
        return floor_steps(t_values, lpips_mean, psnr_mean, psnr_floor, slack=psnr_floor_slack, scales=scales)
    return weighted_steps(t_values, lpips_mean, psnr_mean, psnr_weight)


def _apply_pick(table: dict, pick: str, psnr_weight: float, psnr_floor: Optional[Sequence[float]] = None,
                psnr_floor_slack: Optional[float] = None, monotone: Optional[bool] = None) -> dict:
    """Sets the shipped steps of an empirical table (its t_best, t_tied, metrics, metrics_t and prf
    are the measurements) from ``pick``; returns the table. ``psnr-floor`` without ``psnr_floor``
    re-uses the floor the table stores; without ``psnr_floor_slack``, the slack it stores (0 when it
    stores none); without ``monotone``, whether the table stores "monotone_in_scale" (false when
    absent; other picks ignore it)."""
    m = table["metrics"]
    floor_from = None
    if pick == "psnr-floor" and psnr_floor is None:   # the stored floor, and where it came from
        psnr_floor, floor_from = table.get("psnr_floor"), table.get("psnr_floor_from")
    if psnr_floor_slack is None:
        psnr_floor_slack = float(table.get("psnr_floor_slack", 0.0))
    if monotone is None:
        monotone = pick == "psnr-floor" and bool(table.get("monotone_in_scale", False))
    shipped = picked_steps(table["t_best"], table["t_tied"], pick, t_values=table["metrics_t"],
                           lpips_mean=m["lpips"], psnr_mean=m["psnr"], psnr_weight=psnr_weight,
                           psnr_floor=psnr_floor, psnr_floor_slack=psnr_floor_slack,
                           scales=table["scales"] if monotone else None)
    table["pick"], table["pick_text"] = pick, PICKS[pick]
    for key in ("psnr_weight", "psnr_floor", "psnr_floor_slack", "psnr_floor_from",
                "monotone_in_scale"):  # what the last pick kept
        table.pop(key, None)
    if pick == "lpips-psnr":
        table["psnr_weight"] = float(psnr_weight)
    elif pick == "psnr-floor":
        table["psnr_floor"] = [round(float(f), 5) for f in psnr_floor]
        table["psnr_floor_slack"] = float(psnr_floor_slack)
        if floor_from is not None:
            table["psnr_floor_from"] = floor_from
        if monotone:
            table["monotone_in_scale"] = True
    table["t"] = shipped
    table["noise_fraction"] = [t / table["T"] for t in shipped]
    return table


def repick(table: dict, pick: str, psnr_weight: float = DEFAULT_PSNR_WEIGHT,
           reference: Optional[dict] = None, psnr_floor_slack: Optional[float] = None,
           monotone: Optional[bool] = None) -> dict:
    """A copy of a calibration table (what calibrate.py writes; both modes) whose shipped steps
    follow ``pick``, re-derived from the measurements it stores: no sweep is run. A mode of the
    analytic rule carries no sweep and is left as it is; a table with no empirical mode is refused.
    ``psnr-floor`` takes each mode's floor from the same mode of ``reference`` (a prf.json), or,
    without one, from the floor the table stores; ``psnr_floor_slack`` (dB) defaults to the slack
    each mode stores (0 where it stores none); ``monotone``
    (psnr-floor: never less noise at a larger scale) defaults to what each mode stores."""
    out = copy.deepcopy(table)
    modes = [(None, out), *out.get("modes", {}).items()]
    empirical = [(name, t) for name, t in modes if t.get("rule") == "empirical-lpips" and "metrics" in t]
    if not empirical:
        raise ValueError("no empirical-lpips table with stored metrics to re-pick (the analytic rule "
                         "stores no sweep)")
    for name, t in empirical:
        floor = None
        if pick == "psnr-floor" and reference is not None:
            ref = reference if name is None else reference.get("modes", {}).get(name)
            if ref is None:
                raise ValueError(f"the reference has no {name!r} mode")
            floor = reference_floor(ref, t["scales"])
        elif pick == "psnr-floor" and "psnr_floor" not in t:
            raise ValueError("pick 'psnr-floor' needs a reference table (the table stores no floor)")
        _apply_pick(t, pick, psnr_weight, floor, psnr_floor_slack, monotone)
    return out


def _jsonable_intervals(intervals):
    return None if intervals is None else [[int(a), int(b)] for a, b in intervals]


def calibrate(model, params, schedule: Schedule, hr_images, scales: Sequence[float], *, rule: str,
              t_fractions: Sequence[float], num_steps: int, seed: int = 0, omega: float = OMEGA,
              variance: str = "ddpm", chunk: int = 16, sweep_options: Optional[dict] = None,
              tolerance: float = 0.0, degradation: str = "jax", pick: str = "lpips-psnr",
              psnr_weight: float = DEFAULT_PSNR_WEIGHT, psnr_floor: Optional[Sequence[float]] = None,
              psnr_floor_slack: float = DEFAULT_PSNR_FLOOR_SLACK, monotone_in_scale: bool = False,
              sampler: str = "ddim", mesh=None):
    """→ (table, AnalyticResult, SweepResult or None). The table holds what ``api`` reads ("scales",
    "noise_fraction" = t*/T) plus "t", "prf" (inclusive step intervals per scale, null when empty),
    the rule and the analytic curves' summary (always computed: it costs ~T/25 forward passes).
    ``sweep_options`` (consistency, lift, guide_iters, colour_fix) calibrate that inference mode;
    the analytic rule knows nothing of them, so they need an empirical rule. ``tolerance``: see
    :func:`diffsr_jax.sweep.empirical_fields` (empirical rule only; stored in the table when
    non-zero). ``degradation``: how the LR inputs are made from the HR crops (see
    :func:`diffsr_jax.protocols.downscale`).
    ``pick`` (empirical rule): which measured step ships as "t" — see :data:`PICKS`; the argmin (or,
    with ``tolerance``, its pick) is kept as "t_best" and the steps tied with it as "t_tied";
    ``psnr_weight`` is the exchange rate of the ``lpips-psnr`` pick, ``psnr_floor`` (per scale) the
    floor of the ``psnr-floor`` pick (see :func:`reference_floor`) and ``psnr_floor_slack`` how far
    below it (dB) a step still keeps it; ``monotone_in_scale`` (psnr-floor only) ships no less noise
    at a larger scale than at a smaller one (see :func:`floor_steps`). ``sampler``: the reverse
    sampler the sweep runs (a name of diffsr_jax.samplers.SAMPLERS), as inference will. ``mesh``: a
    device mesh (:func:`diffsr_jax.sharding.make_mesh`) to split the sweep's grid over (the same
    table up to float rounding); None = one device."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}")
    if pick not in PICKS:
        raise ValueError(f"pick must be one of {', '.join(PICKS)}")
    if pick == "psnr-floor" and (psnr_floor is None or len(psnr_floor) != len(scales)):
        raise ValueError("pick 'psnr-floor' needs psnr_floor, one value per scale")
    if pick != "argmin" and tolerance:
        raise ValueError("tolerance already replaces the argmin; use it with pick='argmin'")
    sweep_options = dict(sweep_options or {})
    if sweep_options and rule == "analytic":
        raise ValueError("the analytic PRF does not model consistency or colour fixes; use an empirical rule")
    T = schedule.num_steps
    k_analytic, k_sweep = jax.random.split(jax.random.key(seed))
    ana = analytic_table(model, params, schedule, hr_images, scales, k_analytic, variance=variance, omega=omega,
                         degradation=degradation)
    analytic = {"variance": variance, "omega": omega, "c_s": ana.fields[0].c_s, "c_f": ana.fields[0].c_f,
                "E_t": ana.t_values.tolist(), "E": [round(float(e), 6) for e in ana.E],
                "per_scale": [{"scale": s, "mse": float(m), "t_star": f.t_star,
                               "prf": _jsonable_intervals(f.intervals)}
                              for s, m, f in zip(ana.scales, ana.mse, ana.fields)]}
    table = {"scales": [float(s) for s in scales], "T": T, "rule": rule, "rule_text": RULES[rule],
             "analytic": analytic}
    sw = None
    if rule == "analytic":
        chosen = [(f.t_star, _jsonable_intervals(f.intervals)) for f in ana.fields]
    else:
        ts = sorted({int(round(f * T)) for f in t_fractions})
        sw = sweep_mod.sweep(model, params, schedule, hr_images, scales, ts, k_sweep, num_steps,
                             lpips=sweep_mod.make_lpips(), chunk=chunk, degradation=degradation, sampler=sampler,
                             mesh=mesh, **sweep_options)
        if sweep_options:
            table["options"] = sweep_options
        fields = sweep_mod.empirical_fields(sw, tolerance=tolerance)
        if tolerance:
            table["tolerance"] = float(tolerance)
        table["t_best"] = [f["t_star"] for f in fields]
        table["t_tied"] = sweep_mod.tied_with_best(sw, table["t_best"])
        table["metrics"] = {name: [[round(float(v), 5) for v in row] for row in sw.mean(name)]
                            for name in sweep_mod.METRICS}
        table["metrics_t"] = [int(t) for t in sw.t]
        # The pick reads the stored (rounded) means, so `repick` of this table reproduces it.
        shipped = _apply_pick(table, pick, psnr_weight, psnr_floor, psnr_floor_slack, monotone_in_scale)["t"]
        chosen = [(t, _jsonable_intervals(f["prf"])) for f, t in zip(fields, shipped)]
    table["t"] = [t for t, _ in chosen]
    table["noise_fraction"] = [t / T for t, _ in chosen]
    table["prf"] = [p for _, p in chosen]
    return table, ana, sw


# ---------------------------------------------------------------------------------------------
# The noise axis of a table: t per scale for noisy inputs


def noise_axis(model, params, schedule: Schedule, hr_images, scales: Sequence[float], levels_255: Sequence[float],
               base_t: Sequence[int], *, t_values: Sequence[int], num_steps: int, sampler: str = "ddim",
               consistency: float = 1.0, lift: str = "pinv", degradation: str = "pil", seed: int = 0,
               chunk: int = 16, mesh=None) -> dict:
    """The table entries of a noise axis (:mod:`diffsr_jax.noise_table` format 2) for one mode.

    Per noise level σ (8-bit units, increasing), the calibration crops' LR images get seeded
    Gaussian noise of that σ (8-bit, as a noisy file) and the mode is swept over ``t_values`` with
    its consistency weighed for that σ (as inference weighs a noisy input). Per scale the step is
    picked among the grid steps no smaller than the step of the previous level (``base_t`` for
    σ = 0) and of the smaller scales (more noise, or a larger scale, never gets less noise): the
    lowest mean LPIPS among those whose mean PSNR is at least the smallest allowed step's, less
    ``DEFAULT_PSNR_FLOOR_SLACK`` — more noise must buy perceptual quality without costing
    fidelity. Returns {"noise_levels_255", "noise_fraction_by_level", "noise_axis": how it was
    measured, with the mean PSNR/LPIPS per level, scale and t}."""
    T = schedule.num_steps
    ts = np.asarray(sorted({int(t) for t in t_values}), np.int64)
    order = np.argsort(np.asarray(scales, np.float64), kind="stable")
    lowest = np.asarray(base_t, np.int64)
    rows, measured = [], []
    for i, level in enumerate(levels_255):
        sw = sweep_mod.sweep(model, params, schedule, hr_images, scales, ts, jax.random.key(seed), num_steps,
                             lpips=sweep_mod.make_lpips(), chunk=chunk, degradation=degradation, sampler=sampler,
                             consistency=consistency, lift=lift, lr_noise=float(level) / 255.0,
                             noise_seed=seed + 1000 * (i + 1), mesh=mesh)
        lp, ps = np.round(sw.mean("lpips"), 5), np.round(sw.mean("psnr"), 5)
        picked, floor = np.zeros(len(scales), np.int64), ts[0]
        for j in order:
            allowed = ts >= max(lowest[j], floor)
            if not allowed.any():
                allowed = ts == ts[-1]
            first = int(np.flatnonzero(allowed)[0])
            keeps = allowed & (ps[j] >= ps[j][first] - DEFAULT_PSNR_FLOOR_SLACK)
            picked[j] = ts[int(np.argmin(np.where(keeps, np.round(lp[j], 4), np.inf)))]
            floor = picked[j]
        lowest = picked
        rows.append([int(t) / T for t in picked])
        measured.append({"psnr": ps.tolist(), "lpips": lp.tolist(), "t": picked.tolist()})
    return {"noise_levels_255": [float(v) for v in levels_255], "noise_fraction_by_level": rows,
            "noise_axis": {"pick": "psnr-floor at the smallest allowed step",
                           "psnr_floor_slack": DEFAULT_PSNR_FLOOR_SLACK, "metrics_t": ts.tolist(),
                           "levels": measured}}
