#!/usr/bin/env bash
# Launch a paper row or an ablation row (the scripts/paper/*.sh run this):
#   bash scripts/launch.sh BACKBONE ROW [scripts.train arguments]     bash scripts/launch.sh ablation TABLE [...]
# Sets up .venv (scripts/_setup.sh, from the repository root), then python -m scripts.launch: every check, TINY=1
# and the environment variables (METHOD, DATA_DIR, INIT_MODEL, OUTPUT_DIR, NGPU, ...) are described there.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh"
exec .venv/bin/python -m scripts.launch "$@"
