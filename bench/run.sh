#!/usr/bin/env bash
# run.sh - `make bench`: chopin.h beside nginx, h2o and Node.js on the same
# machine, in the same run.
#
# Modes:
#   pinned   every server with one worker on CPU 1 (taskset), wrk -t1 on CPU 0
#   shared   every server with two workers, unpinned; wrk -t2 shares the CPUs
# For /plaintext and /json, keep-alive and pipelined depth 16 (the TechEmpower
# plaintext shape, bench/pipeline.lua), 64 connections. Rounds interleave the
# servers (A B C D A B C D ...) so drift hits all alike; the median of the
# rounds is reported. For every run the server's CPU time (user + system, from
# /proc/PID/stat, all its processes and threads) is divided by the requests
# wrk counted: CPU microseconds per request. A last short pass per case counts
# the server's system calls with `perf stat -e raw_syscalls:sys_enter` when
# perf works here (no ptrace, so the server runs at full speed).
# hyperfine then times whole commands: compiling a program that includes
# chopin.h, and 200,000 requests from build/client against each server.
#
# Writes bench/results/latest.md (tables), latest.svg (bar chart) and
# latest.tsv (every run). Environment:
#   DURATION=5 ROUNDS=3 CONNS=64 SERVERS="chopin nginx h2o node"
#   SERVER_CPU=1 CLIENT_CPU=0 (pinned mode)
#   MODES="pinned shared" SYS_DURATION=3 HYPERFINE=1 RESULTS=bench/results
#   BENCH_REF=<commit>: measure that commit's chopin.h, not the working tree
#   FOREIGN_MAX=10 ATTEMPTS=3 QUIET_WAIT=30 PATIENCE=1200: before each run the
#   script waits (up to QUIET_WAIT s) until other processes (and the
#   hypervisor's steal time) use less than FOREIGN_MAX% of a CPU; a run during
#   which they used more is repeated, up to ATTEMPTS runs in all; waiting and
#   repeating stop once they have cost PATIENCE s in the whole run. The median
#   is taken over the undisturbed rounds when there are any.
set -uo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
SERVERS=${SERVERS:-"chopin nginx h2o node"}
MODES=${MODES:-"pinned shared"}
SYS_DURATION=${SYS_DURATION:-3}
HYPERFINE=${HYPERFINE:-1}
RESULTS=${RESULTS:-bench/results}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
BASE_PORT=${BASE_PORT:-18080}
FOREIGN_MAX=${FOREIGN_MAX:-10}  # % of one CPU that other processes may use during a run
ATTEMPTS=${ATTEMPTS:-3}         # runs of one measurement at most, while disturbed
QUIET_WAIT=${QUIET_WAIT:-30}    # seconds to wait for a quiet machine before a run
PATIENCE=${PATIENCE:-1200}      # seconds of waiting and repeating in the whole run, at most
CASES=("/plaintext 1" "/plaintext 16" "/json 1" "/json 16")

say() { echo "bench: $*" >&2; }

# ---------------------------------------------------------------- tools
install() { # command package
  command -v "$1" >/dev/null && return 0
  say "installing $2 ..."
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "${apt_updated:-}" ]; then apt-get update -qq >/dev/null 2>&1; apt_updated=1; fi
  apt-get install -y -qq "$2" >/dev/null 2>&1
  command -v "$1" >/dev/null
}
install wrk wrk || { say "wrk is needed"; exit 1; }
install taskset util-linux || { say "taskset is needed"; exit 1; }
[ "$HYPERFINE" = 1 ] && { install hyperfine hyperfine || { say "no hyperfine: skipping whole-command timings"; HYPERFINE=0; }; }
active=()
for s in $SERVERS; do
  case $s in
    chopin) active+=(chopin) ;;
    nginx) if command -v nginx >/dev/null || install nginx nginx-light; then active+=(nginx); else say "no nginx: skipped"; fi ;;
    h2o) if install h2o h2o; then
           # the Debian package's service must not hold port 80 or run in the background
           command -v systemctl >/dev/null && systemctl disable --now h2o >/dev/null 2>&1
           active+=(h2o)
         else say "no h2o: skipped"; fi ;;
    node) if command -v node >/dev/null || install node nodejs; then active+=(node); else say "no node: skipped"; fi ;;
    *) say "unknown server $s"; exit 2 ;;
  esac
done
make -s build/bench build/client || exit 1
have_perf=0
if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -x, -o /dev/null -- true >/dev/null 2>&1; then
  have_perf=1
