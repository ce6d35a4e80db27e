#!/usr/bin/env bash
# tests/ops/haproxy.sh - the scale-out recipe, tested (issue 12).
#
# Starts two build/bench instances on loopback ports (CHOPIN_WORKERS=1) and
# HAProxy in front of them, with deploy/haproxy.cfg rewritten for this run
# (no chroot/user/daemon, a stats socket on loopback, these ports, maxconn 1000
# so the file-descriptor limit of a test machine suffices, checks every 200 ms:
# inter 200ms fall 2 rise 2). tests/ops/load.c runs through HAProxy
# (keep-alive connections and new connections) for LOAD_SECONDS while:
#   1. instance A is killed with SIGKILL (a crash), and restarted later;
#   2. instance B is stopped with SIGTERM (a graceful stop), and restarted.
# Each time it measures, from HAProxy's stats socket, how long HAProxy took to
# take the instance out (kill -> DOWN) and back (restart -> UP), and it
# reports HAProxy's retries and redispatches. Last line: "N passed, N failed"
# where the checks are: HAProxy and both instances start, each instance goes
# DOWN and back UP within 5 s, and the failed requests stay within the bound.
#
# THE BOUND. The load client never pipelines, so each of its connections has
# at most one request in flight: when A is killed, at most KEEPALIVE +
# CONCURRENCY requests can be inside A. Those are "the requests in flight on
# the killed instance" that the issue allows to fail; so the bound is
# KEEPALIVE + CONCURRENCY (8 here). Everything else must succeed: connects
# refused before the health check notices are redispatched by HAProxy
# (retries + option redispatch), and a graceful stop loses nothing. In
# practice deploy/haproxy.cfg's `retry-on conn-failure empty-response`
# replays even the in-flight GETs on the other instance, so 0 is expected.
#
# haproxy missing: installed with apt-get when running as root (quietly, at
# most ~3 minutes), else skipped with the reason and "0 passed, 0 failed".
# Usage: bash tests/ops/haproxy.sh   (from anywhere; builds what it needs)
# Environment: LOAD_SECONDS (12), OPS_KEEP_TMP=1 keeps the temp dir (logs),
# HAPROXY (the command; haproxy).
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/ops/common.sh

LOAD_SECONDS=${LOAD_SECONDS:-12}
KEEPALIVE=4
CONCURRENCY=4
BOUND=$((KEEPALIVE + CONCURRENCY))
finish() {
  echo "$passed passed, $failed failed"
  exit $((failed > 0))
}
skip() {
  echo "ops/haproxy: skipped: $*"
  echo "0 passed, 0 failed"
  exit 0
}

# ---- haproxy, installed if we may --------------------------------------
PATH=$PATH:/usr/sbin:/sbin
HAPROXY=${HAPROXY:-haproxy}
if ! command -v "$HAPROXY" >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "ops/haproxy: installing haproxy with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    timeout 120 apt-get install -y -qq haproxy >"$OPS_TMP/apt.log" 2>&1 ||
      { timeout 120 apt-get update -qq >>"$OPS_TMP/apt.log" 2>&1 &&
        timeout 120 apt-get install -y -qq haproxy >>"$OPS_TMP/apt.log" 2>&1; }
    command -v "$HAPROXY" >/dev/null ||
      skip "no $HAPROXY after apt-get install haproxy ($(tail -n 1 "$OPS_TMP/apt.log" | cut -c1-200))"
  else
    skip "haproxy is not installed (and installing needs root and apt-get)"
  fi
fi
make -s build/bench build/load || { bad "build"; finish; }

# ---- two instances -----------------------------------------------------
if ! free_port PORT_A || ! free_port PORT_B || ! free_port FE || ! free_port STATS; then
  bad "no free ports on 127.0.0.1"
  finish
fi
PID_A=
PID_B=
start_a() {
  PORT=$PORT_A HOST=127.0.0.1 CHOPIN_WORKERS=1 ./build/bench >>"$OPS_TMP/a.log" 2>&1 &
  PID_A=$!
  track "$PID_A"
  disown "$PID_A" # killed on purpose: no "Killed" line from bash
}
start_b() {
  PORT=$PORT_B HOST=127.0.0.1 CHOPIN_WORKERS=1 ./build/bench >>"$OPS_TMP/b.log" 2>&1 &
  PID_B=$!
  track "$PID_B"
  disown "$PID_B"
}
start_a
start_b
if wait_http "$PORT_A" /health 5 && wait_http "$PORT_B" /health 5; then
  ok "two build/bench instances on 127.0.0.1:$PORT_A and :$PORT_B answer GET /health"
else
  bad "build/bench did not answer GET /health within 5 s"; cat "$OPS_TMP"/[ab].log; finish
fi

# ---- HAProxy with deploy/haproxy.cfg, rewritten for this run -----------
cfg=$OPS_TMP/haproxy.cfg
awk -v fe="$FE" -v stats="$STATS" -v a="$PORT_A" -v b="$PORT_B" '
  /^global/ { print; print "    log stdout format raw local0 notice"
              print "    stats socket ipv4@127.0.0.1:" stats " level admin"; next }
  /^[ \t]*(log \/dev\/log|chroot|stats socket|user|group|daemon)([ \t]|$)/ { next }
  /^[ \t]*bind :80$/ { print "    bind 127.0.0.1:" fe; next }
  /^[ \t]*maxconn 20000$/ { print "    maxconn 1000"; next }
  /^[ \t]*server / { next }
  /^[ \t]*default-server / { sub(/inter 2s fall 3 rise 2/, "inter 200ms fall 2 rise 2"); print
                              print "    server chopin1 127.0.0.1:" a
                              print "    server chopin2 127.0.0.1:" b; next }
  { print }' deploy/haproxy.cfg >"$cfg"
