"""The PRF sweep as one compiled call (traced t) vs a Python loop with t as a *static* argument.

    python benchmarks/prf_sweep.py            # → benchmarks/results/prf_sweep.txt

Baseline: the diffusers Flax img2img pattern, ``jax.jit(..., static_argnames=("t",))`` called once
per (scale, t) cell group: every distinct t is a new program, so the 8-value grid compiles 8 times
(the 4 scales share a shape, hence each t's program). The sweep (``diffsr_jax.sweep.sweep``) runs
the same 8 t × 4 scales × N images grid in one call, compiled once. Both do identical work per
cell (per-image keys, the same DDIM restore and metrics), so their outputs must agree; times
include compilation (the persistent compilation cache is switched off) and are measured in the
same process, one after the other.
"""

import argparse
import functools
import os
import platform
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax
import jax.numpy as jnp
import numpy as np

import common  # noqa: E402  (benchmarks/common.py)
from diffsr_jax import api, calibration, protocols, sweep


@functools.partial(jax.jit, static_argnames=("model", "t", "num_steps"))
def restore_static(model, params, schedule, x_up, hr, keys, *, t, num_steps):
    """One (scale, t) group with t baked into the program (what a static argument does)."""
    ts = jnp.full(x_up.shape[:1], t, jnp.int32)
    out = sweep.restore_cells(model, params, schedule, x_up, ts, keys, num_steps=num_steps)
    out01 = (jnp.clip(out, -1.0, 1.0) + 1.0) / 2.0
    return sweep.cell_metrics(out01, hr), out01


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=api.DEFAULT_CHECKPOINT)
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "CBSD68"))
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the plain table's calibrated count, api.default_steps)")
    ap.add_argument("--scales", type=float, nargs="+", default=[2, 2.7, 4, 8])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6])
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "prf_sweep.txt"))
    args = ap.parse_args()
    jax.config.update("jax_enable_compilation_cache", False)  # compile time is part of what we measure

    model = api.load_model(args.checkpoint)
    if args.steps is None:
        args.steps = api.default_steps(model)  # a plain sweep: the plain table's step count
    T = model.num_timesteps
    ts = [int(round(f * T)) for f in args.fractions]
    hr = jnp.asarray(calibration.load_crops(args.data, args.images, args.crop, seed=0))
    key = jax.random.key(0)
    lines = [f"grid: {len(ts)} t × {len(args.scales)} scales × {args.images} images of {args.crop}² "
             f"({len(ts) * len(args.scales) * args.images} cells), {args.steps} DDIM steps, "
             f"checkpoint step {model.meta.get('step')}",
             f"machine: {platform.machine()} {os.cpu_count()} cpus ({jax.devices()[0].platform}), "
             f"jax {jax.__version__}; {common.machine_load_text()}"]

    t0 = time.perf_counter()
    res = sweep.sweep(model.model, model.params, model.schedule, hr, args.scales, ts, key, args.steps,
                    chunk=args.chunk, return_images=True)
    one_call = time.perf_counter() - t0
    t0 = time.perf_counter()
    sweep.sweep(model.model, model.params, model.schedule, hr, args.scales, ts, key, args.steps, chunk=args.chunk)
    one_call_warm = time.perf_counter() - t0

    keys = jax.vmap(lambda n: sweep.cell_key(key, n))(jnp.arange(args.images))
    t0 = time.perf_counter()
    loop_psnr, loop_images = np.zeros(res.metrics["psnr"].shape), np.zeros(res.images.shape, np.float32)
    for i, s in enumerate(args.scales):
        x_up = protocols.degrade(hr, s)
        for j, t in enumerate(ts):
            m, out = restore_static(model.model, model.params, model.schedule, x_up, hr, keys, t=t,
                                    num_steps=args.steps)
            loop_psnr[i, j], loop_images[i, j] = np.asarray(m["psnr"]), np.asarray(out)
    loop = time.perf_counter() - t0

    diff = float(np.abs(loop_images - res.images).max())
    lines += [f"one call, traced t (compile included): {one_call:7.1f} s   (same call again, compiled: "
              f"{one_call_warm:.1f} s)",
              f"Python loop, static t (compile included): {loop:7.1f} s   ({len(ts)} compilations)",
              f"ratio loop / one call: {loop / one_call:.2f}x",
              f"agreement: max |image difference| {diff:.2e}, max |PSNR difference| "
              f"{np.abs(loop_psnr - res.metrics['psnr']).max():.2e} dB",
              "mean PSNR (dB) per scale × t: " + " | ".join(
                  f"{s:g}x: " + " ".join(f"{v:.1f}" for v in row) for s, row in zip(args.scales, res.mean("psnr")))]
    common.write_report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
