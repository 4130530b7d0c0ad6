# VIOLET hooks of scripts/_row.sh. INIT_MODEL=ckpt_violet_pretrain.pt (required), SWIN_INIT=ckpt_video-swin.pt
# (Video Swin-S Kinetics-400; the fork loads it unconditionally before the VIOLET checkpoint).
case "$ROW" in
  msrvtt*) SYNTHETIC=(violet-msrvtt) ;;
  tgif_action) SYNTHETIC=(tgif --task action) ;;
  tgif_transition) SYNTHETIC=(tgif --task transition) ;;
  tgif_frame) SYNTHETIC=(tgif --task frameqa) ;;
  msvd_qa) SYNTHETIC=(msvd) ;;
  *) echo "error: no synthetic dataset for VIOLET row $ROW" >&2; exit 2 ;;
esac

row_tiny() {
  # 32-pixel frames: one patch per frame (MVM then masks single patches; the official 3-D blocks need >= 96 px)
  .venv/bin/python -m data.synthetic "${SYNTHETIC[@]}" --out "$DATA_DIR" --image-size 32 > /dev/null
  args+=(--set model.size=tiny --set data.size_img=32 --set data.size_txt=16 --set data.size_vocab=12
         --set loader.batch_size=4 --set loader.eval_batch_size=4 --set loader.num_workers=0
         --set trainer.epochs=1 --set trainer.log_every=1 --set trainer.meta.every=2)
}

row_full() {
  require_file INIT_MODEL "the official ckpt_violet_pretrain.pt"
  args+=(--set "init_model=$INIT_MODEL")
  if [ -n "${SWIN_INIT:-}" ]; then
    require_file SWIN_INIT "the official ckpt_video-swin.pt"
    args+=(--set "swin_init=$SWIN_INIT")
  fi
}
