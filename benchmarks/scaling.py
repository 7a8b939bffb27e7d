"""Throughput of sharded training steps, sharded batch restoration and one image restored with its
rows split (``sharding.restore_spatial``, what infer.py and evaluate.py do with a whole image) on
1, 2, 4, 8 devices.

    python benchmarks/scaling.py                       # simulated CPU devices, tiny model
    python benchmarks/scaling.py --devices 1,2,4 --config cpu --batch 32 --crop 64 --restore-crop 256
    python benchmarks/scaling.py --real                # the machine's own devices (GPU/TPU), once

Each device count runs in its own subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (the count is fixed when JAX starts). Those
N "devices" share the same CPU cores. Up to one per core they are a real speed-up for small
programs: XLA's CPU backend parallelises each op over a thread pool, which narrow convolutions on
64² crops keep only partly busy, while split batches keep every core on its own share (this is why
training and calibrate.py default to one CPU device per core: ``mesh.cpu_devices``, ``--cpu-devices``).
More devices than cores only add overhead. The last column is the speed-up over the first row. Params are numpy-drawn (model.init's
threefry costs tens of seconds on CPU), the batch is random: this measures compute, not data.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = os.path.join(REPO, "benchmarks", "results", "scaling_cpu.txt")
NOTE = ("Simulated CPU devices (--xla_force_host_platform_device_count) share the same CPU cores: up to "
        "one per core they split the work (a real speed-up where single ops leave cores idle), beyond "
        "that they only show that the sharded programs run.")


def numpy_params(model, hw: int, seed: int = 0):
    """Init-shaped params drawn with numpy (same idea as tests/conftest.random_params)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, hw, hw, 3)),
                                                 jnp.zeros((1,), jnp.int32))["params"])
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        scale = 1.0 / np.sqrt(max(np.prod(leaf.shape[:-1]), 1)) if path[-1].key == "kernel" else 0.05
        return jnp.asarray(rng.normal(size=leaf.shape) * scale + (path[-1].key == "scale"), jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, abstract)


def timed(fn, repeats: int) -> tuple[float, float]:
    """(first call incl. compile, median of the next ``repeats``) in seconds; fn blocks."""
    import numpy as np

    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, float(np.median(times))


