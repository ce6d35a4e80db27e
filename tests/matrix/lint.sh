#!/usr/bin/env bash
# Static analysis of chopin.h (issue #8), run by `make lint`: cppcheck and
# clang-tidy on tests/matrix/impl.c (the implementation alone), once per
# backend macro in MATRIX_BACKENDS ("default": the platform's own). The
# configuration is committed: .clang-tidy at the root, the cppcheck options
# below and tests/matrix/cppcheck.supp. Each finding fails its check; a tool
# that is not installed is skipped. Last line: "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/../.."
CPPCHECK=${CPPCHECK:-cppcheck}
CLANG_TIDY=${CLANG_TIDY:-clang-tidy}
BACKENDS=${MATRIX_BACKENDS:-default}
TU=tests/matrix/impl.c
# The configuration cppcheck checks: Linux, GCC-compatible, the
# implementation compiled once, every optional part compiled in. Without
# -D it would also try configurations that are no build (the implementation
# skipped as CHOPIN_IMPLEMENTATION_DONE; a non-Linux #error).
CPPCHECK_FLAGS=(--enable=warning,portability,performance --std=c99 --language=c
  --library=posix --library=gnu -D__linux__ -D__GNUC__
  -UCHOPIN_IMPLEMENTATION_DONE -UCHOPIN_STATIC -UCHOPIN_MALLOC -UCHOPIN_NO_AUTH
  -UCHOPIN_NO_ACCESS_LOG -UCHOPIN_NO_TIMING
  --suppressions-list=tests/matrix/cppcheck.supp --inline-suppr
  --error-exitcode=1 --quiet
  '--template={file}:{line}:{column}: {severity}: {message} [{id}]')
passed=0
failed=0
skipped=0
run() {
  local name=$1 log rc
  shift
  log=$(mktemp)
  timeout 300 "$@" >"$log" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "PASS  $name"
  else
    failed=$((failed + 1))
    echo "FAIL  $name (exit $rc)"
    sed 's/^/      /' "$log"
  fi
  rm -f "$log"
}
for b in $BACKENDS; do
  bf=()
  [ "$b" = default ] || bf=("-D$b")
  [ "$b" = CHOPIN_USE_KQUEUE ] && bf+=("-Itests/kqueue")
  if command -v "$CPPCHECK" >/dev/null 2>&1; then
    run "cppcheck, 64-bit [$b]" "$CPPCHECK" "${CPPCHECK_FLAGS[@]}" --platform=unix64 -D__x86_64__ "${bf[@]+"${bf[@]}"}" "$TU"
    run "cppcheck, 32-bit [$b]" "$CPPCHECK" "${CPPCHECK_FLAGS[@]}" --platform=unix32 -D__i386__ "${bf[@]+"${bf[@]}"}" "$TU"
  else
    skipped=$((skipped + 1))
    echo "SKIP  cppcheck [$b]: $CPPCHECK is not installed"
  fi
  if command -v "$CLANG_TIDY" >/dev/null 2>&1; then
    # --quiet drops the "N warnings generated" lines; the findings stay
    run "clang-tidy [$b]" "$CLANG_TIDY" --quiet "$TU" -- -std=c99 "${bf[@]+"${bf[@]}"}"
  else
    skipped=$((skipped + 1))
    echo "SKIP  clang-tidy [$b]: $CLANG_TIDY is not installed"
  fi
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
