# shellcheck shell=bash
# tests/ops/common.sh - helpers for the operations scripts (sourced).
# Everything runs on 127.0.0.1; every wait is bounded; every process a script
# starts is recorded with track and ended by the EXIT trap (TERM, then KILL).

OPS_PIDS=()
OPS_TMP=$(mktemp -d "${TMPDIR:-/tmp}/chopin-ops.XXXXXX")

track() { OPS_PIDS+=("$@"); }

# the tally: ok and bad print a check's line and count it; a script's last
# line is "$passed passed, $failed failed"
passed=0
failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }

ops_cleanup() {
  local p live=()
  for p in "${OPS_PIDS[@]}"; do
    kill -0 "$p" 2>/dev/null && { kill -TERM "$p" 2>/dev/null; live+=("$p"); }
  done
  for _ in $(seq 20); do # up to 2 s for a graceful exit
    local left=()
    for p in "${live[@]}"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
    live=("${left[@]}")
    [ "${#live[@]}" -eq 0 ] && break
    sleep 0.1
  done
  for p in "${live[@]}"; do kill -KILL "$p" 2>/dev/null; done
  if [ -n "${OPS_KEEP_TMP:-}" ]; then echo "kept $OPS_TMP"; else rm -rf "$OPS_TMP"; fi
}
trap ops_cleanup EXIT
trap 'exit 130' INT TERM

# milliseconds since the epoch, from bash's clock (no fork)
now_ms() {
  local t=${EPOCHREALTIME//[!0-9]/}
  echo $((t / 1000))
}

# free_port VAR: sets VAR to a port on 127.0.0.1 that nobody listens on now,
# below the ephemeral range (so no client socket takes it meanwhile), and not
# handed out before by this script (status 1 if none found)
OPS_PORTS=" "
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    case "$OPS_PORTS" in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      OPS_PORTS="$OPS_PORTS$p "
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  return 1
}

# http_status PORT PATH: the status code of GET PATH (empty if no answer in 1 s)
http_status() {
  timeout 1 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$2" >&3
    IFS=" " read -r _ code _ <&3 && echo "$code"' _ "$1" "$2" 2>/dev/null
}

# wait_http PORT PATH SECONDS: until GET PATH answers 200 (status 1 on timeout)
wait_http() {
  local end=$(($(now_ms) + $3 * 1000))
  while [ "$(now_ms)" -lt "$end" ]; do
    [ "$(http_status "$1" "$2")" = 200 ] && return 0
    sleep 0.05
  done
  return 1
}

# wait_gone PID SECONDS: until the process has exited (status 1 on timeout)
wait_gone() {
  local end=$(($(now_ms) + $2 * 1000))
  while [ "$(now_ms)" -lt "$end" ]; do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.05
  done
  return 1
}

# secs MS: MS milliseconds as seconds with one decimal
secs() { echo "$(($1 / 1000)).$(($1 % 1000 / 100))"; }

# sleep_until MS: sleep until the clock reads MS (now_ms scale)
sleep_until() {
  local ms=$(($1 - $(now_ms)))
  [ "$ms" -gt 0 ] && sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
  return 0
}

# the numbers from load's result line: "N passed, N failed"
load_passed() { grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1 | cut -d' ' -f1; }
load_failed() { grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1 | cut -d' ' -f3; }
load_unanswered() { sed -n 's/.*retried) \([0-9]*\),.*/\1/p' "$1" | tail -n 1; }
