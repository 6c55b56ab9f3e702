#!/usr/bin/env bash
# Interleaved A/B runs of two broker binaries: for each round, each binary (in alternating order)
# on a fresh process runs the same scenarios, so that the machine's drift over the runs falls
# on both alike. Prints loadgen's summary line per run; the JSON results stay in BENCH_OUT.
#
#   loadgen/ab.sh /path/to/broker-before /path/to/broker-after
#   BENCH_ROUNDS=4 BENCH_AB_SCENARIOS="im fanout" loadgen/ab.sh A B
#
# Scenarios (BENCH_AB_SCENARIOS, default "im fanout pairs"):
#   im       private messages, 1000 pairs, one send in flight per sender, on a fresh PostgreSQL
#            database (the IM write path); each sender's loop closes on its RECEIPT
#   im-delivery  the same, each loop closed on the delivery to the recipient
#   im100, im300 the same with 100 and 300 pairs (smaller batches: with im, the three batch
#            regimes of the write path's cost fit)
#   im-open5000  1000 pairs, 5,000 msg/s offered in all (open loop)
#   fanout   one publisher at 10/s to 1000 subscribers of a topic (the delivery path)
#   pairs    100 topic pairs at full speed (frames in and out)
# Settings: BENCH_ROUNDS (3), BENCH_DURATION (10 s), BENCH_PG (postgres://postgres@127.0.0.1:5432),
# BENCH_LOADGEN (the release loadgen of this tree), BENCH_OUT (a temp dir), BENCH_NICE (0).
set -euo pipefail
cd "$(dirname "$0")/.."

A=$1
B=$2
ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-10}
SCENARIOS=${BENCH_AB_SCENARIOS:-im fanout pairs}
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
LOADGEN=${BENCH_LOADGEN:-target/release/loadgen}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/bench-ab.XXXXXX)}
mkdir -p "$OUT"
NICE=${BENCH_NICE:-0}

# shellcheck source=loadgen/lib.sh
. loadgen/lib.sh
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

BROKER_PID=
DB=
cleanup() {
  [ -n "$BROKER_PID" ] && stop_process "$BROKER_PID"
  [ -n "$DB" ] && psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# one LABEL BINARY SCENARIO ROUND: a fresh broker, one scenario, its summary line.
one() {
  local label=$1 scenario=$3 round=$4 extra=() auth=(--jwt-role system)
  BROKER=$2
  SECRET=$(new_secret)
  local settings=(BROKER_LIMITS_SEND_RATE=1000000/1s BROKER_LIMITS_STRANGER_RATE=1000000/1s
    BROKER_LIMITS_STRANGER_BEFORE_REPLY=1000000)
  if [ "${scenario#im}" != "$scenario" ]; then
    DB=bench_ab_$$_$round
    psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
    settings+=(BROKER_STORAGE_URL="$PG/$DB")
    auth=(--jwt-role user)
  fi
  start_broker "$OUT/$label-$scenario-$round.log" "${settings[@]}"
  BROKER_PID=$STARTED_PID
  local common=(--url "$STARTED_URL" --jwt-secret "$SECRET" "${auth[@]}" --label "$label"
    --broker-pid "$BROKER_PID" --json "$OUT/$label-$scenario-$round.json")
  case $scenario in
    im*)
      local pairs=1000 load=(--window 1 --close-on receipt)
      case $scenario in
        im100) pairs=100 ;;
        im300) pairs=300 ;;
        im-delivery) load=(--window 1 --close-on delivery) ;;
        im-open5000) load=(--rate 5000) ;;
        im) ;;
        *) say "unknown scenario $scenario"; exit 2 ;;
      esac
      # Warm-up: creates the conversations, so the measured run stores into existing ones.
      "$LOADGEN" --url "$STARTED_URL" --jwt-secret "$SECRET" --jwt-role user \
        im --pairs "$pairs" --duration 3 --rate 1000 >/dev/null || true
      extra=(im --pairs "$pairs" "${load[@]}" --duration "$DURATION")
      ;;
    fanout) extra=(fanout --subscribers 1000 --rate 10 --duration "$DURATION") ;;
    pairs) extra=(pairs --pairs 100 --kind topic --duration "$DURATION") ;;
    *) say "unknown scenario $scenario"; exit 2 ;;
  esac
  printf '%s round %s %-7s ' "$label" "$round" "$scenario"
  nice -n "$NICE" "$LOADGEN" "${common[@]}" "${extra[@]}" 2>/dev/null | tail -n 1 || true
  stop_process "$BROKER_PID"
  BROKER_PID=
  if [ -n "$DB" ]; then
    psql "$PG/postgres" -qc "DROP DATABASE $DB" >/dev/null
    DB=
  fi
}

say "A = $A"
say "B = $B"
for round in $(seq 1 "$ROUNDS"); do
  for scenario in $SCENARIOS; do
    # Alternate which binary goes first, so neither always runs on a warmer machine.
    if [ $((round % 2)) = 1 ]; then
      one A "$A" "$scenario" "$round"
      one B "$B" "$scenario" "$round"
    else
      one B "$B" "$scenario" "$round"
      one A "$A" "$scenario" "$round"
    fi
  done
done
say "results in $OUT; machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
