"""diffsr-jax: arbitrary-scale super-resolution with one pre-trained pixel diffusion model (Diff-SR).

High level:   ``diffsr_jax.upscale(image, "1080p")``, ``load_model()``, ``upscale_array(...)``,
              ``InferenceOptions`` (every inference knob in one frozen object).
Pure core:    ``pipeline.diffsr`` (params, schedule, upsampled batch, traced t, key) → HR batch,
              ``samplers.ddim_sample`` / ``ddpm_sample``, ``schedules.make_schedule``.
"""

from diffsr_jax.api import local_mesh, upscale, upscale_array, upscale_batch
from diffsr_jax.loading import DEFAULT_CHECKPOINT, LoadedModel, load_model
from diffsr_jax.options import InferenceOptions
from diffsr_jax.schedules import Schedule, make_schedule, q_sample

__version__ = "0.1.0"
__all__ = ["DEFAULT_CHECKPOINT", "InferenceOptions", "LoadedModel", "Schedule", "load_model", "local_mesh",
           "make_schedule", "q_sample", "upscale", "upscale_array", "upscale_batch"]
