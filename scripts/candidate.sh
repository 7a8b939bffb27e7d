#!/usr/bin/env bash
# Measure a training run's newest EMA params as a release candidate, the way the bundled model was
# measured (model card, "Releasing a checkpoint"): export without stopping the run, the denoiser
# yardstick, its own calibration (both modes; psnr-floor pick against the bundled prf.json, so it
# gives back none of the bundled table's PSNR on the calibration photos), and Table 1's Diff-SR rows
# with that calibration.
#
#   scripts/candidate.sh WORKDIR OUT [CONFIG]      # e.g. scripts/candidate.sh runs/cpu2 runs/cand_4000
#
# OUT must not exist. Everything lands in OUT: params/ + model.json (the export), prf.json (the
# calibration), denoise_quality.{md,jsonl}, table1/. The calibration's time grows roughly in
# proportion to its t grid's points and DDIM steps; a training run on the same cores slows both
# (pause it meanwhile: `kill -STOP PID`, then `kill -CONT PID`).
# UPTO=yardstick or UPTO=calibration stops after that stage (default: all three). STEPS=N calibrates
# for N DDIM steps (default: the bundled table's calibration.steps); T_GRID="0.01 0.025 ..." on that
# grid of t/T (default: the bundled table's calibration.t_grid, so a candidate is swept where the
# bundled model was).
set -euo pipefail
if [ $# -lt 2 ]; then
  # the header comment, whatever its length (a fixed line range would break when it changes)
  awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2
  exit 2
fi
workdir=$(realpath -m "$1") out=$(realpath -m "$2") config=$(realpath -m "${3:-configs/cpu.py}")
py=${PYTHON:-python}
cd "$(dirname "$0")/.."   # the repo root: train.py's configs import from it
upto=${UPTO:-table1}
case $upto in yardstick|calibration|table1) ;; *) echo "error: UPTO=$upto (yardstick, calibration or table1)" >&2; exit 2;; esac
if [ -e "$out" ]; then echo "error: $out exists; pick a new folder" >&2; exit 2; fi
"$py" train.py --config "$config" --workdir "$workdir" --export_to "$out" --export_only --progress=false
# --skip-sr: the export has no noise table yet (its auto t would be a fallback); Table 1 below
# measures Diff-SR with the candidate's own calibration instead.
"$py" benchmarks/denoise_quality.py --checkpoint "$out" --skip-sr --out "$out/denoise_quality.jsonl" \
  | tee "$out/denoise_quality.md"
bundled=diffsr_jax/assets/default_model/prf.json
steps=${STEPS:-$("$py" -c "import json; print(json.load(open('$bundled'))['calibration']['steps'])")}
if [ "$upto" != yardstick ]; then
  grid=${T_GRID:-$("$py" -c "import json; print(*[f for f in json.load(open('$bundled'))['calibration']['t_grid'] if f > 0])")}
  # shellcheck disable=SC2086  # the grid is a list of numbers, split on purpose
  floor=(--steps "$steps" --t-grid $grid --pick psnr-floor --psnr-floor-from "$bundled")
  "$py" calibrate.py --checkpoint "$out" "${floor[@]}"
  "$py" calibrate.py --checkpoint "$out" "${floor[@]}" --consistency 1
fi
if [ "$upto" = table1 ]; then
  "$py" evaluate.py --checkpoint "$out" --lpips-nets alex --ablations none \
    --methods diffsr diffsr-cons-colour --out-dir "$out/table1"
fi
echo "candidate in $out: compare denoise_quality.md with the model card's quality table, and Table 1 with"
echo "  $py benchmarks/compare_tables.py benchmarks/results/table1.csv $out/table1/table1.csv --paired"
