#!/usr/bin/env bash
# VIOLET + MELTR: msrvtt9k_retrieval (see scripts/_row.sh for METHOD, DATA_DIR, OUTPUT_DIR, NGPU, TINY; INIT_MODEL, SWIN_INIT in
# scripts/_row_violet.sh). DATA_DIR holds the frame pickle, the DALL-E code pickle and the json of configs/violet/msrvtt9k_retrieval.yaml.
exec bash "$(dirname "${BASH_SOURCE[0]}")/_row.sh" violet msrvtt9k_retrieval "$@"
