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
# The TypeScript example's toolchain (typescript, esbuild, @microsoft/ccf-app), pinned by its package-lock.json,
# for tests/ts_example.rs; installed once, the test itself builds offline.
if [[ ! -x examples/orderbook-ts/node_modules/.bin/esbuild ]]; then
  (cd examples/orderbook-ts && npm ci --no-audit --no-fund --loglevel=error)
fi
cargo test --workspace "$@"
