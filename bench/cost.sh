#!/usr/bin/env bash
# cost.sh - what one request costs the server, in figures that repeat on any
# machine with the same build: user-space instructions (valgrind callgrind)
# and system calls (strace -c), per request.
#
#   bash bench/cost.sh --check    measure, compare with bench/budget.txt (the
#                                 default; `make cost`, and a suite of `make
#                                 test`): a figure more than 10% above its
#                                 budget fails
#   bash bench/cost.sh --update   measure and rewrite bench/budget.txt
#                                 (`make cost-update`)
#   bash bench/cost.sh --report   measure and print, compare with nothing
#   bash bench/cost.sh --profile [CASE] [FUNCTIONS]
#                                 where one case's instructions go: the
#                                 difference of the two callgrind runs per
#                                 function (self cost), and per source line of
#                                 chopin.h, divided by N (CASE: one of the
#                                 names below, default plaintext.keepalive)
#
# How: build/bench-cost (the example app, -O3 without -march=native, one
# worker) runs under the tool; build/client sends an exact number of requests
# over ONE keep-alive connection, each batch (1 request, or 16 pipelined in
# one write) waiting for its answers before the next, so the server sees the
# same sequence of reads and writes every time. Each case runs twice, with
# W and with W+N requests, and the figure is the difference divided by N:
# start-up, shutdown, the connection's accept and close and the first
# requests' warm-up all cancel out. Server and client share one CPU, so no
# cross-CPU wake-up ever splits a batch. What still varies is the once-a-
# second timer tick (Date refresh, timeouts): about 100 instructions and two
# syscalls per second of run, well under 0.01 of the printed figures.
#
# Environment: COST_REQUESTS (N, default 32000), COST_WARMUP (W, 2000),
# COST_CPU (the CPU both run on, default the first allowed), COST_TOLERANCE (percent, 10),
# COST_BUDGET (the budget file), COST_SERVER (another build of the example
# app to measure, e.g. one of an older commit, built with the same flags).
set -uo pipefail
cd "$(dirname "$0")/.."

MODE=${1:---check}
case $MODE in
  --check | --update | --report | --profile) ;;
  *) echo "usage: $0 [--check|--update|--report|--profile [CASE] [LINES]]" >&2; exit 2 ;;
esac
PROFILE_CASE=${2:-plaintext.keepalive}
PROFILE_LINES=${3:-25}
N=${COST_REQUESTS:-32000}
W=${COST_WARMUP:-2000}
# the first CPU this process may run on (0 on most machines)
CPU=${COST_CPU:-$(awk '/^Cpus_allowed_list/ {split($2, a, /[-,]/); print a[1]}' /proc/self/status)}
CPU=${CPU:-0}
TOLERANCE=${COST_TOLERANCE:-10}
BUDGET=${COST_BUDGET:-bench/budget.txt}
SERVER=${COST_SERVER:-build/bench-cost}
CLIENT=build/client

