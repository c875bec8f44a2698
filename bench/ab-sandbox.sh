#!/usr/bin/env bash
# A/B throughput of two `consort` builds on this machine, interleaved so that both see the same load: each round
# starts a fresh 3-node sandbox with binary A, waits 10 s, runs `consort bench --workload private --duration-s 10`,
# stops it, then does the same with binary B. Prints each run's committed rate. Quote medians and ratios: these
# machines are shared and noisy.
#
#   bench/ab-sandbox.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]
#   e.g. git worktree add /tmp/before <rev> && (cd /tmp/before && CARGO_TARGET_DIR=/tmp/before-target cargo build --release)
#        bench/ab-sandbox.sh /tmp/before-target/release/consort target/release/consort 3
set -u
A=${1:?before binary}
B=${2:?after binary}
ROUNDS=${3:-3}
stop() {
  local ws=$1
  [ -f "$ws/sandbox.json" ] || return 0
  for pid in $(python3 -c "import json;print(' '.join(str(n['pid']) for n in json.load(open('$ws/sandbox.json'))['nodes']))"); do
    kill "$pid" 2>/dev/null
  done
}
for round in $(seq 1 "$ROUNDS"); do
  for v in before after; do
    bin=$A; port=18000
    [ "$v" = after ] && { bin=$B; port=18100; }
    ws=$(mktemp -d /tmp/ab-$v.XXXX)
    timeout 120 "$bin" sandbox --detach --workspace "$ws" --port "$port" >"$ws.sandbox.log" 2>&1
    sleep 10
    rate=$(timeout 60 "$bin" bench --workspace "$ws" --workload private --duration-s 10 2>&1 | grep '^committed:')
    echo "round $round $v: $rate"
    stop "$ws"
    sleep 3
    rm -rf "$ws" "$ws.sandbox.log"
  done
done
