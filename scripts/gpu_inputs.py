"""What a GPU training run needs, in forms easy to copy to the GPU machine and back (scripts/README.md).

Used on both sides: here by ``scripts/pack_gpu_inputs.sh`` (pack), there by ``scripts/gpu_train.py``
(load, batches, flat export) and here again by ``scripts/unpack_gpu_model.py``.

- Training images -> one ``.npz`` (:func:`pack_images`, :func:`load_packed_images`). The photos are
  stored as decoded uint8 HxWx3 arrays when the compressed file stays under ``max_mib``, else as
  their original file bytes (lossless: PNGs; JPEGs decode to the same pixels with the same decoder),
  with the SHA-256 of the pixels this machine decoded, so the GPU machine can tell whether its Pillow
  decodes them identically. (For the 148 photos of CBSD68 + CSun_Hays80: decoded arrays ~ 120+ MiB compressed,
  re-encoded PNGs ~ 100 MiB, original files 27.6 MiB.)
- Models -> a *flat model* folder: ``model.json`` (as exported) + ``params.msgpack`` (the params,
  ``flax.serialization.msgpack_serialize``): two files, no nested folders, and no dependence on the
  Orbax version of either machine (:func:`model_dir_to_flat`, :func:`flat_to_model_dir`).
- :class:`ProcessBatches`: ``data.CropSampler.batch(step)`` in a pool of worker processes writing into
  shared memory: the same batches as ``data.BatchIterator`` (a pure function of (seed, step)), at
  the rate a GPU needs rather than one core's.

CLI (used by pack_gpu_inputs.sh):
    python scripts/gpu_inputs.py pack-images --config configs/cpu.py --out .gpu_inputs/train_images.npz
    python scripts/gpu_inputs.py flat-model --model diffsr_jax/assets/default_model --out .gpu_inputs/init_model
    python scripts/gpu_inputs.py flat-model --workdir runs/cpu --config configs/cpu.py --out .gpu_inputs/init_model
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# Evaluation sets: never training data (README, model card).
EVAL_SETS = ("cset5", "cset14", "curban100")
FLAT_PARAMS, FLAT_META = "params.msgpack", "model.json"


def _data():
    """diffsr_jax.data; in a worker process (which has not imported the package) data.py alone, so
    a worker starts without importing jax and flax through diffsr_jax/__init__ (data.py needs only
    numpy and Pillow): the same source file, so the same crops."""
    if "diffsr_jax" in sys.modules:
        from diffsr_jax import data

        return data
    mod = sys.modules.get("_diffsr_data")
    if mod is None:
        import importlib.util

        spec = importlib.util.spec_from_file_location("_diffsr_data", os.path.join(REPO, "diffsr_jax", "data.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules["_diffsr_data"] = mod
        spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------------------------
# Training images


def _check_not_eval(folder: str) -> None:
    parts = {p.lower() for p in os.path.realpath(folder).split(os.sep)}
    bad = parts.intersection(EVAL_SETS)
    if bad:
        raise ValueError(f"refusing to pack {folder!r}: {sorted(bad)[0]} is an evaluation set")


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def pack_images(folders, out_path: str, max_mib: float = 40.0, fmt: str = "auto") -> dict:
    """Writes the images under ``folders`` (data.list_image_files order, unreadable ones skipped
    like training does) to ``out_path``; ``fmt`` is 'arrays', 'encoded' or 'auto' (arrays if the
    compressed file fits in ``max_mib``, else encoded). Raises if the result exceeds ``max_mib``."""
    from diffsr_jax import data

    folders = [folders] if isinstance(folders, str) else list(folders)
    for f in folders:
        _check_not_eval(f)
    files = data.list_image_files(folders)
    if not files:
        raise data.DataError(f"no images in {folders}")
    names, shas, shapes, arrays, encoded = [], [], [], [], []
    for folder, rel in files:
        path = os.path.join(folder, rel)
        try:
            a = data.load_image_rgb(path)
        except data.DataError as e:
            warnings.warn(f"skipping unreadable image: {e}", stacklevel=2)
            continue
        names.append(os.path.join(os.path.basename(folder), rel))
        shas.append(_sha(a))
        shapes.append(a.shape)
        arrays.append(a)
        with open(path, "rb") as fh:
            encoded.append(np.frombuffer(fh.read(), np.uint8))
    limit = int(max_mib * 2**20)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)

    def write(kind, blobs):
        tmp = out_path + ".tmp.npz"
        np.savez_compressed(tmp, format=np.array(kind), names=np.array(names), sha256=np.array(shas),
                            shapes=np.array(shapes, np.int64),
                            **{f"img_{i:05d}": b for i, b in enumerate(blobs)})
        os.replace(tmp, out_path)
        return os.path.getsize(out_path)

    size = None
    raw = sum(a.nbytes for a in arrays)
    if fmt == "arrays" or (fmt == "auto" and raw <= 3 * limit):  # natural photos compress < 3x
        kind, size = "arrays", write("arrays", arrays)
    if fmt == "encoded" or (fmt == "auto" and (size is None or size > limit)):
        kind, size = "encoded", write("encoded", encoded)
    if size > limit:
        raise ValueError(f"{out_path} is {size / 2**20:.1f} MiB > {max_mib} MiB")
    return {"path": out_path, "format": kind, "n": len(names), "mib": size / 2**20,
            "raw_mib": raw / 2**20}


def _decode(blob: np.ndarray) -> np.ndarray:
    # data.load_image_rgb (the library's one decoder) reads files: decode via a temporary file.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "image")
        with open(path, "wb") as fh:
            fh.write(blob.tobytes())
        return _data().load_image_rgb(path)


def load_packed_images(path: str, verify: bool = True) -> tuple[list[np.ndarray], dict]:
    """The images of a :func:`pack_images` file, and {format, n, mismatched} (images whose pixels
    differ from the packing machine's decode: a different JPEG decoder, not a broken file)."""
    with np.load(path, allow_pickle=False) as z:
        kind = str(z["format"])
        n = len(z["names"])
        shas = [str(s) for s in z["sha256"]]
        blobs = [z[f"img_{i:05d}"] for i in range(n)]
    images = blobs if kind == "arrays" else [_decode(b) for b in blobs]
    mismatched = sum(_sha(a) != s for a, s in zip(images, shas)) if verify else None
    return images, {"format": kind, "n": n, "mismatched": mismatched}


# ---------------------------------------------------------------------------------------------
# Flat models (model.json + params.msgpack)


def model_dir_to_flat(model_dir: str, out_dir: str) -> str:
    """An exported (Orbax) model folder -> ``out_dir/{model.json, params.msgpack}``."""
    import jax
    from flax import serialization

    from diffsr_jax import api

    m = api.load_model(model_dir)  # the project's loader: also validates the export
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, FLAT_PARAMS), "wb") as f:
        f.write(serialization.msgpack_serialize(jax.tree.map(np.asarray, jax.device_get(m.params))))
    shutil.copyfile(os.path.join(model_dir, "model.json"), os.path.join(out_dir, FLAT_META))
    return out_dir


