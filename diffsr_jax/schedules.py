"""Noise schedules of a T-step DDPM as frozen pytrees, plus the closed-form forward process.

Indexing convention used everywhere in this package: step ``t`` is an integer in ``[0, T]``;
``t = 0`` is the clean image (``alphas_cumprod[0] == 1``) and ``t = T`` is (nearly) pure noise.
Every per-step array therefore has length ``T + 1``; entry 0 of ``betas`` is 0 by definition.
This lets a traced ``t_start = 0`` mean "no noise" without special cases.
"""

from __future__ import annotations

import math
from typing import Callable

import flax.struct
import jax.numpy as jnp
import numpy as np

SCHEDULE_NAMES = ("linear", "scaled_linear", "cosine", "sigmoid", "squared_cosine")

# Nichol & Dhariwal cap β below 1 so the last steps stay invertible.
MAX_BETA = 0.999


@flax.struct.dataclass
class Schedule:
    """All per-step quantities of one schedule (arrays of length T + 1, float32)."""

    betas: jnp.ndarray
    alphas: jnp.ndarray
    alphas_cumprod: jnp.ndarray
    sqrt_alphas_cumprod: jnp.ndarray
    sqrt_one_minus_alphas_cumprod: jnp.ndarray
    # q(x_{t-1} | x_t, x_0) = N(coef_x0 * x0 + coef_xt * x_t, variance); zero at t = 0.
    posterior_mean_coef_x0: jnp.ndarray
    posterior_mean_coef_xt: jnp.ndarray
    posterior_variance: jnp.ndarray

    @property
    def num_steps(self) -> int:
        """T (a Python int: it comes from the static array shape)."""
        return self.betas.shape[0] - 1


# ---------------------------------------------------------------------------------------------
# β / ᾱ definitions, in float64 numpy so the float32 arrays carry no accumulated rounding.


def _linear_betas(T: int, beta_start: float, beta_end: float) -> np.ndarray:
    return np.linspace(beta_start, beta_end, T, dtype=np.float64)


def _scaled_linear_betas(T: int, beta_start: float, beta_end: float) -> np.ndarray:
    # Linear in sqrt(β) (Stable Diffusion's "scaled_linear"); same endpoints as linear.
    return np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), T, dtype=np.float64) ** 2


def _betas_from_alpha_bar(alpha_bar: Callable[[np.ndarray], np.ndarray], T: int) -> np.ndarray:
    t = np.arange(T + 1, dtype=np.float64) / T
    abar = alpha_bar(t)
    return np.minimum(1.0 - abar[1:] / abar[:-1], MAX_BETA)


def _cosine_betas(T: int, s: float = 0.008) -> np.ndarray:
    # Nichol & Dhariwal (2021): ᾱ(t) = f(t)/f(0), f(t) = cos²((t + s)/(1 + s) · π/2).
    f = lambda t: np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return _betas_from_alpha_bar(lambda t: f(t) / f(0.0), T)


def _squared_cosine_betas(T: int, s: float = 0.008) -> np.ndarray:
    # Stable Diffusion's "squaredcos_cap_v2" (the paper's "Square Cosine", §4.3.2): β_i =
    # min(1 − f(t_i)/f(t_{i−1}), 0.999) with f = cos²((t + s)/(1 + s) · π/2). The ratios telescope,
    # so its ᾱ is exactly Nichol & Dhariwal's cosine: the paper lists the two separately, but in
    # the code it cites they are one curve (kept as its own name so the Fig. 7 ablation can be run
    # as the paper describes; expect the two rows to agree).
    return _betas_from_alpha_bar(lambda t: np.cos((t + s) / (1 + s) * math.pi / 2) ** 2, T)


def _sigmoid_betas(T: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> np.ndarray:
    # Chen (2023), "On the importance of noise scheduling": γ(t) = ᾱ(t) from a shifted sigmoid.
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))
    v_start, v_end = sig(start / tau), sig(end / tau)

    def alpha_bar(t):
        return (v_end - sig((t * (end - start) + start) / tau)) / (v_end - v_start)

    # ᾱ(1) = 0 exactly; the β cap keeps ᾱ_T small but positive.
    return _betas_from_alpha_bar(lambda t: np.clip(alpha_bar(t), 1e-12, 1.0), T)


