"""The bundled example's 2× output, pinned: a change of behaviour (numerics, defaults, the noise
table, the consistency operator) shows up here first.

``fixtures/pinned_example_2x.png`` is the float output of ``upscale_array`` on
``examples/bsd_108005_small.png`` at 2× with the bundled model and every default (one device),
stored as 16-bit PNG (quantisation error ≤ 0.5/65535 ≈ 7.6e-6). When a change of outputs is
intended, regenerate it with the snippet at the end of this file and say so in CHANGELOG.md.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from diffsr_jax import api, image_io

EXAMPLE = os.path.join(REPO, "examples", "bsd_108005_small.png")
FIXTURE = os.path.join(REPO, "tests", "fixtures", "pinned_example_2x.png")
QUANTISATION = 0.5 / 65535


@pytest.fixture(scope="module")
def reference():
    return image_io.read_image(FIXTURE).rgb


def test_api_output_matches_the_pinned_floats(reference):
    img = image_io.read_image(EXAMPLE).rgb
    out, info = api.upscale_array(img, reference.shape[:2], model=api.load_model())
    assert (info["t"], info["steps"], info["consistency"], info["colour_fix"]) == (75, 5, 1.0, "wavelet")
    # Float rounding of XLA's compiled code (optimisation level, device count) moves outputs by
    # ~1e-7; anything that changes behaviour moves them by orders of magnitude more.
    assert float(np.abs(out - reference).max()) <= QUANTISATION + 2e-6


def test_infer_py_writes_the_pinned_image(reference, tmp_path):
    out = tmp_path / "out.png"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "infer.py"), EXAMPLE, "--target", "2x", "-o", str(out),
                           "--cpu-devices", "1", "--quiet"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    written = image_io.read_image(str(out))
    assert written.bit_depth == 8 and written.rgb.shape == reference.shape
    # 8-bit rounding of the pinned floats: equal except where a value sits on a rounding boundary.
    diff = np.abs(np.round(written.rgb * 255) - np.round(reference * 255))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


# To regenerate the fixture (one device, from the repository root):
#   XLA_FLAGS=--xla_force_host_platform_device_count=1 python -c "
#   import numpy as np; from diffsr_jax import api, image_io
#   img = image_io.read_image('examples/bsd_108005_small.png')
#   out, _ = api.upscale_array(img.rgb, (214, 320), model=api.load_model())
#   q = np.round(np.clip(out, 0, 1) * 65535).astype(np.uint16)
#   open('tests/fixtures/pinned_example_2x.png', 'wb').write(image_io.encode_png16(q))"
