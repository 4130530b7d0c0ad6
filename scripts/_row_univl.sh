# UniVL hooks of scripts/_row.sh. INIT_MODEL=univl.pretrained.bin; MODALITY=video: captioning without transcripts;
# SYNTHETIC_ARGS: extra arguments of data.synthetic (e.g. --format mmsa for CMU-MOSI).
DATASET=$(yaml_get data.dataset)
if [ "${MODALITY:-}" = "video" ]; then args+=(--set "data.text_source=empty"); fi

row_tiny() {
  # shellcheck disable=SC2086  # SYNTHETIC_ARGS is a word list set by a row script
  .venv/bin/python -m data.synthetic "$DATASET" --out "$DATA_DIR" ${SYNTHETIC_ARGS:-} > /dev/null
  args+=(--set model.size=tiny --set model.max_words=12 --set model.max_frames=10
         --set data.batch_size=4 --set data.eval_batch_size=4 --set trainer.epochs=1 --set trainer.log_every=1
         --set eval.beam_size=2)
  if [ "$DATASET" = msrvtt ]; then
    local info NTRAIN NTEST
    info=$(.venv/bin/python -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['n_train_videos'], d['n_test_videos'])" "$DATA_DIR/synthetic_info.json")
    read -r NTRAIN NTEST <<< "$info"
    args+=(--set "data.n_train_videos=$NTRAIN" --set "data.n_test_videos=$NTEST")
  fi
}

row_full() {
  require_file INIT_MODEL "the official univl.pretrained.bin"
  args+=(--set "init_model=$INIT_MODEL")
}
