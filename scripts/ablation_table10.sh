#!/usr/bin/env bash
# Paper Table 10 (Appendix D): the loss transformer's architecture on UniVL MSRVTT-7k retrieval: a learned
# linear combination, and MELTR fed the scale embedding only, the task embedding only, or both.
#   ROW=linear|se|te|se_te bash scripts/ablation_table10.sh [--set key=value ...]
#   TASK=caption: the same rows on YouCook2 captioning, the runs that Figure 5 (Appendix E) plots:
#     python -m scripts.plot_meltr --fig5 runs/ablation/fig5_se runs/ablation/fig5_te runs/ablation/fig5_se_te
#   TE only cannot train (its output ignores the losses): the row reports that and exits with status 0.
#   TINY=1 (synthetic data, tiny model, CPU, seconds) or DATA_DIR=... INIT_MODEL=... [NGPU=N];
#   OUTPUT_DIR defaults to runs/ablation/table10_<ROW> (TASK=caption: runs/ablation/fig5_<ROW>).
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
case "${TASK:-retrieval}" in
  retrieval) table=10; univl_row=msrvtt7k_retrieval ;;
  caption) table=fig5; univl_row=youcook_caption ;;
  *) echo "error: TASK must be retrieval (Table 10) or caption (Figure 5 runs), got '$TASK'" >&2; exit 2 ;;
esac
# SE / TE only: the UniVL preset's sizes with one embedding (the preset itself has both).
lt=trainer.combiner.meltr
embedding=(--set trainer.combiner.preset=null --set "$lt.scale_hidden_dim=128" --set "$lt.hidden_dim=256"
           --set "$lt.ffn_dim=512" --set "$lt.num_heads=8" --set "$lt.num_layers=1" --set "$lt.dropout=0.0")
case "${ROW:-}" in
  linear) METHOD=linear; extra=() ;;
  se_te) METHOD=meltr; extra=() ;;
  se) METHOD=meltr; extra=("${embedding[@]}" --set "$lt.embedding=se") ;;
  te) METHOD=meltr; extra=("${embedding[@]}" --set "$lt.embedding=te") ;;
  *) echo "error: set ROW to one of linear se te se_te (paper Table 10, Appendix D), got '${ROW:-}'" >&2; exit 2 ;;
esac
export ROW METHOD COEFFICIENTS=""
exec bash "$here/_ablation.sh" "$table" "$ROW" "$univl_row" "${extra[@]}" "$@"
