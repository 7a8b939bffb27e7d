"""``diffsr-upscale`` / ``python infer.py``: upscale image files with the Diff-SR model.

Run with ``--help`` for the grammar of ``--target`` and ``--noise``. Exit codes: 0 all images
written; 2 a usage error, a bad checkpoint, or at least one image failed (the others are still
written); 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from . import defaults, image_io, targets
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
  to OUT/<stem><suffix>.<ext>, keeping the input's extension (or .png when it is not one of
  those), or the extension of --format. --suffix may contain {{target}}, e.g. "_{{target}}"
  gives photo_4x.png. Existing files are never replaced without --overwrite, an input is never
  replaced, and nothing is ever left half-written. Grayscale stays grayscale, alpha is kept
  (upscaled bicubically), 16-bit PNG stays 16-bit.

examples:
  {PROG} photo.jpg --target 4x -o photo_4x.jpg
  {PROG} frames/ --target 1080p --fit cover -o out/
  {PROG} a.png b.png --target 2.5x --noise t=300 --steps 20 -o out/ --suffix _{{target}}
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


def _cpu_devices(s):
    """--cpu-devices: auto or a whole number >= 1."""
    word = s.strip().lower()
    if word == "auto":
        return "auto"
    return _positive_int("--cpu-devices")(word)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=_Formatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files and/or folders (a folder's images, not recursive, sorted by name)")
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
                   help="tiles denoised together in one compiled call (more = faster on GPU/TPU, "
                        "more memory); images are processed one at a time (default: 4)")
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
                                tile_batch=args.batch_size, seed=args.seed)
    except TargetError:
        raise
    except ValueError as e:
        raise _UsageError(str(e)) from None


# ---------------------------------------------------------------------------------------------


@dataclass
class _Job:
    src: str  # input path
    dst: str  # output path


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


def _list_folder(folder: str) -> list[str]:
    names = []
    for name in os.listdir(folder):
        full = os.path.join(folder, name)
        if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and os.path.isfile(full):
            names.append(name)
    return [os.path.join(folder, n) for n in sorted(names)]


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def _plan_jobs(args, target) -> tuple[list[_Job], int]:
    """Expands inputs and names outputs. Returns (jobs, number of failures already reported)."""
    failures = 0
    sources: list[str] = []
    for inp in args.inputs:
        if os.path.isdir(inp):
            found = _list_folder(inp)
            if not found:
                _err(f"{inp}: no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) in this folder")
                failures += 1
            sources.extend(found)
        elif os.path.exists(inp):
            sources.append(inp)
        else:
            _err(f"{inp}: no such file or folder")
            failures += 1

    out = args.output
    out_ext = os.path.splitext(out.rstrip("/\\"))[1].lower()
    file_mode = (out_ext in IMAGE_EXTENSIONS and not os.path.isdir(out)
                 and not out.endswith(("/", os.sep)))
    if file_mode:
        if len(args.inputs) != 1 or os.path.isdir(args.inputs[0]):
            raise _UsageError(
                f"-o {out} names a file, but the input is {len(args.inputs)} paths or a folder; "
                "give a folder for -o"
            )
        if args.format and image_io.FORMAT_BY_EXTENSION["." + args.format] != \
                image_io.FORMAT_BY_EXTENSION[out_ext]:
            raise _UsageError(f"--format {args.format} contradicts the extension of -o {out}")
        return [_Job(src, out) for src in sources], failures
    if os.path.exists(out) and not os.path.isdir(out):
        raise _UsageError(f"-o {out} exists and is not a folder")

    suffix = args.suffix.replace("{target}", target.label)
    if os.sep in suffix or "/" in suffix:
        raise _UsageError("--suffix must not contain a path separator")
    jobs: list[_Job] = []
    taken: dict[str, str] = {}
    for src in sources:
        stem, ext = os.path.splitext(os.path.basename(src))
        if args.format:
            ext = "." + args.format
        elif ext.lower() not in IMAGE_EXTENSIONS:
            ext = ".png"
        dst = os.path.join(out, stem + suffix + ext)
        key = os.path.normcase(os.path.abspath(dst))
        if key in taken:
            _err(f"{src}: its output {dst} would also be the output of {taken[key]}; "
                 "rename one input or process them separately")
            failures += 1
            continue
        taken[key] = src
        jobs.append(_Job(src, dst))
    return jobs, failures


def _check_destination(job: _Job, overwrite: bool) -> Optional[str]:
    if os.path.exists(job.dst) and _same_file(job.src, job.dst):
        return f"the output {job.dst} would replace the input; choose another -o or a --suffix"
    if os.path.isdir(job.dst):
        return f"the output {job.dst} is a folder"
    if os.path.exists(job.dst) and not overwrite:
        return f"{job.dst} exists (use --overwrite to replace it)"
    return None


def _fmt_hw(hw) -> str:
    return f"{hw[1]}x{hw[0]}"


class _ImageFailure(Exception):
    pass


def _process(job: _Job, args, target, options, api, model, log, mesh=None) -> None:
    """Upscales one image; raises _ImageFailure with a one-line reason."""
    t0 = time.perf_counter()
    try:
        img = image_io.read_image(job.src)
    except ImageReadError as e:
        raise _ImageFailure(e.reason or str(e)) from None
    try:
        plan = targets.output_size(img.size, target, args.fit, allow_downscale=args.allow_downscale)
    except TargetError as e:
        raise _ImageFailure(str(e)) from None
    problem = _check_destination(job, args.overwrite)
    if problem:
        raise _ImageFailure(problem)

    try:
        out, info = api.upscale_array(img.rgb, plan.out_hw, model=model, options=options, progress=not args.quiet,
                                      mesh=mesh)
    except (MemoryError, ValueError, RuntimeError, TargetError) as e:
        raise _ImageFailure(f"upscaling failed: {type(e).__name__}: {_one_line(e)}") from None
    out = np.asarray(out, np.float32)
    if out.shape != (plan.out_h, plan.out_w, 3):
        raise _ImageFailure(
            f"upscaling failed: model returned shape {out.shape}, expected {(plan.out_h, plan.out_w, 3)}"
        )
    alpha = image_io.resize_alpha(img.alpha, plan.out_hw) if img.alpha is not None else None
    out = targets.apply_crop(out, plan)
    alpha = targets.apply_crop(alpha, plan) if alpha is not None else None

    try:
        os.makedirs(os.path.dirname(os.path.abspath(job.dst)), exist_ok=True)
        written = image_io.write_image(
            job.dst, out, alpha, img.mode, img.bit_depth, overwrite=args.overwrite,
            icc_profile=img.icc_profile,
        )
    except FileExistsError:
        raise _ImageFailure(f"{job.dst} exists (use --overwrite to replace it)") from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise _ImageFailure(f"cannot write {job.dst}: {reason}") from None
    dt = time.perf_counter() - t0

    if not args.quiet:
        for note in img.notes + written.notes:
            log(f"note: {job.src}: {note}", err=True)
        scale = plan.scale_label()
        if plan.crop is not None:
            scale += f", centre crop of {_fmt_hw(plan.out_hw)}"
        t = info.get("t") if isinstance(info, dict) else None
        frac = info.get("noise_fraction") if isinstance(info, dict) else None
        noise_txt = f"t={t}" if t is not None else "t=?"
        if frac is not None:
            noise_txt += f" ({100 * float(frac):.3g}%)"  # 2.5%, not a rounded 2%
        ens = info.get("self_ensemble", 1) if isinstance(info, dict) else 1
        if ens and ens > 1:
            noise_txt += f", self-ensemble {ens}"
        devices = info.get("devices", 1) if isinstance(info, dict) else 1
        if devices and devices > 1:
            noise_txt += f", {devices} devices"
        log(f"{job.src}: {_fmt_hw(img.size)} -> {_fmt_hw(plan.final_hw)} ({scale}), "
            f"{noise_txt}, {dt:.1f} s -> {job.dst}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def _main(argv) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        target = targets.parse_target(args.target)
        options = inference_options(args)
        noise = options.noise
        if args.tile and args.tile_overlap >= args.tile:
            raise _UsageError(f"--tile-overlap ({args.tile_overlap}) must be smaller than --tile ({args.tile})")
        if args.checkpoint is not None and not os.path.isdir(args.checkpoint):
            raise _UsageError(f"--checkpoint {args.checkpoint}: no such model folder")
        jobs, failures = _plan_jobs(args, target)
    except (_UsageError, TargetError) as e:
        _err(str(e))
        return 2

    # Refuse what is already known to fail before paying for the model.
    runnable = []
    for job in jobs:
        problem = _check_destination(job, args.overwrite)
        if problem:
            _err(f"{job.src}: {problem}")
            failures += 1
        else:
            runnable.append(job)
    if not runnable:
        return 2 if failures else 0

    try:
        from . import api
    except ImportError as e:
        _err(f"cannot import the model code (diffsr_jax.api): {e}")
        return 2
    _enable_compilation_cache()
    from . import sharding

    # Before anything touches a device. Inside a program whose JAX already runs (cli.main called
    # from Python) the devices there are kept; only an explicit count is worth a note then.
    sharding.setup_cpu_devices(args.cpu_devices, note=args.cpu_devices != "auto" and not args.quiet)
    try:
        model = api.load_model(args.checkpoint)
    except (RuntimeError, OSError, ValueError) as e:  # CheckpointError is a RuntimeError
        where = args.checkpoint or "the bundled model"
        _err(f"cannot load the model ({where}): {_one_line(e)}")
        return 2
    if noise[0] == "step" and noise[1] > model.num_timesteps:
        _err(f"--noise t={noise[1]}: this model has T = {model.num_timesteps} steps (use 0..{model.num_timesteps})")
        return 2

    from tqdm.auto import tqdm

    # disable=None: tqdm shows the bar only when stderr is a terminal.
    bar = tqdm(runnable, desc="images", unit="img", file=sys.stderr,
               disable=True if (args.quiet or len(runnable) < 2) else None, dynamic_ncols=True)

    def log(line: str, err: bool = False) -> None:
        # tqdm.write keeps the progress bar intact; it falls back to print when there is none.
        tqdm.write(line, file=sys.stderr if err else sys.stdout)

    mesh = api.local_mesh()  # None on one device
    for job in bar:
        try:
            _process(job, args, target, options, api, model, log, mesh)
        except _ImageFailure as e:
            log(f"error: {job.src}: {e}", err=True)
            failures += 1
    bar.close()
    return 2 if failures else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
