#!/usr/bin/env bash
# Paper Table 7: UniVL on YouCook2 captioning (video + transcript), fixed loss coefficients (A)-(E) vs MELTR.
#   ROW=A|B|C|D|E|meltr bash scripts/paper/ablation_table7.sh [--set key=value ...]
#   Coefficients: python -m scripts.paper_results show 7. OUTPUT_DIR defaults to runs/ablation/table7_<ROW>.
#   TINY=1 (synthetic data, tiny model, CPU, seconds) or DATA_DIR=... INIT_MODEL=... [NGPU=N]; extra arguments go
#   to scripts.train. The run records its table, row and outcome in OUTPUT_DIR/row.json (python -m scripts.summarize).
exec bash "$(dirname "${BASH_SOURCE[0]}")/../launch.sh" ablation 7 "$@"
