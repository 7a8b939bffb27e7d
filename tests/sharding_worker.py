"""Multi-device checks, run by tests/test_sharding.py in a subprocess with 8 simulated CPU devices
(the pytest process has already initialised JAX with one device, and the device count is fixed at
start-up).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/sharding_worker.py DIR

DIR holds ``ckpt1/`` + ``ckpt1.npz`` (a train state saved on one device by the test). The worker
prints one JSON line of measured differences and writes ``ckpt8/`` + ``ckpt8.npz`` (the state after
sharded steps, saved from 8 devices) for the test to restore on one device.
"""

from __future__ import annotations

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from configs import tiny  # noqa: E402
from conftest import random_params  # noqa: E402
from diffsr_jax import api, checkpointing, noise_table, pipeline, schedules, sharding, sweep, train_lib  # noqa: E402

STEPS, BATCH, HW = 3, 8, 16


def tiny_setup():
    c = tiny.get_config()
    # One resolution level instead of two: compiling ~8 programs dominates this script's time,
    # and sharding does not care how deep the UNet is.
    c.model.update(dict(channel_mult=(1,), num_middle_blocks=1))
    model = train_lib.build_model(c)
    optimizer = train_lib.build_optimizer(c.train)
    schedule = schedules.schedule_from_spec(train_lib.schedule_spec(c))
    return c, model, optimizer, schedule


def initial_state(model, optimizer):
    params = random_params(model, hw=HW)
    return train_lib.TrainState(step=jnp.asarray(0, jnp.int32), params=params,
                                ema_params=jax.tree.map(jnp.copy, params), opt_state=optimizer.init(params))


def flat(tree) -> dict:
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


def run_steps(model, schedule, optimizer, state0, batches, key, mesh=None, shard_params=False):
    """STEPS train steps from a host copy of state0; (losses, final state)."""
    if mesh is None:
        step = train_lib.make_train_step(model, schedule, optimizer, ema_decay=0.99)
        state = jax.tree.map(jnp.asarray, state0)
    else:
        shardings = sharding.state_shardings(mesh, state0, shard_params)
        step = train_lib.make_train_step(model, schedule, optimizer, ema_decay=0.99, mesh=mesh,
                                         state_shardings=shardings)
        state = jax.device_put(state0, shardings)
    losses = []
    for b in batches:
        x = b if mesh is None else sharding.global_batch(mesh, b[slice(*sharding.process_rows(mesh, BATCH))], BATCH)
        state, m = step(state, x, key)
        losses.append(float(m["loss"]))
    return losses, state


def check_training(out, c, model, optimizer, schedule):
    state0 = jax.device_get(initial_state(model, optimizer))
    rng = np.random.default_rng(0)
    batches = [rng.uniform(-1, 1, (BATCH, HW, HW, 3)).astype(np.float32) for _ in range(STEPS)]
    key = jax.random.key(3)
    ref_losses, ref = run_steps(model, schedule, optimizer, state0, batches, key)
    ref_flat = flat(ref.params)
    moved = max_diff(flat(state0.params), ref_flat)  # the scale the differences are judged on
    for name, mesh, shard_params in (("data8", sharding.make_mesh(), False),
                                     ("data4_model2", sharding.make_mesh(model=2), True)):
        losses, st = run_steps(model, schedule, optimizer, state0, batches, key, mesh, shard_params)
        out[name] = {"losses": losses, "ref_losses": ref_losses, "param_diff": max_diff(flat(st.params), ref_flat),
                     "param_moved": moved,
                     "n_sharded_leaves": sum(not s.sharding.is_fully_replicated for s in jax.tree.leaves(st.params))}
        if name == "data8":
            final8 = st
    return final8


def check_checkpoints(out, workdir, final8):
    mesh = sharding.make_mesh()
    # Written on one device by the test; laid out on 8 here.
    one = np.load(os.path.join(workdir, "ckpt1.npz"))
    abstract = jax.eval_shape(lambda: final8)
    abstract8 = sharding.with_shardings(abstract, sharding.state_shardings(mesh, abstract))
    mgr = checkpointing.make_manager(os.path.join(workdir, "ckpt1"))
    restored = checkpointing.restore_latest(mgr, abstract8)
    mgr.close()
    leaves = jax.tree.leaves(restored)
    out["restore_1_on_8"] = {
        "diff": max_diff(flat(restored), dict(one)),
        "devices": min(len(x.sharding.device_set) for x in leaves),
    }
    # Saved from 8 devices for the test to restore on one.
    mgr = checkpointing.make_manager(os.path.join(workdir, "ckpt8"))
    checkpointing.save_train_state(mgr, int(final8.step), final8)
    mgr.wait_until_finished()
    mgr.close()
    np.savez(os.path.join(workdir, "ckpt8.npz"), **flat(final8))


