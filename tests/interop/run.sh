#!/usr/bin/env bash
# Interop suite: the broker binary against @stomp/stompjs, the client browsers use, and
# stompit (STOMP over TCP).
#
# Builds the broker, starts it on a free port in a temporary directory, mints tokens with
# `broker token`, installs the suite's packages (npm ci) and runs `node --test`, then stops the
# broker. Exits with node's status; prints node's summary, and the broker's log on failure.
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
log="$work/broker.log"
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

echo "interop: starting the broker in $work"
(cd "$work" && exec "$broker" >"$log" 2>&1) &
pid=$!

# The broker logs one line per listener with the address it bound.
addr=""
for _ in $(seq 1 300); do
  addr="$(sed 's/\x1b\[[0-9;]*m//g' "$log" 2>/dev/null |
    sed -n 's/.*listening for HTTP.* addr=\([0-9.]*:[0-9]*\).*/\1/p' | head -n 1)"
  [ -n "$addr" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "interop: the broker exited before listening:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$addr" ]; then
  echo "interop: no listener line in the broker's log after 30 s:" >&2
  cat "$log" >&2
  exit 1
fi
echo "interop: broker listening on $addr"
tcp_addr=""
for _ in $(seq 1 50); do
  tcp_addr="$(sed 's/\x1b\[[0-9;]*m//g' "$log" |
    sed -n 's/.*listening for STOMP over TCP.* addr=\([0-9.]*:[0-9]*\).*/\1/p' | head -n 1)"
  [ -n "$tcp_addr" ] && break
  sleep 0.1
done
[ -n "$tcp_addr" ] || { echo "interop: no STOMP over TCP listener line in the log" >&2; cat "$log" >&2; exit 1; }
echo "interop: STOMP over TCP on $tcp_addr"
export INTEROP_TCP_ADDR="$tcp_addr"

mint() { (cd "$work" && "$broker" token "$@"); }
INTEROP_TOKEN_SYSTEM="$(mint --sub interop-backend --role system --ttl 1h)"
INTEROP_TOKEN_ALICE="$(mint --sub alice --ttl 1h)"
INTEROP_TOKEN_BOB="$(mint --sub bob --ttl 1h)"
export INTEROP_TOKEN_SYSTEM INTEROP_TOKEN_ALICE INTEROP_TOKEN_BOB
export INTEROP_WS_URL="ws://$addr/ws/im"
export INTEROP_HEARTBEAT_MS="$heartbeat_ms"

cd "$here"
echo "interop: npm ci"
npm ci --no-audit --no-fund --loglevel=error

status=0
node --test --test-reporter=spec ./*.test.mjs || status=$?
if [ "$status" -ne 0 ]; then
  echo "interop: FAILED (node exited with $status); broker log:" >&2
  tail -n 50 "$log" >&2
fi
exit "$status"