def load_flat_params(flat_dir: str):
    """(params as numpy, model.json dict), checked against the UNet that model.json describes."""
    import jax
    from flax import serialization

    with open(os.path.join(flat_dir, FLAT_META)) as f:
        meta = json.load(f)
    with open(os.path.join(flat_dir, FLAT_PARAMS), "rb") as f:
        params = serialization.msgpack_restore(f.read())
    from diffsr_jax.models import abstract_params, build_unet

    abstract = abstract_params(build_unet(**meta["model"]))
    if jax.tree.structure(abstract) != jax.tree.structure(params):
        raise ValueError(f"{flat_dir}: parameter tree does not match model.json's UNet")
    for a, p in zip(jax.tree.leaves(abstract), jax.tree.leaves(params)):
        if a.shape != p.shape or a.dtype != p.dtype:
            raise ValueError(f"{flat_dir}: parameter {p.shape} {p.dtype} where the UNet has {a.shape} {a.dtype}")
    return params, meta


def flat_to_model_dir(flat_dir: str, out_dir: str, extra: dict | None = None) -> str:
    """``flat_dir/{model.json, params.msgpack}`` -> an exported model folder (Orbax, loadable with
    ``diffsr_jax.load_model``); every model.json field is kept, ``extra`` added."""
    from diffsr_jax import checkpointing

    params, meta = load_flat_params(flat_dir)
    rest = {k: v for k, v in meta.items() if k not in ("model", "schedule")}
    return checkpointing.export_model(out_dir, params, meta["model"], meta["schedule"],
                                      extra={**rest, **(extra or {})})


# ---------------------------------------------------------------------------------------------
# Batches from worker processes


def _worker_main(conn, npz_path, sampler_kwargs, shm_name, buf_shape):
    """A batch worker: decodes the images once, then answers ``(step, slot)`` requests on its own
    pipe, in order, until it receives ``None``. Each answer is ``("ok", batch or None)`` or
    ``("error", traceback text)``; an error while starting is sent and ends the worker."""
    import traceback

    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # workers never touch the accelerator
    shm = buf = None  # shm stays referenced while buf is used: its mapping backs buf
    try:
        images, _ = load_packed_images(npz_path, verify=False)
        sampler = _data().CropSampler(images, **sampler_kwargs)
        if shm_name:
            from multiprocessing import shared_memory

            # Attaching registers it with the resource tracker, which spawned workers share with
            # the parent: a second registration of the same name is harmless; the parent unlinks it.
            shm = shared_memory.SharedMemory(name=shm_name)
            buf = np.ndarray(buf_shape, np.float32, buffer=shm.buf)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the parent is gone
            return
        if msg is None:
            return
        step, slot = msg
        try:
            b = sampler.batch(step)
            if buf is not None:
                buf[slot] = b
                b = None
            conn.send(("ok", b))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


