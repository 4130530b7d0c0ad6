#!/usr/bin/env bash
# Shared launcher of the UniVL paper rows: bash scripts/univl_<row>.sh
#   METHOD=meltr|single|sum|fixed (default meltr)   DATA_DIR=folder with the official files
#   INIT_MODEL=univl.pretrained.bin                OUTPUT_DIR=runs/...   NGPU=1
#   TINY=1: the same code path on synthetic data with a tiny model, in seconds on CPU
#   COEFFICIENTS='{joint: 1, ...}' for METHOD=fixed; MODALITY=video for video-only captioning
# Extra arguments are passed to scripts.train (e.g. --set trainer.epochs=5).
set -euo pipefail
ROW="$1"; shift
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_setup.sh
CONFIG="configs/univl/${ROW}.yaml"
METHOD="${METHOD:-meltr}"
NGPU="${NGPU:-1}"
OUTPUT_DIR="${OUTPUT_DIR:-runs/univl_${ROW}_${METHOD}$([ "${TINY:-0}" = 1 ] && echo _tiny || true)}"
DATASET=$(.venv/bin/python -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['data']['dataset'])" "$CONFIG")
args=(--config "$CONFIG" --set "output_dir=$OUTPUT_DIR" --set "trainer.combiner.name=$METHOD")
if [ -n "${COEFFICIENTS:-}" ]; then args+=(--set "trainer.combiner.coefficients=$COEFFICIENTS"); fi
if [ "${MODALITY:-}" = "video" ]; then args+=(--set "data.text_source=empty"); fi
if [ "${TINY:-0}" = 1 ]; then
  DATA_DIR="$OUTPUT_DIR/synthetic_data"
  # shellcheck disable=SC2086  # SYNTHETIC_ARGS is a word list set by a row script (e.g. --format mmsa)
  .venv/bin/python -m data.synthetic "$DATASET" --out "$DATA_DIR" ${SYNTHETIC_ARGS:-} > /dev/null
  args+=(--set "data.root=$DATA_DIR" --set model.size=tiny --set model.max_words=12 --set model.max_frames=10
         --set data.batch_size=4 --set data.eval_batch_size=4 --set trainer.epochs=1 --set trainer.log_every=1
         --set eval.beam_size=2)
  if [ "$DATASET" = msrvtt ]; then
    info=$(.venv/bin/python -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['n_train_videos'], d['n_test_videos'])" "$DATA_DIR/synthetic_info.json")
    read -r NTRAIN NTEST <<< "$info"
    args+=(--set "data.n_train_videos=$NTRAIN" --set "data.n_test_videos=$NTEST")
  fi
else
  DATA_DIR="${DATA_DIR:?set DATA_DIR to the folder with the official ${DATASET} files (or TINY=1)}"
  [ -d "$DATA_DIR" ] || { echo "error: DATA_DIR not found: $DATA_DIR" >&2; exit 2; }
  INIT_MODEL="${INIT_MODEL:?set INIT_MODEL to the official univl.pretrained.bin}"
  [ -f "$INIT_MODEL" ] || { echo "error: INIT_MODEL not found: $INIT_MODEL" >&2; exit 2; }
  args+=(--set "data.root=$DATA_DIR" --set "init_model=$INIT_MODEL")
fi
if [ "$NGPU" -gt 1 ]; then
  exec .venv/bin/torchrun --standalone --nproc_per_node="$NGPU" -m scripts.train "${args[@]}" "$@"
fi
exec .venv/bin/python -m scripts.train "${args[@]}" "$@"
