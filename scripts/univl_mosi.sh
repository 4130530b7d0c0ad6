#!/usr/bin/env bash
# UniVL + MELTR: CMU-MOSI sentiment (paper Table 6). FORMAT=mmsa (default; MMSA aligned_50.pkl, 20-d FACET),
# univl (S3D feature pickle + id,text,label,split csv, 1024-d) or csd (CMU-MultimodalSDK .csd folder, FACET 4.2, 35-d;
# FEATURE_DIM overrides the width). See scripts/_row.sh and scripts/_row_univl.sh for METHOD, DATA_DIR, INIT_MODEL, NGPU, TINY.
FORMAT="${FORMAT:-mmsa}"
case "$FORMAT" in
  mmsa) dim="${FEATURE_DIM:-20}" ;;
  univl) dim="${FEATURE_DIM:-1024}" ;;
  csd) dim="${FEATURE_DIM:-35}" ;;  # CMU_MOSI_Visual_Facet_42.csd (FACET 4.2): 35 features
  *) echo "error: FORMAT must be mmsa, univl or csd, got $FORMAT" >&2; exit 2 ;;
esac
extra=(--set "data.mosi_format=$FORMAT")
[ -n "$dim" ] && extra+=(--set "data.feature_dim=$dim")
export SYNTHETIC_ARGS="--format $FORMAT"
exec bash "$(dirname "${BASH_SOURCE[0]}")/_row.sh" univl mosi "${extra[@]}" "$@"
