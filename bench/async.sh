#!/usr/bin/env bash
# async.sh - the three figures of issue 10 (answering later), `make async-bench`.
# A benchmark, not a test: it prints figures and checks nothing.
#
#  1. On one pinned worker (server on CPU $SERVER_CPU, load on $CLIENT_CPU):
#     /fast keep-alive req/s and p99 (wrk, 64 connections) alone, then while
#     64 /delay?ms=200 are always in flight (a second wrk keeps 64
#     connections each with one /delay waiting); the ratio (target >= 0.9).
#  2. The cost of a deferred response: /delay?ms=0 (deferred, finished by a
#     0 ms timer) against /now?ms=0, its synchronous twin (the same query
#     parsing and printf body, answered at once; bench/async_overhead.c):
#     server CPU microseconds per request under wrk, and user-space
#     instructions per request under callgrind (one keep-alive connection,
#     W and W+N requests, the difference / N, as bench/cost.sh does).
#  3. SSE fan-out: 10,000 clients on /subscribe (one worker and two), one
#     POST /publish: the time until every client has the message, and the
#     server's CPU for it (bench/sse_fanout.py).
#
# Environment: DURATION (s per wrk run, 10), SERVER_CPU (1), CLIENT_CPU (0),
# COST_N (callgrind requests, 20000), FANOUT (10000).
set -uo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
COST_N=${COST_N:-20000}
FANOUT=${FANOUT:-10000}
PORT=${PORT:-3990}
make -s build/async build/async-overhead build/async-overhead-cost build/client >/dev/null || exit 1
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }

server_pid=
start() { # workers [cpu [binary]]
  if [ -n "${2:-}" ]; then
    PORT=$PORT HOST=127.0.0.1 CHOPIN_WORKERS=$1 taskset -c "$2" "${3:-./build/async}" >/dev/null &
  else
    PORT=$PORT HOST=127.0.0.1 CHOPIN_WORKERS=$1 ./build/async >/dev/null &
  fi
  server_pid=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/fast" && return 0
    sleep 0.05
  done
  echo "server did not start"; exit 1
}
stop() { kill -TERM "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

wrk_run() { # path -> "req/s p99"
  taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"${DURATION}s" --latency "http://127.0.0.1:$PORT$1" |
    awk '/Requests\/sec/ {r=$2} /^ +99%/ {p=$2} END {print r, p}'
}

echo "== 1. /fast beside 64 /delay?ms=200 in flight (one worker on CPU $SERVER_CPU, wrk -c64 on CPU $CLIENT_CPU, ${DURATION}s)"
start 1 "$SERVER_CPU"
read -r alone alone_p99 < <(wrk_run /fast)
taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"$((DURATION + 4))s" "http://127.0.0.1:$PORT/delay?ms=200" >/tmp/async_bench_delay.txt &
bg=$!
sleep 2
read -r beside beside_p99 < <(wrk_run /fast)
wait "$bg"
delay_rps=$(awk '/Requests\/sec/ {print $2}' /tmp/async_bench_delay.txt)
stop
echo "   /fast alone:               $alone req/s, p99 $alone_p99"
echo "   /fast beside 64 /delay:    $beside req/s, p99 $beside_p99 (the /delay load: $delay_rps req/s, 64 x 5/s = 320 expected)"
awk -v a="$alone" -v b="$beside" 'BEGIN {printf "   ratio: %.3f (target >= 0.9)\n", b / a}'

echo "== 2. a deferred response's cost: /delay?ms=0 against its synchronous twin /now?ms=0"
for path in "/now?ms=0" "/delay?ms=0"; do
  start 1 "$SERVER_CPU" ./build/async-overhead
  t0=$(cpu_ticks "$server_pid")
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$PORT$path")
  t1=$(cpu_ticks "$server_pid")
  stop
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  awk -v p="$path" -v t="$((t1 - t0))" -v hz="$TICK" -v n="$reqs" -v r="$rps" \
    'BEGIN {printf "   %-13s %s req/s, server CPU %.2f us/request\n", p, r, t / hz * 1e6 / n}'
done
if command -v valgrind >/dev/null; then
  W=2000
  for path in "/now?ms=0" "/delay?ms=0"; do
    total=()
    for n in $W $((W + COST_N)); do
      f=$(mktemp)
      PORT=$PORT HOST=127.0.0.1 CHOPIN_WORKERS=1 taskset -c "$SERVER_CPU" valgrind --tool=callgrind \
        --callgrind-out-file="$f" ./build/async-overhead-cost >/dev/null 2>&1 &
      server_pid=$!
      for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$PORT/fast" && break; sleep 0.1; done
      taskset -c "$SERVER_CPU" ./build/client -p "$PORT" -P "$path" -n "$n" -c 1 -q >/dev/null
      stop
      total+=("$(awk '/^summary:/ {print $2}' "$f")")
      rm -f "$f"
    done
    awk -v p="$path" -v a="${total[0]}" -v b="${total[1]}" -v n="$COST_N" \
      'BEGIN {printf "   %-13s %.1f instructions per request (callgrind, one keep-alive connection)\n", p, (b - a) / n}'
  done
fi

echo "== 3. SSE fan-out: $FANOUT clients on /subscribe over two workers, one POST /publish"
for workers in 2; do  # one worker would need max_connections above 10,000
  start "$workers"
  python3 bench/sse_fanout.py "$PORT" "$FANOUT" "$server_pid" "$workers"
  stop
done
