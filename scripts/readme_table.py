"""The README's Table 1 rows (PSNR-RGB / PSNR-Y / SSIM-RGB / LPIPS-Alex per dataset) from a
table1.csv and the model's prf.json, so a release updates the README from the files it ships.

    python scripts/readme_table.py benchmarks/results/table1.csv diffsr_jax/assets/default_model/prf.json
"""

import argparse
import csv
import json

DATASETS = ("CSet5", "CSet14", "CUrban100")
METHODS = (("bicubic", "Bicubic"), ("lanczos", "Lanczos"), ("fsrcnn", "FSRCNN"),
           ("diffsr", "Diff-SR, plain (paper; auto t = {t})"),
           ("diffsr-cons-colour", "**Diff-SR, default** (consistency + wavelet, t = {t})"))


def fmt_scale(s: float) -> str:
    return f"{s:g}×"


def rows(table_csv: str, prf_json: str) -> list[str]:
    with open(table_csv) as f:
        table = {(r["dataset"], float(r["scale"]), r["method"]): r for r in csv.DictReader(f)}
    with open(prf_json) as f:
        prf = json.load(f)
    t_plain = dict(zip(prf["scales"], prf["t"]))
    t_cons = dict(zip(prf["modes"]["consistent"]["scales"], prf["modes"]["consistent"]["t"]))
    scales = sorted({s for (_, s, _) in table})
    out = []
    for s in scales:
        for method, label in METHODS:
            cells = []
            for ds in DATASETS:
                r = next((v for (d, sc, m), v in table.items() if d.startswith(ds) and sc == s and m == method), None)
                cells.append("–" if r is None else " / ".join(
                    [f"{float(r['psnr_rgb']):.2f}", f"{float(r['psnr_y']):.2f}", f"{float(r['ssim_rgb']):.3f}",
                     f"{float(r['lpips_alex']):.3f}"]))
            if all(c == "–" for c in cells):
                continue
            t = (t_cons if method == "diffsr-cons-colour" else t_plain).get(s, "?")
            out.append(f"| {fmt_scale(s)} | {label.format(t=t)} | " + " | ".join(cells) + " |")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table_csv")
    ap.add_argument("prf_json")
    args = ap.parse_args()
    print("\n".join(rows(args.table_csv, args.prf_json)))


if __name__ == "__main__":
    main()
