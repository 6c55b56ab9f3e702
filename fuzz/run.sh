#!/usr/bin/env bash
# Runs every fuzz target for a bounded time on its committed corpus (fuzz/seeds/<target>); new
# inputs go to fuzz/corpus/<target>, crashes to fuzz/artifacts/<target> (both ignored by git).
# Exits non-zero on the first target that finds a crash.
#
#   fuzz/run.sh            # 60 s per target
#   fuzz/run.sh 1800       # 30 minutes per target
#   FUZZ_TARGETS="rest_bodies" fuzz/run.sh 300
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); on a stable toolchain RUSTC_BOOTSTRAP=1
# allows the nightly flags it passes. The body targets start a real broker in the fuzzing
# process; the build has no sanitizer, since the broker forbids unsafe code and what is looked
# for is panics, hangs and wrong answers, not memory errors.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
targets=${FUZZ_TARGETS:-decode app_bodies rest_bodies}
export RUSTC_BOOTSTRAP=1

for target in $targets; do
  mkdir -p "corpus/$target"
  extra=()
  dict=$target.dict
  [ "$target" = decode ] || dict=bodies.dict
  extra+=("-dict=$dict")
  echo "fuzz: $target for ${seconds}s"
  log=$(mktemp)
  status=0
  cargo fuzz run --sanitizer none "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || status=$?
  # libFuzzer's progress lines are many; its summary and any finding are kept.
  grep -E 'stat::number_of_executed_units|^Done|seed corpus|^panic|==[0-9]+== ?ERROR|SUMMARY|Test unit written|deadly signal' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz: $target failed (exit $status); crashes are in fuzz/artifacts/$target" >&2
    exit 1
  fi
  rm -f "$log"
done
