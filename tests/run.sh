#!/usr/bin/env bash
# Runs every test suite, each of which ends with "N passed, N failed",
# and prints the sum as the last line. Exit status 1 if anything failed.
#
# Two kinds of work share the time (`make test` must stay well under 20
# minutes on a 2-core CI machine):
# - the suites in the foreground, one after another, printed as they run:
#   most of their time is spent waiting (timeouts, sleeps, servers);
# - compile-only checks (make warnings, the compile matrix, lint, the
#   CHOPIN_NO_* builds, arm64, the layering, the fuzz targets' build) in two
#   background lanes under `nice`, so they take the CPU the waiting leaves
#   and a timed test never waits for them. Nothing in them reads a clock
#   (the matrix's smoke runs allow seconds for milliseconds of work), and
#   they write only their own files (/dev/null, build/matrix, build/fuzz,
#   build/*-switch.o, build/cross-arm64.*, build/layers-*). Their output is
#   kept per suite and printed, in order, after the foreground suites; their
#   counts join the sum and any failure fails the run.
# - last, once the lanes are done, the fuzz targets run with both CPUs to
#   themselves (their time is fixed: fewer CPUs would mean fewer runs).
# TEST_BACKGROUND=0 runs the background lanes' suites in the foreground.
set -u
cd "$(dirname "$0")/.."
# builds run two at a time per CPU's worth (the suites below build what
# they need themselves, also in parallel through MAKEFLAGS)
export MAKEFLAGS="${MAKEFLAGS:-} -j$(nproc 2>/dev/null || echo 2)"
passed=0
failed=0
start=$SECONDS

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

# ---- the background lanes ---------------------------------------------
bg_dir=$(mktemp -d)
trap 'rm -rf "$bg_dir"' EXIT
bg_seq=0
bg_pids=()
# bg_suite N NAME COMMAND...: in a lane, suite number N, output to its file
bg_suite() {
  local i=$1 name=$2 t0=$SECONDS
  shift 2
  printf '%s\n' "$name" >"$bg_dir/$i.name"
  nice -n 10 "$@" >"$bg_dir/$i.log" 2>&1 </dev/null
  echo $((SECONDS - t0)) >"$bg_dir/$i.secs"
}
# lane [--first COMMAND] SUITE_SPEC...: a lane; each spec is
# "NAME<TAB>COMMAND" (COMMAND run by bash -c); --first: a step before them
# that is no suite (its output goes to a file of the lane's)
lane() {
  local first_cmd= spec specs=() first=$((bg_seq + 1))
  if [ "$1" = --first ]; then first_cmd=$2; shift 2; fi
  for spec in "$@"; do
    bg_seq=$((bg_seq + 1))
    specs+=("$spec")
  done
  if [ "${TEST_BACKGROUND:-1}" = 0 ]; then
    [ -z "$first_cmd" ] || bash -c "$first_cmd"
    for spec in "${specs[@]}"; do suite "${spec%%	*}" bash -c "${spec#*	}"; done
    return
  fi
  (
    [ -z "$first_cmd" ] || nice -n 10 bash -c "$first_cmd" >"$bg_dir/first-$first.log" 2>&1 </dev/null
    i=$first
    for spec in "${specs[@]}"; do
      bg_suite "$i" "${spec%%	*}" bash -c "${spec#*	}"
      i=$((i + 1))
    done
  ) &
  bg_pids+=($!)
}
# bg_finish: wait for the lanes, print their suites in order, add their counts
bg_finish() {
  local i name
  [ "${#bg_pids[@]}" -gt 0 ] || return 0
  wait "${bg_pids[@]}"
  bg_pids=()
  for ((i = 1; i <= bg_seq; i++)); do
    name=$(cat "$bg_dir/$i.name" 2>/dev/null || echo "background suite $i")
    echo "== $name"
    cat "$bg_dir/$i.log" 2>/dev/null
    echo "-- $name: $(cat "$bg_dir/$i.secs" 2>/dev/null || echo '?') s (background lane, nice)"
    tally "$name" "$bg_dir/$i.log"
  done
}
result_line='&& echo "1 passed, 0 failed" || echo "0 passed, 1 failed"'
# lane 1: one CPU's worth at a time
lane "warnings: every example, each compiler, C++, CHOPIN_NO_*, each backend (make warnings)	make -s warnings $result_line" \
     "static analysis: cppcheck, clang-tidy (make lint)	make -s lint" \
     "batteries: each CHOPIN_NO_* switch builds warning-free	make -s batteries-switches" \
     "raw system calls for arm64 (cross compile)	make -s cross-arm64" \
     "layers: the core alone, no system call outside >>os	bash tests/layers.sh"
# lane 2: the fuzz targets' build (no suite: its errors, if any, show in
# the fuzz suite at the end, which runs `make fuzz-build` again), then the
# matrix, which runs two builds at a time
lane --first "make -s fuzz-build" "compile matrix (make matrix)	make -s matrix"

# ---- the foreground suites ----------------------------------------------
if ! make -s all build/unit build/bench-asan build/blackbox build/rest_blackbox build/rest-asan; then
  echo "0 passed, 1 failed"
  bg_finish >/dev/null
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
done

# ---- the background lanes' results, then the fuzz targets ---------------
t_wait=$SECONDS
bg_finish
echo "## foreground suites done at $((t_wait - start)) s; waited $((SECONDS - t_wait)) s more for the background lanes"
# every libFuzzer target for 5 s (make fuzz runs them for FUZZ_TIME, 60 s);
# the io_uring build of fuzz_conn runs in tests/suites/uring.sh
suite "fuzz: every libFuzzer target for 5 s" \
  bash -c 'make -s fuzz-build && bash tests/fuzz/run.sh 5'
echo
echo "## make test: $((SECONDS - start)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
