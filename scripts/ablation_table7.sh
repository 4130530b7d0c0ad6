#!/usr/bin/env bash
# Paper Table 7: UniVL on YouCook2 captioning (video + transcript), fixed loss coefficients (A)-(E) vs MELTR.
#   ROW=A|B|C|D|E|meltr bash scripts/ablation_table7.sh [--set key=value ...]
#   TINY=1 (synthetic data, tiny model, CPU, seconds) or DATA_DIR=... INIT_MODEL=... [NGPU=N];
#   OUTPUT_DIR defaults to runs/ablation/table7_<ROW>. Coefficients: python -m scripts.paper_results show 7
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
case "${ROW:-}" in
  A|B|C|D|E) METHOD=fixed; COEFFICIENTS="$(.venv/bin/python -m scripts.paper_results coefficients "$ROW")" ;;
  meltr) METHOD=meltr; COEFFICIENTS="" ;;
  *) echo "error: set ROW to one of A B C D E meltr (paper Table 7), got '${ROW:-}'" >&2; exit 2 ;;
esac
export ROW METHOD COEFFICIENTS
exec bash scripts/_ablation.sh 7 "$ROW" youcook_caption "$@"
