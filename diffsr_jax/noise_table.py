"""The noise table of a model (its ``prf.json``): which noise step t each scale and mode runs at.

A table holds, per inference mode, the calibrated scales and their noise fractions t/T, plus how
they were calibrated (sampler, step count, grid, crops: ``calibration``) and the measurements the
pick rule read (``metrics``, ``t_best``, ...; see :mod:`diffsr_jax.calibration`). The top level is
the plain mode (the paper's Diff-SR); ``modes.consistent`` is the data-consistent mode, used when
consistency is on (falling back to the plain table when absent).

``format_version`` (an int) says which schema a file follows; this module reads versions up to
:data:`FORMAT_VERSION` and refuses newer ones. A file without the key is version 1. Schema of
version 1, per mode: ``scales`` and ``noise_fraction`` (same length, required), ``t``, ``T``,
``rule``, ``prf``, optional ``calibration`` {steps, sampler, t_grid, data, images, crop, framing,
degradation, seed, checkpoint, checkpoint_step}, the empirical rule's measurements, and the pick
(``pick``; ``psnr_floor``, ``psnr_floor_slack`` (absent = 0), ``monotone_in_scale`` (absent =
false)). Version 2 adds, per mode and optional, a noise axis: ``noise_levels_255`` (input noise
std in 8-bit units, increasing, > 0) and ``noise_fraction_by_level`` (one row of fractions per
level, over ``scales``; the σ = 0 row is ``noise_fraction``), and at the top level an optional
``degradation`` object of :mod:`diffsr_jax.adaptation`'s parameters.

Pure Python + numpy: importable without JAX, so the CLI and calibrate.py read tables instantly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from typing import Any, Optional

import numpy as np

from diffsr_jax.defaults import DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS

FORMAT_VERSION = 2
FILE_NAME = "prf.json"
MODES = ("plain", "consistent")

# Used when a checkpoint has no prf.json: noise fraction of T per scale, interpolated in log2(scale).
FALLBACK = {"scales": [1.0, 2.0, 4.0, 8.0], "noise_fraction": [0.0, 0.2, 0.4, 0.55],
            "rule": "paper defaults (Fig. 4/6): ≈20% of T at 2×, ≈40% at 4×, 50–65% at 8×"}


class NoiseTableError(ValueError):
    """A noise table that cannot be used (unreadable, malformed, or a newer format)."""


@dataclasses.dataclass(frozen=True)
class ModeTable:
    """One mode's calibrated noise levels."""

    scales: tuple[float, ...]
    noise_fraction: tuple[float, ...]
    calibration: dict           # how it was calibrated ({} when unknown)
    noise_levels: tuple[float, ...] = ()             # input noise std, [0, 1] units (the noise axis)
    fraction_by_level: tuple[tuple[float, ...], ...] = ()

    def fraction_at(self, scale: float, sigma: float = 0.0) -> float:
        """t*/T for any scale and input noise std ``sigma`` ([0, 1] units): linear in log2(scale)
        between calibrated scales and linear in σ between calibrated noise levels, clamped outside
        both. Without a noise axis (or at σ = 0) the σ = 0 row alone."""
        base = interpolate_fraction(self.scales, self.noise_fraction, scale)
        if not self.noise_levels or sigma <= 0:
            return base
        per_level = [base] + [interpolate_fraction(self.scales, row, scale) for row in self.fraction_by_level]
        return float(np.interp(float(sigma), (0.0, *self.noise_levels), per_level))

    @property
    def steps(self) -> int:
        """The sampler step count the table was calibrated with (see :func:`calibrated_steps`)."""
        return calibrated_steps(self.calibration)

    @property
    def sampler(self) -> str:
        """The reverse sampler the table was calibrated with (see :func:`calibrated_sampler`)."""
        return calibrated_sampler(self.calibration)


@dataclasses.dataclass(frozen=True)
class NoiseTable:
    """A whole prf.json: the typed modes plus the file's JSON (``raw``) for calibration tools."""

    version: int
    plain: ModeTable
    consistent: Optional[ModeTable]
    raw: dict

    def mode(self, consistent: bool) -> ModeTable:
        """The table a run uses: the consistent one when consistency is on and the model has one."""
        return self.consistent if consistent and self.consistent is not None else self.plain


def calibrated_steps(calibration: dict) -> int:
    """The step count a ``calibration`` record says (a table's t* holds only for that count: fewer
    steps from a large t cannot rebuild what more can); DEFAULT_STEPS when it does not say."""
    steps = calibration.get("steps")
    return int(steps) if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1 else DEFAULT_STEPS


def calibrated_sampler(calibration: dict) -> str:
    """The reverse sampler a ``calibration`` record says; DEFAULT_SAMPLER when it does not say."""
    name = calibration.get("sampler")
    return name if name in SAMPLERS else DEFAULT_SAMPLER