def make_betas(name: str, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """β_1..β_T (float64, length T) of a named schedule."""
    if name == "linear":
        return _linear_betas(T, beta_start, beta_end)
    if name == "scaled_linear":
        return _scaled_linear_betas(T, beta_start, beta_end)
    if name == "cosine":
        return _cosine_betas(T)
    if name == "squared_cosine":
        return _squared_cosine_betas(T)
    if name == "sigmoid":
        return _sigmoid_betas(T)
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULE_NAMES)}")


def schedule_from_betas(betas_1_to_T: np.ndarray) -> Schedule:
    """Builds every derived array from β_1..β_T (prepends the t = 0 entry)."""
    betas = np.concatenate([[0.0], np.asarray(betas_1_to_T, np.float64)])
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    denom = np.where(np.arange(len(betas)) == 0, 1.0, 1.0 - abar)  # avoid 0/0 at t = 0
    coef_x0 = np.where(betas > 0, betas * np.sqrt(abar_prev) / denom, 0.0)
    coef_xt = np.where(betas > 0, (1.0 - abar_prev) * np.sqrt(alphas) / denom, 0.0)
    variance = np.where(betas > 0, betas * (1.0 - abar_prev) / denom, 0.0)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    return Schedule(
        betas=f32(betas),
        alphas=f32(alphas),
        alphas_cumprod=f32(abar),
        sqrt_alphas_cumprod=f32(np.sqrt(abar)),
        sqrt_one_minus_alphas_cumprod=f32(np.sqrt(1.0 - abar)),
        posterior_mean_coef_x0=f32(coef_x0),
        posterior_mean_coef_xt=f32(coef_xt),
        posterior_variance=f32(variance),
    )


def make_schedule(name: str = "linear", T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """The named schedule as a frozen pytree (pass it into jitted functions as an argument)."""
    return schedule_from_betas(make_betas(name, T, beta_start, beta_end))


def schedule_from_spec(spec: dict) -> Schedule:
    """The schedule a model.json's ``schedule`` entry (or a config's) describes:
    {"name", "T", "beta_start" (default 1e-4), "beta_end" (default 0.02)}."""
    return make_schedule(spec["name"], int(spec["T"]), float(spec.get("beta_start", 1e-4)),
                         float(spec.get("beta_end", 0.02)))


# ---------------------------------------------------------------------------------------------
# Forward process and ε ↔ x0 conversions. ``t`` is an int array broadcastable to the batch.


def _per_item(values: jnp.ndarray, t: jnp.ndarray, ndim: int) -> jnp.ndarray:
    """values[t] reshaped to broadcast over the trailing image axes of an ndim-rank batch."""
    v = values[jnp.asarray(t, jnp.int32)]
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def q_sample(schedule: Schedule, x0: jnp.ndarray, t: jnp.ndarray, noise: jnp.ndarray) -> jnp.ndarray:
    """x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε (Eq. 1)."""
    a = _per_item(schedule.sqrt_alphas_cumprod, t, x0.ndim)
    b = _per_item(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim)
    return a * x0 + b * noise


def predict_x0_from_eps(schedule: Schedule, x_t: jnp.ndarray, t: jnp.ndarray, eps: jnp.ndarray) -> jnp.ndarray:
    a = _per_item(schedule.sqrt_alphas_cumprod, t, x_t.ndim)
    b = _per_item(schedule.sqrt_one_minus_alphas_cumprod, t, x_t.ndim)
    return (x_t - b * eps) / a


def predict_eps_from_x0(schedule: Schedule, x_t: jnp.ndarray, t: jnp.ndarray, x0: jnp.ndarray) -> jnp.ndarray:
    a = _per_item(schedule.sqrt_alphas_cumprod, t, x_t.ndim)
    b = _per_item(schedule.sqrt_one_minus_alphas_cumprod, t, x_t.ndim)
    # At t = 0 the noise is undefined (b = 0); return zeros rather than inf.
    return jnp.where(b > 0, (x_t - a * x0) / jnp.where(b > 0, b, 1.0), 0.0)


def noise_fraction_to_step(schedule: Schedule, fraction) -> jnp.ndarray:
    """A noise level given as a fraction of T (the paper's "noise injection level") → int step."""
    T = schedule.num_steps
    return jnp.clip(jnp.round(jnp.asarray(fraction, jnp.float32) * T), 0, T).astype(jnp.int32)
