#!/usr/bin/env bash
# tests/ops/health.sh - the health route while a process drains, and
# ch_restart called by the program (issue 12).
#
# build/selfrestart (tests/ops/selfrestart.c: examples/bench.c's routes, and
# POST /restart whose handler calls ch_restart) runs in standard mode with
# PID_FILE. On one keep-alive connection:
#   1. GET /health answers 200 "ok";
#   2. SIGUSR2: once the new pid is in PID_FILE, the same connection (idle,
#      in the old process's grace) asks GET /health again: 503 "draining"
#      with Connection: close; a new connection gets 200 from the new
#      process;
#   3. POST /restart (ch_restart from a handler) hands over again: 202, a
#      new pid in PID_FILE, and the old process leaves;
#   4. SIGTERM ends the last one with status 0 and removes PID_FILE.
# Last line: "N passed, N failed". Everything on 127.0.0.1, every wait bounded.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/ops/common.sh

make -s build/selfrestart || { echo "0 passed, 1 failed"; exit 1; }
SERVER=${OPS_SERVER:-build/selfrestart}

# answer FD: reads one answer from FD; sets STATUS, BODY, CLOSE (1: it said
# Connection: close). Status 1 if none came within 2 s.
answer() {
  local line len=0
  STATUS= BODY= CLOSE=0
  IFS=' ' read -r -t 2 -u "$1" _ STATUS _ || return 1
  while IFS= read -r -t 2 -u "$1" line; do
    line=${line%$'\r'}
    [ -z "$line" ] && break
    case "${line,,}" in
      content-length:*) len=${line#*:}; len=${len// /} ;;
      connection:*close*) CLOSE=1 ;;
    esac
  done
  [ "$len" -gt 0 ] && { IFS= read -r -t 2 -N "$len" -u "$1" BODY || return 1; }
  return 0
}

# wait_new FILE OLD SECONDS: until FILE names a live pid other than OLD
wait_new() {
  local end=$(($(now_ms) + $3 * 1000)) p
  while [ "$(now_ms)" -lt "$end" ]; do
    p=$(cat "$1" 2>/dev/null)
    [ -n "$p" ] && [ "$p" != "$2" ] && kill -0 "$p" 2>/dev/null && { echo "$p"; return 0; }
    sleep 0.01
  done
  return 1
}

pidfile=$OPS_TMP/chopin.pid
free_port port
PID_FILE=$pidfile PORT=$port HOST=127.0.0.1 SERVER_MODE=standard "$SERVER" >"$OPS_TMP/server.log" 2>&1 &
first=$!
track "$first"
disown "$first"
# wait_pid FILE PID SECONDS: until FILE holds PID (the server writes it just
# after its workers start, so a first answer can come before it is there)
wait_pid() {
  local end=$(($(now_ms) + $3 * 1000))
  while [ "$(now_ms)" -lt "$end" ]; do
    [ "$(cat "$1" 2>/dev/null)" = "$2" ] && return 0
    sleep 0.01
  done
  return 1
}
if ! wait_http "$port" /plaintext 5 || ! wait_pid "$pidfile" "$first" 5; then
  bad "the server did not start, or PID_FILE does not hold its pid"
  sed 's/^/    /' "$OPS_TMP/server.log"
  echo "$passed passed, $failed failed"
  exit 1
fi

exec 5<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /health HTTP/1.1\r\nHost: t\r\n\r\n' >&5
if answer 5 && [ "$STATUS" = 200 ] && [ "$BODY" = ok ] && [ "$CLOSE" = 0 ]; then
  ok "GET /health while serving: 200 \"ok\", kept alive"
else
  bad "GET /health while serving: ${STATUS:-no answer} \"$BODY\" (close $CLOSE)"
fi

kill -USR2 "$first"
if second=$(wait_new "$pidfile" "$first" 5); then
  track "$second"
  printf 'GET /health HTTP/1.1\r\nHost: t\r\n\r\n' >&5
  if answer 5 && [ "$STATUS" = 503 ] && [ "$BODY" = draining ] && [ "$CLOSE" = 1 ]; then
    ok "the old process (pid $first), draining, on its kept-alive connection: 503 \"draining\", Connection: close"
  else
    bad "the old process, draining: GET /health gave ${STATUS:-no answer} \"$BODY\" (close $CLOSE)"
  fi
  code=$(http_status "$port" /health)
  if [ "$code" = 200 ]; then ok "a new connection: 200 from the new process (pid $second)"; else bad "a new connection: ${code:-no answer}"; fi
  if wait_gone "$first" 12; then ok "the old process left"; else bad "the old process (pid $first) still runs 12 s later"; fi
else
  bad "SIGUSR2: no new pid in PID_FILE within 5 s"
  second=$first
fi
exec 5<&-

exec 6<>"/dev/tcp/127.0.0.1/$port"
printf 'POST /restart HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' >&6
if answer 6 && [ "$STATUS" = 202 ]; then
  ok "POST /restart (ch_restart in a handler): 202"
else
  bad "POST /restart: ${STATUS:-no answer} $BODY"
fi
exec 6<&-
if third=$(wait_new "$pidfile" "$second" 5); then
  track "$third"
  if wait_gone "$second" 12 && [ "$(http_status "$port" /plaintext)" = 200 ]; then
    ok "ch_restart: pid $second -> $third, and the old one left"
  else
    bad "ch_restart: pid $second -> $third, but the old one stays or nothing answers"
  fi
else
  bad "ch_restart: no new pid in PID_FILE within 5 s"
  third=$second
fi

kill -TERM "$third"
if wait_gone "$third" 12; then
  if [ -e "$pidfile" ]; then bad "SIGTERM: PID_FILE left behind"; else ok "SIGTERM: pid $third left and removed PID_FILE"; fi
else
  bad "SIGTERM: pid $third still runs 12 s later"
fi
# a sanitizer build (OPS_SERVER=build/selfrestart-asan) reports into the log
if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error' "$OPS_TMP/server.log"; then
  bad "sanitizer report in the server log:"
  grep -E -A5 'AddressSanitizer|LeakSanitizer|runtime error' "$OPS_TMP/server.log" | head -n 20 | sed 's/^/    /'
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
