#!/usr/bin/env bash
# The IM benchmark: private messages between user pairs and messages to a 500-member group,
# through the broker's IM layer, stored in PostgreSQL (a fresh database, dropped afterwards) and
# in SQLite; backend notifications over REST; one connection pipelining into one or many
# conversations; window 1 closed on the RECEIPT or on the delivery; and chat latency with and
# without a large notification call beside it. Prints loadgen's summary line per run; the JSON
# results stay in BENCH_OUT. See loadgen/README.md for what each run measures.
#
#   loadgen/run_im.sh
#   BENCH_IM_BACKENDS=postgres loadgen/run_im.sh
#   BENCH_IM_BACKENDS=postgres BENCH_IM_RUNS="notify fairness" loadgen/run_im.sh
#
# Settings (environment):
#   BENCH_IM_BACKENDS="postgres sqlite"   databases to run on
#   BENCH_IM_RUNS="pairs rates group notify pipeline delivery fairness"   runs to make:
#       pairs     im closed loop, BENCH_IM_PAIRS pairs, window BENCH_IM_WINDOW
#       rates     im open loop at each of BENCH_IM_RATES
#       group     group of BENCH_GROUP_MEMBERS at BENCH_GROUP_RATE
#       notify    one REST call to BENCH_NOTIFY_USERS users (BENCH_NOTIFY_CALLS calls,
#                 BENCH_NOTIFY_ONLINE of them online)
#       pipeline  im --pairs 1 --window 64: one conversation, then --conversations 100
#       delivery  im --pairs 1000 --window 1: --close-on receipt, then --close-on delivery
#       fairness  im --pairs 100 --rate 1000 alone, then with a notify call to
#                 BENCH_FAIRNESS_NOTIFY_USERS users started 2 s in; both p99s side by side
#   BENCH_NOTIFY_MAX_USERS=10000   BROKER_LIMITS_NOTIFICATION_MAX_USERS for the broker when
#                            notify or fairness runs; empty: not set. A broker that refuses the
#                            key is started without it, and notify calls are capped at 1000 users
#   BENCH_NOTIFY_USERS=5000  BENCH_NOTIFY_CALLS=1  BENCH_NOTIFY_ONLINE=100
#   BENCH_FAIRNESS_NOTIFY_USERS=10000
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
RUNS=" ${BENCH_IM_RUNS:-pairs rates group notify pipeline delivery fairness} "
NOTIFY_MAX_USERS=${BENCH_NOTIFY_MAX_USERS-10000}
NOTIFY_USERS=${BENCH_NOTIFY_USERS:-5000}
NOTIFY_CALLS=${BENCH_NOTIFY_CALLS:-1}
NOTIFY_ONLINE=${BENCH_NOTIFY_ONLINE:-100}
FAIRNESS_NOTIFY_USERS=${BENCH_FAIRNESS_NOTIFY_USERS:-10000}
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

# selected RUN: whether RUN is in BENCH_IM_RUNS.
selected() { [[ $RUNS == *" $1 "* ]]; }

# notify_users N: N, or the broker's cap of today (1000) when it refused the raised limit.
notify_users() {
  if [ -n "$NOTIFY_CAP" ] && [ "$1" -gt "$NOTIFY_CAP" ]; then
    echo "$NOTIFY_CAP"
  else
    echo "$1"
  fi
}

