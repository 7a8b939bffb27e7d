"""Where the CPU config's train step goes: its convolutions vs GroupNorm and SiLU.

    python benchmarks/step_breakdown.py              # 32 x 64² crops, 7 interleaved rounds
    python benchmarks/step_breakdown.py --rounds 3

Times the shipped config's train step (configs/cpu.py, XLA's conv weight gradients) next to two
ablated programs that are *not* the model: every GroupNorm replaced by the identity, then every
SiLU too. What is left in the last one is almost only convolutions, dense layers and the optimizer,
so its rate is what the convolutions of this narrow UNet (32-128 channels on <= 32² maps) reach on
this CPU: the ceiling for the whole step unless the architecture changes. Rounds are interleaved
(this machine's speed drifts between minutes); times are medians. FLOPs are XLA's estimate of each
compiled program; the peak is measured as in unet_speed.py (or --peak-gflops).
"""

import argparse
import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn
import numpy as np

from configs import cpu
from unet_speed import make_train, measure_fma_peak


class _Identity(nn.Module):
    """Stands in for nn.GroupNorm (same constructor arguments, no parameters, no work)."""
    num_groups: int = 1
    dtype: object = None

    def __call__(self, x):
        return x


@contextlib.contextmanager
def _ablated(groupnorm: bool, silu: bool):
    # The UNet looks nn.GroupNorm / nn.silu up when it is traced, so swapping the attributes of
    # flax.linen for the duration of make_train (which traces and compiles) ablates them.
    saved = nn.GroupNorm, nn.silu
    try:
        if groupnorm:
            nn.GroupNorm = _Identity
        if silu:
            nn.silu = lambda x: x
        yield
    finally:
        nn.GroupNorm, nn.silu = saved


VARIANTS = (
    ("train step (the model)", False, False),
    ("  GroupNorm -> identity", True, False),
    ("  GroupNorm, SiLU -> identity", True, True),
)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--peak-gflops", type=float, default=None,
                    help="fp32 peak to divide by (default: measured with fma_peak.c)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    peak, how = (args.peak_gflops, "given by --peak-gflops") if args.peak_gflops else measure_fma_peak()
    if peak is None:
        ap.error(f"cannot measure the fp32 peak ({how}): pass --peak-gflops")
    print(f"cpu config train step, 32 x 64² crops, XLA weight gradients; fp32 peak {peak:.0f} GFLOP/s ({how})")
    cases = []
    for name, gn, silu in VARIANTS:
        with _ablated(gn, silu):
            flops, run_once = make_train(cpu.get_config(), 64, 32, "xla")
        cases.append((name, flops, run_once, []))
    for _ in range(args.rounds):
        for _, _, run_once, times in cases:
            times.append(run_once())
    full = float(np.median(cases[0][3]))
    print(f"{'program':32s} {'GFLOP':>7s} {'seconds':>8s} {'of step':>8s} {'GFLOP/s':>8s} {'of peak':>8s}")
    for name, flops, _, times in cases:
        sec, g = float(np.median(times)), flops / 1e9
        print(f"{name:32s} {g:7.1f} {sec:8.3f} {sec / full:8.1%} {g / sec:8.1f} {g / sec / peak:8.1%}")
    gn_share = 1 - float(np.median(cases[1][3])) / full
    silu_share = (float(np.median(cases[1][3])) - float(np.median(cases[2][3]))) / full
    print(f"GroupNorm (forward + backward): {gn_share:.0%} of the step; then SiLU: {silu_share:.0%}")


if __name__ == "__main__":
    main()
