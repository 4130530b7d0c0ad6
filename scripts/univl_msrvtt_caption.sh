#!/usr/bin/env bash
# UniVL + MELTR: msrvtt_caption (see scripts/_row.sh for METHOD, DATA_DIR, OUTPUT_DIR, NGPU, TINY; INIT_MODEL, MODALITY in scripts/_row_univl.sh)
exec bash "$(dirname "${BASH_SOURCE[0]}")/_row.sh" univl msrvtt_caption "$@"
