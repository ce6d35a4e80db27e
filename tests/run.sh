#!/usr/bin/env bash
# Runs every test suite, each of which ends with "N passed, N failed",
# and prints the sum as the last line. Exit status 1 if anything failed.
#
# Two kinds of work share the time (`make test` must stay well under 20
# minutes on a 2-core CI machine):
# - the suites, one after another, printed as they run: most of their time
#   is spent waiting (timeouts, sleeps, servers, clients);
# - compile-only checks (make warnings, the compile matrix, lint, the
#   CHOPIN_NO_* builds, arm64, the layering, the fuzz targets' build): two
#   background workers take them from a queue, each one build at a time, so
#   they use the CPU the waiting leaves (TEST_BACKGROUND_WORKERS, default 2,
#   their number; TEST_BACKGROUND_NICE, default 0, their nice value); what is
#   left when the suites are done, this shell takes too. The suites' clocks
#   allow seconds (they pass beside the other work of a shared machine);
#   nothing in these checks reads a clock (the matrix's smoke runs allow
#   seconds for milliseconds of work), and they write only files of their
#   own (/dev/null, build/matrix, build/fuzz, build/batteries-switch.o,
#   build/cross-arm64.*, build/layers-*). Their output is kept per suite and
#   printed, in order, after the suites'; their counts join the sum and any
#   failure fails the run;
# - last, the fuzz targets run with both CPUs to themselves (their time is
#   fixed: fewer CPUs would mean fewer runs).
# TEST_BACKGROUND=0: no background worker (all of it runs at the end).
set -u
cd "$(dirname "$0")/.."
# builds run two at a time per CPU's worth (the suites below build what
# they need themselves, also in parallel through MAKEFLAGS)
export MAKEFLAGS="${MAKEFLAGS:-} -j$(nproc 2>/dev/null || echo 2)"
passed=0
failed=0
start=$SECONDS
bg_dir=$(mktemp -d)
trap 'rm -rf "$bg_dir"' EXIT

# tally NAME LOG: add the last "N passed, N failed" line of LOG to the sum
tally() {
  local last
  last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$2" | tail -n 1)
  if [ -z "$last" ]; then
    echo "!! $1 ended without a result line"
    failed=$((failed + 1))
  else
    passed=$((passed + $(echo "$last" | cut -d' ' -f1)))
    failed=$((failed + $(echo "$last" | cut -d' ' -f3)))
  fi
}

suite() {
  local name=$1 log
  shift
  log=$(mktemp)
  echo "== $name"
  local t0=$SECONDS
  "$@" 2>&1 | tee "$log"
  echo "-- $name: $((SECONDS - t0)) s"
  tally "$name" "$log"
  rm -f "$log"
}

