#!/usr/bin/env bash
# The shipped operations files against a real Prometheus and real brokers.
#
#   tests/prometheus/run.sh            # from anywhere in the repository
#
# 1. `promtool check rules` and `promtool test rules` on deploy/prometheus/ (and that every
#    alert of alerts.yml has a unit test).
# 2. Builds the broker, and verifies deploy/systemd/broker.service with `systemd-analyze
#    verify` where that is installed. Starts the broker on a free port in a temporary
#    directory, with only this run's BROKER_* settings. When PostgreSQL, RabbitMQ and Redis answer (the BROKER_TEST_*_URL
#    variables the integration tests use, else the local defaults) it starts two nodes in
#    cluster mode on a fresh database instead; PROMETHEUS_TEST_CLUSTER=0 keeps to one node,
#    PROMETHEUS_TEST_CLUSTER=1 requires the cluster (default: auto).
# 3. Starts Prometheus (scrape and evaluation every second, job `broker`, rule_files =
#    alerts.yml) on a free port, waits until every node is up, sends a little traffic
#    (traffic.py: REST and STOMP over TCP) and checks through the HTTP API (check.py) that the
#    rule groups are loaded and healthy, and that every rule expression and every dashboard
#    expression of deploy/grafana/broker.json evaluates and selects broker series with data.
#
# Needs promtool and prometheus on PATH (Debian: apt-get install prometheus), python3, curl
# and cargo; installs nothing itself. Stops what it started on exit.

set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
alerts="$root/deploy/prometheus/alerts.yml"
alerts_test="$root/deploy/prometheus/alerts_test.yml"
dashboard="$root/deploy/grafana/broker.json"

say() { printf 'prometheus: %s\n' "$*"; }
die() { printf 'prometheus: %s\n' "$*" >&2; exit 1; }

missing=()
for tool in promtool prometheus python3 curl cargo; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  die "missing on PATH: ${missing[*]} (promtool and prometheus: Debian's package prometheus, apt-get install prometheus)"
fi

cd "$root"

# --- 1. Rules -----------------------------------------------------------------------------------
say "promtool check rules"
promtool check rules "$alerts"
say "promtool test rules"
promtool test rules "$alerts_test"
untested="$(comm -23 \
  <(sed -n 's/^ *- *alert: *\([A-Za-z0-9_]*\) *$/\1/p' "$alerts" | sort -u) \
  <(sed -n 's/^ *alertname: *\([A-Za-z0-9_]*\) *$/\1/p' "$alerts_test" | sort -u))"
[ -z "$untested" ] || die "alerts without a unit test in $alerts_test: $(echo $untested)"
say "every alert of alerts.yml has a unit test"

# --- 2. Brokers ---------------------------------------------------------------------------------
# The service URLs, read before the BROKER_* variables are cleared below.
pg_url="${BROKER_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
amqp_url="${BROKER_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
redis_url="${BROKER_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
cluster_mode="${PROMETHEUS_TEST_CLUSTER:-auto}"

say "building the broker"
cargo build --bin broker
target_dir="$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
broker="$target_dir/debug/broker"
[ -x "$broker" ] || die "no broker binary at $broker"

work="$(mktemp -d)"
pids=()
prom_pid=""
database=""
status=1
cleanup() {
  local pid
  for pid in "$prom_pid" "${pids[@]}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "$prom_pid" "${pids[@]}"; do
    [ -n "$pid" ] || continue
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ]; then
    for log in "$work"/*.log; do
      [ -f "$log" ] || continue
      echo "prometheus: --- last lines of $(basename "$log")" >&2
      tail -n 30 "$log" >&2
    done
  fi
  if [ -n "$database" ]; then
    # WITH (FORCE) (PostgreSQL 13 and later) also ends connections a killed node left behind.
    psql "$pg_url" -q -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 ||
      psql "$pg_url" -q -c "DROP DATABASE IF EXISTS $database" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The systemd unit, where systemd-analyze is installed: a copy whose ExecStart is the binary
# just built (verify insists that the command exists; the user need not).
unit="$root/deploy/systemd/broker.service"
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$work/unit"
  sed "s#/usr/local/bin/broker#$broker#" "$unit" >"$work/unit/broker.service"
  systemd-analyze verify "$work/unit/broker.service" || die "systemd-analyze verify failed for $unit"
  say "systemd-analyze verify: $unit is valid"
else
  say "systemd-analyze not installed: $unit not verified"
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# host:port of a service URL (the scheme's usual port when it names none).
url_hostport() {
  python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(f"{p.hostname}:{p.port or sys.argv[2]}")' "$1" "$2"
}

reachable() {
  local hostport="$1"
  (exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}") 2>/dev/null
}

cluster=0
case "$cluster_mode" in
  0) ;;
  auto|1)
    why=""
    reachable "$(url_hostport "$pg_url" 5432)" || why="PostgreSQL"
    reachable "$(url_hostport "$amqp_url" 5672)" || why="${why:+$why, }RabbitMQ"
    reachable "$(url_hostport "$redis_url" 6379)" || why="${why:+$why, }Redis"
    command -v psql >/dev/null || why="${why:+$why, }psql"
    if [ -z "$why" ]; then
      cluster=1
    elif [ "$cluster_mode" = 1 ]; then
      die "PROMETHEUS_TEST_CLUSTER=1 but not reachable or missing: $why"
    else
      say "one node: not reachable or missing for cluster mode: $why"
    fi
    ;;
  *) die "PROMETHEUS_TEST_CLUSTER is 0, 1 or auto, not $cluster_mode" ;;
esac

# Only this run's settings: nothing from the caller's environment or a broker.toml.
for name in $(env | sed -n 's/^\(BROKER_[A-Za-z0-9_]*\)=.*/\1/p'); do
  unset "$name"
