"""The analytic Perceptual Recoverable Field (paper §3.3–3.4): how much noise to inject for a scale.

Measure the model's per-step ε-error E_t on HR crops, accumulate it into the signature loss
L^S_t = Σ_{i<t} w_i E_i (non-decreasing, Lemma 1), compute the fidelity loss
L^F_t = KL(q(x_t|x) ‖ q(x_t|x̂)) between the noised HR image and the noised bicubic input
(non-increasing), and take the PRF = {t : L^S_t ≤ C^S and ω L^F_t ≤ C^F} with
t* = argmin_t L^S_t + ω L^F_t inside it (Theorem 1). Units: both curves are KL divergences *per
dimension* (nats per pixel-channel, with E_t the per-pixel ε-MSE, i.e. the training loss), so they
do not depend on the crop size used for calibration.

The empirical alternative (restore a scale × t × image grid and measure it) is
:mod:`diffsr_jax.sweep`; turning either into a model's noise table is :mod:`diffsr_jax.calibration`.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffsr_jax import protocols, sharding
from diffsr_jax.schedules import Schedule, q_sample

# How many times each compiled core has been traced (tests use it to catch recompiles).
TRACES: collections.Counter = collections.Counter()

OMEGA = 0.004          # the paper's ω (§3.3)
SIGNATURE_REF = 0.6    # default C^S = L^S at 0.6·T (paper §4.3.1: beyond 60% noise content is lost)
FIDELITY_RHO = 1.0     # default C^F = ω·ρ/2: the noised LR/HR discrepancy no stronger than the noise


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
    padded = sharding.pad_rows(t, chunk)
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
    bicubic degradation of the same crops at each scale (``degradation``, see
    :func:`diffsr_jax.protocols.downscale`). Default
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
        x_hat = np.asarray(protocols.degrade(hr, s, degradation))
        LF = fidelity_loss(x, x_hat, schedule)
        LFs.append(LF)
        mses.append(float(np.mean((np.asarray(x, np.float64) - x_hat) ** 2)))
        fields.append(prf(LS, LF, omega, c_s, c_f))
    return AnalyticResult(scales=tuple(float(s) for s in scales), t_values=t_values, E=E, LS=LS,
                          LF=np.stack(LFs), mse=np.asarray(mses), fields=tuple(fields), variance=variance)



# ---------------------------------------------------------------------------------------------
# Plot (paper Fig. 4)


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

