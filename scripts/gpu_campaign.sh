#!/usr/bin/env bash
# Runs ON the device machine: the `run` tool's command is `bash scripts/gpu_campaign.sh [args]`
# with carry [".gpu_inputs"] (scripts/README.md). Extra args go to scripts/gpu_train.py
# (default --minutes 9: the whole script; give the run timeout_s 600). It stops at once if JAX
# does not see a GPU (EXPECT_PLATFORM=cpu for a dry run on a CPU machine).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
{ date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; nproc; } | tee "$OUT/log"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .gpu_inputs/whl/*.whl 2>&1 | tee -a "$OUT/log"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "wheel install failed" | tee -a "$OUT/log"; exit 3; }
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
PYTHONUNBUFFERED=1 "$PY" scripts/gpu_train.py --out "$OUT" --expect-platform "${EXPECT_PLATFORM:-gpu}" "$@" 2>&1 | tee -a "$OUT/log"
exit "${PIPESTATUS[0]}"
