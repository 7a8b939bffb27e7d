"""Is the input pipeline ever the bottleneck? Batches/s of the training sampler vs the train step.

    python benchmarks/data_speed.py [--config configs/cpu.py] [--batches 50]

Times ``CropSampler.batch`` (what the prefetch thread of ``data.BatchIterator`` runs: random
downscale, crop, flips/rot90 of the decoded training photos) on the main thread, so the number
is the pipeline's own throughput on one core. The train step's rate to compare it with is in
``results/unet_speed_cpu.txt``; the pipeline only stalls training if its batches/s is below the
steps/s, and it runs beside the step in a thread, so it also costs at most its share of a core.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from diffsr_jax import data, train_lib  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/cpu.py")
    ap.add_argument("--batches", type=int, default=50)
    args = ap.parse_args()
    c = train_lib.load_config_file(args.config)
    t0 = time.perf_counter()
    source = data.open_image_source(list(c.data.sources), os.path.expanduser(c.data.data_dir))
    images = data.load_all_images(source)
    t_load = time.perf_counter() - t0
    sampler = data.CropSampler(images, batch_size=int(c.train.batch_size), crop_size=int(c.data.crop_size),
                               seed=0, max_downscale=float(c.data.max_downscale), flip=bool(c.data.flip),
                               rot90=bool(c.data.rot90))
    sampler.batch(0)
    times = []
    for step in range(1, args.batches + 1):
        t0 = time.perf_counter()
        sampler.batch(step)
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    print(f"config {args.config}: {len(images)} training images decoded in {t_load:.1f} s (once per run)")
    print(f"batch {c.train.batch_size} x {c.data.crop_size}²: median {med * 1e3:.1f} ms per batch "
          f"= {1 / med:.1f} batches/s on one core")


if __name__ == "__main__":
    main()
