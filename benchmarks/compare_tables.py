"""Compare two Table 1 CSVs (evaluate.py's output) row by row: what a candidate model changes.

    python benchmarks/compare_tables.py benchmarks/results/table1.csv runs/cand/table1/table1.csv
    python benchmarks/compare_tables.py OLD.csv NEW.csv --methods diffsr-cons-colour --metrics psnr_rgb

Prints, for every (method, scale, dataset) present in both files, OLD → NEW and the difference for
each metric, then per metric how many rows got better / equal / worse (at the printed precision;
PSNR and SSIM higher is better, LPIPS and the frequency errors lower).
"""

import argparse
import csv
import math
import sys

HIGHER_IS_BETTER = {"psnr_rgb": True, "ssim_rgb": True, "psnr_y": True, "ssim_y": True,
                    "lpips_alex": False, "lpips_vgg": False, "lf_err": False, "hf_err": False}
DECIMALS = {"psnr_rgb": 2, "psnr_y": 2}  # the rest: 4, as Table 1 prints them


def read_rows(path: str) -> dict:
    with open(path, newline="") as f:
        return {(r["method"], float(r["scale"]), r["dataset"]): r for r in csv.DictReader(f)}


def compare(old: dict, new: dict, methods, metrics):
    """→ (lines, counts): counts[metric] = [better, equal, worse]."""
    lines, counts = [], {m: [0, 0, 0] for m in metrics}
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
            parts.append(f"{m} {a:.{d}f} → {b:.{d}f} ({diff:+.{d}f})")
        scale = f"{key[1]:g}×"
        lines.append(f"{key[0]:<20} {scale:<5} {key[2]:<16} " + "; ".join(parts))
    return lines, counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--methods", nargs="+", default=None, help="default: every method in both files")
    p.add_argument("--metrics", nargs="+", default=["psnr_rgb", "lpips_alex"], choices=sorted(HIGHER_IS_BETTER))
    args = p.parse_args(argv)
    try:
        old, new = read_rows(args.old), read_rows(args.new)
    except (OSError, KeyError, ValueError) as e:
        print(f"error: {e!r}", file=sys.stderr)
        return 2
    lines, counts = compare(old, new, args.methods, args.metrics)
    if not lines:
        print("error: no (method, scale, dataset) row is in both files", file=sys.stderr)
        return 2
    print("\n".join(lines))
    for m, (b, e, w) in counts.items():
        print(f"{m}: better in {b}, equal in {e}, worse in {w} of {b + e + w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
