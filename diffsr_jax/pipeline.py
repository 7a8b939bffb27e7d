"""Diff-SR as pure functions: upsample → inject forward noise to step t → reverse diffusion from t.

The compiled core (`restore_batch`) takes the noise step ``t`` as a traced array, so one program
serves every noise level, and it is vmappable over images and t. Large outputs are processed as
fixed-size overlapping tiles: tiles of one shape share one compilation across images (a side
shorter than the tile gives a narrower tile), and memory stays bounded. Tiles see the *same* globally drawn injection noise and DDIM
(η = 0) is deterministic afterwards, so overlaps agree up to the network's border effects, which
a linear-ramp blend hides.
"""

from __future__ import annotations

import functools
from typing import Iterator, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from diffsr_jax import consistency, ensemble, sharding
from diffsr_jax.samplers import SAMPLERS
from diffsr_jax.schedules import Schedule, q_sample


def upsample(x: jnp.ndarray, out_hw: tuple[int, int]) -> jnp.ndarray:
    """Bicubic resize of an NHWC batch (antialiased when shrinking), clipped to [-1, 1]."""
    b, _, _, c = x.shape
    y = jax.image.resize(x, (b, int(out_hw[0]), int(out_hw[1]), c), method="bicubic", antialias=True)
    return jnp.clip(y, -1.0, 1.0)


class Guide(NamedTuple):
    """Data consistency for the reverse process (see diffsr_jax.consistency): every predicted x0
    is pulled towards ``ref`` = L y through the projector rows ⊗ cols, each given as a band
    (n, 2K+1) of diagonals. All leaves are traced."""
    ref: jnp.ndarray        # (B, H, W, C)
    rows: jnp.ndarray       # (H, 2K+1) or (B, H, 2K+1)
    cols: jnp.ndarray       # (W, 2K'+1) or (B, W, 2K'+1)
    strength: jnp.ndarray   # λ, scalar or (B,)
    noise: jnp.ndarray      # the input's noise std (model units), scalar or (B,); 0 = clean


