"""The user-facing Python API: load a model once, upscale arrays or images to any size.

    import diffsr_jax
    out = diffsr_jax.upscale(image_uint8, "1080p")            # numpy in, numpy out
    model = diffsr_jax.load_model()                           # bundled checkpoint
    hr, info = diffsr_jax.upscale_array(img01, (540, 960), model=model, noise=("fraction", 0.3))
    opts = diffsr_jax.InferenceOptions(noise="t=100", self_ensemble=8)
    hr, info = diffsr_jax.upscale_array(img01, (540, 960), model=model, options=opts)
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from diffsr_jax import adaptation
from diffsr_jax import consistency as consistency_mod
from diffsr_jax import degradation as degradation_mod
from diffsr_jax import image_arrays, noise_table, pipeline, samplers, sharding, targets
from diffsr_jax.image_arrays import RANGE_TOLERANCE, check_float_image  # noqa: F401  (re-exported)
from diffsr_jax.loading import DEFAULT_CHECKPOINT, LoadedModel, load_model  # noqa: F401  (re-exported)
from diffsr_jax.defaults import DEFAULT_SAMPLER
from diffsr_jax.degradation import Degradation
from diffsr_jax.options import InferenceOptions, parse_noise
from diffsr_jax.schedules import q_sample

AUTO_TILE_THRESHOLD = 384  # outputs with a side above this are processed in tiles
DEFAULT_TILE = 256


def auto_noise_fraction(table, scale: float) -> float:
    """t*/T for any scale from a mode's table (a :class:`noise_table.ModeTable` or its JSON):
    linear in log2(scale) between calibrated scales, clamped outside."""
    if isinstance(table, noise_table.ModeTable):
        return table.fraction_at(scale)
    return noise_table.interpolate_fraction(table["scales"], table["noise_fraction"], scale)


def default_steps(model: LoadedModel, consistent: bool = False) -> int:
    """The sampler step count a mode runs with when none is given: the count its noise table was
    calibrated with (:attr:`noise_table.ModeTable.steps`)."""
    return model.noise_table.mode(consistent).steps


def default_sampler(model: LoadedModel, consistent: bool = False) -> str:
    """The reverse sampler a mode runs with when none is given: the one its noise table was
    calibrated with (:attr:`noise_table.ModeTable.sampler`)."""
    return model.noise_table.mode(consistent).sampler


def resolve_noise_step(model: LoadedModel, noise, scale: float, consistent: bool = False, sigma: float = 0.0) -> int:
    """noise ("auto", a fraction, "t=N" or a parsed (kind, value)) → an int step in [0, T];
    "auto" reads the mode's table at the scale and the input's effective noise ``sigma``."""
    kind, value = parse_noise(noise)
    T = model.num_timesteps
    if kind == "auto":
        return int(round(model.noise_table.mode(consistent).fraction_at(scale, sigma) * T))
    if kind == "fraction":
        return int(round(float(value) * T))
    if not 0 <= int(value) <= T:
        raise ValueError(f"noise step must be in [0, {T}], got {value}")
    return int(value)


def _tile_guide(bands, ref, windows, th, tw, strength, noise):
    """Per-tile slices of the global consistency bands (one band per tile), as host arrays (the
    single-device call places them, a sharded one splits them)."""
    rows, cols = zip(*(consistency_mod.tile_operator(bands, y, x, th, tw) for y, x, _ in windows))
    refs = np.stack([ref[y:y + th, x:x + tw] for y, x, _ in windows])
    return pipeline.Guide(ref=refs, rows=np.stack(rows).astype(np.float32), cols=np.stack(cols).astype(np.float32),
                          strength=np.full((len(windows),), strength, np.float32),
                          noise=np.full((len(windows),), noise, np.float32))


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
        ops, ref, strength, iters, noise = cons
        bands = consistency_mod.guide_bands(ops)
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
            guide = _tile_guide(bands, ref, padded, th, tw, strength, noise)
        if mesh is not None:  # the batch of tiles split over the devices
            out = pipeline.restore_batch_on_mesh(mesh, model.model, model.params, model.schedule, tiles,
                                                 np.full((tile_batch,), t, np.int32), key, num_steps=num_steps,
                                                 sampler=sampler, self_ensemble=self_ensemble, guide=guide,
                                                 guide_iters=iters)
        else:
            out = np.asarray(pipeline.restore_batch_jit(
                model.model, model.params, model.schedule, tiles, np.full((tile_batch,), t, np.int32), key,
                num_steps=num_steps, sampler=sampler, guide=guide, guide_iters=iters, self_ensemble=self_ensemble))
        placed += [(y, x, wgt, out[i]) for i, (y, x, wgt) in enumerate(chunk)]
    return pipeline.blend_tiles((h, w), c, placed)


def upscale_array(image: np.ndarray, out_hw: tuple[int, int], *, model: LoadedModel,
                  options: Optional[InferenceOptions] = None, progress: bool = False, mesh=None,
                  jpeg_quantization=None, **option_changes) -> tuple[np.ndarray, dict]:
    """Diff-SR on one float image HxWx3 in [0, 1] → (out_h x out_w x 3 in [0, 1], info).

    ``options`` (:class:`diffsr_jax.InferenceOptions`; default: the library's defaults) say how;
    keyword arguments named like its fields override them (``noise=``, ``steps=``, ``sampler=``,
    ``consistency=``, ``lift=``, ``consistency_iters=``, ``colour_fix=``, ``self_ensemble=``,
    ``tile=``, ``tile_overlap=``, ``tile_batch=``, ``seed=``). In short: ``tile=None`` processes
    outputs up to AUTO_TILE_THRESHOLD per side whole and larger ones in DEFAULT_TILE tiles,
    ``tile=0`` always whole. ``consistency`` = λ in [0, 1] (0 = plain Diff-SR): each predicted x0
    is projected towards the input's constraint A(x0) = input (A = the antialiased bicubic
    downscale), and so is the final output; ``lift`` "pinv" | "bicubic" (see
    diffsr_jax.consistency); ``colour_fix`` "none" | "wavelet" | "adain"; ``self_ensemble`` 1 | 2 |
    4 | 8 averages the model's ε over that many flips/rotations (that many network evaluations).
    ``steps`` / ``sampler`` None: the ones the mode's noise table was calibrated with.
    ``degradation`` "auto" (default) estimates the input's noise, JPEG compression and blur
    (:mod:`diffsr_jax.degradation`; ``jpeg_quantization``: the file's quantisation tables, e.g.
    ``image_io.read_image(path).jpeg_quantization``, make the JPEG quality exact) and adapts to it
    (:mod:`diffsr_jax.adaptation`: consistency weighted by the noise the process still carries,
    the noise step from the table's noise axis, the operator's kernel); "clean" runs the
    pipeline for a noise-free bicubic downscale. ``info["degradation"]`` says what was estimated
    or given, ``info["response"]`` what was done about it.
    ``mesh``: a device mesh (:func:`diffsr_jax.sharding.make_mesh`, e.g. from :func:`local_mesh`)
    to spread the work over: each batch of tiles is split over its devices (``tile_batch`` rounded
    up to a multiple of their count), a whole image by rows (:func:`pipeline.restore_spatial`).
    None = one device. The output equals the one-device output up to float rounding.

    Checked before any work: ``image`` must be a float array HxWx3, finite, in [0, 1] (values
    within RANGE_TOLERANCE outside are clipped; uint8/uint16 images are a TypeError: divide by
    255 / 65535 or use :func:`upscale`); ``out_hw`` = (height, width) whole numbers >= 1, at most
    ``targets.MAX_OUTPUT_PIXELS``; the input at most ``targets.MAX_INPUT_PIXELS``. ``info["notes"]``
    lists what the user may want to know, e.g. that ``steps`` above the start step t was capped
    (:func:`cap_steps`).
    """
    opts = (options or InferenceOptions()).replace(**option_changes).with_defaults()
    plan = _plan(check_float_image(image), targets.check_output_size(out_hw), model, opts, jpeg_quantization)
    if mesh is not None and sharding.data_size(mesh) == 1:
        mesh = None  # one device: the plain jitted calls, no sharding machinery
    _, k_sample = jax.random.split(jax.random.key(opts.seed))
    if plan.t == 0:
        out = plan.x_up
    elif plan.tile:
        overlap = min(int(opts.tile_overlap), plan.tile // 2)
        out = _run_tiles(model, plan.x_t, plan.t, k_sample, tile=plan.tile, overlap=overlap, num_steps=plan.steps,
                         tile_batch=opts.tile_batch, progress=progress, cons=plan.cons,
                         self_ensemble=opts.self_ensemble, sampler=plan.sampler, mesh=mesh)
    else:
        guide = None
        if plan.cons is not None:
            ops, ref, strength, _, noise = plan.cons
            guide = pipeline.whole_image_guide(ops, jnp.asarray(ref[None]), strength, noise)
        if mesh is not None:  # the image's rows split over the devices
            out = pipeline.restore_spatial(mesh, model.model, model.params, model.schedule, plan.x_t[None],
                                           np.full((1,), plan.t, np.int32), k_sample, num_steps=plan.steps,
                                           sampler=plan.sampler, guide=guide, guide_iters=opts.consistency_iters,
                                           self_ensemble=opts.self_ensemble)[0]
        else:
            out = _restore_jit(model, plan.x_t[None], [plan.t], k_sample, plan.steps, plan.sampler, guide, opts)[0]
    devices = 1 if (mesh is None or plan.t == 0) else sharding.data_size(mesh)  # none runs at t = 0
    return _finish(plan, out, model, opts, devices)


class _Plan(NamedTuple):
    """One image's resolved run: what upscale_array and upscale_batch share."""
    image: np.ndarray      # float HxWx3 in [0, 1]
    lr: jnp.ndarray        # (1, h, w, 3) in [-1, 1]
    x_up: np.ndarray       # bicubic upsample, padded to the model's stride
    x_t: Optional[np.ndarray]   # x_up noised to t (None at t = 0)
    out_hw: tuple
    scale: float
    strength: float
    t: int
    steps: int
    sampler: str
    tile: int              # 0 = the whole image at once
    cons: Optional[tuple]  # (operator, reference L y, λ, iterations, noise in model units) when consistent
    degradation: Optional[Degradation]   # what the input is taken to be (None: not asked)
    response: adaptation.Response        # what the pipeline does about it
    notes: list


