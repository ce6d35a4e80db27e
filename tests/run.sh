#!/usr/bin/env bash
# Runs every test suite, each of which ends with "N passed, N failed",
# and prints the sum as the last line. Exit status 1 if anything failed.
set -u
cd "$(dirname "$0")/.."
# builds run two at a time per CPU's worth (the suites below build what
# they need themselves, also in parallel through MAKEFLAGS)
export MAKEFLAGS="${MAKEFLAGS:-} -j$(nproc 2>/dev/null || echo 2)"
if ! make -s all build/unit build/bench-asan build/blackbox build/rest_blackbox build/rest-asan; then
  echo "0 passed, 1 failed"
  exit 1
fi
passed=0
failed=0
suite() {
  local name=$1 log
  shift
  log=$(mktemp)
  echo "== $name"
  local t0=$SECONDS
  "$@" 2>&1 | tee "$log"
  echo "-- $name: $((SECONDS - t0)) s"
  local last
  last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  if [ -z "$last" ]; then
    echo "!! $name ended without a result line"
    failed=$((failed + 1))
  else
    passed=$((passed + $(echo "$last" | cut -d' ' -f1)))
    failed=$((failed + $(echo "$last" | cut -d' ' -f3)))
  fi
  rm -f "$log"
}
suite "unit tests (ASan+UBSan)" ./build/unit
suite "black-box, release build" ./build/blackbox ./build/bench
suite "black-box, ASan+UBSan build" env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 ./build/blackbox ./build/bench-asan
suite "black-box, standard mode" env SERVER_MODE=standard ./build/blackbox ./build/bench
suite "todo API (examples/rest.c), ASan+UBSan build" ./build/rest_blackbox ./build/rest-asan
# further suites: each tests/suites/*.sh calls `suite NAME COMMAND...`
for f in tests/suites/*.sh; do
  [ -e "$f" ] || continue
  # shellcheck source=/dev/null
  . "$f"
done
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
