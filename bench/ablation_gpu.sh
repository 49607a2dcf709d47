#!/usr/bin/env bash
# Issue 29's architecture ablation on one lent GPU: four autoencoder arms trained side by side
# for the same wall time (same data, seed, batch and learning rate), scored on the held-out
# photos (bench/ablation_score.py: PSNR against unigram bpp at 0.05/0.1/0.2/0.4); then the
# winner alone continues with a cosine decay of its learning rate, its entropy model trains on
# its final tokens, and both are exported as fp16 safetensors (OUT/best_ae.safetensors,
# OUT/best_em.safetensors; `codec export AE --entropy EM -o bundle` joins them).
#
#   make gpu-data && bash bench/ablation_gpu.sh          # on the GPU machine
#   MINUTES=0.3 DECAY_MINUTES=0.2 EM_MINUTES=0.2 ARGS="--device cpu --batch 2 --crop 64 --max-train-images 8 \
#     --eval-images 2 --warmup-ae-steps 3 --kmeans-batches 1" EM_ARGS="--device cpu" bash bench/ablation_gpu.sh
#                                                        # smoke run on a CPU
#
# Arms: a = the first flagship's recipe (nested product quantization, M=24); b = product-
# residual quantization (24 groups of 16, 32 codes) with the same autoencoder; c = b with the
# PCA transform skip path; d = c with 48 groups of 8 dims (the prq recipe, the winner).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DATA=${DATA:-gpu_data/train}
EVAL=${EVAL:-gpu_data/held_out}
OUT=${RUN_DIR:-runs/ablation}  # (not OUT: the GPU machine sets OUT to what it sends back)
MINUTES=${MINUTES:-4.5}
DECAY_MINUTES=${DECAY_MINUTES:-1.3}
EM_MINUTES=${EM_MINUTES:-1.2}
ARMS=${ARMS:-a b c d}
read -r -a args <<< "${ARGS:-}"
read -r -a em_args <<< "${EM_ARGS:-}"
common=(--batch 32 --crop 256 --late-crop 0 --lr-schedule constant --lr 2e-4 --data-on-device --max-downscale 2
        --ckpt-every-minutes 1 --eval-every 100000 --log-every 100 --seed 0 --max-minutes "$MINUTES"
        --eval-prefixes 1,2,4,8,12,16,24 --data "$DATA" --eval-data "$EVAL")
declare -A arm=(
  [a]="--recipe flagship"
  [b]="--recipe prq --groups 24 --no-transform"
  [c]="--recipe prq --groups 24"
  [d]="--recipe prq"
)
mkdir -p "$OUT"
if [ -n "${BUILD:-}" ]; then  # the entropy stage needs the compiled coder (a GPU machine has none)
  "$PY" -m pip install --no-build-isolation --no-deps -q -e . > "$OUT/build.log" 2>&1 &
  build=$!
fi
for name in $ARMS; do
  read -r -a spec <<< "${arm[$name]}"
  cmd=(-m codec train autoencoder "${spec[@]}" "${common[@]}" --out "$OUT/$name" "${args[@]}")
  echo "== arm $name: codec ${cmd[*]:2}" | tee "$OUT/$name.log"
  PYTHONUNBUFFERED=1 "$PY" "${cmd[@]}" >> "$OUT/$name.log" 2>&1 &
done
for job in $(jobs -p); do [ "$job" = "${build:-}" ] || wait "$job" || echo "an arm failed (exit $?)"; done
runs=()
for name in $ARMS; do runs+=("$OUT/$name"); done
"$PY" bench/ablation_score.py "${runs[@]}" --json "$OUT/ablation.json" | tee "$OUT/score.txt"
best=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['best'])" "$OUT/ablation.json")
read -r -a spec <<< "${arm[$best]}"
done_steps=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$OUT/$best/checkpoint/state.json")
# The decay: about as many steps as the arm made in DECAY_MINUTES x 2 (it has the GPU alone now).
total=$("$PY" -c "import sys; s,m,d=map(float,sys.argv[1:]); print(int(s + max(10, 2 * s * d / m)))" "$done_steps" "$MINUTES" "$DECAY_MINUTES")
decay=(-m codec train autoencoder "${spec[@]}" "${common[@]}" --out "$OUT/$best" "${args[@]}" --resume
       --lr-schedule cosine --lr-warmup-steps "$done_steps" --steps "$total" --max-minutes "$DECAY_MINUTES")
echo "== arm $best continues, cosine decay from step $done_steps to $total: codec ${decay[*]:2}"
PYTHONUNBUFFERED=1 "$PY" "${decay[@]}" > "$OUT/$best-decay.log" 2>&1
"$PY" bench/ablation_score.py "$OUT/$best" | tee -a "$OUT/score.txt"
"$PY" -m codec export "$OUT/$best/checkpoint" -o "$OUT/best_ae.safetensors" \
  --command-line "codec ${decay[*]:2}"
if [ -n "${build:-}" ]; then wait "$build" || { cat "$OUT/build.log"; exit 1; }; fi
recipe=prq; [ "$best" = a ] && recipe=flagship
em=(-m codec train entropy --recipe "$recipe" --autoencoder "$OUT/$best/checkpoint" --batch 64 --lr 3e-4
    --lr-schedule constant --ckpt-every-minutes 1 --eval-every 100000 --max-minutes "$EM_MINUTES"
    --data "$DATA" --eval-data "$EVAL" --out "$OUT/em" "${em_args[@]}")
echo "== entropy model of arm $best: codec ${em[*]:2}"
PYTHONUNBUFFERED=1 "$PY" "${em[@]}" > "$OUT/em.log" 2>&1
tail -c 600 "$OUT/em.log"
"$PY" -m codec export "$OUT/em/checkpoint" -o "$OUT/best_em.safetensors" --command-line "codec ${em[*]:2}"
