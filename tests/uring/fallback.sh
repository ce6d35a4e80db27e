#!/usr/bin/env bash
# The fallback, seen from outside: build/bench-uring under a seccomp filter
# that refuses io_uring_setup (EPERM, then ENOSYS) with two workers must
# log exactly one line (the CH_LOGITEM_IO_URING_REFUSED warning), say
# "epoll" in its first line (ch_backend), answer, and stop on SIGTERM with
# status 0. Without the filter it must say "io_uring" and log no such line.
# Last line: "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
bad() { failed=$((failed + 1)); echo "FAIL - $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run_one NAME EXPECTED_BACKEND EXPECTED_LINES LAUNCHER...
run_one() {
  local name=$1 want=$2 lines=$3
  shift 3
  local port out err pid i body status
  port=$(free_port)
  out=$(mktemp) err=$(mktemp)
  PORT=$port HOST=127.0.0.1 CHOPIN_WORKERS=2 "$@" >"$out" 2>"$err" &
  pid=$!
  for i in $(seq 1 100); do
    grep -q listening "$out" 2>/dev/null && break
    sleep 0.05
  done
  body=$(curl -s --max-time 5 "http://127.0.0.1:$port/plaintext" || true)
  check "$name: answers /plaintext" '[ "$body" = "Hello, World!" ]'
  check "$name: its first line names the backend: $want" 'grep -q "workers, $want)" "$out"'
  check "$name: $lines refusal line(s) in the log" \
    '[ "$(grep -c "io_uring refused" "$err")" = "$lines" ]'
  if [ "$lines" = 1 ]; then
    echo "#   $(grep "io_uring refused" "$err")"
  fi
  kill -TERM "$pid" 2>/dev/null
  status=0
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; status=137; fi
  wait "$pid" 2>/dev/null || status=$?
  check "$name: SIGTERM: exit status 0" '[ "$status" = 0 ]'
  rm -f "$out" "$err"
}

run_one "io_uring allowed" io_uring 0 ./build/bench-uring
run_one "refused with EPERM (seccomp)" epoll 1 ./build/no-uring -e EPERM ./build/bench-uring
run_one "refused with ENOSYS (seccomp)" epoll 1 ./build/no-uring -e ENOSYS ./build/bench-uring
run_one "refused, CHOPIN_LOG=error" epoll 0 env CHOPIN_LOG=error ./build/no-uring ./build/bench-uring
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
