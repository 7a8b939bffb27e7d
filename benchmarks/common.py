"""Shared helpers of the benchmark scripts: thin aliases of the library's evaluation harness.

The protocol, data loading, metrics and baselines live in ``diffsr_jax.evaluation`` and
``diffsr_jax.metrics`` (the Table 1 harness behind ``evaluate.py``); this module only keeps the
short names the benchmark scripts use, so there is one implementation of each.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from diffsr_jax import evaluation, metrics, protocols  # noqa: E402

DATA_ROOT = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data")
EVAL_SIZE = protocols.EVAL_SIZE

paper_protocol = protocols.paper_protocol
psnr = metrics.psnr    # RGB, data range 1
ssim = metrics.ssim    # RGB, dm-pix


def lr_size(scale: float, size: int = EVAL_SIZE) -> int:
    return protocols.lr_size((size, size), scale)[0]


def eval_crop(rgb01, size: int = EVAL_SIZE):
    """Centre crop → size² PIL bicubic, on 8-bit RGB → float [0, 1] (the protocol's HR)."""
    return protocols.paper_protocol(rgb01, 2.0, size)[0]


def load_eval_set(name_or_folder: str, limit: Optional[int] = None):
    return evaluation.load_dataset(name_or_folder, data_root=DATA_ROOT, limit=limit)


def Lpips(net: str = "alexnet"):
    return metrics.Lpips({"alexnet": "alex", "vgg16": "vgg"}.get(net, net))


def lanczos(lr, out_hw):
    return protocols.pil_resize_float(lr, out_hw, "lanczos")


def machine_load_text() -> str:
    """What else the machine was doing while a benchmark ran: the 1-minute load average against
    the CPU count (a load near or above the count means the timings were shared with other work)."""
    try:
        load1 = os.getloadavg()[0]
    except (AttributeError, OSError):
        return "load average unavailable"
    cpus = os.cpu_count() or 1
    busy = " (other work was running: timings are shared)" if load1 > 0.5 else ""
    return f"1-minute load average {load1:.2f} on {cpus} cpus at the start{busy}"


def write_report(text: str, path: str) -> None:
    """Prints a benchmark's text report and writes it to ``path`` (folders made as needed)."""
    text = text if text.endswith("\n") else text + "\n"
    print(text, end="")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
