"""The empirical PRF: restore a (scale × t × image) grid in one compiled call and measure it.

Per cell: PSNR, SSIM, LPIPS-Alex and low/high-frequency errors. The LPIPS argmin per scale is
t_best; which step ships is a pick rule of :mod:`diffsr_jax.calibration`.

Why the sweep is built the way it is:

- The restore of the *whole* grid is one jitted call. t, the scale index and the image index of a
  cell are data (traced), never static arguments, so every noise level shares one executable; a
  static t (the diffusers Flax img2img pattern) recompiles for each value
  (``benchmarks/prf_sweep.py`` measures the difference).
- Inside that call, ``lax.map`` walks the grid in chunks of a fixed number of cells (the last one
  padded by repeating a cell): the chunk body is compiled once, peak memory is that of one chunk
  (UNet activations of ``chunk`` images) however large the grid, and a new t grid of the same
  size reuses the executable.
- Degradation (downscale to round(H/s), bicubic back up: :func:`diffsr_jax.protocols.degrade`)
  happens before the compiled core: the LR shape depends on the scale, which would otherwise
  force one traced branch per scale. Every scale comes back at the HR shape, so the core sees one
  shape.
- Each cell's noise key is ``fold_in(key, image_index)``: common random numbers across t and
  scale (a metric-vs-t curve differs from its neighbours by t, not by the noise draw, which keeps
  argmins stable on few images), and any cell can be reproduced alone with
  ``pipeline.diffsr(..., key=cell_key(key, n))``.
- On a mesh the same chunk loop runs per device inside ``shard_map`` on its share of the cells
  (cells are independent, so the result equals the one-device sweep up to float rounding).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from diffsr_jax import adaptation, consistency, metrics, pipeline, protocols, samplers, sharding
from diffsr_jax.prf import runs
from diffsr_jax.schedules import Schedule

# How many times the compiled core has been traced (tests use it to catch recompiles).
TRACES: collections.Counter = collections.Counter()

METRICS = ("psnr", "ssim", "lpips", "lf_err", "hf_err")


def cell_metrics(out01, ref01, *, lpips_module=None, lpips_params=None, freq_cutoff: float = metrics.FREQ_CUTOFF):
    """Per-image metrics of a batch in [0, 1]: PSNR, SSIM (dm-pix), LPIPS (NaN without a module),
    low/high-frequency errors."""
    import dm_pix

    out01 = jnp.clip(out01, 0.0, 1.0)
    if lpips_module is None:
        lp = jnp.full(out01.shape[:1], jnp.nan, out01.dtype)
    else:
        lp = lpips_module.apply(lpips_params, out01 * 2.0 - 1.0, ref01 * 2.0 - 1.0).reshape(-1)
    lf, hf = metrics.frequency_errors(out01, ref01, freq_cutoff)
    return {"psnr": dm_pix.psnr(out01, ref01), "ssim": dm_pix.ssim(out01, ref01, max_val=1.0),
            "lpips": lp, "lf_err": lf, "hf_err": hf}


def cell_key(key: jax.Array, image_index) -> jax.Array:
    """The key of every cell of image ``image_index`` (shared across t and scale)."""
    return jax.random.fold_in(key, image_index)


def restore_cells(model, params, schedule: Schedule, x_up, t, keys, *, num_steps: int, sampler: str = "ddim",
                  guides=None, guide_iters: int = 1):
    """Diff-SR per cell: each (x_up[i], t[i], keys[i]) is run as its own batch of one, so a cell's
    result does not depend on its neighbours (its noise is drawn from its own key). ``guides``:
    optional per-cell ``pipeline.Guide`` (leading axis = cells) for data consistency."""
    def one(x, ti, k, g):
        g = None if g is None else pipeline.Guide(ref=g.ref[None], rows=g.rows, cols=g.cols, strength=g.strength,
                                                  noise=g.noise)
        return pipeline.diffsr(model, params, schedule, x[None], ti[None], k, num_steps=num_steps,
                               sampler=sampler, guide=g, guide_iters=guide_iters)[0]
    return jax.vmap(one)(x_up, t, keys, guides)


def noisy_lr(lr_pm1, sigma: float, seed: int) -> jnp.ndarray:
    """An LR batch in [-1, 1] with additive Gaussian noise of std ``sigma`` ([0, 1] units), then
    clipped and rounded to 8 bits as a noisy image file would be; seeded, per batch."""
    lr01 = (np.asarray(lr_pm1, np.float64) + 1.0) / 2.0
    noisy = lr01 + np.random.default_rng(seed).normal(0.0, sigma, lr01.shape)
    return jnp.asarray(np.round(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.float32) / 127.5 - 1.0)


def sweep_lrs(hr01, scales: Sequence[float], degradation: str = "jax", lr_noise: float = 0.0,
              seed: int = 0) -> list:
    """The LR batch of every scale (see :func:`diffsr_jax.protocols.downscale`), with
    ``lr_noise`` (std, [0, 1] units) added as :func:`noisy_lr` does (a different draw per scale)."""
    lrs = [protocols.downscale(hr01, s, degradation) for s in scales]
    return [noisy_lr(lr, lr_noise, seed + i) for i, lr in enumerate(lrs)] if lr_noise > 0 else lrs


def consistency_data(hr01: jnp.ndarray, scales: Sequence[float], strength: float, lift: str = "pinv",
                     degradation: str = "jax", lrs=None, noise=None):
    """Per-scale consistency operators for a sweep: (refs (S, N, H, W, 3), row bands (S, H, 2K+1),
    column bands (S, W, 2K+1), λ, per scale the noise level its corrections are weighed against
    (model units; ``noise``, default 0)), every scale's bands widened to one K. Bands make the
    scale data, so one compiled core serves all scales. ``lrs``: the LR batch per scale (default
    :func:`sweep_lrs` without noise)."""
    n, h, w, c = hr01.shape
    refs, bands = [], []
    lrs = sweep_lrs(hr01, scales, degradation) if lrs is None else lrs
    for s, lr in zip(scales, lrs):
        ops = consistency.image_operator((h, w), lr.shape[1:3], lift)
        refs.append(consistency.lift(ops, lr))
        bands.append(consistency.guide_bands(ops))
    rows, cols = consistency.stack_bands(bands)
    noise = np.zeros(len(scales)) if noise is None else noise
    return (jnp.asarray(np.stack(refs)), jnp.asarray(rows), jnp.asarray(cols), jnp.float32(strength),
            jnp.asarray(noise, jnp.float32).reshape(len(scales)))


@functools.partial(jax.jit, static_argnames=("model", "num_steps", "chunk", "sampler", "lpips_module",
                                             "freq_cutoff", "return_images", "guide_iters", "colour_fix"))
def _sweep_core(model, params, schedule, x_up, hr, s_idx, n_idx, t, key, lpips_params, cons=None, *, num_steps,
                chunk, sampler, lpips_module, freq_cutoff, return_images, guide_iters=1, colour_fix="none"):
    TRACES["sweep"] += 1

    def run_chunk(cells):
        s, n, tt = cells
        keys = jax.vmap(lambda i: cell_key(key, i))(n)
        guides = None
        if cons is not None:
            refs, rows, cols, lam, noise = cons
            guides = pipeline.Guide(ref=refs[s, n], rows=rows[s], cols=cols[s], strength=jnp.full(s.shape, lam),
                                    noise=noise[s])
        out = restore_cells(model, params, schedule, x_up[s, n], tt, keys, num_steps=num_steps, sampler=sampler,
                            guides=guides, guide_iters=guide_iters)
        if colour_fix != "none":
            out = consistency.colour_fix(out, x_up[s, n], colour_fix)
        if cons is not None:  # the final projection, as api.upscale_array ends a consistent run
            t_last = samplers.last_step(tt, num_steps, sampler)
            final = guides._replace(strength=guides.strength * consistency.noise_weight(
                schedule.alphas_cumprod, t_last, guides.noise))
            out = jax.vmap(lambda o, g: consistency_final(o, g, guide_iters))(out, final)
        out01 = (jnp.clip(out, -1.0, 1.0) + 1.0) / 2.0
        m = cell_metrics(out01, hr[n], lpips_module=lpips_module, lpips_params=lpips_params,
                         freq_cutoff=freq_cutoff)
        return (m, out01) if return_images else (m, None)

    cells = tuple(a.reshape(-1, chunk) for a in (s_idx, n_idx, t))
    values, images = jax.lax.map(run_chunk, cells)
    flat = lambda a: a.reshape(-1, *a.shape[2:])
    return jax.tree.map(flat, values), (None if images is None else flat(images))


def consistency_final(out, guide, iters: int):
    return consistency.correct(out[None], guide.ref[None], guide.rows, guide.cols, guide.strength, iters)[0]


@dataclasses.dataclass(frozen=True)
class SweepResult:
    scales: tuple
    t: np.ndarray                     # (Tn,) steps
    metrics: dict                     # name → (S, Tn, N)
    images: Optional[np.ndarray]      # (S, Tn, N, H, W, 3) in [0, 1] when asked for

    def mean(self, name: str) -> np.ndarray:
        """(S, Tn) mean over images."""
        return self.metrics[name].mean(axis=-1)


def make_lpips(net: str = "alex"):
    """The LPIPS evaluator a sweep takes (:func:`diffsr_jax.metrics.lpips_evaluator`)."""
    return metrics.lpips_evaluator(net)


def sweep_grid(model, schedule: Schedule, hr_images, scales: Sequence[float], t_values, multiple: int,
               degradation: str = "jax", lrs=None):
    """Validated inputs of a sweep: (HR crops, t values, degraded inputs (S, N, H, W, 3), and the
    flat per-cell (scale index, image index, t) arrays padded to a multiple of ``multiple``).
    ``lrs``: the LR batch per scale (default :func:`sweep_lrs`), upsampled by the pipeline."""
    hr = jnp.asarray(hr_images, jnp.float32)
    t_values = np.asarray(t_values, np.int32).reshape(-1)
    if t_values.min() < 0 or t_values.max() > schedule.num_steps:
        raise ValueError(f"t_values must lie in [0, {schedule.num_steps}]")
    stride = getattr(model, "total_stride", 1)
    if hr.shape[1] % stride or hr.shape[2] % stride:
        raise ValueError(f"HR crops must be multiples of the model stride {stride}, got {hr.shape[1:3]}")
    S, Tn, N = len(scales), len(t_values), hr.shape[0]
    lrs = sweep_lrs(hr, scales, degradation) if lrs is None else lrs
    x_up = jnp.stack([pipeline.upsample(lr, hr.shape[1:3]) for lr in lrs])            # (S, N, H, W, 3)
    s_idx, t_idx, n_idx = (a.reshape(-1) for a in np.meshgrid(np.arange(S), np.arange(Tn), np.arange(N),
                                                              indexing="ij"))
    cells = [sharding.pad_rows(a.astype(np.int32), multiple) for a in (s_idx, n_idx, t_values[t_idx])]
    return hr, t_values, x_up, cells


@functools.lru_cache(maxsize=None)
def sharded_sweep_fn(mesh, model, *, num_steps: int, chunk: int, sampler: str, lpips_module, freq_cutoff: float,
                     return_images: bool, guided: bool = False, guide_iters: int = 1, colour_fix: str = "none"):
    """The sweep's compiled core run per device on its share of the cells (``shard_map`` over
    ``data``; everything but the cell arrays replicated)."""
    core = functools.partial(_sweep_core, model, num_steps=num_steps, chunk=chunk, sampler=sampler,
                             lpips_module=lpips_module, freq_cutoff=freq_cutoff, return_images=return_images,
                             guide_iters=guide_iters, colour_fix=colour_fix)
    rep, dat = P(), P(sharding.DATA)
    specs = (rep, rep, rep, rep, dat, dat, dat, rep, rep) + ((rep,) if guided else ())
    return jax.jit(jax.shard_map(lambda *args: core(*args), mesh=mesh, in_specs=specs, out_specs=dat))


def sweep(model, params, schedule: Schedule, hr_images, scales: Sequence[float], t_values, key: jax.Array,
          num_steps: int, *, lpips=None, chunk: int = 16, sampler: str = "ddim",
          freq_cutoff: float = metrics.FREQ_CUTOFF, return_images: bool = False, consistency: float = 0.0,
          lift: str = "pinv", guide_iters: int = 1, colour_fix: str = "none",
          degradation: str = "jax", lr_noise: float = 0.0, noise_seed: int = 0, mesh=None) -> SweepResult:
    """Restores every (scale, t, image) cell of HR crops in [0, 1] (N, H, W, 3) and measures it.

    ``lpips``: an evaluator from :func:`make_lpips` or None (LPIPS reported as NaN; needs images
    of ≥ 32 px for AlexNet). One compiled call for the grid, ``chunk`` cells at a time (see the
    module docstring). ``consistency`` λ > 0 (with ``lift``, ``guide_iters``) and ``colour_fix``
    sweep those inference modes (see diffsr_jax.consistency). ``degradation``: how the LR inputs
    are made (see :func:`diffsr_jax.protocols.downscale`); ``lr_noise`` (std, [0, 1] units) adds
    seeded noise to them (:func:`noisy_lr`) and makes the consistency noise-aware for that σ, as
    inference is for an input of that noise. ``mesh``: a device mesh with more than one device
    splits the grid over its ``data`` axis (``chunk`` cells per device per step).
    """
    sharded = mesh is not None and sharding.data_size(mesh) > 1
    multiple = chunk * sharding.data_size(mesh) if sharded else chunk  # whole chunks per device
    lrs = sweep_lrs(jnp.asarray(hr_images, jnp.float32), scales, degradation, lr_noise, noise_seed)
    hr, t_values, x_up, cells = sweep_grid(model, schedule, hr_images, scales, t_values, multiple, degradation, lrs)
    S, Tn, N = len(scales), len(t_values), hr.shape[0]
    cons = None
    if consistency > 0:  # weighed as inference weighs an input of σ = lr_noise (lift and scale amplify it)
        noise = [adaptation.Response(lr_noise, "bicubic", 0.0).consistency_noise(s, lift) for s in scales]
        cons = consistency_data(hr, scales, consistency, lift, degradation, lrs, noise=noise)
    lpips_module, lpips_params = (None, None) if lpips is None else (lpips.lpips, lpips.params)
    args = (params, schedule, x_up, hr, *map(jnp.asarray, cells), key, lpips_params)
    if sharded:
        fn = sharded_sweep_fn(mesh, model, num_steps=int(num_steps), chunk=int(chunk), sampler=sampler,
                              lpips_module=lpips_module, freq_cutoff=float(freq_cutoff),
                              return_images=bool(return_images), guided=cons is not None,
                              guide_iters=int(guide_iters), colour_fix=colour_fix)
        values, images = fn(*args, cons) if cons is not None else fn(*args)
        host = sharding.to_host
    else:
        values, images = _sweep_core(model, *args, cons, num_steps=num_steps, chunk=chunk, sampler=sampler,
                                     guide_iters=int(guide_iters), colour_fix=colour_fix, lpips_module=lpips_module,
                                     freq_cutoff=float(freq_cutoff), return_images=return_images)
        host = np.asarray
    G = S * Tn * N
    values = {k: host(v)[:G].reshape(S, Tn, N) for k, v in values.items()}
    if images is not None:
        images = host(images)[:G].reshape(S, Tn, N, *hr.shape[1:])
    return SweepResult(scales=tuple(float(s) for s in scales), t=t_values, metrics=values, images=images)


def empirical_fields(result: SweepResult, metric: str = "lpips", decimals: int = 4,
                     tolerance: float = 0.0) -> list[dict]:
    """Per scale: t* = argmin of the mean metric over the grid (lower is better; ties, after
    rounding to ``decimals``, go to the smaller t) and the empirical field = grid steps t > 0 whose
    mean metric beats t = 0 (the bicubic input), as runs of consecutive grid points (None when
    empty or when t = 0 is not in the grid).

    ``tolerance`` > 0: t* = the *smallest* t whose mean metric is within ``tolerance`` of the
    minimum. Where the curve is flat to within the calibration set's noise this prefers less
    noise, i.e. more fidelity to the input, over a perceptual gain that may not be real."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    mean = result.mean(metric)
    out = []
    for i in range(len(result.scales)):
        m = np.round(mean[i], decimals)
        # The first index within the tolerance (the grid is sorted); with 0, argmin's first minimum.
        best = int(np.flatnonzero(m <= m.min() + tolerance)[0])
        field = None
        if 0 in result.t:
            base = m[list(result.t).index(0)]
            field = runs((m < base) & (result.t > 0), result.t)
        out.append({"t_star": int(result.t[best]), "prf": field})
    return out


