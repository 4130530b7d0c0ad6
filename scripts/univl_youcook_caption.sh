#!/usr/bin/env bash
# UniVL + MELTR: youcook_caption (see scripts/_univl_row.sh for METHOD, DATA_DIR, INIT_MODEL, OUTPUT_DIR, NGPU, TINY)
exec bash "$(dirname "${BASH_SOURCE[0]}")/_univl_row.sh" youcook_caption "$@"
