"""Running planned batch jobs (:mod:`diffsr_jax.batch`) for the CLI: decode → upscale → write.

Jobs with the same output size are upscaled together, ``batch_images`` at a time, with one
``api.upscale_batch`` call; while a chunk computes, a small pool of reader threads decodes the
next chunk and a pool of writer threads encodes and writes the previous ones (a bounded queue:
at most two chunks wait to be written, one is decoded ahead). A failing image (unreadable, too
big, a failed write) is reported and the others go on; when a batch call fails, its images and
the rest of that output size are done one at a time, so one bad image cannot sink the others.

Results are reported from the main thread in job order: the per-image summary line, notes,
the progress bar and the manifest line. The model code comes in as ``api`` (a module with
``upscale_batch`` and ``upscale_array``); nothing here imports JAX.
"""

from __future__ import annotations

import collections
import datetime
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from . import image_io, targets
from .batch import Job, chunks, wh
from .image_io import ImageReadError
from .targets import TargetError

READER_THREADS = 2
WRITER_THREADS = 2


class ImageFailure(Exception):
    """One image failed; ``str(e)`` is the one-line reason."""


def one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def fmt_hw(hw) -> str:
    return f"{hw[1]}x{hw[0]}"


def manifest_record(job: Job, status: str, *, error: Optional[str] = None, in_hw=None, final_hw=None,
                    info: Optional[dict] = None, seconds: Optional[float] = None, seed: Optional[int] = None,
                    shard: tuple[int, int] = (0, 1)) -> dict:
    """One manifest line. Sizes are [width, height]; ``mode`` is "plain" or "consistent" (data
    consistency on), with ``colour_fix`` beside it; the model fields are null unless upscaled."""
    info = info if isinstance(info, dict) else {}
    cons = info.get("consistency")
    return {
        "input": job.src, "output": job.dst, "status": status, "error": error,
        "input_size": wh(in_hw), "output_size": wh(final_hw),
        "t": info.get("t"), "noise_fraction": info.get("noise_fraction"), "steps": info.get("steps"),
        "sampler": info.get("sampler"),
        "mode": None if not info else ("consistent" if cons else "plain"),
        "consistency": cons, "colour_fix": info.get("colour_fix"), "self_ensemble": info.get("self_ensemble"),
        "seed": seed if info else None, "degradation": info.get("degradation"),
        "seconds": None if seconds is None else round(float(seconds), 3),
        "shard": f"{shard[0]}/{shard[1]}",
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


@dataclass
class _Item:
    """A job on its way through decode → upscale → write."""
    job: Job
    img: Any = None  # image_io.LoadedImage
    plan: Optional[targets.OutputPlan] = None
    in_hw: Optional[tuple[int, int]] = None
    out: Optional[np.ndarray] = None
    info: dict = field(default_factory=dict)
    error: Optional[str] = None
    seconds: float = 0.0  # decode + its share of the batch + encode/write


class BatchRunner:
    """Runs planned jobs (each with a ``plan``, or None when its size is known only once decoded).

    ``log(line, err=False)`` prints from the main thread; ``bar`` is a progress bar (``update``)
    or None; ``manifest`` a :class:`batch.Manifest` or None. After :meth:`run`: ``written``,
    ``failures``, ``skipped`` (outputs another process wrote meanwhile, with ``skip_existing``)."""

    def __init__(self, *, api, model, options, mesh, target, fit: str, allow_downscale: bool,
                 overwrite: bool, skip_existing: bool, batch_images: int, progress: bool, quiet: bool,
                 log: Callable, bar=None, manifest=None, shard: tuple[int, int] = (0, 1)):
        self.api, self.model, self.options, self.mesh = api, model, options, mesh
        self.target, self.fit, self.allow_downscale = target, fit, allow_downscale
        self.overwrite, self.skip_existing = overwrite, skip_existing
        self.batch_images = max(1, int(batch_images))
        self.progress, self.quiet, self.log, self.bar = progress, quiet, log, bar
        self.manifest, self.shard = manifest, shard
        self.written = self.failures = self.skipped = 0
        self.fallback: set = set()  # output sizes whose batch failed: one image at a time from then on
        self._pending: collections.deque = collections.deque()  # (item, write future), in job order

    # -- the pipeline ---------------------------------------------------------------------------

    def run(self, jobs: list[Job]) -> None:
        work = list(chunks(jobs, self.batch_images))
        readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="diffsr-read")
        writers = ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="diffsr-write")
        try:
            ahead = [readers.submit(self._read, j) for j in work[0][1]] if work else []
            for i, (hw, _) in enumerate(work):
                items = [f.result() for f in ahead]
                # decode the next chunk while this one computes
                ahead = [readers.submit(self._read, j) for j in work[i + 1][1]] if i + 1 < len(work) else []
                for item in self._compute(hw, items):
                    if item.error is not None:
                        self._failed(item)
                    else:
                        self._pending.append((item, writers.submit(self._write, item)))
                self._drain(limit=2 * self.batch_images)
            self._drain(limit=0)
        except BaseException:
            # Interrupted (or a bug): no new decodes; the writes in flight finish (each is atomic)
            # and are reported, so the manifest has a line for every output on disk.
            readers.shutdown(wait=False, cancel_futures=True)
            writers.shutdown(wait=True)
            self._drain(limit=0)
            raise
        finally:
            readers.shutdown(wait=False, cancel_futures=True)
            writers.shutdown(wait=True)

    def _read(self, job: Job) -> _Item:
        t0 = time.perf_counter()
        item = _Item(job, plan=job.plan)
        try:
            item.img = image_io.read_image(job.src)
        except ImageReadError as e:
            item.error = e.reason or str(e)
            return item
        except Exception as e:  # noqa: BLE001  (one unreadable file must not end the batch)
            item.error = f"cannot read: {type(e).__name__}: {one_line(e)}"
            return item
        item.in_hw = item.img.size
        if item.plan is None or item.in_hw != job.in_hw:  # the header did not tell the decoded size
            try:
                item.plan = targets.output_size(item.in_hw, self.target, self.fit,
                                                allow_downscale=self.allow_downscale)
            except TargetError as e:
                item.error = str(e)
        item.seconds = time.perf_counter() - t0
        return item

    def _compute(self, hw, items: list[_Item]) -> list[_Item]:
        ready = [it for it in items if it.error is None]
        together = [it for it in ready if hw is not None and it.plan.out_hw == hw and hw not in self.fallback]
        alone = [it for it in ready if not any(it is b for b in together)]
        if together:
            t0 = time.perf_counter()
            try:
                results = list(self.api.upscale_batch(
                    [it.img.rgb for it in together], hw, model=self.model, options=self.options, progress=self.progress,
                    mesh=self.mesh, jpeg_quantizations=[getattr(it.img, "jpeg_quantization", None) for it in together]))
                if len(results) != len(together):
                    raise RuntimeError(f"upscale_batch returned {len(results)} results for {len(together)} images")
            except Exception as e:  # noqa: BLE001
                self.fallback.add(hw)
                if len(together) == 1:  # nothing to separate: this image failed
                    together[0].error = f"upscaling failed: {type(e).__name__}: {one_line(e)}"
                else:
                    if not self.quiet:
                        self.log(f"note: a batch of {len(together)} images to {fmt_hw(hw)} failed "
                                 f"({type(e).__name__}: {one_line(e)}); doing them one at a time", err=True)
                    alone = together + alone
            else:
                share = (time.perf_counter() - t0) / len(together)
                for it, (out, info) in zip(together, results):
                    self._accept(it, out, info, share)
        for it in alone:
            t0 = time.perf_counter()
            try:
                out, info = self.api.upscale_array(it.img.rgb, it.plan.out_hw, model=self.model, options=self.options,
                                                   progress=self.progress, mesh=self.mesh,
                                                   jpeg_quantization=getattr(it.img, "jpeg_quantization", None))
            except Exception as e:  # noqa: BLE001
                it.error = f"upscaling failed: {type(e).__name__}: {one_line(e)}"
                continue
            self._accept(it, out, info, time.perf_counter() - t0)
        return items

    def _accept(self, it: _Item, out, info, seconds: float) -> None:
        out = np.asarray(out, np.float32)
        want = (it.plan.out_h, it.plan.out_w, 3)
        if out.shape != want:
            it.error = f"upscaling failed: model returned shape {out.shape}, expected {want}"
            return
        it.out, it.info, it.seconds = out, info if isinstance(info, dict) else {}, it.seconds + seconds

    def _write(self, it: _Item):
        """In a writer thread: crop, alpha, encode, atomic write. The written image, or None
        when (``skip_existing``) another process wrote the output meanwhile."""
        t0 = time.perf_counter()
        img, plan, dst = it.img, it.plan, it.job.dst
        alpha = image_io.resize_alpha(img.alpha, plan.out_hw) if img.alpha is not None else None
        out = targets.apply_crop(it.out, plan)
        alpha = targets.apply_crop(alpha, plan) if alpha is not None else None
        folder = os.path.dirname(os.path.abspath(dst))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise ImageFailure(f"cannot create the folder {folder}: {e.strerror or e}") from None
        try:
            written = image_io.write_image(dst, out, alpha, img.mode, img.bit_depth, overwrite=self.overwrite,
                                           icc_profile=img.icc_profile)
        except FileExistsError:
            if self.skip_existing:
                return None
            raise ImageFailure(f"{dst} exists (use --overwrite to replace it)") from None
        except (OSError, ValueError) as e:
            raise ImageFailure(f"cannot write {dst}: {getattr(e, 'strerror', None) or e}") from None
        it.seconds += time.perf_counter() - t0
        return written

    def _drain(self, limit: int) -> None:
        """Reports finished writes in job order; waits while more than ``limit`` are pending."""
        while self._pending and (len(self._pending) > limit or self._pending[0][1].done()):
            it, fut = self._pending.popleft()
            try:
                written = fut.result()
            except ImageFailure as e:
                it.error = str(e)
            except Exception as e:  # noqa: BLE001
                it.error = f"cannot write {it.job.dst}: {type(e).__name__}: {one_line(e)}"
            if it.error is not None:
                self._failed(it)
            elif written is None:
                self._record(it, "skipped", seconds=None)
                self.skipped += 1
            else:
                self._done(it, written)
            it.img = it.out = None  # free the pixels now

    # -- reporting ------------------------------------------------------------------------------

    def _record(self, it: _Item, status: str, **kw) -> None:
        if self.bar is not None:
            self.bar.update(1)
        if self.manifest is not None:
            final = it.plan.final_hw if (it.plan is not None and status == "ok") else None
            self.manifest.write(manifest_record(it.job, status, error=it.error, in_hw=it.in_hw, final_hw=final,
                                                info=it.info if status == "ok" else None, seed=self.options.seed,
                                                shard=self.shard, **kw))

    def _failed(self, it: _Item) -> None:
        self.failures += 1
        self.log(f"error: {it.job.src}: {it.error}", err=True)
        self._record(it, "error", seconds=it.seconds or None)

    def _done(self, it: _Item, written) -> None:
        self.written += 1
        info, plan = it.info, it.plan
        if not self.quiet:
            notes = list(it.img.notes) + list(written.notes) + [str(n) for n in (info.get("notes") or [])]
            for note in notes:
                self.log(f"note: {it.job.src}: {note}", err=True)
            scale = plan.scale_label()
            if plan.crop is not None:
                scale += f", centre crop of {fmt_hw(plan.out_hw)}"
            t, frac = info.get("t"), info.get("noise_fraction")
            noise_txt = f"t={t}" if t is not None else "t=?"
            if frac is not None:
                noise_txt += f" ({100 * float(frac):.3g}%)"  # 2.5%, not a rounded 2%
            ens = info.get("self_ensemble", 1)
            if ens and ens > 1:
                noise_txt += f", self-ensemble {ens}"
            devices = info.get("devices", 1)
            if devices and devices > 1:
                noise_txt += f", {devices} devices"
            if info.get("degradation_text"):
                noise_txt += f", input {info['degradation_text']}"
            self.log(f"{it.job.src}: {fmt_hw(it.in_hw)} -> {fmt_hw(plan.final_hw)} ({scale}), "
                     f"{noise_txt}, {it.seconds:.1f} s -> {it.job.dst}")
        self._record(it, "ok", seconds=it.seconds)
