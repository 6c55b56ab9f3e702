#!/usr/bin/env bash
# The cost of the cluster relay: the same loadgen pairs on one node, on a two-node cluster with
# publishers and subscribers on the same node, and across the two nodes (publishers on node a,
# subscribers on node b, so that every message goes through RabbitMQ). See docs/benchmarks.md.
#
#   loadgen/cluster.sh
#
# Settings (environment):
#   BENCH_DURATION=10      seconds of publishing per scenario
#   BENCH_PAIRS=100        publisher/subscriber pairs
#   BENCH_RATE=10          messages per second per publisher in the fixed-rate (latency) runs
#   BENCH_PAYLOAD=100      message body bytes
#   BENCH_NICE=0           nice value for the nodes and loadgen (needs root for < 0)
#   BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432   server for the cluster's database
#   BENCH_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f
#   BENCH_REDIS_URL=redis://127.0.0.1:6379
#   BENCH_OUT=<temp dir>   where the JSON results and node logs go
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10}
PAIRS=${BENCH_PAIRS:-100}
RATE=${BENCH_RATE:-10}
PAYLOAD=${BENCH_PAYLOAD:-100}
NICE=${BENCH_NICE:-0}
PG=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
AMQP=${BENCH_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
REDIS=${BENCH_REDIS_URL:-redis://127.0.0.1:6379}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/bench-cluster.XXXXXX)}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

# shellcheck source=loadgen/lib.sh
. loadgen/lib.sh

say "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --release --quiet -p loadgen --bin loadgen
cargo build --release --quiet --bin broker
RELEASE=$(cd "$CARGO_TARGET_DIR/release" && pwd)
LOADGEN=$RELEASE/loadgen
BROKER=$RELEASE/broker
SECRET=$(new_secret)
DB=bench_cluster_$$
mkdir -p "$OUT"
say "results in $OUT"

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    stop_process "$pid"
  done
  PIDS=()
}
trap 'cleanup; psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT

# start_node NAME VAR=VALUE...: a node logging to OUT/NAME.log; sets NODE_URL and NODE_PID.
start_node() {
  local name=$1
  shift
  start_broker "$OUT/$name.log" "$@"
  NODE_PID=$STARTED_PID
  NODE_URL=$STARTED_URL
  PIDS+=("$NODE_PID")
  say "node $name pid $NODE_PID at $NODE_URL"
}

# cluster_node NAME: a node of the two-node cluster.
cluster_node() {
  start_node "$1" BROKER_CLUSTER_NODE_ID="bench-$1-$$" BROKER_STORAGE_URL="$PG/$DB" \
    BROKER_RELAY_AMQP_URL="$AMQP" BROKER_PRESENCE_REDIS_URL="$REDIS"
}

# run DIR NAME ARGS...: one loadgen run; JSON to DIR/NAME.json, summary line to the console.
run() {
  local dir=$1 name=$2
  shift 2
  mkdir -p "$dir"
  say "$(basename "$dir"): $name"
  nice -n "$NICE" "$LOADGEN" --json "$dir/$name.json" --jwt-secret "$SECRET" --jwt-role system \
    "$@" || true
}

# scenarios DIR ARGS...: the pairs runs, throughput then latency, /topic then /queue.
scenarios() {
  local dir=$1
  shift
  run "$dir" pairs-topic "$@" pairs --pairs "$PAIRS" --kind topic --duration "$DURATION" \
    --payload "$PAYLOAD"
  run "$dir" pairs-topic-rate "$@" pairs --pairs "$PAIRS" --kind topic --rate "$RATE" \
    --duration "$DURATION" --payload "$PAYLOAD"
  run "$dir" pairs-queue "$@" pairs --pairs "$PAIRS" --kind queue --duration "$DURATION" \
    --payload "$PAYLOAD"
  run "$dir" pairs-queue-rate "$@" pairs --pairs "$PAIRS" --kind queue --rate "$RATE" \
    --duration "$DURATION" --payload "$PAYLOAD"
}

say "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# One node, no relay: the baseline.
start_node single
scenarios "$OUT/single" --url "$NODE_URL" --label single --broker-pid "$NODE_PID"
cleanup

# Two nodes sharing PostgreSQL, RabbitMQ and Redis.
psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
cluster_node a
A_URL=$NODE_URL
A_PID=$NODE_PID
cluster_node b
B_URL=$NODE_URL
scenarios "$OUT/same-node" --url "$A_URL" --label cluster-same-node --broker-pid "$A_PID"
scenarios "$OUT/cross-node" --url "$B_URL" --publish-url "$A_URL" --label cluster-cross-node \
  --broker-pid "$A_PID"
cleanup
# The /queue pairs left their durable queues in RabbitMQ; one call deletes them all.
rabbitmqctl -q eval '[rabbit_amqqueue:delete(Q, false, false, <<"bench">>)
  || Q <- rabbit_amqqueue:list(),
     binary:match(element(4, amqqueue:get_name(Q)), <<"stomp.queue.lg-pair-">>) =/= nomatch].' \
  >/dev/null || say "could not delete the stomp.queue.lg-pair-* queues"

say "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$LOADGEN" report --column "one node=$OUT/single" --column "cluster, same node=$OUT/same-node" \
  --column "cluster, across nodes=$OUT/cross-node"
