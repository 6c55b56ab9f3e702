#!/usr/bin/env bash
# The reference runs of docs/benchmarks.md: every loadgen scenario on our broker, short enough
# (BENCH_DURATION seconds of sending each, about 8 minutes in all) to rerun after a change, then
# one chart per scenario drawn from the JSON results by loadgen/chart.py.
#
#   loadgen/reference.sh                           # build, run, redraw docs/benchmarks/*.svg
#   BENCH_BUILD=0 BENCH_CHARTS=/tmp/charts loadgen/reference.sh
#
# Settings:
#   BENCH_DURATION=10        seconds of sending per run
#   BENCH_PG=postgres://postgres@127.0.0.1:5432   where the IM runs create (and drop) their database
#   BENCH_OUT=<temp dir>     JSON results (one file per run, named as in docs/benchmarks.md) and logs
#   BENCH_CHARTS=docs/benchmarks   where the SVGs go
#   BENCH_NICE=0             nice value for the broker and loadgen
#   BENCH_BUILD=1            0: use the release binaries already in CARGO_TARGET_DIR
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10}
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/bench-reference.XXXXXX)}
CHARTS=${BENCH_CHARTS:-docs/benchmarks}
NICE=${BENCH_NICE:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
mkdir -p "$OUT"

# shellcheck source=loadgen/lib.sh
. loadgen/lib.sh
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "${BENCH_BUILD:-1}" = 1 ]; then
  say "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  cargo build --release --quiet -p loadgen --bin loadgen
  cargo build --release --quiet --bin broker
fi
RELEASE=$(cd "$CARGO_TARGET_DIR/release" && pwd)
LOADGEN=$RELEASE/loadgen
BROKER=$RELEASE/broker
say "results in $OUT"

BROKER_PID=
DB=
cleanup() {
  [ -n "$BROKER_PID" ] && stop_process "$BROKER_PID"
  [ -n "$DB" ] && psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# run NAME LABEL ARGS...: one loadgen run against the running broker, its JSON in $OUT/NAME.json.
run() {
  local name=$1 label=$2
  shift 2
  say "$name (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  nice -n "$NICE" "$LOADGEN" --json "$OUT/$name.json" --label "$label" --url "$BROKER_URL" \
    --jwt-secret "$SECRET" --broker-pid "$BROKER_PID" "$@" || true
}

# broker [VAR=VALUE...]: a fresh broker with the given settings (replacing the running one).
broker() {
  [ -n "$BROKER_PID" ] && stop_process "$BROKER_PID"
  SECRET=$(new_secret)
  start_broker "$OUT/broker-$(date +%s%N).log" "$@"
  BROKER_PID=$STARTED_PID
  BROKER_URL=$STARTED_URL
}

# The machine alone, then the broker's fan-out of the same size right after it, so that the two
# compare on the same machine load.
say "floor (no broker)"
nice -n "$NICE" "$LOADGEN" --json "$OUT/floor-1000-10.json" --label "2 writers" \
  floor --sockets 1000 --rate 10 --duration "$DURATION" || true
nice -n "$NICE" "$LOADGEN" --json "$OUT/floor-1000-10-1w.json" --label "1 writer" \
  floor --sockets 1000 --writers 1 --rate 10 --duration "$DURATION" || true

# Generic destinations, default configuration (SQLite), tokens with role `system`.
broker
run idle "5000 sessions" idle --connections 5000 --hold 10
broker
run fanout-1000-10 "1→1000 at 10/s" fanout --subscribers 1000 --rate 10 --duration "$DURATION"
run fanout-100 "1→100 max" fanout --subscribers 100 --duration "$DURATION"
run fanout-1000 "1→1000 max" fanout --subscribers 1000 --duration "$DURATION"
run pairs-topic "100 /topic max" pairs --pairs 100 --kind topic --duration "$DURATION"
run pairs-queue "100 /queue max" pairs --pairs 100 --kind queue --duration "$DURATION"
run pairs-topic-10 "100 /topic at 10/s" pairs --pairs 100 --kind topic --rate 10 \
  --duration "$DURATION"

# The IM layer: send limits raised, users with role `user`; PostgreSQL, then SQLite.
LIMITS=(BROKER_LIMITS_SEND_RATE=1000000/1s BROKER_LIMITS_STRANGER_RATE=1000000/1s
  BROKER_LIMITS_STRANGER_BEFORE_REPLY=1000000)
for BACKEND in postgres sqlite; do
  VERIFY=()
  if [ "$BACKEND" = postgres ]; then
    DB=bench_ref_$$
    psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
    broker BROKER_STORAGE_URL="$PG/$DB" "${LIMITS[@]}"
    VERIFY=(--verify-postgres "$PG/$DB")
  else
    broker BROKER_STORAGE_URL="sqlite://$OUT/im.db" "${LIMITS[@]}"
  fi
  # Warm-up: creates the private conversations, so the measured runs store into existing ones.
  "$LOADGEN" --url "$BROKER_URL" --jwt-secret "$SECRET" --jwt-role user \
    im --pairs 100 --duration 2 --rate 1000 >/dev/null || true
  run "im-$BACKEND-max" "$BACKEND, window 64" --jwt-role user \
    im --pairs 100 --window 64 --duration "$DURATION" "${VERIFY[@]}"
  run "im-$BACKEND-2000" "$BACKEND, 2000/s" --jwt-role user \
    im --pairs 100 --rate 2000 --duration "$DURATION" "${VERIFY[@]}"
  run "group-$BACKEND" "$BACKEND, 500 members" --jwt-role user \
    group --members 500 --rate 20 --duration "$DURATION" "${VERIFY[@]}"
  stop_process "$BROKER_PID"
  BROKER_PID=
  if [ -n "$DB" ]; then
    psql "$PG/postgres" -qc "DROP DATABASE $DB" >/dev/null
    DB=
  fi
done

say "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(uptime)"
# A run that failed leaves no file; chart what there is.
shopt -s nullglob
python3 loadgen/chart.py --out "$CHARTS" "$OUT"/floor-*.json "$OUT"/idle.json \
  "$OUT"/fanout-*.json "$OUT"/pairs-*.json "$OUT"/im-*.json "$OUT"/group-*.json
