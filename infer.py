#!/usr/bin/env python
"""Upscale images with Diff-SR. See `python infer.py --help` and diffsr_jax/cli.py."""

import sys

from diffsr_jax.cli import main

if __name__ == "__main__":
    sys.exit(main())
