#!/usr/bin/env bash
# Paper Table 9 (Appendix C): regulariser strength gamma of MELTR on UniVL MSRVTT-7k retrieval.
#   ROW=0|0.001|0.01|0.1|1|10|100 bash scripts/ablation_table9.sh [--set key=value ...]     (ROW = gamma)
#   TINY=1 (synthetic data, tiny model, CPU, seconds) or DATA_DIR=... INIT_MODEL=... [NGPU=N];
#   OUTPUT_DIR defaults to runs/ablation/table9_<ROW>.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
case "${ROW:-}" in
  0|0.001|0.01|0.1|1|10|100) ;;
  *) echo "error: set ROW to a gamma of paper Table 9: 0 0.001 0.01 0.1 1 10 100, got '${ROW:-}'" >&2; exit 2 ;;
esac
export ROW METHOD=meltr COEFFICIENTS=""
exec bash "$here/_ablation.sh" 9 "$ROW" msrvtt7k_retrieval --set "trainer.meta.gamma=$ROW" "$@"
