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
