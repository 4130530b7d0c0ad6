#!/usr/bin/env bash
# Paper Table 11 (Appendix G): UniVL's advanced losses on YouCook2 captioning (video + transcript). "base" is
# UniVL's five pre-training losses (joint, alignment, mlm, mfm, decoder); rows add m_joint, m_align or
# m_decoder, or all three, trained by the multi-task sum or MELTR.
#   ROW=base|m_joint|m_align|m_decoder|all METHOD=sum|meltr bash scripts/paper/ablation_table11.sh [--set key=value ...]
#   OUTPUT_DIR defaults to runs/ablation/table11_<ROW>-<METHOD>.
#   TINY=1 (synthetic data, tiny model, CPU, seconds) or DATA_DIR=... INIT_MODEL=... [NGPU=N]; extra arguments go
#   to scripts.train. The run records its table, row and outcome in OUTPUT_DIR/row.json (python -m scripts.summarize).
exec bash "$(dirname "${BASH_SOURCE[0]}")/../launch.sh" ablation 11 "$@"
