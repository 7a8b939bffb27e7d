"""Why the paper's PSNRs cannot be compared: its bicubic rows under every common PSNR convention.

    python benchmarks/psnr_scale.py            # → benchmarks/results/psnr_scale.md

Bicubic is the one method whose output does not depend on a model, so its PSNR pins down the
computation. For Set5/Set14/Urban100[1-20] at 2× and 4× this prints bicubic's mean PSNR under:
RGB and Y (BT.601) on the paper's 256² protocol, with and without a border shave, and the
SR literature's standard (native resolution, Y, shave = scale), next to the paper's Table 1
bicubic values; then fits paper ≈ a·ours + b over the six cells to show what kind of gap it is.
"""

from __future__ import annotations

import os
import sys

import numpy as np

import common  # noqa: F401  (puts the repo on sys.path)
from diffsr_jax import evaluation as ev, metrics as M

PAPER_BICUBIC = {("CSet5", 4): 32.214, ("CSet14", 4): 30.956, ("CUrban100", 4): 30.171,
                 ("CSet5", 2): 35.044, ("CSet14", 2): 33.064, ("CUrban100", 2): 31.758}
VARIANTS = ("256² RGB", "256² Y", "256² Y shave s", "native Y shave s")


def bicubic_psnrs(rgb, s):
    hr, lr = ev.paper_protocol(rgb, s)
    out = ev.pil_resize_float(lr, hr.shape[:2], "bicubic")
    crop = rgb[:rgb.shape[0] // s * s, :rgb.shape[1] // s * s]  # whole multiples, as SR test sets are cut
    hrn, lrn = ev.native_protocol(crop, s)
    outn = ev.pil_resize_float(lrn, hrn.shape[:2], "bicubic")
    return (M.psnr(out, hr), M.psnr(out, hr, channel="y"), M.psnr(out, hr, channel="y", crop_border=s),
            M.psnr(outn, hrn, channel="y", crop_border=s))


def main():
    rows = []
    for (ds, s), paper in PAPER_BICUBIC.items():
        imgs = ev.load_dataset(ds, data_root=common.DATA_ROOT)
        vals = np.mean([bicubic_psnrs(rgb, s) for _, rgb in imgs], axis=0)
        rows.append((ds, s, len(imgs), paper, vals))
    lines = ["# Bicubic PSNR under common conventions vs the paper's Table 1", "",
             f"`python {' '.join(sys.argv)}`; PSNR in dB, data range 1, mean over images.", "",
             "| dataset | scale | n | paper | " + " | ".join(VARIANTS) + " | paper − 256² RGB | paper − 256² Y |",
             "|---|---:|---:|---:|" + "---:|" * (len(VARIANTS) + 2)]
    for ds, s, n, paper, v in rows:
        lines.append(f"| {ds} | {s}× | {n} | {paper:.2f} | " + " | ".join(f"{x:.2f}" for x in v)
                     + f" | {paper - v[0]:+.2f} | {paper - v[1]:+.2f} |")
    ours = np.array([r[4][0] for r in rows])
    paper = np.array([r[3] for r in rows])
    a, b = np.polyfit(ours, paper, 1)
    resid = paper - (a * ours + b)
    lines += ["", f"Least-squares fit over the six cells: paper ≈ {a:.2f} × (256² RGB PSNR) + {b:.1f} dB "
              f"(max residual {np.abs(resid).max():.2f} dB). A convention (channel, border, peak value) would "
              "shift every cell by about the same number of dB, i.e. a slope of 1; the paper's values move "
              "about half as much as a standard PSNR between scales and datasets."]
    out = os.path.join(common.REPO_ROOT, "benchmarks", "results", "psnr_scale.md")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
