"""Planning batch jobs for the CLI: which files, which outputs, which process does which, what size.

No JAX and no model: everything here runs before the model is loaded, so a mistake costs nothing.

* :func:`expand_inputs`: files, folders (their own images, or with ``recursive`` the whole tree,
  each image's sub-folder kept so that the output tree mirrors the input tree), ``@LIST`` text
  files of paths and glob patterns → one sorted, de-duplicated list of :class:`Source`.
* :func:`name_outputs`: each source's output path (stem + suffix + extension, as the CLI always
  named them), collisions refused → :class:`Job` s numbered by their place in the sorted list.
* :func:`parse_shard` / :func:`in_shard`: ``K/N`` takes the jobs whose index ≡ K (mod N), so N
  processes given the same command split the work deterministically, disjointly and completely.
* :func:`probe_size`: an image's (height, width) from its header (EXIF orientation applied)
  without decoding it; :func:`chunks` groups planned jobs by output size into batches.
* :func:`folder_problem`: why an output folder cannot be created or written, checked up front.
* :class:`Manifest`: the JSON-lines record of a job, appended one whole line per write.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from PIL import Image

from . import targets
from .image_io import FORMAT_BY_EXTENSION, IMAGE_EXTENSIONS

EXTENSIONS_TEXT = ", ".join(e[1:] for e in IMAGE_EXTENSIONS)
_GLOB_CHARS = "*?["


class BatchUsageError(ValueError):
    """A mistake in the command line that stops the whole run (one line, shown as is)."""


@dataclass(frozen=True)
class Source:
    path: str  # the input file, as found
    subdir: str = ""  # its folder relative to a --recursive input folder ("" otherwise)


@dataclass
class Job:
    index: int  # place in the sorted, de-duplicated input list (what --shard splits)
    src: str
    dst: Optional[str]  # None when no output could be named (problem says why)
    problem: Optional[str] = None  # known before any work: the job fails with this reason
    in_hw: Optional[tuple[int, int]] = None  # from the header (None: decode to find out)
    plan: Optional[targets.OutputPlan] = None


@dataclass
class Expanded:
    sources: list[Source]
    problems: list[tuple[str, str]]  # (input, "<input>: <reason>") for arguments that gave nothing usable
    folders: int = 0  # how many folder inputs were among the arguments (and lists, globs)


# ---------------------------------------------------------------------------------------------
# inputs


def describe_unusable(path: str) -> str:
    """Why ``path`` (which ``os.path.exists`` calls missing) cannot be used: a symlink loop, a
    broken link, a file where a folder is needed on the way, or simply nothing there."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symlink loop (too many levels of symbolic links)"
        if e.errno == errno.ENOTDIR:
            return "no such file or folder (a part of the path is a file, not a folder)"
        if e.errno == errno.ENOENT:
            if os.path.islink(path):
                try:
                    return f"broken symbolic link (it points to {os.readlink(path)}, which does not exist)"
                except OSError:
                    return "broken symbolic link"
            return "no such file or folder"
        if e.errno in (errno.EACCES, errno.EPERM):
            return "permission denied"
        return e.strerror or str(e)
    return "no such file or folder"


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _scan(folder: str, rel: str, problems: list, found: list) -> list[str]:
    """Adds ``folder``'s image files (links followed) to ``found`` with sub-folder ``rel``, reports
    unusable image names (a link loop, a broken link); returns its sub-folders' names. One
    directory read, no per-file system call for plain files (``os.scandir``'s file types)."""
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    subdirs = []
    for e in entries:
        try:
            is_dir, is_file = e.is_dir(), e.is_file()
        except OSError:
            is_dir = is_file = False
        if is_dir:
            subdirs.append(e.name)
        elif _is_image_name(e.name):
            if is_file:
                found.append(Source(e.path, rel))
            elif not os.path.exists(e.path):
                problems.append((e.path, f"{e.path}: {describe_unusable(e.path)}"))
    return subdirs