else
  say "perf cannot count syscalls here: the syscalls column stays empty"
fi

tmp=$(mktemp -d)
# The run uses copies of the binaries, so that a rebuild of build/ by anyone
# during the run changes nothing, and records what they were built from.
# BENCH_REF=<commit> measures that commit's chopin.h and example app (built
# with the Makefile's release flags) instead of the working tree.
if [ -n "${BENCH_REF:-}" ]; then
  mkdir -p "$tmp/src/examples"
  git show "$BENCH_REF:chopin.h" >"$tmp/src/chopin.h" && git show "$BENCH_REF:examples/bench.c" >"$tmp/src/examples/bench.c" &&
    make -s -C "$tmp/src" -f "$PWD/Makefile" build/bench || { say "cannot build $BENCH_REF"; exit 1; }
  cp "$tmp/src/build/bench" "$tmp/chopin-bench"
  built_from="chopin.h $(git log -1 --format='%h (%cs)' "$BENCH_REF")"
  src=$tmp/src/chopin.h
else
  cp build/bench "$tmp/chopin-bench"
  built_from="chopin.h $(git log -1 --format='%h (%cs)' 2>/dev/null)$(git diff --quiet HEAD -- chopin.h examples/bench.c 2>/dev/null || echo ' + uncommitted changes')"
  src=chopin.h
fi
cp build/client "$tmp/client" || exit 1
built_from="$built_from (sha256 of chopin.h $(sha256sum "$src" | cut -c1-12)), built with $(${CC:-cc} --version | head -n 1)"
roots=()
cleanup() {
  local p
  for p in "${roots[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${roots[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- /proc
# A process and all its descendants (nginx's workers, Node's cluster).
tree() {
  # (processes that exit meanwhile make cat fail: that is no error here)
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    { s = $0; sub(/.*\) /, "", s); split(s, a, " "); parent[$1] = a[2] }
    END {
      t[root] = 1
      do { more = 0; for (p in parent) if (!(p in t) && (parent[p] in t)) { t[p] = 1; more = 1 } } while (more)
      for (p in t) print p
    }'
}

# User + system CPU time, in clock ticks, of the given processes (each
# process's line sums all its threads).
cpu_ticks() {
  local p
  for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null || true; done |
    awk '{ s = $0; sub(/.*\) /, "", s); split(s, a, " "); t += a[12] + a[13] } END { print t + 0 }'
}
HZ=$(getconf CLK_TCK)

# Percentage of the machine's CPU time spent by anything over a second in
# which our servers are idle: the background load of this run.
background_busy() {
  local a b
  a=$(head -n 1 /proc/stat)
  sleep 1
  b=$(head -n 1 /proc/stat)
  printf '%s\n%s\n' "$a" "$b" | awk '{ idle = $5 + $6; tot = 0; for (i = 2; i <= NF; i++) tot += $i; I[NR] = idle; T[NR] = tot }
    END { d = T[2] - T[1]; printf "%.0f", (d > 0 ? 100 * (1 - (I[2] - I[1]) / d) : 0) }'
}

# CPU time the whole machine spent on processes (user, nice, system) or lost
# to the hypervisor (steal), in clock ticks.
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $9; exit}' /proc/stat; }

# Waits (up to QUIET_WAIT seconds) until the rest of the machine is quiet:
# over half a second, less than FOREIGN_MAX% of one CPU in user + system time
# (our servers are idle meanwhile). Prints the seconds waited.
wait_quiet() { # [most seconds]
  local waited=0 a b busy most=${1:-$QUIET_WAIT}
  [ "$most" -gt "$QUIET_WAIT" ] && most=$QUIET_WAIT
  while :; do
    a=$(busy_ticks)
    sleep 0.5
    b=$(busy_ticks)
    busy=$(awk -v a="$a" -v b="$b" -v hz="$HZ" 'BEGIN {printf "%.0f", 100 * (b - a) / hz / 0.5}')
    if [ "$busy" -le "$FOREIGN_MAX" ] || [ "$waited" -ge "$most" ]; then break; fi
    sleep 1.5
    waited=$((waited + 2))
  done
  echo "$waited"
}

# ---------------------------------------------------------------- servers
port_of() {
  case $1 in chopin) echo $BASE_PORT ;; nginx) echo $((BASE_PORT + 1)) ;; h2o) echo $((BASE_PORT + 2)) ;; node) echo $((BASE_PORT + 3)) ;; esac
}

