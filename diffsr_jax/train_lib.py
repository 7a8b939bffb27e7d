"""Training: the train-state pytree, a jitted step with donated state, and the resumable loop."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from typing import Any, Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffsr_jax import autotune, checkpointing, sharding
from diffsr_jax.losses import eps_loss
from diffsr_jax.models import MODEL_KEYS, build_unet
from diffsr_jax.schedules import Schedule, schedule_from_spec


class TrainingError(RuntimeError):
    pass


@flax.struct.dataclass
class TrainState:
    step: jnp.ndarray
    params: Any
    ema_params: Any
    opt_state: Any


# ---------------------------------------------------------------------------------------------
# Builders from a config (the only place that reads whole config objects).


def load_config_file(path: str):
    """``get_config()`` of a config file given by path (what ``train.py --config`` reads, for
    scripts that take a config without absl flags). The repo root must be importable, because
    configs import ``configs.default``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_diffsr_config", os.path.abspath(path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()


def model_hparams(config) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.model.items() if k in MODEL_KEYS}


def schedule_spec(config) -> dict:
    return dict(config.schedule)


def conv_weight_grad_candidates(config) -> tuple[str, ...]:
    """The conv weight-gradient modes the train step may use: the configured one, or for "auto"
    both on a single-process CPU run (raced by :class:`autotune.FastestStep`) and XLA's
    elsewhere (cuDNN's and the TPU's weight gradients are good; processes must agree on one)."""
    mode = config.train.get("conv_weight_grad", "xla")
    if mode != "auto":
        return (mode,)
    if jax.default_backend() == "cpu" and jax.process_count() == 1:
        return ("xla", "gemm")
    return ("xla",)


def build_model(config, conv_weight_grad: Optional[str] = None):
    """The UNet of a config; ``conv_weight_grad`` overrides the config's mode (for "auto", the
    model is built with XLA's: every mode computes the same function, so inference, export and
    evaluation do not depend on it)."""
    dtype = jnp.dtype(config.train.get("compute_dtype", "float32"))
    mode = conv_weight_grad or config.train.get("conv_weight_grad", "xla")
    return build_unet(dtype=dtype, conv_weight_grad="xla" if mode == "auto" else mode,
                      **model_hparams(config))


def learning_rate_schedule(tc) -> optax.Schedule:
    """Linear warm-up, then "constant", "cosine" (to 10% at num_steps) or "cooldown".

    "cooldown" (warmup-stable-decay): hold the rate, then decay it linearly to 0 over the last
    ``cooldown_steps`` of ``num_steps``. A constant-rate trunk can train indefinitely and be
    branched (``train.branch_from``) into a short cooldown whenever a checkpoint is to ship, while
    the trunk itself keeps its constant rate and can be resumed.
    """
    warm = max(int(tc.warmup_steps), 0)
    if tc.lr_decay == "cosine":
        return optax.warmup_cosine_decay_schedule(tc.learning_rate / max(warm, 1), tc.learning_rate, max(warm, 1), int(tc.num_steps),
                                                  end_value=0.1 * tc.learning_rate)
    if tc.lr_decay not in ("constant", "cooldown"):
        raise ValueError(f"lr_decay must be 'constant', 'cosine' or 'cooldown', got {tc.lr_decay!r}")
    if warm == 0:
        held = optax.constant_schedule(tc.learning_rate)
    else:
        # Start at lr/warm rather than 0 so the very first update is not wasted.
        held = optax.linear_schedule(tc.learning_rate / warm, tc.learning_rate, warm)
    if tc.lr_decay == "constant":
        return held
    total, cool = int(tc.num_steps), int(tc.get("cooldown_steps", 0))
    if not 0 < cool <= total - warm:
        raise ValueError(f"lr_decay='cooldown' needs 0 < train.cooldown_steps <= num_steps - warmup_steps "
                         f"({total} - {warm}), got {cool}")
    return optax.join_schedules([held, optax.linear_schedule(tc.learning_rate, 0.0, cool)], [total - cool])


def build_optimizer(tc) -> optax.GradientTransformation:
    parts = [optax.clip_by_global_norm(tc.grad_clip)] if tc.grad_clip > 0 else []
    return optax.chain(*parts, optax.adam(learning_rate_schedule(tc)))


def state_from_params(params, optimizer) -> TrainState:
    """Step 0 with these params, EMA = params and a fresh optimizer state."""
    return TrainState(step=jnp.asarray(0, jnp.int32), params=params,
                      ema_params=jax.tree.map(jnp.copy, params), opt_state=optimizer.init(params))


