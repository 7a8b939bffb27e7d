"""benchmarks/unet_speed.py's measured fp32 peak (fma_peak.c), the denominator of its ratios."""

import os
import shutil
import sys

import pytest

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler")
def test_fma_peak_builds_runs_and_reports_all_cores():
    import unet_speed

    gflops, how = unet_speed.measure_fma_peak()
    assert gflops is not None, how
    assert gflops > 1.0  # at least one FMA per ns across the cores: it ran, and was parsed
    assert f"{os.cpu_count()} threads" in how


def test_step_breakdown_ablation_swaps_and_restores_flax_modules():
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import step_breakdown

    gn, silu = nn.GroupNorm, nn.silu
    x = jnp.arange(16.0).reshape(1, 2, 2, 4)
    with step_breakdown._ablated(groupnorm=True, silu=True):
        assert nn.GroupNorm is not gn and nn.silu is not silu
        ident = nn.GroupNorm(num_groups=2)
        assert (ident.apply(ident.init(jax.random.key(0), x), x) == x).all()
        assert (nn.silu(x) == x).all()
    assert nn.GroupNorm is gn and nn.silu is silu
    try:  # restored on an exception too: a failed compile must not leave Flax patched
        with step_breakdown._ablated(groupnorm=True, silu=False):
            raise RuntimeError("compile failed")
    except RuntimeError:
        pass
    assert nn.GroupNorm is gn and nn.silu is silu
