"""The inference knobs as one frozen, validated object shared by the API, the CLI, evaluation and
the calibration sweep. No JAX: building and checking options is instant.

    opts = InferenceOptions(noise="t=100", consistency=0.5)
    opts = opts.replace(self_ensemble=8)
    opts = InferenceOptions.from_mapping(config.inference)   # a dict or an ml_collections ConfigDict

``None`` for a field means "the model's default": the noise step, step count and sampler come from
the model's noise table (:mod:`diffsr_jax.noise_table`), the other defaults from
:mod:`diffsr_jax.defaults`. :meth:`InferenceOptions.with_defaults` fills those that do not depend
on the model.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Mapping, Optional, Union

from diffsr_jax import defaults, targets

NoiseSpec = tuple  # ("auto", None) | ("fraction", f) | ("step", t)

#: The largest seed: JAX's ``jax.random.key`` takes a signed 64-bit integer (a bigger Python int
#: is an OverflowError inside JAX), so seeds are whole numbers in [0, 2**63 - 1]. With JAX's
#: default 32-bit mode (``jax_enable_x64`` off) the key is built from the seed's low 32 bits.
MAX_SEED = 2 ** 63 - 1


def _is_number(value) -> bool:
    """A real number, Python's or numpy's (np.int64, np.float32, ...), but not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_whole(value) -> bool:
    """A number with an integer value (ints of any size; finite floats like 3.0)."""
    if not _is_number(value):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return math.isfinite(value) and int(value) == value


def check_self_ensemble_size(n) -> int:
    """``n`` as an int if it is a supported self-ensemble size, else ValueError."""
    sizes = defaults.SELF_ENSEMBLE_SIZES
    if not _is_whole(n) or int(n) not in sizes:
        raise ValueError(f"self-ensemble size must be one of {', '.join(map(str, sizes))}, got {n!r}")
    return int(n)


def parse_noise(noise) -> NoiseSpec:
    """"auto" | a fraction of T (0.35) | "t=350" | an already parsed (kind, value) → (kind, value).
    ValueError (targets.TargetError) for anything else."""
    if isinstance(noise, tuple):
        if len(noise) != 2 or noise[0] not in ("auto", "fraction", "step"):
            raise ValueError(f"unknown noise spec {noise!r}")
        kind, value = noise
        if kind == "auto":
            return ("auto", None)
        if kind == "fraction":
            return ("fraction", _fraction(value, noise))
        if not _is_whole(value) or value < 0:
            raise ValueError(f"noise step must be a whole number >= 0, got {value!r}")
        return ("step", int(value))
    if isinstance(noise, str):
        return targets.parse_noise(noise)
    if _is_number(noise):
        return ("fraction", _fraction(noise, noise))
    raise ValueError(f"noise must be 'auto', a fraction in [0, 1] or 't=N', got {noise!r}")


def parse_degradation(spec):
    """"auto" | "clean" | a spec string | a Degradation → "auto", "clean" or a Degradation."""
    if isinstance(spec, str) and spec.strip().lower() in ("auto", "clean"):
        return spec.strip().lower()
    if isinstance(spec, str) or hasattr(spec, "noise_sigma"):
        from diffsr_jax import degradation  # numpy/scipy: imported when a spec is given, not at start-up

        parsed = degradation.parse_degradation(spec)
        return "clean" if parsed == degradation.CLEAN else parsed
    raise ValueError(f"degradation must be 'auto', 'clean', a spec like 'noise=10,jpeg=75' or a Degradation, "
                     f"got {spec!r}")


def _fraction(value, spec) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"noise fraction must be a number in [0, 1], got {spec!r}") from None
    if not (math.isfinite(f) and 0.0 <= f <= 1.0):
        raise ValueError(f"noise fraction must be in [0, 1], got {value}")
    return f


