"""Inference defaults and option names, importable without JAX (the CLI's --help stays instant).

The values are measured choices; see the model card (assets/default_model/README.md).
"""

# DDIM steps from t for a noise table that does not record its own (inference runs the count a
# table was calibrated with: noise_table.ModeTable.steps), and calibrate.py's count for a
# checkpoint without a table.
DEFAULT_STEPS = 2
# Reverse samplers by name (diffsr_jax.samplers.SAMPLERS): DDIM / DDPM on the evenly spaced ladder
# of steps from t to 0, or on the quadratic one ("-quad"). The default is the one the model's noise
# table was calibrated with (calibration.sampler: noise_table.ModeTable.sampler), else DEFAULT_SAMPLER.
SAMPLERS = ("ddim", "ddim-quad", "ddpm", "ddpm-quad")
DEFAULT_SAMPLER = "ddim"
EVALUATION_SETS = ("CSet5", "CSet14", "CUrban100")  # never train, calibrate or choose a default on these
LIFTS = ("pinv", "bicubic")     # see diffsr_jax.consistency
COLOUR_FIXES = ("none", "wavelet", "adain")
DEFAULT_CONSISTENCY = 1.0       # λ of data consistency (0 = plain Diff-SR): on, measured better everywhere
DEFAULT_LIFT = "pinv"
DEFAULT_COLOUR_FIX = "wavelet"  # see benchmarks/results/consistency_quality.md
SELF_ENSEMBLE_SIZES = (1, 2, 4, 8)  # flips/rotations averaged per ε evaluation (diffsr_jax.ensemble)
DEFAULT_SELF_ENSEMBLE = 1       # off: n× the network cost (benchmarks/results/self_ensemble.md)
