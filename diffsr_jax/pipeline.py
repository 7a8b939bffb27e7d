"""Diff-SR as pure functions: upsample → inject forward noise to step t → reverse diffusion from t.

The compiled core (`restore_batch`) takes the noise step ``t`` as a traced array, so one program
serves every noise level, and it is vmappable over images and t. Large outputs are processed as
fixed-size overlapping tiles: tiles of one shape share one compilation across images (a side
shorter than the tile gives a narrower tile), and memory stays bounded. Tiles see the *same* globally drawn injection noise and DDIM
(η = 0) is deterministic afterwards, so overlaps agree up to the network's border effects, which
a linear-ramp blend hides.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from diffsr_jax import consistency, ensemble
from diffsr_jax.samplers import SAMPLERS
from diffsr_jax.schedules import Schedule, q_sample


def upsample(x: jnp.ndarray, out_hw: tuple[int, int]) -> jnp.ndarray:
    """Bicubic resize of an NHWC batch (antialiased when shrinking), clipped to [-1, 1]."""
    b, _, _, c = x.shape
    y = jax.image.resize(x, (b, int(out_hw[0]), int(out_hw[1]), c), method="bicubic", antialias=True)
    return jnp.clip(y, -1.0, 1.0)


class Guide(NamedTuple):
    """Data consistency for the reverse process (see diffsr_jax.consistency): every predicted x0
    is pulled towards ``ref`` = L y through the projector rows ⊗ cols. All leaves are traced."""
    ref: jnp.ndarray        # (B, H, W, C)
    rows: jnp.ndarray       # (H, H) or (B, H, H)
    cols: jnp.ndarray       # (W, W) or (B, W, W)
    strength: jnp.ndarray   # λ, scalar or (B,)


def whole_image_guide(ops, ref: jnp.ndarray, strength) -> Guide:
    """The Guide of whole images with operator ``ops`` (consistency.image_operator) and reference
    ``ref`` = L y (B, H, W, C); the projectors are shared by the batch."""
    return Guide(ref=ref, rows=jnp.asarray(ops[0].projector, ref.dtype), cols=jnp.asarray(ops[1].projector, ref.dtype),
                 strength=jnp.asarray(strength, ref.dtype))


def make_eps_fn(model, params, self_ensemble: int = 1):
    """ε_θ(x, t) of ``model`` with ``params``, optionally averaged over ``self_ensemble`` flips and
    rotations (see diffsr_jax.ensemble)."""
    return ensemble.self_ensemble(lambda x, t: model.apply({"params": params}, x, t), self_ensemble)


def restore_batch(model, params, schedule: Schedule, x_t: jnp.ndarray, t: jnp.ndarray, key: jax.Array,
                  *, num_steps: int, sampler: str = "ddim", eta: float = 0.0, guide: Optional[Guide] = None,
                  guide_iters: int = 1, self_ensemble: int = 1) -> jnp.ndarray:
    """Reverse process from the noised batch x_t at (traced) step(s) t down to 0. Pure.

    ``guide`` (optional) corrects each predicted x0 towards the input (data consistency).
    ``self_ensemble`` (static: 1, 2, 4 or 8) averages ε over that many flips/rotations.
    """
    kwargs = {"eta": eta} if sampler.startswith("ddim") else {}
    if guide is not None:
        kwargs["correct_x0"] = consistency.x0_corrector(guide.ref, guide.rows, guide.cols, guide.strength,
                                                        guide_iters)
    return SAMPLERS[sampler](make_eps_fn(model, params, self_ensemble), schedule, x_t, t, key, num_steps=num_steps,
                             **kwargs)


def diffsr(model, params, schedule: Schedule, x_up: jnp.ndarray, t: jnp.ndarray, key: jax.Array,
           *, num_steps: int, sampler: str = "ddim", eta: float = 0.0, guide: Optional[Guide] = None,
           guide_iters: int = 1, self_ensemble: int = 1) -> jnp.ndarray:
    """The whole method on an already-upsampled batch in [-1, 1]: noise to t, then restore.

    (params, schedule, lr-upsampled batch, t, key) → hr batch; jit/vmap it freely (``model``,
    ``num_steps``, ``sampler``, ``self_ensemble`` are the static parts).
    """
    k_noise, k_sample = jax.random.split(key)
    noise = jax.random.normal(k_noise, x_up.shape, x_up.dtype)
    x_t = q_sample(schedule, x_up, jnp.broadcast_to(jnp.asarray(t, jnp.int32), x_up.shape[:1]), noise)
    return restore_batch(model, params, schedule, x_t, t, k_sample, num_steps=num_steps, sampler=sampler, eta=eta,
                         guide=guide, guide_iters=guide_iters, self_ensemble=self_ensemble)


def diffsr_from_lr(model, params, schedule: Schedule, lr: jnp.ndarray, t: jnp.ndarray, key: jax.Array,
                   *, out_hw: tuple[int, int], num_steps: int, sampler: str = "ddim", eta: float = 0.0,
                   consistency_strength=None, lift: str = "pinv", guide_iters: int = 1,
                   self_ensemble: int = 1) -> jnp.ndarray:
    """Low-resolution batch in [-1, 1] → HR batch of size ``out_hw`` (static; must be divisible
    by the model's stride): bicubic upsample, then :func:`diffsr`. Pure, jit/vmap-able over t.

    ``consistency_strength`` (λ, may be traced; None = plain Diff-SR) turns on data consistency
    with the given ``lift`` ("pinv" or "bicubic", see diffsr_jax.consistency).
    """
    guide = None
    if consistency_strength is not None:
        ops = consistency.image_operator(out_hw, lr.shape[1:3], lift)
        guide = whole_image_guide(ops, consistency.lift(ops, lr), consistency_strength)
    return diffsr(model, params, schedule, upsample(lr, out_hw), t, key, num_steps=num_steps,
                  sampler=sampler, eta=eta, guide=guide, guide_iters=guide_iters, self_ensemble=self_ensemble)


# One compiled program per (model, tile shape, num_steps, sampler, ensemble size); t, params and keys
# are traced.
restore_batch_jit = jax.jit(restore_batch, static_argnames=("model", "num_steps", "sampler", "guide_iters",
                                                            "self_ensemble"))


# ---------------------------------------------------------------------------------------------
# Host-side tiling helpers (numpy: they only move pixels).


def pad_to_multiple(x: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pads HWC (or NHWC) spatial dims up to a multiple; returns the original (H, W)."""
    h, w = x.shape[-3], x.shape[-2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    pad = [(0, 0)] * (x.ndim - 3) + [(0, ph), (0, pw), (0, 0)]
    mode = "reflect" if ph < h and pw < w else "edge"  # reflect needs pad < size
    return np.pad(x, pad, mode=mode), (h, w)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering [0, length) with tiles of ``tile`` overlapping by ≥ ``overlap``."""
    if length <= tile:
        return [0]
    stride = max(tile - overlap, 1)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    w = np.ones(length, np.float32)
    if overlap > 0:
        r = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        if not at_start:
            w[:overlap] = np.minimum(w[:overlap], r)
        if not at_end:
            w[-overlap:] = np.minimum(w[-overlap:], r[::-1])
    return w


def tile_windows(h: int, w: int, tile: int, overlap: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """(y, x, blend weight) per tile; weights ramp linearly across overlaps, 1 at image borders."""
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    for i, y in enumerate(ys):
        wy = _ramp(th, overlap, i == 0, i == len(ys) - 1)
        for j, x in enumerate(xs):
            wx = _ramp(tw, overlap, j == 0, j == len(xs) - 1)
            yield y, x, wy[:, None] * wx[None, :]


def blend_tiles(shape_hw: tuple[int, int], channels: int, placed) -> np.ndarray:
    """Weighted average of (y, x, weight, tile) entries into an H×W×C image."""
    acc = np.zeros((*shape_hw, channels), np.float64)
    norm = np.zeros((*shape_hw, 1), np.float64)
    for y, x, wgt, tile in placed:
        th, tw = wgt.shape
        acc[y:y + th, x:x + tw] += wgt[..., None] * tile
        norm[y:y + th, x:x + tw] += wgt[..., None]
    return (acc / np.maximum(norm, 1e-12)).astype(np.float32)

