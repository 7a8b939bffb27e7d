"""Training and evaluation images: decoding, TFDS array_record storage, random crops, prefetching.

Everything here works without TensorFlow. TFDS is used only for what it does well without TF:
writing a dataset once as ``array_record`` (``GeneratorBasedBuilder.download_and_prepare``) and
reading it back by index (``as_data_source``). ``tfds.features.Image`` would need TF to encode
NumPy arrays, so the local-folder builder stores decoded pixels as a zlib-compressed uint8
``Tensor``: lossless, decoded with NumPy alone, bit-identical to :func:`load_image_rgb` (the
library's one image decoder, :mod:`diffsr_jax.image_io`).

Randomness is explicit: the batch for training step ``step`` is drawn from
``np.random.default_rng([seed, step])`` and nothing else, so a resumed run sees the same batches.
"""

from __future__ import annotations

import collections.abc
import functools
import hashlib
import json
import math
import os
import queue
import socket
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from diffsr_jax import image_io

__all__ = [
    "DataError",
    "IMAGE_EXTENSIONS",
    "ImageSource",
    "load_image_rgb",
    "list_image_files",
    "LocalImageFolder",
    "prepare_folder_dataset",
    "open_image_source",
    "load_all_images",
    "sample_batch",
    "CropSampler",
    "BatchIterator",
]

IMAGE_EXTENSIONS = image_io.IMAGE_EXTENSIONS

# A dataset host that cannot be reached within this many seconds counts as "no network"; TFDS itself
# would retry for minutes before giving up.
NETWORK_TIMEOUT_S = 3.0


class DataError(ValueError):
    """A user-facing problem with the input data (bad file, empty folder, unknown dataset, offline)."""


# ----------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------

def load_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decodes an image file to a C-contiguous ``uint8`` array of shape ``(H, W, 3)`` with the
    library's one decoder (:func:`diffsr_jax.image_io.read_rgb_u8`: EXIF orientation applied,
    16-bit samples rounded to 8 bits, grayscale replicated to three channels). Alpha is dropped,
    not composited: the stored colours are what a super-resolution model should see, and
    compositing onto an arbitrary background would invent content.

    Raises:
      DataError: naming the file, if it is missing, empty, corrupt, truncated or not an image.
    """
    try:
        return image_io.read_rgb_u8(path)
    except image_io.ImageReadError as e:
        raise DataError(f"cannot read image {os.fspath(path)!r}: {e.reason or e}") from e


def _as_rgb_uint8(a: Any) -> np.ndarray:
    # Catalog datasets may hold grayscale or RGBA images; normalise like load_image_rgb.
    a = np.asarray(a)
    if a.dtype != np.uint8:
        if a.dtype == np.uint16:
            a = ((a.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)
        else:
            a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise DataError(f"expected an HxWxC image, got shape {a.shape}")
    if a.shape[-1] in (1, 2):
        a = np.repeat(a[..., :1], 3, axis=-1)
    elif a.shape[-1] >= 4:
        a = a[..., :3]
    return np.ascontiguousarray(a)


# ----------------------------------------------------------------------------------------------
# Local folders as a TFDS array_record dataset
# ----------------------------------------------------------------------------------------------

def list_image_files(folders: str | os.PathLike | Sequence[str | os.PathLike]) -> list[tuple[str, str]]:
    """Lists image files under ``folders`` (recursive) as ``(folder, relative_posix_path)`` pairs
    (:func:`diffsr_jax.image_io.list_image_files`); DataError for a missing folder or none given."""
    folder_list = _as_folder_list(folders)
    try:
        return image_io.list_image_files(folder_list)
    except image_io.ImageReadError as e:
        raise DataError(f"image folder {e.path!r} does not exist or is not a directory") from None


def _as_folder_list(folders) -> list[str]:
    if isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    resolved = [os.path.realpath(os.path.expanduser(os.fspath(f))) for f in folders]
    if not resolved:
        raise DataError("no image folders given")
    return resolved


def _folder_fingerprint(files: list[tuple[str, str]], folders: list[str]) -> str:
    # Paths plus size and mtime: an edited, added or removed file gives a new config (so a stale
    # prepared copy is never reused) without hashing every byte of every image.
    entries = []
    for folder, rel in files:
        st = os.stat(os.path.join(folder, rel))
        entries.append([folder, rel, st.st_size, st.st_mtime_ns])
    blob = json.dumps({"folders": folders, "files": entries}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _tfds():
    # Imported lazily: TFDS costs ~0.5 s to import and most users of sample_batch never need it.
    import tensorflow_datasets as tfds

    return tfds


@functools.cache
def _make_builder_class():
    tfds = _tfds()

    # skip_registration: the class is an implementation detail, and TFDS's global registry would
    # otherwise reject a second definition (e.g. on module reload).
    class LocalImageFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Images from one or more local folders, decoded to RGB uint8 once at prepare time."""

        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES = {"1.0.0": "Decoded RGB uint8 pixels (zlib), source path, sorted file order."}

        def __init__(self, *, files: list[tuple[str, str]] | None = None, **kwargs):
            self._files = files or []
            super().__init__(**kwargs)

        def _info(self):
            # Not dataset_info_from_configs: that reads metadata files next to the class's module.
            return tfds.core.DatasetInfo(
                builder=self,
                # Records stay in sorted-file order (TFDS would otherwise shuffle by key hash), so
                # dataset index i is the i-th readable file listed by list_image_files.
                disable_shuffling=True,
                description="Local image folders: " + ", ".join(sorted({f for f, _ in self._files})),
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8,
                                                  encoding="zlib"),
                    "path": tfds.features.Text(),
                }),
            )

        def _split_generators(self, dl_manager):
            del dl_manager
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            n_ok = 0
            for index, (folder, rel) in enumerate(self._files):
                path = os.path.join(folder, rel)
                try:
                    img = load_image_rgb(path)
                except DataError as e:
                    warnings.warn(f"skipping unreadable image: {e}", stacklevel=2)
                    continue
                n_ok += 1
                # Integer keys: with shuffling disabled, TFDS orders records by key.
                yield index, {"image": img, "path": path}
            if n_ok == 0:
                raise DataError("no readable images in " + ", ".join(sorted({f for f, _ in self._files})))

    LocalImageFolder.__qualname__ = "LocalImageFolder"
    return LocalImageFolder


