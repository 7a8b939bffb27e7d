import contextlib
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffsr_jax import checkpointing, schedules, train_lib
from conftest import REPO


def _leaves_close(a, b, atol=0.0):
    return all(np.allclose(x, y, atol=atol) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_one_real_step_updates_params_and_ema(tiny_config):
    c = tiny_config
    model, opt = train_lib.build_model(c), train_lib.build_optimizer(c.train)
    sched = schedules.schedule_from_spec(dict(c.schedule))
    state = train_lib.init_train_state(model, opt, jax.random.key(0), (16, 16, 3))
    before = jax.tree.map(np.asarray, state.params)
    step = train_lib.make_train_step(model, sched, opt, ema_decay=0.99)
    batch = jax.random.uniform(jax.random.key(1), (4, 16, 16, 3), minval=-1, maxval=1)
    new, metrics = step(state, batch, jax.random.key(2))
    assert int(new.step) == 1 and np.isfinite(float(metrics["loss"]))
    assert not _leaves_close(before, new.params)
    assert not _leaves_close(new.ema_params, new.params)  # EMA lags the params


def test_resume_and_branch_continue_exactly(tiny_config, tmp_path):
    """4 steps in one run == 2 steps, stop, resume to 4 (same batches, same keys) == a branch
    (train.branch_from) of that 2-step run trained to 4, which leaves the run it branched from
    untouched. A missing branch step, or branch_from with init_from, is a clear error."""
    c = tiny_config
    c.train.num_steps = 4
    straight = train_lib.train_and_evaluate(c, str(tmp_path / "a"), progress=False)
    c.train.num_steps = 2
    train_lib.train_and_evaluate(c, str(tmp_path / "b"), progress=False)
    branched = c.copy_and_resolve_references()
    branched.train.update(dict(num_steps=4, branch_from=str(tmp_path / "b")))
    branch = train_lib.train_and_evaluate(branched, str(tmp_path / "c"), progress=False)
    assert int(branch.step) == 4 and _leaves_close(straight.params, branch.params, atol=1e-6)
    assert list(checkpointing.make_manager(str(tmp_path / "b" / "checkpoints")).all_steps()) == [2]
    c.train.num_steps = 4
    resumed = train_lib.train_and_evaluate(c, str(tmp_path / "b"), progress=False)
    assert int(resumed.step) == 4
    assert _leaves_close(straight.params, resumed.params, atol=1e-6)
    assert _leaves_close(straight.ema_params, resumed.ema_params, atol=1e-6)
    branched.train.branch_step = 3
    with pytest.raises(FileNotFoundError, match="no step 3"):
        train_lib.train_and_evaluate(branched, str(tmp_path / "d"), progress=False)
    branched.train.init_from = str(tmp_path / "model")
    with pytest.raises(ValueError, match="not both"):
        train_lib.train_and_evaluate(branched, str(tmp_path / "e"), progress=False)


def test_cooldown_schedule_holds_then_decays_to_zero(tiny_config):
    tc = tiny_config.train
    tc.update(dict(num_steps=100, warmup_steps=10, learning_rate=1e-3, lr_decay="cooldown", cooldown_steps=40))
    lr = train_lib.learning_rate_schedule(tc)
    assert float(lr(0)) == pytest.approx(1e-4)            # warm-up starts at lr / warmup_steps
    assert float(lr(10)) == float(lr(60)) == pytest.approx(1e-3)  # held until num_steps - cooldown
    assert float(lr(80)) == pytest.approx(5e-4)           # half-way down the linear decay
    assert float(lr(100)) == pytest.approx(0.0, abs=1e-12)
    for bad in (0, 91):
        tc.cooldown_steps = bad
        with pytest.raises(ValueError, match="cooldown_steps"):
            train_lib.learning_rate_schedule(tc)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_config, tmp_path):
    c = tiny_config
    c.train.num_steps = 6

    @contextlib.contextmanager
    def batches(start):
        def gen():
            rng = np.random.default_rng(0)
            for s in range(start, 100):
                b = rng.uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
                yield s, (b * np.nan if s == 3 else b)
        yield gen()

    with pytest.raises(train_lib.TrainingError, match="non-finite loss.*step 3.*step 2"):
        train_lib.train_and_evaluate(c, str(tmp_path), progress=False, batch_iterator_factory=batches)
    manager = checkpointing.make_manager(str(tmp_path / "checkpoints"))
    assert manager.latest_step() == 2