def init_train_state(model, optimizer, key: jax.Array, image_shape) -> TrainState:
    # One jitted program: run eagerly, every initializer's random draw compiles on its own (a
    # tiny UNet's init took 30 s that way on 2 CPU cores, 15 s as one program).
    @jax.jit
    def init(k):
        x = jnp.zeros((1, *image_shape), jnp.float32)
        return state_from_params(model.init(k, x, jnp.zeros((1,), jnp.int32))["params"], optimizer)

    return init(key)


# ---------------------------------------------------------------------------------------------
# The step.


def ema_decay_at(step, decay: float, warmup: bool):
    if not warmup:
        return jnp.asarray(decay, jnp.float32)
    s = jnp.asarray(step, jnp.float32)
    return jnp.minimum(decay, (1.0 + s) / (10.0 + s))


def make_train_step(model, schedule: Schedule, optimizer, *, ema_decay: float, ema_warmup: bool = True,
                    t_low_fraction: float = 1.0, t_low_prob: float = 0.0, mesh=None,
                    state_shardings=None) -> Callable:
    """(state, batch, base_key) -> (state, metrics); jitted, state donated.

    The step's randomness is ``fold_in(base_key, state.step)``: nothing random is stored, so a run
    resumed from a checkpoint continues exactly as if it had never stopped.

    With a ``mesh`` the batch is split over its ``data`` axis and the state laid out as
    ``state_shardings`` (default: replicated); XLA adds the gradient all-reduce, so the step
    computes the same function as without a mesh (the loss is a mean over the global batch).
    """

    def train_step(state: TrainState, batch: jnp.ndarray, base_key: jax.Array):
        key = jax.random.fold_in(base_key, state.step)

        def loss_fn(params):
            out = eps_loss(model.apply, params, schedule, batch, key,
                           low_fraction=t_low_fraction, low_prob=t_low_prob)
            return out.loss, out

        (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        d = ema_decay_at(state.step, ema_decay, ema_warmup)
        ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, state.ema_params, params)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "mean_t": out.mean_t}
        return TrainState(step=state.step + 1, params=params, ema_params=ema, opt_state=opt_state), metrics

    if mesh is None:
        return jax.jit(train_step, donate_argnums=0)
    rep = sharding.replicated(mesh)
    state_sh = rep if state_shardings is None else state_shardings
    return jax.jit(train_step, in_shardings=(state_sh, sharding.batch_sharding(mesh), rep),
                   out_shardings=(state_sh, rep), donate_argnums=0)


WARM_START_FILE = "warm_start.json"


def warm_start(state: TrainState, model_dir: str) -> TrainState:
    """Params and EMA from an exported model (an export holds EMA params only, so training
    continues from them with a fresh optimizer state; the step count restarts)."""
    params = checkpointing.load_params(model_dir, jax.eval_shape(lambda: state.params))
    return state.replace(params=params, ema_params=jax.tree.map(jnp.copy, params))


def restore_branch_point(run_dir: str, step: int, abstract_state) -> TrainState:
    """The full training state (params, EMA, optimizer) of another run's checkpoint: ``step``,
    or its newest when 0. Read-only for that run: the branch writes only to its own workdir."""
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise FileNotFoundError(f"train.branch_from={run_dir!r}: no checkpoints/ folder there")
    manager = checkpointing.make_manager(ckpt_dir)
    try:
        steps = sorted(manager.all_steps())
        if not steps:
            raise FileNotFoundError(f"train.branch_from={run_dir!r}: no complete checkpoint")
        pick = step or steps[-1]
        if pick not in steps:
            raise FileNotFoundError(f"train.branch_from={run_dir!r} has no step {pick} (has {steps})")
        return checkpointing.restore_step(manager, pick, abstract_state)
    finally:
        manager.close()


# ---------------------------------------------------------------------------------------------
# The loop.


def _image_shape(config):
    c = int(config.data.crop_size)
    return (c, c, 3)


def abstract_train_state(config, mesh=None):
    """The state's shapes; with a mesh, also its shardings (Orbax restores into them, so a
    checkpoint written on any number of devices loads onto this mesh)."""
    model, tc = build_model(config), config.train
    optimizer = build_optimizer(tc)
    abstract = jax.eval_shape(lambda k: init_train_state(model, optimizer, k, _image_shape(config)),
                              jax.random.key(0))
    if mesh is None:
        return abstract
    return sharding.with_shardings(abstract, train_state_shardings(config, mesh, abstract))


