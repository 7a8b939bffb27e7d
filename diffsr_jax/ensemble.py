"""Geometric self-ensemble of the ε-model: average its prediction over flips and 90° rotations.

A denoiser trained with flip and rot90 augmentation should be equivariant to those transforms,
but a finite model is only approximately so; its errors under different transforms are partly
independent, so averaging g⁻¹ ε_θ(g x_t, t) over a group of transforms g cancels some of them.
The average is still an ε-prediction for x_t, so every sampler and the consistency guide work
unchanged (the injection-step table, calibrated without it, is reused as is). It costs n network
evaluations per sampler step (its gain in one-step x0 PSNR: benchmarks/denoise_quality.py
--self-ensemble N).

Sizes: 1 (off), 2 (identity + horizontal flip), 4 (+ the two transforms that also keep the
shape: vertical flip, 180° rotation), 8 (the whole dihedral group: + the four that transpose
H and W). The shape-keeping members run as one batch of n·B; the transposing ones as a second.
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from diffsr_jax.defaults import SELF_ENSEMBLE_SIZES as SIZES  # noqa: F401  (re-exported)
from diffsr_jax.options import check_self_ensemble_size

EpsFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


check_size = check_self_ensemble_size  # ``n`` as an int if it is a supported size, else ValueError


# Each member: (transpose H and W first?, flip H, flip W). Applied to NHWC as transpose, then flips.
# Order matters for the prefixes: 2 = identity + W flip, 4 = all shape-keeping ones.
_MEMBERS = ((False, False, False), (False, False, True), (False, True, False), (False, True, True),
            (True, False, False), (True, False, True), (True, True, False), (True, True, True))


def _forward(x, transpose, flip_h, flip_w):
    if transpose:
        x = jnp.swapaxes(x, 1, 2)
    if flip_h:
        x = x[:, ::-1]
    if flip_w:
        x = x[:, :, ::-1]
    return x


def _inverse(x, transpose, flip_h, flip_w):
    if flip_w:
        x = x[:, :, ::-1]
    if flip_h:
        x = x[:, ::-1]
    if transpose:
        x = jnp.swapaxes(x, 1, 2)
    return x


def members(n: int) -> tuple:
    """The first ``n`` group members as (transpose, flip_h, flip_w) triples."""
    return _MEMBERS[:check_size(n)]


def self_ensemble(eps_fn: EpsFn, n: int) -> EpsFn:
    """``eps_fn`` averaged over ``n`` flips/rotations (n = 1 returns ``eps_fn`` itself). Pure."""
    n = check_size(n)
    if n == 1:
        return eps_fn

    def averaged(x: jnp.ndarray, t: jnp.ndarray) -> jnp.ndarray:
        b = x.shape[0]
        total = jnp.zeros_like(x)
        for transpose in (False, True):
            group = [m for m in members(n) if m[0] == transpose]
            if not group:
                continue
            xs = jnp.concatenate([_forward(x, *m) for m in group], axis=0)
            eps = eps_fn(xs, jnp.tile(t, len(group)))
            for i, m in enumerate(group):
                total = total + _inverse(eps[i * b:(i + 1) * b], *m)
        return total / n

    return averaged