def __getattr__(name):
    # Exposes the builder class without importing TFDS when the module is imported.
    if name == "LocalImageFolder":
        return _make_builder_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ImageSource(collections.abc.Sequence):
    """Random access to ``(H, W, 3)`` uint8 images from a TFDS data source (or a concatenation)."""

    def __init__(self, data_source: Any, key: str = "image", name: str = ""):
        self._ds = data_source
        self._key = key
        self.name = name

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        return _as_rgb_uint8(self._ds[i][self._key])

    def record(self, i: int) -> dict:
        """The raw TFDS record (e.g. with its ``path``) for index ``i``."""
        return self._ds[i]

    def __repr__(self) -> str:
        return f"ImageSource({self.name!r}, n={len(self)})"


class _ConcatSource(collections.abc.Sequence):
    def __init__(self, sources: Sequence[Sequence[np.ndarray]]):
        self._sources = list(sources)
        self._offsets = np.cumsum([0] + [len(s) for s in self._sources])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self._offsets, i, side="right")) - 1
        return self._sources[k][i - int(self._offsets[k])]


def _data_dir(data_dir: str | os.PathLike) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(data_dir)))


def prepare_folder_dataset(folders: str | os.PathLike | Sequence[str | os.PathLike],
                           data_dir: str | os.PathLike) -> ImageSource:
    """Writes the images under ``folders`` (merged, recursive) as array_record under ``data_dir``.

    The TFDS config name is a short hash of the resolved folder paths and every file's relative
    path, size and mtime, so different folders never collide and an unchanged set of folders is
    prepared once and reused. Unreadable files are skipped with a warning.

    Raises:
      DataError: a folder is missing, holds no image files, or none of its images is readable.
    """
    tfds = _tfds()
    folder_list = _as_folder_list(folders)
    files = list_image_files(folder_list)
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found in {', '.join(folder_list)}")
    config = tfds.core.BuilderConfig(
        name="h" + _folder_fingerprint(files, folder_list),
        description="; ".join(folder_list),
    )
    builder = _make_builder_class()(files=files, config=config, data_dir=_data_dir(data_dir),
                                    file_format="array_record")
    if not builder.is_prepared():
        builder.download_and_prepare()
    return ImageSource(builder.as_data_source(split="train"), key="image",
                       name=f"{builder.name}/{config.name}")


