#!/usr/bin/env bash
# Shared launcher of the paper's ablation rows (called by scripts/ablation_table*.sh, not by users):
#   bash scripts/_ablation.sh TABLE ROW_ID UNIVL_ROW [--set key=value ...]
# Runs scripts/univl_<UNIVL_ROW>.sh (env METHOD, COEFFICIENTS, TINY, DATA_DIR, INIT_MODEL, NGPU pass through)
# with the given overrides, and records in OUTPUT_DIR/row.json which paper table and row the run is, its
# arguments and its outcome, for python -m scripts.summarize:
#   status "started" (while running, or if it was killed), "finished", "cannot_train" (the trainer raised
#   CombinerTrainingError: a reported result, exit status 0) or "failed" (exit status of the run).
# Stderr is shown and kept in OUTPUT_DIR/train.stderr.log.
set -euo pipefail
TABLE="$1"; ROW_ID="$2"; UNIVL_ROW="$3"; shift 3
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_setup.sh
name="$([[ "$TABLE" =~ ^[0-9]+$ ]] && echo "table$TABLE" || echo "$TABLE")_${ROW_ID}"  # table7_A, fig5_se
OUTPUT_DIR="${OUTPUT_DIR:-runs/ablation/${name}$([ "${TINY:-0}" = 1 ] && echo _tiny || true)}"
export OUTPUT_DIR
mkdir -p "$OUTPUT_DIR"
ARGS=("$@")

write_row() {  # STATUS [EXIT_CODE] [MESSAGE]
  .venv/bin/python - "$OUTPUT_DIR/row.json" "$TABLE" "$ROW_ID" "${METHOD:-meltr}" "${COEFFICIENTS:-}" "$UNIVL_ROW" \
    "${TINY:-0}" "$1" "${2:-}" "${3:-}" "${ARGS[@]}" <<'PY'
import json, os, sys, time
path, table, row, method, coefficients, univl_row, tiny, status, code, message = sys.argv[1:11]
record = {"table": table, "row": row, "method": method, "univl_row": univl_row, "tiny": tiny == "1",
          "args": sys.argv[11:], "status": status, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
if coefficients:
    record["coefficients"] = coefficients
if code:
    record["exit_code"] = int(code)
if message:
    record["message"] = message
tmp = path + ".tmp"
with open(tmp, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=1)
os.replace(tmp, path)
PY
}

write_row started
# A fresh run of the row (no --resume) replaces an earlier run in OUTPUT_DIR: its metrics.jsonl moves aside
# (kept, dated), and scripts.train is told to overwrite the earlier checkpoints (it refuses otherwise).
case " $* " in
  *" --resume "*|*" --resume="*) ;;
  *) if [ -f "$OUTPUT_DIR/metrics.jsonl" ]; then mv "$OUTPUT_DIR/metrics.jsonl" "$OUTPUT_DIR/metrics.$(date +%Y%m%d-%H%M%S).jsonl"; fi
     if [ -e "$OUTPUT_DIR/last.pt" ] || [ -e "$OUTPUT_DIR/best.pt" ]; then set -- "$@" --overwrite; fi ;;
esac
log="$OUTPUT_DIR/train.stderr.log"
set +e
# stdout stays stdout; stderr goes through tee into the log and back to stderr
{ bash "scripts/univl_${UNIVL_ROW}.sh" "$@" 2>&1 1>&3 3>&- | tee "$log" >&2; } 3>&1
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -eq 0 ]; then
  write_row finished 0
  echo "RESULT table $TABLE row $ROW_ID: finished in $OUTPUT_DIR (python -m scripts.summarize $OUTPUT_DIR)"
  exit 0
fi
reason=$(grep -o 'CombinerTrainingError: .*' "$log" | tail -n 1 || true)
if [ -n "$reason" ]; then
  write_row cannot_train "$rc" "$reason"
  echo "RESULT table $TABLE row $ROW_ID: cannot train, as the paper reports. $reason"
  exit 0
fi
write_row failed "$rc" "$(tail -n 1 "$log")"
echo "error: table $TABLE row $ROW_ID failed with exit status $rc; see $log" >&2
exit "$rc"