fail() { # a result line even when nothing could be measured
  echo "cost: $*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

install() { # command package
  command -v "$1" >/dev/null && return 0
  echo "cost: installing $2 ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq "$2"; } >/dev/null 2>&1
  command -v "$1" >/dev/null
}
install valgrind valgrind || fail "valgrind is missing and could not be installed"
install strace strace || fail "strace is missing and could not be installed"
install taskset util-linux || fail "taskset is missing and could not be installed"
if [ -n "${COST_SERVER:-}" ]; then
  make -s "$CLIENT" >&2 || fail "build failed"
  [ -x "$SERVER" ] || fail "COST_SERVER=$SERVER is not an executable"
else
  make -s "$SERVER" build/bench-cost-bare build/bench-cost-batteries "$CLIENT" >&2 || fail "build failed"
fi
[ $((N % 16)) -eq 0 ] && [ $((W % 16)) -eq 0 ] || fail "COST_REQUESTS and COST_WARMUP must be multiples of 16"

tmp=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# Starts the server under a tool (the rest of the arguments) on a free port
# and sets port and server_pid. valgrind runs the server in its own process;
# strace forks it, so a wrapper shell writes the server's pid and then becomes
# the server (its few syscalls are the same in every run).
start_server() {
  rm -f "$tmp/pid" "$tmp/banner"
  if [ "$1" = valgrind ]; then
    PORT=0 HOST=127.0.0.1 CHOPIN_WORKERS=1 SERVER_MODE=performance taskset -c "$CPU" "$@" "$SERVER" \
      >"$tmp/banner" 2>"$tmp/tool.log" &
    echo $! >"$tmp/pid"
  else
    PORT=0 HOST=127.0.0.1 CHOPIN_WORKERS=1 SERVER_MODE=performance taskset -c "$CPU" "$@" \
      sh -c 'echo $$ >"$0"; exec "$1"' "$tmp/pid" "$SERVER" >"$tmp/banner" 2>"$tmp/tool.log" &
  fi
  local i
  for i in $(seq 600); do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/banner" 2>/dev/null)
    if [ -n "$port" ] && [ -s "$tmp/pid" ]; then
      server_pid=$(cat "$tmp/pid")
      return 0
    fi
    sleep 0.05
  done
  cat "$tmp/tool.log" >&2
  echo "cost: the server did not start under $1" >&2
  return 1
}

# SIGTERM lets the server finish and return from main, which is when the
# tool writes its figures.
stop_server() {
  kill -TERM "$server_pid" 2>/dev/null
  local i
  for i in $(seq 600); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  wait 2>/dev/null
  server_pid=
}

# One measured run: tool, path, depth, requests, body, and optionally a
# header line the client adds and the server to run (a case's own build).
# Prints the tool's total: instructions (callgrind) or system calls
# (strace); runs in a subshell, so it reports trouble on stderr and returns 1.
one_run() {
  local tool=$1 path=$2 depth=$3 count=$4 body=$5 header=${6:-}
  [ -n "${7:-}" ] && [ -z "${COST_SERVER:-}" ] && SERVER=$7
  rm -f "$tmp"/cg.out "$tmp"/strace.out
  if [ "$tool" = callgrind ]; then
    start_server valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" || return 1
  else
    start_server strace -f -c -o "$tmp/strace.out" || return 1
  fi
  if ! taskset -c "$CPU" "$CLIENT" -p "$port" -P "$path" -d "$depth" -n "$count" -b "$body" ${header:+-H "$header"} \
       -q -t 120 >&2; then
    stop_server
    echo "cost: $path (depth $depth): the client did not get $count good responses" >&2
    return 1
  fi
  stop_server
  if [ "$tool" = callgrind ]; then
    cp "$tmp/cg.out" "$tmp/cg.$count" 2>/dev/null
    # callgrind writes one file for all threads; "totals:" is the sum of Ir
    awk '/^totals:/ {print $2; found=1} END {if (!found) exit 1}' "$tmp/cg.out" 2>/dev/null || {
      cat "$tmp/tool.log" >&2
      echo "cost: no callgrind output" >&2
      return 1
    }
  else
    awk '$NF == "total" {print $4; found=1} END {if (!found) exit 1}' "$tmp/strace.out" 2>/dev/null || {
      cat "$tmp/tool.log" >&2
      echo "cost: no strace summary" >&2
      return 1
    }
    # keep the per-syscall counts for the breakdown
    awk '$1 ~ /^[0-9.]+$/ && $NF != "total" {print $NF, $4}' "$tmp/strace.out" >"$tmp/sys.$count"
  fi
}

# The cases: name, path, depth, expected body[, a header line the client
# adds, the server build]. routed.bare.keepalive is routed.keepalive on the
# build without the route's Server-Timing middleware (examples/bench.c with
# -DBENCH_NO_TIMING): issue 14's "routed without middleware" target.
# batteries.keepalive is routed.keepalive on the
# build with CORS, request ids, a rate limit and metrics (examples/bench.c
# with -DBENCH_BATTERIES), from an allowed Origin (issue 9: within 1.3x).
CASES=(
  "plaintext.keepalive|/plaintext|1|Hello, World!"
  "plaintext.pipeline16|/plaintext|16|Hello, World!"
  "json.keepalive|/json|1|{\"message\":\"Hello, World!\"}"
  "routed.keepalive|/users/42|1|{\"id\":\"42\"}"
  "routed.bare.keepalive|/users/42|1|{\"id\":\"42\"}||build/bench-cost-bare"
  "batteries.keepalive|/users/42|1|{\"id\":\"42\"}|Origin: https://a.example|build/bench-cost-batteries"
)

# --profile: callgrind_annotate both runs of one case and print the
# difference per function and per line, per request.
if [ "$MODE" = --profile ]; then
  command -v callgrind_annotate >/dev/null || fail "callgrind_annotate (package valgrind) is missing"
  for c in "${CASES[@]}"; do
    IFS='|' read -r name path depth body header server <<<"$c"
    [ "$name" = "$PROFILE_CASE" ] || continue
    a=$(one_run callgrind "$path" "$depth" "$W" "$body" "$header" "$server") || fail "no figure"
    b=$(one_run callgrind "$path" "$depth" "$((W + N))" "$body" "$header" "$server") || fail "no figure"
    echo "$name: $(awk -v a="$a" -v b="$b" -v n="$N" 'BEGIN {printf "%.1f", (b - a) / n}') instructions per request"
    for f in "$W" "$((W + N))"; do
      callgrind_annotate --threshold=100 --show-percs=no "$tmp/cg.$f" 2>/dev/null |
        awk '/^-- Auto-annotated source:/ {exit} $1 ~ /^[0-9][0-9,]*$/ && $2 ~ /:/ {v = $1; gsub(/,/, "", v); k = $2; sub(/^.*\//, "", k); print v "\t" k}' >"$tmp/fn.$f"
      callgrind_annotate --auto=yes --show-percs=no --threshold=100 "$tmp/cg.$f" 2>/dev/null |
        awk '/^-- Auto-annotated source:/ {src = ($0 ~ /chopin\.h/)} src && /^ *[0-9][0-9,]* +[^ ]/ && !/=>/ && !/events annotated/ {
               v = $1; gsub(/,/, "", v); line = $0; sub(/^ *[0-9,]+ +/, "", line); print v "\t" line }' >"$tmp/ln.$f"
    done
    echo
    echo "per request, by function (self cost):"
    awk -F'\t' -v n="$N" 'NR == FNR {a[$2] += $1; next} {b[$2] += $1} END {for (k in b) {d = (b[k] - a[k]) / n; if (d >= 0.5) printf "%8.1f  %s\n", d, k}}' \
      "$tmp/fn.$W" "$tmp/fn.$((W + N))" | sort -rn | head -n "$PROFILE_LINES"
    echo
    echo "per request, by line of chopin.h (inlined code is counted at its own line):"
    awk -F'\t' -v n="$N" 'NR == FNR {a[$2] += $1; next} {b[$2] += $1} END {for (k in b) {d = (b[k] - a[k]) / n; if (d >= 0.5) printf "%8.1f  %s\n", d, k}}' \
      "$tmp/ln.$W" "$tmp/ln.$((W + N))" | sort -rn | head -n "$PROFILE_LINES"
    exit 0
  done
  fail "no case $PROFILE_CASE"
