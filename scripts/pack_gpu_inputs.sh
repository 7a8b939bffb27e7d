#!/usr/bin/env bash
# Run HERE (this machine) before copying the working tree plus .gpu_inputs to the GPU machine to
# run scripts/gpu_campaign.sh there; see scripts/README.md.
#
#   scripts/pack_gpu_inputs.sh              # warm-start from diffsr_jax/assets/default_model
#   scripts/pack_gpu_inputs.sh runs/cpu     # ... from that workdir's newest checkpoint (EMA params;
#                                           # `cpu` = runs/cpu; its config: CONFIG, default configs/cpu.py)
#
# Writes .gpu_inputs/ (ignored through .git/info/exclude, so copy it along with the working tree):
#   train_images.npz   configs/cpu.py's training photos (CBSD68 + CSun_Hays80; never CSet5/14/CUrban100)
#   init_model/        flat model to continue from: model.json + params.msgpack
#   whl/               ml_collections wheel (the GPU machine has absl-py and PyYAML, its only needs)
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

# (b) wheels for what the GPU machine lacks (pure Python: any platform tag matches)
rm -rf "$DEST/whl"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST/whl" \
  "ml_collections==$ML_COLLECTIONS_VERSION"
for w in "$DEST"/whl/*.whl; do
  echo "$(basename "$w") needs: $(unzip -p "$w" '*/METADATA' | grep ^Requires-Dist | grep -v extra | cut -d' ' -f2 | tr '\n' ' ')(the GPU machine has absl-py, pyyaml)"
done

# (c) the model to continue from, flat (independent of either machine's Orbax version)
if [ $# -ge 1 ]; then
  wd=$1
  [ -d "$wd" ] || wd=runs/$1   # `cpu` means runs/cpu
  "$PY" scripts/gpu_inputs.py flat-model --workdir "$wd" --config "$CONFIG" --out "$DEST/init_model" --overwrite
else
  "$PY" scripts/gpu_inputs.py flat-model --model diffsr_jax/assets/default_model --out "$DEST/init_model" --overwrite
fi

# What is copied to the GPU machine: tracked + untracked-not-ignored files + .gpu_inputs. It is
# kept under ~60 MiB (refused from 62 MiB on) so that the copy stays small.
tree=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s+=$1} END {print s+0}')
carried=$(du -sb "$DEST" | cut -f1)
total=$(( (tree + carried) / 1048576 ))
echo "to copy: working tree $((tree / 1048576)) MiB + $DEST $((carried / 1048576)) MiB = $total MiB (kept under 64 MiB)"
if [ "$total" -ge 62 ]; then echo "error: too close to 64 MiB; keep the copy to the GPU machine small" >&2; exit 1; fi
