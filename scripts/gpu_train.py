#!/usr/bin/env python3
"""Continue training the bundled model on a GPU for a wall-clock limit; export the EMA params flat.

Runs ON the machine with a GPU (through scripts/gpu_campaign.sh; steps in scripts/README.md).
Installs nothing: ml_collections comes from the packed wheel in .gpu_inputs/whl (the wrapper
installs it into /tmp/site and puts that on PYTHONPATH), the training photos from
.gpu_inputs/train_images.npz (no TFDS there), the starting point from the flat model
.gpu_inputs/init_model (params.msgpack + model.json).

    python3 scripts/gpu_train.py --minutes 9 --out $OUT

What it changes relative to configs/cpu.py (every other field, the model and data augmentation
included, is the config's):
- train.compute_dtype=bfloat16 (params, EMA and Adam stay float32; the loss is float32) and
  train.conv_weight_grad=xla (cuDNN's weight-gradient convolution; 'gemm' and 'auto' are for CPUs);
- batch 256 instead of 32 (--batch-size): at 64 px and 2.5M parameters a batch of 32 is a few
  milliseconds of GPU work, so per-step launch and host overheads would dominate; 256 crops per
  step fill the GPU better. The learning rate stays 2e-4 (--lr): Adam's step size does not grow
  with the batch, and the run warm-starts a trained model with a fresh optimizer (200 warm-up
  steps), where a larger lr risks undoing the CPU campaign; the larger batch buys less gradient
  noise instead. The EMA (0.999, about a 1000-step horizon) is kept: a run of several minutes
  makes many times that many steps;
- train.num_steps=10**9 (the time limit stops the run; lr_decay stays 'constant');
- save_every 2000 (a crash loses at most that many steps; the time-limit stop saves too), log_every 100.

Time: ``--minutes`` is the whole script's wall-clock limit from its start; training stops
``--reserve-s`` before it (train_lib's ``stop_at``: the step that ends past the deadline is saved),
leaving time to export. Outputs: a flat folder of a few files, each under 16 MiB, so that $OUT is
easy to copy back (at most 8 files, 2 folders down; :func:`check_out_tree` warns otherwise; the
wrapper adds $OUT/log):
    $OUT/model/model.json, $OUT/model/params.msgpack   EMA params (scripts/unpack_gpu_model.py)
    $OUT/timings.json                                  steps/s, img/s, step ms, device, data wait
    $OUT/train_log.jsonl                               train_lib's metrics.jsonl of this run
If training fails part-way, the newest checkpoint is still exported and the exit status is 1.
"""

from __future__ import annotations

import time

T0 = time.time()  # the wall-clock limit counts from here (imports included)

import argparse  # noqa: E402
import ast  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MAX_FILE_BYTES = 16 * 2**20


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--minutes", type=float, default=9.0, help="wall-clock limit of this whole script")
    p.add_argument("--reserve-s", type=float, default=25.0,
                   help="seconds of --minutes kept for the final save and the export")
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu_out", help="output folder ($OUT)")
    p.add_argument("--workdir", default="/tmp/gpu_run", help="checkpoints (resumed if present)")
    p.add_argument("--config", default=os.path.join(REPO, "configs", "cpu.py"))
    p.add_argument("--images", default=os.path.join(REPO, ".gpu_inputs", "train_images.npz"))
    p.add_argument("--init", default=os.path.join(REPO, ".gpu_inputs", "init_model"),
                   help="flat model to warm-start from ('' = from scratch)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=None, help="None = the config's (2e-4 in configs/cpu.py)")
    p.add_argument("--dtype", default="bfloat16", help="train.compute_dtype")
    p.add_argument("--conv-weight-grad", default="xla", choices=["xla", "gemm"])
    p.add_argument("--num-steps", type=int, default=10**9, help="train.num_steps (the time limit stops first)")
    p.add_argument("--save-every", type=int, default=2000)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--workers", type=int, default=None,
                   help="crop worker processes; None = CPU cores - 2; 0 = one background thread")
    p.add_argument("--expect-platform", default=None,
                   help="stop at once unless JAX's first device is of this platform (gpu_campaign.sh: gpu)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config field, e.g. --set train.ema_decay=0.9995 (repeatable)")
    return p.parse_args(argv)


def load_config(path: str):
    sys.path.insert(0, REPO)  # configs/*.py import `configs.default`
    from diffsr_jax import train_lib

    return train_lib.load_config_file(path)


def apply_overrides(c, overrides=()):
    for item in overrides:
        key, _, raw = item.partition("=")
        *parents, leaf = key.strip().split(".")
        node = c
        for k in parents:
            node = node[k]
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        node[leaf] = value