wait_port() {
  local i
  for i in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

declare -A ROOT=() PIDS=()
start_server() { # name workers pin(0/1)
  local name=$1 workers=$2 pin=() port
  port=$(port_of "$name")
  [ "$3" = 1 ] && pin=(taskset -c "$SERVER_CPU")
  case $name in
    chopin)
      PORT=$port HOST=127.0.0.1 CHOPIN_WORKERS=$workers SERVER_MODE=performance "${pin[@]}" "$tmp/chopin-bench" \
        >"$tmp/chopin.log" 2>&1 &
      ;;
    nginx)
      mkdir -p "$tmp/nginx"
      sed -e "s/^worker_processes .*/worker_processes $workers;/" -e "s/127\.0\.0\.1:8081/127.0.0.1:$port/" \
        bench/peers/nginx.conf >"$tmp/nginx/nginx.conf"
      "${pin[@]}" nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" >"$tmp/nginx.log" 2>&1 &
      ;;
    h2o)
      sed -e "s/^num-threads: .*/num-threads: $workers/" -e "s/^  port: .*/  port: $port/" \
        bench/peers/h2o.conf >"$tmp/h2o.conf"
      "${pin[@]}" h2o -c "$tmp/h2o.conf" >"$tmp/h2o.log" 2>&1 &
      ;;
    node)
      PORT=$port HOST=127.0.0.1 WORKERS=$workers "${pin[@]}" node bench/peers/node.js >"$tmp/node.log" 2>&1 &
      ;;
  esac
  ROOT[$name]=$!
  roots+=($!)
  if ! wait_port "$port"; then
    say "$name did not start:"
    cat "$tmp/$name.log" >&2
    return 1
  fi
  # Node's cluster workers listen a little after the primary
  if [ "$name" = node ] && [ "$workers" -gt 1 ]; then
    local i
    for i in $(seq 100); do [ "$(grep -c listening "$tmp/node.log")" -ge "$workers" ] && break; sleep 0.05; done
  fi
  sleep 0.3
  PIDS[$name]=$(tree "${ROOT[$name]}" | tr '\n' ' ')
  return 0
}

stop_servers() {
  local s p i
  for s in "${!ROOT[@]}"; do kill -TERM "${ROOT[$s]}" 2>/dev/null; done
  for s in "${!ROOT[@]}"; do
    for i in $(seq 100); do kill -0 "${ROOT[$s]}" 2>/dev/null || break; sleep 0.05; done
    for p in ${PIDS[$s]}; do kill -KILL "$p" 2>/dev/null; done
    wait "${ROOT[$s]}" 2>/dev/null
  done
  ROOT=()
  PIDS=()
  roots=()
}

# ---------------------------------------------------------------- wrk
# Converts wrk's "345.00us", "1.20ms", "2.00s" to microseconds.
to_us() {
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) f = 1; else if (v ~ /ms$/) f = 1000; else if (v ~ /s$/) f = 1e6; else f = 1; printf "%.0f", n * f }'
}

