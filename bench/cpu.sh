#!/usr/bin/env bash
# cpu.sh - server CPU microseconds per request, two builds side by side:
#
#   bash bench/cpu.sh OLD_SERVER NEW_SERVER      (e.g. a build of an older
#                                                 commit against build/bench)
#
# Each server runs with one worker pinned to SERVER_CPU (default 1); build/client
# runs on CLIENT_CPU (default 0) and sends REQUESTS requests (default 200000)
# over CONNS keep-alive connections (default 64) at depth DEPTH (default 1;
# 16 is the pipelined shape), for /plaintext, /json and /users/42. The server's
# CPU time (user + system, /proc/PID/stat) over the run, divided by the
# requests, is the figure; ROUNDS rounds (default 5) alternate the two servers
# so drift hits both alike, and the median is printed with the ratio NEW/OLD
# and the load average (the machine may be shared: quote it beside the figures).
# HEADER="Name: value" adds that line to every request (e.g. an Origin, to
# measure build/bench-cost-batteries against build/bench-cost as cost.sh's
# batteries.keepalive does).
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 OLD_SERVER NEW_SERVER" >&2; exit 2; }
OLD=$1 NEW=$2
REQUESTS=${REQUESTS:-200000} CONNS=${CONNS:-64} DEPTH=${DEPTH:-1} ROUNDS=${ROUNDS:-5}
SERVER_CPU=${SERVER_CPU:-1} CLIENT_CPU=${CLIENT_CPU:-0}
make -s build/client >&2 || exit 1
tick=$(getconf CLK_TCK)

one() { # server path body -> CPU microseconds per request
  local server=$1 path=$2 body=$3 log pid port i t0 t1
  log=$(mktemp)
  PORT=0 HOST=127.0.0.1 CHOPIN_WORKERS=1 SERVER_MODE=performance taskset -c "$SERVER_CPU" "$server" >"$log" 2>&1 &
  pid=$!
  for i in $(seq 200); do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && break
    sleep 0.05
  done
  t0=$(awk '{print $14 + $15}' /proc/$pid/stat)
  taskset -c "$CLIENT_CPU" build/client -p "$port" -P "$path" -n "$REQUESTS" -c "$CONNS" -d "$DEPTH" -b "$body" ${HEADER:+-H "$HEADER"} -q -t 120 >&2
  t1=$(awk '{print $14 + $15}' /proc/$pid/stat)
  kill -TERM "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  rm -f "$log"
  awk -v a="$t0" -v b="$t1" -v n="$REQUESTS" -v hz="$tick" 'BEGIN {printf "%.3f\n", (b - a) / hz * 1e6 / n}'
}

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-12s %8s %8s %7s   (CPU us per request, median of %d rounds, %d requests, %d connections, depth %d)\n' \
  path old new new/old "$ROUNDS" "$REQUESTS" "$CONNS" "$DEPTH"
for c in "/plaintext|Hello, World!" "/json|{\"message\":\"Hello, World!\"}" "/users/42|{\"id\":\"42\"}"; do
  path=${c%%|*} body=${c#*|}
  a=() b=()
  for r in $(seq "$ROUNDS"); do
    a+=("$(one "$OLD" "$path" "$body")")
    b+=("$(one "$NEW" "$path" "$body")")
  done
  ma=$(printf '%s\n' "${a[@]}" | median) mb=$(printf '%s\n' "${b[@]}" | median)
  printf '%-12s %8s %8s %7s\n' "$path" "$ma" "$mb" "$(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.3f", b / a}')"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