def _whole(name: str, value, minimum: int, maximum: Optional[int] = None) -> int:
    if not _is_whole(value):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}")
    if maximum is not None and int(value) > maximum:
        raise ValueError(f"{name} must be in [{minimum}, {maximum}], got {int(value)}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
    """How to run Diff-SR on an image. Validated and normalised on construction.

    noise:       "auto" (the noise table's t for the scale and mode), a fraction of T, "t=N", or a
                 parsed (kind, value) tuple; stored parsed.
    steps:       reverse-sampler steps from t (None: the count the mode's table was calibrated with).
    sampler:     a name of ``defaults.SAMPLERS`` (None: the one the table was calibrated with).
    consistency: λ in [0, 1] of data consistency (0 = plain Diff-SR; None: DEFAULT_CONSISTENCY).
    lift:        "pinv" | "bicubic" (None: DEFAULT_LIFT); consistency_iters: corrections per step.
    colour_fix:  "none" | "wavelet" | "adain" (None: DEFAULT_COLOUR_FIX).
    self_ensemble: 1 | 2 | 4 | 8 flips/rotations averaged per ε (None: DEFAULT_SELF_ENSEMBLE).
    tile:        None = whole images up to the API's threshold, tiles above; 0 = never tile; N = N×N tiles.
    tile_overlap, tile_batch: tile overlap in pixels, tiles per compiled call.
    seed:        seed of the injected noise: a whole number in [0, MAX_SEED = 2**63 - 1] (JAX's
                 signed 64-bit range; anything larger is refused with a ValueError).
    degradation: how the input was degraded: "auto" (estimated per image: noise, JPEG, blur;
                 :mod:`diffsr_jax.degradation`), "clean" (a noise-free bicubic downscale: nothing
                 is estimated), a spec such as "noise=10,jpeg=75" or "kernel=area", or a
                 :class:`diffsr_jax.degradation.Degradation`. See :mod:`diffsr_jax.adaptation`.
    """

    noise: Union[str, float, NoiseSpec] = "auto"
    steps: Optional[int] = None
    sampler: Optional[str] = None
    consistency: Optional[float] = None
    lift: Optional[str] = None
    consistency_iters: int = 1
    colour_fix: Optional[str] = None
    self_ensemble: Optional[int] = None
    tile: Optional[int] = None
    tile_overlap: int = 32
    tile_batch: int = 4
    seed: int = 0
    degradation: Any = "auto"

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)
        set_("noise", parse_noise(self.noise))
        if self.steps is not None:
            set_("steps", _whole("steps", self.steps, 1))
        if self.sampler is not None and self.sampler not in defaults.SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(defaults.SAMPLERS)}, got {self.sampler!r}")
        if self.consistency is not None:
            try:
                lam = float(self.consistency)
            except (TypeError, ValueError):
                raise ValueError(f"consistency strength must be a number in [0, 1], got {self.consistency!r}") from None
            if not 0.0 <= lam <= 1.0:
                raise ValueError(f"consistency strength must be in [0, 1], got {self.consistency}")
            set_("consistency", lam)
        if self.lift is not None and self.lift not in defaults.LIFTS:
            raise ValueError(f"lift must be one of {', '.join(defaults.LIFTS)}, got {self.lift!r}")
        if self.colour_fix is not None and self.colour_fix not in defaults.COLOUR_FIXES:
            raise ValueError(f"colour fix must be one of {', '.join(defaults.COLOUR_FIXES)}, got {self.colour_fix!r}")
        set_("consistency_iters", _whole("consistency_iters", self.consistency_iters, 1))
        if self.self_ensemble is not None:
            set_("self_ensemble", check_self_ensemble_size(self.self_ensemble))
        if self.tile is not None:
            set_("tile", _whole("tile", self.tile, 0))
        set_("tile_overlap", _whole("tile_overlap", self.tile_overlap, 0))
        set_("tile_batch", _whole("tile_batch", self.tile_batch, 1))
        set_("seed", _whole("seed", self.seed, 0, MAX_SEED))
        set_("degradation", parse_degradation(self.degradation))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes) -> "InferenceOptions":
        """A copy with ``changes`` applied (and validated); unknown names raise TypeError."""
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise TypeError(f"unknown inference option(s): {', '.join(unknown)}; "
                            f"known: {', '.join(self.field_names())}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, mapping: Optional[Mapping[str, Any]] = None, **changes) -> "InferenceOptions":
        """From a dict or ConfigDict of field values (plus keyword changes); unknown keys raise."""
        values = dict(mapping.items()) if mapping is not None else {}
        return cls().replace(**{**values, **changes})

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def strength(self) -> float:
        """λ with the library default filled in."""
        return defaults.DEFAULT_CONSISTENCY if self.consistency is None else self.consistency

    def with_defaults(self) -> "InferenceOptions":
        """The model-independent defaults filled in (noise, steps and sampler stay as given: they
        come from the model's noise table)."""
        return dataclasses.replace(
            self, consistency=self.strength,
            lift=defaults.DEFAULT_LIFT if self.lift is None else self.lift,
            colour_fix=defaults.DEFAULT_COLOUR_FIX if self.colour_fix is None else self.colour_fix,
            self_ensemble=defaults.DEFAULT_SELF_ENSEMBLE if self.self_ensemble is None else self.self_ensemble)
