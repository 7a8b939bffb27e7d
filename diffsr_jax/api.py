"""The user-facing Python API: load a model once, upscale arrays or images to any size.

    import diffsr_jax
    out = diffsr_jax.upscale(image_uint8, "1080p")            # numpy in, numpy out
    model = diffsr_jax.load_model()                           # bundled checkpoint
    hr, info = diffsr_jax.upscale_array(img01, (540, 960), model=model, noise=("fraction", 0.3))
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffsr_jax import checkpointing, ensemble, pipeline, sharding
from diffsr_jax.defaults import (DEFAULT_COLOUR_FIX, DEFAULT_CONSISTENCY, DEFAULT_LIFT, DEFAULT_SELF_ENSEMBLE,
                                 DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS)
from diffsr_jax import consistency as consistency_mod
from diffsr_jax.models import abstract_params, build_unet
from diffsr_jax.schedules import Schedule, make_schedule, q_sample

DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "default_model")
AUTO_TILE_THRESHOLD = 384  # outputs with a side above this are processed in tiles
DEFAULT_TILE = 256

# Used when a checkpoint has no prf.json: noise fraction of T per scale, interpolated in log2(scale).
FALLBACK_NOISE_TABLE = {"scales": [1.0, 2.0, 4.0, 8.0], "noise_fraction": [0.0, 0.2, 0.4, 0.55],
                        "rule": "paper defaults (Fig. 4/6): ≈20% of T at 2×, ≈40% at 4×, 50–65% at 8×"}


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    model: Any               # the Linen module (static, hashable)
    params: Any              # its parameters (device arrays)
    schedule: Schedule
    meta: dict               # model.json
    noise_table: dict        # prf.json or the fallback
    directory: str

    @property
    def stride(self) -> int:
        return self.model.total_stride

    @property
    def num_timesteps(self) -> int:
        return self.schedule.num_steps


def load_model(checkpoint: Optional[str] = None) -> LoadedModel:
    """Restores an exported model without running ``init`` (abstract tree via eval_shape)."""
    directory = os.path.abspath(os.path.expanduser(checkpoint or DEFAULT_CHECKPOINT))
    if not os.path.isdir(directory):
        raise checkpointing.CheckpointError(f"checkpoint directory not found: {directory}")
    meta = checkpointing.read_model_meta(directory)
    try:
        model = build_unet(**meta["model"])
        spec = meta["schedule"]
        schedule = make_schedule(spec["name"], int(spec["T"]), float(spec.get("beta_start", 1e-4)),
                                 float(spec.get("beta_end", 0.02)))
    except (ValueError, KeyError, TypeError) as e:
        raise checkpointing.CheckpointError(f"corrupt checkpoint metadata in {directory}: {e}") from None
    params = checkpointing.load_params(directory, abstract_params(model))
    return LoadedModel(model=model, params=params, schedule=schedule, meta=meta,
                       noise_table=read_noise_table(directory), directory=directory)


def read_noise_table(directory: str) -> dict:
    path = os.path.join(directory, "prf.json")
    if not os.path.exists(path):
        return dict(FALLBACK_NOISE_TABLE)
    try:
        with open(path) as f:
            table = json.load(f)
        if len(table["scales"]) != len(table["noise_fraction"]) or not table["scales"]:
            raise ValueError("scales and noise_fraction differ in length")
        return table
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise checkpointing.CheckpointError(f"corrupt PRF table {path}: {e}") from None


def auto_noise_fraction(table: dict, scale: float) -> float:
    """t*/T for any scale: linear in log2(scale) between calibrated scales, clamped outside."""
    scales = np.log2(np.maximum(np.asarray(table["scales"], np.float64), 1e-6))
    order = np.argsort(scales)
    fr = np.asarray(table["noise_fraction"], np.float64)[order]
    return float(np.interp(math.log2(max(scale, 1e-6)), scales[order], fr))


def noise_table_for(table: dict, consistent: bool) -> dict:
    """The calibrated table of a mode: prf.json's top level is plain Diff-SR; a consistent run
    uses ``modes["consistent"]`` when the checkpoint was calibrated for it (else the plain one)."""
    if consistent:
        return table.get("modes", {}).get("consistent", table)
    return table


def _calibrated(model: LoadedModel, consistent: bool, key: str):
    """What the mode's noise table records of how it was calibrated (``calibration[key]``), or None."""
    return noise_table_for(model.noise_table, consistent).get("calibration", {}).get(key)


