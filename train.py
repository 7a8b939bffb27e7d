#!/usr/bin/env python
"""Train a Diff-SR denoiser. See `python train.py --help` and diffsr_jax/train_cli.py."""

from diffsr_jax.train_cli import main

if __name__ == "__main__":
    main()
