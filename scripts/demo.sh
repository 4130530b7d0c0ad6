#!/usr/bin/env bash
# Fresh clone -> (1) the CPU demo on scikit-learn's digits: does one MELTR run match a grid search over fixed
# loss weights, with and without an auxiliary loss that hurts? Two tables (validation-selected test accuracy,
# compute per method) and the learned task weights figures, in runs/demo/results.md;
# (2) the tiny UniVL YouCook2 captioning pipeline end to end on synthetic data in the official formats
# (MELTR fine-tune, beam decoding, pycocoevalcap table). Extra arguments go to the digits demo.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
.venv/bin/python -m scripts.demo --config configs/demo/cpu_tiny.yaml "$@"
echo
echo "== tiny UniVL + MELTR, YouCook2 captioning (video + transcript), synthetic data"
out=runs/demo/univl_youcook_caption
rm -rf "$out"  # a fresh run each time (the trainer would continue or refuse an existing run directory)
mkdir -p "$(dirname "$out")"
TINY=1 OUTPUT_DIR="$out" bash scripts/paper/univl_youcook_caption.sh > "$out.log" 2>&1 || { tail -20 "$out.log"; exit 1; }
.venv/bin/python - "$out" <<'PY'
import sys
from meltr.checkpoint import load_checkpoint
m = load_checkpoint(f"{sys.argv[1]}/last.pt")["metrics"]
print("| " + " | ".join(m) + " |\n|" + "---|" * len(m) + "\n| " + " | ".join(f"{v:.4f}" for v in m.values()) + " |")
print(f"(untrained tiny model, one epoch: the numbers only show that the pipeline runs; log: {sys.argv[1]}.log)")
PY
