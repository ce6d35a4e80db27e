#!/usr/bin/env bash
# `make ws-test`: every WebSocket suite (tests/suites/ws.sh) on its own,
# with tests/run.sh's `suite` and its sum as the last line.
set -u
cd "$(dirname "$0")/../.."
passed=0
failed=0
suite() {
  local name=$1 log last
  shift
  log=$(mktemp)
  echo "== $name"
  "$@" 2>&1 | tee "$log"
  last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  rm -f "$log"
  if [ -z "$last" ]; then
    echo "!! $name ended without a result line"
    failed=$((failed + 1))
  else
    passed=$((passed + $(echo "$last" | cut -d' ' -f1)))
    failed=$((failed + $(echo "$last" | cut -d' ' -f3)))
  fi
}
# shellcheck source=/dev/null
. tests/suites/ws.sh
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