# One wrk run against a server; prints
#   req/s  requests  cpu-us/request  p50-us  p99-us  errors  foreign  wrk-cpu
# foreign: CPU time that neither the server nor wrk used during the run
# (user + system of the whole machine, /proc/stat), in % of one CPU: another
# process competing with the benchmark. wrk-cpu: wrk's own CPU time in % of
# one CPU (near 100 per wrk thread: the load generator is the bottleneck).
run_wrk() { # name path depth seconds mode
  local name=$1 path=$2 depth=$3 secs=$4 mode=$5 port out c0 c1 m0 m1 wrk_s req rps p50 p99 err
  local args=(-c"$CONNS" -d"${secs}s" --latency) client=()
  port=$(port_of "$name")
  if [ "$mode" = pinned ]; then args+=(-t1); client=(taskset -c "$CLIENT_CPU"); else args+=(-t2); fi
  [ "$depth" -gt 1 ] && args+=(-s bench/pipeline.lua)
  m0=$(busy_ticks)
  # shellcheck disable=SC2086
  c0=$(cpu_ticks ${PIDS[$name]})
  # `times` adds the CPU time of the subshell's children: wrk's
  out=$(DEPTH=$depth timeout $((secs + 30)) "${client[@]}" wrk "${args[@]}" "http://127.0.0.1:$port$path" 2>&1; times)
  # shellcheck disable=SC2086
  c1=$(cpu_ticks ${PIDS[$name]})
  m1=$(busy_ticks)
  wrk_s=$(echo "$out" | tail -n 1 | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] } print t }')
  req=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  p50=$(to_us "$(echo "$out" | awk '$1 == "50%" {print $2}')")
  p99=$(to_us "$(echo "$out" | awk '$1 == "99%" {print $2}')")
  # wrk's percentiles break down on very fast pipelined runs (75% and up
  # print 0.00us): such a distribution is not reported
  if [ "$p99" -lt "$p50" ] || [ "$p50" -le 0 ]; then p50=-1; p99=-1; fi
  err=$(echo "$out" | awk '/Non-2xx/ {e += $NF} /Socket errors/ {gsub(/,/, ""); e += $4 + $6 + $8 + $10} END {print e + 0}')
  if [ -z "$req" ] || [ -z "$rps" ] || [ "$req" = 0 ]; then
    say "wrk failed against $name $path:"
    echo "$out" >&2
    echo "0 0 0 0 0 1 0 0"
    return
  fi
  [ "$err" -gt 0 ] && say "$name $path depth $depth: $err errors"
  awk -v rps="$rps" -v req="$req" -v c0="$c0" -v c1="$c1" -v hz="$HZ" -v p50="$p50" -v p99="$p99" -v err="$err" \
    -v m0="$m0" -v m1="$m1" -v wrk="$wrk_s" -v secs="$secs" 'BEGIN {
      f = ((m1 - m0) - (c1 - c0)) / hz - wrk; if (f < 0) f = 0
      printf "%.0f %d %.3f %d %d %d %.0f %.0f\n", rps, req, (c1 - c0) * 1e6 / hz / req, p50, p99, err, 100 * f / secs, 100 * wrk / secs }'
}

# Syscalls per request: perf counts the sys_enter tracepoint in the kernel
# while wrk runs (no ptrace, so no slowdown worth the name).
run_sys() { # name path depth mode
  local name=$1 path=$2 depth=$3 mode=$4 pids n req
  pids=$(echo ${PIDS[$name]} | tr ' ' ',')
  perf stat -e raw_syscalls:sys_enter -x, -o "$tmp/perf.out" -p "$pids" -- sleep $((SYS_DURATION + 1)) >/dev/null 2>&1 &
  local perf_pid=$!
  sleep 0.3
  req=$(run_wrk "$name" "$path" "$depth" "$SYS_DURATION" "$mode" | awk '{print $2}')
  wait "$perf_pid"
  n=$(awk -F, '/raw_syscalls/ {print ($1 ~ /^[0-9]+$/) ? $1 : 0}' "$tmp/perf.out")
  awk -v n="${n:-0}" -v r="${req:-0}" 'BEGIN { if (r > 0) printf "%.3f\n", n / r; else print "-" }'
}

shape_of() { [ "$1" = 1 ] && echo keep-alive || echo "pipelined-$1"; }

# ---------------------------------------------------------------- the run
mkdir -p "$RESULTS"
runs=$tmp/runs.tsv     # mode route shape round server rps requests cpu p50 p99 errors foreign% wrk-cpu% attempts
sys=$tmp/sys.tsv       # mode route shape server syscalls/request
notes=$tmp/notes.txt
: >"$runs"
: >"$sys"
: >"$notes"
started=$(date -u '+%Y-%m-%d %H:%M UTC')
patience=$PATIENCE
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$notes"