# tail_latency FILE: the latency p99 / p99.9 (ms) of a loadgen JSON result, or "-".
tail_latency() {
  python3 -c 'import json,sys; l=json.load(open(sys.argv[1]))["latency"]; print(l["p99_ms"], "/", l["p999_ms"])' \
    "$1" 2>/dev/null || echo -
}

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
  LIMITS=(BROKER_STORAGE_URL="$URL" BROKER_LIMITS_SEND_RATE=1000000/1s
    BROKER_LIMITS_STRANGER_RATE=1000000/1s BROKER_LIMITS_STRANGER_BEFORE_REPLY=1000000)
  NOTIFY_CAP=
  if [ -n "$NOTIFY_MAX_USERS" ] && { selected notify || selected fairness; }; then
    # A broker that does not know the key yet refuses to start with it.
    if try_start_broker "$OUT/$BACKEND/broker.log" "${LIMITS[@]}" \
      BROKER_LIMITS_NOTIFICATION_MAX_USERS="$NOTIFY_MAX_USERS"; then
      say "$BACKEND: notification calls up to $NOTIFY_MAX_USERS users"
    else
      NOTIFY_CAP=1000
      say "$BACKEND: the broker refuses BROKER_LIMITS_NOTIFICATION_MAX_USERS; notify calls capped at $NOTIFY_CAP users"
      start_broker "$OUT/$BACKEND/broker.log" "${LIMITS[@]}"
    fi
  else
    start_broker "$OUT/$BACKEND/broker.log" "${LIMITS[@]}"
  fi
  BROKER_PID=$STARTED_PID
  BROKER_URL=$STARTED_URL
  say "$BACKEND: broker pid $BROKER_PID at $BROKER_URL"
  # Warm-up: creates the private conversations, so the measured runs store into existing ones.
  "$LOADGEN" --url "$BROKER_URL" --jwt-secret "$SECRET" --jwt-role user \
    im --pairs "$PAIRS" --duration 2 --rate 1000 >/dev/null || true
  if selected pairs; then
    run im-max im --pairs "$PAIRS" --window "$WINDOW" --duration "$DURATION" \
      --payload "$PAYLOAD" "${VERIFY[@]}"
  fi
  if selected rates; then
    for rate in $RATES; do
      run "im-$rate" im --pairs "$PAIRS" --rate "$rate" --duration "$DURATION" \
        --payload "$PAYLOAD" "${VERIFY[@]}"
    done
  fi
  if selected group; then
    run "group-$MEMBERS" group --members "$MEMBERS" --rate "$GROUP_RATE" \
      --duration "$DURATION" --payload "$PAYLOAD" "${VERIFY[@]}"
  fi
  if selected notify; then
    # With no chat for a second the broker's writer lets notifications fill whole batches;
    # this run measures a notification call on its own.
    sleep 2
    # Notification recipients are users of their own (lgn-*), apart from the chat users.
    run "notify-$NOTIFY_USERS" --user-prefix lgn- notify \
      --users "$(notify_users "$NOTIFY_USERS")" --calls "$NOTIFY_CALLS" \
      --online "$NOTIFY_ONLINE" --payload "$PAYLOAD" "${VERIFY[@]}"
  fi
  if selected pipeline; then
    # One connection with 64 sends in flight: to one conversation, then round-robin to 100.
    run im-pipeline-1conv im --pairs 1 --window 64 --duration "$DURATION" \
      --payload "$PAYLOAD" "${VERIFY[@]}"
    run im-pipeline-100conv im --pairs 1 --window 64 --conversations 100 \
      --duration "$DURATION" --payload "$PAYLOAD" "${VERIFY[@]}"
  fi
  if selected delivery; then
    # 1000 senders each waiting for its previous message: stored, then delivered.
    for close in receipt delivery; do
      run "im-window1-$close" im --pairs 1000 --window 1 --close-on "$close" \
        --duration "$DURATION" --payload "$PAYLOAD" "${VERIFY[@]}"
    done
  fi
  if selected fairness; then
    # Chat at 1000 msg/s alone, then with a large notification call from 2 s in (counted from
    # the chat's start, about a second of which is connecting).
    run fairness-chat im --pairs 100 --rate 1000 --duration "$DURATION" --payload "$PAYLOAD"
    run fairness-chat-notify im --pairs 100 --rate 1000 --duration "$DURATION" \
      --payload "$PAYLOAD" &
    CHAT=$!
    sleep 2
    run fairness-notify --user-prefix lgn- notify \
      --users "$(notify_users "$FAIRNESS_NOTIFY_USERS")" --payload "$PAYLOAD"
    wait "$CHAT" || true
    say "$BACKEND: chat p99 / p99.9 alone $(tail_latency "$OUT/$BACKEND/fairness-chat.json") ms," \
      "with a notification call $(tail_latency "$OUT/$BACKEND/fairness-chat-notify.json") ms"
  fi
  stop_process "$BROKER_PID"
  BROKER_PID=
  if [ -n "$DB" ]; then
    psql "$PG/postgres" -qc "DROP DATABASE $DB" >/dev/null
    DB=
  fi
done
say "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(uptime)"
