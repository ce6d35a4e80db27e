#!/usr/bin/env bash
# Static files: build/files beside nginx (bench/peers/nginx-files.conf:
# sendfile on, open_file_cache), one worker each pinned to SERVER_CPU, the
# client pinned to CLIENT_CPU:
#   - a 1 KiB and a 100 KiB file, keep-alive, 64 connections (wrk):
#     req/s and the server's CPU microseconds per request (from /proc);
#   - a 1 GiB file, one download (curl): MB/s and the server's CPU seconds;
#   - 1,000 concurrent downloads of a 10 MiB file (CONC, SIZE_MB): the
#     server's peak RSS (VmHWM) during them.
#   Rounds alternate the servers (ROUNDS, default 3), each line carries the
#   1-minute load average, and the last lines give chopin/nginx ratios of the
#   rounds' medians: the machine may be shared.
#   DURATION=10 ROUNDS=3 PEER=nginx|none bash bench/files.sh  (make bench-files)
#   SIZES="1k.bin" limits the keep-alive runs to those files; BIG=0 skips the
#   1 GiB and concurrent downloads; BIN=path runs that server binary instead
#   of ./build/files (e.g. a copy of an earlier build, to compare).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
PEER=${PEER:-nginx}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
CONC=${CONC:-1000}
SIZE_MB=${SIZE_MB:-10}
ROUNDS=${ROUNDS:-3}
SIZES=${SIZES:-1k.bin 100k.bin}
BIG=${BIG:-1}
BIN=${BIN:-./build/files}

install() {
  command -v "$1" >/dev/null && return
  echo "installing $2 ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
}
install wrk wrk
install curl curl
[ "$PEER" = nginx ] && { command -v nginx >/dev/null || install nginx nginx-light; }
if [ "$BIN" = ./build/files ]; then make -s build/files; fi

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/public" "$tmp/uploads"
chmod 755 "$tmp" "$tmp/public" # nginx's worker runs as another user
head -c 1024 /dev/urandom > "$tmp/public/1k.bin"
head -c 102400 /dev/urandom > "$tmp/public/100k.bin"
head -c $((SIZE_MB << 20)) /dev/urandom > "$tmp/public/10m.bin"
truncate -s 1G "$tmp/public/1g.bin"
cat "$tmp/public/1g.bin" >/dev/null # the page cache: the first reader would pay for it alone

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "server on port $1 did not start" >&2; exit 1
}

PORT=8090 HOST=127.0.0.1 CHOPIN_WORKERS=1 ROOT="$tmp/public" UPLOAD_DIR="$tmp/uploads" \
  taskset -c "$SERVER_CPU" "$BIN" >/dev/null &
pids+=($!)
declare -A pid_of=([chopin]=$!)
wait_port 8090
servers=("chopin:8090")
# the same build with its open-file cache off (FILE_CACHE=off): what the cache buys
PORT=8092 HOST=127.0.0.1 CHOPIN_WORKERS=1 ROOT="$tmp/public" UPLOAD_DIR="$tmp/uploads" FILE_CACHE=off \
  taskset -c "$SERVER_CPU" "$BIN" >/dev/null &
pids+=($!)
pid_of[nocache]=$!
wait_port 8092
servers+=("nocache:8092")
if [ "$PEER" = nginx ]; then
  taskset -c "$SERVER_CPU" nginx -p "$tmp" -c "$PWD/bench/peers/nginx-files.conf" 2>"$tmp/nginx.err" &
  pids+=($!)
  wait_port 8091
  pid_of[nginx]=$(pgrep -P "$!" | head -n 1 || echo "$!") # the worker process
  [ -n "${pid_of[nginx]}" ] || pid_of[nginx]=$!
  servers+=("nginx:8091")
fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

