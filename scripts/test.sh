#!/usr/bin/env bash
# Runs every test: unit, property, integration (real node processes on 127.0.0.1) and CCF interop tests.
# Creates a Python virtualenv with the pinned `ccf` package (the compatibility oracle) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
CCF_VERSION=6.0.28
VENV=${CCF_VENV:-$PWD/.venv}
if ! "$VENV/bin/python" -c "import ccf" 2>/dev/null; then
  PY=$(command -v python3.11 || command -v python3)
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "ccf==$CCF_VERSION"
fi
export CCF_VENV="$VENV"
cargo test --workspace "$@"
