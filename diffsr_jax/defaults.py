"""Inference defaults and option names, importable without JAX (the CLI's --help stays instant).

The values are measured choices; see the model card (assets/default_model/README.md).
"""

DEFAULT_STEPS = 2               # DDIM steps from t: measured best-or-within-0.1 dB/0.005 LPIPS (consistency_steps*.md)
LIFTS = ("pinv", "bicubic")     # see diffsr_jax.consistency
COLOUR_FIXES = ("none", "wavelet", "adain")
DEFAULT_CONSISTENCY = 1.0       # λ of data consistency (0 = plain Diff-SR): on, measured better everywhere
DEFAULT_LIFT = "pinv"
DEFAULT_COLOUR_FIX = "wavelet"  # never hurt PSNR by more than 0.01 dB in consistency_quality
SELF_ENSEMBLE_SIZES = (1, 2, 4, 8)  # flips/rotations averaged per ε evaluation (diffsr_jax.ensemble)
DEFAULT_SELF_ENSEMBLE = 1       # off: n× the network cost; see the model card's "Self-ensemble"