def _list_folder(folder: str, problems: list) -> list[Source]:
    """A folder's own image files (links followed), sorted by name."""
    found: list[Source] = []
    _scan(folder, "", problems, found)
    return found


def _walk(folder: str, exclude: set, problems: list) -> list[Source]:
    """Every image under ``folder`` (links followed, each real folder once so that a link loop
    ends, folders in ``exclude`` (real paths) left out), with its sub-folder relative to ``folder``."""
    found: list[Source] = []
    seen: set = set()
    stack = [""]
    while stack:
        rel = stack.pop()
        here = os.path.join(folder, rel) if rel else folder
        try:
            st = os.stat(here)
            if (st.st_dev, st.st_ino) in seen or (rel and os.path.realpath(here) in exclude):
                continue
            seen.add((st.st_dev, st.st_ino))
            subdirs = _scan(here, rel, problems, found)
        except OSError as e:
            problems.append((here, f"{here}: cannot list this folder ({e.strerror or e})"))
            continue
        stack.extend(reversed([os.path.join(rel, d) if rel else d for d in subdirs]))
    return found


def _has_magic(s: str) -> bool:
    return any(c in s for c in _GLOB_CHARS)


def _read_list(arg: str, problems: list) -> list[tuple[str, str]]:
    """(entry, label for messages) of an @LIST file: one path a line, blank lines and lines
    starting with # ignored, relative paths relative to the list file's folder."""
    path = arg[1:]
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        problems.append((arg, f"{arg}: no such list file ({describe_unusable(path)})"))
        return []
    except (OSError, UnicodeDecodeError) as e:
        problems.append((arg, f"{arg}: cannot read this list file ({getattr(e, 'strerror', None) or e})"))
        return []
    base = os.path.dirname(path)
    entries = []
    for n, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        entry = os.path.expanduser(entry)
        if not os.path.isabs(entry):
            entry = os.path.join(base, entry)
        entries.append((entry, f"{path}:{n}: "))
    if not entries:
        problems.append((arg, f"{arg}: the list file names no paths"))
    return entries


def expand_inputs(inputs: Iterable[str], *, recursive: bool = False,
                  exclude: Iterable[str] = ()) -> Expanded:
    """The input arguments as one sorted, de-duplicated list of image files.

    Each argument is an image file, a folder (its own images; ``recursive``: every image below
    it), ``@LIST`` (a text file of such paths; used only when no file is literally named so) or a
    glob pattern (``*``, ``?``, ``[...]``, ``**`` for any depth; used only when no such path
    exists, so quoted patterns work on every shell). Folders and globs take image files only
    (:data:`IMAGE_EXTENSIONS`, any case); a file named directly is taken whatever its name.
    ``exclude``: sub-folders never walked into (the output folder). Sorted by path; a file reached
    twice (also through a link) is kept once."""
    exclude = {os.path.realpath(e) for e in exclude}
    out = Expanded([], [])

    def one(arg: str, label: str, from_pattern: bool = False) -> None:
        if os.path.isdir(arg):
            out.folders += 1
            found = _walk(arg, exclude, out.problems) if recursive else _list_folder(arg, out.problems)
            if not found and not from_pattern:
                where = "this folder or its sub-folders" if recursive else "this folder"
                out.problems.append((arg, f"{label}{arg}: no images ({EXTENSIONS_TEXT}) in {where}"))
            out.sources.extend(found)
        elif os.path.exists(arg):
            if not from_pattern or _is_image_name(arg):
                out.sources.append(Source(arg))
        elif not os.path.lexists(arg) and _has_magic(arg) and not from_pattern:
            matches = sorted(glob.glob(arg, recursive=True))
            before = len(out.sources)
            for m in matches:
                one(m, label, from_pattern=True)
            if len(out.sources) == before:
                out.problems.append((arg, f"{label}{arg}: no image file or folder matches this pattern"))
        elif not from_pattern or _is_image_name(arg):
            out.problems.append((arg, f"{label}{arg}: {describe_unusable(arg)}"))

    for arg in inputs:
        if arg.startswith("@") and len(arg) > 1 and not os.path.lexists(arg):
            for entry, label in _read_list(arg, out.problems):
                one(entry, label)
        else:
            one(arg, "")

    out.sources.sort(key=lambda s: (os.path.normpath(s.path), s.subdir))
    seen, unique, real_dirs = set(), [], {}
    for s in out.sources:
        # the real path, resolving each folder once (a million files sit in a few folders)
        d, name = os.path.split(s.path)
        if d not in real_dirs:
            real_dirs[d] = os.path.realpath(d or os.curdir)
        real = os.path.join(real_dirs[d], name)
        key = os.path.normcase(os.path.realpath(real) if os.path.islink(real) else real)
        if key not in seen:
            seen.add(key)
            unique.append(s)
    out.sources = unique
    return out


