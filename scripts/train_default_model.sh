#!/usr/bin/env bash
# Reproduce the shipped default model (checkpoints/) from scratch, through the whole InternVid path:
#   toy VAE -> toy ViCLIP (the shipped scorer; its text tower starts the text encoder) -> base folder
#   -> toy-world rows + videos -> filter (aesthetic >= 4) -> text encoder sharpened on the captions
#   -> clips -> shards -> latent cache -> vidgen train (denoiser) -> export -> second stage (shifted schedule,
#   context frames) -> export -> third stage (order from the caption, three runs) -> export
#   -> fp16 model folder + eval + model card in checkpoints/
# About 4.5 hours on a 2-core CPU (the third stage adds 75 minutes); much faster on a GPU. Re-running resumes the denoiser.
#
#   bash scripts/train_default_model.sh            # everything, into runs/toy and checkpoints/
#   RUN=/tmp/toy OUT=/tmp/ckpt bash scripts/train_default_model.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/toy}
OUT=${OUT:-checkpoints}
step() { echo "== $(date +%H:%M:%S) $*"; }

step "VAE";     vidgen train vae --config configs/toy/vae.yaml "output_dir=$RUN/vae"
step "ViCLIP";  vidgen train viclip --config configs/toy/viclip.yaml "output_dir=$RUN/viclip"
step "base";    python scripts/make_base_folder.py --vae "$RUN/vae/vae" --viclip "$RUN/viclip/viclip" --out "$RUN/base_viclip" --overwrite
step "world";   vidgen data toyworld -o "$RUN/world" --config configs/toy/world.yaml --overwrite --no-progress
step "filter";  vidgen data filter "$RUN/world/rows.jsonl" -o "$RUN/rows_aes.jsonl" --min-aesthetic 4 --overwrite
# The ViCLIP text tower hardly separates "left" from "right" (its video tower barely sees frame order): sharpen it,
# and push each caption away from its twin with the motion or shape swapped (what the denoiser learns follows that gap).
step "text";    python scripts/tune_text_encoder.py --base "$RUN/base_viclip" --rows "$RUN/rows_aes.jsonl" --out "$RUN/base" \
                  --steps 200 --separate 1 --keep 0.1 --overwrite
step "clips";   vidgen data clips "$RUN/rows_aes.jsonl" --sources "$RUN/world" -o "$RUN/clips" --workers 2 --overwrite
step "shards";  vidgen data shard "$RUN/rows_aes.jsonl" --clips "$RUN/clips" -o "$RUN/shards" --max-count 2000 --no-verify --overwrite
step "cache";   vidgen data cache "$RUN/shards" -o "$RUN/cache" --model "$RUN/base" --frames 8 --stride 2 --size 32 \
                  --window random --overwrite
# One denoiser stage: train NAME from BASE with CONFIG (resuming a run that was cut short), export to model_NAME.
stage() {
  local name=$1 config=$2 base=$3; shift 3
  local resume=()
  if compgen -G "$RUN/denoiser_$name/checkpoint-*" > /dev/null; then resume=(--resume latest); fi
  step "denoiser $name"; vidgen train --config "$config" "output_dir=$RUN/denoiser_$name" "model.base=$base" \
                           "data.path=$RUN/cache" "validation.viclip=$RUN/viclip/viclip" "$@" "${resume[@]}"
  step "export $name";   vidgen export "$RUN/denoiser_$name" --out "$RUN/model_$name" --overwrite
}
stage first configs/train/toy.yaml "$RUN/base"
# Second stage: a noise schedule with SNR / 36 (the direction is no longer fixed by the noise in the first two
# sampling steps) and context frames (stories continue a clip from its clean last frames).
stage shift configs/train/toy_shift.yaml "$RUN/model_first"
# Third stage: order from the caption (clips at SNR <= 0.01 shown reversed half of the time, so the caption, not the
# noise, decides which way the object moves), in three runs as the shipped weights were made: 1000, 2000, 1200 steps.
stage order configs/train/toy_order.yaml "$RUN/model_shift"
stage order2 configs/train/toy_order.yaml "$RUN/model_order" train.max_steps=2000 optim.warmup_steps=50 validation.every=2000
stage order3 configs/train/toy_order.yaml "$RUN/model_order2" train.max_steps=1200 optim.warmup_steps=50 validation.every=1200
step "finalize"; python scripts/finalize_default_model.py --model "$RUN/model_order3" --viclip "$RUN/viclip/viclip" --run "$RUN" --out "$OUT"
step "done"
