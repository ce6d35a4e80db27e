#!/usr/bin/env bash
# uring.sh - `make bench-uring`: the io_uring backend beside epoll, one
# pinned worker each (CHOPIN_WORKERS=1, taskset SERVER_CPU), build/client
# pinned on CLIENT_CPU, 127.0.0.1, GET /plaintext. Cases: 64 and 1,024
# keep-alive connections (depth 1), 64 connections pipelined 16. Rounds
# interleave the backends (epoll, io_uring, io_uring, epoll, ...) so drift
# hits both alike; medians are reported with the io_uring/epoll ratio.
# Per run: the server's CPU (user + system from /proc/PID/stat, every thread)
# over the requests answered; its system calls (perf stat -e
# raw_syscalls:sys_enter on the server's pid for the same run, when perf
# works here); the client's own CPU (GNU time). Not a test: figures only.
# Environment: ROUNDS=3 REQUESTS=200000 PIPE_REQUESTS=1000000 SERVER_CPU=1
#   CLIENT_CPU=0 STRACE=1 (one more short pass per backend under strace -c -f:
#   which system calls; ptrace slows the server, so only the counts matter)
#   URING=path: the io_uring build to measure (default build/bench-uring)
#   BASE=path: an earlier io_uring build of examples/bench.c, run as a third
#   contender ("base") in every round, to measure one change before/after
#   CHURN=1: one more case, a new connection per request (client -k 0: the
#   request says Connection: close), 64 at a time, CHURN_REQUESTS=20000
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-200000}
PIPE_REQUESTS=${PIPE_REQUESTS:-1000000}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
STRACE=${STRACE:-1}
BASE=${BASE:-}
CHURN=${CHURN:-0}
CHURN_REQUESTS=${CHURN_REQUESTS:-20000}
make -s build/bench build/bench-uring build/client build/no-uring || exit 1
if ! ./build/no-uring --probe >/dev/null; then
  echo "bench-uring: $(./build/no-uring --probe): nothing to compare"
  exit 1
fi
perf_ok=0
perf stat -e raw_syscalls:sys_enter -x, -o /tmp/uring-bench-perf.$$ -- true >/dev/null 2>&1 && perf_ok=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; [ -n "${spid:-}" ] && kill "$spid" 2>/dev/null' EXIT
hz=$(getconf CLK_TCK)
port=$((20000 + RANDOM % 20000))

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start() { # binary
  port=$((port + 1))
  PORT=$port HOST=127.0.0.1 CHOPIN_WORKERS=1 taskset -c "$SERVER_CPU" "$1" >"$tmp/server.out" 2>&1 &
  spid=$!
  for _ in $(seq 1 400); do grep -q listening "$tmp/server.out" 2>/dev/null && return 0; sleep 0.05; done
  echo "bench-uring: $1 did not start" >&2
  return 1
}
stop() { kill -TERM "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; spid=; }

# one measured run: prints "server_us_per_req syscalls_per_req client_us_per_req req_per_s"
measure() { # conns depth requests [keep-alive: 1, or 0 for a connection per request]
  local c=$1 d=$2 n=$3 k=${4:-1} t0 t1 ppid=0 sys=NA
  taskset -c "$CLIENT_CPU" ./build/client -p "$port" -P /plaintext -n $((k ? 20000 : 2000)) -c "$c" -d "$d" -k "$k" -q \
    >/dev/null 2>&1
  if [ "$perf_ok" = 1 ]; then
    perf stat -e raw_syscalls:sys_enter -x, -o "$tmp/perf" -p "$spid" >/dev/null 2>&1 &
    ppid=$!
    sleep 0.3
  fi
  t0=$(cpu_ticks "$spid")
  /usr/bin/time -f "%U %S" -o "$tmp/ctime" taskset -c "$CLIENT_CPU" \
    ./build/client -p "$port" -P /plaintext -n "$n" -c "$c" -d "$d" -k "$k" >"$tmp/client" 2>&1
  t1=$(cpu_ticks "$spid")
  if [ "$ppid" != 0 ]; then
    kill -INT "$ppid"; wait "$ppid" 2>/dev/null
    sys=$(awk -F, '/raw_syscalls/ {print $1}' "$tmp/perf")
  fi
  awk -v t0="$t0" -v t1="$t1" -v hz="$hz" -v n="$n" -v sys="$sys" -v ct="$(cat "$tmp/ctime" | tail -n 1)" \
      -v rps="$(awk '{print $(NF-1)}' "$tmp/client")" 'BEGIN {
    split(ct, c, " ");
    printf "%.3f %s %.3f %s\n", (t1 - t0) / hz * 1e6 / n, (sys == "NA" ? "NA" : sprintf("%.3f", sys / n)),
           (c[1] + c[2]) * 1e6 / n, rps }'
}