# ---------------------------------------------------------------------------------------------
# outputs


def is_file_output(output: str) -> bool:
    """-o names a file: it ends in an image extension and is not an existing folder (or a/)."""
    ext = os.path.splitext(output.rstrip("/\\"))[1].lower()
    return ext in IMAGE_EXTENSIONS and not os.path.isdir(output) and not output.endswith(("/", os.sep))


def name_outputs(sources: list[Source], output: str, *, fmt: Optional[str], suffix: str,
                 file_mode: bool) -> list[Job]:
    """Jobs in source order. Folder output: OUT/<subdir>/<stem><suffix><ext>, the input's
    extension (.png when it is not an image one) or ``fmt``'s; a second source whose output
    would be the same file gets a problem instead."""
    if file_mode:
        return [Job(i, s.path, output) for i, s in enumerate(sources)]
    if os.sep in suffix or "/" in suffix:
        raise BatchUsageError("--suffix must not contain a path separator")
    jobs: list[Job] = []
    taken: dict[str, str] = {}
    for i, s in enumerate(sources):
        stem, ext = os.path.splitext(os.path.basename(s.path))
        if fmt:
            ext = "." + fmt
        elif ext.lower() not in IMAGE_EXTENSIONS:
            ext = ".png"
        dst = os.path.join(output, s.subdir, stem + suffix + ext)
        key = os.path.normcase(os.path.abspath(dst))
        if key in taken:
            jobs.append(Job(i, s.path, None, problem=f"its output {dst} would also be the output of "
                                                     f"{taken[key]}; rename one input or process them separately"))
            continue
        taken[key] = s.path
        jobs.append(Job(i, s.path, dst))
    return jobs


def check_file_output(output: str, fmt: Optional[str], arguments: list[str], sources: list[Source],
                      folders: int) -> None:
    """-o FILE needs exactly one input file and a --format that agrees with its extension."""
    if len(arguments) != 1 or folders or len(sources) > 1:
        what = f"{len(arguments)} paths" if len(arguments) != 1 else \
            ("a folder" if folders else f"{len(sources)} files")
        raise BatchUsageError(f"-o {output} names a file, but the input is {what}; give a folder for -o")
    ext = os.path.splitext(output)[1].lower()
    if fmt and FORMAT_BY_EXTENSION["." + fmt] != FORMAT_BY_EXTENSION[ext]:
        raise BatchUsageError(f"--format {fmt} contradicts the extension of -o {output}")


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def folder_problem(folder: str) -> Optional[str]:
    """Why files cannot be written into ``folder`` (creating it where missing), or None: a file
    stands where a folder is needed, a symlink loop, or the nearest existing folder is not
    writable. Checked before any work, so that a job does not fail after hours of compute."""
    folder = os.path.abspath(folder or ".")
    p = folder
    while True:
        try:
            os.stat(p)
            break
        except OSError as e:
            if e.errno == errno.ELOOP:
                return f"cannot use the folder {folder}: symlink loop (too many levels of symbolic links) at {p}"
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                return f"cannot use the folder {folder}: {e.strerror or e}"
        parent = os.path.dirname(p)
        if parent == p:
            return f"cannot create the folder {folder}: nothing of its path exists"
        p = parent
    if not os.path.isdir(p):
        return f"cannot create the folder {folder}: {p} is a file, not a folder"
    if not os.access(p, os.W_OK | os.X_OK):
        verb = "write into" if p == folder else f"create the folder {folder} in"
        return f"cannot {verb} {p}: permission denied"
    return None