def current_calibration(directory: str, consistent: bool = False) -> dict:
    """The ``calibration`` record of a model folder's table for a mode ({} without a readable
    one), chosen as :meth:`NoiseTable.mode` chooses; lenient, for tools that re-calibrate a table
    (a partial or malformed table still tells its step count)."""
    try:
        table = read(os.path.join(directory, FILE_NAME))
        cal = mode_json(table, consistent).get("calibration", {})
    except (NoiseTableError, AttributeError):
        return {}
    return cal if isinstance(cal, dict) else {}


def interpolate_fraction(scales, fractions, scale: float) -> float:
    """Linear interpolation of ``fractions`` in log2(scale), clamped outside the calibrated scales."""
    logs = np.log2(np.maximum(np.asarray(scales, np.float64), 1e-6))
    order = np.argsort(logs)
    fr = np.asarray(fractions, np.float64)[order]
    return float(np.interp(math.log2(max(float(scale), 1e-6)), logs[order], fr))


def _mode(obj: Any, where: str) -> ModeTable:
    if not isinstance(obj, dict):
        raise NoiseTableError(f"{where}: expected an object, got {type(obj).__name__}")
    try:
        scales = tuple(float(s) for s in obj["scales"])
        fractions = tuple(float(f) for f in obj["noise_fraction"])
    except KeyError as e:
        raise NoiseTableError(f"{where}: missing {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise NoiseTableError(f"{where}: scales and noise_fraction must be lists of numbers ({e})") from None
    if not scales or len(scales) != len(fractions):
        raise NoiseTableError(f"{where}: scales and noise_fraction must be non-empty and of equal length")
    if not all(math.isfinite(s) and s > 0 for s in scales):
        raise NoiseTableError(f"{where}: scales must be positive numbers")
    if not all(math.isfinite(f) and 0.0 <= f <= 1.0 for f in fractions):
        raise NoiseTableError(f"{where}: noise fractions must lie in [0, 1]")
    cal = obj.get("calibration", {})
    levels, by_level = (), ()
    if "noise_levels_255" in obj:
        try:
            levels = tuple(float(v) / 255.0 for v in obj["noise_levels_255"])
            by_level = tuple(tuple(float(f) for f in row) for row in obj["noise_fraction_by_level"])
        except (KeyError, TypeError, ValueError) as e:
            raise NoiseTableError(f"{where}: noise_levels_255 needs noise_fraction_by_level, rows of numbers ({e})") from None
        if len(by_level) != len(levels) or any(len(row) != len(scales) for row in by_level):
            raise NoiseTableError(f"{where}: noise_fraction_by_level needs one row per noise level, one value per scale")
        if not all(b > a for a, b in zip((0.0, *levels), levels)):
            raise NoiseTableError(f"{where}: noise_levels_255 must be positive and increasing")
        if not all(0.0 <= f <= 1.0 for row in by_level for f in row):
            raise NoiseTableError(f"{where}: noise fractions must lie in [0, 1]")
    return ModeTable(scales=scales, noise_fraction=fractions, calibration=cal if isinstance(cal, dict) else {},
                     noise_levels=levels, fraction_by_level=by_level)


def parse(obj: Any, where: str = "noise table") -> NoiseTable:
    """A prf.json's JSON object → :class:`NoiseTable`; NoiseTableError when malformed or newer."""
    if not isinstance(obj, dict):
        raise NoiseTableError(f"{where}: expected a JSON object")
    version = obj.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise NoiseTableError(f"{where}: format_version must be a whole number >= 1, got {version!r}")
    if version > FORMAT_VERSION:
        raise NoiseTableError(f"{where}: format_version {version} is newer than this library reads "
                              f"({FORMAT_VERSION}); upgrade diffsr-jax")
    modes = obj.get("modes", {})
    if not isinstance(modes, dict):
        raise NoiseTableError(f"{where}: 'modes' must be an object")
    consistent = _mode(modes["consistent"], f"{where} (consistent mode)") if "consistent" in modes else None
    return NoiseTable(version=version, plain=_mode(obj, where), consistent=consistent, raw=obj)


def fallback() -> NoiseTable:
    return parse(dict(FALLBACK), "fallback table")


def read(path: str) -> dict:
    """The JSON of a table file; NoiseTableError when unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise NoiseTableError(f"cannot read {path}: {e}") from None


def load(directory: str) -> NoiseTable:
    """The table of a model folder: its prf.json, or :data:`FALLBACK` when it has none."""
    path = os.path.join(directory, FILE_NAME)
    if not os.path.exists(path):
        return fallback()
    return parse(read(path), path)


def mode_json(table: dict, consistent: bool) -> dict:
    """One mode of a table's JSON, as :meth:`NoiseTable.mode` chooses it."""
    if consistent:
        return table.get("modes", {}).get("consistent", table)
    return table


def write_atomic(path: str, table: dict) -> None:
    """Writes a table (stamped with :data:`FORMAT_VERSION`) via a temporary file in the same folder."""
    table = {"format_version": FORMAT_VERSION, **{k: v for k, v in table.items() if k != "format_version"}}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".prf-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(table, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
