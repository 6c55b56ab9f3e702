# Shared by the benchmark scripts (sourced, not run): messages and starting our broker.
# Expects BROKER (the binary) and NICE to be set.

say() { printf '== %s\n' "$*" >&2; }

# A random JWT secret for one benchmark's broker and loadgen.
new_secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# start_broker LOG [VAR=VALUE...]: our broker on a free port in a fresh directory (its SQLite
# and generated files stay there), with the JWT secret $SECRET and the given settings, logging
# to LOG. Sets STARTED_PID and STARTED_URL (its ws://…/ws/im address); exits when it does not
# come up.
start_broker() {
  if ! try_start_broker "$@"; then
    cat "$1" >&2
    say "the broker did not start (log: $1)"
    exit 1
  fi
}

# try_start_broker LOG [VAR=VALUE...]: as start_broker, but returns 1 when the broker does not
# come up (e.g. it refuses a setting it does not know yet), leaving the caller to decide.
try_start_broker() {
  local log=$1 dir
  shift
  dir=$(mktemp -d /tmp/bench-broker.XXXXXX)
  (
    cd "$dir"
    env BROKER_SERVER_HTTP_ADDR=127.0.0.1:0 BROKER_AUTH_JWT_SECRET="$SECRET" \
      RUST_LOG="${BENCH_BROKER_LOG:-info}" NO_COLOR=1 "$@" nice -n "$NICE" "$BROKER"
  ) >"$log" 2>&1 &
  STARTED_PID=$!
  STARTED_URL=
  for _ in $(seq 1 100); do
    STARTED_URL=$(grep -aoE 'ws://[0-9.]+:[0-9]+/ws/im' "$log" | head -1 || true)
    [ -n "$STARTED_URL" ] && break
    kill -0 "$STARTED_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$STARTED_URL" ]; then
    stop_process "$STARTED_PID"
    return 1
  fi
}

# stop_process PID: ends a process this script started, and waits for it.
stop_process() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