# ---------------------------------------------------------------------------------------------
# sharding


def parse_shard(spec: str) -> tuple[int, int]:
    """``"K/N"`` → (K, N) with 0 ≤ K < N."""
    parts = str(spec).strip().split("/")
    try:
        k, n = (int(p) for p in parts)
    except ValueError:
        raise BatchUsageError(f"--shard must be K/N with whole numbers, e.g. 0/4, got {spec!r}") from None
    if n < 1 or not 0 <= k < n:
        raise BatchUsageError(f"--shard K/N needs N >= 1 and 0 <= K < N, got {spec!r}")
    return k, n


def in_shard(index: int, shard: tuple[int, int]) -> bool:
    k, n = shard
    return index % n == k


# ---------------------------------------------------------------------------------------------
# sizes and groups


def probe_size(path: str) -> Optional[tuple[int, int]]:
    """(height, width) of an image as :func:`image_io.read_image` will give it (EXIF orientation
    applied), read from its header without decoding the pixels; None when the header cannot be
    read (the decode then says why)."""
    try:
        with warnings.catch_warnings():
            # Pillow warns about huge images on opening; the size check that follows says it better.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            w, h = im.size
            orientation = 1
            # PNG keeps EXIF in a chunk Pillow finds only by decoding when it follows the pixels;
            # then the decoded size decides (the CLI checks it).
            if im.format != "PNG" or "exif" in im.info:
                orientation = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # unreadable, truncated header, not an image: the decode reports it
        return None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def chunks(jobs: list[Job], batch_images: int, max_pixels: int = targets.MAX_OUTPUT_PIXELS):
    """Planned jobs grouped by output size (groups in order of first appearance, jobs in order)
    and cut into chunks of at most ``batch_images`` images and ``max_pixels`` output pixels
    (at least one image). Jobs without a plan (their size is known only once decoded) come
    alone. Yields (out_hw or None, [jobs])."""
    groups: dict[Any, list[Job]] = {}
    for j in jobs:
        groups.setdefault(j.plan.out_hw if j.plan is not None else None, []).append(j)
    for hw, members in groups.items():
        if hw is None:
            for j in members:
                yield None, [j]
            continue
        per = max(1, min(int(batch_images), max_pixels // max(hw[0] * hw[1], 1)))
        for i in range(0, len(members), per):
            yield hw, members[i:i + per]


# ---------------------------------------------------------------------------------------------
# manifest


class Manifest:
    """A JSON-lines file, appended to: each record is one ``os.write`` of one whole line, so a
    killed process leaves whole lines and several processes may append to one local file."""

    def __init__(self, path: str):
        self.path = path
        folder = os.path.dirname(os.path.abspath(path))
        problem = folder_problem(folder)
        if problem:
            raise BatchUsageError(f"--manifest {path}: {problem}")
        try:
            os.makedirs(folder, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as e:
            raise BatchUsageError(f"--manifest {path}: cannot open it for appending ({e.strerror or e})") from None

    def write(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        os.write(self._fd, line)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def wh(hw) -> Optional[list[int]]:
    """(height, width) → [width, height] (the manifest's and the CLI's order), None stays None."""
    return None if hw is None else [int(hw[1]), int(hw[0])]
