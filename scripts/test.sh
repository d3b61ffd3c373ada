#!/usr/bin/env bash
# Install NPO with its test extras into .venv and run the test-suite.
# PostgreSQL server binaries and chromium + chromium-driver (browser tests of the
# dashboard) are installed from Debian packages when missing (needs root and apt-get);
# the tests themselves start a throw-away server on a free port.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check --upgrade pip
python -m pip install -q --disable-pip-version-check -e ".[dev]"
bash scripts/ensure-postgres.sh
bash scripts/ensure-chromium.sh
python -m pytest "$@"