fi

declare -A FIG=()
declare -A BREAKDOWN=()
order=()
for c in "${CASES[@]}"; do
  IFS='|' read -r name path depth body header server <<<"$c"
  [ -n "${COST_SERVER:-}" ] && [ -n "$server" ] && continue # another build: only the cases of the plain app
  for tool in callgrind strace; do
    a=$(one_run "$tool" "$path" "$depth" "$W" "$body" "$header" "$server") || fail "$name under $tool: no figure"
    b=$(one_run "$tool" "$path" "$depth" "$((W + N))" "$body" "$header" "$server") || fail "$name under $tool: no figure"
    if [ "$tool" = callgrind ]; then
      key=instructions.$name
      FIG[$key]=$(awk -v a="$a" -v b="$b" -v n="$N" 'BEGIN {printf "%.1f", (b - a) / n}')
    else
      key=syscalls.$name
      FIG[$key]=$(awk -v a="$a" -v b="$b" -v n="$N" 'BEGIN {printf "%.3f", (b - a) / n}')
      # per-syscall figures, e.g. "epoll_wait 1.000, read 1.000, sendto 1.000"
      BREAKDOWN[$name]=$(awk -v n="$N" 'NR == FNR {a[$1] = $2; next} {d = ($2 - a[$1]) / n; if (d >= 0.0005) printf "%s%s %.3f", (k++ ? ", " : ""), $1, d}' \
        "$tmp/sys.$W" "$tmp/sys.$((W + N))")
    fi
    order+=("$key")
  done
