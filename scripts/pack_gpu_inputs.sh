#!/usr/bin/env bash
# Run HERE (the CPU machine) before a device `run` of scripts/gpu_campaign.sh; see scripts/README.md.
#
#   scripts/pack_gpu_inputs.sh              # warm-start from diffsr_jax/assets/default_model
#   scripts/pack_gpu_inputs.sh runs/cpu     # ... from that workdir's newest checkpoint (EMA params;
#                                           # `cpu` = runs/cpu; its config: CONFIG, default configs/cpu.py)
#
# Writes .gpu_inputs/ (ignored through .git/info/exclude; name it in the run's `carry`):
#   train_images.npz   configs/cpu.py's training photos (CBSD68 + CSun_Hays80; never CSet5/14/CUrban100)
#   init_model/        flat model to continue from: model.json + params.msgpack
#   whl/               ml_collections wheel (the device has absl-py and PyYAML, its only needs)
# Env: PYTHON (default /work/venv/bin/python, else python3), CONFIG (default configs/cpu.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-/work/venv/bin/python}
[ -x "$PY" ] || PY=python3
CONFIG=${CONFIG:-configs/cpu.py}
DEST=.gpu_inputs
ML_COLLECTIONS_VERSION=${ML_COLLECTIONS_VERSION:-1.1.0}

exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF "/$DEST/" "$exclude" 2>/dev/null || echo "/$DEST/" >> "$exclude"
mkdir -p "$DEST"

# (a) training photos -> one npz (decoded arrays if they fit in 40 MiB, else the original files)
"$PY" scripts/gpu_inputs.py pack-images --config "$CONFIG" --out "$DEST/train_images.npz" --max-mib 40

# (b) wheels for what the device lacks (pure Python: any platform tag matches)
rm -rf "$DEST/whl"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST/whl" \
  "ml_collections==$ML_COLLECTIONS_VERSION"
for w in "$DEST"/whl/*.whl; do
  echo "$(basename "$w") needs: $(unzip -p "$w" '*/METADATA' | grep ^Requires-Dist | grep -v extra | cut -d' ' -f2 | tr '\n' ' ')(device has absl-py, pyyaml)"
done

# (c) the model to continue from, flat (independent of either machine's Orbax version)
if [ $# -ge 1 ]; then
  wd=$1
  [ -d "$wd" ] || wd=runs/$1   # `cpu` means runs/cpu
  "$PY" scripts/gpu_inputs.py flat-model --workdir "$wd" --config "$CONFIG" --out "$DEST/init_model" --overwrite
else
  "$PY" scripts/gpu_inputs.py flat-model --model diffsr_jax/assets/default_model --out "$DEST/init_model" --overwrite
fi

# What travels: tracked + untracked-not-ignored files + the carried .gpu_inputs (64 MiB limit).
tree=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s+=$1} END {print s+0}')
carried=$(du -sb "$DEST" | cut -f1)
total=$(( (tree + carried) / 1048576 ))
echo "travels: working tree $((tree / 1048576)) MiB + $DEST $((carried / 1048576)) MiB = $total MiB (limit 64)"
if [ "$total" -ge 62 ]; then echo "error: too close to the 64 MiB limit" >&2; exit 1; fi
