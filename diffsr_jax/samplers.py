"""Reverse processes (DDIM, DDPM ancestral) that start at a *traced* step ``t_start``.

Why a fixed-length ``lax.scan`` with masking: ``t_start`` must stay a traced array so one compiled
sampler serves every noise level (and can be vmapped over a grid of them). A ``fori_loop`` with a
data-dependent trip count cannot be vmapped efficiently nor reverse-differentiated; a scan of
``num_steps`` iterations over a per-item timestep ladder can. Items whose ladder has already
reached 0 (or repeats a step because ``t_start < num_steps``) pass through unchanged.

``eps_fn(x, t)`` takes a batch ``x`` of shape (B, H, W, C) and int32 steps ``t`` of shape (B,) and
returns the predicted noise ε_θ(x_t, t).
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from diffsr_jax.schedules import Schedule

EpsFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
# Optional per-step correction of the predicted clean image (e.g. data consistency).
X0Fn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def timestep_ladder(t_start: jnp.ndarray, num_steps: int, power: int = 1) -> jnp.ndarray:
    """Per-item descending steps τ_0 = t_start > ... > τ_K = 0, shape t_start.shape + (K + 1,).

    τ_k = floor(t_start·((K−k)/K)^power): ``power`` 1 spaces the steps evenly, 2 quadratically
    (big strides at high noise, small ones near 0, where the details are decided). Integer
    arithmetic keeps the ladder exact for every traced value. When t_start is small, consecutive
    entries can repeat; the samplers skip those.
    """
    if power not in (1, 2):
        raise ValueError(f"ladder power must be 1 or 2, got {power}")
    t_start = jnp.asarray(t_start, jnp.int32)
    k = jnp.arange(num_steps + 1, dtype=jnp.int32)
    # int32 is exact here: t_start ≤ T (1000s) times K^power stays far below 2^31 for any sane K.
    return (t_start[..., None] * (num_steps - k) ** power) // num_steps ** power


def _gather(values: jnp.ndarray, t: jnp.ndarray) -> jnp.ndarray:
    return values[t][:, None, None, None]


def _safe(x: jnp.ndarray) -> jnp.ndarray:
    # Masked-out branches may divide by zero (t = s = 0); keep them finite so `where` and
    # gradients stay clean.
    return jnp.where(x > 0, x, 1.0)


def _predict(eps_fn, schedule, x, t, clip_x0, correct_x0):
    """ε and x0 predictions at step t, with optional clipping/correction of x0 (ε re-derived)."""
    eps = eps_fn(x, t)
    a_t = _gather(schedule.alphas_cumprod, t)
    x0 = (x - jnp.sqrt(1.0 - a_t) * eps) / jnp.sqrt(a_t)
    if clip_x0 or correct_x0 is not None:
        if correct_x0 is not None:
            x0 = correct_x0(x0, t)
        if clip_x0:
            x0 = jnp.clip(x0, -1.0, 1.0)
        # Keep ε consistent with the modified x0 so the deterministic DDIM path stays on it.
        eps = (x - jnp.sqrt(a_t) * x0) / jnp.sqrt(_safe(1.0 - a_t))
    return eps, x0


def _run_ladder(update, x_t: jnp.ndarray, t_start: jnp.ndarray, num_steps: int,
                ladder_power: int = 1) -> jnp.ndarray:
    """Scans ``update(x, t, s, k) -> x_s`` over the per-item ladder; inactive items keep x."""
    t_start = jnp.broadcast_to(jnp.asarray(t_start, jnp.int32), x_t.shape[:1])
    ladder = timestep_ladder(t_start, num_steps, ladder_power)

    def step(x, inputs):
        t, s, k = inputs
        active = (t > s)[:, None, None, None]
        return jnp.where(active, update(x, t, s, k), x), None

    ks = jnp.arange(num_steps, dtype=jnp.int32)
    x0, _ = jax.lax.scan(step, x_t, (ladder[:, :-1].T, ladder[:, 1:].T, ks))
    return x0


def ddim_sample(
    eps_fn: EpsFn,
    schedule: Schedule,
    x_t: jnp.ndarray,
    t_start: jnp.ndarray,
    key: jax.Array,
    *,
    num_steps: int,
    eta: float | jnp.ndarray = 0.0,
    clip_x0: bool = True,
    correct_x0: Optional[X0Fn] = None,
    ladder_power: int = 1,
) -> jnp.ndarray:
    """DDIM (Song et al. 2021) from x_{t_start} to x_0 in ``num_steps`` model calls.

    ``t_start`` is a traced int scalar or per-item (B,) array; ``eta`` = 0 is deterministic,
    ``eta`` = 1 matches DDPM's posterior variance on the strided ladder. ``ladder_power``: see
    :func:`timestep_ladder`.
    """
    abar = schedule.alphas_cumprod

    def update(x, t, s, k):
        eps, x0 = _predict(eps_fn, schedule, x, t, clip_x0, correct_x0)
        a_t, a_s = _gather(abar, t), _gather(abar, s)
        sigma = eta * jnp.sqrt((1.0 - a_s) / _safe(1.0 - a_t) * (1.0 - a_t / a_s))
        z = jax.random.normal(jax.random.fold_in(key, k), x.shape, x.dtype)
        return jnp.sqrt(a_s) * x0 + jnp.sqrt(jnp.maximum(1.0 - a_s - sigma**2, 0.0)) * eps + sigma * z

    return _run_ladder(update, x_t, t_start, num_steps, ladder_power)


def ddpm_sample(
    eps_fn: EpsFn,
    schedule: Schedule,
    x_t: jnp.ndarray,
    t_start: jnp.ndarray,
    key: jax.Array,
    *,
    num_steps: int,
    clip_x0: bool = True,
    correct_x0: Optional[X0Fn] = None,
    ladder_power: int = 1,
) -> jnp.ndarray:
    """Ancestral DDPM sampling (Ho et al. 2020) on the ladder t_start → 0.

    With ``num_steps >= t_start`` every step is t → t−1, i.e. the exact DDPM chain. With fewer
    steps it samples the respaced process (Nichol & Dhariwal): β' = 1 − ᾱ_t/ᾱ_s between ladder
    entries t > s, whose posterior q(x_s | x_t, x0) is used below.
    """
    abar = schedule.alphas_cumprod

    def update(x, t, s, k):
        _, x0 = _predict(eps_fn, schedule, x, t, clip_x0, correct_x0)
        a_t, a_s = _gather(abar, t), _gather(abar, s)
        beta = 1.0 - a_t / a_s
        denom = _safe(1.0 - a_t)
        mean = (beta * jnp.sqrt(a_s) / denom) * x0 + ((1.0 - a_s) * jnp.sqrt(a_t / a_s) / denom) * x
        var = beta * (1.0 - a_s) / denom
        z = jax.random.normal(jax.random.fold_in(key, k), x.shape, x.dtype)
        return mean + jnp.sqrt(var) * z  # var is 0 when s = 0: the last step is the mean

    return _run_ladder(update, x_t, t_start, num_steps, ladder_power)


# "-quad": the same sampler on the quadratic ladder (timestep_ladder power 2). The names are the
# static choice the pipeline compiles for; defaults.SAMPLERS lists them without importing JAX.
SAMPLERS = {"ddim": ddim_sample, "ddpm": ddpm_sample,
            "ddim-quad": functools.partial(ddim_sample, ladder_power=2),
            "ddpm-quad": functools.partial(ddpm_sample, ladder_power=2)}


def ladder_power(sampler: str) -> int:
    """The :func:`timestep_ladder` power a sampler name runs on: 2 for "-quad", else 1."""
    return 2 if sampler.endswith("-quad") else 1


def last_step(t_start, num_steps: int, sampler: str) -> jnp.ndarray:
    """The ladder's last step before 0, τ_{K−1} (at least 1): the noise level of the final
    update, e.g. to weigh a last correction as the ladder's last one was. Traced."""
    ladder = timestep_ladder(jnp.asarray(t_start), num_steps, ladder_power(sampler))
    return jnp.maximum(ladder[..., -2], 1)