done

label() {
  local f=$1 what=${1%%.*} rest=${1#*.}
  local route=${rest%%.*} shape=${rest#*.}
  shape=${shape/keepalive/keep-alive}
  shape=${shape/pipeline16/pipelined 16}
  [ "$route" = routed ] && route="/users/:id" || route="/$route"
  case $shape in bare.*) route="$route, no middleware"; shape=${shape#bare.} ;; esac
  [ "$route" = /batteries ] && route="/users/:id + CORS, rate limit, metrics, request id"
  printf '%s %s %s' "$what" "$route" "$shape"
}

# The issue's targets, reported (not enforced: the budget is what fails).
targets() {
  local ka=${FIG[instructions.plaintext.keepalive]} p16=${FIG[instructions.plaintext.pipeline16]}
  local js=${FIG[instructions.json.keepalive]} rt=${FIG[instructions.routed.keepalive]}
  local bare=${FIG[instructions.routed.bare.keepalive]:-}
  local ska=${FIG[syscalls.plaintext.keepalive]} sp=${FIG[syscalls.plaintext.pipeline16]}
  awk -v ka="$ka" -v p16="$p16" -v js="$js" -v rt="$rt" -v bare="$bare" -v ska="$ska" -v sp="$sp" \
    -v bt="${FIG[instructions.batteries.keepalive]:-}" 'BEGIN {
    printf "targets (issue 14):\n"
    t("instructions, /plaintext keep-alive", ka, "<= 850", ka <= 850)
    t("instructions, /plaintext pipelined 16", p16, "<= 550", p16 <= 550)
    t("instructions, /json keep-alive", js, "<= 1150", js <= 1150)
    if (bare != "") t("instructions, /users/:id keep-alive, no middleware", bare, "<= 1350", bare <= 1350)
    t("instructions, /users/:id keep-alive (+ Server-Timing)", rt, "-", -1)
    t("instructions the JSON writer adds (/json - /plaintext)", js - ka, "-", -1)
    t("syscalls, one sequential keep-alive connection", ska, "3", ska >= 2.995 && ska <= 3.005)
    t("syscalls, pipelined 16", sp, "<= 0.2", sp <= 0.2)
    if (bt != "") t("batteries / routed (issue #9)", bt / rt, "<= 1.3", bt / rt <= 1.3)
  }
  function t(what, v, goal, ok) {
    printf "  %-56s %9.3f  target %-7s %s\n", what, v, goal, (ok < 0 ? "" : ok ? "met" : "MISSED")
  }'
}

print_breakdown() {
  local c name
  echo "syscalls per request, by call:"
  for c in "${CASES[@]}"; do
    name=${c%%|*}
    printf '  %-22s %s\n' "$name" "${BREAKDOWN[$name]}"
  done
}

if [ "$MODE" = --update ]; then
  {
    echo "# bench/budget.txt - the cost budget that \`make test\` checks (bench/cost.sh)."
    echo "# A measured figure more than ${TOLERANCE}% above its budget fails the check."
    echo "# Rewrite it with \`make cost-update\` when a change makes the code cheaper"
    echo "# (or, knowingly, dearer). Instruction counts depend on the compiler and the"
    echo "# C library, so the budget records them:"
    echo "#   $(${CC:-cc} --version | head -n 1)"
    echo "#   $(ldd --version 2>&1 | head -n 1)"
    echo "#   $(valgrind --version), $(strace -V | head -n 1)"
    echo "# and so do the build and the machine: examples/bench.c with $(sed -n 's/^COST_FLAGS *= *//p' mk/bench.mk),"
    echo "# on $(uname -m) (on x86_64 and aarch64 read, sendto and epoll_wait are raw system calls: >>os, chi_sys6)."
    if [ -n "${COST_SERVER:-}" ]; then
      built="$COST_SERVER"
    else
      built="chopin.h $(git log -1 --format=%h 2>/dev/null)$(git diff --quiet HEAD -- chopin.h examples/bench.c 2>/dev/null || echo ' + uncommitted changes')"
    fi
    echo "# Measured $(date -u +%Y-%m-%d) on $built,"
    echo "# with N=$N requests (minus a run of $W) per case."
    echo "# figure                                   per request"
    for k in "${order[@]}"; do printf '%-42s %s\n' "$k" "${FIG[$k]}"; done
  } >"$BUDGET"
  echo "wrote $BUDGET:"
fi

if [ "$MODE" = --check ] && [ -f "$BUDGET" ]; then
  now_cc=$(${CC:-cc} --version | head -n 1)
  grep -qF "#   $now_cc" "$BUDGET" ||
    echo "note: $BUDGET was measured with another compiler than '$now_cc'; instruction counts may differ for that reason alone"
fi
passed=0
failed=0
if [ "$MODE" = --report ]; then
  printf '%-48s %10s\n' "per request" measured
else
  printf '%-48s %10s %10s %8s  %s\n' "per request" measured budget change verdict
fi
for k in "${order[@]}"; do
  m=${FIG[$k]}
  if [ "$MODE" = --report ]; then
    printf '%-48s %10s\n' "$(label "$k")" "$m"
    continue
  fi
  b=$(awk -v k="$k" '$1 == k {print $2}' "$BUDGET" 2>/dev/null)
  if [ -z "$b" ]; then
    printf '%-48s %10s %10s %8s  %s\n' "$(label "$k")" "$m" "-" "-" "FAIL (not in $BUDGET: make cost-update)"
    failed=$((failed + 1))
    continue
  fi
  verdict=$(awk -v m="$m" -v b="$b" -v t="$TOLERANCE" 'BEGIN {
    if (m > b * (1 + t / 100)) print "FAIL (over budget by more than " t "%)";
    else if (m < b * (1 - t / 100)) print "ok (cheaper by more than " t "%: lower the budget with make cost-update)";
    else print "ok" }')
  change=$(awk -v m="$m" -v b="$b" 'BEGIN {printf "%+.1f%%", (b > 0 ? (m - b) * 100 / b : 0)}')
  printf '%-48s %10s %10s %8s  %s\n' "$(label "$k")" "$m" "$b" "$change" "$verdict"
  case $verdict in FAIL*) failed=$((failed + 1)) ;; *) passed=$((passed + 1)) ;; esac
done
print_breakdown
targets
if [ "$MODE" = --check ] && [ "$failed" -gt 0 ]; then
  echo "a figure rose: see where the instructions go with"
  echo "  bash bench/cost.sh --profile CASE   (CASE: plaintext.keepalive, plaintext.pipeline16, json.keepalive, routed.keepalive, routed.bare.keepalive, batteries.keepalive)"
  echo "and, if the rise is meant, rewrite the budget with: make cost-update"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
