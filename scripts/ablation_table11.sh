#!/usr/bin/env bash
# Paper Table 11 (Appendix G): UniVL's advanced losses on YouCook2 captioning (video + transcript). "base" is
# UniVL's five pre-training losses (joint, alignment, mlm, mfm, decoder); rows add m_joint, m_align or
# m_decoder, or all three, trained by the multi-task sum or MELTR.
#   ROW=base|m_joint|m_align|m_decoder|all METHOD=sum|meltr bash scripts/ablation_table11.sh [--set key=value ...]
#   TINY=1 (synthetic data, tiny model, CPU, seconds) or DATA_DIR=... INIT_MODEL=... [NGPU=N];
#   OUTPUT_DIR defaults to runs/ablation/table11_<ROW>-<METHOD>.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
METHOD="${METHOD:-meltr}"
case "$METHOD" in
  sum|meltr) ;;
  *) echo "error: METHOD must be sum or meltr for paper Table 11, got '$METHOD'" >&2; exit 2 ;;
esac
case "${ROW:-}" in
  base|m_joint|m_align|m_decoder|all) ;;
  *) echo "error: set ROW to one of base m_joint m_align m_decoder all (paper Table 11), got '${ROW:-}'" >&2; exit 2 ;;
esac
# the row's loss list, in MELTR's order, from the same table the summariser uses
losses="$(.venv/bin/python -c "import sys; from scripts.paper_results import TABLE11_LOSSES as L
print('[' + ','.join(L[sys.argv[1]]) + ']')" "$ROW")"
export ROW METHOD COEFFICIENTS=""
exec bash scripts/_ablation.sh 11 "$ROW-$METHOD" youcook_caption --set "model.losses=$losses" "$@"