class ProcessBatches:
    """Yields ``(step, batch)`` for step = start_step, ... like ``data.BatchIterator`` (same batches),
    computed by ``workers`` spawned processes, each holding the decoded images of ``npz_path``.

    Batches land in shared-memory slots and are handed out as views (no copy): a view stays valid
    until two more batches have been taken, which suits train_lib's loop (it syncs on each step's
    loss before taking the next batch). Falls back to sending arrays through pipes when /dev/shm
    is too small. The first batch is made in the constructor, so a broken worker fails there.

    Each worker has its own pipe and takes every ``workers``-th step, so its answers arrive in the
    order they are wanted. Not ``multiprocessing.Pool``: its ``terminate()`` can hang for good when
    a worker is stopped mid-task (CPython issues #73945, #78178, #96995), holding the run until it is
    killed from outside; a worker here that does not stop when asked is killed.
    """

    def __init__(self, npz_path: str, *, start_step: int, workers: int, batch_size: int, crop_size: int,
                 seed: int, max_downscale: float = 1.0, flip: bool = True, rot90: bool = True,
                 rows=None, in_flight: int | None = None, first_timeout_s: float = 90.0,
                 timeout_s: float = 120.0):
        import multiprocessing as mp
        from multiprocessing import shared_memory

        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        sampler_kwargs = dict(batch_size=batch_size, crop_size=crop_size, seed=seed,
                              max_downscale=max_downscale, flip=flip, rot90=rot90, rows=rows)
        nrows = batch_size if rows is None else int(rows[1]) - int(rows[0])
        self._in_flight = max(1, in_flight or 2 * workers)
        nslots = self._in_flight + 2
        self._shape = (nslots, nrows, crop_size, crop_size, 3)
        nbytes = int(np.prod(self._shape)) * 4
        self._shm = None
        try:
            st = os.statvfs("/dev/shm")
            if st.f_bavail * st.f_frsize > 2 * nbytes:
                self._shm = shared_memory.SharedMemory(create=True, size=nbytes)
        except OSError:
            self._shm = None
        self.transport = "shm" if self._shm is not None else "pipe"
        self._buf = None if self._shm is None else np.ndarray(self._shape, np.float32, buffer=self._shm.buf)
        self._timeout_s = timeout_s
        self._free = collections.deque(range(nslots))
        self._pending: collections.deque = collections.deque()  # (step, slot, worker index)
        self._held: collections.deque = collections.deque()
        self._start = self._next = int(start_step)
        self._closed = False
        self._workers: list = []  # (process, the parent's end of its pipe)
        try:
            ctx = mp.get_context("spawn")
            args = (os.path.abspath(npz_path), sampler_kwargs,
                    None if self._shm is None else self._shm.name, self._shape)
            for _ in range(workers):
                parent_end, child_end = ctx.Pipe(duplex=True)
                proc = ctx.Process(target=_worker_main, args=(child_end, *args), daemon=True)
                proc.start()
                child_end.close()
                self._workers.append((proc, parent_end))
            self._fill()
            self._first = self._take(first_timeout_s)  # spawn + imports + decoding the images
        except BaseException:
            self.close()
            raise

    def _fill(self) -> None:
        while self._free and len(self._pending) < self._in_flight:
            slot = self._free.popleft()
            w = (self._next - self._start) % len(self._workers)
            try:
                self._workers[w][1].send((self._next, slot))
            except OSError as e:  # its end of the pipe is closed: the worker died
                raise self._exited(w, self._next) from e
            self._pending.append((self._next, slot, w))
            self._next += 1

    def _take(self, timeout_s: float):
        """The oldest pending batch: waits for its worker's next answer; a dead worker is an error."""
        step, slot, w = self._pending.popleft()
        conn = self._workers[w][1]
        if not conn.poll(timeout_s):  # a dead worker's pipe polls readable at once (end of file)
            raise TimeoutError(f"no batch for step {step} from worker {w} within {timeout_s:.0f} s")
        try:
            status, payload = conn.recv()
        except (EOFError, OSError) as e:
            raise self._exited(w, step) from e
        if status != "ok":
            raise RuntimeError(f"batch worker {w} failed at step {step}:\n{payload}")
        return step, slot, payload

    def _exited(self, w: int, step: int) -> RuntimeError:
        proc = self._workers[w][0]
        proc.join(1.0)
        return RuntimeError(f"batch worker {w} exited (code {proc.exitcode}) before step {step}")

    def __iter__(self):
        return self

    def __next__(self):
        if self._closed:
            raise StopIteration
        while len(self._held) > 1:  # batches taken two calls ago are no longer read
            self._free.append(self._held.popleft())
        if self._first is not None:
            (step, slot, payload), self._first = self._first, None
        else:
            self._fill()
            step, slot, payload = self._take(self._timeout_s)
        self._held.append(slot)
        self._fill()
        return step, (payload if self._buf is None else self._buf[slot])

    def close(self, join_timeout_s: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        for _, conn in self._workers:
            try:
                conn.send(None)
            except OSError:  # that worker is gone already
                pass
        # One deadline for all of them (not join_timeout_s each: the GPU run has cpu_count - 2), then
        # stop what is still busy (e.g. blocked sending a batch nobody reads).
        deadline = time.monotonic() + join_timeout_s
        for proc, _ in self._workers:
            proc.join(max(0.0, deadline - time.monotonic()))
        busy = [proc for proc, _ in self._workers if proc.is_alive()]
        for proc in busy:
            proc.terminate()
        deadline = time.monotonic() + join_timeout_s
        for proc in busy:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        for _, conn in self._workers:
            conn.close()
        if self._shm is not None:
            self._buf = None
            try:
                self._shm.close()
            except BufferError:  # a consumer still holds a view: the mapping goes with the process
                pass
            self._shm.unlink()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TimedBatches:
    """Wraps a batch iterator (context manager): counts the time the consumer waits for batches and
    prints a progress line every ``report_s`` seconds."""

    def __init__(self, inner, report_s: float = 30.0, batch_size: int = 0, out=sys.stderr):
        self.inner, self.report_s, self.batch_size, self.out = inner, report_s, batch_size, out
        self.wait_s, self.n, self.t_first, self.t_last = 0.0, 0, None, None
        self._t_report, self._n_report, self.step = time.time(), 0, None

    def __iter__(self):
        return self

    def __next__(self):
        t = time.time()
        step, batch = next(self.inner)
        now = time.time()
        if self.t_first is None:
            self.t_first = now  # waits before the first batch are start-up, not steady state
        else:
            self.wait_s += now - t
        self.n += 1
        self.t_last, self.step = now, step
        if now - self._t_report >= self.report_s:
            rate = (self.n - self._n_report) / (now - self._t_report)
            print(f"[{time.strftime('%H:%M:%S')}] step {step}: {rate:.2f} steps/s, "
                  f"{rate * self.batch_size:.0f} img/s, waiting for data {self.wait_fraction():.0%}",
                  file=self.out, flush=True)
            self._t_report, self._n_report = now, self.n
        return step, batch

    def wait_fraction(self) -> float:
        span = (self.t_last or 0) - (self.t_first or 0)
        return self.wait_s / span if span > 0 else 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)