def steady_rate(records: list[dict], start_step: int) -> dict:
    """Steps/s between the first and last logged step of this run (the first log's wall time
    includes compiling the step, the difference does not)."""
    if len(records) < 2 or records[-1]["wall_s"] <= records[0]["wall_s"]:
        return {}
    a, b = records[0], records[-1]
    rate = (b["step"] - a["step"]) / (b["wall_s"] - a["wall_s"])
    return {"steady_steps_per_s": rate, "step_ms": 1e3 / rate,
            "compile_s_estimate": a["wall_s"] - (a["step"] - start_step) / rate}


def latest_step(workdir: str):
    from diffsr_jax import checkpointing

    manager = checkpointing.make_manager(os.path.join(workdir, "checkpoints"))
    try:
        return manager.latest_step()
    finally:
        manager.close()


def this_run_records(path: str) -> list[dict]:
    """metrics.jsonl is appended by every run in a workdir; a new run's wall_s restarts near 0."""
    runs: list[list[dict]] = [[]]
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if runs[-1] and r["wall_s"] < runs[-1][-1]["wall_s"]:
                    runs.append([])
                runs[-1].append(r)
    return runs[-1]


def check_out_tree(out: str) -> list[str]:
    """Problems with $OUT against its intended shape: a few small files that are easy to copy back
    (at most 8 files, each under 16 MiB, at most 2 folders down)."""
    problems, files = [], []
    for root, _, names in os.walk(out):
        for n in names:
            rel = os.path.relpath(os.path.join(root, n), out)
            files.append(rel)
            if rel.count(os.sep) > 2:
                problems.append(f"{rel}: more than 2 folders down")
            if os.path.getsize(os.path.join(root, n)) > MAX_FILE_BYTES:
                problems.append(f"{rel}: over 16 MiB")
    if len(files) > 8:
        problems.append(f"{len(files)} files > 8")
    return problems


def seed_from_init(config, workdir: str, flat_dir: str):
    """Writes step 0 of a run warm-started from a flat model into an empty workdir: params = EMA =
    the init params, a fresh optimizer state. That is the state train_lib's init_from path
    (warm_start) builds, without first running the random init it replaces (its threefry program
    takes tens of seconds to compile); train_and_evaluate then resumes from step 0. Returns the
    init model's step, or None if the workdir already has checkpoints (it is resumed instead)."""
    import jax
    import jax.numpy as jnp

    import gpu_inputs
    from diffsr_jax import checkpointing, train_lib

    params, meta = gpu_inputs.load_flat_params(flat_dir)
    want = json.loads(json.dumps(train_lib.model_hparams(config)))
    if meta["model"] != want:
        raise SystemExit(f"--init {flat_dir} is a different UNet: {meta['model']} vs the config's {want}")
    if latest_step(workdir) is not None:
        return None
    mesh = train_lib.mesh_from_config(config)
    abstract = train_lib.abstract_train_state(config, mesh)
    params = jax.tree.map(jnp.asarray, params)
    state = train_lib.state_from_params(params, train_lib.build_optimizer(config.train))
    if jax.tree.structure(state) != jax.tree.structure(abstract):
        raise SystemExit("the init params do not fit the config's train state")
    state = jax.device_put(state, jax.tree.map(lambda a: a.sharding, abstract))
    manager = checkpointing.make_manager(os.path.join(workdir, "checkpoints"),
                                         max_to_keep=int(config.train.keep_checkpoints))
    checkpointing.save_train_state(manager, 0, state)
    manager.wait_until_finished()
    manager.close()
    print(f"step 0 = params and EMA of {flat_dir} (step {meta.get('step')}), fresh optimizer",
          file=sys.stderr, flush=True)
    return meta.get("step")


