#!/usr/bin/env bash
# Benchmarks our broker and RabbitMQ Web-STOMP with the same loadgen scenarios and prints one
# markdown table with a column per broker. See loadgen/README.md for what each scenario measures.
#
#   loadgen/run.sh                      # both brokers, default sizes
#   BENCH_RABBITMQ=0 loadgen/run.sh     # ours only
#
# Settings (environment):
#   BENCH_DURATION=10            seconds of publishing per flow scenario
#   BENCH_IDLE_CONNECTIONS=10000 sessions in the idle scenario
#   BENCH_IDLE_HOLD=10           seconds the idle sessions are held
#   BENCH_PAIRS=100              publisher/subscriber pairs
#   BENCH_PAYLOAD=100            message body bytes
#   BENCH_SOURCE_IPS=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4   loopback sources for connections
#   BENCH_RABBITMQ=1             also benchmark RabbitMQ Web-STOMP
#   BENCH_RABBITMQ_URL=ws://127.0.0.1:15674/ws
#   BENCH_RABBITMQ_RESTART=0     1: restart RabbitMQ with a raised open-files limit when its
#                                limit is below what the idle scenario needs (disruptive)
#   BENCH_OUT=<temp dir>         where the JSON results and logs go
#   BENCH_BROKER_LOG=info        RUST_LOG of our broker
#   BENCH_NICE=0                 nice value for both brokers and loadgen during the runs, e.g. -10
#                                on a machine shared with other work (needs root for < 0)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10}
IDLE=${BENCH_IDLE_CONNECTIONS:-10000}
HOLD=${BENCH_IDLE_HOLD:-10}
PAIRS=${BENCH_PAIRS:-100}
PAYLOAD=${BENCH_PAYLOAD:-100}
SOURCES=${BENCH_SOURCE_IPS:-127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4}
RABBIT=${BENCH_RABBITMQ:-1}
RABBIT_URL=${BENCH_RABBITMQ_URL:-ws://127.0.0.1:15674/ws}
RABBIT_RESTART=${BENCH_RABBITMQ_RESTART:-0}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/bench.XXXXXX)}
NICE=${BENCH_NICE:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

# shellcheck source=loadgen/lib.sh
. loadgen/lib.sh
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Each connection is a file descriptor in loadgen and in the broker.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE + 1000)) ]; then
  say "warning: open-files limit $(ulimit -n) is below $((IDLE + 1000)); idle connections will fail"
fi

say "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --release --quiet -p loadgen --bin loadgen
cargo build --release --quiet --bin broker
RELEASE=$(cd "$CARGO_TARGET_DIR/release" && pwd)
LOADGEN=$RELEASE/loadgen
BROKER=$RELEASE/broker
mkdir -p "$OUT/broker" "$OUT/rabbitmq"
say "results in $OUT"

BROKER_PID=
cleanup() {
  if [ -n "$BROKER_PID" ]; then
    stop_process "$BROKER_PID"
  fi
}
trap cleanup EXIT

# run_scenario DIR NAME ARGS...: one loadgen run; its JSON goes to DIR/NAME.json, its summary
# line to the console. A scenario that loses messages still reports, so failures do not stop
# the suite.
run_scenario() {
  local dir=$1 name=$2
  shift 2
  say "$(basename "$dir"): $name"
  nice -n "$NICE" "$LOADGEN" --json "$dir/$name.json" "$@" || true
}

# flows DIR AUTH...: the message-flow scenarios against one broker.
flows() {
  local dir=$1
  shift
  run_scenario "$dir" fanout-100 "$@" fanout --subscribers 100 --duration "$DURATION" --payload "$PAYLOAD"
  run_scenario "$dir" fanout-1000 "$@" fanout --subscribers 1000 --duration "$DURATION" --payload "$PAYLOAD"
  run_scenario "$dir" fanout-1000-10 "$@" fanout --subscribers 1000 --rate 10 --duration "$DURATION" --payload "$PAYLOAD"
  run_scenario "$dir" pairs-topic "$@" pairs --pairs "$PAIRS" --kind topic --duration "$DURATION" --payload "$PAYLOAD"
  run_scenario "$dir" pairs-queue "$@" pairs --pairs "$PAIRS" --kind queue --duration "$DURATION" --payload "$PAYLOAD"
}