def whole_image_guide(ops, ref, strength, noise=0.0) -> Guide:
    """The Guide of whole images with operator ``ops`` (consistency.image_operator) and reference
    ``ref`` = L y (B, H, W, C); the projector bands are shared by the batch. ``noise``: the
    input's noise std in model units (see :func:`diffsr_jax.consistency.noise_weight`)."""
    rows, cols = consistency.guide_bands(ops)
    ref = jnp.asarray(ref, jnp.float32)
    return Guide(ref=ref, rows=jnp.asarray(rows), cols=jnp.asarray(cols), strength=jnp.asarray(strength, ref.dtype),
                 noise=jnp.asarray(noise, ref.dtype))


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
                                                        guide_iters, noise=guide.noise,
                                                        alphas_cumprod=schedule.alphas_cumprod)
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
    with the given ``lift`` ("pinv" or "bicubic", see diffsr_jax.consistency); its reference is
    computed on the host, so ``lr`` must then be concrete (not traced).
    """
    guide = None
    if consistency_strength is not None:
        if isinstance(lr, jax.core.Tracer):
            raise ValueError("diffsr_from_lr with consistency needs a concrete lr (its reference L y is built "
                             "on the host); build a Guide with whole_image_guide and call diffsr instead")
        ops = consistency.image_operator(out_hw, lr.shape[1:3], lift)
        guide = whole_image_guide(ops, consistency.lift(ops, lr), consistency_strength)
    return diffsr(model, params, schedule, upsample(lr, out_hw), t, key, num_steps=num_steps,
                  sampler=sampler, eta=eta, guide=guide, guide_iters=guide_iters, self_ensemble=self_ensemble)


# One compiled program per (model, tile shape, num_steps, sampler, ensemble size); t, params and keys
# are traced.
restore_batch_jit = jax.jit(restore_batch, static_argnames=("model", "num_steps", "sampler", "guide_iters",
                                                            "self_ensemble"))


# ---------------------------------------------------------------------------------------------
# Restoration spread over a device mesh: pure programs built per (mesh, statics) and cached, so
# repeated calls hit jit's cache (a fresh jax.jit of a fresh partial never would).


@functools.lru_cache(maxsize=None)
def sharded_restore_fn(mesh, model, *, num_steps: int, sampler: str = "ddim", eta: float = 0.0,
                       t_batched: bool = False, self_ensemble: int = 1, guide_iters: int = 1):
    """The compiled :func:`restore_batch` with the batch split over the mesh's ``data`` axis:
    ``fn(params, schedule, x_t, t, key, guide)``. The guide (or None: no leaves, so its sharding
    is moot) has one row per image in every leaf and is split with its row; ``t`` is split too
    when ``t_batched``, else replicated."""
    fn = functools.partial(restore_batch, model, num_steps=num_steps, sampler=sampler, eta=eta,
                           self_ensemble=self_ensemble, guide_iters=guide_iters)
    rep, dat = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    return jax.jit(lambda p, s, x, t, k, g: fn(p, s, x, t, k, guide=g),
                   in_shardings=(rep, rep, dat, dat if t_batched else rep, rep, dat), out_shardings=dat)


def restore_batch_on_mesh(mesh, model, params, schedule: Schedule, x_t, t, key: jax.Array, *, num_steps: int,
                          sampler: str = "ddim", eta: float = 0.0, self_ensemble: int = 1, guide=None,
                          guide_iters: int = 1) -> np.ndarray:
    """:func:`restore_batch` with the batch split over the mesh's ``data`` axis.

    ``x_t`` (B, H, W, C) and ``t`` (scalar or (B,)) are host arrays; B need not divide the device
    count (the batch is padded). ``guide`` (optional) is a :class:`Guide` with one row per image
    in every leaf (ref (B, H, W, C), rows (B, H, H), cols (B, W, W), strength (B,)), as tiles
    have; it is padded and split like the batch. Deterministic DDIM (η = 0) gives the unsharded
    result up to float rounding; stochastic samplers draw their noise for the padded batch, which
    leaves the first B rows' draws unchanged (partitionable threefry) but is not guaranteed across
    JAX versions. Returns a numpy array (B, H, W, C) on every process.
    """
    x_t, t, b = sharding.pad_batch(mesh, x_t, t)
    if guide is not None:
        leaves = [np.asarray(leaf, np.float32) for leaf in guide]
        if any(leaf.ndim == 0 or leaf.shape[0] != b for leaf in leaves):
            raise ValueError(f"a sharded guide needs one row per image ({b}) in every leaf, got shapes "
                             f"{[leaf.shape for leaf in leaves]}")
        guide = type(guide)(*(sharding.pad_rows(leaf, sharding.data_size(mesh)) for leaf in leaves))
    fn = sharded_restore_fn(mesh, model, num_steps=int(num_steps), sampler=sampler, eta=float(eta),
                            t_batched=t.ndim == 1, self_ensemble=int(self_ensemble), guide_iters=int(guide_iters))
    return sharding.to_host(fn(params, schedule, x_t, t, key, guide))[:b]


@functools.lru_cache(maxsize=None)
def spatial_restore_fn(mesh, model, *, num_steps: int, sampler: str = "ddim", eta: float = 0.0,
                       self_ensemble: int = 1, guide_iters: int = 1):
    """The compiled :func:`restore_batch` with each image's rows split over ``data``:
    ``fn(params, schedule, x_t, t, key, guide)``, everything replicated in and out."""
    rows = sharding.height_sharding(mesh)

    def fn(params, schedule, x_t, t, key, guide):  # guide: a Guide or None
        # A constraint, not an input sharding: it also splits heights that the device count does
        # not divide (XLA pads the last shard). The guide's projectors mix rows: left whole.
        x_t = jax.lax.with_sharding_constraint(x_t, rows)
        out = restore_batch(model, params, schedule, x_t, t, key, num_steps=num_steps, sampler=sampler,
                            eta=eta, guide=guide, guide_iters=guide_iters, self_ensemble=self_ensemble)
        return jax.lax.with_sharding_constraint(out, rows)

    rep = sharding.replicated(mesh)
    return jax.jit(fn, in_shardings=(rep,) * 6, out_shardings=rep)


def restore_spatial(mesh, model, params, schedule: Schedule, x_t, t, key: jax.Array, *, num_steps: int,
                    sampler: str = "ddim", eta: float = 0.0, self_ensemble: int = 1, guide=None,
                    guide_iters: int = 1) -> np.ndarray:
    """:func:`restore_batch` with each image's rows split over the mesh's ``data`` axis: the way to
    spread *one* image (a batch of 1 cannot be split by batch) over several devices. XLA (GSPMD)
    partitions every convolution by height and exchanges the border rows each needs from its
    neighbour; GroupNorm's statistics and the guide's row projector become cross-device
    reductions. Same result as the one-device call up to float rounding (speed:
    benchmarks/scaling.py). ``guide`` (optional) is replicated. Returns a numpy array
    (B, H, W, C) on every process.
    """
    fn = spatial_restore_fn(mesh, model, num_steps=int(num_steps), sampler=sampler, eta=float(eta),
                            self_ensemble=int(self_ensemble), guide_iters=int(guide_iters))
    return sharding.to_host(fn(params, schedule, np.asarray(x_t, np.float32), np.asarray(t, np.int32), key, guide))


@functools.lru_cache(maxsize=None)
def sharded_diffsr_fn(mesh, model, *, out_hw: tuple, num_steps: int, sampler: str = "ddim", eta: float = 0.0,
                      t_batched: bool = False, self_ensemble: int = 1):
    """The compiled :func:`diffsr_from_lr` with the batch split over ``data``:
    ``fn(params, schedule, lr, t, key)``."""
    fn = functools.partial(diffsr_from_lr, model, out_hw=out_hw, num_steps=num_steps, sampler=sampler, eta=eta,
                           self_ensemble=self_ensemble)
    rep, dat = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    return jax.jit(fn, in_shardings=(rep, rep, dat, dat if t_batched else rep, rep), out_shardings=dat)


def diffsr_from_lr_on_mesh(mesh, model, params, schedule: Schedule, lr, t, key: jax.Array, *,
                           out_hw: tuple[int, int], num_steps: int, sampler: str = "ddim", eta: float = 0.0,
                           self_ensemble: int = 1) -> np.ndarray:
    """Batch upscaling (:func:`diffsr_from_lr`: bicubic up, noise to t, restore) split over
    ``data``; ``lr`` (B, h, w, C) in [-1, 1], ``t`` scalar or (B,). The injection noise is drawn
    for the padded batch, whose first B rows equal the unpadded draw under JAX's default
    partitionable threefry, so the result matches the unsharded call up to float rounding."""
    lr, t, b = sharding.pad_batch(mesh, lr, t)
    fn = sharded_diffsr_fn(mesh, model, out_hw=tuple(int(s) for s in out_hw), num_steps=int(num_steps),
                           sampler=sampler, eta=float(eta), t_batched=t.ndim == 1, self_ensemble=int(self_ensemble))
    return sharding.to_host(fn(params, schedule, lr, t, key))[:b]


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

