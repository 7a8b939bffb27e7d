"""Inference defaults and option names, importable without JAX (the CLI's --help stays instant).

The values are measured choices; see the model card (assets/default_model/README.md).
"""

# DDIM steps from t that calibrate.py calibrates with (and so the count a table carries, which
# api.default_steps runs), and the fallback for tables that do not record theirs. More steps trade
# PSNR for LPIPS with today's model (benchmarks/results/steps_quality.md; model card "Step 28 600
# and the sampler's step count"): 10 steps won LPIPS in 6 of Table 1's 9 default-mode columns but lost PSNR in 6, so the
# shipped pair stays at 2.
DEFAULT_STEPS = 2
EVALUATION_SETS = ("CSet5", "CSet14", "CUrban100")  # never train, calibrate or choose a default on these
LIFTS = ("pinv", "bicubic")     # see diffsr_jax.consistency
COLOUR_FIXES = ("none", "wavelet", "adain")
DEFAULT_CONSISTENCY = 1.0       # λ of data consistency (0 = plain Diff-SR): on, measured better everywhere
DEFAULT_LIFT = "pinv"
DEFAULT_COLOUR_FIX = "wavelet"  # never hurt PSNR by more than 0.01 dB in consistency_quality
SELF_ENSEMBLE_SIZES = (1, 2, 4, 8)  # flips/rotations averaged per ε evaluation (diffsr_jax.ensemble)
DEFAULT_SELF_ENSEMBLE = 1       # off: n× the network cost; see the model card's "Self-ensemble"