cases=("64 1 $REQUESTS" "1024 1 $REQUESTS" "64 16 $PIPE_REQUESTS")
[ "$CHURN" = 1 ] && cases+=("64 0 $CHURN_REQUESTS")
backends="epoll io_uring"
[ -n "$BASE" ] && backends="epoll io_uring base"
binary() { case $1 in epoll) echo ./build/bench ;; io_uring) echo "${URING:-./build/bench-uring}" ;; base) echo "$BASE" ;; esac; }
echo "# bench-uring: $(date -u '+%F %T') UTC, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
     "server on CPU $SERVER_CPU, client on CPU $CLIENT_CPU, $ROUNDS rounds"
: >"$tmp/all"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order=$backends; else order=$(echo $backends | tr ' ' '\n' | tac | tr '\n' ' '); fi
  for b in $order; do
    bin=$(binary "$b")
    start "$bin" || exit 1
    want=$b; [ "$b" = base ] && want=io_uring
    grep -q "$want)" "$tmp/server.out" || { echo "bench-uring: $bin does not run on $want: $(head -n 1 "$tmp/server.out")"; exit 1; }
    for cs in "${cases[@]}"; do
      set -- $cs
      # depth 0 names the churn case: depth 1, a connection per request
      if [ "$2" = 0 ]; then line=$(measure "$1" 1 "$3" 0); else line=$(measure "$1" "$2" "$3"); fi
      echo "$b $1 $2 $line" | tee -a "$tmp/all" | sed 's/^/# round '"$r"': /'
    done
    stop
  done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| case | backend | server CPU µs/req | syscalls/req | client CPU µs/req | req/s | server CPU io_uring/epoll |"
echo "|---|---|---|---|---|---|---|"
for cs in "${cases[@]}"; do
  set -- $cs
  for b in $backends; do
    awk -v b="$b" -v c="$1" -v d="$2" '$1 == b && $2 == c && $3 == d' "$tmp/all" >"$tmp/sel"
    med() { sort -g | awk '{v[NR] = $1} END {print (NR ? v[int((NR + 1) / 2)] : "NA")}'; }
    s=$(cut -d' ' -f4 "$tmp/sel" | med); y=$(cut -d' ' -f5 "$tmp/sel" | med)
    k=$(cut -d' ' -f6 "$tmp/sel" | med); q=$(cut -d' ' -f7 "$tmp/sel" | med)
    eval "srv_$b=$s"
    ratio=""
    [ "$b" != epoll ] && ratio=$(awk -v a="$s" -v e="$srv_epoll" 'BEGIN {printf "%.2f", a / e}')
    shape="$1 conns, depth $2"; [ "$2" = 0 ] && shape="$1 at a time, a connection per request"
    echo "| $shape | $b | $s | $y | $k | $q | $ratio |"
  done
done
if [ "$STRACE" = 1 ] && command -v strace >/dev/null; then
  for b in epoll io_uring; do
    bin=./build/bench; [ "$b" = io_uring ] && bin=./build/bench-uring
    port=$((port + 1))
    PORT=$port HOST=127.0.0.1 CHOPIN_WORKERS=1 timeout 60 strace -c -f -o "$tmp/strace" "$bin" >"$tmp/server.out" 2>&1 &
    spid=$!
    for _ in $(seq 1 400); do grep -q listening "$tmp/server.out" 2>/dev/null && break; sleep 0.05; done
    ./build/client -p "$port" -P /plaintext -n 50000 -c 64 -d 1 -q >/dev/null 2>&1
    kill -INT "$spid"; wait "$spid" 2>/dev/null; spid=
    echo
    echo "strace -c -f, $b, 50,000 requests over 64 keep-alive connections (with start-up and stop):"
    awk 'NR <= 2 || /total/ || ($4 + 0 > 1000)' "$tmp/strace"
  done
fi
