"""``diffsr-upscale`` / ``python infer.py``: upscale image files with the Diff-SR model.

Run with ``--help`` for the grammar of ``--target`` and ``--noise``. Exit codes: 0 all images
written (or skipped with ``--skip-existing``); 2 a usage error, a bad checkpoint, or at least one
image failed (the others are still written); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM).
Batch jobs (inputs at scale, resuming, the manifest, ``--shard``) are planned in
:mod:`diffsr_jax.batch` and run in :mod:`diffsr_jax.batch_run`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Sequence

from . import batch, batch_run, defaults, image_io, targets
from .batch import BatchUsageError
from .options import InferenceOptions
from .image_io import IMAGE_EXTENSIONS, ImageReadError
from .targets import TargetError

PROG = "diffsr-upscale"

DESCRIPTION = """\
Upscale images to any size with one pre-trained pixel diffusion model (Diff-SR): each image is
bicubic-upsampled to the target size, diffusion noise is added up to step t, and DDIM denoises
it back to step 0, restoring detail that bicubic upsampling cannot."""

EPILOG = f"""\
target (--target SPEC), case-insensitive:
  scale        2, 2x, 2.7x, x3, 2.7     output = round(H*s) x round(W*s), s <= {targets.MAX_SCALE}
  size         1920x1080, 1920X1080, 1920*1080   (WIDTHxHEIGHT), reached according to --fit:
                 contain  scale uniformly to fit inside the box (default; keeps aspect ratio)
                 cover    scale uniformly to cover the box, then centre-crop to exactly WxH
                 stretch  exactly WxH (distorts when the aspect ratios differ)
  name         720p=1280x720, 1080p/fhd=1920x1080, 1440p/2k/qhd=2560x1440,
               4k/2160p/uhd=3840x2160 (sizes, so --fit applies)
  An output smaller than the input is refused unless --allow-downscale; the same size is
  allowed (a pure refinement). Limits: input and output at most {targets.MAX_INPUT_PIXELS:,} and
  {targets.MAX_OUTPUT_PIXELS:,} pixels (8192x8192).

noise (--noise SPEC): how far into the diffusion process to start
  auto         the model's default for the scale (default)
  0.35         a fraction of the process, 0..1 (more = more invented detail, less fidelity)
  t=350        an explicit diffusion step (integer >= 0)

output naming: -o names a FILE when it ends in an image extension
  ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) and there is exactly one input file;
  otherwise -o is a FOLDER (created if missing) and each input IN/<stem>.<ext> is written
  to OUT/<stem><suffix>.<ext> (--recursive: IN/SUB/<stem>.<ext> to OUT/SUB/...), keeping the
  input's extension (or .png when it is not one of those), or the extension of --format.
  --suffix may contain {{target}}, e.g. "_{{target}}" gives photo_4x.png. Existing files are
  never replaced without --overwrite (--skip-existing skips their inputs), an input is never
  replaced, and nothing is ever left half-written. Grayscale stays grayscale, alpha is kept
  (upscaled bicubically), 16-bit PNG stays 16-bit.

