#!/usr/bin/env bash
# tests/ops/activation.sh - socket activation (issue 12), through
# build/launcher (tests/ops/launcher.c, systemd's LISTEN_FDS protocol).
#
# NOT YET IN `make test`: it waits for chopin.h to use inherited sockets.
# Today build/bench ignores LISTEN_FDS and binds PORT itself, so the serving
# cases fail (nothing answers on the launcher's port) and the broken cases
# fail (the server starts instead of refusing). Run: make ops-activation.
#
# What it expects of build/bench (HOST=127.0.0.1, and PORT set to ANOTHER
# free port, to prove that the inherited socket is used and nothing is bound):
#   serving, in both modes (SERVER_MODE=standard; performance with
#   CHOPIN_WORKERS=2):
#   - GET /plaintext answers on the launcher's port, and PORT stays unbound;
#   - a short load (tests/ops/load.c, keep-alive and new connections) gets
#     only correct answers;
#   - SIGTERM ends it with status 0 within 12 s;
#   - with two inherited sockets (LISTEN_FDS=2, LISTEN_FDNAMES=http:admin)
#     both answer;
#   broken (each must exit with status 1 within 5 s, print a message that
#   names the problem on stderr, and never answer on PORT):
#   - LISTEN_PID is not the server's pid             (message names LISTEN_PID)
#   - fd 3 is a TCP socket that is not listening
#   - fd 3 is a UDP socket
#   - fd 3 is a listening unix socket (wrong family)
#   - fd 3 is not a socket (/dev/null)
#   - LISTEN_FDS=2 but only fd 3 is open            (message names LISTEN_FDS)
# Last line: "N passed, N failed". Everything on 127.0.0.1, every wait bounded.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/ops/common.sh

make -s build/bench build/launcher build/load || { echo "0 passed, 1 failed"; exit 1; }
SERVER=${OPS_SERVER:-./build/bench} # another server speaking the same protocol, to test this script

# serve NAME ENV...: the launcher (one socket) runs build/bench with ENV
serve() {
  local name=$1 other pf log lport pid rc code
  shift
  free_port other
  pf=$OPS_TMP/$name.ports
  log=$OPS_TMP/$name.log
  env "$@" PORT="$other" HOST=127.0.0.1 ./build/launcher --port-file "$pf" -- "$SERVER" >"$log" 2>&1 &
  pid=$!
  track "$pid"
  for _ in $(seq 50); do [ -s "$pf" ] && break; sleep 0.1; done
  lport=$(head -n 1 "$pf" 2>/dev/null)
  if [ -n "$lport" ] && wait_http "$lport" /plaintext 5; then
    ok "$name: serves on the inherited socket 127.0.0.1:$lport"
  else
    bad "$name: nothing answers on the inherited socket 127.0.0.1:${lport:-?}"
    sed 's/^/    /' "$log"
  fi
  code=$(http_status "$other" /plaintext)
  if [ -z "$code" ]; then ok "$name: PORT=$other is not bound"; else bad "$name: it also bound PORT=$other"; fi
  if [ -n "$lport" ] && ./build/load --port "$lport" --seconds 2 --keepalive 4 --rate 100 >"$OPS_TMP/$name.load" 2>&1; then
    ok "$name: load on the inherited socket: $(tail -n 1 "$OPS_TMP/$name.load")"
  else
    bad "$name: load on the inherited socket: $(tail -n 1 "$OPS_TMP/$name.load" 2>/dev/null)"
  fi
  kill -TERM "$pid" 2>/dev/null
  if wait_gone "$pid" 12; then
    wait "$pid"
    rc=$?
    if [ "$rc" -eq 0 ]; then ok "$name: SIGTERM: exit status 0"; else bad "$name: SIGTERM: exit status $rc"; fi
  else
    bad "$name: still running 12 s after SIGTERM"
  fi
}
serve "standard mode" SERVER_MODE=standard
serve "performance mode, 2 workers" SERVER_MODE=performance CHOPIN_WORKERS=2

# two inherited sockets
pf=$OPS_TMP/two.ports
free_port other
PORT=$other HOST=127.0.0.1 CHOPIN_WORKERS=1 ./build/launcher --fds 2 --names http:admin --port-file "$pf" \
  -- "$SERVER" >"$OPS_TMP/two.log" 2>&1 &
pid=$!
track "$pid"
for _ in $(seq 50); do [ -s "$pf" ] && break; sleep 0.1; done
p1=$(sed -n 1p "$pf" 2>/dev/null)
p2=$(sed -n 2p "$pf" 2>/dev/null)
if [ -n "$p2" ] && wait_http "$p1" /plaintext 5 && wait_http "$p2" /plaintext 5; then
  ok "two inherited sockets (LISTEN_FDNAMES=http:admin): both answer"
else
  bad "two inherited sockets: not both answer (${p1:-?}, ${p2:-?})"
  sed 's/^/    /' "$OPS_TMP/two.log"
fi
kill -TERM "$pid" 2>/dev/null
wait_gone "$pid" 12 || bad "two inherited sockets: still running 12 s after SIGTERM"

# broken NAME PATTERN LAUNCHER-OPTIONS...: must exit 1 within 5 s with a
# message (matching PATTERN, case-insensitive) and never answer on PORT
broken() {
  local name=$1 pattern=$2 other log pid rc
  shift 2
  free_port other
  log=$OPS_TMP/broken.log
  PORT=$other HOST=127.0.0.1 CHOPIN_WORKERS=1 ./build/launcher "$@" -- "$SERVER" >"$log" 2>&1 &
  pid=$!
  track "$pid"
  if ! wait_gone "$pid" 5; then
    if [ "$(http_status "$other" /plaintext)" = 200 ]; then
      bad "$name: the server started (and bound PORT) instead of refusing"
    else
      bad "$name: still running after 5 s"
    fi
    kill -TERM "$pid" 2>/dev/null # the launcher passes it on to the server
    wait_gone "$pid" 12 || kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return
  fi
  wait "$pid"
  rc=$?
  if [ "$rc" -eq 1 ] && grep -v '^launcher:' "$log" | grep -qiE "$pattern"; then
    ok "$name: exit 1: $(grep -v '^launcher:' "$log" | grep -iE "$pattern" | head -n 1)"
  else
    bad "$name: exit status $rc (expected 1 with a message matching /$pattern/):"
    sed 's/^/    /' "$log"
  fi
}
broken "LISTEN_PID of another process" "LISTEN_PID" --wrong-pid
broken "fd 3 a TCP socket not listening" "listen" --not-listening
broken "fd 3 a UDP socket" "listen|stream|tcp|udp|type" --udp
broken "fd 3 a unix socket" "family|unix|inet|ip" --unix "$OPS_TMP/chopin.sock"
broken "fd 3 not a socket" "socket" --not-socket
broken "LISTEN_FDS=2 with one fd" "LISTEN_FDS|fd 4|descriptor" --count 2

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