# suite_beside NAME COMMAND...: starts a suite that mostly waits beside the
# ones that follow (its output kept in a file); suites_beside_done waits for
# those started and prints each, in order, as `suite` would have. For suites
# whose clocks allow seconds (the hardening fixture's 0.9-4.5 s windows).
beside_n=0
beside_pids=()
suite_beside() {
  local name=$1 t0=$SECONDS
  shift
  beside_n=$((beside_n + 1))
  printf '%s\n' "$name" >"$bg_dir/beside-$beside_n.name"
  ( "$@" >"$bg_dir/beside-$beside_n.log" 2>&1 </dev/null
    echo $((SECONDS - t0)) >"$bg_dir/beside-$beside_n.secs" ) &
  beside_pids+=($!)
}
suites_beside_done() {
  local i name
  [ "${#beside_pids[@]}" -gt 0 ] || return 0
  wait "${beside_pids[@]}"
  for ((i = beside_n - ${#beside_pids[@]} + 1; i <= beside_n; i++)); do
    name=$(cat "$bg_dir/beside-$i.name")
    echo "== $name"
    cat "$bg_dir/beside-$i.log"
    echo "-- $name: $(cat "$bg_dir/beside-$i.secs" 2>/dev/null || echo '?') s (beside the suites before this line)"
    tally "$name" "$bg_dir/beside-$i.log"
  done
  beside_pids=()
}

# ---- the background lane -------------------------------------------------
# A queue of items ("NAME<TAB>COMMAND", COMMAND run by bash -c; NAME "-": a
# step that is no suite, its output kept in a file) taken in order by
# workers: TEST_BACKGROUND_WORKERS in the background from the start, each one
# build at a time (make -j1, the matrix one build at a time); and, once the
# foreground suites are done, this shell too. A worker claims an item with
# mkdir, which only one can win.
bg_items=()
bg_pids=()
bg_nice=${TEST_BACKGROUND_NICE:-0}
bg_item() { bg_items+=("$1	$2"); }
# bg_work NICE: take items until none is left
bg_work() {
  local i spec name t0
  for ((i = 0; i < ${#bg_items[@]}; i++)); do
    mkdir "$bg_dir/claim-$i" 2>/dev/null || continue
    spec=${bg_items[$i]}
    name=${spec%%	*}
    t0=$SECONDS
    MAKEFLAGS=-j1 MATRIX_JOBS=1 nice -n "$1" bash -c "${spec#*	}" >"$bg_dir/$i.log" 2>&1 </dev/null
    echo $((SECONDS - t0)) >"$bg_dir/$i.secs"
  done
}
# bg_finish: work off what is left, wait for the background workers, print
# the suites in order and add their counts
bg_finish() {
  local i spec name t_fg=$SECONDS
  bg_work 0
  [ "${#bg_pids[@]}" -eq 0 ] || wait "${bg_pids[@]}"
  echo "## the background lane ended $((SECONDS - t_fg)) s after the foreground suites"
  for ((i = 0; i < ${#bg_items[@]}; i++)); do
    spec=${bg_items[$i]}
    name=${spec%%	*}
    [ "$name" = - ] && continue
    echo "== $name"
    cat "$bg_dir/$i.log" 2>/dev/null
    echo "-- $name: $(cat "$bg_dir/$i.secs" 2>/dev/null || echo '?') s (background lane)"
    tally "$name" "$bg_dir/$i.log"
  done
}
result_line='&& echo "1 passed, 0 failed" || echo "0 passed, 1 failed"'
# the fuzz targets' build: no suite (its errors, if any, show in the fuzz
# suite at the end, which runs `make fuzz-build` again)
bg_item - "make -s fuzz-build"
bg_item "compile matrix (make matrix)" "make -s matrix"
bg_item "warnings: every example, each compiler, C++, CHOPIN_NO_*, each backend (make warnings)" \
  "make -s warnings $result_line"
bg_item "static analysis: cppcheck, clang-tidy (make lint)" "make -s lint"
bg_item "batteries: each CHOPIN_NO_* switch builds warning-free" "make -s batteries-switches"
bg_item "raw system calls for arm64 (cross compile)" "make -s cross-arm64"
bg_item "layers: the core alone, no system call outside >>os" "bash tests/layers.sh"
if [ "${TEST_BACKGROUND:-1}" != 0 ]; then
  for ((w = 0; w < ${TEST_BACKGROUND_WORKERS:-2}; w++)); do
    bg_work "$bg_nice" &
    bg_pids+=($!)
  done
fi

# ---- the foreground suites ----------------------------------------------
if ! make -s all build/unit build/bench-asan build/blackbox build/rest_blackbox build/rest-asan; then
  bg_finish
  echo "$passed passed, $((failed + 1)) failed"
  exit 1
fi
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
  suites_beside_done # a file's suites end with it
done

# ---- the background lane's results, then the fuzz targets --------------
echo "## the foreground suites took $((SECONDS - start)) s"
bg_finish
# every libFuzzer target for 5 s (make fuzz runs them for FUZZ_TIME, 60 s);
# the io_uring build of fuzz_conn runs in tests/suites/uring.sh
suite "fuzz: every libFuzzer target for 5 s" \
  bash -c 'make -s fuzz-build && bash tests/fuzz/run.sh 5'
echo
echo "## make test: $((SECONDS - start)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