def _plan(image: np.ndarray, out_hw: tuple, model: LoadedModel, opts: InferenceOptions,
          jpeg_quantization=None) -> _Plan:
    """Resolves the options for one image (its degradation and the response to it, noise step,
    steps, sampler, tiling), upsamples it, builds its consistency operator and reference, and
    noises it to t with the seed's key (the same draw for every image of a shape)."""
    out_h, out_w = out_hw
    strength = opts.consistency
    if out_h < image.shape[0] or out_w < image.shape[1]:
        strength = 0.0  # A is a downscale: there is no constraint for a smaller output
    scale = max(out_h / image.shape[0], out_w / image.shape[1])
    consistent = strength > 0
    deg = resolve_degradation(image, opts.degradation, jpeg_quantization)
    resp = adaptation.response(deg, model.noise_table.raw.get("degradation")) if deg is not None else adaptation.CLEAN
    t = resolve_noise_step(model, opts.noise, scale, consistent=consistent, sigma=resp.sigma)
    num_steps = default_steps(model, consistent) if opts.steps is None else opts.steps
    sampler = default_sampler(model, consistent) if opts.sampler is None else opts.sampler
    num_steps, notes = cap_steps(num_steps, t, sampler)
    k_noise, _ = jax.random.split(jax.random.key(opts.seed))
    lr = jnp.asarray(image[None] * 2.0 - 1.0)
    x_up = np.asarray(pipeline.upsample(lr, (out_h, out_w)))[0]
    x_up, _ = pipeline.pad_to_multiple(x_up, model.stride)
    cons = None
    if consistent:
        ops = consistency_mod.image_operator((out_h, out_w), image.shape[:2], opts.lift, padded_hw=x_up.shape[:2],
                                             kernel=resp.kernel, blur=resp.blur)
        cons = (ops, np.asarray(consistency_mod.lift(ops, lr))[0], strength, opts.consistency_iters,
                resp.consistency_noise(scale, opts.lift))
    x_t, tile = None, opts.tile
    if t > 0:
        noise_img = jax.random.normal(k_noise, x_up.shape, jnp.float32)
        x_t = np.asarray(q_sample(model.schedule, jnp.asarray(x_up), jnp.int32(t), noise_img))
        if tile is None:
            tile = DEFAULT_TILE if max(out_h, out_w) > AUTO_TILE_THRESHOLD else 0
        if tile:
            tile = max(model.stride, tile - tile % model.stride)
    return _Plan(image=image, lr=lr, x_up=x_up, x_t=x_t, out_hw=(out_h, out_w), scale=scale, strength=strength, t=t,
                 steps=num_steps, sampler=sampler, tile=tile or 0, cons=cons, degradation=deg, response=resp,
                 notes=notes)


