"""The model-quality yardstick: how well does the ε-predictor denoise, next to a tuned classical filter?

    python benchmarks/denoise_quality.py                                # CSet14, bundled model
    python benchmarks/denoise_quality.py --checkpoint runs/cpu/export --ts 100 300 --limit 4
    python benchmarks/denoise_quality.py --self-ensemble 8 --skip-sr     # ε averaged over 8 flips/rotations

On 256² evaluation crops of an evaluation set (centre crop → 256², as in the SR protocol; default
CSet14, never used for training), for each noise step t:

- x_t = q_sample(hr, t, ε), ε ~ N(0, I) drawn once per image from --seed (the same ε at every t);
- one-step prediction x̂0 = (x_t − √(1−ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t, clipped to [−1, 1] → PSNR, LPIPS vs hr;
- the noisy input rescaled, y = x_t / √ᾱ_t = hr + σ ε with σ = √(1−ᾱ_t)/√ᾱ_t in [−1, 1] units
  (σ · 127.5 in 0..255 units; σ/2 in [0, 1] units), clipped to the image range → PSNR, LPIPS;
- a classical denoiser on y: a Gaussian filter (and, when scikit-image is importable, TV-Chambolle and
  BayesShrink wavelets) whose parameter is chosen per t by grid search for the best mean PSNR *on
  the same images*: an oracle-tuned baseline, i.e. an upper bound for that filter family.

Plus Diff-SR at --sr-scale (default 4×) with the auto noise level vs Lanczos on the same images
(paper protocol). PSNR is RGB, data range 1, in [0, 1] units; LPIPS is AlexNet. Prints a Markdown
table and appends one JSON line to --out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

import common
from diffsr_jax.defaults import SELF_ENSEMBLE_SIZES

GAUSS_SIGMAS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0, 1.2, 1.4, 1.7, 2.0, 2.4, 2.8, 3.3, 4.0, 5.0, 6.0)
TV_WEIGHT_MULTS = (0.1, 0.2, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0)  # × the noise std in [0, 1] units


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="One-step x0 denoising PSNR/LPIPS of the Diff-SR ε-model at several noise steps, next "
                    "to the noisy input and an oracle-tuned classical denoiser; plus Diff-SR vs Lanczos.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default=None,
                   help="exported model folder; None = the bundled diffsr_jax/assets/default_model")
    p.add_argument("--dataset", default="CSet14", help="name under ../shared/data or a folder of PNGs")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images; None = all")
    p.add_argument("--ts", nargs="+", type=int, default=[50, 100, 200, 300, 400, 600],
                   help="noise steps t in [1, T] (steps above the checkpoint's T are skipped)")
    p.add_argument("--seed", type=int, default=0, help="seed of the injected noise ε and of Diff-SR")
    p.add_argument("--sr-scale", type=float, default=4.0, help="scale of the Diff-SR vs Lanczos check")
    p.add_argument("--steps", type=int, default=None,
                   help="Diff-SR DDIM steps; None = the checkpoint's calibrated count (api.default_steps)")
    p.add_argument("--skip-sr", action="store_true", help="leave out the Diff-SR vs Lanczos check")
    p.add_argument("--self-ensemble", type=int, choices=SELF_ENSEMBLE_SIZES, default=1,
                   help="average ε over this many flips/rotations (diffsr_jax.ensemble), in x̂0 and Diff-SR")
    p.add_argument("--out", default=os.path.join("benchmarks", "results", "denoise_quality.jsonl"),
                   help="JSON-lines file the results are appended to")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# classical denoisers: name → (fn(y01, param, noise_std01) -> image, params to search)


def gaussian(y01, sigma_blur, _std):
    return y01 if sigma_blur == 0 else ndimage.gaussian_filter(y01, sigma=(sigma_blur, sigma_blur, 0), mode="reflect")


def denoiser_families():
    fams = {"gaussian": (gaussian, lambda std: GAUSS_SIGMAS)}
    try:
        from skimage.restoration import denoise_tv_chambolle, denoise_wavelet
    except ImportError:
        return fams
    fams["tv_chambolle"] = (lambda y, w, std: denoise_tv_chambolle(y, weight=w, channel_axis=-1),
                            lambda std: tuple(round(m * std, 5) for m in TV_WEIGHT_MULTS))
    try:
        import pywt  # noqa: F401  (denoise_wavelet needs PyWavelets)
    except ImportError:
        return fams
    fams["wavelet_bayes"] = (lambda y, _, std: denoise_wavelet(y, sigma=std, channel_axis=-1, convert2ycbcr=True,
                                                               method="BayesShrink", mode="soft", rescale_sigma=True),
                             lambda std: (0,))
    return fams


def best_classical(noisy01, hrs, std01, families):
    """Grid search over every family/parameter for the best mean PSNR on these images (oracle)."""
    best = None
    for name, (fn, grid) in families.items():
        for param in grid(std01):
            score = float(np.mean([common.psnr(np.clip(fn(y, param, std01), 0, 1), hr) for y, hr in zip(noisy01, hrs)]))
            if best is None or score > best[2]:
                best = (name, param, score)
    name, param, score = best
    outs = [np.clip(families[name][0](y, param, std01), 0, 1) for y in noisy01]
    return name, param, outs


# ---------------------------------------------------------------------------------------------


def denoise_rows(model, hrs, ts, seed, lpips, self_ensemble=1):
    import jax
    import jax.numpy as jnp

    from diffsr_jax import pipeline
    from diffsr_jax.schedules import q_sample

    eps_fn = jax.jit(lambda params, x, t: pipeline.make_eps_fn(model.model, params, self_ensemble)(x, t))
    sched = model.schedule
    families = denoiser_families()
    noises = [jax.random.normal(jax.random.fold_in(jax.random.key(seed), i), (1, *hr.shape), jnp.float32)
              for i, hr in enumerate(hrs)]
    rows = []
    bar = tqdm(total=len(ts) * len(hrs) * 2, unit="img", desc="denoise")
    for t in ts:
        a = float(sched.sqrt_alphas_cumprod[t])
        b = float(sched.sqrt_one_minus_alphas_cumprod[t])
        sigma = b / a
        tt = jnp.full((1,), t, jnp.int32)
        x0s, noisy = [], []
        bar.set_postfix_str(f"t={t} model")
        for hr, eps in zip(hrs, noises):
            x_t = q_sample(sched, jnp.asarray(hr[None] * 2.0 - 1.0), tt, eps)
            eps_hat = eps_fn(model.params, x_t, tt)
            x0 = np.clip(np.asarray((x_t - b * eps_hat) / a)[0], -1.0, 1.0)
            x0s.append((x0 + 1.0) / 2.0)
            noisy.append((np.asarray(x_t)[0] / a + 1.0) / 2.0)  # y = hr + σε, unclipped, [0, 1] units
            bar.update(1)
        bar.set_postfix_str(f"t={t} baseline search")
        name, param, den = best_classical(noisy, hrs, sigma / 2.0, families)
        bar.update(len(hrs))
        noisy_c = [np.clip(y, 0.0, 1.0) for y in noisy]
        mean = lambda f, xs: float(np.mean([f(x, hr) for x, hr in zip(xs, hrs)]))
        rows.append({"t": t, "t_over_T": t / model.num_timesteps, "sigma": sigma, "sigma_255": sigma * 127.5,
                     "noisy_psnr": mean(common.psnr, noisy_c), "noisy_lpips": mean(lpips, noisy_c),
                     "baseline": name, "baseline_param": param,
                     "baseline_psnr": mean(common.psnr, den), "baseline_lpips": mean(lpips, den),
                     "x0_psnr": mean(common.psnr, x0s), "x0_lpips": mean(lpips, x0s)})
    bar.close()
    return rows


def sr_rows(model, images, scale, steps, seed, lpips, self_ensemble=1):
    from diffsr_jax import api

    res = {"diffsr": {"psnr": [], "lpips": []}, "lanczos": {"psnr": [], "lpips": []}}
    ts, used_steps = set(), set()
    for _, rgb in tqdm(images, unit="img", desc=f"diffsr {scale:g}×"):
        hr, lr = common.paper_protocol(rgb, scale)
        out, info = api.upscale_array(lr, hr.shape[:2], model=model, noise=("auto", None), steps=steps, seed=seed, tile=0,
                                      self_ensemble=self_ensemble)
        ts.add(info["t"])
        used_steps.add(info["steps"])
        for name, img in (("diffsr", out), ("lanczos", common.lanczos(lr, hr.shape[:2]))):
            res[name]["psnr"].append(common.psnr(img, hr))
            res[name]["lpips"].append(lpips(img, hr))
    summary = {k: {m: float(np.mean(v)) for m, v in d.items()} for k, d in res.items()}
    return {"scale": scale, "lr_size": common.lr_size(scale), "t": sorted(ts), "steps": sorted(used_steps),
            **summary}


def markdown(result):
    r = result
    lines = ["# Diff-SR ε-model denoising yardstick", "",
             f"- date: {r['date']}", f"- checkpoint: {r['checkpoint']} (training step {r['step']})",
             f"- command: `{r['command']}`",
             f"- self-ensemble: {r.get('self_ensemble', 1)} (ε averaged over that many flips/rotations)",
             f"- {r['dataset']}: {r['n_images']} images, 256² centre crops; seed {r['seed']}; T = {r['T']} "
             f"({r['schedule']})",
             "- σ = √(1−ᾱ_t)/√ᾱ_t in [−1, 1] units (σ₂₅₅ = 127.5 σ); PSNR in dB on RGB; LPIPS AlexNet",
             "- baseline: classical denoiser tuned per t by grid search on these same images (oracle)", "",
             "| t | t/T | σ | σ₂₅₅ | noisy PSNR | noisy LPIPS | baseline (param) | baseline PSNR | baseline LPIPS "
             "| x̂0 PSNR | x̂0 LPIPS | x̂0 − baseline dB |",
             "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for x in r["rows"]:
        lines.append(f"| {x['t']} | {x['t_over_T']:.3f} | {x['sigma']:.4f} | {x['sigma_255']:.1f} | "
                     f"{x['noisy_psnr']:.2f} | {x['noisy_lpips']:.4f} | {x['baseline']} ({x['baseline_param']:g}) | "
                     f"{x['baseline_psnr']:.2f} | {x['baseline_lpips']:.4f} | {x['x0_psnr']:.2f} | "
                     f"{x['x0_lpips']:.4f} | {x['x0_psnr'] - x['baseline_psnr']:+.2f} |")
    if r.get("sr"):
        s = r["sr"]
        lines += ["", f"Diff-SR {s['scale']:g}× (LR {s['lr_size']}² → 256², auto t = {s['t']}, {'/'.join(map(str, s['steps']))} DDIM steps):",
                  "", "| method | PSNR | LPIPS |", "|---|---:|---:|"]
        lines += [f"| {m} | {s[m]['psnr']:.2f} | {s[m]['lpips']:.4f} |" for m in ("lanczos", "diffsr")]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    from diffsr_jax import api, checkpointing

    try:
        model = api.load_model(args.checkpoint)
    except checkpointing.CheckpointError as e:
        sys.exit(f"error: {e}\n(pass --checkpoint DIR)")
    T = model.num_timesteps
    ts = [t for t in args.ts if 1 <= t <= T]
    if len(ts) < len(args.ts):
        print(f"note: skipping steps outside [1, {T}]: {sorted(set(args.ts) - set(ts))}", file=sys.stderr)
    images = common.load_eval_set(args.dataset, args.limit)
    hrs = [common.eval_crop(rgb) for _, rgb in images]
    lpips = common.Lpips()
    result = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "checkpoint": model.directory, "step": model.meta.get("step"),
              "command": f"python {shlex.join(sys.argv)}", "dataset": args.dataset, "n_images": len(hrs),
              "seed": args.seed, "self_ensemble": args.self_ensemble, "T": T, "schedule": model.meta.get("schedule", {}).get("name"),
              "baseline_families": list(denoiser_families()),
              "rows": denoise_rows(model, hrs, ts, args.seed, lpips, args.self_ensemble) if ts else []}
    if not args.skip_sr:
        result["sr"] = sr_rows(model, images, args.sr_scale, args.steps, args.seed, lpips, args.self_ensemble)
    print(markdown(result))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(result) + "\n")
    print(f"appended to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
