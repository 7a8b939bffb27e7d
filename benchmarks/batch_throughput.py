"""Batch-job throughput of the CLI: one image at a time vs batched vs two sharded processes.

    python benchmarks/batch_throughput.py              # → benchmarks/results/batch_throughput.txt
    python benchmarks/batch_throughput.py --quick      # 16 small inputs, 4 large ones
    python benchmarks/batch_throughput.py --large 4    # 64 small, 4 large

Inputs are generated from the bundled example photos (random crops, resized): N_SMALL of 64² to
256² (4×, whole images: batched across images) and N_LARGE of 480×270 to 1080p (4×, tiled: tiles
are batched already, so only decoding/encoding overlap). Each configuration is one `infer.py`
command over the whole folder, timed as a process (imports and compilation included, with an
empty compilation cache each time), in this order:

- one at a time: ``--batch-images 1``;
- batched: ``--batch-images 16`` (images of one output size in one compiled call);
- two processes × 1 CPU device: ``--shard 0/2`` and ``--shard 1/2`` at once, ``--cpu-devices 1``
  each, batched.

Images/s and ratios come from this one run; the machine's load at the start is printed with them
(pause other work for meaningful ratios).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import common  # noqa: E402


def make_inputs(folder: str, n: int, size: tuple[int, int], seed: int) -> None:
    """n images of size (w, h): random crops of the bundled examples, resized (Lanczos)."""
    os.makedirs(folder, exist_ok=True)
    photos = [Image.open(os.path.join(REPO, "examples", f)).convert("RGB")
              for f in ("bsd_108005_small.png", "sun_small.png")]
    rng = np.random.default_rng(seed)
    for i in range(n):
        im = photos[i % 2]
        w, h = im.size
        cw, ch = int(rng.integers(w // 2, w)), int(rng.integers(h // 2, h))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        im.crop((x, y, x + cw, y + ch)).resize(size, Image.LANCZOS).save(os.path.join(folder, f"{i:03d}.png"))


def run(cmds: list[list[str]]) -> float:
    """Wall seconds of the commands run at once (each with a fresh, empty compilation cache)."""
    t0 = time.perf_counter()
    procs = []
    for cmd in cmds:
        env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=tempfile.mkdtemp(prefix="bench-jax-cache-"))
        procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True))
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise RuntimeError(f"{' '.join(p.args)} failed:\n{err[-2000:]}")
    return time.perf_counter() - t0


def case(name: str, folder: str, target: str, n: int, work: str) -> list[str]:
    base = [sys.executable, os.path.join(REPO, "infer.py"), folder, "--target", target, "-q"]
    out = lambda tag: ["-o", os.path.join(work, f"{name}_{tag}")]
    one = run([base + out("one") + ["--batch-images", "1"]])
    batched = run([base + out("batched") + ["--batch-images", "16"]])
    sharded = run([base + out("sharded") + ["--batch-images", "16", "--cpu-devices", "1", "--shard", f"{k}/2"]
                   for k in (0, 1)])
    rate = lambda s: n / s
    return [f"## {name}: {n} inputs, {target}", "",
            "| configuration | wall s | images/s | vs one at a time |", "|---|---:|---:|---:|",
            f"| one at a time (--batch-images 1) | {one:.1f} | {rate(one):.3f} | 1.00x |",
            f"| batched (--batch-images 16) | {batched:.1f} | {rate(batched):.3f} | {one / batched:.2f}x |",
            f"| 2 processes x 1 CPU device (--shard, batched) | {sharded:.1f} | {rate(sharded):.3f} | "
            f"{one / sharded:.2f}x |", ""]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="16 small and 4 large inputs")
    ap.add_argument("--small", type=int, default=None, help="number of 64² inputs (default 64; --quick 16)")
    ap.add_argument("--large", type=int, default=None, help="number of 270p inputs (default 16; --quick 4)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "batch_throughput.txt"))
    args = ap.parse_args()
    n_small, n_large = (16, 4) if args.quick else (64, 16)
    n_small, n_large = args.small or n_small, args.large or n_large
    lines = [f"# CLI batch throughput ({os.cpu_count()} cpus; {common.machine_load_text()})", ""]
    with tempfile.TemporaryDirectory() as work:
        small, large = os.path.join(work, "small"), os.path.join(work, "large")
        make_inputs(small, n_small, (64, 64), seed=0)
        make_inputs(large, n_large, (480, 270), seed=1)
        lines += case("64² → 256²", small, "4x", n_small, work)
        lines += case("270p → 1080p", large, "1080p", n_large, work)
    common.write_report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
