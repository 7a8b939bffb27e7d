"""Sharding: mesh helpers and per-process data here (one device); the multi-device checks run in
tests/sharding_worker.py on 8 simulated CPU devices in a subprocess (the device count is fixed
when JAX starts, and this process has one)."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffsr_jax import checkpointing, data, sharding

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sharding_worker  # noqa: E402  (its helpers build the same tiny state here)

TOL = 1e-5


# ---------------------------------------------------------------------------------------------
# one device


def test_single_device_mesh_is_one_by_one():
    mesh = sharding.make_mesh()
    assert dict(mesh.shape) == {"data": 1, "model": 1}
    assert sharding.process_rows(mesh, 4) == (0, 4)
    with pytest.raises(ValueError, match="model axis"):
        sharding.make_mesh(model=3)


def test_state_shardings_split_last_divisible_dim():
    assert sharding._param_spec((3, 3, 8, 16), 2) == jax.sharding.PartitionSpec(None, None, None, "model")
    assert sharding._param_spec((16, 3), 2) == jax.sharding.PartitionSpec("model")
    assert sharding._param_spec((), 2) == jax.sharding.PartitionSpec()


@pytest.mark.parametrize("env, want", [
    ({}, False),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, True),
    ({"JAX_NUM_PROCESSES": "1"}, False),
    ({"JAX_NUM_PROCESSES": "4"}, True),
    ({"SLURM_NTASKS": "8"}, False),  # an sbatch/salloc shell, not one task of an srun step
    ({"SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "8"}, True),
    ({"SLURM_NTASKS": "1", "SLURM_STEP_NUM_TASKS": "1"}, False),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, True),
])
def test_distributed_auto_only_when_environment_says_several_processes(env, want):
    assert sharding.distributed_wanted("auto", env) is want
    assert sharding.distributed_wanted("on", env) is True
    assert sharding.distributed_wanted("off", env) is False


@pytest.mark.parametrize("cores, batch, want", [(2, 32, 2), (1, 32, 1), (6, 32, 4), (3, 9, 3), (16, 6, 6),
                                                 (5, 7, 1)])
def test_cpu_devices_auto_is_one_per_core_dividing_the_batch(cores, batch, want):
    assert sharding.cpu_device_count("auto", batch, cores=cores) == want
    assert sharding.cpu_device_count(" AUTO ", batch, cores=cores) == want
    assert sharding.cpu_device_count("auto", cores=cores) == cores  # no batch to divide (inference pads)


def test_cpu_devices_explicit_counts_and_bad_values():
    assert sharding.cpu_device_count("3", 32, cores=2) == 3  # explicit: the batch check comes later
    assert sharding.cpu_device_count(1, 32) == 1
    assert sharding.cpu_device_count("auto", 32, cores=2, multi_process=True) is None
    for bad in ("0", "-2", "two", "", None, 1.5, True):
        with pytest.raises(ValueError, match="cpu_devices"):
            sharding.cpu_device_count(bad, 32, cores=2)


def test_use_cpu_devices_leaves_an_explicit_xla_flag_and_none_alone():
    # Neither call reaches jax.config (which would fail here: this process's backends exist).
    assert sharding.use_cpu_devices(None, environ={}) is None
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    assert sharding.use_cpu_devices(2, environ=env) is None
    jax.devices()  # backends initialised: a real request is refused with a clear error
    with pytest.raises(RuntimeError, match="already initialised"):
        sharding.use_cpu_devices(len(jax.devices("cpu")) + 1, environ={})
    # Entry points that may run inside a JAX program keep its devices instead.
    assert sharding.use_cpu_devices(len(jax.devices("cpu")) + 1, environ={}, strict=False) is None


def test_batch_must_divide_data_axis():
    mesh = sharding.make_mesh()
    sharding.check_batch(5, mesh)  # one device: anything goes
    fake = type("M", (), {"shape": {"data": 4, "model": 1}})()
    with pytest.raises(ValueError, match="not divisible by the 4 devices"):
        sharding.check_batch(6, fake)


def test_process_rows_of_a_batch_equal_the_whole_batch():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(40, 48), (36, 36), (64, 30)]]
    kw = dict(max_downscale=2.0, flip=True, rot90=True)
    whole = data.sample_batch(images, 8, 16, (3, 11), **kw)
    parts = [data.sample_batch(images, 8, 16, (3, 11), rows=(p * 2, p * 2 + 2), **kw) for p in range(4)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    sampler = data.CropSampler(images, batch_size=8, crop_size=16, seed=3, rows=(2, 6), **kw)
    np.testing.assert_array_equal(sampler.batch(11), whole[2:6])
    with pytest.raises(ValueError, match="rows"):
        data.sample_batch(images, 8, 16, (3, 11), rows=(6, 9))


# ---------------------------------------------------------------------------------------------
# eight simulated devices (subprocess)


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
    """Saves a one-device checkpoint, runs the worker on 8 devices, returns (its report, dir)."""
    workdir = tmp_path_factory.mktemp("sharding")
    _, model, optimizer, _ = sharding_worker.tiny_setup()
    state = sharding_worker.initial_state(model, optimizer)
    mgr = checkpointing.make_manager(str(workdir / "ckpt1"))
    checkpointing.save_train_state(mgr, 0, state)
    mgr.wait_until_finished()
    mgr.close()
    np.savez(workdir / "ckpt1.npz", **sharding_worker.flat(state))

    # Backend optimisation level 0: these tiny programs compile ~2x faster and run in milliseconds
    # either way; the reference and the sharded runs share the flag, so the comparison is fair.
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "sharding_worker.py"), str(workdir)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), workdir, state


def test_worker_sees_eight_devices(eight):
    report, _, _ = eight
    assert report["devices"] == 8
    assert report["process_rows"] == [0, 8]  # one process holds the whole global batch


@pytest.mark.parametrize("layout", ["data8", "data4_model2"])
def test_sharded_steps_equal_unsharded(eight, layout):
    r = eight[0][layout]
    np.testing.assert_allclose(r["losses"], r["ref_losses"], rtol=TOL)
    # Adam divides by sqrt(v): for near-zero gradients it magnifies summation-order rounding, so
    # parameters are judged against how far the steps moved them, not absolutely. 5%: on
    # 2026-11-28 a fresh install (jax 0.10.2, flax 0.12.8, optax 0.2.8, numpy 2.4.6) measured 2.5%
    # for data8, at this commit and at the one before it alike (the 2% used until then had passed),
    # while the losses still agree to TOL; a real sharding bug moves params by a whole step.
    assert r["param_diff"] < 0.05 * r["param_moved"]
    if layout == "data4_model2":
        assert r["n_sharded_leaves"] > 0  # shard_params really split something over "model"


def test_checkpoint_saved_on_one_device_restores_on_eight(eight):
    r = eight[0]["restore_1_on_8"]
    assert r["diff"] == 0.0 and r["devices"] == 8


def test_checkpoint_saved_on_eight_devices_restores_on_one(eight):
    _, workdir, state = eight
    abstract = jax.eval_shape(lambda: state)
    mesh = sharding.make_mesh()
    mgr = checkpointing.make_manager(str(workdir / "ckpt8"))
    restored = checkpointing.restore_latest(mgr, sharding.with_shardings(abstract, sharding.state_shardings(mesh, abstract)))
    mgr.close()
    assert int(restored.step) == sharding_worker.STEPS
    want = np.load(workdir / "ckpt8.npz")
    got = sharding_worker.flat(restored)
    assert all(np.array_equal(got[k], want[k]) for k in want.files)


@pytest.mark.parametrize("what", ["restore_batch", "diffsr_from_lr"])
def test_sharded_upscaling_equals_unsharded(eight, what):
    r = eight[0][what]
    assert r["diff"] < 1e-4
    assert r["shape"][0] == {"restore_batch": 5, "diffsr_from_lr": 3}[what]  # padding dropped


@pytest.mark.parametrize("what", ["tiles", "tiles_consistent", "whole", "whole_consistent"])
def test_upscale_array_on_a_mesh_equals_one_device(eight, what):
    """api.upscale_array(mesh=...) gives the one-device output, tiles split by tile and a whole
    image by rows (plain and data-consistent)."""
    r = eight[0][what]
    assert r["devices"] == [1, 8]
    assert r["moved"] > 1e-2  # the tiles were denoised (not the bicubic input): the comparison means something
    assert r["diff"] < 1e-4


def test_sharded_prf_sweep_equals_unsharded(eight):
    r = eight[0]["sweep"]
    assert r["shape"] == [2, 3, 2]
    assert r["psnr"] < 1e-3 and r["ssim"] < 1e-5 and r["hf_err"] < 1e-5
    c = eight[0]["sweep_consistent"]  # data-consistent mode: operators replicated, cells split
    assert c["psnr"] < 1e-3 and c["ssim"] < 1e-5


# ---------------------------------------------------------------------------------------------
# two real processes (opt-in: ~50 s more on two busy cores)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(os.environ.get("DIFFSR_MULTIPROCESS_TEST") != "1",
                    reason="set DIFFSR_MULTIPROCESS_TEST=1 to run two coordinated processes")
def test_two_processes_train_on_their_rows_and_checkpoint(eight, tmp_path):
    """jax.distributed over two local processes × 4 CPU devices (gloo collectives), started by
    sharding.maybe_initialize_distributed("auto") from the environment, as train.py does."""
    base = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}",
                JAX_NUM_PROCESSES="2",
                XLA_FLAGS="--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0")
    cmd = [sys.executable, os.path.join(HERE, "sharding_worker.py"), "--multiprocess", str(tmp_path)]
    procs = [subprocess.Popen(cmd, env=dict(base, JAX_PROCESS_ID=str(i)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-4000:]
    reports = sorted((json.loads(o.strip().splitlines()[-1]) for o, _ in outs), key=lambda r: r["process"])
    assert [r["rows"] for r in reports] == [[0, 4], [4, 8]]
    ref = eight[0]["data8"]["ref_losses"]
    for r in reports:
        assert (r["processes"], r["devices"], r["local_devices"]) == (2, 8, 4)
        np.testing.assert_allclose(r["losses"], ref, rtol=TOL)
        assert r["restored_equal"]