def tied_with_best(result: SweepResult, t_stars: Sequence[int], metric: str = "lpips",
                   k: float = 1.0) -> list[list[int]]:
    """Per scale: the grid steps t whose mean metric is within ``k`` standard errors of t*'s, the
    error being that of the per-image *paired* difference (every cell of an image shares its noise
    draw, so the pairing removes most of the image-to-image spread). These are the t the
    calibration set cannot tell apart from t*; with a handful of images a flat curve ties several
    grid points, and the choice among them is not a measurement. With one image there is no error
    estimate: only steps with exactly t*'s value tie."""
    values = result.metrics[metric]                      # (S, Tn, N)
    out = []
    for i, t_star in enumerate(t_stars):
        m = values[i]
        d = m - m[list(result.t).index(t_star)]          # (Tn, N), paired with t*
        n = m.shape[-1]
        se = d.std(axis=-1, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(len(result.t))
        out.append([int(t) for t, mean, e in zip(result.t, d.mean(axis=-1), se) if mean <= k * e])
    return out


# ---------------------------------------------------------------------------------------------
# Plot (paper Fig. 6)


def plot_sweep(res: SweepResult, T: int, path: str, fields: Optional[list[dict]] = None) -> None:
    """Paper Fig. 6: each metric vs t/T, one line per scale (t* marked when fields are given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for m in METRICS if np.isfinite(res.metrics[m]).any()]
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
    x = res.t / T
    for ax, name in zip(axes[0], names):
        mean = res.mean(name)
        for i, s in enumerate(res.scales):
            line, = ax.plot(x, mean[i], "o-", ms=3, label=f"{s:g}×")
            if fields:
                j = list(res.t).index(fields[i]["t_star"])
                ax.plot(x[j], mean[i, j], "*", ms=10, color=line.get_color())
        if name in ("lf_err", "hf_err"):
            ax.set_yscale("log")  # relative spectral errors span decades across t
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("noise level t/T")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