# --- our broker ------------------------------------------------------------------------------
# Idle first, on a fresh process, so that its RSS before is the broker's real baseline.
SECRET=$(new_secret)
start_broker "$OUT/broker/broker.log"
BROKER_PID=$STARTED_PID
BROKER_URL=$STARTED_URL
say "broker pid $BROKER_PID at $BROKER_URL"
OURS=(--url "$BROKER_URL" --jwt-secret "$SECRET" --jwt-role system --label broker
  --broker-pid "$BROKER_PID")
run_scenario "$OUT/broker" idle "${OURS[@]}" --source-ips "$SOURCES" \
  idle --connections "$IDLE" --hold "$HOLD"
sleep 2
flows "$OUT/broker" "${OURS[@]}"
stop_process "$BROKER_PID"
BROKER_PID=

# --- RabbitMQ Web-STOMP ----------------------------------------------------------------------
beam_pid() { pgrep -x beam.smp | head -1; }
beam_nofile() { awk '/Max open files/ {print $4}' "/proc/$1/limits"; }
# renice_all PID VALUE: every thread of a running process (setpriority acts per thread).
renice_all() {
  local tid
  for tid in /proc/"$1"/task/*; do
    renice -n "$2" -p "$(basename "$tid")" >/dev/null 2>&1 || true
  done
}

start_rabbitmq() {
  # rabbitmq-server switches user through su, whose PAM session resets the open-files limit to
  # 1024; setpriv keeps ours. Erlang sizes its poll set at boot, so the limit must be set then.
  (
    ulimit -n "$(ulimit -Hn)"
    cd /var/lib/rabbitmq
    HOME=/var/lib/rabbitmq setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
      /usr/sbin/rabbitmq-server -detached
  )
  for _ in $(seq 1 60); do port_open 5672 && return 0; sleep 1; done
  say "RabbitMQ did not come up"
  return 1
}

if [ "$RABBIT" = 1 ]; then
  if ! port_open 5672; then
    say "starting RabbitMQ"
    start_rabbitmq
  fi
  pid=$(beam_pid)
  if [ -n "$pid" ] && [ "$(beam_nofile "$pid")" -lt $((IDLE + 1000)) ]; then
    if [ "$RABBIT_RESTART" = 1 ]; then
      say "restarting RabbitMQ with a raised open-files limit (was $(beam_nofile "$pid"))"
      rabbitmqctl stop >/dev/null 2>&1 || true
      start_rabbitmq
    else
      say "warning: RabbitMQ's open-files limit is $(beam_nofile "$pid"); idle connections past it" \
        "will fail (BENCH_RABBITMQ_RESTART=1 restarts it with a higher limit)"
    fi
  fi
  if ! port_open 15674; then
    say "enabling rabbitmq_web_stomp"
    rabbitmq-plugins enable rabbitmq_web_stomp >/dev/null
    for _ in $(seq 1 30); do port_open 15674 && break; sleep 1; done
  fi
  BEAM=$(beam_pid)
  BEAM_NICE=$(ps -o ni= -p "$BEAM" | tr -d ' ')
  if [ "$NICE" != 0 ]; then
    renice_all "$BEAM" "$NICE"
    trap 'renice_all "$BEAM" "$BEAM_NICE"; cleanup' EXIT
  fi
  THEIRS=(--url "$RABBIT_URL" --login guest --passcode guest --label rabbitmq
    --broker-pid "$BEAM")
  run_scenario "$OUT/rabbitmq" idle "${THEIRS[@]}" --source-ips "$SOURCES" \
    idle --connections "$IDLE" --hold "$HOLD"
  # RabbitMQ deletes the idle sessions' queues asynchronously; let it finish first.
  sleep 15
  flows "$OUT/rabbitmq" "${THEIRS[@]}"
fi

say "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; broker and loadgen share them"
"$LOADGEN" report --column "broker=$OUT/broker" --column "RabbitMQ Web-STOMP=$OUT/rabbitmq"
