#!/usr/bin/env bash
# Browser suite: the demo client (web/) in headless Chromium against the broker binary.
#
# Builds the broker (cargo build, honouring CARGO_TARGET_DIR) and the client (npm ci, npm run
# build), then runs `node --test`; the tests start the broker on a free port with a temporary
# data directory and --dev, restart it in the middle, and stop it. Screenshots of every step go
# to web/test-output/. Needs Chromium at /usr/bin/chromium (Debian's package `chromium`) or
# WEB_TEST_CHROMIUM, and openssl (the attachments test makes a certificate for its HTTPS server).
#
#   web/tests/run.sh            # from anywhere in the repository

set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
web="$(cd "$here/.." && pwd)"
root="$(cd "$web/.." && pwd)"

chromium="${WEB_TEST_CHROMIUM:-/usr/bin/chromium}"
[ -x "$chromium" ] || { echo "web: no Chromium at $chromium (apt-get install chromium)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "web: no openssl (apt-get install openssl)" >&2; exit 1; }

cd "$root"
echo "web: building the broker"
cargo build --bin broker
target_dir="$(cargo metadata --format-version 1 --no-deps |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
broker="$target_dir/debug/broker"
[ -x "$broker" ] || { echo "web: no broker binary at $broker" >&2; exit 1; }

cd "$web"
echo "web: npm ci and build"
npm ci --no-audit --no-fund --loglevel=error
npm run build --silent

rm -rf "$web/test-output"
export WEB_TEST_BROKER="$broker"
export WEB_TEST_WEB_DIR="$web/dist"
export WEB_TEST_OUTPUT="$web/test-output"
export WEB_TEST_CHROMIUM="$chromium"

status=0
# --test-force-exit: something in the browser driver keeps node's event loop alive for about
# 25 s after the last test; every process the tests start is stopped in their after hook.
node --test --test-force-exit --test-reporter=spec --test-concurrency=1 tests/*.test.mjs || status=$?
if [ "$status" -ne 0 ]; then
  echo "web: FAILED (node exited with $status); screenshots in $web/test-output" >&2
fi
exit "$status"
