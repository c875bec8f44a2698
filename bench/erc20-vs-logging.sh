#!/usr/bin/env bash
# The EVM app's ERC-20 transfers against the built-in Rust logging app's private writes, in one run on one 3-node
# sandbox: alternates `consort bench --workload private` and `--workload erc20` (each erc20 run deploys a fresh token
# and funds ACCOUNTS accounts first, unmeasured, then sends pre-signed transfers) for ROUNDS rounds of DURATION_S
# seconds each, and prints every run's committed rate, the medians and their ratio. Quote medians and ratios: these
# machines are shared and noisy. Extra arguments after the first four go to both benches (e.g. --connections 8).
#
#   bench/erc20-vs-logging.sh [BINARY] [ROUNDS] [DURATION_S] [ACCOUNTS] [BENCH ARGS...]
#                                                  (default: target/release/consort 3 10 1000)
set -eu
BIN=${1:-target/release/consort}
ROUNDS=${2:-3}
DURATION_S=${3:-10}
ACCOUNTS=${4:-1000}
shift $(($# < 4 ? $# : 4))
ws=$(mktemp -d /tmp/erc20-vs-logging.XXXX)
stop() {
  [ -f "$ws/sandbox.json" ] || return 0
  for pid in $(python3 -c "import json;print(' '.join(str(n['pid']) for n in json.load(open('$ws/sandbox.json'))['nodes']))"); do
    kill "$pid" 2>/dev/null || true
  done
}
trap stop EXIT
timeout 120 "$BIN" sandbox --detach --workspace "$ws" --port 18300 >"$ws/sandbox.log" 2>&1
declare -a logging erc20
for round in $(seq 1 "$ROUNDS"); do
  for w in private erc20; do
    extra=()
    [ "$w" = erc20 ] && extra=(--accounts "$ACCOUNTS")
    out=$(timeout $((DURATION_S + 240)) "$BIN" bench --workspace "$ws" --workload "$w" --duration-s "$DURATION_S" \
      --quiet "${extra[@]}" "$@" 2>&1 || true)
    rate=$(echo "$out" | grep '^committed:' | grep -oE '[0-9]+(\.[0-9]+)? tx/s' | head -1 | cut -d' ' -f1)
    echo "round $round $w: ${rate:-failed} committed tx/s"
    [ -n "$rate" ] || echo "$out" | tail -5
    if [ "$w" = private ]; then logging+=("${rate:-0}"); else erc20+=("${rate:-0}"); fi
  done
done
python3 - "${logging[*]}" "${erc20[*]}" <<'PY'
import statistics, sys
logging = [float(x) for x in sys.argv[1].split()]
erc20 = [float(x) for x in sys.argv[2].split()]
ml, me = statistics.median(logging), statistics.median(erc20)
ratio = me / ml if ml else float("nan")
print(f"median private logging: {ml:.0f} tx/s; median ERC-20 transfers: {me:.0f} tx/s; ERC-20/logging ratio {ratio:.2f}")
PY