for mode in $MODES; do
  if [ "$mode" = pinned ]; then workers=1; pin=1; else workers=2; pin=0; fi
  busy=$(background_busy)
  say "mode $mode: background CPU use ${busy}% (load $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "mode $mode: background CPU use before the runs ${busy}% of both CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)" >>"$notes"
  [ "$busy" -gt 10 ] && say "WARNING: the machine is busy (${busy}% CPU before the run); ratios in one run still compare"
  servers=()
  for s in "${active[@]}"; do
    if start_server "$s" "$workers" "$pin"; then servers+=("$s"); else echo "mode $mode: $s did not start" >>"$notes"; fi
  done
  # warm-up (Node's JIT, every server's caches)
  for s in "${servers[@]}"; do
    for path in /plaintext /json; do run_wrk "$s" "$path" 1 1 "$mode" >/dev/null; done
  done
  for c in "${CASES[@]}"; do
    read -r path depth <<<"$c"
    shape=$(shape_of "$depth")
    for r in $(seq "$ROUNDS"); do
      for s in "${servers[@]}"; do
        # a run that another process disturbed is run again (up to ATTEMPTS)
        for a in $(seq "$ATTEMPTS"); do
          if [ "$patience" -gt 0 ]; then
            w=$(wait_quiet "$patience")
            patience=$((patience - w))
            [ "$w" -gt 0 ] && say "  waited ${w} s for other processes to calm down"
          fi
          res=$(run_wrk "$s" "$path" "$depth" "$DURATION" "$mode")
          foreign=$(echo "$res" | awk '{print $7}')
          say "$mode $path $shape round $r $s: $(echo "$res" | awk '{printf "%s req/s, %s CPU us/req, p99 %s us, others used %s%% of a CPU", $1, $3, $5, $7}')"
          [ "$foreign" -le "$FOREIGN_MAX" ] && break
          [ "$patience" -le 0 ] && break
          if [ "$a" -lt "$ATTEMPTS" ]; then
            say "  disturbed by another process: again"
            patience=$((patience - DURATION))
          fi
        done
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$path" "$shape" "$r" "$s" "$(echo "$res" | tr ' ' '\t')" "$a" >>"$runs"
      done
    done
  done
  if [ "$have_perf" = 1 ]; then
    for c in "${CASES[@]}"; do
      read -r path depth <<<"$c"
      shape=$(shape_of "$depth")
      for s in "${servers[@]}"; do
        [ "$patience" -gt 0 ] && patience=$((patience - $(wait_quiet "$patience")))
        n=$(run_sys "$s" "$path" "$depth" "$mode")
        printf '%s\t%s\t%s\t%s\t%s\n' "$mode" "$path" "$shape" "$s" "$n" >>"$sys"
        say "$mode $path $shape $s: $n syscalls/request"
      done
    done
  fi
  if [ "$HYPERFINE" = 1 ] && [ "$mode" = pinned ]; then
    # 200,000 requests over 64 keep-alive connections, as one timed command
    hf_cmds=()
    for s in "${servers[@]}"; do
      hf_cmds+=(-n "$s" "taskset -c $CLIENT_CPU $tmp/client -p $(port_of "$s") -P /plaintext -n 200000 -c 64 -q")
    done
    [ "$patience" -gt 0 ] && patience=$((patience - $(wait_quiet "$patience")))
    for s in "${servers[@]}"; do echo "$s $(cpu_ticks ${PIDS[$s]})" >>"$tmp/hf.cpu0"; done
    hyperfine -N --warmup 1 --runs 5 --export-csv "$tmp/hf-requests.csv" "${hf_cmds[@]}" >"$tmp/hf-requests.txt" 2>&1 ||
      say "hyperfine (requests) failed: $(tail -n 3 "$tmp/hf-requests.txt")"
    for s in "${servers[@]}"; do echo "$s $(cpu_ticks ${PIDS[$s]})" >>"$tmp/hf.cpu1"; done
  fi
  stop_servers
  echo "mode $mode: load average after $(cut -d' ' -f1-3 /proc/loadavg)" >>"$notes"
done

if [ "$HYPERFINE" = 1 ]; then
  [ "$patience" -gt 0 ] && patience=$((patience - $(wait_quiet "$patience")))
  # compile time of a program that includes chopin.h (the example app)
  hyperfine -N --warmup 1 --runs 10 --export-csv "$tmp/hf-compile.csv" \
    -n "cc -O0 -c (debug object)" "${CC:-cc} -std=c99 -O0 -c examples/bench.c -o $tmp/b.o" \
    -n "cc -O2 -c" "${CC:-cc} -std=c99 -O2 -c examples/bench.c -o $tmp/b.o" \
    -n "cc -O3 -march=native + link (release)" "${CC:-cc} -std=c99 -O3 -march=native -DNDEBUG examples/bench.c -o $tmp/b -pthread" \
    >"$tmp/hf-compile.txt" 2>&1 || say "hyperfine (compile) failed: $(tail -n 3 "$tmp/hf-compile.txt")"
fi

