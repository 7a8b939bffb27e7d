"""The paper's ablations with one pre-trained model: Fig. 6 (scale × noise level), Fig. 7 (noise
schedules at 4×) and Fig. 8 (Appendix E, frequency domain).

All three restore grids with ``sweep.sweep``: one compiled call per grid, t traced per cell, common
random numbers across t and scale (each image's noise key is the same in every cell). The LR
inputs are made inside the sweep by ``protocols.degrade`` (JAX antialiased bicubic down to round(H/s),
bicubic back up), not by PIL as in Table 1: the two downscalers differ slightly, so absolute
numbers here are close to, not identical with, Table 1's.

Fig. 7 and what it can and cannot compare. The paper pre-trains one DGM per schedule. We have one
model, trained with the linear schedule, so a schedule S is emulated by re-mapping: the noise
level τ/T "under S" injects the noise of ᾱ_S(τ), which the linear model sees at its own step
t(τ) = argmin_t |ᾱ_lin(t) − ᾱ_S(τ)|; Diff-SR then runs from t(τ) with the model's own DDIM ladder.
So every curve is the *same* metric-vs-ᾱ curve, re-parametrised along the x-axis: the figure
shows which fraction of T each schedule needs for a given amount of noise, and how wide its
usable range is in those units. It cannot show differences in the learned denoiser (a model
trained under S sees a different distribution of noise levels) or in S's own sampling ladder.
squared_cosine has the same ᾱ as cosine (see schedules.py), so those two curves coincide.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffsr_jax import api, evaluation, metrics, pipeline, protocols, sweep
from diffsr_jax.schedules import SCHEDULE_NAMES, make_betas, q_sample

FIG6_SCALES = (1.6, 2.0, 2.7, 3.5, 4.5)
FIG6_FRACTIONS = (0.0, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8)  # fine at the low end: a weak model's t* is small
FIG7_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
FIG8_T_FRACTIONS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
SWEEP_METRICS = (("psnr", "PSNR-RGB (dB) ↑"), ("ssim", "SSIM-RGB ↑"), ("lpips", "LPIPS-Alex ↓"),
                 ("lf_err", "low-freq. error ↓"), ("hf_err", "high-freq. error ↓"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def alpha_bar(name: str, T: int) -> np.ndarray:
    """ᾱ_t, t = 0..T, in float64 (ᾱ_0 = 1)."""
    return np.concatenate([[1.0], np.cumprod(1.0 - make_betas(name, T))])


def remap_steps(model_abar: np.ndarray, target_abar: np.ndarray) -> np.ndarray:
    """For each target ᾱ, the model step whose ᾱ is nearest (ᾱ is monotone, so nearest in value)."""
    return np.abs(model_abar[None, :] - np.asarray(target_abar)[:, None]).argmin(axis=1).astype(np.int32)


def _steps(fractions: Sequence[float], T: int) -> np.ndarray:
    return np.asarray(sorted({int(round(f * T)) for f in fractions}), np.int32)


# ---------------------------------------------------------------------------------------------
# Fig. 6: scale sweep


def scale_sweep(model, hr_images: np.ndarray, key: jax.Array, *, scales=FIG6_SCALES, fractions=FIG6_FRACTIONS,
                num_steps: int = 10, lpips=None, chunk: int = 8) -> sweep.SweepResult:
    """Every (scale, t, image) restored and measured (see sweep.sweep)."""
    T = model.num_timesteps
    return sweep.sweep(model.model, model.params, model.schedule, hr_images, scales, _steps(fractions, T), key,
                     num_steps, lpips=lpips, chunk=chunk)


def plot_metric_curves(x: np.ndarray, curves: dict, path: str, title: str, xlabel: str = "noise level t/T",
                       marks: dict = None) -> None:
    """One panel per metric, one line per curve label: curves = {label: {metric: (len(x),) array}}."""
    plt = _plt()
    names = [(k, lab) for k, lab in SWEEP_METRICS if any(np.isfinite(c[k]).any() for c in curves.values())]
    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.3), squeeze=False)
    for ax, (k, lab) in zip(axes[0], names):
        for label, c in curves.items():
            line, = ax.plot(x, c[k], "o-", ms=3, label=label)
            if marks and label in marks:
                j = int(np.argmin(np.abs(x - marks[label])))
                ax.plot(x[j], c[k][j], "*", ms=10, color=line.get_color())
        if k in ("lf_err", "hf_err"):
            ax.set_yscale("log")
        ax.set_title(lab, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fig6(model, hr_images, key, out_dir: str, subset: str, *, num_steps: int = 10, lpips=None,
         scales=FIG6_SCALES, fractions=FIG6_FRACTIONS) -> dict:
    res = scale_sweep(model, hr_images, key, scales=scales, fractions=fractions, num_steps=num_steps, lpips=lpips)
    T = model.num_timesteps
    x = res.t / T
    curves = {f"{s:g}×": {k: res.mean(k)[i] for k, _ in SWEEP_METRICS} for i, s in enumerate(res.scales)}
    best = {f"{s:g}×": float(x[int(np.argmin(res.mean("lpips")[i]))]) for i, s in enumerate(res.scales)}
    plot_metric_curves(x, curves, os.path.join(out_dir, "fig6_scale_sweep.png"),
                       f"Fig. 6: Diff-SR vs noise level per scale ({subset}, n={len(hr_images)}, {num_steps} DDIM "
                       f"steps; ★ = lowest LPIPS; FID unavailable)", marks=best)
    data = {"subset": subset, "n_images": len(hr_images), "num_steps": num_steps, "T": T, "t": res.t.tolist(),
            "scales": list(res.scales), "best_t_fraction_by_lpips": best,
            "mean": {k: res.mean(k).round(5).tolist() for k, _ in SWEEP_METRICS}}
    _dump(os.path.join(out_dir, "fig6_scale_sweep.json"), data)
    return data


# ---------------------------------------------------------------------------------------------
# Fig. 7: schedules at 4×


def schedule_mapping(model_schedule_name: str, T: int, fractions: Sequence[float],
                     schedules: Sequence[str] = SCHEDULE_NAMES) -> dict:
    """{schedule: model steps t(τ) for τ = fraction·T} (see the module docstring)."""
    model_abar = alpha_bar(model_schedule_name, T)
    tau = np.asarray([int(round(f * T)) for f in fractions])
    return {s: remap_steps(model_abar, alpha_bar(s, T)[tau]) for s in schedules}


def fig7(model, hr_images, key, out_dir: str, subset: str, *, scale: float = 4.0, num_steps: int = 10,
         lpips=None, fractions=FIG7_FRACTIONS) -> dict:
    T = model.num_timesteps
    base = model.meta.get("schedule", {}).get("name", "linear")
    mapping = schedule_mapping(base, T, fractions)
    ts = np.asarray(sorted({int(t) for m in mapping.values() for t in m}), np.int32)
    res = sweep.sweep(model.model, model.params, model.schedule, hr_images, [scale], ts, key, num_steps,
                    lpips=lpips, chunk=8)
    idx = {int(t): i for i, t in enumerate(res.t)}
    x = np.asarray(fractions)
    curves = {s: {k: res.mean(k)[0][[idx[int(t)] for t in m]] for k, _ in SWEEP_METRICS} for s, m in mapping.items()}
    path = os.path.join(out_dir, "fig7_schedules.png")
    plot_metric_curves(x, curves, path,
                       f"Fig. 7: schedules at {scale:g}× emulated with one {base}-schedule model by matching ᾱ "
                       f"({subset}, n={len(hr_images)}; x = τ/T under each schedule)", xlabel="noise level τ/T")
    _plot_mapping(mapping, x, T, os.path.join(out_dir, "fig7_schedule_mapping.png"), base)
    data = {"subset": subset, "n_images": len(hr_images), "scale": scale, "num_steps": num_steps,
            "model_schedule": base, "fractions": list(fractions),
            "model_step": {s: m.tolist() for s, m in mapping.items()},
            "mean": {s: {k: np.round(v, 5).tolist() for k, v in c.items()} for s, c in curves.items()}}
    _dump(os.path.join(out_dir, "fig7_schedules.json"), data)
    return data


def _plot_mapping(mapping: dict, x: np.ndarray, T: int, path: str, base: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 3.3))
    for s, m in mapping.items():
        ax.plot(x, m / T, "o-", ms=3, label=s)
    ax.set_xlabel("noise level τ/T under the schedule", fontsize=8)
    ax.set_ylabel(f"model step t/T ({base} schedule)", fontsize=8)
    ax.set_title("same ᾱ: schedule step → model step", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Fig. 8: frequency domain (Appendix E)


def log_spectrum(img_pm1: np.ndarray) -> np.ndarray:
    """Centred log-magnitude spectrum of the luma (mean of RGB) of an image in [-1, 1]."""
    g = np.asarray(img_pm1, np.float64).mean(-1)
    return np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(g))))


def noised_pair(model, hr01: np.ndarray, scale: float, t: int, key: jax.Array, num_steps: int = 10):
    """(x_t, x̂_t, x̃) in [-1, 1] for one image: HR and its bicubic-degraded version noised to t with
    the same ε, and Diff-SR's restoration of x̂ from t, which draws exactly that ε (pipeline.diffsr
    splits its key the same way)."""
    hr = jnp.asarray(hr01[None], jnp.float32)
    x, x_hat = hr * 2.0 - 1.0, protocols.degrade(hr, scale)
    k_noise, _ = jax.random.split(key)
    eps = jax.random.normal(k_noise, x_hat.shape, x_hat.dtype)
    tt = jnp.full((1,), t, jnp.int32)
    out = pipeline.diffsr(model.model, model.params, model.schedule, x_hat, tt, key, num_steps=num_steps)
    return (np.asarray(q_sample(model.schedule, x, tt, eps))[0], np.asarray(q_sample(model.schedule, x_hat, tt, eps))[0],
            np.asarray(out)[0])


def fig8(model, hr01: np.ndarray, key, out_dir: str, subset: str, *, scale: float = 4.0, t_show=None,
         num_steps: int = 10, fractions=FIG8_T_FRACTIONS) -> dict:
    """Rows = noise steps; columns = x_t, |F(x_t)|, x̂_t, |F(x̂_t)|, x̃, |F(x̃)| (cutoff circle =
    the low/high band split of the errors); right: low/high band errors of x̃ vs x over t."""
    T = model.num_timesteps
    t_auto = api.resolve_noise_step(model, "auto", scale)
    t_show = t_show or sorted({0, int(0.1 * T), t_auto, int(0.6 * T), int(0.9 * T)})
    res = sweep.sweep(model.model, model.params, model.schedule, hr01[None], [scale], _steps(fractions, T), key,
                    num_steps, lpips=None, chunk=4)
    plt = _plt()
    n = len(t_show)
    fig = plt.figure(figsize=(13, 2.1 * n))
    gs = fig.add_gridspec(n, 8)
    size = hr01.shape[0]
    r_px = metrics.FREQ_CUTOFF * size
    titles = ["HR x_t", "|F(x_t)|", "bicubic x̂_t", "|F(x̂_t)|", "Diff-SR x̃ from t", "|F(x̃)|"]
    lo_hi = {}
    for r, t in enumerate(t_show):
        xt, xht, out = noised_pair(model, hr01, scale, int(t), sweep.cell_key(key, 0), num_steps)
        lo, hi = metrics.frequency_errors(jnp.asarray((np.clip(out, -1, 1)[None] + 1) / 2), jnp.asarray(hr01[None]))
        lo_hi[int(t)] = (float(lo[0]), float(hi[0]))
        panels = [xt, log_spectrum(xt), xht, log_spectrum(xht), out, log_spectrum(out)]
        lim = (min(p.min() for p in panels[1::2]), max(p.max() for p in panels[1::2]))  # one scale per row
        for c, img in enumerate(panels):
            ax = fig.add_subplot(gs[r, c])
            if c % 2 == 0:
                ax.imshow(np.clip((img + 1) / 2, 0, 1))
            else:
                ax.imshow(img, cmap="magma", vmin=lim[0], vmax=lim[1])
                ax.add_patch(plt.Circle((size / 2, size / 2), r_px, fill=False, color="cyan", lw=0.8))
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(f"t={t} ({t / T:.2f}T)" + (" auto" if t == t_auto else ""), fontsize=8)
    ax = fig.add_subplot(gs[:, 6:])
    x = res.t / T
    ax.plot(x, res.mean("lf_err")[0], "o-", ms=3, label="low-freq. error (r ≤ 0.125)")
    ax.plot(x, res.mean("hf_err")[0], "o-", ms=3, label="high-freq. error (r > 0.125)")
    ax.axvline(t_auto / T, color="gray", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("noise level t/T")
    ax.set_title("errors of x̃ vs HR x", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(f"Fig. 8 (App. E): frequency view at {scale:g}×, {subset}, {num_steps} DDIM steps; "
                 f"dotted = auto t", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "fig8_frequency.png"), dpi=100)
    plt.close(fig)
    data = {"subset": subset, "scale": scale, "t_auto": t_auto, "t": res.t.tolist(),
            "lf_err": res.mean("lf_err")[0].round(6).tolist(), "hf_err": res.mean("hf_err")[0].round(6).tolist(),
            "shown": {str(t): v for t, v in lo_hi.items()}}
    _dump(os.path.join(out_dir, "fig8_frequency.json"), data)
    return data


def _dump(path: str, data: dict) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


# ---------------------------------------------------------------------------------------------
# One call for evaluate.py


def run_ablations(which: Sequence[str], *, dataset: str, out_dir: str, data_root: Optional[str] = None,
                  tfds_dir: Optional[str] = None, limit: Optional[int] = None, checkpoint: Optional[str] = None,
                  steps: Optional[int] = None, seed: int = 0) -> dict:
    """The ablations named in ``which`` (fig6 fig7 fig8) on ``dataset`` (paper protocol, 256²),
    written to ``out_dir``/ablations. ``steps`` None: the plain mode's calibrated count."""
    unknown = set(which) - {"fig6", "fig7", "fig8"}
    if unknown:
        raise ValueError(f"unknown ablation(s) {', '.join(sorted(unknown))}; choose fig6 fig7 fig8 or none")
    model = api.load_model(checkpoint)
    images = evaluation.load_dataset(dataset, data_root=data_root, data_dir=tfds_dir, limit=limit)
    hr = np.stack([protocols.paper_protocol(rgb, 2.0)[0] for _, rgb in images])  # 256² HR (scale unused)
    subset = f"{evaluation.dataset_label(dataset)} 256² centre crops"
    steps = steps or api.default_steps(model)  # the ablations sweep plain Diff-SR
    out = os.path.join(out_dir, "ablations")
    os.makedirs(out, exist_ok=True)
    key = jax.random.key(seed)
    lpips = sweep.make_lpips()
    done = {}
    for name in which:
        print(f"ablation {name} on {subset} (n={len(hr)}) …", file=sys.stderr)
        if name == "fig6":
            done[name] = fig6(model, hr, key, out, subset, num_steps=steps, lpips=lpips)
        elif name == "fig7":
            done[name] = fig7(model, hr, key, out, subset, num_steps=steps, lpips=lpips)
        else:
            done[name] = fig8(model, hr[0], key, out, f"{subset} image {images[0][0]}", num_steps=steps)
    print(f"wrote {out}", file=sys.stderr)
    return done
