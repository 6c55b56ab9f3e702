#!/usr/bin/env bash
# The IM benchmark: private messages between user pairs and messages to a 500-member group,
# through the broker's IM layer, stored in PostgreSQL (a fresh database, dropped afterwards) and
# in SQLite. Prints loadgen's summary line per run; the JSON results stay in BENCH_OUT.
# See loadgen/README.md for what each run measures.
#
#   loadgen/run_im.sh
#   BENCH_IM_BACKENDS=postgres loadgen/run_im.sh
#
# Settings (environment):
#   BENCH_IM_BACKENDS="postgres sqlite"   databases to run on
#   BENCH_PG=postgres://postgres@127.0.0.1:5432   server for the scratch database
#   BENCH_DURATION=10        seconds of sending per run
#   BENCH_IM_PAIRS=100       user pairs
#   BENCH_IM_WINDOW=64       closed loop: sends per sender awaiting their RECEIPT
#   BENCH_IM_RATES="10000"   open-loop total rates (messages/s), one run each
#   BENCH_GROUP_MEMBERS=500  group size
#   BENCH_GROUP_RATE=20      group messages per second
#   BENCH_PAYLOAD=100        characters of content
#   BENCH_OUT=<temp dir>     JSON results and the broker's logs
#   BENCH_NICE=0             nice value for the broker and loadgen
#   BENCH_BUILD=1            0: use the release binaries already in CARGO_TARGET_DIR
set -euo pipefail
cd "$(dirname "$0")/.."

BACKENDS=${BENCH_IM_BACKENDS:-postgres sqlite}
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
DURATION=${BENCH_DURATION:-10}
PAIRS=${BENCH_IM_PAIRS:-100}
WINDOW=${BENCH_IM_WINDOW:-64}
RATES=${BENCH_IM_RATES:-10000}
MEMBERS=${BENCH_GROUP_MEMBERS:-500}
GROUP_RATE=${BENCH_GROUP_RATE:-20}
PAYLOAD=${BENCH_PAYLOAD:-100}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/bench-im.XXXXXX)}
NICE=${BENCH_NICE:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

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
  if [ -n "$BROKER_PID" ]; then
    stop_process "$BROKER_PID"
  fi
  if [ -n "$DB" ]; then
    psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# run NAME ARGS...: one loadgen run, its JSON in $OUT/<backend>/NAME.json.
run() {
  local name=$1
  shift
  say "$BACKEND: $name (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  nice -n "$NICE" "$LOADGEN" --json "$OUT/$BACKEND/$name.json" --url "$BROKER_URL" \
    --jwt-secret "$SECRET" --jwt-role user --label "$BACKEND" --broker-pid "$BROKER_PID" \
    "$@" || true
}

for BACKEND in $BACKENDS; do
  mkdir -p "$OUT/$BACKEND"
  VERIFY=()
  case $BACKEND in
    postgres)
      DB=bench_im_$$
      psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
      URL=$PG/$DB
      VERIFY=(--verify-postgres "$URL")
      ;;
    sqlite) URL=sqlite://$OUT/sqlite/broker.db ;;
    *) say "unknown backend $BACKEND"; exit 1 ;;
  esac
  # The shipped send limits (30 messages per 10 s per user) and the stranger rules would
  # refuse nearly every send.
  SECRET=$(new_secret)
  start_broker "$OUT/$BACKEND/broker.log" BROKER_STORAGE_URL="$URL" \
    BROKER_LIMITS_SEND_RATE=1000000/1s BROKER_LIMITS_STRANGER_RATE=1000000/1s \
    BROKER_LIMITS_STRANGER_BEFORE_REPLY=1000000
  BROKER_PID=$STARTED_PID
  BROKER_URL=$STARTED_URL
  say "$BACKEND: broker pid $BROKER_PID at $BROKER_URL"
  # Warm-up: creates the private conversations, so the measured runs store into existing ones.
  "$LOADGEN" --url "$BROKER_URL" --jwt-secret "$SECRET" --jwt-role user \
    im --pairs "$PAIRS" --duration 2 --rate 1000 >/dev/null || true
  run im-max im --pairs "$PAIRS" --window "$WINDOW" --duration "$DURATION" \
    --payload "$PAYLOAD" "${VERIFY[@]}"
  for rate in $RATES; do
    run "im-$rate" im --pairs "$PAIRS" --rate "$rate" --duration "$DURATION" \
      --payload "$PAYLOAD" "${VERIFY[@]}"
  done
  run "group-$MEMBERS" group --members "$MEMBERS" --rate "$GROUP_RATE" --duration "$DURATION" \
    --payload "$PAYLOAD" "${VERIFY[@]}"
  stop_process "$BROKER_PID"
  BROKER_PID=
  if [ -n "$DB" ]; then
    psql "$PG/postgres" -qc "DROP DATABASE $DB" >/dev/null
    DB=
  fi
done
say "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(uptime)"
