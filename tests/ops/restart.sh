#!/usr/bin/env bash
# tests/ops/restart.sh - zero-downtime restart by SIGUSR2 hand-over (issue 12).
#
# In `make test` (tests/suites/ops.sh), also run with RESTART_LAUNCHER=1 and
# against the ASan+UBSan build (OPS_SERVER=build/bench-asan). Alone: make
# ops-restart.
#
# What it expects of build/bench, started (from a copy in a temp dir, by its
# absolute path) with PID_FILE=<tmp>/chopin.pid, PORT=<free>, HOST=127.0.0.1,
# in each mode of RESTART_MODES ("standard performance"; performance with
# CHOPIN_WORKERS=2):
#   - once it serves, PID_FILE holds its pid (the readiness signal);
#   - on SIGUSR2 it starts a new copy of its executable (same arguments and
#     environment) passing its listening sockets (LISTEN_FDS); when the new
#     process serves, PID_FILE holds the new pid; the old one stops accepting,
#     closes its idle keep-alive connections, finishes the requests in flight
#     and exits (status 0) - here within 12 s;
#   - under a load of keep-alive and new connections (tests/ops/load.c, 8 + 8
#     connections) that runs through five such hand-overs, one every 2 s,
#     every request gets a complete, correct answer: no refused connect, no
#     reset, no truncated answer, no timeout ("0 failed"). Requests written on
#     a keep-alive connection just as the old process closed it (unanswered,
#     retried by the client) are reported and allowed; RESTART_STRICT=1
#     counts them as failures;
#   - SIGTERM then ends the last process with status 0;
#   - RESTART_LAUNCHER=1: the first process is started by build/launcher
#     (socket activation, tests/ops/launcher.c) with PORT set to another free
#     port; it serves on the launcher's socket and passes that one on;
#   - RESTART_FAIL_CASE=1 adds a sixth SIGUSR2 after the executable has been
#     replaced by one that exits 1 at once: the old process must keep serving
#     (PID_FILE unchanged, /plaintext still 200) and log why. Off by default:
#     it assumes the hand-over runs the file at the original path (as nginx's
#     binary upgrade does), not /proc/self/exe.
# Prints per hand-over: ms from SIGUSR2 to the new pid in PID_FILE, and ms
# until the old process exited. Last line: "N passed, N failed".
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/ops/common.sh

MODES=${RESTART_MODES:-standard performance}
HANDOVERS=5
EVERY_MS=2000
make -s build/bench build/load build/launcher || { echo "0 passed, 1 failed"; exit 1; }
SERVER=${OPS_SERVER:-build/bench} # another server speaking the same protocol, to test this script
strict=
[ -n "${RESTART_STRICT:-}" ] && strict=--strict

# wait_pidfile FILE OLD SECONDS: until FILE holds a live pid other than OLD;
# prints it. Status 1 on timeout, or as soon as OLD (if given) has exited
# with no successor in FILE (the successor writes FILE before OLD leaves).
wait_pidfile() {
  local end=$(($(now_ms) + $3 * 1000)) p
  while [ "$(now_ms)" -lt "$end" ]; do
    p=$(cat "$1" 2>/dev/null)
    if [ -n "$p" ] && [ "$p" != "$2" ] && kill -0 "$p" 2>/dev/null; then
      echo "$p"
      return 0
    fi
    [ -n "$2" ] && ! kill -0 "$2" 2>/dev/null && return 1
    sleep 0.01
  done
  return 1
}

