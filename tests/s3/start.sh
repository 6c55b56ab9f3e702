#!/usr/bin/env bash
# Starts an S3-compatible server for the tests of the S3 file store (moto's standalone server, from
# PyPI, in a virtualenv kept under ~/.cache) on 127.0.0.1:${1:-9000}, unless the port already
# answers. Then: BROKER_TEST_S3_URL=http://127.0.0.1:9000 cargo test --test integration files::
set -euo pipefail

port="${1:-9000}"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/broker-tests/moto-5.2.5"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if port_open "$port"; then
  exit 0
fi
if [ ! -x "$venv/bin/moto_server" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server,s3]==5.2.5"
fi
log="${TMPDIR:-/tmp}/broker-tests-moto-$port.log"
nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
for _ in $(seq 1 60); do
  port_open "$port" && exit 0
  sleep 0.5
done
echo "the S3 test server did not come up on port $port; see $log" >&2
exit 1
