"""The ε-prediction objective (Ho et al. 2020) and the training-timestep distribution."""

from __future__ import annotations

from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp

from diffsr_jax.schedules import Schedule, q_sample


@flax.struct.dataclass
class LossOutput:
    """Per-term outputs of one loss evaluation (all scalars)."""

    loss: jnp.ndarray
    mse: jnp.ndarray
    mean_t: jnp.ndarray


def sample_timesteps(key: jax.Array, batch: int, T: int, low_fraction: float, low_prob: float) -> jnp.ndarray:
    """Training steps in [1, T].

    With probability ``low_prob`` a step is drawn uniformly from [1, low_fraction·T] instead of
    [1, T]: Diff-SR only ever starts the reverse process at t ≲ 0.7T, so a short training run
    spends most of its updates where inference will use them while still seeing every t (the
    PRF sweep at 8× needs the upper range to be sane). low_prob = 0 is Ho et al.'s uniform rule.
    """
    k_mix, k_low, k_all = jax.random.split(key, 3)
    t_low = jax.random.randint(k_low, (batch,), 1, max(2, int(round(low_fraction * T))) + 1)
    t_all = jax.random.randint(k_all, (batch,), 1, T + 1)
    return jnp.where(jax.random.uniform(k_mix, (batch,)) < low_prob, t_low, t_all)


def eps_loss(
    apply_fn: Callable,
    params,
    schedule: Schedule,
    x0: jnp.ndarray,
    key: jax.Array,
    *,
    low_fraction: float = 1.0,
    low_prob: float = 0.0,
) -> LossOutput:
    """E‖ε − ε_θ(√ᾱ_t x0 + √(1−ᾱ_t) ε, t)‖² averaged over pixels (the "simple" loss)."""
    k_t, k_eps, k_drop = jax.random.split(key, 3)
    t = sample_timesteps(k_t, x0.shape[0], schedule.num_steps, low_fraction, low_prob)
    noise = jax.random.normal(k_eps, x0.shape, jnp.float32)
    x_t = q_sample(schedule, x0, t, noise)
    pred = apply_fn({"params": params}, x_t, t, train=True, rngs={"dropout": k_drop})
    mse = jnp.mean((pred.astype(jnp.float32) - noise) ** 2)
    return LossOutput(loss=mse, mse=mse, mean_t=jnp.mean(t.astype(jnp.float32)))