def _finish(plan: _Plan, out, model: LoadedModel, opts: InferenceOptions, devices: int) -> tuple[np.ndarray, dict]:
    """The restored (padded) image → the output in [0, 1] and its info: crop, colour fix, and the
    final projection onto the input's constraint."""
    out_h, out_w = plan.out_hw
    out = jnp.asarray(np.asarray(out)[None, :out_h, :out_w])
    if opts.colour_fix != "none":
        out = consistency_mod.colour_fix(out, jnp.asarray(plan.x_up[None, :out_h, :out_w]), opts.colour_fix)
    consistent = plan.strength > 0
    final = plan.strength * final_weight(model, plan)
    if consistent and final > 0:
        # The last word: exact (pinv) or iterated (bicubic) projection of the whole output, which
        # also repairs what tiles could not see across their borders; weighted down for a noisy
        # input as the ladder's last step was (never a hard projection onto noise).
        final_ops = consistency_mod.image_operator((out_h, out_w), plan.image.shape[:2], opts.lift,
                                                   kernel=plan.response.kernel, blur=plan.response.blur)
        out = consistency_mod.project_onto_lr(out, plan.lr, final_ops, final, opts.consistency_iters)
    out = np.clip((np.asarray(out)[0] + 1.0) / 2.0, 0.0, 1.0)
    info = {"t": plan.t, "noise_fraction": plan.t / model.num_timesteps, "steps": plan.steps,
            "sampler": plan.sampler, "scale": plan.scale, "tile": plan.tile, "consistency": plan.strength,
            "lift": opts.lift if consistent else None, "colour_fix": opts.colour_fix,
            "self_ensemble": opts.self_ensemble, "devices": devices,
            "degradation": None if plan.degradation is None else plan.degradation.as_dict(),
            "degradation_text": _degradation_text(plan, final if consistent else None),
            "response": {**plan.response.as_dict(), "final_consistency": round(final, 4) if consistent else None},
            "notes": plan.notes}  # things the user may want to know (e.g. a capped step count)
    return out, info


