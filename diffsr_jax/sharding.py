"""Scaling out with JAX's own sharding: a device mesh, shardings, per-process data, CPU devices and
multi-host start-up. Generic: nothing here knows the model; the sharded inference programs are
built by the modules that own them (:func:`diffsr_jax.pipeline.sharded_restore_fn`,
:func:`diffsr_jax.sweep.sweep`) from these pieces.

The mesh has a ``data`` axis (the batch is split over it) and a ``model`` axis (size 1 unless
asked for; with ``shard_params`` the large parameter dimensions are split over it). Everything
else is replicated and XLA (GSPMD) inserts the gradient all-reduce, so a sharded program computes
the same function as the single-device one: results differ only by float summation order.

Sharded inference pads its inputs to a multiple of the data-axis size (:func:`pad_batch`; padded
rows are computed and dropped: each image is independent, and the partitionable threefry PRNG
draws the same values for the first rows of a longer array), then splits them over ``data``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA, MODEL = "data", "model"

# Environment variables that say this process is one of several in a job. Auto mode starts the
# distributed runtime only when one of these says "more than one process": a plain `python
# train.py` on one machine never waits on a coordinator that does not exist. For SLURM the step's
# own task count (set by srun), not SLURM_NTASKS, which an sbatch script's shell also has.
_PROCESS_COUNT_VARS = ("JAX_NUM_PROCESSES", "SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE")


# ---------------------------------------------------------------------------------------------
# Multi-host start-up


def distributed_wanted(mode: str, environ=None) -> bool:
    """Whether to call ``jax.distributed.initialize()`` for ``mode`` in ``environ``.

    ``"off"``: never. ``"on"``: always (JAX then detects the cluster: Cloud TPU pods, SLURM,
    Open MPI, Kubernetes, or reads ``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/
    ``JAX_PROCESS_ID``). ``"auto"``: only when the environment clearly describes a job of more
    than one process: ``JAX_COORDINATOR_ADDRESS`` is set, or one of JAX_NUM_PROCESSES /
    SLURM_STEP_NUM_TASKS (an ``srun`` step) / OMPI_COMM_WORLD_SIZE is > 1. TPU pod slices are not
    auto-detected (that needs a metadata-server query): use ``"on"`` there.
    """
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"distributed mode must be 'auto', 'on' or 'off', got {mode!r}")
    if mode != "auto":
        return mode == "on"
    env = os.environ if environ is None else environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return True
    for var in _PROCESS_COUNT_VARS:
        try:
            if int(env.get(var, "1")) > 1:
                return True
        except ValueError:
            continue
    return False


def maybe_initialize_distributed(mode: str = "auto", environ=None) -> bool:
    """Starts JAX's distributed runtime if :func:`distributed_wanted`; must run before anything
    touches a device. Returns whether this is (now) a multi-process run.

    JAX reads ``JAX_COORDINATOR_ADDRESS`` itself and detects SLURM / Open MPI / Cloud TPU; for a
    hand-launched job (any cluster, or several processes on one machine) it also needs the process
    count and index, which are taken from ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` when set.
    """
    env = os.environ if environ is None else environ
    if distributed_wanted(mode, env) and not jax.distributed.is_initialized():
        count, index = env.get("JAX_NUM_PROCESSES"), env.get("JAX_PROCESS_ID")
        jax.distributed.initialize(num_processes=None if count is None else int(count),
                                   process_id=None if index is None else int(index))
    return jax.process_count() > 1


# ---------------------------------------------------------------------------------------------
# CPU devices: one per core

_FORCE_DEVICES_FLAG = "xla_force_host_platform_device_count"


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_device_count(setting, global_batch: Optional[int] = None, *, cores: Optional[int] = None,
                     multi_process: bool = False) -> Optional[int]:
    """How many CPU devices to ask JAX for; None leaves JAX's default (one).

    ``setting``: ``"auto"`` or a whole number ≥ 1 (int or string, as a config override gives it).
    ``"auto"`` is one device per usable core, lowered (for training) to the largest count that
    divides ``global_batch`` (the batch is split over the devices; sharded inference pads instead,
    so it passes None). Why: XLA's CPU backend runs each op
    on a thread pool, and the CPU config's narrow convolutions keep two cores only ~65% busy; with
    the batch split over one device per core each core runs whole ops on its own half, which makes
    the step faster (measured by benchmarks/scaling.py).
    Multi-process runs keep JAX's default under ``"auto"`` (their device count is the cluster's).
    Only CPU devices are affected: on a GPU/TPU machine the mesh is made of the accelerators.
    """
    if isinstance(setting, str) and setting.strip().lower() == "auto":
        if multi_process:
            return None
        cores = max(usable_cores() if cores is None else int(cores), 1)
        return cores if global_batch is None else max(d for d in range(1, cores + 1) if global_batch % d == 0)
    try:
        n = int(setting) if not isinstance(setting, (bool, float)) else 0
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ValueError(f"mesh.cpu_devices must be 'auto' or a whole number >= 1, got {setting!r}")
    return n


def use_cpu_devices(n: Optional[int], environ=None, *, strict: bool = True, note: bool = True) -> Optional[int]:
    """Asks JAX for ``n`` CPU devices; must run before anything touches a device. Returns the
    count set, or None where nothing was set: ``n`` is None, or the user's XLA_FLAGS already
    say ``--xla_force_host_platform_device_count`` (an explicit choice wins), or (``strict=False``,
    for entry points that may be called inside a running JAX program) JAX's backends already exist:
    then the devices there are kept and (``note``) a note goes to stderr."""
    env = os.environ if environ is None else environ
    if n is None or _FORCE_DEVICES_FLAG in env.get("XLA_FLAGS", ""):
        return None
    try:
        jax.config.update("jax_num_cpu_devices", int(n))
    except RuntimeError as e:  # JAX refuses once its backends exist
        if strict:
            raise RuntimeError(f"cannot set {n} CPU devices: JAX's backends are already initialised ({e})") from e
        if note:
            print(f"note: JAX is already running on {jax.device_count()} device(s); not switching to {n} CPU "
                  "devices", file=sys.stderr)
        return None
    return int(n)


def setup_cpu_devices(setting, *, note: bool = False) -> Optional[int]:
    """What the entry points (infer.py, evaluate.py, calibrate.py) call before anything touches a
    device: :func:`cpu_device_count` of ``setting`` ("auto" or N) applied with
    :func:`use_cpu_devices` (not strict: a running JAX keeps its devices, with a note to stderr
    when ``note``). ValueError for a bad setting."""
    return use_cpu_devices(cpu_device_count(setting), strict=False, note=note)


# ---------------------------------------------------------------------------------------------
# Mesh and shardings


def make_mesh(model: int = 1, devices: Optional[Sequence[Any]] = None) -> Mesh:
    """A ``(data, model)`` mesh over ``devices`` (default: every device of every process), with
    ``data = len(devices) // model``. On one device this is a 1×1 mesh: the same program as an
    unsharded jit."""
    devices = list(jax.devices() if devices is None else devices)
    model = int(model)
    if model < 1 or len(devices) % model:
        raise ValueError(f"the model axis ({model}) must divide the number of devices ({len(devices)})")
    # Auto axes: the classic GSPMD behaviour (jit shardings are layouts, not part of the types);
    # jax.make_mesh would default to Explicit axes, which change how every op is typed.
    return jax.make_mesh((len(devices) // model, model), (DATA, MODEL),
                         axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def data_size(mesh: Mesh) -> int:
    return int(mesh.shape[DATA])


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data``, everything else replicated."""
    return NamedSharding(mesh, P(DATA))


def check_batch(global_batch: int, mesh: Mesh) -> None:
    n = data_size(mesh)
    if global_batch % n:
        raise ValueError(f"the global batch size {global_batch} is not divisible by the {n} devices "
                         f"of the mesh's data axis; choose a batch size that is a multiple of {n} "
                         "(or use fewer devices / a larger model axis)")


def _param_spec(shape: tuple, model: int) -> P:
    # Split the last dimension divisible by the model axis (a conv/dense kernel's output channels,
    # usually the largest); small or indivisible leaves (biases of odd widths, the step) stay whole.
    for axis in reversed(range(len(shape))):
        if shape[axis] >= model and shape[axis] % model == 0:
            return P(*([None] * axis), MODEL)
    return P()


def state_shardings(mesh: Mesh, abstract_state: Any, shard_params: bool = False) -> Any:
    """Shardings for a pytree of arrays: all replicated, or (``shard_params`` with a model axis
    > 1) each leaf's last divisible dimension split over ``model``."""
    model = int(mesh.shape[MODEL])
    if not shard_params or model == 1:
        return jax.tree.map(lambda _: replicated(mesh), abstract_state)
    return jax.tree.map(lambda a: NamedSharding(mesh, _param_spec(tuple(a.shape), model)), abstract_state)


def with_shardings(abstract: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying shardings: what Orbax restores into (so a checkpoint written on
    any number of devices is laid out for this mesh) and what jitted init produces."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


# ---------------------------------------------------------------------------------------------
# Per-process data


def process_rows(mesh: Mesh, global_batch: int) -> tuple[int, int]:
    """The rows ``[start, stop)`` of the global batch that this process's devices hold.

    Read off the sharding rather than assumed to be ``[p*B/P, (p+1)*B/P)``: device order in the
    mesh is the topology's, and this is what make_array_from_process_local_data expects.
    """
    check_batch(global_batch, mesh)
    index_map = batch_sharding(mesh).addressable_devices_indices_map((global_batch,))
    rows = sorted({i for idx in index_map.values() for i in range(*idx[0].indices(global_batch))})
    start, stop = rows[0], rows[-1] + 1
    if len(rows) != stop - start:
        raise ValueError(f"process {jax.process_index()} holds non-contiguous batch rows; build the "
                         "mesh from jax.devices() so each process's devices are adjacent")
    return start, stop


def global_batch(mesh: Mesh, local: np.ndarray, global_batch_size: int) -> jax.Array:
    """One global array from this process's rows (see :func:`process_rows`), split over ``data``."""
    shape = (int(global_batch_size), *np.shape(local)[1:])
    return jax.make_array_from_process_local_data(batch_sharding(mesh), np.asarray(local), shape)


def shard_batch(mesh: Mesh, x) -> jax.Array:
    """Places a host batch (the whole batch, identical on every process) split over ``data``."""
    x = np.asarray(x)
    check_batch(x.shape[0], mesh)
    return jax.device_put(x, batch_sharding(mesh))


def to_host(x: jax.Array) -> np.ndarray:
    """A (possibly multi-host) global array as a numpy array on every process."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils  # only multi-host runs need it

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def pad_rows(x: np.ndarray, multiple: int) -> np.ndarray:
    """Pads axis 0 to a multiple by repeating the last row (computed, then dropped)."""
    extra = (-x.shape[0]) % multiple
    return np.concatenate([x, np.repeat(x[-1:], extra, axis=0)]) if extra else x


def height_sharding(mesh: Mesh) -> NamedSharding:
    """NHWC arrays with their rows (H) split over ``data``: one image spread over the devices."""
    return NamedSharding(mesh, P(None, DATA))


def pad_batch(mesh: Mesh, x, t):
    """Host batch x (B, ...) and t (scalar or (B,)) padded to a multiple of the data-axis size
    → (x float32, t int32, B)."""
    x = np.asarray(x, np.float32)
    b, n = x.shape[0], data_size(mesh)
    t = np.asarray(t, np.int32)
    return pad_rows(x, n), (pad_rows(t, n) if t.ndim == 1 else t), b
