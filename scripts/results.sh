#!/usr/bin/env bash
# Regenerate docs/results.md and docs/figures/ (PNG plots; CSV/Markdown tables in
# docs/figures/tables/): every number and plot of the results page, with one command.
# Same seed, same numbers: the tables are byte-identical.
#   scripts/results.sh                 # full grid: 20 seeds per cell (375 runs; 54 min on 2 shared cores)
#   SEEDS=5 scripts/results.sh         # a quicker preview
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
SEEDS="${SEEDS:-20}"
STEPS="${STEPS:-1000}"
BASE_SEED="${BASE_SEED:-0}"
exec npo ablate --out docs --seeds "$SEEDS" --steps "$STEPS" --base-seed "$BASE_SEED" \
  --tables-dir figures/tables "$@"