# ---------------------------------------------------------------- report
cp "$runs" "$RESULTS/latest.tsv"
# medians: mode route shape server rps cpu p50 p99 errors syscalls clean-rounds rounds wrk-cpu
summary=$tmp/summary.tsv
awk -F'\t' -v OFS='\t' -v max="$FOREIGN_MAX" '
  function median(list,   v, n, i, j, t) {
    n = split(list, v, " ")
    for (i = 2; i <= n; i++) { t = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  function valid(list,   v, n, i, out) { # latencies: -1 marks a broken distribution
    n = split(list, v, " "); out = ""
    for (i = 1; i <= n; i++) if (v[i] >= 0) out = out " " v[i]
    return out == "" ? -1 : median(out)
  }
  FILENAME == ARGV[1] { sys[$1 FS $2 FS $3 FS $4] = $5; next }
  {
    k = $1 FS $2 FS $3 FS $5
    if (!(k in all)) order[++n] = k
    all[k]++
    row = " " $6 "|" $8 "|" $9 "|" $10 "|" $13
    if ($12 <= max) { clean[k] = clean[k] row; nc[k]++ } else dirty[k] = dirty[k] row
    err[k] += $11
  }
  function pick(list, col,   v, m, i, f, out) {
    m = split(list, v, " "); out = ""
    for (i = 1; i <= m; i++) { split(v[i], f, "|"); out = out " " f[col] }
    return out
  }
  END {
    for (i = 1; i <= n; i++) {
      k = order[i]
      use = nc[k] ? clean[k] : dirty[k]   # undisturbed rounds when there are any
      print k, median(pick(use, 1)), median(pick(use, 2)), valid(pick(use, 3)), valid(pick(use, 4)), err[k], \
            (k in sys) ? sys[k] : "-", nc[k] + 0, all[k], median(pick(use, 5))
    }
  }' "$sys" "$runs" >"$summary"

# ---- Markdown
md=$RESULTS/latest.md
cpu_model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
machine="$(nproc) CPUs ($cpu_model), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, Linux $(uname -r)"
versions() {
  echo "$built_from"
  command -v nginx >/dev/null && echo "$(nginx -v 2>&1 | sed 's/^nginx version: //')"
  command -v h2o >/dev/null && echo "h2o $(h2o --version | head -n 1 | awk '{print $3}')"
  command -v node >/dev/null && echo "Node.js $(node --version)"
  echo "wrk $(wrk -v 2>&1 | head -n 1 | awk '{print $2}')"
  command -v hyperfine >/dev/null && hyperfine --version
}
# one CSV row of hyperfine: name,mean,stddev,... (names have no commas)
hf_rows() { [ -s "$1" ] && tail -n +2 "$1" | awk -F, '{printf "%s\t%s\t%s\n", $1, $2, $3}'; }

{
  echo "# Benchmark results"
  echo
  echo "Run on $started by \`make bench\` (bench/run.sh) on $machine."
  echo "wrk with $CONNS connections, $DURATION s per run, the median of $ROUNDS rounds that interleave the servers."
  echo "*pinned*: one server worker on CPU $SERVER_CPU, wrk (one thread) on CPU $CLIENT_CPU. *shared*: two workers"
  echo "(nginx \`worker_processes 2\`, h2o \`num-threads: 2\`, a Node cluster of 2), \`wrk -t2\`, nothing pinned."
  echo "CPU µs/request: the server's user + system CPU time during the run (/proc/PID/stat, all its"
  echo "processes and threads) divided by the responses wrk counted. Syscalls/request: \`perf stat -e"
  echo "raw_syscalls:sys_enter\` over a separate ${SYS_DURATION} s run. Ratios are to nginx in the same mode, route and shape."
  echo "nginx and h2o answer with fixed bytes (\`return 200\`, h2o's file handler); chopin.h and Node serialize"
  echo "/json per request. p50/p99 are wrk's latency percentiles (per batch when pipelined); n/a where"
  echo "wrk's percentile table came out broken (it prints 0.00us from 75% up on the fastest pipelined runs)."
  echo "Quiet rounds: rounds during which other processes used at most ${FOREIGN_MAX}% of a CPU; the medians"
  echo "are taken over those when there are any (each run waits up to ${QUIET_WAIT} s for quiet and is repeated"
  echo "up to ${ATTEMPTS} times while disturbed). wrk CPU: wrk's own CPU time in % of one CPU; near 100%"
  echo "with one wrk thread (pinned), the load generator, not the server, sets the req/s."
  echo
  echo "| server | route | shape | mode | req/s | CPU µs/request | p50 | p99 | syscalls/request | req/s vs nginx | CPU vs nginx | wrk CPU | quiet rounds |"
  echo "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' '
    function commas(x,   s, r) { s = sprintf("%.0f", x); r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }; return s r }
    function lat(us) { return us < 0 ? "n/a" : us >= 1000 ? sprintf("%.2f ms", us / 1000) : sprintf("%d µs", us) }
    { k = $1 FS $2 FS $3; row[NR] = $0; if ($4 == "nginx") { nr[k] = $5; nc[k] = $6 } }
    END {
      for (i = 1; i <= NR; i++) {
        split(row[i], f, FS); k = f[1] FS f[2] FS f[3]
        rr = (k in nr) && nr[k] > 0 ? sprintf("%.2f×", f[5] / nr[k]) : "-"
        cr = (k in nc) && nc[k] > 0 ? sprintf("%.2f×", f[6] / nc[k]) : "-"
        name = f[4] == "chopin" ? "**chopin.h**" : f[4]
        printf "| %s | %s | %s | %s | %s%s | %.2f | %s | %s | %s | %s | %s | %d%% | %d/%d |\n", name, f[2], f[3], f[1],
               commas(f[5]), (f[9] > 0 ? " (" f[9] " errors)" : ""), f[6], lat(f[7]), lat(f[8]), f[10], rr, cr, f[13], f[11], f[12]
      }
    }' "$summary"
  echo
  echo "## Targets (issue #4), pinned mode"
  echo
  awk -F'\t' '
    $1 == "pinned" { k = $2 " " $3; r[$4, k] = $5; c[$4, k] = $6; s[$4, k] = $10 }
    function t(what, have, goal, ok) { printf "| %s | %s | %s | %s |\n", what, have, goal, ok ? "met" : "**missed**" }
    function ratio(a, b) { return b > 0 ? a / b : 0 }
    END {
      print "| target | measured | goal | |"
      print "|---|---:|---:|---|"
      p = "/plaintext pipelined-16"; ka = "/plaintext keep-alive"; jk = "/json keep-alive"
      if (!(("chopin", p) in r) || !(("nginx", p) in r)) { print "| (needs chopin and nginx) | | | |"; exit }
      x = ratio(r["chopin", p], r["nginx", p]); t("/plaintext pipelined 16: req/s vs nginx", sprintf("%.2f×", x), "≥ 5×", x >= 5)
      x = ratio(c["chopin", p], c["nginx", p]); t("/plaintext pipelined 16: CPU/request vs nginx", sprintf("%.3f× (%.2f µs)", x, c["chopin", p]), "≤ 0.12×", x <= 0.12)
      x = ratio(r["chopin", ka], r["nginx", ka]); t("/plaintext keep-alive: req/s vs nginx", sprintf("%.2f×", x), "≥ 1×", x >= 1)
      x = ratio(c["chopin", ka], c["nginx", ka]); t("/plaintext keep-alive: CPU/request vs nginx", sprintf("%.2f×", x), "≤ 0.9×", x <= 0.9)
      x = ratio(r["chopin", jk], r["nginx", jk]); t("/json keep-alive: req/s vs nginx", sprintf("%.2f×", x), "≥ 1×", x >= 1)
      x = ratio(c["chopin", jk], c["nginx", jk]); t("/json keep-alive: CPU/request vs nginx", sprintf("%.2f×", x), "≤ 0.9×", x <= 0.9)
      if (s["chopin", ka] != "" && s["chopin", ka] != "-") {
        t("syscalls/request, 64 keep-alive connections", s["chopin", ka], "< 3", s["chopin", ka] < 3)
        t("syscalls/request, pipelined 16", s["chopin", p], "≤ 0.2", s["chopin", p] <= 0.2)
      }
    }' "$summary"
  echo
  echo "Deterministic figures (instructions and syscalls per request on one connection) come from"
  echo "\`make cost\` and are kept in bench/budget.txt."
  if [ -s "$tmp/hf-requests.csv" ] || [ -s "$tmp/hf-compile.csv" ]; then
    echo
    echo "## Whole commands (hyperfine)"
    echo
    echo "| command | mean | ± σ | |"
    echo "|---|---:|---:|---|"
    hf_rows "$tmp/hf-compile.csv" | awk -F'\t' '{printf "| compile examples/bench.c: `%s` | %.3f s | %.3f s | |\n", $1, $2, $3}'
    if [ -s "$tmp/hf-requests.csv" ]; then
      hf_rows "$tmp/hf-requests.csv" | while IFS=$'\t' read -r name mean sd; do
        c0=$(awk -v s="$name" '$1 == s {print $2}' "$tmp/hf.cpu0")
        c1=$(awk -v s="$name" '$1 == s {print $2}' "$tmp/hf.cpu1")
        awk -v n="$name" -v m="$mean" -v sd="$sd" -v c0="$c0" -v c1="$c1" -v hz="$HZ" 'BEGIN {
          printf "| `build/client -n 200000 -c 64` against %s (pinned) | %.3f s | %.3f s | %.0f req/s, %.2f CPU µs/request |\n",
                 n, m, sd, 200000 / m, (c1 - c0) * 1e6 / hz / (6 * 200000) }'
      done
    fi
  fi
  echo
  echo "## Conditions"
  echo
  sed 's/^/- /' "$notes"
  awk -F'\t' -v max="$FOREIGN_MAX" '{ n++; f += $12; if ($14 > 1) again++; if ($12 > max) still++ }
    END { if (n) printf "- other processes used %.0f%% of a CPU on average during the %d measured runs; %d runs were repeated because others used more than %d%%, %d stayed over it after %s attempts\n", f / n, n, again, max, still, "'"$ATTEMPTS"'" }' "$runs"
  echo "- waiting for quiet and repeating cost $((PATIENCE - patience)) s of the ${PATIENCE} s allowed"
  versions | sed 's/^/- /'
} >"$md"