# ---------------------------------------------------------------------------------------------
# CLI


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack-images", help="the config's training folders -> one .npz")
    a.add_argument("--config", default="configs/cpu.py")
    a.add_argument("--out", required=True)
    a.add_argument("--max-mib", type=float, default=40.0)
    a.add_argument("--format", default="auto", choices=["auto", "arrays", "encoded"])
    b = sub.add_parser("flat-model", help="an exported model, or a workdir's newest checkpoint -> flat")
    b.add_argument("--model", help="exported model folder")
    b.add_argument("--workdir", help="training workdir: export its newest checkpoint's EMA params")
    b.add_argument("--config", default="configs/cpu.py", help="the workdir's config")
    b.add_argument("--out", required=True)
    b.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    args = p.parse_args(argv)
    sys.path.insert(0, os.getcwd())  # configs/*.py import `configs.default`
    from diffsr_jax import train_lib  # here, not at the top: crop workers never import JAX

    if args.cmd == "pack-images":
        config = train_lib.load_config_file(args.config)
        sources = [s for s in config.data.sources if not str(s).startswith("tfds:")]
        info = pack_images(sources, args.out, max_mib=args.max_mib, fmt=args.format)
        print(json.dumps(info))
        return
    if bool(args.model) == bool(args.workdir):
        p.error("flat-model needs exactly one of --model, --workdir")
    if os.path.exists(args.out):
        if not args.overwrite:
            p.error(f"{args.out} exists; pass --overwrite to replace it")
        shutil.rmtree(args.out)
    if args.model:
        model_dir_to_flat(args.model, args.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            d = train_lib.export_latest(train_lib.load_config_file(args.config), args.workdir,
                                        os.path.join(tmp, "m"))
            model_dir_to_flat(d, args.out)
    with open(os.path.join(args.out, FLAT_META)) as f:
        step = json.load(f).get("step")
    print(json.dumps({"flat_model": args.out, "step": step,
                      "mib": os.path.getsize(os.path.join(args.out, FLAT_PARAMS)) / 2**20}))


if __name__ == "__main__":
    main()
