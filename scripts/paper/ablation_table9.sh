#!/usr/bin/env bash
# Paper Table 9 (Appendix C): regulariser strength gamma of MELTR on UniVL MSRVTT-7k retrieval.
#   ROW=0|0.001|0.01|0.1|1|10|100 bash scripts/paper/ablation_table9.sh [--set key=value ...]     (ROW = gamma)
#   OUTPUT_DIR defaults to runs/ablation/table9_<ROW>.
#   TINY=1 (synthetic data, tiny model, CPU, seconds) or DATA_DIR=... INIT_MODEL=... [NGPU=N]; extra arguments go
#   to scripts.train. The run records its table, row and outcome in OUTPUT_DIR/row.json (python -m scripts.summarize).
exec bash "$(dirname "${BASH_SOURCE[0]}")/../launch.sh" ablation 9 "$@"