if ! grep -q "inter 200ms fall 2 rise 2" "$cfg" || ! "$HAPROXY" -c -q -f "$cfg" >"$OPS_TMP/check.log" 2>&1; then
  bad "deploy/haproxy.cfg, rewritten for the test, is not valid:"; cat "$OPS_TMP/check.log"; finish
fi
"$HAPROXY" -db -f "$cfg" >"$OPS_TMP/haproxy.log" 2>&1 &
track $!

# status NAME: the server's state in HAProxy (UP, DOWN, "UP 1/2", ...)
stat_csv() {
  timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "show stat\n" >&3; cat <&3' _ "$STATS" 2>/dev/null
}
status() { stat_csv | awk -F, -v s="$1" '$1 == "chopin" && $2 == s { print $18 }'; }
# wait_status NAME STATE SECONDS: prints the ms it took; status 1 on timeout
wait_status() {
  local t0 end
  t0=$(now_ms)
  end=$((t0 + $3 * 1000))
  while [ "$(now_ms)" -lt "$end" ]; do
    if [ "$(status "$1")" = "$2" ]; then
      echo $(($(now_ms) - t0))
      return 0
    fi
    sleep 0.02
  done
  return 1
}
if wait_status chopin1 UP 5 >/dev/null && wait_status chopin2 UP 5 >/dev/null &&
  [ "$(http_status "$FE" /plaintext)" = 200 ]; then
  ok "HAProxy $("$HAPROXY" -v | head -n 1 | cut -d' ' -f3) on 127.0.0.1:$FE sees both servers UP"
else
  bad "HAProxy did not come up with both servers UP within 5 s"; cat "$OPS_TMP/haproxy.log"; finish
fi

# ---- load through HAProxy; kill, restart, stop, restart ----------------
./build/load --port "$FE" --seconds "$LOAD_SECONDS" --keepalive "$KEEPALIVE" --ka-rate 2000 \
  --rate 200 --concurrency "$CONCURRENCY" --timeline >"$OPS_TMP/load.out" 2>&1 &
LOAD=$!
track "$LOAD"
t0=$(now_ms)

# out_and_back NAME PID SIGNAL RESTART AT_MS BACK_AT_MS: signal the instance at
# AT_MS, measure kill -> DOWN; restart it at BACK_AT_MS, measure restart -> UP
out_and_back() {
  local name=$1 pid=$2 sig=$3 restart=$4 down up
  sleep_until "$5"
  kill "-$sig" "$pid"
  if down=$(wait_status "$name" DOWN 5); then
    ok "$name (SIG$sig at $(secs $(($5 - t0))) s): HAProxy took it out in $down ms"
  else
    bad "$name (SIG$sig): HAProxy did not mark it DOWN within 5 s"
  fi
  wait_gone "$pid" 12 || bad "$name did not exit within 12 s of SIG$sig"
  sleep_until "$6"
  "$restart"
  if up=$(wait_status "$name" UP 5); then
    ok "$name restarted at $(secs $(($6 - t0))) s: HAProxy put it back in $up ms"
  else
    bad "$name restarted: HAProxy did not mark it UP within 5 s"
  fi
  figures="$figures $name: out ${down:-?} ms, back ${up:-?} ms;"
}
figures=""
span=$((LOAD_SECONDS * 1000))
out_and_back chopin1 "$PID_A" KILL start_a $((t0 + span * 2 / 12)) $((t0 + span * 4 / 12))
out_and_back chopin2 "$PID_B" TERM start_b $((t0 + span * 6 / 12)) $((t0 + span * 8 / 12))

end=$(($(now_ms) + (LOAD_SECONDS + 10) * 1000))
while kill -0 "$LOAD" 2>/dev/null && [ "$(now_ms)" -lt "$end" ]; do sleep 0.1; done
kill -0 "$LOAD" 2>/dev/null && bad "build/load did not finish in time"
wait "$LOAD" 2>/dev/null
sed 's/^/    /' "$OPS_TMP/load.out"
backend=$(stat_csv | awk -F, '$1 == "chopin" && $2 == "BACKEND" { print "retries " $16 ", redispatches " $17 }')
echo "HAProxy backend: ${backend:-?}"
grep -E "^Server .* is (DOWN|UP)" "$OPS_TMP/haproxy.log" | cut -d, -f1 | sed 's/^/haproxy: /'

lp=$(load_passed "$OPS_TMP/load.out")
lf=$(load_failed "$OPS_TMP/load.out")
if [ -z "$lp" ] || [ "$lp" -eq 0 ]; then
  bad "the load through HAProxy got no correct answer"
elif [ "$lf" -le "$BOUND" ]; then
  ok "load through HAProxy: $lp correct answers, $lf failed (bound $BOUND: requests in flight on the killed instance)"
else
  bad "load through HAProxy: $lp correct answers, $lf failed, over the bound of $BOUND"
fi
echo "ops/haproxy figures: failed $lf of $((lp + lf)), unanswered $(load_unanswered "$OPS_TMP/load.out");$figures"
finish
