"""infer.py end to end with its tiles on one CPU device vs one device per core (``--cpu-devices``).

Each setting runs as its own fresh ``infer.py`` process (the device count is fixed when JAX starts),
first once to fill the compilation cache, then ``--repeats`` timed runs; the wall time is the whole
process (start-up, model load, tiles, writing). Prints the medians and the speed-up, and checks
that the outputs agree (at most 1/255 apart: float rounding).

    python benchmarks/infer_devices.py                         # the README's 1080p example
    python benchmarks/infer_devices.py --target 4k --devices 1 2 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_once(args, devices: str, out: str) -> float:
    cmd = [sys.executable, os.path.join(REPO, "infer.py"), args.image, "--target", args.target, "-o", out,
           "--overwrite", "-q", "--cpu-devices", devices, *args.extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"infer.py --cpu-devices {devices} failed:\n{r.stderr[-2000:]}")
    return dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=os.path.join(REPO, "examples", "bsd_108005_small.png"))
    ap.add_argument("--target", default="1080p")
    ap.add_argument("--devices", nargs="+", default=["1", "auto"], help="--cpu-devices settings to compare")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per setting (after one warm-up)")
    ap.add_argument("extra", nargs="*", help="more infer.py options, after --")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        rows, outputs = [], {}
        for devices in args.devices:
            out = os.path.join(tmp, f"out_{devices}.png")
            run_once(args, devices, out)  # fills the compilation cache
            times = [run_once(args, devices, out) for _ in range(args.repeats)]
            rows.append((devices, statistics.median(times)))
            outputs[devices] = np.asarray(Image.open(out), np.int16)
        first = outputs[args.devices[0]]
        print(f"infer.py {os.path.relpath(args.image, REPO)} --target {args.target} {' '.join(args.extra)} "
              f"(output {first.shape[1]}x{first.shape[0]}), {os.cpu_count()} cores; median of {args.repeats} "
              "warm-cache runs, whole process")
        print("| --cpu-devices | wall s | speed-up | max diff vs first (1/255) |")
        print("|---|---|---|---|")
        for devices, t in rows:
            diff = int(np.abs(outputs[devices] - first).max())
            print(f"| {devices} | {t:.1f} | {rows[0][1] / t:.2f}x | {diff} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