def default_steps(model: LoadedModel, consistent: bool = False) -> int:
    """The sampler step count a mode runs with when none is given: the count its noise table was
    calibrated with (a table's t* holds only for that count: fewer steps from a large t cannot
    rebuild what more can), else DEFAULT_STEPS for tables that do not record it."""
    steps = _calibrated(model, consistent, "steps")
    return int(steps) if isinstance(steps, int) and steps >= 1 else DEFAULT_STEPS


def default_sampler(model: LoadedModel, consistent: bool = False) -> str:
    """The reverse sampler a mode runs with when none is given: the one its noise table was
    calibrated with (calibration.sampler), else DEFAULT_SAMPLER (tables before 2026-11-29 ran it)."""
    name = _calibrated(model, consistent, "sampler")
    return name if name in SAMPLERS else DEFAULT_SAMPLER


def resolve_noise_step(model: LoadedModel, noise, scale: float, consistent: bool = False) -> int:
    """noise: ("auto", None) | ("fraction", f) | ("step", t) → an int step in [0, T]."""
    kind, value = noise if isinstance(noise, tuple) else (("auto", None) if noise == "auto" else
                                                          ("fraction", float(noise)))
    T = model.num_timesteps
    if kind == "auto":
        table = noise_table_for(model.noise_table, consistent)
        return int(round(auto_noise_fraction(table, scale) * T))
    if kind == "fraction":
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"noise fraction must be in [0, 1], got {value}")
        return int(round(float(value) * T))
    if kind == "step":
        if not 0 <= int(value) <= T:
            raise ValueError(f"noise step must be in [0, {T}], got {value}")
        return int(value)
    raise ValueError(f"unknown noise spec {noise!r}")


def _tile_guide(projectors, ref, windows, th, tw, strength):
    """Per-tile slices of the global consistency projectors (batched matrices, one per tile), as
    host arrays (the single-device call places them, a sharded one splits them)."""
    rows, cols = zip(*(consistency_mod.tile_operator(projectors, y, x, th, tw) for y, x, _ in windows))
    refs = np.stack([ref[y:y + th, x:x + tw] for y, x, _ in windows])
    return pipeline.Guide(ref=refs, rows=np.stack(rows).astype(np.float32), cols=np.stack(cols).astype(np.float32),
                          strength=np.full((len(windows),), strength, np.float32))


def tile_batch_for(tile_batch: int, mesh=None) -> int:
    """Tiles per compiled call: ``tile_batch`` rounded up to a multiple of the mesh's data axis, so
    every device gets the same whole number of tiles (4 on 2 devices: 2 each)."""
    n = 1 if mesh is None else sharding.data_size(mesh)
    return -(-max(int(tile_batch), 1) // n) * n


def _run_tiles(model: LoadedModel, x_t: np.ndarray, t: int, key, *, tile: int, overlap: int,
               num_steps: int, tile_batch: int, progress: bool, cons=None, self_ensemble: int = 1,
               sampler: str = DEFAULT_SAMPLER, mesh=None) -> np.ndarray:
    h, w, c = x_t.shape
    tile_batch = tile_batch_for(tile_batch, mesh)
    windows = list(pipeline.tile_windows(h, w, tile, overlap))
    th, tw = windows[0][2].shape
    placed, iters = [], 1
    if cons is not None:  # the global projectors, once per image (each tile slices them)
        ops, ref, strength, iters = cons
        projectors = (ops[0].projector, ops[1].projector)
    batches = range(0, len(windows), tile_batch)
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, desc="tiles", unit="batch", leave=False)
    for b0 in batches:
        chunk = windows[b0:b0 + tile_batch]
        # constant batch shape → no recompilation for the last batch
        padded = chunk + [chunk[-1]] * (tile_batch - len(chunk))
        tiles = np.stack([x_t[y:y + th, x:x + tw] for y, x, _ in padded])
        guide = None
        if cons is not None:
            guide = _tile_guide(projectors, ref, padded, th, tw, strength)
        if mesh is not None:  # the batch of tiles split over the devices
            out = sharding.restore_batch(mesh, model.model, model.params, model.schedule, tiles,
                                         np.full((tile_batch,), t, np.int32), key, num_steps=num_steps,
                                         sampler=sampler, self_ensemble=self_ensemble, guide=guide,
                                         guide_iters=iters)
        else:
            out = np.asarray(pipeline.restore_batch_jit(
                model.model, model.params, model.schedule, tiles, np.full((tile_batch,), t, np.int32), key,
                num_steps=num_steps, sampler=sampler, guide=guide, guide_iters=iters, self_ensemble=self_ensemble))
        placed += [(y, x, wgt, out[i]) for i, (y, x, wgt) in enumerate(chunk)]
    return pipeline.blend_tiles((h, w), c, placed)


