#!/usr/bin/env bash
# The GPU recipe: on one lent GPU, continue the flagship (the nested model of every rate) from
# the committed bundle for a few minutes (bf16 autocast, batch 32 of 256 px crops, training
# photos preloaded onto the GPU, a checkpoint every minute), fine-tune its entropy model on the
# new tokens, and write one fp16 codec bundle.
#
#   bash bench/train_gpu.sh                      # on the GPU machine (see DESIGN.md, "Training")
#   RECIPE=tiny INIT= AE_ARGS="--device cpu" EM_ARGS="--device cpu" bash bench/train_gpu.sh
#                                                 # smoke run on a CPU (tests do this)
#
# Environment:
#   DATA     training image folders (default: gpu_data/train, filled from ../shared/data by
#            `make gpu-data`; only the checkout travels to the GPU machine)
#   EVAL     held-out evaluation folder (default: gpu_data/held_out, BSDS500 test)
#   OUT      output folder (default: runs/gpu); the bundle is OUT/flagship.safetensors
#   INIT     bundle to continue from (default: codec/weights/default.safetensors, the flagship; empty: fresh)
#   AE_MINUTES, EM_MINUTES  minutes of each stage (default 7 and 2)
#   RECIPE   the recipe of both stages (default: flagship, codec/train/recipes/flagship.json)
#   AE_ARGS, EM_ARGS  extra flags of each stage's `codec train` (later flags win); e.g.
#            AE_ARGS="--freeze-encoder --warmup-ae-steps 0 --extra-decoder-blocks 0,1,2,2" grows and
#            trains the decoder alone: the tokens stay, so does the model id (old files decode)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DATA=${DATA:-gpu_data/train}
EVAL=${EVAL:-gpu_data/held_out}
OUT=${OUT:-runs/gpu}
INIT=${INIT-codec/weights/default.safetensors}
AE_MINUTES=${AE_MINUTES:-7}
EM_MINUTES=${EM_MINUTES:-2}
RECIPE=${RECIPE:-flagship}
read -r -a ae_args <<< "${AE_ARGS:-}"
read -r -a em_args <<< "${EM_ARGS:-}"
init=()
if [ -n "$INIT" ]; then init=(--init "$INIT"); fi
ae=(-m codec train autoencoder --recipe "$RECIPE" --batch 32 --crop 256 --late-crop 0 --lr-schedule constant --lr 2e-4
    --data-on-device --ckpt-every-minutes 1 --eval-every 1000 --max-minutes "$AE_MINUTES"
    --data "$DATA" --eval-data "$EVAL" --out "$OUT/ae" "${init[@]}" "${ae_args[@]}")
echo "== autoencoder: $PY ${ae[*]}"
"$PY" "${ae[@]}"
em=(-m codec train entropy --recipe "$RECIPE" --autoencoder "$OUT/ae/checkpoint" --batch 64 --lr 3e-4
    --lr-schedule constant
    --ckpt-every-minutes 1 --eval-every 1000 --max-minutes "$EM_MINUTES"
    --data "$DATA" --eval-data "$EVAL" --out "$OUT/em" "${init[@]}" "${em_args[@]}")
echo "== entropy model: $PY ${em[*]}"
"$PY" "${em[@]}"
"$PY" -m codec export "$OUT/ae/checkpoint" --entropy "$OUT/em/checkpoint" -o "$OUT/flagship.safetensors" \
  --command-line "codec ${ae[*]:2}; codec ${em[*]:2}"