# ---- SVG: req/s and CPU µs/request side by side, one group of bars per
# mode, route and shape, each group scaled to its own largest bar.
awk -F'\t' -v title="chopin.h beside nginx, h2o and Node.js (make bench)" -v subtitle="$started · $machine · wrk, $CONNS connections, median of $ROUNDS rounds of $DURATION s" '
  function esc(s) { gsub(/&/, "\\&amp;", s); gsub(/</, "\\&lt;", s); return s }
  function commas(x,   s, r) { s = sprintf("%.0f", x); r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }; return s r }
  {
    k = $1 " · " $2 " · " $3
    if (!(k in seen)) { seen[k] = 1; groups[++ng] = k; n[k] = 0 }
    i = ++n[k]; srv[k, i] = $4; rps[k, i] = $5; cpu[k, i] = $6
    if ($5 > maxr[k]) maxr[k] = $5
    if ($6 > maxc[k]) maxc[k] = $6
  }
  END {
    color["chopin"] = "#c2410c"; color["nginx"] = "#15803d"; color["h2o"] = "#1d4ed8"; color["node"] = "#7e22ce"
    W = 980; colw = 470; label = 70; barmax = 300; bh = 14; gap = 3
    y = 76
    for (g = 1; g <= ng; g++) y += 22 + n[groups[g]] * (bh + gap) + 10
    H = y + 10
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H
    printf "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n"
    printf "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">%s</text>\n", esc(title)
    printf "<text x=\"10\" y=\"38\" font-size=\"11\" fill=\"#4b5563\">%s</text>\n", esc(subtitle)
    printf "<text x=\"10\" y=\"62\" font-weight=\"bold\">requests per second (longer is better)</text>\n"
    printf "<text x=\"%d\" y=\"62\" font-weight=\"bold\">server CPU µs per request (shorter is better)</text>\n", 10 + colw + 20
    y = 76
    for (g = 1; g <= ng; g++) {
      k = groups[g]
      printf "<text x=\"10\" y=\"%d\" fill=\"#374151\">%s</text>\n", y + 14, esc(k)
      printf "<text x=\"%d\" y=\"%d\" fill=\"#374151\">%s</text>\n", 30 + colw, y + 14, esc(k)
      y += 22
      for (i = 1; i <= n[k]; i++) {
        s = srv[k, i]; c = (s in color) ? color[s] : "#6b7280"
        wr = maxr[k] > 0 ? barmax * rps[k, i] / maxr[k] : 0
        wc = maxc[k] > 0 ? barmax * cpu[k, i] / maxc[k] : 0
        printf "<text x=\"10\" y=\"%d\">%s</text>", y + 11, (s == "chopin" ? "chopin.h" : s)
        printf "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>", 10 + label, y, wr, bh, c
        printf "<text x=\"%.1f\" y=\"%d\">%s</text>\n", 10 + label + wr + 4, y + 11, commas(rps[k, i])
        printf "<text x=\"%d\" y=\"%d\">%s</text>", 30 + colw, y + 11, (s == "chopin" ? "chopin.h" : s)
        printf "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>", 30 + colw + label, y, wc, bh, c
        printf "<text x=\"%.1f\" y=\"%d\">%.2f</text>\n", 30 + colw + label + wc + 4, y + 11, cpu[k, i]
        y += bh + gap
      }
      y += 10
    }
    print "</svg>"
  }' "$summary" >"$RESULTS/latest.svg"

cat "$md"
say "wrote $md, $RESULTS/latest.svg and $RESULTS/latest.tsv"
