#!/usr/bin/env bash
# The GPU recipe: on one lent GPU, continue the default model (the prq recipe: nested product-
# residual quantization over a PCA-skip autoencoder) from the committed bundle for a few minutes
# (bf16 autocast, batch 32 of 256-px crops from photos shrunk by up to 2x, kept on the GPU, a
# cosine decay of the learning rate, a checkpoint every minute), train its entropy model on the
# new tokens, and write fp16 files: RUN_DIR/ae.safetensors and RUN_DIR/em.safetensors (each under
# the 16 MiB a GPU machine sends back; copied to $OUT where that is set) and RUN_DIR/bundle.safetensors.
#
#   make gpu-data && bash bench/train_gpu.sh          # on the GPU machine (see DESIGN.md, "Training")
#   RECIPE=tiny INIT= AE_ARGS="--device cpu" EM_ARGS="--device cpu" bash bench/train_gpu.sh
#                                                     # smoke run on a CPU (tests do this)
#
# Environment:
#   DATA     training image folders (default: gpu_data/train, filled from ../shared/data by
#            `make gpu-data`; only the checkout travels to the GPU machine)
#   EVAL     held-out evaluation folder (default: gpu_data/held_out, BSDS500 test)
#   RUN_DIR  run folder (default: runs/gpu)
#   INIT     bundle to continue from (default: gpu_data/init.safetensors, which `make gpu-data`
#            copies from codec/weights/default.safetensors; empty: fresh)
#   AE_MINUTES, EM_MINUTES  minutes of each stage (default 5 and 2.5)
#   AE_STEPS  the cosine schedule's length (default 8000: about 5 minutes of an H200)
#   RECIPE   the recipe of both stages (default: prq, codec/train/recipes/prq.json)
#   BUILD    non-empty: compile the range coder first (the entropy stage needs it; a GPU machine
#            has torch, nanobind and scikit-build-core but not this package)
#   AE_ARGS, EM_ARGS  extra flags of each stage's `codec train` (later flags win)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DATA=${DATA:-gpu_data/train}
EVAL=${EVAL:-gpu_data/held_out}
RUN=${RUN_DIR:-runs/gpu}
INIT=${INIT-gpu_data/init.safetensors}
AE_MINUTES=${AE_MINUTES:-5}
EM_MINUTES=${EM_MINUTES:-2.5}
AE_STEPS=${AE_STEPS:-8000}
RECIPE=${RECIPE:-prq}
read -r -a ae_args <<< "${AE_ARGS:-}"
read -r -a em_args <<< "${EM_ARGS:-}"
init=()
if [ -n "$INIT" ]; then init=(--init "$INIT"); fi
mkdir -p "$RUN"
if [ -n "${BUILD:-}" ]; then
  "$PY" -m pip install --no-build-isolation --no-deps -q -e . > "$RUN/build.log" 2>&1 &
fi
ae=(-m codec train autoencoder --recipe "$RECIPE" --batch 32 --crop 256 --late-crop 0 --max-downscale 2
    --lr 1e-4 --lr-schedule cosine --lr-warmup-steps 100 --steps "$AE_STEPS"
    --data-on-device --ckpt-every-minutes 1 --eval-every 100000 --max-minutes "$AE_MINUTES"
    --data "$DATA" --eval-data "$EVAL" --out "$RUN/ae" "${init[@]}" "${ae_args[@]}")
echo "== autoencoder: $PY ${ae[*]}"
"$PY" "${ae[@]}"
wait  # the range coder's build
em=(-m codec train entropy --recipe "$RECIPE" --autoencoder "$RUN/ae/checkpoint" --batch 64 --lr 3e-4
    --lr-schedule constant
    --ckpt-every-minutes 1 --eval-every 100000 --max-minutes "$EM_MINUTES"
    --data "$DATA" --eval-data "$EVAL" --out "$RUN/em" "${init[@]}" "${em_args[@]}")
echo "== entropy model: $PY ${em[*]}"
"$PY" "${em[@]}"
"$PY" -m codec export "$RUN/ae/checkpoint" -o "$RUN/ae.safetensors" --command-line "codec ${ae[*]:2}"
"$PY" -m codec export "$RUN/em/checkpoint" -o "$RUN/em.safetensors" --command-line "codec ${em[*]:2}"
"$PY" -m codec export "$RUN/ae/checkpoint" --entropy "$RUN/em/checkpoint" -o "$RUN/bundle.safetensors" \
  --command-line "codec ${ae[*]:2}; codec ${em[*]:2}"
if [ -n "${OUT:-}" ] && [ "$OUT" != "$RUN" ]; then cp "$RUN/ae.safetensors" "$RUN/em.safetensors" "$OUT/"; fi
