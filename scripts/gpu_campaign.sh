#!/usr/bin/env bash
# Runs ON the machine with a GPU, in a copy of the working tree plus .gpu_inputs/ (made by
# scripts/pack_gpu_inputs.sh; steps in scripts/README.md): `bash scripts/gpu_campaign.sh [args]`.
# Installs the packed wheel into /tmp/site, then runs scripts/gpu_train.py with the extra args
# (default --minutes 9: the whole script's wall-clock limit). Outputs and the console log go to
# $OUT (default ./gpu_out), which is copied back afterwards. It stops at once if JAX does not see
# a GPU (EXPECT_PLATFORM=cpu for a dry run on a CPU machine).
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
