#!/usr/bin/env bash
# Runs a test client against a server binary started here:
#     tests/ws/with_server.sh SERVER COMMAND [ARGS...]
# SERVER starts with PORT=<a free port>, HOST=127.0.0.1 and CHOPIN_WORKERS=2
# (unless set); "{PORT}" in the arguments becomes the port. The server is
# stopped with SIGTERM afterwards; a server that does not exit within 10 s,
# or exits badly, adds a failure. Last line: "N passed, N failed".
set -u
server=$1
shift
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PORT=$port HOST=127.0.0.1 CHOPIN_WORKERS=${CHOPIN_WORKERS:-2} "$server" &
pid=$!
for _ in $(seq 1 200); do
  (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  sleep 0.05
done
args=()
for a in "$@"; do args+=("${a//\{PORT\}/$port}"); done
log=$(mktemp)
"${args[@]}" 2>&1 | tee "$log"
last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
rm -f "$log"
p=$(echo "${last:-0 passed, 1 failed}" | cut -d' ' -f1)
f=$(echo "${last:-0 passed, 1 failed}" | cut -d' ' -f3)
[ -z "$last" ] && echo "FAIL - the client ended without a result line"
kill -TERM "$pid" 2>/dev/null
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
  kill -KILL "$pid"
  echo "FAIL - the server did not exit within 10 s of SIGTERM"
  f=$((f + 1))
fi
wait "$pid"
rc=$?
if [ "$rc" -ne 0 ]; then
  echo "FAIL - the server exited with status $rc"
  f=$((f + 1))
fi
echo
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
