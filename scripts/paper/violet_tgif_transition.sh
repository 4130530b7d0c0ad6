#!/usr/bin/env bash
# VIOLET + MELTR: TGIF-Transition, multiple choice (paper Table 3); config configs/violet/tgif_transition.yaml.
#   TINY=1 (synthetic data, tiny model, CPU, seconds) or DATA_DIR=... INIT_MODEL=ckpt_violet_pretrain.pt
#   [SWIN_INIT=ckpt_video-swin.pt]; DATA_DIR holds the frame pickle, the DALL-E code pickle and the json of the config.
#   METHOD=meltr|single|sum|fixed|linear (COEFFICIENTS='{name: 1, ...}' for fixed), OUTPUT_DIR, NGPU=N (torchrun),
#   extra arguments go to scripts.train (--set key=value, --resume auto, --overwrite); see scripts/launch.py.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../launch.sh" violet tgif_transition "$@"