def test_incomplete_checkpoint_is_ignored(tiny_config, tmp_path):
    c = tiny_config
    c.train.num_steps = 2
    train_lib.train_and_evaluate(c, str(tmp_path), progress=False)
    # What a save killed half-way leaves behind: an uncommitted temp directory.
    os.makedirs(tmp_path / "checkpoints" / "4.orbax-checkpoint-tmp-1234" / "default")
    manager = checkpointing.make_manager(str(tmp_path / "checkpoints"))
    assert manager.latest_step() == 2
    state = checkpointing.restore_latest(manager, train_lib.abstract_train_state(c))
    assert int(state.step) == 2


def test_export_and_warm_start(tiny_config, tmp_path):
    c = tiny_config
    c.train.num_steps = 2
    state = train_lib.train_and_evaluate(c, str(tmp_path / "w"), progress=False)
    out = train_lib.export_latest(c, str(tmp_path / "w"), str(tmp_path / "model"))
    meta = checkpointing.read_model_meta(out)
    assert meta["step"] == 2 and meta["schedule"]["T"] == 100
    with pytest.raises(checkpointing.CheckpointError, match="refusing to overwrite"):
        train_lib.export_latest(c, str(tmp_path / "w"), str(tmp_path / "model"))
    fresh = train_lib.init_train_state(train_lib.build_model(c), train_lib.build_optimizer(c.train),
                                       jax.random.key(9), (16, 16, 3))
    warm = train_lib.warm_start(fresh, out)
    assert _leaves_close(warm.params, state.ema_params) and _leaves_close(warm.ema_params, state.ema_params)
    # A run warm-started from that export restarts its step count; its exports say where from.
    c.train.init_from = out
    train_lib.train_and_evaluate(c, str(tmp_path / "w2"), progress=False)
    meta = checkpointing.read_model_meta(train_lib.export_latest(c, str(tmp_path / "w2"), str(tmp_path / "m2")))
    assert meta["step"] == 2
    assert meta["warm_start"] == {"from": os.path.abspath(out), "from_step": 2} and meta["total_steps"] == 4
    # A branch of that warm-started run keeps its origin: its exports count the steps before it too.
    c.train.init_from, c.train.branch_from, c.train.num_steps = "", str(tmp_path / "w2"), 3
    train_lib.train_and_evaluate(c, str(tmp_path / "w3"), progress=False)
    meta = checkpointing.read_model_meta(train_lib.export_latest(c, str(tmp_path / "w3"), str(tmp_path / "m3")))
    assert meta["step"] == 3 and meta["warm_start"]["from_step"] == 2 and meta["total_steps"] == 5


def test_train_cli_killed_then_resumed(image_folder, tmp_path):
    """train.py for real in a subprocess: kill it after a checkpoint, re-run, steps continue."""
    workdir = tmp_path / "run"
    args = [sys.executable, os.path.join(REPO, "train.py"), "--config", os.path.join(REPO, "configs/tiny.py"),
            "--workdir", str(workdir), f"--config.data.sources=('{image_folder}',)",
            f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.train.save_every=1", "--progress=false"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    # Written on 2 CPU devices (the batch split over them), resumed and exported on 1.
    proc = subprocess.Popen(args + ["--config.train.num_steps=100000", "--config.mesh.cpu_devices=2"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = workdir / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and not (ckpt.exists() and any(p.name.isdigit() and int(p.name) >= 3
                                                                for p in ckpt.iterdir())):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "mesh: 2 x 1 (data x model) over 2 cpu device(s)" in proc.stderr.read().decode()
    killed_at = checkpointing.make_manager(str(ckpt)).latest_step()
    assert killed_at is not None and killed_at >= 2
    done = subprocess.run(args + [f"--config.train.num_steps={killed_at + 2}", "--config.mesh.cpu_devices=1"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mesh: 1 x 1 (data x model) over 1 cpu device(s)" in done.stderr
    assert f"resumed from step {killed_at}" in done.stderr
    assert checkpointing.make_manager(str(ckpt)).latest_step() == killed_at + 2
    # --export_only: the newest checkpoint's EMA, no training (a larger num_steps is not run).
    exported = subprocess.run(args + ["--config.train.num_steps=100000", "--export_only",
                                      f"--export_to={tmp_path / 'model'}"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert checkpointing.read_model_meta(str(tmp_path / "model"))["step"] == killed_at + 2
    assert checkpointing.make_manager(str(ckpt)).latest_step() == killed_at + 2
