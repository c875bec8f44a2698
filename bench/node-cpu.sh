#!/usr/bin/env bash
# CPU time each node of a fresh 3-node sandbox spends per committed transaction under one `consort bench` run:
# starts the sandbox, reads every node's user+system time from /proc before and after the bench, and prints the
# committed rate and microseconds of CPU per transaction for the primary and each backup. With --rate, two
# workloads compare at the same load (per-message costs then weigh the same); without, at saturation.
#
#   bench/node-cpu.sh [BINARY] [WORKLOAD] [DURATION_S] [BENCH ARGS...]   (default: target/release/consort erc20 10)
set -eu
BIN=${1:-target/release/consort}
WORKLOAD=${2:-erc20}
DURATION_S=${3:-10}
shift $(($# < 3 ? $# : 3))
ws=$(mktemp -d /tmp/node-cpu.XXXX)
pids() { python3 -c "import json;print(' '.join(str(n['pid']) for n in json.load(open('$ws/sandbox.json'))['nodes']))"; }
stop() { [ -f "$ws/sandbox.json" ] && for p in $(pids); do kill "$p" 2>/dev/null || true; done; }
trap stop EXIT
timeout 120 "$BIN" sandbox --detach --workspace "$ws" --port 18500 >"$ws/sandbox.log" 2>&1
ticks() { for p in $(pids); do awk '{print $14 + $15}' "/proc/$p/stat"; done | paste -sd' '; }
extra=()
[ "$WORKLOAD" = erc20 ] && extra=(--accounts 300)
before=$(ticks)
out=$("$BIN" bench --workspace "$ws" --workload "$WORKLOAD" --duration-s "$DURATION_S" --quiet "${extra[@]}" "$@" 2>&1 || true)
after=$(ticks)
echo "$out" | grep -E '^(committed|ack latency|errors)'
rate=$(echo "$out" | grep '^committed:' | grep -oE '[0-9]+(\.[0-9]+)? tx/s' | head -1 | cut -d' ' -f1)
python3 - "$before" "$after" "${rate:-0}" "$DURATION_S" "$(getconf CLK_TCK)" <<'PY'
import sys
before, after = [list(map(int, a.split())) for a in sys.argv[1:3]]
rate, seconds, hz = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
txs = rate * seconds
if not txs:
    sys.exit("no committed rate: the bench failed")
per_tx = [round((a - b) / hz / txs * 1e6) for b, a in zip(before, after)]
print(f"CPU per committed transaction (us): primary {per_tx[0]}, backups {per_tx[1:]} (setup included)")
PY
