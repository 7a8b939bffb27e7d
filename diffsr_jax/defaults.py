"""Inference defaults and option names, importable without JAX (the CLI's --help stays instant).

The values are measured choices; see the model card (assets/default_model/README.md).
"""

DEFAULT_STEPS = 10              # DDIM steps from t
LIFTS = ("pinv", "bicubic")     # see diffsr_jax.consistency
COLOUR_FIXES = ("none", "wavelet", "adain")
DEFAULT_CONSISTENCY = 0.0       # λ of data consistency (0 = plain Diff-SR)
DEFAULT_LIFT = "pinv"
DEFAULT_COLOUR_FIX = "none"