def check_inference(out, model, schedule):
    mesh = sharding.make_mesh()
    params = random_params(model, hw=HW, kernel_gain=0.3)
    rng = np.random.default_rng(1)
    x_t = rng.normal(size=(5, HW, HW, 3)).astype(np.float32)  # 5 images: padded to 8
    t = np.array([10, 30, 50, 70, 90], np.int32)
    key = jax.random.key(7)
    ref = np.asarray(pipeline.restore_batch_jit(model, params, schedule, jnp.asarray(x_t), jnp.asarray(t), key,
                                                num_steps=3))
    got = pipeline.restore_batch_on_mesh(mesh, model, params, schedule, x_t, t, key, num_steps=3)
    out["restore_batch"] = {"diff": float(np.max(np.abs(got - ref))), "shape": list(got.shape)}

    lr = np.clip(rng.normal(scale=0.5, size=(3, 8, 8, 3)), -1, 1).astype(np.float32)
    ref = np.asarray(jax.jit(pipeline.diffsr_from_lr, static_argnames=("model", "out_hw", "num_steps"))(
        model, params, schedule, jnp.asarray(lr), jnp.int32(40), key, out_hw=(HW, HW), num_steps=2))
    got = pipeline.diffsr_from_lr_on_mesh(mesh, model, params, schedule, lr, 40, key, out_hw=(HW, HW), num_steps=2)
    out["diffsr_from_lr"] = {"diff": float(np.max(np.abs(got - ref))), "shape": list(got.shape)}

    hr = rng.uniform(0, 1, (2, HW, HW, 3)).astype(np.float32)
    grid = np.array([0, 20, 50], np.int32)  # 2 scales x 3 t x 2 images = 12 cells, padded to 16
    ref = sweep.sweep(model, params, schedule, hr, (2.0, 4.0), grid, key, num_steps=2, chunk=2)
    got = sweep.sweep(model, params, schedule, hr, (2.0, 4.0), grid, key, num_steps=2, chunk=2, mesh=mesh)
    out["sweep"] = {k: float(np.nanmax(np.abs(got.metrics[k] - ref.metrics[k]))) for k in ("psnr", "ssim", "hf_err")}
    out["sweep"]["shape"] = list(got.metrics["psnr"].shape)
    ref = sweep.sweep(model, params, schedule, hr, (2.0, 4.0), grid, key, num_steps=2, chunk=2, consistency=1.0)
    got = sweep.sweep(model, params, schedule, hr, (2.0, 4.0), grid, key, num_steps=2, chunk=2,
                      consistency=1.0, mesh=mesh)
    out["sweep_consistent"] = {k: float(np.nanmax(np.abs(got.metrics[k] - ref.metrics[k]))) for k in ("psnr", "ssim")}

    # api.upscale_array's tiles split over the mesh (plain and data-consistent): 3x3 tiles in
    # batches of 3, rounded up to 8 per call (two calls, the second padded).
    loaded = api.LoadedModel(model=model, params=params, schedule=schedule, meta={},
                             noise_table=noise_table.fallback(), directory="")
    img = rng.uniform(0, 1, (12, 12, 3)).astype(np.float32)
    # ... and a whole image split by rows (36 rows: not a multiple of 8 devices).
    for name, strength, tile, out_hw in (("tiles", 0.0, 16, (32, 32)), ("tiles_consistent", 1.0, 16, (32, 32)),
                                         ("whole", 0.0, 0, (36, 28)), ("whole_consistent", 1.0, 0, (36, 28))):
        kw = dict(model=loaded, noise=("fraction", 0.4), steps=2, tile=tile, tile_overlap=4, tile_batch=3,
                  consistency=strength)
        ref, ref_info = api.upscale_array(img, out_hw, **kw)
        got, info = api.upscale_array(img, out_hw, mesh=mesh, **kw)
        out[name] = {"diff": float(np.max(np.abs(got - ref))), "devices": [ref_info["devices"], info["devices"]],
                     "moved": float(np.max(np.abs(ref - api.upscale_array(img, out_hw, **{**kw, "noise": ("step", 0)})[0])))}


def main(workdir: str) -> None:
    t0 = time.time()
    out = {"devices": jax.device_count(), "process_rows": list(sharding.process_rows(sharding.make_mesh(), BATCH))}
    c, model, optimizer, schedule = tiny_setup()
    final8 = check_training(out, c, model, optimizer, schedule)
    out["t_training"] = time.time() - t0
    t1 = time.time()
    check_checkpoints(out, workdir, final8)
    out["t_checkpoints"] = time.time() - t1
    t1 = time.time()
    check_inference(out, model, schedule)
    out["t_inference"] = time.time() - t1
    out["wall_s"] = time.time() - t0
    print(json.dumps(out))


def multiprocess_main(workdir: str) -> None:
    """One of several processes (JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID set):
    the same sharded steps as check_training on a mesh over every process's devices, each
    process feeding only its rows; then an Orbax save from every process and a restore."""
    assert sharding.maybe_initialize_distributed("auto")
    c, model, optimizer, schedule = tiny_setup()
    mesh = sharding.make_mesh()
    state0 = jax.device_get(initial_state(model, optimizer))
    rng = np.random.default_rng(0)
    batches = [rng.uniform(-1, 1, (BATCH, HW, HW, 3)).astype(np.float32) for _ in range(STEPS)]
    losses, state = run_steps(model, schedule, optimizer, state0, batches, jax.random.key(3), mesh)
    mgr = checkpointing.make_manager(os.path.join(workdir, "ckpt_mp"))
    checkpointing.save_train_state(mgr, int(state.step), state)
    mgr.wait_until_finished()
    abstract = sharding.with_shardings(jax.eval_shape(lambda: state), sharding.state_shardings(mesh, state))
    restored = mgr.restore(mgr.latest_step(), args=checkpointing.ocp.args.StandardRestore(abstract))
    mgr.close()
    same = all(np.array_equal(sharding.to_host(a), sharding.to_host(b))
               for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)))
    print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(),
                      "devices": jax.device_count(), "local_devices": jax.local_device_count(),
                      "rows": list(sharding.process_rows(mesh, BATCH)), "losses": losses,
                      "restored_equal": same}))


if __name__ == "__main__":
    if sys.argv[1] == "--multiprocess":
        multiprocess_main(sys.argv[2])
    else:
        main(sys.argv[1])