batch jobs:
  inputs       files, folders (their own images; --recursive: the whole tree, mirrored under -o),
               @LIST (a text file of paths, one a line; blank lines and lines starting with # are
               ignored; relative paths are relative to the list file's folder) and glob patterns
               ('scans/*.tif', 'raw/**/*.png': quote them; used when no such path exists). The
               inputs are sorted by path and each file is done once.
  resuming     --skip-existing skips inputs whose output exists (outputs are written atomically, so
               a present file is complete): rerun a killed or preempted job with it to do the rest.
  manifest     --manifest FILE appends one JSON line per input done, skipped or failed: input,
               output, input_size, output_size ([w, h]), t, steps, mode, colour_fix, degradation,
               seconds, status (ok, skipped, error), error. {{shard}} in FILE becomes K.
  sharding     --shard K/N: this process takes the inputs whose place in the sorted list is K mod N;
               N processes with the same command split the work without overlap. In a multi-process
               JAX job (srun, mpirun, a TPU pod with --distributed on) K/N default to
               jax.process_index()/jax.process_count(). Each process uses its own devices.
  batching     images going to the same output size are denoised together, --batch-images at a time,
               while the next ones are decoded and the last ones written.

examples:
  {PROG} photo.jpg --target 4x -o photo_4x.jpg
  {PROG} frames/ --target 1080p --fit cover -o out/
  {PROG} a.png b.png --target 2.5x --noise t=300 --steps 20 -o out/ --suffix _{{target}}
  {PROG} photos/ --recursive --target 2x -o out/ --skip-existing --manifest out/manifest.jsonl
  {PROG} @todo.txt 'extra/*.jpg' --target 1080p -o out/
  {PROG} photos/ -r -t 2x -o out/ --skip-existing --manifest m-{{shard}}.jsonl --shard 3/8
"""


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise _UsageError(f"{message} (see --help)")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=30, width=100)


def _int_at_least(name, minimum):
    """argparse type: a whole number ≥ minimum, with a message naming the option."""
    def parse(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {s!r}") from None
        if v < minimum:
            bound = "at least 1" if minimum == 1 else f"{minimum} or more"
            raise argparse.ArgumentTypeError(f"{name} must be {bound}, got {v}")
        return v

    return parse


def _positive_int(name):
    return _int_at_least(name, 1)


def _nonneg_int(name):
    return _int_at_least(name, 0)


def _consistency(s):
    """--consistency: on (λ = 1), off (0) or a strength in [0, 1]."""
    word = s.strip().lower()
    if word in ("on", "off"):
        return 1.0 if word == "on" else 0.0
    try:
        v = float(word)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--consistency must be on, off or a number in [0, 1], got {s!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"--consistency must be in [0, 1], got {s!r}")
    return v


def _describe_consistency(v: float) -> str:
    return {0.0: "off", 1.0: "on"}.get(float(v), f"{v:g}")


def _tile(s):
    if s.strip().lower() == "auto":
        return None
    return _nonneg_int("--tile")(s)


def _shard(s):
    try:
        return batch.parse_shard(s)
    except BatchUsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _cpu_devices(s):
    """--cpu-devices: auto or a whole number >= 1."""
    word = s.strip().lower()
    if word == "auto":
        return "auto"
    return _positive_int("--cpu-devices")(word)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=_Formatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders (their images; the whole tree with --recursive), @LIST "
                        "files of paths and glob patterns (see 'batch jobs' below)")
    p.add_argument("-t", "--target", required=True, metavar="SPEC",
                   help="scale, WIDTHxHEIGHT or name, e.g. 4x, 2.7x, 1920x1080, 4k (see below)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file (single input) or folder (see 'output naming' below)")
    p.add_argument("--fit", choices=targets.FITS, default="contain",
                   help="how a WIDTHxHEIGHT target is reached (default: contain)")
    p.add_argument("--noise", default="auto", metavar="SPEC",
                   help="auto, a fraction 0..1 (0.35) or a step t=350 (default: auto)")
    p.add_argument("--steps", type=_positive_int("--steps"), default=None, metavar="N",
                   help="DDIM steps from t back to 0 (default: the count the model's noise table was "
                        f"calibrated with for the mode; {defaults.DEFAULT_STEPS} if it does not say)")
    p.add_argument("--sampler", choices=defaults.SAMPLERS, default=None,
                   help="reverse sampler: DDIM or DDPM on evenly (ddim, ddpm) or quadratically spaced steps "
                        "(-quad: small steps near the end) (default: the one the model's noise table was "
                        f"calibrated with; {defaults.DEFAULT_SAMPLER} if it does not say)")
    p.add_argument("--consistency", type=_consistency, default=None, metavar="on|off|λ",
                   help="data consistency: every denoising step is corrected so that the output, "
                        "bicubic-downscaled, gives back the input (any scale). A number in [0, 1] sets "
                        f"the strength (default: {_describe_consistency(defaults.DEFAULT_CONSISTENCY)})")
    p.add_argument("--lift", choices=defaults.LIFTS, default=None,
                   help=f"how --consistency maps the input back up: pinv (exact projection) or bicubic "
                        f"(iterated back-projection) (default: {defaults.DEFAULT_LIFT})")
    p.add_argument("--colour-fix", choices=defaults.COLOUR_FIXES, default=None,
                   help=f"keep the input's colours: wavelet (low-frequency band of the input) or adain "
                        f"(per-channel mean/std) (default: {defaults.DEFAULT_COLOUR_FIX})")
    p.add_argument("--self-ensemble", type=int, choices=defaults.SELF_ENSEMBLE_SIZES, default=None, metavar="N",
                   help="average the model's noise prediction over N flips/rotations "
                        f"({', '.join(map(str, defaults.SELF_ENSEMBLE_SIZES))}): more accurate denoising, N times "
                        f"the compute (default: {defaults.DEFAULT_SELF_ENSEMBLE})")
    p.add_argument("--degradation", default="auto", metavar="SPEC",
                   help="how the inputs were degraded: auto (estimate noise, JPEG quality and blur per image and "
                        "adapt: weaker consistency for noisy input), clean (a noise-free bicubic downscale), or "
                        "items such as noise=10 (σ, 8-bit units), jpeg=75, kernel=area, blur=0.8 (LR px), comma-"
                        "separated (default: auto)")
    p.add_argument("--seed", type=_nonneg_int("--seed"), default=0, metavar="N",
                   help="random seed of the injected noise (default: 0)")
    p.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="exported model folder (default: the bundled model)")
    p.add_argument("--tile", type=_tile, default=None, metavar="N|auto",
                   help="denoise in N x N tiles to bound memory; 0 = whole image at once "
                        "(default: auto, tiles only for large outputs)")
    p.add_argument("--tile-overlap", type=_nonneg_int("--tile-overlap"), default=32, metavar="N",
                   help="overlap between tiles in pixels (default: 32)")
    p.add_argument("--batch-size", type=_positive_int("--batch-size"), default=4, metavar="N",
                   help="tiles of one large (tiled) image denoised together in one compiled call "
                        "(more = faster on GPU/TPU, more memory) (default: 4)")
    p.add_argument("--batch-images", type=_positive_int("--batch-images"), default=8, metavar="N",
                   help="images with the same output size denoised together in one call (more = faster "
                        "on GPU/TPU, more memory; 1 = one at a time) (default: 8)")
    p.add_argument("--cpu-devices", type=_cpu_devices, default="auto", metavar="auto|N",
                   help="on a CPU-only machine, spread the denoising over this many XLA CPU devices (batches of "
                        "tiles split by tile, a whole image by rows): "
                        "auto = one per core, 1 = JAX's single device; outputs are the same up to float "
                        "rounding. GPUs/TPUs: every local device is used (default: auto)")
    p.add_argument("--format", choices=sorted({e[1:] for e in IMAGE_EXTENSIONS}), default=None,
                   help="output format for folder output (default: keep the input's format)")
    p.add_argument("--suffix", default="", metavar="TEXT",
                   help="appended to each output file's stem in folder output; may contain "
                        "{target} (default: none)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="take folders' sub-folders too; the output tree mirrors the input tree under -o")
    p.add_argument("--skip-existing", action="store_true",
                   help="skip inputs whose output file exists (resume a killed job); exit 0 when all are done")
    p.add_argument("--manifest", default=None, metavar="FILE",
                   help="append one JSON line per input (done, skipped or failed) to FILE")
    p.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                   help="process only the inputs whose place in the sorted input list is K mod N "
                        "(default: jax.process_index()/process_count() in a multi-process JAX job, else all)")
    p.add_argument("--distributed", choices=("auto", "on", "off"), default="auto",
                   help="start jax.distributed (the shard then comes from jax.process_index()): on (e.g. a "
                        "TPU pod), off, or auto: when the environment describes a multi-process job "
                        "(srun, mpirun, JAX_COORDINATOR_ADDRESS) and --shard is not given (default: auto)")
    p.add_argument("--allow-downscale", action="store_true",
                   help="allow a target smaller than the input")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars, summaries or notes; only errors")
    return p


def inference_options(args) -> InferenceOptions:
    """The parsed command line's inference knobs as the library's options object."""
    try:
        return InferenceOptions(noise=args.noise, steps=args.steps, sampler=args.sampler,
                                consistency=args.consistency, lift=args.lift, colour_fix=args.colour_fix,
                                self_ensemble=args.self_ensemble, tile=args.tile, tile_overlap=args.tile_overlap,
                                tile_batch=args.batch_size, seed=args.seed, degradation=args.degradation)
    except TargetError:
        raise
    except ValueError as e:
        raise _UsageError(str(e)) from None


# ---------------------------------------------------------------------------------------------


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)


def _compilation_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "diffsr_jax", "jax")


def _enable_compilation_cache() -> None:
    """Persistent XLA compilation cache, so later runs skip compiling (respects JAX's env var)."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    try:
        import jax

        jax.config.update("jax_compilation_cache_dir", _compilation_cache_dir())
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    except Exception:  # an unwritable cache or an old JAX only costs compile time
        pass


def _plan(args, target) -> tuple[batch.Expanded, list[batch.Job]]:
    """All inputs (before sharding: every process plans the same list) and their outputs. Usage
    errors, including an -o whose folder cannot be created or written, stop here."""
    out = args.output
    file_mode = batch.is_file_output(out)
    if not file_mode and os.path.exists(out) and not os.path.isdir(out):
        raise _UsageError(f"-o {out} exists and is not a folder")
    problem = batch.folder_problem(os.path.dirname(os.path.abspath(out)) if file_mode else out)
    if problem:
        raise _UsageError(f"-o {out}: {problem}")
    exp = batch.expand_inputs(args.inputs, recursive=args.recursive, exclude=() if file_mode else (out,))
    if file_mode:
        batch.check_file_output(out, args.format, args.inputs, exp.sources, exp.folders)
    suffix = args.suffix.replace("{target}", target.label)
    return exp, batch.name_outputs(exp.sources, out, fmt=args.format, suffix=suffix, file_mode=file_mode)


_SKIP = object()


def _triage(job: batch.Job, args, folders: dict):
    """Before any work: why ``job`` fails (a reason), _SKIP (its output exists and
    --skip-existing), or None (to do). ``folders`` caches each output folder's check."""
    if job.problem:
        return job.problem
    dst = job.dst
    if os.path.lexists(dst):
        if batch.same_file(job.src, dst):
            return f"the output {dst} would replace the input; choose another -o or a --suffix"
        if os.path.isdir(dst):
            return f"the output {dst} is a folder"
        if args.skip_existing and os.path.isfile(dst):
            return _SKIP
        if not args.overwrite:
            return f"{dst} exists (use --overwrite to replace it, or --skip-existing to keep it)"
    folder = os.path.dirname(os.path.abspath(dst))
    if folder not in folders:
        folders[folder] = batch.folder_problem(folder)
    return folders[folder]


def _probe(src: str):
    """(input (height, width), None) from the header, or (None, why it cannot be read)."""
    hw = batch.probe_size(src)
    if hw is not None:
        return hw, None
    try:  # the header did not parse: decoding says why (or, rarely, works)
        img = image_io.read_image(src)
    except ImageReadError as e:
        return None, e.reason or str(e)
    except Exception as e:  # noqa: BLE001
        return None, f"cannot read: {type(e).__name__}: {_one_line(e)}"
    return img.size, None


def _probe_all(paths: list[str], threads: int = 8, slice_size: int = 4096) -> list:
    """:func:`_probe` of every path, in threads (I/O bound on network file systems) and in slices
    (bounded memory for a million inputs; Ctrl-C stops after the slice being read). Each input's
    size from its header, so that what is known to fail is refused before paying for the model,
    and images can be grouped by output size."""
    out: list = []
    pool = ThreadPoolExecutor(threads, thread_name_prefix="diffsr-probe")
    try:
        for i in range(0, len(paths), slice_size):
            out.extend(pool.map(_probe, paths[i:i + slice_size]))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return out


def _start_jax(args) -> None:
    """Before anything touches a device: the compilation cache, the CPU devices and (per
    --distributed; auto only without --shard) the multi-process runtime."""
    _enable_compilation_cache()
    from . import sharding

    # Inside a program whose JAX already runs (cli.main called from Python) the devices there are
    # kept; only an explicit count is worth a note then.
    sharding.setup_cpu_devices(args.cpu_devices, note=args.cpu_devices != "auto" and not args.quiet)
    if args.distributed == "on" or (args.distributed == "auto" and args.shard is None):
        try:
            sharding.maybe_initialize_distributed(args.distributed)
        except (RuntimeError, ValueError, OSError) as e:
            raise _UsageError(f"cannot start the multi-process JAX runtime (--distributed "
                              f"{args.distributed}): {_one_line(e)}") from None


def _shard_of(args) -> tuple[tuple[int, int], str]:
    """(K, N) and where they came from: --shard, else JAX's process index and count (1 process:
    0/1, everything)."""
    if args.shard is not None:
        return args.shard, "--shard"
    import jax

    return (jax.process_index(), jax.process_count()), "jax.process_index()"


def _summary(args, *, written: int, skipped: int, failed: int, total: int, shard, how: str, everything: int) -> None:
    k, n = shard
    if args.quiet or (total <= 1 and n == 1 and not skipped):
        return  # one image: its own line says it all
    parts = [f"{written} written"]
    if skipped:
        parts.append(f"{skipped} skipped (output exists)")
    if failed:
        parts.append(f"{failed} failed")
    line = f"done: {', '.join(parts)}; {total} input{'' if total == 1 else 's'}"
    if n > 1:
        line += f" in shard {k}/{n} (from {how}) of {everything} in all"
    print(line, flush=True)


class _Terminated(KeyboardInterrupt):
    pass


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv: Optional[Sequence[str]] = None) -> int:
    # SIGTERM (a scheduler's preemption) ends the run like Ctrl-C: the writes in flight finish
    # and the manifest gets their lines. Only where nobody else handles SIGTERM.
    installed = False
    if threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)
                installed = True
        except (ValueError, OSError, AttributeError):
            pass
    try:
        return _main(argv)
    except _Terminated:
        print("\nterminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _main(argv) -> int:
    parser = build_parser()
    manifest = None
    try:
        args = parser.parse_args(argv)
        target = targets.parse_target(args.target)
        options = inference_options(args)
        if args.tile and args.tile_overlap >= args.tile:
            raise _UsageError(f"--tile-overlap ({args.tile_overlap}) must be smaller than --tile ({args.tile})")
        if args.checkpoint is not None and not os.path.isdir(args.checkpoint):
            raise _UsageError(f"--checkpoint {args.checkpoint}: no such model folder")
        if args.skip_existing and args.overwrite:
            raise _UsageError("--skip-existing keeps existing outputs and --overwrite replaces them: choose one")
        exp, jobs = _plan(args, target)
        # Without --shard the shard comes from JAX's process index; with --distributed on every
        # process joins the runtime at once (also one with nothing to do: the others wait for it).
        jax_started = args.shard is None or args.distributed == "on"
        if jax_started:
            _start_jax(args)
        shard, how = _shard_of(args)
        if args.manifest:
            manifest = batch.Manifest(args.manifest.replace("{shard}", str(shard[0])))
    except (_UsageError, TargetError, BatchUsageError) as e:
        _err(str(e))
        return 2
    try:
        return _run(args, target, options, exp, jobs, shard, how, manifest, jax_started)
    finally:
        if manifest is not None:
            manifest.close()


def _run(args, target, options, exp, jobs, shard, how, manifest, jax_started) -> int:
    failures = skipped = 0

    def record(job, status, reason=None, in_hw=None):
        if manifest is not None:
            manifest.write(batch_run.manifest_record(job, status, error=reason, in_hw=in_hw, shard=shard))

    def fail(job, reason, in_hw=None):
        nonlocal failures
        failures += 1
        _err(f"{job.src}: {reason}")
        record(job, "error", reason, in_hw)

    if shard[0] == 0:  # inputs that gave no file: reported once, by the first shard
        for inp, message in exp.problems:
            failures += 1
            _err(message)
            record(batch.Job(-1, inp, None), "error", message)
    mine = [j for j in jobs if batch.in_shard(j.index, shard)]
    todo, folders = [], {}
    for job in mine:
        reason = _triage(job, args, folders)
        if reason is _SKIP:
            skipped += 1
            record(job, "skipped")
        elif reason:
            fail(job, reason)
        else:
            todo.append(job)
    sizes = _probe_all([j.src for j in todo])
    runnable = []
    for job, (hw, reason) in zip(todo, sizes):
        if reason:
            fail(job, reason)
            continue
        job.in_hw = hw
        try:
            job.plan = targets.output_size(hw, target, args.fit, allow_downscale=args.allow_downscale)
        except TargetError as e:
            fail(job, str(e), hw)
            continue
        runnable.append(job)

    def summary(written=0):
        _summary(args, written=written, skipped=skipped, failed=failures, total=len(mine), shard=shard, how=how,
                 everything=len(jobs))

    if not runnable:
        summary()
        return 2 if failures else 0

    try:
        from . import api
    except ImportError as e:
        _err(f"cannot import the model code (diffsr_jax.api): {e}")
        return 2
    try:
        if not jax_started:
            _start_jax(args)
    except _UsageError as e:
        _err(str(e))
        return 2
    try:
        model = api.load_model(args.checkpoint)
    except (RuntimeError, OSError, ValueError) as e:  # CheckpointError is a RuntimeError
        where = args.checkpoint or "the bundled model"
        _err(f"cannot load the model ({where}): {_one_line(e)}")
        return 2
    noise = options.noise
    if noise[0] == "step" and noise[1] > model.num_timesteps:
        _err(f"--noise t={noise[1]}: this model has T = {model.num_timesteps} steps (use 0..{model.num_timesteps})")
        return 2

    from tqdm.auto import tqdm

    # disable=None: tqdm shows the bar only when stderr is a terminal.
    bar = tqdm(total=len(runnable), desc="images", unit="img", file=sys.stderr,
               disable=True if (args.quiet or len(runnable) < 2) else None, dynamic_ncols=True)

    def log(line: str, err: bool = False) -> None:
        # tqdm.write keeps the progress bar intact; it falls back to print when there is none.
        tqdm.write(line, file=sys.stderr if err else sys.stdout)

    runner = batch_run.BatchRunner(
        api=api, model=model, options=options, mesh=api.local_mesh(), target=target, fit=args.fit,
        allow_downscale=args.allow_downscale, overwrite=args.overwrite, skip_existing=args.skip_existing,
        batch_images=args.batch_images, progress=not args.quiet, quiet=args.quiet, log=log, bar=bar,
        manifest=manifest, shard=shard)
    try:
        runner.run(runnable)
    finally:
        bar.close()
    failures += runner.failures
    skipped += runner.skipped
    summary(runner.written)
    return 2 if failures else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