run_mode() {
  local mode=$1 workers=1 dir bin pidfile port first cur new load t0 i t_sig ms_new ms_old alive=1 other
  [ "$mode" = performance ] && workers=2
  dir=$OPS_TMP/$mode
  mkdir -p "$dir"
  bin=$dir/bench
  cp "$SERVER" "$bin"
  pidfile=$dir/chopin.pid
  free_port port
  if [ -n "${RESTART_LAUNCHER:-}" ]; then
    # the launcher's socket, not PORT; the server is the launcher's child
    other=$port
    PID_FILE=$pidfile PORT=$other HOST=127.0.0.1 SERVER_MODE=$mode CHOPIN_WORKERS=$workers \
      ./build/launcher --port-file "$dir/ports" -- "$bin" >"$dir/server.log" 2>&1 &
    track $!
    disown $!
    for _ in $(seq 50); do [ -s "$dir/ports" ] && break; sleep 0.1; done
    port=$(head -n 1 "$dir/ports" 2>/dev/null)
    first=$(wait_pidfile "$pidfile" "" 5)
    [ -n "$first" ] && track "$first"
    if [ -n "$port" ] && [ -n "$first" ] && [ -z "$(http_status "$other" /plaintext)" ]; then
      ok "$mode: socket activation by build/launcher: serving on its socket 127.0.0.1:$port, PORT=$other unbound"
    else
      bad "$mode: socket activation by build/launcher: no server on its socket (${port:-?}), or PORT=$other bound"
    fi
  else
    PID_FILE=$pidfile PORT=$port HOST=127.0.0.1 SERVER_MODE=$mode CHOPIN_WORKERS=$workers \
      "$bin" >"$dir/server.log" 2>&1 &
    first=$!
    track "$first"
    disown "$first" # SIGUSR2 may kill it: no job report from bash
  fi
  if cur=$(wait_pidfile "$pidfile" "" 5) && [ "$cur" = "$first" ] && wait_http "$port" /plaintext 5; then
    ok "$mode: serving on 127.0.0.1:$port, PID_FILE holds its pid $cur"
  else
    bad "$mode: PID_FILE did not hold the server's pid ($first) within 5 s, or it did not serve"
    sed 's/^/    /' "$dir/server.log"
    cur=$first
    wait_http "$port" /plaintext 5 || { kill -TERM "$first" 2>/dev/null; return; }
  fi

  ./build/load --port "$port" --seconds $(((HANDOVERS + 1) * EVERY_MS / 1000)) --keepalive 8 --ka-rate 5000 \
    --rate 200 --concurrency 8 --timeline $strict >"$dir/load.out" 2>&1 &
  load=$!
  track "$load"
  t0=$(now_ms)
  for i in $(seq "$HANDOVERS"); do
    sleep_until $((t0 + i * EVERY_MS - EVERY_MS / 2))
    t_sig=$(now_ms)
    kill -USR2 "$cur" 2>/dev/null
    if new=$(wait_pidfile "$pidfile" "$cur" 5); then
      ms_new=$(($(now_ms) - t_sig))
      track "$new"
      if wait_gone "$cur" 12; then
        ms_old=$(($(now_ms) - t_sig))
        ok "$mode: hand-over $i: pid $cur -> $new; new pid in PID_FILE after $ms_new ms, old gone after $ms_old ms"
      else
        bad "$mode: hand-over $i: pid $cur -> $new, but the old process still runs 12 s later"
      fi
      cur=$new
    else
      if kill -0 "$cur" 2>/dev/null; then
        bad "$mode: hand-over $i: no new pid in PID_FILE within 5 s of SIGUSR2 (pid $cur still runs)"
      else
        bad "$mode: hand-over $i: the server (pid $cur) exited on SIGUSR2 and nothing took over"
        alive=0
        break
      fi
    fi
  done

  if [ "$alive" = 1 ] && [ -n "${RESTART_FAIL_CASE:-}" ]; then
    printf '#!/bin/sh\necho "restart.sh: a broken executable" >&2\nexit 1\n' >"$bin.new"
    chmod +x "$bin.new"
    mv -f "$bin.new" "$bin"
    kill -USR2 "$cur" 2>/dev/null
    sleep 2
    new=$(cat "$pidfile" 2>/dev/null)
    [ -n "$new" ] && [ "$new" != "$cur" ] && track "$new" # a successor after all: ended on exit
    if [ "$new" = "$cur" ] && kill -0 "$cur" 2>/dev/null &&
      [ "$(http_status "$port" /plaintext)" = 200 ]; then
      ok "$mode: a new executable that fails to start: pid $cur keeps serving"
    else
      bad "$mode: a new executable that fails to start: pid $cur no longer serves, or PID_FILE changed"
    fi
  fi

  if [ "$alive" = 0 ]; then
    kill -TERM "$load" 2>/dev/null # nothing serves: load stops and prints its totals
  fi
  wait_gone "$load" $(((HANDOVERS + 1) * EVERY_MS / 1000 + 10)) || bad "$mode: build/load did not finish in time"
  wait "$load" 2>/dev/null
  sed 's/^/    /' "$dir/load.out"
  if [ "$alive" = 1 ]; then
    lf=$(load_failed "$dir/load.out")
    lp=$(load_passed "$dir/load.out")
    if [ -n "$lf" ] && [ "$lf" -eq 0 ] && [ "${lp:-0}" -gt 0 ]; then
      ok "$mode: load through $HANDOVERS hand-overs: $lp correct answers, 0 failed, $(load_unanswered "$dir/load.out") unanswered (retried)"
    else
      bad "$mode: load through $HANDOVERS hand-overs: ${lp:-?} correct answers, ${lf:-?} failed"
    fi
    kill -TERM "$cur" 2>/dev/null
    if wait_gone "$cur" 12; then
      ok "$mode: SIGTERM ends the last process (pid $cur)"
    else
      bad "$mode: the last process (pid $cur) still runs 12 s after SIGTERM"
    fi
  fi
  # a sanitizer build (OPS_SERVER=build/bench-asan) reports into the log
  if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error' "$dir/server.log"; then
    bad "$mode: sanitizer report in the server log:"
    grep -E -A5 'AddressSanitizer|LeakSanitizer|runtime error' "$dir/server.log" | head -n 20 | sed 's/^/    /'
  fi
}

for m in $MODES; do run_mode "$m"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