def resolve_degradation(image: np.ndarray, spec, jpeg_quantization=None) -> Optional[Degradation]:
    """The options' ``degradation`` for one image: "auto" → :func:`degradation.estimate` (with
    the file's JPEG quantisation tables when given), "clean" → None (today's pipeline, nothing
    estimated), a :class:`Degradation` as given."""
    if spec == "auto":
        return degradation_mod.estimate(image, jpeg_tables=jpeg_quantization)
    if spec is None or spec == "clean" or spec == degradation_mod.CLEAN:
        return None
    return spec


def _degradation_text(plan: _Plan, final: Optional[float]) -> str:
    """What the summary line says of the input and the response: "" when nothing was estimated or
    given, e.g. "noise σ≈10.2/255 (consistency for σ 10.2/255, final 0.08)"."""
    if plan.degradation is None:
        return ""
    text = plan.degradation.describe()
    if plan.response != adaptation.CLEAN:
        done = f"consistency for σ {plan.response.sigma * 255:.1f}/255"
        if final is not None:
            done += f", final {final:.2f}"
        if plan.response.kernel != "bicubic":
            done += f", {plan.response.kernel} kernel"
        text += f" ({done})"
    deg = plan.degradation
    if deg.source == "estimated" and deg.blur_sigma > 0 and plan.response.blur == 0:
        # an estimated blur is not acted on (see adaptation.response); say how to use it
        text += f"; soft: degradation blur={deg.blur_sigma:g} would sharpen for it"
    return text


def final_weight(model: LoadedModel, plan: _Plan) -> float:
    """The weight of the final projection: :func:`consistency.noise_weight` at the ladder's last
    step (1 for a clean input)."""
    if plan.response.sigma <= 0 or plan.t == 0:
        return 1.0
    t_last = samplers.last_step(plan.t, plan.steps, plan.sampler)
    return float(consistency_mod.noise_weight(np.asarray(model.schedule.alphas_cumprod), t_last,
                                              plan.cons[4] if plan.cons is not None else plan.response.model_sigma))


