"""Compare two Table 1 CSVs (evaluate.py's output) row by row: what a candidate model changes.

    python benchmarks/compare_tables.py benchmarks/results/table1.csv runs/cand/table1/table1.csv
    python benchmarks/compare_tables.py OLD.csv NEW.csv --methods diffsr-cons-colour --metrics psnr_rgb

Prints, for every (method, scale, dataset) present in both files, OLD → NEW and the difference for
each metric, then per metric how many rows got better / equal / worse (at the printed precision;
PSNR and SSIM higher is better, LPIPS and the frequency errors lower).

``--paired`` also reads each table's per-image file (evaluate.py writes ``X_per_image.csv`` beside
``X.csv``) and gives every difference its paired standard error over the row's images and
z = difference / SE: a row with 5 images moves by noise that a 20-image row does not, and the same
image in both tables cancels most of the image-to-image spread. Rows with |z| ≥ 2 are counted as
measurably better or worse.
"""

import argparse
import collections
import csv
import math
import os
import sys

HIGHER_IS_BETTER = {"psnr_rgb": True, "ssim_rgb": True, "psnr_y": True, "ssim_y": True,
                    "lpips_alex": False, "lpips_vgg": False, "lf_err": False, "hf_err": False}
DECIMALS = {"psnr_rgb": 2, "psnr_y": 2}  # the rest: 4, as Table 1 prints them
Z_MEASURABLE = 2.0   # |paired difference| ≥ 2 standard errors: counted as a measured change


def read_rows(path: str) -> dict:
    with open(path, newline="") as f:
        return {(r["method"], float(r["scale"]), r["dataset"]): r for r in csv.DictReader(f)}


def per_image_path(table_csv: str) -> str:
    root, ext = os.path.splitext(table_csv)
    return f"{root}_per_image{ext}"


def read_per_image(path: str) -> dict:
    """(method, scale, dataset) → {image: row} from evaluate.py's per-image CSV."""
    out = collections.defaultdict(dict)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            out[(r["method"], float(r["scale"]), r["dataset"])][r["image"]] = r
    return out


def paired_difference(old_images: dict, new_images: dict, metric: str):
    """(mean of NEW − OLD over the images both have, its standard error, n); SE is NaN below 2
    images or with a NaN value."""
    diffs = [float(new_images[i][metric]) - float(old_images[i][metric]) for i in sorted(old_images.keys()
                                                                                      & new_images.keys())]
    n = len(diffs)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(diffs) / n
    if n < 2:
        return mean, math.nan, n
    se = math.sqrt(sum((x - mean) ** 2 for x in diffs) / (n - 1) / n)
    return mean, se, n


def compare(old: dict, new: dict, methods, metrics, old_images=None, new_images=None):
    """→ (lines, counts, measured): counts[metric] = [better, equal, worse] at the printed precision;
    with both per-image tables, measured[metric] = [better, worse] by |z| ≥ Z_MEASURABLE (else {})."""
    lines, counts = [], {m: [0, 0, 0] for m in metrics}
    paired = old_images is not None and new_images is not None
    measured = {m: [0, 0] for m in metrics} if paired else {}
    keys = sorted(k for k in old.keys() & new.keys() if not methods or k[0] in methods)
    for key in keys:
        parts = []
        for m in metrics:
            a, b = float(old[key][m]), float(new[key][m])
            if math.isnan(a) or math.isnan(b):
                continue
            d = DECIMALS.get(m, 4)
            diff = round(b, d) - round(a, d)
            sign = diff if HIGHER_IS_BETTER[m] else -diff
            counts[m][0 if sign > 1e-12 else 1 if abs(sign) <= 1e-12 else 2] += 1
            part = f"{m} {a:.{d}f} → {b:.{d}f} ({diff:+.{d}f}"
            if paired:
                mean, se, n = paired_difference(old_images.get(key, {}), new_images.get(key, {}), m)
                z = mean / se if se > 0 else math.nan
                part += f" ± {se:.{d + 1}f}, z = {z:+.1f}, {n} images"
                if abs(z) >= Z_MEASURABLE:
                    measured[m][0 if (z > 0) == HIGHER_IS_BETTER[m] else 1] += 1
            parts.append(part + ")")
        scale = f"{key[1]:g}×"
        lines.append(f"{key[0]:<20} {scale:<5} {key[2]:<16} " + "; ".join(parts))
    return lines, counts, measured


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--methods", nargs="+", default=None, help="default: every method in both files")
    p.add_argument("--metrics", nargs="+", default=["psnr_rgb", "lpips_alex"], choices=sorted(HIGHER_IS_BETTER))
    p.add_argument("--paired", action="store_true",
                   help="also read OLD_per_image.csv and NEW_per_image.csv: paired standard errors and z")
    args = p.parse_args(argv)
    try:
        old, new = read_rows(args.old), read_rows(args.new)
        old_images = new_images = None
        if args.paired:
            old_images, new_images = (read_per_image(per_image_path(x)) for x in (args.old, args.new))
    except (OSError, KeyError, ValueError) as e:
        print(f"error: {e!r}", file=sys.stderr)
        return 2
    lines, counts, measured = compare(old, new, args.methods, args.metrics, old_images, new_images)
    if not lines:
        print("error: no (method, scale, dataset) row is in both files", file=sys.stderr)
        return 2
    print("\n".join(lines))
    for m, (b, e, w) in counts.items():
        line = f"{m}: better in {b}, equal in {e}, worse in {w} of {b + e + w}"
        if m in measured:
            line += (f"; measurably (|z| ≥ {Z_MEASURABLE:g}) better in {measured[m][0]}, "
                     f"worse in {measured[m][1]}")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
