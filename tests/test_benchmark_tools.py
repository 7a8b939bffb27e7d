"""The benchmark tools' own logic: unet_speed's measured fp32 peak (fma_peak.c), step_breakdown's
ablation, steps_quality's pick."""

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


def test_steps_quality_picks_the_fewest_steps_within_tolerance_everywhere():
    import steps_quality

    best = {2: [0.065, 0.145, 0.244], 5: [0.057, 0.119, 0.207], 10: [0.054, 0.110, 0.194], 20: [0.054, 0.111, 0.192]}
    assert steps_quality.fewest_steps_within(best, 0.01) == 10   # 5 is 0.015 off at the last scale
    assert steps_quality.fewest_steps_within(best, 0.02) == 5
    assert steps_quality.fewest_steps_within(best, 0.0) == 20    # none within 0: the smallest worst-scale excess
    assert steps_quality.fewest_steps_within(best, 0.1) == 2


def test_steps_quality_refuses_evaluation_sets(tmp_path):
    import steps_quality

    with pytest.raises(SystemExit) as e:
        steps_quality.main(["--data", str(tmp_path / "CSet14"), "--out", str(tmp_path / "x.md")])
    assert e.value.code == 2 and not (tmp_path / "x.md").exists()
