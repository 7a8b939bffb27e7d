"""diffsr-jax: arbitrary-scale super-resolution with one pre-trained pixel diffusion model (Diff-SR).

High level:   ``diffsr_jax.upscale(image, "1080p")``, ``load_model()``, ``upscale_array(...)``,
              ``upscale_batch(...)``, ``InferenceOptions`` (every inference knob in one frozen object).
Pure core:    ``pipeline.diffsr`` (params, schedule, upsampled batch, traced t, key) → HR batch,
              ``samplers.ddim_sample`` / ``ddpm_sample``, ``schedules.make_schedule``.

The names below are loaded on first use, so ``import diffsr_jax.cli`` (the CLI's ``--help``) does
not import JAX.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "local_mesh": "api", "upscale": "api", "upscale_array": "api", "upscale_batch": "api",
    "DEFAULT_CHECKPOINT": "loading", "LoadedModel": "loading", "load_model": "loading",
    "InferenceOptions": "options",
    "Schedule": "schedules", "make_schedule": "schedules", "q_sample": "schedules",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"diffsr_jax.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diffsr_jax' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