# ----------------------------------------------------------------------------------------------
# TFDS catalog datasets
# ----------------------------------------------------------------------------------------------

def _host_reachable(host: str, port: int = 443, timeout: float = NETWORK_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds."""
    # getaddrinfo ignores socket timeouts and can block far longer on a broken resolver, so the
    # whole attempt runs in a daemon thread that is simply abandoned if it overruns.
    result: list[bool] = []

    def attempt():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=attempt, daemon=True, name=f"probe-{host}")
    t.start()
    t.join(timeout + 0.5)
    return bool(result and result[0])


def parse_tfds_spec(spec: str) -> tuple[str, str]:
    """``"tfds:NAME[/CONFIG][:split]"`` -> ``("NAME[/CONFIG]", split)``; split defaults to train."""
    if not spec.startswith("tfds:"):
        raise DataError(f"not a TFDS spec (expected 'tfds:NAME[/CONFIG][:split]'): {spec!r}")
    # partition on the first ':' so that split slices like 'train[:10%]' survive.
    name, _, split = spec[len("tfds:"):].partition(":")
    if not name:
        raise DataError(f"empty dataset name in {spec!r}")
    return name, split or "train"


def _open_tfds(spec: str, data_dir: str) -> ImageSource:
    tfds = _tfds()
    name, split = parse_tfds_spec(spec)
    try:
        builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DataError(f"unknown TFDS dataset {name!r} in {spec!r} (see tfds.list_builders())") from e
    except ValueError as e:
        raise DataError(f"cannot build TFDS dataset {name!r}: {str(e).splitlines()[0]}") from e

    if not builder.is_prepared():
        urls = list(getattr(builder, "url_infos", None) or {})
        hosts = sorted({urlparse(u).hostname for u in urls if urlparse(u).hostname})
        hosts = hosts or ["storage.googleapis.com"]
        unreachable = [h for h in hosts if not _host_reachable(h)]
        if unreachable:
            raise DataError(
                f"TFDS dataset {name!r} is not prepared in {data_dir!r} and cannot be downloaded: "
                f"{', '.join(unreachable)} is unreachable (no network?). Prepare it as array_record "
                f"on a machine with network access and copy {name.replace('/', os.sep)} into "
                f"{data_dir!r}, or pass local image folders instead.")
        try:
            builder.download_and_prepare()
        except ModuleNotFoundError as e:
            raise DataError(f"preparing TFDS dataset {name!r} needs {e.name!r}, which is not "
                            "installed; prepare it elsewhere and copy it into data_dir") from e

    features = builder.info.features
    key = next((k for k in ("hr", "image") if k in features), None)
    if key is None:
        raise DataError(f"TFDS dataset {name!r} has neither an 'hr' nor an 'image' feature "
                        f"(features: {sorted(features.keys())})")
    try:
        ds = builder.as_data_source(split=split)
    except Exception as e:  # noqa: BLE001 - TFDS raises assorted types for bad splits/formats
        raise DataError(f"cannot open split {split!r} of TFDS dataset {name!r} in {data_dir!r} as "
                        f"array_record (available splits: {sorted(builder.info.splits.keys())}): {e}") from e
    return ImageSource(ds, key=key, name=f"{name}:{split}")


def open_image_source(spec: str | os.PathLike | Sequence[str | os.PathLike],
                      data_dir: str | os.PathLike) -> Sequence[np.ndarray]:
    """Random access to ``(H, W, 3)`` uint8 images from local folders and/or TFDS catalog datasets.

    ``spec`` is a folder path, a ``"tfds:NAME[/CONFIG][:split]"`` string (taking the ``hr`` feature
    if present, else ``image``), or a sequence of these. All folders are merged into one prepared
    dataset; catalog datasets are appended after it in the order given.
    """
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    specs = [os.fspath(s) for s in specs]
    if not specs:
        raise DataError("no image source given")
    data_dir = _data_dir(data_dir)
    folders = [s for s in specs if not s.startswith("tfds:")]
    sources: list[Sequence[np.ndarray]] = []
    if folders:
        sources.append(prepare_folder_dataset(folders, data_dir))
    sources.extend(_open_tfds(s, data_dir) for s in specs if s.startswith("tfds:"))
    return sources[0] if len(sources) == 1 else _ConcatSource(sources)


def load_all_images(source: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Decodes every image of ``source`` into memory (fine for a few hundred images)."""
    return [np.asarray(source[i]) for i in range(len(source))]


# ----------------------------------------------------------------------------------------------
# Random crops
# ----------------------------------------------------------------------------------------------

def _usable_images(images: Sequence[np.ndarray], crop_size: int) -> list[np.ndarray]:
    # Too-small images are skipped rather than upscaled: an upscaled crop is blurry, the opposite of
    # the sharp (downscaled) crops the model is meant to learn from.
    usable = [im for im in images if min(im.shape[0], im.shape[1]) >= crop_size]
    if not usable:
        raise DataError(f"no image is at least {crop_size}x{crop_size} pixels "
                        f"({len(images)} images given)")
    return usable


def _rng(rng_or_seed_and_step) -> np.random.Generator:
    if isinstance(rng_or_seed_and_step, np.random.Generator):
        return rng_or_seed_and_step
    seed, step = rng_or_seed_and_step
    return np.random.default_rng([int(seed), int(step)])


def _one_crop(img: np.ndarray, crop_size: int, max_downscale: float, rng: np.random.Generator,
              flip: bool, rot90: bool) -> np.ndarray:
    return _cut(img, _crop_plan(img.shape[:2], crop_size, max_downscale, rng), crop_size, flip, rot90)


def _crop_plan(hw: tuple[int, int], crop_size: int, max_downscale: float, rng: np.random.Generator) -> tuple:
    """All random draws of one crop, in a fixed order (window, offsets, flip, rotation): a process
    that builds only some rows of a batch still makes every row's draws, so its rows equal those of
    the whole batch."""
    h, w = hw
    s_max = max(1.0, min(float(max_downscale), min(h, w) / crop_size))
    # Log-uniform: s in [1, 2] is drawn as often as s in [2, 4], so no scale octave dominates.
    s = math.exp(rng.uniform(0.0, math.log(s_max)))
    win = min(max(crop_size, int(round(crop_size * s))), h, w)
    y = int(rng.integers(0, h - win + 1))
    x = int(rng.integers(0, w - win + 1))
    # Draw the flip and rotation even when disabled so the flags do not shift the other draws.
    do_flip = bool(rng.integers(0, 2))
    k = int(rng.integers(0, 4))
    return y, x, win, do_flip, k


def _cut(img: np.ndarray, plan: tuple, crop_size: int, flip: bool, rot90: bool) -> np.ndarray:
    y, x, win, do_flip, k = plan
    crop = img[y:y + win, x:x + win]
    if win != crop_size:
        # PIL's BICUBIC resize widens its kernel when shrinking (antialiased), like the
        # downscaling that produces evaluation LR images.
        crop = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize(
            (crop_size, crop_size), Image.Resampling.BICUBIC))
    if flip and do_flip:
        crop = crop[:, ::-1]
    if rot90 and k:
        crop = np.rot90(crop, k)
    return crop


