#!/usr/bin/env bash
# All-in-one + MELTR: MSRVTT-7k retrieval from raw videos (paper Table 2); config configs/allinone/msrvtt7k_retrieval.yaml.
#   TINY=1 (synthetic mp4 files, tiny model, CPU, seconds) or DATA_DIR=... INIT_MODEL=all-in-one-plus-224.ckpt;
#   DATA_DIR holds MSR_VTT.json, the split lists, jsfusion_val_caption_idx.pkl, videos/.
#   METHOD=meltr|single|sum|fixed|linear (COEFFICIENTS='{name: 1, ...}' for fixed), OUTPUT_DIR, NGPU=N (torchrun),
#   extra arguments go to scripts.train (--set key=value, --resume auto, --overwrite); see scripts/launch.py.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../launch.sh" allinone msrvtt7k_retrieval "$@"