def main(argv=None, t_start: float | None = None) -> int:
    args = parse_args(argv)
    t_start = T0 if t_start is None else t_start
    deadline = t_start + 60.0 * args.minutes - args.reserve_s
    sys.path.insert(0, REPO)
    sys.path.insert(0, HERE)

    import jax
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # Orbax logs every file rename at INFO
    import flax
    import optax
    import orbax.checkpoint

    import gpu_inputs
    from diffsr_jax import checkpointing, data, train_lib

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)

    config = load_config(args.config)
    tc = config.train
    tc.compute_dtype = args.dtype
    tc.conv_weight_grad = args.conv_weight_grad
    tc.batch_size = args.batch_size
    if args.lr is not None:
        tc.learning_rate = args.lr
    tc.num_steps = args.num_steps
    tc.save_every = args.save_every
    tc.log_every = args.log_every
    tc.keep_checkpoints = 2
    apply_overrides(config, args.overrides)  # last: --set wins over the flags above
    dev = jax.devices()[0]
    print(f"device: {dev.platform} {dev.device_kind} x{jax.device_count()}; jax {jax.__version__}, "
          f"flax {flax.__version__}, optax {optax.__version__}, orbax {orbax.checkpoint.__version__}",
          file=sys.stderr, flush=True)
    if args.expect_platform and dev.platform != args.expect_platform:
        print(f"error: JAX runs on {dev.platform}, not {args.expect_platform}; stopping before training",
              file=sys.stderr)
        return 4

    images, img_info = gpu_inputs.load_packed_images(args.images)
    print(f"images: {img_info} ({time.time() - t_start:.1f} s since start)", file=sys.stderr, flush=True)
    if img_info["mismatched"]:
        print(f"note: {img_info['mismatched']} images decode differently here than where they were "
              "packed (another JPEG decoder); they are still the same photos", file=sys.stderr)

    init_step = None
    if args.init:
        tc.init_from = os.path.abspath(args.init)  # provenance only: see seed_from_init
        init_step = seed_from_init(config, workdir, args.init)

    dc = config.data
    sampler_kwargs = dict(batch_size=int(tc.batch_size), crop_size=int(dc.crop_size), seed=int(config.seed),
                          max_downscale=float(dc.max_downscale), flip=bool(dc.flip), rot90=bool(dc.rot90))
    workers = max(1, (os.cpu_count() or 4) - 2) if args.workers is None else args.workers
    pipe: dict = {"workers": workers}

    def factory(start_step):
        inner = None
        if workers > 0:
            try:
                inner = gpu_inputs.ProcessBatches(args.images, start_step=start_step, workers=workers,
                                                  **sampler_kwargs)
                pipe["kind"] = f"{workers} processes ({inner.transport})"
            except Exception as e:  # noqa: BLE001 - any failure: the one-thread pipeline still works
                print(f"warning: batch workers failed ({type(e).__name__}: {e}); one thread instead",
                      file=sys.stderr, flush=True)
        if inner is None:
            inner = data.BatchIterator(images, start_step=start_step, prefetch=8, **sampler_kwargs)
            pipe["kind"] = "1 thread"
        print(f"batches: {pipe['kind']} ({time.time() - t_start:.1f} s since start)", file=sys.stderr, flush=True)
        pipe["timed"] = gpu_inputs.TimedBatches(inner, batch_size=int(tc.batch_size))
        return pipe["timed"]

    start_step = latest_step(workdir) or 0
    error = None
    t_train = time.time()
    try:
        train_lib.train_and_evaluate(config, workdir, progress=False, batch_iterator_factory=factory,
                                     stop_at=deadline)
    except BaseException as e:  # noqa: BLE001 - export what there is, then report
        error = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    train_wall = time.time() - t_train

    records = this_run_records(os.path.join(workdir, "metrics.jsonl"))
    timed = pipe.get("timed")
    timings = {
        "device": dev.device_kind, "platform": dev.platform, "device_count": jax.device_count(),
        "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
                     "orbax": orbax.checkpoint.__version__},
        "batch_size": int(tc.batch_size), "learning_rate": float(tc.learning_rate),
        "compute_dtype": tc.compute_dtype, "conv_weight_grad": tc.conv_weight_grad,
        "pipeline": pipe.get("kind"), "data_wait_fraction": timed.wait_fraction() if timed else None,
        "images": img_info, "init_from": args.init or None, "init_model_step": init_step,
        "budget_minutes": args.minutes,
        "start_step": start_step, "end_step": records[-1]["step"] if records else start_step,
        "train_wall_s": train_wall,
        "loss_first_logs": [r["loss"] for r in records[:5]],
        "loss_last_logs": [r["loss"] for r in records[-5:]],
        "error": error,
    }
    rate = steady_rate(records, start_step)
    timings.update(rate)
    if rate:
        timings["img_per_s"] = rate["steady_steps_per_s"] * int(tc.batch_size)

    if latest_step(workdir) is not None:
        export_dir = os.path.join(workdir, "export")
        shutil.rmtree(export_dir, ignore_errors=True)
        train_lib.export_latest(config, workdir, export_dir,
                                extra={"gpu_run": {k: timings.get(k) for k in (
                                    "device", "batch_size", "compute_dtype", "init_model_step", "start_step",
                                    "end_step", "train_wall_s", "img_per_s")}})
        shutil.rmtree(os.path.join(out, "model"), ignore_errors=True)
        gpu_inputs.model_dir_to_flat(export_dir, os.path.join(out, "model"))
        timings["exported_step"] = checkpointing.read_model_meta(export_dir)["step"]
    else:
        timings["exported_step"] = None
    if os.path.exists(os.path.join(workdir, "metrics.jsonl")):
        with open(os.path.join(out, "train_log.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    timings["total_wall_s"] = time.time() - t_start
    with open(os.path.join(out, "timings.json"), "w") as f:
        json.dump(timings, f, indent=2)
    problems = check_out_tree(out)
    print(json.dumps({k: timings.get(k) for k in (
        "device", "pipeline", "start_step", "end_step", "exported_step", "steady_steps_per_s", "img_per_s",
        "step_ms", "data_wait_fraction", "total_wall_s", "error")}), flush=True)
    for pr in problems:
        print(f"warning: $OUT: {pr}", file=sys.stderr)
    return 1 if error or timings["exported_step"] is None else 0


if __name__ == "__main__":
    sys.exit(main())
