#!/usr/bin/env bash
# UniVL + MELTR: CMU-MOSI sentiment (paper Table 6); config configs/univl/mosi.yaml.
#   FORMAT=mmsa (default; MMSA aligned_50.pkl, 20-d FACET), univl (S3D feature pickle + id,text,label,split csv,
#   1024-d) or csd (CMU-MultimodalSDK .csd folder, FACET 4.2, 35-d); FEATURE_DIM overrides the width.
#   TINY=1 (synthetic data in FORMAT's layout, tiny model, CPU, seconds) or DATA_DIR=... INIT_MODEL=univl.pretrained.bin;
#   METHOD=meltr|single|sum|fixed|linear (COEFFICIENTS='{name: 1, ...}' for fixed), OUTPUT_DIR, NGPU=N (torchrun),
#   extra arguments go to scripts.train (--set key=value, --resume auto, --overwrite); see scripts/launch.py.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../launch.sh" univl mosi "$@"
