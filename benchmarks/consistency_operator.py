"""What data consistency costs: the operator alone, a long strip, and a 4K output.

    python benchmarks/consistency_operator.py            # → benchmarks/results/consistency_operator.txt
    python benchmarks/consistency_operator.py --no-4k    # skip the 4K upscale (the slow part)

1. Per axis (HR n → LR n/2 and n/4, pinv lift): seconds to build the banded projector, its band
   half-width K, and seconds to apply it along H of a (1, n, 256, 3) batch (jitted, warm, median
   of 3). Everything is O(n·K): compare the rows as n grows.
2. The 8×4000 strip at 2× (a 16×8000 output), the whole ``upscale_array`` with consistency on vs
   off, compile included (first call) and warm (second call): the cost of consistency must stay a
   small multiple of the plain run (the test target is at most 2×).
3. A 1920×1080 input to 3840×2160 (tiled), consistency on vs off, warm: consistency's share of
   the run.
All ratios are measured in this one run; the machine's load is printed with them.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402
from diffsr_jax import api, consistency  # noqa: E402


def timed(f, *a, reps=1):
    """(median seconds, result) of f(*a); JAX results are waited for."""
    times, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = f(*a)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def axis_rows(sizes) -> list[str]:
    lines = ["| n | scale | K | build s | apply s |", "|---:|---:|---:|---:|---:|"]
    apply = jax.jit(lambda d, x: consistency.apply_band(d, x, "h"))
    for n in sizes:
        for scale in (2, 4):
            build_s, op = timed(lambda: consistency.axis_operator(n, n // scale), reps=3)
            diags = jnp.asarray(op.diags, jnp.float32)
            x = jnp.asarray(np.random.default_rng(0).normal(size=(1, n, 256, 3)), jnp.float32)
            apply(diags, x).block_until_ready()
            apply_s, _ = timed(apply, diags, x, reps=3)
            lines.append(f"| {n} | {scale}× | {op.K} | {build_s:.3f} | {apply_s:.3f} |")
    return lines


def upscale_pair(model, img, out_hw, reps):
    """(seconds on, seconds off) of upscale_array with consistency on / off, each the median of
    ``reps`` calls after a first (compiling) call whose time is also returned."""
    out = {}
    for lam in (1.0, 0.0):
        first, _ = timed(lambda: api.upscale_array(img, out_hw, model=model, consistency=lam)[0])
        warm, _ = timed(lambda: api.upscale_array(img, out_hw, model=model, consistency=lam)[0], reps=reps)
        out[lam] = (first, warm)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-4k", action="store_true", help="skip the 4K upscale")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                  "consistency_operator.txt"))
    args = ap.parse_args()
    lines = [f"# consistency cost ({jax.devices()[0].platform}, {jax.device_count()} device(s); "
             f"{common.machine_load_text()})", "", "## Operator per axis (pinv lift)", ""]
    lines += axis_rows((256, 1024, 4096, 16000))
    model = api.load_model()
    rng = np.random.default_rng(0)

    strip = rng.uniform(size=(8, 4000, 3)).astype(np.float32)
    r = upscale_pair(model, strip, (16, 8000), reps=2)
    lines += ["", "## 8×4000 strip → 16×8000 (2×), whole upscale_array", "",
              f"consistency on:  first call {r[1.0][0]:.1f} s, warm {r[1.0][1]:.1f} s",
              f"consistency off: first call {r[0.0][0]:.1f} s, warm {r[0.0][1]:.1f} s",
              f"ratio on / off: first {r[1.0][0] / r[0.0][0]:.2f}x, warm {r[1.0][1] / r[0.0][1]:.2f}x"]
    if not args.no_4k:
        photo = np.clip(np.cumsum(rng.normal(0, 0.01, (1080, 1920, 3)), axis=1) % 1.0, 0, 1).astype(np.float32)
        r = upscale_pair(model, photo, (2160, 3840), reps=1)
        share = (r[1.0][1] - r[0.0][1]) / r[1.0][1]
        lines += ["", "## 1920×1080 → 3840×2160 (2×, tiled), whole upscale_array, warm", "",
                  f"consistency on {r[1.0][1]:.1f} s, off {r[0.0][1]:.1f} s: consistency's share {100 * share:.0f}%"]
    common.write_report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
