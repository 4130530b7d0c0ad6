#!/usr/bin/env bash
# Paper Table 8: UniVL on MSRVTT-7k retrieval, multi-task sum vs MELTR under each hypergradient scheme;
# every run logs the training wall time and peak memory of each epoch next to R@1.
#   ROW=sum|itd|stocbio|aid_cg|aid_fp|lite|lite_jvp bash scripts/paper/ablation_table8.sh [--set key=value ...]
#   itd = Meta-Weight-Net (one unrolled step), aid_fp = AuxiLearn (Neumann), lite = AID-FP-Lite as the official
#   code computes it (double backward through the backbone), lite_jvp = the same hypergradient by forward-mode JVP.
#   OUTPUT_DIR defaults to runs/ablation/table8_<ROW>.
#   TINY=1 (synthetic data, tiny model, CPU, seconds) or DATA_DIR=... INIT_MODEL=... [NGPU=N]; extra arguments go
#   to scripts.train. The run records its table, row and outcome in OUTPUT_DIR/row.json (python -m scripts.summarize).
exec bash "$(dirname "${BASH_SOURCE[0]}")/../launch.sh" ablation 8 "$@"