def sample_batch(images: Sequence[np.ndarray], batch_size: int, crop_size: int,
                 rng_or_seed_and_step: np.random.Generator | tuple[int, int], *,
                 max_downscale: float = 1.0, flip: bool = True, rot90: bool = True,
                 rows: tuple[int, int] | None = None) -> np.ndarray:
    """A ``float32`` batch ``(batch_size, crop_size, crop_size, 3)`` of random crops in ``[-1, 1]``.

    Each crop picks an image uniformly, a downscale factor ``s`` log-uniform in
    ``[1, max_downscale]`` (clamped so ``crop_size * s <= min(H, W)``), a random
    ``(crop_size * s)``-square window that is BICUBIC-resized (antialiased) to ``crop_size``, then a
    random horizontal flip and 90-degree rotation. Pass ``(seed, step)`` to make the batch a pure
    function of them. Images smaller than ``crop_size`` are skipped.

    ``rows=(start, stop)`` returns only those rows of the batch (one process's share in a
    multi-host run): the same pixels as ``sample_batch(...)[start:stop]`` without cropping the rest.
    """
    if crop_size <= 0 or batch_size <= 0:
        raise ValueError(f"crop_size and batch_size must be positive, got {crop_size}, {batch_size}")
    if max_downscale < 1.0:
        raise ValueError(f"max_downscale must be >= 1, got {max_downscale}")
    start, stop = (0, batch_size) if rows is None else (int(rows[0]), int(rows[1]))
    if not 0 <= start < stop <= batch_size:
        raise ValueError(f"rows must satisfy 0 <= start < stop <= {batch_size}, got {rows}")
    usable = _usable_images(images, crop_size)
    rng = _rng(rng_or_seed_and_step)
    out = np.empty((stop - start, crop_size, crop_size, 3), np.float32)
    for b in range(stop):  # rows after `stop` need no draws: nothing later depends on them
        img = usable[int(rng.integers(0, len(usable)))]
        plan = _crop_plan(img.shape[:2], crop_size, max_downscale, rng)
        if b >= start:
            out[b - start] = _cut(img, plan, crop_size, flip, rot90)
    out *= 1.0 / 127.5
    out -= 1.0
    return out