def mesh_from_config(config, devices=None):
    """The (data, model) mesh over all devices; ``config.mesh`` is optional (older configs)."""
    mc = config.get("mesh") or {}
    return sharding.make_mesh(model=int(mc.get("model", 1)), devices=devices)


def train_state_shardings(config, mesh, abstract):
    mc = config.get("mesh") or {}
    return sharding.state_shardings(mesh, abstract, shard_params=bool(mc.get("shard_params", False)))


def _open_batches(config, start_step: int, rows=None):
    from diffsr_jax import data  # imported lazily: TFDS import is slow and not needed elsewhere

    source = data.open_image_source(list(config.data.sources), os.path.expanduser(config.data.data_dir))
    return data.BatchIterator(
        source, batch_size=int(config.train.batch_size), crop_size=int(config.data.crop_size),
        seed=int(config.seed), start_step=start_step, max_downscale=float(config.data.max_downscale),
        flip=bool(config.data.flip), rot90=bool(config.data.rot90), rows=rows)


def train_and_evaluate(config, workdir: str, *, progress: bool = True,
                       batch_iterator_factory: Optional[Callable] = None,
                       stop_at: Optional[float] = None) -> TrainState:
    """Trains until ``config.train.num_steps``, resuming from the newest checkpoint in workdir.

    Runs on a mesh over every device of every process (see :mod:`diffsr_jax.sharding`); each
    process reads only its rows of the global batch, which stays ``config.train.batch_size``.
    ``batch_iterator_factory(start_step)`` yields ``(step, this process's rows)``.
    ``stop_at`` (a ``time.time()`` deadline; one process only): the first step that ends past it
    is saved and the run stops there, resumable like any other checkpoint.
    """
    from tqdm.auto import tqdm

    if stop_at is not None and jax.process_count() > 1:
        raise ValueError("stop_at needs a single process (hosts' clocks would stop at different steps)")
    tc = config.train
    if tc.get("branch_from") and tc.get("init_from"):
        raise ValueError("set train.branch_from (full state of a run) or train.init_from (an exported "
                         "model's params), not both")
    mesh = mesh_from_config(config)
    sharding.check_batch(int(tc.batch_size), mesh)
    main_process = jax.process_index() == 0  # one writer for the shared files
    if main_process:
        print(f"mesh: {sharding.data_size(mesh)} x {int(mesh.shape[sharding.MODEL])} (data x model) over "
              f"{len(mesh.devices.flat)} {jax.devices()[0].platform} device(s)", file=sys.stderr)
    os.makedirs(workdir, exist_ok=True)
    if main_process:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json(indent=2))

    model = build_model(config)
    schedule = schedule_from_spec(schedule_spec(config))
    optimizer = build_optimizer(tc)
    manager = checkpointing.make_manager(os.path.join(workdir, "checkpoints"),
                                         max_to_keep=int(tc.keep_checkpoints))
    abstract = abstract_train_state(config, mesh)
    state_sh = jax.tree.map(lambda a: a.sharding, abstract)
    state = checkpointing.restore_latest(manager, abstract)
    resumed_here = state is not None
    if state is None and tc.get("branch_from"):
        state = restore_branch_point(tc.branch_from, int(tc.get("branch_step", 0)), abstract)
        print(f"branched from step {int(state.step)} of {tc.branch_from}", file=sys.stderr)
        source_warm = os.path.join(tc.branch_from, WARM_START_FILE)
        if main_process and os.path.exists(source_warm):  # a branch of a warm-started run: same origin
            shutil.copyfile(source_warm, os.path.join(workdir, WARM_START_FILE))
    if state is None:
        state = jax.jit(lambda k: init_train_state(model, optimizer, k, _image_shape(config)),
                        out_shardings=state_sh)(jax.random.key(config.seed))
        start = 0
        if tc.get("init_from"):
            state = jax.device_put(warm_start(state, tc.init_from), state_sh)
            print(f"warm-started params and EMA from {tc.init_from}", file=sys.stderr)
            if main_process:  # the step count restarts: keep where the params came from
                meta = checkpointing.read_model_meta(tc.init_from)  # a warm-started export counts all
                with open(os.path.join(workdir, WARM_START_FILE), "w") as f:  # as config.json is written
                    json.dump({"from": os.path.abspath(tc.init_from),
                               "from_step": meta.get("total_steps", meta.get("step"))}, f, indent=2)
    else:
        start = int(state.step)
        if resumed_here:
            print(f"resumed from step {start} in {workdir}", file=sys.stderr)
    if start >= tc.num_steps:
        return state

    steps = {mode: make_train_step(build_model(config, mode), schedule, optimizer,
                                   ema_decay=float(tc.ema_decay), ema_warmup=bool(tc.ema_warmup),
                                   t_low_fraction=float(tc.t_low_fraction), t_low_prob=float(tc.t_low_prob),
                                   mesh=mesh, state_shardings=state_sh)
             for mode in conv_weight_grad_candidates(config)}
    train_step = autotune.FastestStep(steps, report=lambda m: print(f"conv_weight_grad: {m}", file=sys.stderr))
    base_key = jax.random.fold_in(jax.random.key(config.seed), 1)
    rows = sharding.process_rows(mesh, int(tc.batch_size))
    factory = batch_iterator_factory or (lambda s: _open_batches(config, s, rows))
    log_path = os.path.join(workdir, "metrics.jsonl")
    bar = tqdm(total=int(tc.num_steps), initial=start, disable=not (progress and main_process), desc="train", unit="step",
               dynamic_ncols=True)
    t0 = time.time()
    try:
        with factory(start) as batches, open(log_path, "a") as log:
            for step, batch in batches:
                if step >= tc.num_steps:
                    break
                state, metrics = train_step(state, sharding.global_batch(mesh, batch, int(tc.batch_size)),
                                            base_key)
                loss = float(metrics["loss"])  # one host sync per step: catches NaN immediately
                if not math.isfinite(loss):
                    raise TrainingError(
                        f"non-finite loss ({loss}) at step {step}; stopped without saving. The last good "
                        f"checkpoint (step {manager.latest_step()}) is kept in {workdir}/checkpoints; "
                        "lower train.learning_rate or set train.grad_clip.")
                done = step + 1
                stop = stop_at is not None and time.time() >= stop_at
                if main_process and (done % int(tc.log_every) == 0 or done == tc.num_steps or stop):
                    rate = (done - start) / max(time.time() - t0, 1e-9)
                    rec = {"step": done, "loss": loss, "grad_norm": float(metrics["grad_norm"]),
                           "steps_per_s": rate, "wall_s": time.time() - t0}
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    bar.set_postfix(loss=f"{loss:.4f}", steps_s=f"{rate:.2f}")
                bar.update(1)
                if done % int(tc.save_every) == 0 or done == tc.num_steps or stop:
                    checkpointing.save_train_state(manager, done, state)
                if stop:
                    print(f"time budget reached: stopped at step {done}", file=sys.stderr)
                    break
    except KeyboardInterrupt:
        # `state` may already be one step past the last verified loss; save it only if it is
        # finite, under its own step number.
        now = int(state.step)
        finite = all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state.params))
        if finite and manager.latest_step() != now:
            print(f"\ninterrupted: saving step {now}", file=sys.stderr)
            checkpointing.save_train_state(manager, now, state)
        else:
            print(f"\ninterrupted: last good checkpoint is step {manager.latest_step()}", file=sys.stderr)
        raise
    finally:
        bar.close()
        manager.wait_until_finished()
        manager.close()
    return state


def export_latest(config, workdir: str, export_dir: str, extra: Optional[dict] = None) -> str:
    """Writes the EMA params of the newest checkpoint in workdir as an inference checkpoint."""
    manager = checkpointing.make_manager(os.path.join(workdir, "checkpoints"))
    # Onto one device whatever mesh wrote the checkpoint: exporting is a single-process job.
    one_device = sharding.make_mesh(devices=jax.local_devices()[:1])
    state = checkpointing.restore_latest(manager, abstract_train_state(config, one_device))
    manager.close()
    if state is None:
        raise checkpointing.CheckpointError(f"no training checkpoint in {workdir}/checkpoints")
    info = {"step": int(state.step), "train_config": json.loads(config.to_json())}
    warm = os.path.join(workdir, WARM_START_FILE)
    if os.path.exists(warm):  # a warm-started run: its step counts from the init model's params
        with open(warm) as f:
            info["warm_start"] = json.load(f)
        if isinstance(info["warm_start"].get("from_step"), int):
            info["total_steps"] = info["warm_start"]["from_step"] + info["step"]
    info.update(extra or {})
    return checkpointing.export_model(export_dir, state.ema_params, model_hparams(config),
                                      schedule_spec(config), extra=info)
