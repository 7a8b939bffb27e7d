#!/usr/bin/env python
"""Train (or resume) a Diff-SR denoiser; all logic lives in diffsr_jax/train_cli.py.

    python train.py --config configs/cpu.py --workdir runs/cpu [--config.train.num_steps=N] [--export_to DIR]

Any config field can be overridden: --config.train.learning_rate=1e-4, --config.data.crop_size=96.
"""

from diffsr_jax.train_cli import main

if __name__ == "__main__":
    main()
