#!/usr/bin/env bash
# Interop suite: the broker binary against @stomp/stompjs, the client browsers use, and
# stompit (STOMP over TCP).
#
# Builds the broker, mints tokens with `broker token`, installs the suite's packages (npm ci) and
# runs `node --test` twice, each time against a broker started for it on free ports in a
# temporary directory: over ws:// and plain TCP, then over wss:// and STOMP over TLS with a
# certificate made here (openssl). Exits non-zero when either run fails; prints node's summary,
# and the broker's log on failure.
#
#   tests/interop/run.sh            # from anywhere in the repository
#
# INTEROP_HEARTBEAT_MS sets the heart-beat the broker offers (default 200). The tests get the
# broker's URL and the tokens as INTEROP_* variables: the broker reads every BROKER_* variable
# as a configuration key.

set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
heartbeat_ms="${INTEROP_HEARTBEAT_MS:-200}"

cd "$root"
echo "interop: building the broker"
cargo build --bin broker
target_dir="$(cargo metadata --format-version 1 --no-deps |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
broker="$target_dir/debug/broker"
[ -x "$broker" ] || { echo "interop: no broker binary at $broker" >&2; exit 1; }

work="$(mktemp -d)"
log=""
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Only this run's settings: nothing from the caller's environment or a broker.toml.
for name in $(env | sed -n 's/^\(BROKER_[A-Za-z0-9_]*\)=.*/\1/p'); do
  unset "$name"
done
export BROKER_AUTH_JWT_SECRET="interop-$$-$RANDOM$RANDOM"
export BROKER_SERVER_HTTP_ADDR="127.0.0.1:0"
export BROKER_SERVER_STOMP_TCP_ADDR="127.0.0.1:0"
export BROKER_STOMP_HEARTBEAT_MS="$heartbeat_ms,$heartbeat_ms"
export BROKER_CLUSTER_NODE_ID="interop"
export NO_COLOR=1
export RUST_LOG=info

mint() { (cd "$work" && "$broker" token "$@"); }
INTEROP_TOKEN_SYSTEM="$(mint --sub interop-backend --role system --ttl 1h)"
INTEROP_TOKEN_ALICE="$(mint --sub alice --ttl 1h)"
INTEROP_TOKEN_BOB="$(mint --sub bob --ttl 1h)"
export INTEROP_TOKEN_SYSTEM INTEROP_TOKEN_ALICE INTEROP_TOKEN_BOB
export INTEROP_HEARTBEAT_MS="$heartbeat_ms"

# A certificate authority and a certificate for 127.0.0.1, for the run over TLS: Node trusts
# the authority through NODE_EXTRA_CA_CERTS.
tls_dir="$work/tls"
mkdir -p "$tls_dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=interop CA" -keyout "$tls_dir/ca.key" -out "$tls_dir/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$tls_dir/key.pem" -out "$tls_dir/cert.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls_dir/san.ext"
openssl x509 -req -in "$tls_dir/cert.csr" -CA "$tls_dir/ca.pem" -CAkey "$tls_dir/ca.key" \
  -CAcreateserial -days 2 -extfile "$tls_dir/san.ext" -out "$tls_dir/cert.pem" 2>/dev/null

# The address the broker logged for a listener ($1: a pattern of its line).
logged() {
  sed 's/\x1b\[[0-9;]*m//g' "$log" 2>/dev/null |
    sed -n "s/.*$1.* addr=\([0-9.]*:[0-9]*\).*/\1/p" | head -n 1
}

stop_broker() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  pid=""
}

# Runs the suite against a broker started for it: $1 is `plain` or `tls`.
suite() {
  local mode=$1 scheme=ws over=TCP
  if [ "$mode" = tls ]; then
    scheme=wss over=TLS
    export BROKER_SERVER_TLS_CERT_FILE="$tls_dir/cert.pem" BROKER_SERVER_TLS_KEY_FILE="$tls_dir/key.pem"
    export NODE_EXTRA_CA_CERTS="$tls_dir/ca.pem" INTEROP_TCP_TLS=1
  else
    unset BROKER_SERVER_TLS_CERT_FILE BROKER_SERVER_TLS_KEY_FILE NODE_EXTRA_CA_CERTS INTEROP_TCP_TLS
  fi
  log="$work/broker-$mode.log"
  echo "interop ($mode): starting the broker in $work"
  (cd "$work" && exec "$broker" >"$log" 2>&1) &
  pid=$!
  # The broker logs one line per listener with the address it bound.
  local addr="" tcp_addr=""
  for _ in $(seq 1 300); do
    addr="$(logged 'listening for HTTP')"
    tcp_addr="$(logged "listening for STOMP over $over")"
    [ -n "$addr" ] && [ -n "$tcp_addr" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "interop: the broker exited before listening:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  if [ -z "$addr" ] || [ -z "$tcp_addr" ]; then
    echo "interop: no listener lines in the broker's log after 30 s:" >&2
    cat "$log" >&2
    return 1
  fi
  echo "interop ($mode): $scheme://$addr/ws/im, STOMP over $over on $tcp_addr"
  export INTEROP_WS_URL="$scheme://$addr/ws/im" INTEROP_TCP_ADDR="$tcp_addr"
  local status=0
  (cd "$here" && node --test --test-reporter=spec ./*.test.mjs) || status=$?
  if [ "$status" -ne 0 ]; then
    echo "interop ($mode): FAILED (node exited with $status); broker log:" >&2
    tail -n 50 "$log" >&2
  fi
  stop_broker
  return "$status"
}

echo "interop: npm ci"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

status=0
suite plain || status=$?
suite tls || status=$?
exit "$status"
