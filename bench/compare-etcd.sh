#!/usr/bin/env bash
# Compares committed-write throughput of a 3-node Consort network and a 3-member etcd cluster on this machine.
#
# Both run on 127.0.0.1 with TLS (client certificates required; etcd's peers use mutual TLS as Consort's nodes do),
# each member/node with its own data directory on disk, and both are driven by the same client, `consort bench`,
# with the same connections, window (HTTP/2 streams in flight per connection) and duration: the Consort side
# with private logging writes (`POST /app/log/private`) to the primary, the etcd side with puts of the same
# messages through etcd's JSON gateway (`POST /v3/kv/put`) to the leader. Runs alternate Consort, etcd, Consort,
# etcd... for ROUNDS rounds; the last line is the ratio of the medians of committed tx/s.
#
# Knobs (environment): DURATION (seconds per run, default 10), ROUNDS (default 3), CONNECTIONS (default 4),
# WINDOW (default 64), WARMUP (seconds of unmeasured load on each side before round 1, default 5; 0 for none).
# CARGO_TARGET_DIR is respected; CONSORT_BIN skips the build.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-4}
WINDOW=${WINDOW:-64}
WARMUP=${WARMUP:-5}
# Longest a cluster may take to come up, and slack for one bench run beyond its duration (setup, commit wait).
START_TIMEOUT_S=120
BENCH_SLACK_S=120

log() { echo "compare-etcd: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

for v in DURATION ROUNDS CONNECTIONS WINDOW; do
  [[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} > 0)) || die "$v must be a positive integer (got '${!v}')"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a number of seconds (got '$WARMUP')"

# --- tools -------------------------------------------------------------------------------------------------------
command -v openssl >/dev/null || die "openssl is required"
command -v curl >/dev/null || die "curl is required"
if ! command -v etcd >/dev/null; then
  log "installing etcd-server (apt-get)"
  sudo_cmd=()
  ((EUID == 0)) || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq etcd-server >/dev/null
fi
log "$(etcd --version | head -1)"
if [[ -n ${CONSORT_BIN:-} ]]; then
  consort=$CONSORT_BIN
else
  log "building consort (release; no-op when up to date)"
  cargo build --release -q -p consort-cli
  consort=${CARGO_TARGET_DIR:-target}/release/consort
fi
[[ -x $consort ]] || die "no consort binary at $consort"

# --- state and cleanup -------------------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/compare-etcd.XXXXXX")
pgids=() # process groups this script started (each background server runs in its own session)

