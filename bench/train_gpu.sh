#!/usr/bin/env bash
# The GPU recipe: on one lent GPU, train the rate point(s) we ship in about 10 minutes
# (bf16 autocast, batch 64 of 256 px crops, training photos preloaded onto the GPU,
# a checkpoint every minute), then write small fp16 safetensors.
#
#   bash bench/train_gpu.sh                      # on the GPU machine (see DESIGN.md, "Training")
#   bash bench/train_gpu.sh --preset tiny --device cpu   # smoke run on a CPU (tests do this)
#
# Extra arguments go to every `codec train` call (later flags win). Environment:
#   DATA     training image folders (default: gpu_data, filled from ../shared/data by
#            `make gpu-data`; only the checkout travels to the GPU machine)
#   EVAL     evaluation folder (default: gpu_data/kodak; evaluation only)
#   OUT      output folder (default: runs/gpu); MINUTES per rate point (default 8)
#   POINTS   rate points "M:K ..." at stride 16 (default "8:256")
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DATA=${DATA:-gpu_data/train}
EVAL=${EVAL:-gpu_data/kodak}
OUT=${OUT:-runs/gpu}
MINUTES=${MINUTES:-8}
POINTS=${POINTS:-"8:256"}
for point in $POINTS; do
  M=${point%%:*}; K=${point##*:}
  name="pqvae-s16-m${M}-k${K}"
  cmd=(-m codec train --preset gpu --out "$OUT/$name" --data "$DATA" --eval-data "$EVAL"
       --M "$M" --K "$K" --max-minutes "$MINUTES" "$@")
  echo "== $name: $PY ${cmd[*]}"
  "$PY" "${cmd[@]}"
  "$PY" -m codec export "$OUT/$name/checkpoint" -o "$OUT/$name.safetensors" --command-line "codec ${cmd[*]:2}"
done
