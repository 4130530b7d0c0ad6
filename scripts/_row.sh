#!/usr/bin/env bash
# Shared launcher of every paper row: bash scripts/_row.sh BACKBONE ROW [--set key=value ...]
# (the row scripts scripts/<backbone>_<row>.sh call it). Environment:
#   METHOD=meltr|single|sum|fixed|linear (default meltr)   COEFFICIENTS='{name: 1, ...}' for METHOD=fixed
#   DATA_DIR=folder with the official files   OUTPUT_DIR=runs/...   NGPU=1 (>1: torchrun --standalone)
#   TINY=1: the same code path on synthetic data with a tiny model, in seconds on CPU
#   backbone-specific variables (INIT_MODEL, SWIN_INIT, ...) are read by scripts/_row_<backbone>.sh
# Extra arguments are passed to scripts.train (e.g. --set trainer.epochs=5).
set -euo pipefail
BACKBONE="$1"; ROW="$2"; shift 2
cd "$(dirname "${BASH_SOURCE[0]}")/.."
NGPU="${NGPU:-1}"
case "$NGPU" in  # checked first: `[ "$NGPU" -gt 1 ]` below would fail with a bare "integer expression expected"
  *[!0-9]*|0*) echo "error: NGPU must be a whole number of GPUs >= 1 (got '$NGPU')" >&2; exit 2 ;;
esac
source scripts/_setup.sh
CONFIG="configs/${BACKBONE}/${ROW}.yaml"
[ -f "$CONFIG" ] || { echo "error: no config $CONFIG for row $ROW of $BACKBONE" >&2; exit 2; }
METHOD="${METHOD:-meltr}"
TINY="${TINY:-0}"
OUTPUT_DIR="${OUTPUT_DIR:-runs/${BACKBONE}_${ROW}_${METHOD}$([ "$TINY" = 1 ] && echo _tiny || true)}"
yaml_get() {  # yaml_get data.dataset -> the value in $CONFIG
  .venv/bin/python -c "import yaml,sys; v=yaml.safe_load(open(sys.argv[1]))
for k in sys.argv[2].split('.'): v=v[k]
print(v)" "$CONFIG" "$1"
}
args=(--config "$CONFIG" --set "output_dir=$OUTPUT_DIR" --set "trainer.combiner.name=$METHOD")
if [ -n "${COEFFICIENTS:-}" ]; then args+=(--set "trainer.combiner.coefficients=$COEFFICIENTS"); fi
require_file() {  # require_file VAR description: the variable must name an existing file
  local value="${!1:-}"
  [ -n "$value" ] || { echo "error: set $1 to $2 (or TINY=1)" >&2; exit 2; }
  [ -f "$value" ] || { echo "error: $1 not found: $value" >&2; exit 2; }
}
# The hook defines row_tiny (writes synthetic data into $DATA_DIR, appends tiny overrides to args) and
# row_full (checks the user's files, appends their paths to args).
source "scripts/_row_${BACKBONE}.sh"
if [ "$TINY" = 1 ]; then
  DATA_DIR="$OUTPUT_DIR/synthetic_data"
  args+=(--set "data.root=$DATA_DIR")
  row_tiny
else
  DATA_DIR="${DATA_DIR:?set DATA_DIR to the folder with the official files (or TINY=1)}"
  [ -d "$DATA_DIR" ] || { echo "error: DATA_DIR not found: $DATA_DIR" >&2; exit 2; }
  args+=(--set "data.root=$DATA_DIR")
  row_full
fi
if [ "$NGPU" -gt 1 ]; then
  exec .venv/bin/torchrun --standalone --nproc_per_node="$NGPU" -m scripts.train "${args[@]}" "$@"
fi
exec .venv/bin/python -m scripts.train "${args[@]}" "$@"