def worker(args) -> dict:
    sys.path.insert(0, REPO)
    import importlib

    import jax
    import jax.numpy as jnp
    import numpy as np

    from diffsr_jax import pipeline, schedules, sharding, train_lib

    c = importlib.import_module(f"configs.{args.config}").get_config()
    model = train_lib.build_model(c)
    optimizer = train_lib.build_optimizer(c.train)
    schedule = schedules.schedule_from_spec(train_lib.schedule_spec(c))
    mesh = sharding.make_mesh()
    params = numpy_params(model, args.crop)
    params_host = jax.device_get(params)  # the train step donates (deletes) the state's buffers
    state = train_lib.TrainState(step=jnp.asarray(0, jnp.int32), params=params,
                                 ema_params=jax.tree.map(jnp.copy, params), opt_state=optimizer.init(params))
    shardings = sharding.state_shardings(mesh, state)
    state = jax.device_put(state, shardings)
    step = train_lib.make_train_step(model, schedule, optimizer, ema_decay=0.999, mesh=mesh,
                                     state_shardings=shardings)
    rng = np.random.default_rng(0)
    batch = sharding.shard_batch(mesh, rng.uniform(-1, 1, (args.batch, args.crop, args.crop, 3)).astype(np.float32))
    key = jax.random.key(0)
    box = [state]

    def train_once():
        box[0], m = step(box[0], batch, key)
        jax.block_until_ready(m["loss"])

    train_first, train_s = timed(train_once, args.repeats)

    rc = args.restore_crop or args.crop
    x_t = rng.normal(size=(args.batch, rc, rc, 3)).astype(np.float32)
    t = np.full((args.batch,), c.schedule.T // 5, np.int32)
    restore_first, restore_s = timed(lambda: pipeline.restore_batch_on_mesh(
        mesh, model, params_host, schedule, x_t, t, key, num_steps=args.restore_steps), args.repeats)
    one_first, one_s = timed(lambda: pipeline.restore_spatial(
        mesh, model, params_host, schedule, x_t[:1], t[:1], key, num_steps=args.restore_steps), args.repeats)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    return {"devices": jax.device_count(), "platform": jax.devices()[0].platform,
            "device_kind": jax.devices()[0].device_kind, "params": n_params,
            "train_first_s": train_first, "train_step_s": train_s, "train_img_s": args.batch / train_s,
            "restore_first_s": restore_first, "restore_s": restore_s, "restore_img_s": args.batch / restore_s,
            "one_image_first_s": one_first, "one_image_s": one_s}


def run_child(n: int, args) -> dict:
    env = dict(os.environ)
    if not args.real:
        env["JAX_PLATFORMS"] = "cpu"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--config", args.config, "--batch", str(args.batch),
           "--crop", str(args.crop), "--restore-crop", str(args.restore_crop), "--repeats", str(args.repeats), "--restore-steps", str(args.restore_steps)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{n} devices failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict], args) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    head = [f"# benchmarks/scaling.py: config={args.config}, global batch {args.batch} x {args.crop}x{args.crop}, "
            f"restore = {args.restore_steps} DDIM step(s) from t = T/5 on {args.batch} x {args.restore_crop or args.crop}²; median of {args.repeats} calls after the first",
            f"# platform: {rows[0]['platform']} ({rows[0]['device_kind']}), {rows[0]['params']:,} params, "
            f"{os.cpu_count()} host cores, 1-min load average at the end {load:.1f} (other jobs share this machine)"]
    if rows[0]["platform"] == "cpu":
        head.append("# NOTE: " + NOTE)
    cols = ("devices", "train 1st call s", "train step s", "train img/s", "restore 1st call s", "restore s",
            "restore img/s", "1 image rows split s", "speed-up train / restore / 1 image")
    lines = [" | ".join(cols)]
    for r in rows:
        lines.append(" | ".join([f"{r['devices']}", f"{r['train_first_s']:.2f}", f"{r['train_step_s']:.4f}",
                                 f"{r['train_img_s']:.1f}", f"{r['restore_first_s']:.2f}", f"{r['restore_s']:.4f}",
                                 f"{r['restore_img_s']:.1f}", f"{r['one_image_s']:.4f}",
                                 f"{rows[0]['train_step_s'] / r['train_step_s']:.2f} / "
                                 f"{rows[0]['restore_s'] / r['restore_s']:.2f} / "
                                 f"{rows[0]['one_image_s'] / r['one_image_s']:.2f}"]))
    return "\n".join(head + lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", default="1,2,4,8", help="comma-separated simulated device counts")
    p.add_argument("--config", default="tiny", help="configs/<name>.py (model and schedule)")
    p.add_argument("--batch", type=int, default=16, help="global batch (train) and images (restore)")
    p.add_argument("--crop", type=int, default=32, help="training crop size")
    p.add_argument("--restore-crop", type=int, default=0, help="restored image size (default: --crop)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--restore-steps", type=int, default=5)
    p.add_argument("--real", action="store_true", help="one run on the machine's own devices")
    p.add_argument("--out", default=None, help=f"results file (default on CPU: {os.path.relpath(RESULT, REPO)})")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    counts = [0] if args.real else [int(n) for n in args.devices.split(",")]
    rows = []
    for n in counts:
        rows.append(run_child(n, args))
        print(f"{rows[-1]['devices']} devices: train {rows[-1]['train_img_s']:.1f} img/s, "
              f"restore {rows[-1]['restore_img_s']:.1f} img/s", file=sys.stderr)
    text = table(rows, args)
    print(text, end="")
    out = args.out or (RESULT if rows[0]["platform"] == "cpu" else None)
    if out:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            f.write(text)
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
