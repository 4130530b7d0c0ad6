#!/usr/bin/env bash
# UniVL + MELTR: YouCook2 captioning, video + transcript (paper Table 1; MODALITY=video: video only); config configs/univl/youcook_caption.yaml.
#   TINY=1 (synthetic data, tiny model, CPU, seconds) or DATA_DIR=... INIT_MODEL=univl.pretrained.bin;
#   DATA_DIR holds the files named in the data section of the config (UniVL's youcookii.zip / msrvtt.zip layout).
#   METHOD=meltr|single|sum|fixed|linear (COEFFICIENTS='{name: 1, ...}' for fixed), OUTPUT_DIR, NGPU=N (torchrun),
#   extra arguments go to scripts.train (--set key=value, --resume auto, --overwrite); see scripts/launch.py.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../launch.sh" univl youcook_caption "$@"
