"""Train (or resume) a Diff-SR denoiser; optionally export its EMA params for inference.

    python train.py --config configs/cpu.py --workdir runs/cpu
    python train.py --config configs/cpu.py --workdir runs/cpu --config.train.num_steps=2000
    python train.py --config configs/cpu.py --workdir runs/cpu --export_to checkpoints/new_model
    python train.py --config configs/cpu.py --workdir runs/cpu --export_to cand --export_only

Re-running the same command resumes from the newest complete checkpoint in --workdir.
--export_only exports that checkpoint's EMA params without training: safe beside the run that is
still writing to --workdir (it only reads a committed checkpoint).
Runs on all local devices; for several processes/hosts see README "Scaling out" (--distributed).
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/cpu.py", "Training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics (resumed if present).")
_EXPORT = flags.DEFINE_string("export_to", None, "After training, export EMA params here for inference.")
_EXPORT_ONLY = flags.DEFINE_bool(
    "export_only", False, "With --export_to: export the newest checkpoint in --workdir without training "
    "(works while another process is still training in --workdir).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "on", "off"],
    "Call jax.distributed.initialize(): 'on' always (TPU pods, SLURM, ...), 'auto' only when the "
    "environment names several processes (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES>1, a SLURM "
    "srun step of several tasks, OMPI_COMM_WORLD_SIZE>1), 'off' never.")


def _main(argv):
    del argv
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # Orbax logs every file rename at INFO
    from diffsr_jax import checkpointing, data, sharding, train_lib

    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    if _EXPORT_ONLY.value and not _EXPORT.value:
        raise app.UsageError("--export_only needs --export_to DIR")
    # Before anything touches a device: the CPU device count, then every process of the runtime.
    if not _EXPORT_ONLY.value:
        _set_cpu_devices(_CONFIG.value)
    multi_process = sharding.maybe_initialize_distributed(_DISTRIBUTED.value)
    if multi_process and _EXPORT.value:
        raise app.UsageError("--export_to needs a single process: train with several, then rerun the "
                             "same command as one process with --export_to --export_only")
    try:
        if not _EXPORT_ONLY.value:
            train_lib.train_and_evaluate(_CONFIG.value, _WORKDIR.value, progress=_PROGRESS.value)
        if _EXPORT.value:
            path = train_lib.export_latest(_CONFIG.value, _WORKDIR.value, _EXPORT.value)
            print(f"exported EMA params to {path}")
    except (train_lib.TrainingError, checkpointing.CheckpointError, data.DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _set_cpu_devices(config) -> None:
    from diffsr_jax import sharding

    setting = (config.get("mesh") or {}).get("cpu_devices")
    if setting is None:  # a config from before mesh.cpu_devices: JAX's default
        return
    try:
        n = sharding.cpu_device_count(setting, int(config.train.batch_size),
                                      multi_process=sharding.distributed_wanted(_DISTRIBUTED.value))
    except ValueError as e:
        raise app.UsageError(str(e))
    sharding.use_cpu_devices(n)


def main():
    # Config files import `configs.*`: make the working directory importable when run as a script.
    sys.path.insert(0, os.getcwd())
    # absl's --help lists only the key flags of the main module (keyed by sys.argv[0]); ours are
    # defined here, so register them for it (covers train.py and the diffsr-train script).
    for name in ("config", "workdir", "export_to", "export_only", "progress", "distributed"):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])
    app.run(_main)


if __name__ == "__main__":
    main()