done
export BROKER_AUTH_JWT_SECRET="prometheus-$$-$RANDOM$RANDOM"
export BROKER_SERVER_HTTP_ADDR="127.0.0.1:0"
export BROKER_SERVER_STOMP_TCP_ADDR="127.0.0.1:0"
export BROKER_SERVER_SHUTDOWN_GRACE_MS=500
# The shipped stranger limits would refuse alice's messages to bob before he answers.
export BROKER_LIMITS_STRANGER_BEFORE_REPLY=1000
export BROKER_LIMITS_STRANGER_RATE=1000/1s
export NO_COLOR=1
export RUST_LOG=info

run_id="prom$$"
if [ "$cluster" = 1 ]; then
  database="broker_prometheus_$$_$RANDOM"
  psql "$pg_url" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $database" >/dev/null ||
    die "could not create database $database on BROKER_TEST_POSTGRES_URL's server"
  storage_url="$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$pg_url" "$database")"
  export BROKER_STORAGE_URL="$storage_url"
  export BROKER_RELAY_AMQP_URL="$amqp_url"
  export BROKER_PRESENCE_REDIS_URL="$redis_url"
  nodes=(a b)
  say "cluster mode: two nodes on database $database, RabbitMQ and Redis"
else
  nodes=(solo)
fi

# The address a node logged for a listener ("listening for HTTP" / "listening for STOMP over TCP").
logged_addr() {
  sed 's/\x1b\[[0-9;]*m//g' "$1" 2>/dev/null |
    sed -n "s/.*listening for $2.* addr=\([0-9.]*:[0-9]*\).*/\1/p" | head -n 1
}

http_addrs=()
stomp_addrs=()
for node in "${nodes[@]}"; do
  mkdir -p "$work/$node"
  log="$work/broker-$node.log"
  (cd "$work/$node" && BROKER_CLUSTER_NODE_ID="$run_id-$node" exec "$broker" >"$log" 2>&1) &
  pid=$!
  pids+=("$pid")
  addr=""
  for _ in $(seq 1 300); do
    addr="$(logged_addr "$log" HTTP)"
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || die "broker $node exited before listening"
    sleep 0.1
  done
  [ -n "$addr" ] || die "broker $node: no HTTP listener line in its log after 30 s"
  tcp=""
  for _ in $(seq 1 50); do
    tcp="$(logged_addr "$log" "STOMP over TCP")"
    [ -n "$tcp" ] && break
    sleep 0.1
  done
  [ -n "$tcp" ] || die "broker $node: no STOMP over TCP listener line in its log"
  http_addrs+=("$addr")
  stomp_addrs+=("$tcp")
  say "broker $node: HTTP $addr, STOMP over TCP $tcp"
done

# --- 3. Prometheus ------------------------------------------------------------------------------
targets="$(printf "'%s', " "${http_addrs[@]}")"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $alerts
scrape_configs:
  - job_name: broker
    static_configs:
      - targets: [${targets%, }]
EOF
promtool check config "$work/prometheus.yml" >/dev/null || die "promtool check config failed"

prom_url=""
for attempt in 1 2 3; do
  port="$(free_port)"
  prom_url="http://127.0.0.1:$port"
  prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$port" >"$work/prometheus.log" 2>&1 &
  prom_pid=$!
  for _ in $(seq 1 100); do
    curl -fsS "$prom_url/-/ready" >/dev/null 2>&1 && break
    kill -0 "$prom_pid" 2>/dev/null || break
    sleep 0.2
  done
  curl -fsS "$prom_url/-/ready" >/dev/null 2>&1 && break
  kill -TERM "$prom_pid" 2>/dev/null || true
  wait "$prom_pid" 2>/dev/null || true
  prom_pid=""
  [ "$attempt" = 3 ] && die "Prometheus did not become ready (last try on port $port)"
done
say "Prometheus on $prom_url"

targets_up() {
  curl -fsS "$prom_url/api/v1/targets" 2>/dev/null | python3 -c '
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
print(sum(1 for t in targets if t["labels"].get("job") == "broker" and t["health"] == "up"))' 2>/dev/null
}
up=0
for _ in $(seq 1 60); do
  up="$(targets_up || echo 0)"
  [ "$up" = "${#nodes[@]}" ] && break
  sleep 0.5
done
[ "$up" = "${#nodes[@]}" ] || die "$up of ${#nodes[@]} broker targets up after 30 s"
say "${#nodes[@]} target(s) up"

mint() { (cd "$work/${nodes[0]}" && "$broker" token --sub "$1" --ttl 1h); }
TRAFFIC_HTTP="${http_addrs[*]}" \
  TRAFFIC_STOMP="${stomp_addrs[${#stomp_addrs[@]}-1]}" \
  TRAFFIC_TOKEN_ALICE="$(mint alice)" \
  TRAFFIC_TOKEN_BOB="$(mint bob)" \
  TRAFFIC_RUN="$run_id" \
  python3 "$here/traffic.py"

# A few scrapes, so that rates over the traffic have two samples or more (check.py waits for
# the traffic to show before it looks at the expressions).
sleep 3
python3 "$here/check.py" "$prom_url" "$alerts" "$dashboard" "${#nodes[@]}" "$cluster"
status=0
