#!/usr/bin/env bash
# JavaScript app platform against the built-in Rust logging app, in one run on one 3-node sandbox: deploys
# examples/logging-js by governance (the same API as the Rust logging app, private writes), then alternates
# `consort bench --workload private` and `--workload js` for ROUNDS rounds of DURATION_S seconds each, and prints
# every run's committed rate, the medians and their ratio. Quote medians and ratios: these machines are shared and
# noisy.
#
#   bench/js-vs-rust.sh [BINARY] [ROUNDS] [DURATION_S]      (default: target/release/consort 3 10)
set -eu
BIN=${1:-target/release/consort}
ROUNDS=${2:-3}
DURATION_S=${3:-10}
ws=$(mktemp -d /tmp/js-vs-rust.XXXX)
stop() {
  [ -f "$ws/sandbox.json" ] || return 0
  for pid in $(python3 -c "import json;print(' '.join(str(n['pid']) for n in json.load(open('$ws/sandbox.json'))['nodes']))"); do
    kill "$pid" 2>/dev/null || true
  done
}
trap stop EXIT
timeout 120 "$BIN" sandbox --detach --workspace "$ws" --port 18200 >"$ws/sandbox.log" 2>&1
"$BIN" gov js-app-proposal --app-dir examples/logging-js --out "$ws/set_js_app.json"
gov() { "$BIN" gov --workspace "$ws" --address 127.0.0.1:18200 "$@"; }
id=$(gov propose "$ws/set_js_app.json" | python3 -c "import json,sys; t=sys.stdin.read(); print(json.loads(t[t.index('{'):])['proposalId'])")
gov vote "$id" --accept >/dev/null
sleep 5
declare -a rust js
for round in $(seq 1 "$ROUNDS"); do
  for w in private js; do
    rate=$(timeout $((DURATION_S + 60)) "$BIN" bench --workspace "$ws" --workload "$w" --duration-s "$DURATION_S" 2>&1 |
      grep '^committed:' | grep -oE '[0-9]+(\.[0-9]+)? tx/s' | head -1 | cut -d' ' -f1)
    echo "round $round $w: ${rate:-failed} committed tx/s"
    if [ "$w" = private ]; then rust+=("${rate:-0}"); else js+=("${rate:-0}"); fi
  done
done
python3 - "${rust[*]}" "${js[*]}" <<'PY'
import statistics, sys
rust = [float(x) for x in sys.argv[1].split()]
js = [float(x) for x in sys.argv[2].split()]
mr, mj = statistics.median(rust), statistics.median(js)
print(f"median rust logging app: {mr:.0f} tx/s; median JS logging app: {mj:.0f} tx/s; JS/Rust ratio {mj / mr:.2f}")
PY
