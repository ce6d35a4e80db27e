#!/usr/bin/env bash
# Throughput of build/bench (one worker, pinned to one core) with wrk pinned to
# the other core: /plaintext and /json, keep-alive (64 connections) and
# pipelined (depth 16). nginx from Debian runs the same routes in the same
# run (bench/peers/nginx.conf) so each figure also comes as a ratio.
#   DURATION=10 ROUNDS=1 PEER=nginx|none bash bench/wrk.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-1}
PEER=${PEER:-nginx}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}

install() {
  command -v "$1" >/dev/null && return
  echo "installing $2 ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
}
install wrk wrk
[ "$PEER" = nginx ] && { command -v nginx >/dev/null || install nginx nginx-light; }
make -s build/bench

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "server on port $1 did not start" >&2; exit 1
}

PORT=8080 HOST=127.0.0.1 CHOPIN_WORKERS=1 taskset -c "$SERVER_CPU" ./build/bench >/dev/null &
pids+=($!)
wait_port 8080
servers=("chopin:8080")
if [ "$PEER" = nginx ]; then
  taskset -c "$SERVER_CPU" nginx -p "$tmp" -c "$PWD/bench/peers/nginx.conf" &
  pids+=($!)
  wait_port 8081
  servers+=("nginx:8081")
fi

# one wrk run; prints requests/s
run_wrk() { # port path depth
  local port=$1 path=$2 depth=$3 out
  if [ "$depth" -gt 1 ]; then
    out=$(DEPTH=$depth timeout $((DURATION + 15)) taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"${DURATION}s" \
          -s bench/pipeline.lua "http://127.0.0.1:$port$path")
  else
    out=$(timeout $((DURATION + 15)) taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$port$path")
  fi
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then echo "$out" | grep "Non-2xx\|Socket errors" >&2; fi
  echo "$out" | awk '/Requests\/sec/ {print $2}'
}

printf '%-8s %-11s %-10s %12s %10s\n' server route shape "req/s" "vs nginx"
for path in /plaintext /json; do
  for depth in 1 16; do
    shape=$([ "$depth" = 1 ] && echo keep-alive || echo "pipe-$depth")
    declare -A best=()
    for _ in $(seq "$ROUNDS"); do
      for s in "${servers[@]}"; do
        name=${s%%:*}; port=${s##*:}
        r=$(run_wrk "$port" "$path" "$depth")
        # with ROUNDS>1 the best round is kept (noise only ever slows a run down)
        if [ -z "${best[$name]:-}" ] || awk "BEGIN{exit !($r > ${best[$name]})}"; then best[$name]=$r; fi
      done
    done
    for s in "${servers[@]}"; do
      name=${s%%:*}
      ratio="-"
      [ -n "${best[nginx]:-}" ] && ratio=$(awk "BEGIN{printf \"%.2fx\", ${best[$name]} / ${best[nginx]}}")
      printf '%-8s %-11s %-10s %12.0f %10s\n' "$name" "$path" "$shape" "${best[$name]}" "$ratio"
    done
    unset best
  done
done