def upscale_array(image: np.ndarray, out_hw: tuple[int, int], *, model: LoadedModel, noise=("auto", None),
                  steps: Optional[int] = None, seed: int = 0, tile: Optional[int] = None,
                  tile_overlap: int = 32, tile_batch: int = 4, progress: bool = False,
                  consistency: Optional[float] = None, lift: Optional[str] = None, consistency_iters: int = 1,
                  colour_fix: Optional[str] = None, self_ensemble: Optional[int] = None,
                  sampler: Optional[str] = None, mesh=None) -> tuple[np.ndarray, dict]:
    """Diff-SR on one float image HxWx3 in [0, 1] → (out_h x out_w x 3 in [0, 1], info).

    ``tile=None`` picks whole-image processing for outputs up to AUTO_TILE_THRESHOLD per side and
    DEFAULT_TILE tiles above; ``tile=0`` forces whole-image processing.
    ``consistency`` = λ in [0, 1] (0 = plain Diff-SR; None = DEFAULT_CONSISTENCY): each predicted
    x0 is projected towards the input's constraint A(x0) = input (A = the antialiased bicubic
    downscale), and so is the final output. ``lift`` "pinv" | "bicubic" (see
    diffsr_jax.consistency), ``colour_fix`` "none" | "wavelet" | "adain".
    ``self_ensemble`` 1 (off) | 2 | 4 | 8 (None = DEFAULT_SELF_ENSEMBLE): average the model's ε
    over that many flips/rotations (diffsr_jax.ensemble); costs that many network evaluations.
    ``steps``: DDIM steps from t (None = :func:`default_steps`, the count the mode's noise table
    was calibrated with); ``sampler``: a name of diffsr_jax.samplers.SAMPLERS (None =
    :func:`default_sampler`, the one the table was calibrated with).
    ``mesh``: a device mesh (:func:`diffsr_jax.sharding.make_mesh`, e.g. from :func:`local_mesh`)
    to spread the work over: each batch of tiles is split over its devices (``tile_batch`` rounded
    up to a multiple of their count), a whole image by rows (:func:`diffsr_jax.sharding.restore_spatial`).
    None = one device. The output equals the one-device output up to float rounding.
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    out_h, out_w = int(out_hw[0]), int(out_hw[1])
    strength = DEFAULT_CONSISTENCY if consistency is None else float(consistency)
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"consistency strength must be in [0, 1], got {consistency}")
    if out_h < image.shape[0] or out_w < image.shape[1]:
        strength = 0.0  # A is a downscale: there is no constraint for a smaller output
    lift = DEFAULT_LIFT if lift is None else lift
    if lift not in consistency_mod.LIFTS:
        raise ValueError(f"lift must be one of {', '.join(consistency_mod.LIFTS)}, got {lift!r}")
    colour_fix = DEFAULT_COLOUR_FIX if colour_fix is None else colour_fix
    if colour_fix not in consistency_mod.COLOUR_FIXES:
        raise ValueError(f"colour fix must be one of {', '.join(consistency_mod.COLOUR_FIXES)}, got {colour_fix!r}")
    if int(consistency_iters) < 1:
        raise ValueError("consistency_iters must be ≥ 1")
    self_ensemble = ensemble.check_size(DEFAULT_SELF_ENSEMBLE if self_ensemble is None else self_ensemble)
    scale = max(out_h / image.shape[0], out_w / image.shape[1])
    t = resolve_noise_step(model, noise, scale, consistent=strength > 0)
    num_steps = default_steps(model, consistent=strength > 0) if steps is None else int(steps)
    if num_steps < 1:
        raise ValueError("steps must be ≥ 1")
    sampler = default_sampler(model, consistent=strength > 0) if sampler is None else sampler
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if mesh is not None and sharding.data_size(mesh) == 1:
        mesh = None  # one device: the plain jitted calls, no sharding machinery
    key = jax.random.key(seed)
    k_noise, k_sample = jax.random.split(key)

    lr = jnp.asarray(image[None] * 2.0 - 1.0)
    x_up = np.asarray(pipeline.upsample(lr, (out_h, out_w)))[0]
    x_up, _ = pipeline.pad_to_multiple(x_up, model.stride)
    cons = None
    if strength > 0:
        ops = consistency_mod.image_operator((out_h, out_w), image.shape[:2], lift, padded_hw=x_up.shape[:2])
        ref = np.asarray(consistency_mod.lift(ops, lr))[0]
        cons = (ops, ref, strength, int(consistency_iters))
    # how many devices the denoising ran on (none runs at t = 0)
    devices = 1 if (mesh is None or t == 0) else sharding.data_size(mesh)
    if t == 0:
        out = x_up
    else:
        noise_img = jax.random.normal(k_noise, x_up.shape, jnp.float32)
        x_t = np.asarray(q_sample(model.schedule, jnp.asarray(x_up), jnp.int32(t), noise_img))
        if tile is None:
            tile = DEFAULT_TILE if max(out_h, out_w) > AUTO_TILE_THRESHOLD else 0
        if tile:
            tile = max(model.stride, tile - tile % model.stride)
            overlap = min(int(tile_overlap), tile // 2)
            out = _run_tiles(model, x_t, t, k_sample, tile=tile, overlap=overlap, num_steps=num_steps,
                             tile_batch=tile_batch, progress=progress, cons=cons, self_ensemble=self_ensemble,
                             sampler=sampler, mesh=mesh)
        else:
            guide = None
            if cons is not None:
                guide = pipeline.whole_image_guide(ops, jnp.asarray(ref[None]), strength)
            if mesh is not None:  # the image's rows split over the devices
                out = sharding.restore_spatial(mesh, model.model, model.params, model.schedule, x_t[None],
                                               np.full((1,), t, np.int32), k_sample, num_steps=num_steps,
                                               sampler=sampler, guide=guide, guide_iters=int(consistency_iters),
                                               self_ensemble=self_ensemble)[0]
            else:
                out = np.asarray(pipeline.restore_batch_jit(model.model, model.params, model.schedule,
                                                            jnp.asarray(x_t[None]), jnp.full((1,), t, jnp.int32),
                                                            k_sample, num_steps=num_steps, sampler=sampler,
                                                            guide=guide,
                                                            guide_iters=int(consistency_iters),
                                                            self_ensemble=self_ensemble))[0]
    out = jnp.asarray(out[None, :out_h, :out_w])
    if colour_fix != "none":
        out = consistency_mod.colour_fix(out, jnp.asarray(x_up[None, :out_h, :out_w]), colour_fix)
    if strength > 0:
        # The last word: exact (pinv) or iterated (bicubic) projection of the whole output, which
        # also repairs what tiles could not see across their borders.
        final_ops = consistency_mod.image_operator((out_h, out_w), image.shape[:2], lift)
        out = consistency_mod.project_onto_lr(out, lr, final_ops, strength, int(consistency_iters))
    out = np.clip((np.asarray(out)[0] + 1.0) / 2.0, 0.0, 1.0)
    info = {"t": t, "noise_fraction": t / model.num_timesteps, "steps": num_steps, "sampler": sampler,
            "scale": scale, "tile": tile or 0, "consistency": strength, "lift": lift if strength > 0 else None,
            "colour_fix": colour_fix, "self_ensemble": self_ensemble, "devices": devices}
    return out, info


def local_mesh():
    """A data-parallel mesh over this process's devices (all of them: CPU devices, GPUs or TPU
    cores), for :func:`upscale_array`'s ``mesh``; None when there is only one."""
    devices = jax.local_devices()
    return sharding.make_mesh(devices=devices) if len(devices) > 1 else None