class CropSampler:
    """:func:`sample_batch` bound to a fixed image list and settings; ``batch(step)`` is pure."""

    def __init__(self, images: Sequence[np.ndarray], *, batch_size: int, crop_size: int, seed: int,
                 max_downscale: float = 1.0, flip: bool = True, rot90: bool = True,
                 rows: tuple[int, int] | None = None):
        if max_downscale < 1.0:
            raise ValueError(f"max_downscale must be >= 1, got {max_downscale}")
        n_small = sum(min(im.shape[0], im.shape[1]) < crop_size for im in images)
        self.images = _usable_images(images, crop_size)
        if n_small:
            warnings.warn(f"{n_small} of {len(images)} images are smaller than {crop_size}px and "
                          "are not used for crops", stacklevel=2)
        self.batch_size, self.crop_size, self.seed = int(batch_size), int(crop_size), int(seed)
        self.max_downscale, self.flip, self.rot90 = float(max_downscale), bool(flip), bool(rot90)
        self.rows = None if rows is None else (int(rows[0]), int(rows[1]))

    def batch(self, step: int) -> np.ndarray:
        return sample_batch(self.images, self.batch_size, self.crop_size, (self.seed, step),
                            max_downscale=self.max_downscale, flip=self.flip, rot90=self.rot90,
                            rows=self.rows)


# ----------------------------------------------------------------------------------------------
# Prefetching iterator
# ----------------------------------------------------------------------------------------------

class BatchIterator:
    """Yields ``(step, batch)`` for ``step = start_step, start_step + 1, ...`` from a background thread.

    ``source`` is any sequence of HxWx3 uint8 images (e.g. from :func:`open_image_source`); it is
    decoded into memory once. Because each batch depends only on ``(seed, step)``, restarting with
    ``start_step=k`` reproduces the original run's batches from step ``k`` on. Use as a context
    manager or call :meth:`close`; the worker is a daemon thread, so it never blocks interpreter exit.
    """

    def __init__(self, source: Sequence[np.ndarray], *, batch_size: int, crop_size: int, seed: int,
                 start_step: int = 0, num_steps: int | None = None, max_downscale: float = 1.0,
                 flip: bool = True, rot90: bool = True, prefetch: int = 4,
                 rows: tuple[int, int] | None = None):
        self.sampler = CropSampler(load_all_images(source), batch_size=batch_size,
                                   crop_size=crop_size, seed=seed, max_downscale=max_downscale,
                                   flip=flip, rot90=rot90, rows=rows)
        self.start_step = int(start_step)
        self.end_step = None if num_steps is None else int(num_steps)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(prefetch)))
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._work, daemon=True, name="diffsr-batches")
        self._thread.start()

    def _put(self, item) -> bool:
        # Bounded waits so close() is noticed even while the queue is full.
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        step = self.start_step
        try:
            while not self._stop.is_set() and (self.end_step is None or step < self.end_step):
                if not self._put(("batch", step, self.sampler.batch(step))):
                    return
                step += 1
            self._put(("end", step, None))
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer thread
            self._put(("error", step, e))

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        return self

    def __next__(self) -> tuple[int, np.ndarray]:
        if self._done:
            raise StopIteration
        while True:
            if self._stop.is_set():
                raise StopIteration
            try:
                kind, step, payload = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self._done = True
                    raise StopIteration from None
        if kind == "batch":
            return step, payload
        self._done = True
        if kind == "error":
            raise payload
        raise StopIteration

    def close(self) -> None:
        self._stop.set()
        self._done = True
        # Drain so a worker blocked on a full queue wakes up promptly.
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def __enter__(self) -> BatchIterator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._stop.set()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn down attributes
            pass