cleanup() {
  local status=$? g left
  trap - EXIT INT TERM
  for g in "${pgids[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  for _ in $(seq 100); do
    left=0
    for g in "${pgids[@]}"; do pgrep -g "$g" >/dev/null && left=1; done
    ((left == 0)) && break
    sleep 0.1
  done
  for g in "${pgids[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
  sleep 0.2
  for g in "${pgids[@]}"; do
    if pgrep -g "$g" >/dev/null; then
      log "warning: processes left in group $g: $(pgrep -g "$g" | tr '\n' ' ')"
    fi
  done
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts "$@" in the background in a session of its own (so the whole group can be signalled), output to file $1.
spawn() {
  local out=$1
  shift
  setsid "$@" >"$out" 2>&1 </dev/null &
  local pid=$!
  pgids+=("$pid")
}

# --- ports -------------------------------------------------------------------------------------------------------
# Below Linux's ephemeral range (32768+), so outgoing connections do not take them meanwhile; a port counts as free
# when nothing accepts a connection on it and this script has not handed it out already.
declare -A taken=()
port_free() {
  local p=$1
  [[ -z ${taken[$p]:-} ]] && ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null
}
free_port() {
  local p
  for _ in $(seq 1000); do
    p=$((20000 + RANDOM % 12000))
    if port_free "$p"; then
      taken[$p]=1
      echo "$p"
      return
    fi
  done
  die "no free port found"
}
# The sandbox serves node i on P+i and its Raft channel on P+100+i.
consort_base_port() {
  local p i ok
  for _ in $(seq 1000); do
    p=$((20000 + RANDOM % 11800))
    ok=1
    for i in 0 1 2 100 101 102; do port_free $((p + i)) || ok=0; done
    if ((ok)); then
      for i in 0 1 2 100 101 102; do taken[$((p + i))]=1; done
      echo "$p"
      return
    fi
  done
  die "no free port range for the sandbox"
}

# --- etcd: certificates and a 3-member cluster ------------------------------------------------------------------
pki=$work/pki
mkdir -p "$pki"
ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ec_key "$pki/ca.key"
openssl req -x509 -new -key "$pki/ca.key" -subj /CN=compare-etcd-ca -days 2 -out "$pki/ca.pem" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
issue() { # name: a certificate for 127.0.0.1 usable by TLS servers and clients (etcd peers are both)
  ec_key "$pki/$1.key"
  openssl req -new -key "$pki/$1.key" -subj "/CN=$1" -out "$pki/$1.csr" 2>/dev/null
  printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'extendedKeyUsage=serverAuth,clientAuth' \
    'basicConstraints=CA:FALSE' 'keyUsage=critical,digitalSignature' >"$pki/$1.ext"
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
    -extfile "$pki/$1.ext" -out "$pki/$1.pem" 2>/dev/null
}
issue server
issue client
curl_etcd() { # port path body
  curl -sS --max-time 5 --cacert "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key" \
    "https://127.0.0.1:$1$2" ${3:+-d "$3"}
}

client_ports=() peer_ports=() cluster=""
for i in 0 1 2; do
  client_ports+=("$(free_port)")
  peer_ports+=("$(free_port)")
  cluster+="${cluster:+,}m$i=https://127.0.0.1:${peer_ports[i]}"
done
for i in 0 1 2; do
  mkdir -p "$work/etcd/m$i"
  spawn "$work/etcd/m$i.log" etcd --name "m$i" --data-dir "$work/etcd/m$i/data" \
    --listen-client-urls "https://127.0.0.1:${client_ports[i]}" \
    --advertise-client-urls "https://127.0.0.1:${client_ports[i]}" \
    --listen-peer-urls "https://127.0.0.1:${peer_ports[i]}" \
    --initial-advertise-peer-urls "https://127.0.0.1:${peer_ports[i]}" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token compare-etcd \
    --cert-file "$pki/server.pem" --key-file "$pki/server.key" --trusted-ca-file "$pki/ca.pem" --client-cert-auth \
    --peer-cert-file "$pki/server.pem" --peer-key-file "$pki/server.key" --peer-trusted-ca-file "$pki/ca.pem" \
    --peer-client-cert-auth --logger zap
done
log "etcd: members on client ports ${client_ports[*]} (peers ${peer_ports[*]})"

# --- Consort: a 3-node sandbox -----------------------------------------------------------------------------------
consort_port=$(consort_base_port)
ws=$work/consort
mkdir -p "$ws"
spawn "$work/sandbox.log" "$consort" sandbox --nodes 3 --workspace "$ws" --port "$consort_port"
log "consort: sandbox on ports $consort_port-$((consort_port + 2))"

# --- wait for both -----------------------------------------------------------------------------------------------
deadline=$((SECONDS + START_TIMEOUT_S))
etcd_leader=""
while [[ -z $etcd_leader ]]; do
  ((SECONDS < deadline)) || die "etcd has no leader after ${START_TIMEOUT_S}s: $(tail -5 "$work/etcd/m0.log")"
  for i in 0 1 2; do
    status=$(curl_etcd "${client_ports[i]}" /v3/maintenance/status '{}' 2>/dev/null) || continue
    member=$(sed -n 's/.*"member_id":"\([0-9]*\)".*/\1/p' <<<"$status")
    leader=$(sed -n 's/.*"leader":"\([0-9]*\)".*/\1/p' <<<"$status")
    if [[ -n $member && $member == "$leader" ]]; then etcd_leader=127.0.0.1:${client_ports[i]}; fi
  done
  [[ -n $etcd_leader ]] || sleep 0.2
done
log "etcd: leader serves clients on $etcd_leader"
consort_primary=""
while [[ -z $consort_primary ]]; do
  ((SECONDS < deadline)) || die "the sandbox did not open after ${START_TIMEOUT_S}s: $(tail -5 "$work/sandbox.log")"
  consort_primary=$(sed -n 's|^Service is open. Primary: https://\(.*\)$|\1|p' "$work/sandbox.log" | head -1)
  [[ -n $consort_primary ]] || sleep 0.2
done
log "consort: primary serves clients on $consort_primary"

# --- runs --------------------------------------------------------------------------------------------------------
# Number after "key": in the one-line JSON report (null when absent); nested keys as "object.key".
json_num() {
  local report=$1 key=$2
  if [[ $key == *.* ]]; then
    sed -n "s/.*\"${key%%.*}\":{[^}]*\"${key#*.}\":\([-0-9.eE+]*\).*/\1/p" <<<"$report"
  else
    sed -n "s/.*\"$key\":\([-0-9.eE+]*\).*/\1/p" <<<"$report"
  fi | grep . || echo null
}

consort_runs=() etcd_runs=()
run() { # side round [seconds]: one bench run; without [seconds] a measured one of DURATION seconds
  local side=$1 round=$2 seconds=${3:-$DURATION} report
  local common=(--connections "$CONNECTIONS" --window "$WINDOW" --duration-s "$seconds" --json --quiet)
  local args=()
  if [[ $side == consort ]]; then
    args=(--target consort --workload private --workspace "$ws" --address "$consort_primary")
  else
    args=(--target etcd --address "$etcd_leader" --cacert "$pki/ca.pem" --cert "$pki/client.pem"
      --key "$pki/client.key" --key-prefix "compare/$round/")
  fi
  # In its own session like the servers, and waited for with `wait`, so INT/TERM reach the trap at once and the
  # cleanup stops the bench too.
  spawn "$work/bench.out" timeout $((seconds + BENCH_SLACK_S)) "$consort" bench "${args[@]}" "${common[@]}"
  wait "$!" || die "$side bench failed: $(tail -5 "$work/bench.out")"
  report=$(grep '^{' "$work/bench.out" | tail -1)
  local committed acked errors
  committed=$(json_num "$report" committed_tx_per_s)
  acked=$(json_num "$report" acked_tx_per_s)
  errors=$(json_num "$report" errors)
  [[ $committed != null ]] || die "$side: its last write was not committed: $report"
  if (($# == 3)); then
    log "warm-up $side: $(printf '%.0f' "$committed") tx/s committed (not counted)"
    return
  fi
  printf 'round %d %-7s committed %8.0f tx/s  acked %8.0f tx/s  ack p50/p99 %.1f/%.1f ms  commit p50/p99 %.1f/%.1f ms  errors %s\n' \
    "$round" "$side" "$committed" "$acked" \
    "$(json_num "$report" ack_latency_ms.p50)" "$(json_num "$report" ack_latency_ms.p99)" \
    "$(json_num "$report" commit_latency_ms.p50)" "$(json_num "$report" commit_latency_ms.p99)" "$errors"
  if [[ $side == consort ]]; then consort_runs+=("$committed"); else etcd_runs+=("$committed"); fi
}
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "consort bench, private writes of the same size, $CONNECTIONS connections x $WINDOW HTTP/2 streams, ${DURATION}s per run, $ROUNDS rounds"
echo "consort: 3 nodes, committed = covered by a committed signature transaction; etcd $(etcd --version | sed -n 's/etcd Version: //p'): 3 members, committed = acknowledged"
if ((WARMUP > 0)); then
  run consort 0 "$WARMUP"
  run etcd 0 "$WARMUP"
fi
for round in $(seq "$ROUNDS"); do
  run consort "$round"
  run etcd "$round"
done
consort_median=$(median "${consort_runs[@]}")
etcd_median=$(median "${etcd_runs[@]}")
printf 'consort median committed: %.0f tx/s (runs: %s)\n' "$consort_median" "$(printf '%.0f ' "${consort_runs[@]}")"
printf 'etcd    median committed: %.0f tx/s (runs: %s)\n' "$etcd_median" "$(printf '%.0f ' "${etcd_runs[@]}")"
awk -v c="$consort_median" -v e="$etcd_median" 'BEGIN { printf "consort/etcd committed-write ratio: %.2f\n", c / e }'
