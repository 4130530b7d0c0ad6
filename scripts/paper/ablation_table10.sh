#!/usr/bin/env bash
# Paper Table 10 (Appendix D): the loss transformer's architecture on UniVL MSRVTT-7k retrieval: a learned
# linear combination, and MELTR fed the scale embedding only, the task embedding only, or both.
#   ROW=linear|se|te|se_te bash scripts/paper/ablation_table10.sh [--set key=value ...]
#   TASK=caption: the same rows on YouCook2 captioning, the runs that Figure 5 (Appendix E) plots:
#     python -m scripts.plot_meltr --fig5 runs/ablation/fig5_se runs/ablation/fig5_te runs/ablation/fig5_se_te
#   TE only cannot train (its output ignores the losses): the row reports that and exits with status 0.
#   OUTPUT_DIR defaults to runs/ablation/table10_<ROW> (TASK=caption: runs/ablation/fig5_<ROW>).
#   TINY=1 (synthetic data, tiny model, CPU, seconds) or DATA_DIR=... INIT_MODEL=... [NGPU=N]; extra arguments go
#   to scripts.train. The run records its table, row and outcome in OUTPUT_DIR/row.json (python -m scripts.summarize).
exec bash "$(dirname "${BASH_SOURCE[0]}")/../launch.sh" ablation 10 "$@"
