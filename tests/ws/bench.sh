#!/usr/bin/env bash
# make ws-bench (not a test): WebSocket figures for build/chat beside
# Node.js's `ws` package (tests/ws/node/server.js) in the same run.
#   echo:    one pinned worker (CHOPIN_WORKERS=1, CPU 0), 64 connections,
#            32-byte messages, round trips per second for WS_BENCH_SECONDS
#   fan-out: WS_BENCH_SUBS subscribers (9999, + the sender: 10000, the
#            default max_connections of a worker) in one room, WS_BENCH_MSGS
#            messages (20) sent by one member: deliveries per second
# The load generator (build/ws_load) runs on CPU 1. Servers' CPU time is
# read from /proc. Prints a small table.
set -u
cd "$(dirname "$0")/../.."
secs=${WS_BENCH_SECONDS:-5}
subs=${WS_BENCH_SUBS:-9999}
msgs=${WS_BENCH_MSGS:-20}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
pin() { if command -v taskset >/dev/null; then exec taskset -c "$1" "${@:2}"; else exec "${@:2}"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

run_one() { # NAME COMMAND...
  local name=$1 port pid
  shift
  port=$(free_port)
  # the subshell execs taskset, which execs the server: $! is the server
  (export PORT=$port HOST=127.0.0.1 CHOPIN_WORKERS=1 NODE_PATH=$PWD/build/node/node_modules
   pin 0 "$@" >/dev/null 2>&1) &
  pid=$!
  wait_port "$port" || { echo "$name: did not start"; kill "$pid"; return; }
  echo "== $name"
  (pin 1 ./build/ws_load echo "$port" "$pid" 64 "$secs" 32)
  (pin 1 ./build/ws_load fanout "$port" "$pid" "$subs" "$msgs")
  kill -TERM "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs; chopin: CHOPIN_WORKERS=1; node $(node --version 2>/dev/null)"
run_one "chopin.h (build/chat)" ./build/chat
if [ -f build/node/node_modules/ws/package.json ] && command -v node >/dev/null; then
  run_one "node ws $(node -e 'console.log(require("./build/node/node_modules/ws/package.json").version)')" \
    node tests/ws/node/server.js
else
  echo "# node ws: skipped (no node, or build/node/node_modules/ws missing)"
fi