def upscale_batch(images: Sequence[np.ndarray], out_hw: tuple[int, int], *, model: LoadedModel,
                  options: Optional[InferenceOptions] = None, progress: bool = False, mesh=None,
                  jpeg_quantizations: Optional[Sequence] = None, **option_changes) -> list[tuple[np.ndarray, dict]]:
    """:func:`upscale_array` for several float images HxWx3 in [0, 1] (input sizes may differ)
    that all go to one output size ``out_hw``: [(output, info)] in input order. Batch jobs group
    their images by output size and call this once per group.

    Whole-image outputs (no tiling) are denoised together in one compiled call, the batch padded
    to a power of two (so few shapes are compiled) and, with a ``mesh``, split over its devices by
    image; tiled outputs run one image at a time (their tiles are batched already). Each output is
    the one :func:`upscale_array` gives for that image alone (same options and seed: every image
    gets the same noise draw) up to float rounding for the deterministic samplers (DDIM); the
    DDPM samplers draw their per-step noise for the whole batch. ``jpeg_quantizations``: per image,
    its file's JPEG quantisation tables or None (see :func:`upscale_array`). ``out_hw`` and every
    image are checked (as :func:`upscale_array` does) before any work."""
    out_hw = targets.check_output_size(out_hw)
    images = [check_float_image(img) for img in images]
    opts = (options or InferenceOptions()).replace(**option_changes).with_defaults()
    if mesh is not None and sharding.data_size(mesh) == 1:
        mesh = None
    tables = list(jpeg_quantizations) if jpeg_quantizations is not None else [None] * len(images)
    if len(tables) != len(images):
        raise ValueError(f"jpeg_quantizations needs one entry per image ({len(images)}), got {len(tables)}")
    plans = [_plan(img, out_hw, model, opts, q) for img, q in zip(images, tables)]
    batched = [i for i, p in enumerate(plans) if p.t > 0 and not p.tile]
    if len(batched) < 2:
        batched = []  # one image: upscale_array's path (on a mesh it splits the image by rows)
    results: dict[int, tuple] = {}
    # One compiled call per (steps, sampler, consistent) group of whole images.
    groups: dict[tuple, list[int]] = {}
    for i in batched:
        groups.setdefault((plans[i].steps, plans[i].sampler, plans[i].cons is not None), []).append(i)
    _, k_sample = jax.random.split(jax.random.key(opts.seed))
    for (steps, sampler, guided), idx in groups.items():
        n = 1 << (len(idx) - 1).bit_length()        # padded to a power of two: few compiled shapes
        if mesh is not None:
            n = -(-n // sharding.data_size(mesh)) * sharding.data_size(mesh)
        rows = [plans[i] for i in idx] + [plans[idx[-1]]] * (n - len(idx))
        x_t = np.stack([p.x_t for p in rows])
        t = np.asarray([p.t for p in rows], np.int32)
        guide = _batch_guide(rows) if guided else None
        if mesh is not None:
            out = pipeline.restore_batch_on_mesh(mesh, model.model, model.params, model.schedule, x_t, t, k_sample,
                                                 num_steps=steps, sampler=sampler, guide=guide,
                                                 guide_iters=opts.consistency_iters, self_ensemble=opts.self_ensemble)
        else:
            out = _restore_jit(model, x_t, t, k_sample, steps, sampler, guide, opts)
        devices = 1 if mesh is None else sharding.data_size(mesh)
        for j, i in enumerate(idx):
            results[i] = _finish(plans[i], out[j], model, opts, devices)
    for i, img in enumerate(images):
        if i not in results:  # t = 0, or tiled
            results[i] = upscale_array(img, out_hw, model=model, options=opts, progress=progress, mesh=mesh,
                                       jpeg_quantization=tables[i])
    return [results[i] for i in range(len(images))]


def _restore_jit(model: LoadedModel, x_t, t, key, steps: int, sampler: str, guide,
                 opts: InferenceOptions) -> np.ndarray:
    """Whole images (B, H, W, 3) noised to their steps ``t`` (B,) → restored, in one jitted call
    on the default device."""
    return np.asarray(pipeline.restore_batch_jit(model.model, model.params, model.schedule, jnp.asarray(x_t),
                                                 jnp.asarray(t, jnp.int32), key, num_steps=steps, sampler=sampler,
                                                 guide=guide, guide_iters=opts.consistency_iters,
                                                 self_ensemble=opts.self_ensemble))


def _batch_guide(plans: Sequence[_Plan]) -> pipeline.Guide:
    """One Guide row per image: its reference, its operator's bands (widened to the batch's widest),
    its λ and noise level."""
    rows, cols = consistency_mod.stack_bands([consistency_mod.guide_bands(p.cons[0]) for p in plans])
    return pipeline.Guide(ref=jnp.asarray(np.stack([p.cons[1] for p in plans])), rows=jnp.asarray(rows),
                          cols=jnp.asarray(cols), strength=jnp.asarray([p.cons[2] for p in plans], jnp.float32),
                          noise=jnp.asarray([p.cons[4] for p in plans], jnp.float32))


def local_mesh():
    """A data-parallel mesh over this process's devices (all of them: CPU devices, GPUs or TPU
    cores), for :func:`upscale_array`'s ``mesh``; None when there is only one."""
    devices = jax.local_devices()
    return sharding.make_mesh(devices=devices) if len(devices) > 1 else None


def upscale(images, target, *, checkpoint: Optional[str] = None, fit: str = "contain",
            model: Optional[LoadedModel] = None, allow_downscale: bool = False,
            options: Optional[InferenceOptions] = None, mesh=None, **option_changes):
    """Upscale one image or a list of images: uint8 / uint16 / float (in [0, 1]) HxW[xC] numpy
    arrays, C = 1..4 (gray, gray+alpha, RGB, RGBA), or PIL images.

    ``target``: text ("2x", "2.7", "1920x1080" = WIDTHxHEIGHT, "1080p", ...: see
    diffsr_jax.targets), a number (the scale: ``2``, ``2.5``), or a pair ``(height, width)`` in
    numpy's shape order, a size like the text "WIDTHxHEIGHT" and reached according to ``fit``
    ("contain": fit inside, "cover": cover then centre-crop, "stretch": exactly that shape);
    anything else is a TypeError (:func:`diffsr_jax.targets.as_target`). ``options`` and
    keyword overrides (``noise="auto"`` | a fraction of T (0.35) | "t=350", ``steps``,
    ``consistency``, ``lift``, ``colour_fix``, ``self_ensemble``, ``tile``, ``seed``, ...) and
    ``mesh`` (the denoising spread over devices, e.g. ``mesh=local_mesh()``): see
    :func:`upscale_array`. Returns arrays of the input's dtype and channel count; for a PIL image a
    PIL image (mode L, LA, RGB, RGBA, I;16 or F as given; I comes back as I;16, P and other colour
    modes as RGB(A), 1 as L). Every image, the target and the options are checked before any work: a float
    image must be finite and in [0, 1] (0-255 floats are refused, not saturated).
    """
    single = isinstance(images, (np.ndarray, Image.Image))
    batch = [images] if single else list(images)
    tgt = targets.as_target(target)
    opts = (options or InferenceOptions()).replace(**option_changes)
    for img in batch:  # refuse a bad image, size or target before loading the model
        rgb, _, _ = image_arrays.to_float_rgb(image_arrays.as_array(img))
        targets.output_size(rgb.shape[:2], tgt, fit=fit, allow_downscale=allow_downscale)
    model = model or load_model(checkpoint)
    results = []
    for img in batch:
        rgb, alpha, restore_dtype = image_arrays.to_float_rgb(image_arrays.as_array(img))
        plan = targets.output_size(rgb.shape[:2], tgt, fit=fit, allow_downscale=allow_downscale)
        out, _ = upscale_array(rgb, (plan.out_h, plan.out_w), model=model, options=opts, mesh=mesh)
        # Alpha is resized to the full model output, then both are cropped together (cover).
        out = targets.apply_crop(restore_dtype(out, alpha, out.shape[:2]), plan)
        results.append(Image.fromarray(out) if isinstance(img, Image.Image) else out)
    return results[0] if single else results


def cap_steps(num_steps: int, t: int, sampler: str) -> tuple[int, list[str]]:
    """(steps to run, notes): ``num_steps`` capped where more steps can only repeat steps.

    From noise step t the sampler's ladder (:func:`diffsr_jax.samplers.timestep_ladder`) has at
    most t distinct steps, and already visits every step t, t-1, ..., 0 with t steps on the even
    ladder and 2t on the quadratic one ("-quad"); more steps are repeats that still cost a network
    call each. So the count is capped there, with a note. For the deterministic DDIM samplers the
    output is exactly the uncapped one; DDPM's draws its noise per step index, so it runs the same
    chain with other draws. t = 0 (no denoising): nothing to cap, no note.
    """
    if t < 1:
        return num_steps, []
    cap = samplers.ladder_power(sampler) * t
    if num_steps <= cap:
        return num_steps, []
    return cap, [f"{num_steps} sampler steps asked for from noise step t={t}: ran {cap}, which already visit every "
                 f"step from {t} to 0 (more would only repeat steps)"]