def upscale(images, target, *, noise="auto", steps: Optional[int] = None, seed: int = 0,
            checkpoint: Optional[str] = None, fit: str = "contain", model: Optional[LoadedModel] = None,
            tile: Optional[int] = None, allow_downscale: bool = False, consistency: Optional[float] = None,
            lift: Optional[str] = None, colour_fix: Optional[str] = None, self_ensemble: Optional[int] = None,
            mesh=None):
    """Upscale one image or a list of images (uint8/uint16/float HxW[xC] numpy arrays).

    ``target``: "2x", "2.7", "1920x1080", "1080p", ... (see diffsr_jax.targets). ``noise``: "auto",
    a fraction of T (0.35) or "t=350". ``consistency``, ``lift``, ``colour_fix``, ``self_ensemble``,
    ``mesh`` (the denoising spread over devices, e.g. ``mesh=local_mesh()``): see :func:`upscale_array`.
    Returns arrays of the input's dtype and channel count.
    """
    from diffsr_jax import targets

    single = isinstance(images, np.ndarray)
    batch: Sequence[np.ndarray] = [images] if single else list(images)
    tgt = targets.parse_target(target) if isinstance(target, str) else target
    noise_spec = targets.parse_noise(noise) if isinstance(noise, str) else ("fraction", float(noise))
    model = model or load_model(checkpoint)
    results = []
    for i, img in enumerate(batch):
        rgb, alpha, restore_dtype = _to_float_rgb(np.asarray(img))
        plan = targets.output_size(rgb.shape[:2], tgt, fit=fit, allow_downscale=allow_downscale)
        out, _ = upscale_array(rgb, (plan.out_h, plan.out_w), model=model, noise=noise_spec, steps=steps,
                               seed=seed, tile=tile, consistency=consistency, lift=lift,
                               colour_fix=colour_fix, self_ensemble=self_ensemble, mesh=mesh)
        # Alpha is resized to the full model output, then both are cropped together (cover).
        results.append(targets.apply_crop(restore_dtype(out, alpha, out.shape[:2]), plan))
    return results[0] if single else results


