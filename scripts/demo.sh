#!/usr/bin/env bash
# Fresh clone -> CPU demo table: MELTR vs single / sum / fixed / linear on scikit-learn's digits.
# Extra arguments go to the demo, e.g. `bash scripts/demo.sh --set seeds=[0]`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
.venv/bin/python -m scripts.demo --config configs/demo/cpu_tiny.yaml "$@"
