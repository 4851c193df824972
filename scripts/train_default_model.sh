#!/usr/bin/env bash
# Reproduce the shipped default model (checkpoints/) from scratch, through the whole InternVid path:
#   toy VAE -> toy ViCLIP (its text tower starts the text encoder) -> base folder
#   -> toy-world rows + videos -> filter (aesthetic >= 4) -> text encoder sharpened on the captions
#   -> the shipped ViCLIP (a video tower that sees frame order, trained against that frozen text encoder)
#   -> clips -> shards -> latent cache -> vidgen train (denoiser) -> export -> second stage (shifted schedule,
#   context frames) -> export -> third stage (order from the caption, three runs) -> export
#   -> fp16 model folder + eval + model card in checkpoints/
# About 3.1 hours on a 2-core CPU by the times of its parts (fp32 denoiser stages; 4.9 h was recorded under
# bf16 on a busier machine); the third stage is about 55 minutes of it, the shipped ViCLIP 20. Much faster on a GPU.
# Every step leaves a marker in $RUN/done/ with its time when it finishes: re-running skips finished steps and
# resumes a denoiser stage cut short from its last checkpoint, so the recipe can be run in pieces.
# (A resumed stage's marker holds the time of its last piece only.)
#
#   bash scripts/train_default_model.sh            # everything, into runs/toy and checkpoints/
#   RUN=/tmp/toy OUT=/tmp/ckpt bash scripts/train_default_model.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/toy}
OUT=${OUT:-checkpoints}
mkdir -p "$RUN/done"
# step NAME CMD...: run CMD unless NAME finished before, timing it into the marker $RUN/done/NAME. Once a step
# runs, every later step runs again too (its inputs may have changed).
upstream_ran=0
step() {
  local name=$1; shift
  if [[ -e "$RUN/done/$name" && $upstream_ran == 0 ]]; then echo "== $name: done before, skipped"; return; fi
  echo "== $(date +%H:%M:%S) $name"
  rm -f "$RUN/done/$name"
  local t0=$SECONDS
  "$@"
  echo "$((SECONDS - t0)) s" > "$RUN/done/$name.tmp"
  mv "$RUN/done/$name.tmp" "$RUN/done/$name"
  echo "== $name: $((SECONDS - t0)) s"
  upstream_ran=1
}

step vae     vidgen train vae --config configs/toy/vae.yaml "output_dir=$RUN/vae"
step viclip  vidgen train viclip --config configs/toy/viclip.yaml "output_dir=$RUN/viclip"
step base    python scripts/make_base_folder.py --vae "$RUN/vae/vae" --viclip "$RUN/viclip/viclip" --out "$RUN/base_viclip" --overwrite
step world   vidgen data toyworld -o "$RUN/world" --config configs/toy/world.yaml --overwrite --no-progress
step filter  vidgen data filter "$RUN/world/rows.jsonl" -o "$RUN/rows_aes.jsonl" --min-aesthetic 4 --overwrite
# The ViCLIP text tower hardly separates "left" from "right" (its video tower barely sees frame order): sharpen it,
# and push each caption away from its twin with the motion or shape swapped (what the denoiser learns follows that gap).
step text    python scripts/tune_text_encoder.py --base "$RUN/base_viclip" --rows "$RUN/rows_aes.jsonl" --out "$RUN/base" \
               --steps 200 --separate 1 --keep 0.1 --overwrite
# The shipped scorer: a tubelet video tower trained against the sharpened encoder, frozen, so the ViCLIP's text tower
# is the denoiser's text encoder (and, unlike the first ViCLIP's, tells the directions apart).
step viclip_final vidgen train viclip --config configs/toy/viclip_final.yaml "output_dir=$RUN/viclip_final" \
               "init_text=$RUN/viclip/viclip" "text_encoder=$RUN/base/text_encoder"
step clips   vidgen data clips "$RUN/rows_aes.jsonl" --sources "$RUN/world" -o "$RUN/clips" --workers 2 --overwrite
step shards  vidgen data shard "$RUN/rows_aes.jsonl" --clips "$RUN/clips" -o "$RUN/shards" --max-count 2000 --no-verify --overwrite
step cache   vidgen data cache "$RUN/shards" -o "$RUN/cache" --model "$RUN/base" --frames 8 --stride 2 --size 32 \
               --window random --overwrite
# One denoiser stage: train NAME from BASE with CONFIG, then export it. A stage cut short resumes from its last
# checkpoint, unless an earlier step ran again in this invocation: then its checkpoints are stale and go.
train_stage() {
  local name=$1 config=$2 base=$3; shift 3
  local resume=()
  if compgen -G "$RUN/denoiser_$name/checkpoint-*/trainer_state.json" > /dev/null; then
    if [[ $upstream_ran == 0 ]]; then resume=(--resume latest)
    else echo "== removing $RUN/denoiser_$name (checkpoints from before an earlier step ran again)"; rm -rf "$RUN/denoiser_$name"; fi
  fi
  vidgen train --config "$config" "output_dir=$RUN/denoiser_$name" "model.base=$base" \
    "data.path=$RUN/cache" "validation.viclip=$RUN/viclip_final/viclip" "$@" ${resume[@]+"${resume[@]}"}
  vidgen export "$RUN/denoiser_$name" --out "$RUN/model_$name" --overwrite
}
step denoiser_first train_stage first configs/train/toy.yaml "$RUN/base"
# Second stage: a noise schedule with SNR / 36 (the direction is no longer fixed by the noise in the first two
# sampling steps) and context frames (stories continue a clip from its clean last frames).
step denoiser_shift train_stage shift configs/train/toy_shift.yaml "$RUN/model_first"
# Third stage: order from the caption (clips at SNR <= 0.01 shown reversed half of the time, so the caption, not the
# noise, decides which way the object moves), in three runs as the shipped weights were made: 1000, 2000, 1200 steps.
step denoiser_order train_stage order configs/train/toy_order.yaml "$RUN/model_shift"
step denoiser_order2 train_stage order2 configs/train/toy_order.yaml "$RUN/model_order" \
  train.max_steps=2000 optim.warmup_steps=50 validation.every=2000
step denoiser_order3 train_stage order3 configs/train/toy_order.yaml "$RUN/model_order2" \
  train.max_steps=1200 optim.warmup_steps=50 validation.every=1200
step finalize python scripts/finalize_default_model.py --model "$RUN/model_order3" --viclip "$RUN/viclip_final/viclip" \
  --viclip-config configs/toy/viclip_final.yaml --run "$RUN" --out "$OUT"
echo "== done: $(cat "$RUN"/done/* | awk '{s += $1} END {printf "%.1f h", s / 3600}') in all"
