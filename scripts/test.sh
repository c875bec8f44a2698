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
# Ethereum tooling for tests/evm_tooling.rs (web3.py drives the EVM app; eth-account signs), pinned, in the same venv.
WEB3_VERSION=7.16.0
ETH_ACCOUNT_VERSION=0.13.7
if ! "$VENV/bin/python" -c "import web3, eth_account, sys; sys.exit(web3.__version__ != '$WEB3_VERSION')" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet "web3==$WEB3_VERSION" "eth-account==$ETH_ACCOUNT_VERSION"
fi
export CCF_VENV="$VENV"
# The TypeScript example's toolchain (typescript, esbuild, @microsoft/ccf-app), pinned by its package-lock.json,
# for tests/ts_example.rs; installed once, the test itself builds offline.
if [[ ! -x examples/orderbook-ts/node_modules/.bin/esbuild ]]; then
  (cd examples/orderbook-ts && npm ci --no-audit --no-fund --loglevel=error)
fi
# The ERC-20 example's toolchain (solc-js, ethers v6), pinned by its package-lock.json, for tests/evm_tooling.rs.
if [[ ! -d examples/erc20/node_modules/solc || ! -d examples/erc20/node_modules/ethers ]]; then
  (cd examples/erc20 && npm ci --no-audit --no-fund --loglevel=error)
fi
cargo test --workspace "$@"
