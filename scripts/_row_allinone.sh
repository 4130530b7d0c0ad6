# All-in-one hooks of scripts/_row.sh. INIT_MODEL=all-in-one-plus-224.ckpt (the official PyTorch Lightning file).
row_tiny() {
  .venv/bin/python -m data.synthetic allinone-msrvtt --out "$DATA_DIR" --videos 12 > /dev/null
  args+=(--set model.size=tiny --set model.drop_rate=0 --set model.drop_path_rate=0
         --set data.image_size=32 --set data.decode_size=48 --set data.max_text_len=16 --set data.retrieval_views=2
         --set loader.batch_size=4 --set loader.eval_batch_size=4 --set loader.num_workers=0
         --set trainer.epochs=1 --set trainer.grad_accum=1 --set trainer.log_every=1 --set trainer.meta.every=2)
}

row_full() {
  require_file INIT_MODEL "the official all-in-one-plus-224.ckpt"
  args+=(--set "init_model=$INIT_MODEL")
}