load() { cut -d' ' -f1 /proc/loadavg; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
declare -A rps_of us_of
printf '%-8s %-22s %14s %16s %6s\n' server test result "server CPU" load
for round in $(seq "$ROUNDS"); do
  for file in $SIZES; do
    for s in "${servers[@]}"; do
      name=${s%%:*}; port=${s##*:}; pid=${pid_of[$name]}
      c0=$(cpu_ticks "$pid")
      out=$(timeout $((DURATION + 15)) taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$port/static/$file")
      c1=$(cpu_ticks "$pid")
      rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      reqs=$(echo "$out" | awk '/requests in/ {print $1}')
      if echo "$out" | grep -q "Non-2xx\|Socket errors"; then echo "$out" | grep "Non-2xx\|Socket errors" >&2; fi
      us=$(awk "BEGIN{printf \"%.2f\", ($c1 - $c0) / $hz * 1e6 / $reqs}")
      rps_of[$name.$file]+="$rps "
      us_of[$name.$file]+="$us "
      printf '%-8s %-22s %10.0f r/s %12s us/req %6s  (round %d)\n' "$name" "$file keep-alive" "$rps" "$us" "$(load)" "$round"
    done
  done
done
for file in $SIZES; do
  cr=$(echo ${rps_of[chopin.$file]} | tr ' ' '\n' | median); nr=$(echo ${rps_of[nocache.$file]} | tr ' ' '\n' | median)
  cu=$(echo ${us_of[chopin.$file]} | tr ' ' '\n' | median); nu=$(echo ${us_of[nocache.$file]} | tr ' ' '\n' | median)
  printf 'cache    %-22s on/off req/s %.2f (%.0f / %.0f), CPU/req %.2f (%s / %s us), medians of %d rounds\n' \
    "$file keep-alive" "$(awk "BEGIN{print $cr / $nr}")" "$cr" "$nr" "$(awk "BEGIN{print $cu / $nu}")" "$cu" "$nu" "$ROUNDS"
done
if [ "$PEER" = nginx ]; then
  for file in $SIZES; do
    cr=$(echo ${rps_of[chopin.$file]} | tr ' ' '\n' | median); nr=$(echo ${rps_of[nginx.$file]} | tr ' ' '\n' | median)
    cu=$(echo ${us_of[chopin.$file]} | tr ' ' '\n' | median); nu=$(echo ${us_of[nginx.$file]} | tr ' ' '\n' | median)
    printf 'ratio    %-22s chopin/nginx req/s %.2f (%.0f / %.0f), CPU/req %.2f (%s / %s us), medians of %d rounds\n' \
      "$file keep-alive" "$(awk "BEGIN{print $cr / $nr}")" "$cr" "$nr" "$(awk "BEGIN{print $cu / $nu}")" "$cu" "$nu" "$ROUNDS"
  done
fi
if [ "$BIG" = 0 ]; then exit 0; fi
for s in "${servers[@]}"; do
  [ "${s%%:*}" = nocache ] && continue
  name=${s%%:*}; port=${s##*:}; pid=${pid_of[$name]}
  c0=$(cpu_ticks "$pid")
  got=$(taskset -c "$CLIENT_CPU" curl -s -o /dev/null -w '%{time_total} %{size_download} %{http_code}' "http://127.0.0.1:$port/static/1g.bin")
  t=${got%% *}
  [ "$got" = "$t 1073741824 200" ] || echo "$name: the 1 GiB download was not whole: $got (time, bytes, status)" >&2
  c1=$(cpu_ticks "$pid")
  printf '%-8s %-22s %10.0f MB/s %11.2f s CPU %6s\n' "$name" "1 GiB download" "$(awk "BEGIN{print 1073.741824 / $t}")" \
    "$(awk "BEGIN{print ($c1 - $c0) / $hz}")" "$(load)"
done
for s in "${servers[@]}"; do
  [ "${s%%:*}" = nocache ] && continue
  name=${s%%:*}; port=${s##*:}; pid=${pid_of[$name]}
  taskset -c "$CLIENT_CPU" python3 - "$port" "$CONC" "$((SIZE_MB << 20))" <<'PY'
import selectors, socket, sys
port, conc, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sel = selectors.DefaultSelector()
left = {}
for i in range(conc):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    s.sendall(b"GET /static/10m.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    sel.register(s, selectors.EVENT_READ)
    left[s] = 0
done = 0
while left:
    for key, _ in sel.select(30):
        s = key.fileobj
        try:
            d = s.recv(1 << 18)
        except BlockingIOError:
            continue
        if not d:
            sel.unregister(s); s.close(); got = left.pop(s)
            done += got >= size
        else:
            left[s] += len(d)
print("complete downloads: %d of %d" % (done, conc), file=sys.stderr)
PY
  printf '%-8s %-22s %10d KiB peak RSS (VmHWM) %6s\n' "$name" "$CONC x ${SIZE_MB} MiB concurrent" "$(hwm_kb "$pid")" "$(load)"
done
