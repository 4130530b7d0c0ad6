#!/usr/bin/env bash
# Paper Table 8: UniVL on MSRVTT-7k retrieval, multi-task sum vs MELTR under each hypergradient scheme;
# every run logs the training wall time and peak memory of each epoch next to R@1.
#   ROW=sum|itd|stocbio|aid_cg|aid_fp|lite|lite_jvp bash scripts/ablation_table8.sh [--set key=value ...]
#   itd = Meta-Weight-Net (one unrolled step), aid_fp = AuxiLearn (Neumann), lite = AID-FP-Lite as the official
#   code computes it (double backward through the backbone), lite_jvp = the same hypergradient by forward-mode JVP.
#   TINY=1 (synthetic data, tiny model, CPU, seconds) or DATA_DIR=... INIT_MODEL=... [NGPU=N];
#   OUTPUT_DIR defaults to runs/ablation/table8_<ROW>.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
hg=trainer.meta.hypergrad
case "${ROW:-}" in
  sum) METHOD=sum; extra=() ;;
  itd|stocbio|aid_cg|aid_fp) METHOD=meltr; extra=(--set "$hg.name=$ROW") ;;
  lite) METHOD=meltr; extra=(--set "$hg.name=aid_fp_lite" --set "$hg.mode=autograd") ;;
  lite_jvp) METHOD=meltr; extra=(--set "$hg.name=aid_fp_lite" --set "$hg.mode=jvp") ;;
  *) echo "error: set ROW to one of sum itd stocbio aid_cg aid_fp lite lite_jvp (paper Table 8), got '${ROW:-}'" >&2; exit 2 ;;
esac
export ROW METHOD COEFFICIENTS=""
exec bash "$here/_ablation.sh" 8 "$ROW" msrvtt7k_retrieval "${extra[@]}" "$@"
