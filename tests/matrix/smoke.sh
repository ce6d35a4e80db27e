#!/usr/bin/env bash
# smoke.sh BIN - starts BIN (built from examples/bench.c) on a free port
# (PORT=0) with one worker, asks for GET /plaintext once, stops it with
# SIGTERM and checks that the answer was "200 ... Hello, World!" and that
# the server exited 0 within 5 s. Used by the matrix for the builds that the
# black-box suites do not cover (-m32, musl static, tcc, other backends).
set -u
bin=$1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
PORT=0 HOST=127.0.0.1 CHOPIN_WORKERS=1 "$bin" >"$log" 2>&1 &
pid=$!
port=
for _ in $(seq 100); do
  port=$(sed -n 's/.*listening on http:.*:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
if [ -z "$port" ]; then
  echo "smoke: $bin did not report a port:"
  cat "$log"
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  exit 1
fi
answer=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" &&
  printf "GET /plaintext HTTP/1.1\r\nHost: smoke\r\nConnection: close\r\n\r\n" >&3 &&
  cat <&3' _ "$port" 2>&1)
kill -TERM "$pid" 2>/dev/null
rc=
for _ in $(seq 100); do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid"
    rc=$?
    break
  fi
  sleep 0.05
done
if [ -z "$rc" ]; then
  echo "smoke: $bin still running 5 s after SIGTERM"
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  exit 1
fi
case $answer in
  "HTTP/1.1 200"*"Hello, World!"*) ;;
  *) echo "smoke: $bin on port $port answered:"; echo "$answer"; cat "$log"; exit 1 ;;
esac
if [ "$rc" -ne 0 ]; then
  echo "smoke: $bin exited $rc after SIGTERM"
  cat "$log"
  exit 1
fi
echo "smoke: $bin answered GET /plaintext and stopped cleanly"
