#!/usr/bin/env bash
# All-in-one + MELTR: MSRVTT-7k retrieval from raw videos (see scripts/_row.sh for METHOD, DATA_DIR, OUTPUT_DIR, NGPU, TINY;
# INIT_MODEL in scripts/_row_allinone.sh). DATA_DIR holds MSR_VTT.json, the split lists, jsfusion_val_caption_idx.pkl, videos/.
exec bash "$(dirname "${BASH_SOURCE[0]}")/_row.sh" allinone msrvtt7k_retrieval "$@"