def _to_float_rgb(img: np.ndarray):
    """→ (float RGB in [0,1], alpha or None, fn mapping a float RGB result back to the input's form)."""
    if img.dtype == np.uint8:
        scale = 255.0
    elif img.dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(img.dtype, np.floating):
        scale = 1.0
    else:
        raise ValueError(f"unsupported image dtype {img.dtype}")
    x = img.astype(np.float32) / scale
    gray = x.ndim == 2 or x.shape[-1] in (1, 2)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"expected HxW, HxWx1..4 image, got shape {img.shape}")
    alpha = x[..., -1] if x.shape[-1] in (2, 4) else None
    rgb = x[..., :3] if x.shape[-1] >= 3 else np.repeat(x[..., :1], 3, axis=-1)

    def back(out: np.ndarray, a, out_hw) -> np.ndarray:
        y = out.mean(axis=-1, keepdims=True) if gray else out
        if a is not None:
            a_up = np.asarray(jax.image.resize(jnp.asarray(a), out_hw, method="bicubic"))
            y = np.concatenate([y, np.clip(a_up, 0, 1)[..., None]], axis=-1)
        if img.ndim == 2:
            y = y[..., 0]
        if scale == 1.0:
            return y.astype(img.dtype)
        return np.round(np.clip(y, 0, 1) * scale).astype(img.dtype)

    return rgb, alpha, back
