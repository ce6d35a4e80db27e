#!/usr/bin/env bash
# Runs libFuzzer targets for a set time each and reports one line per target:
#     tests/fuzz/run.sh SECONDS [TARGET...]        (default: every target)
# Each target starts from the committed seeds (tests/fuzz/corpus/TARGET) and
# a working corpus that grows between runs (build/fuzz/corpus/TARGET). A
# crash or a failed property leaves its input in build/fuzz/artifacts/.
# FUZZ_JOBS targets run at once (default: the number of CPUs); FUZZ_NICE=1
# runs them under nice -n 19; FUZZ_LOGS names the folder for the logs
# (default build/fuzz/logs). Last line: "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.c; do t=$(basename "$f" .c); targets+=("$t"); done
fi
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
nice=()
[ "${FUZZ_NICE:-0}" = 1 ] && nice=(nice -n 19)
logs=${FUZZ_LOGS:-build/fuzz/logs}
mkdir -p build/fuzz/artifacts "$logs"

max_len() {
  case $1 in
    fuzz_conn) echo 8192 ;;
    fuzz_chunked) echo 4098 ;;
    fuzz_router) echo 512 ;;
    fuzz_url_query) echo 1024 ;;
    *) echo 4096 ;;
  esac
}
dict() {
  case $1 in
    fuzz_parser|fuzz_conn|fuzz_chunked) echo -dict=tests/fuzz/http.dict ;;
    fuzz_json_*) echo -dict=tests/fuzz/json.dict ;;
  esac
}

run_one() {
  local t=$1 log=$logs/$1.log
  mkdir -p "build/fuzz/corpus/$t" "tests/fuzz/corpus/$t"
  # shellcheck disable=SC2046
  "${nice[@]}" "build/fuzz/$t" -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=25 \
    -rss_limit_mb=3072 -print_final_stats=1 -artifact_prefix="build/fuzz/artifacts/$t-" $(dict "$t") \
    "build/fuzz/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1
  echo $? >"$log.rc"
}

pids=()
for t in "${targets[@]}"; do
  if [ ! -x "build/fuzz/$t" ]; then
    echo "missing build/fuzz/$t (make fuzz-build)" >"$logs/$t.log"
    echo 1 >"$logs/$t.log.rc"
    continue
  fi
  run_one "$t" &
  pids+=($!)
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 0.2; done
done
wait

passed=0
failed=0
for t in "${targets[@]}"; do
  log=$logs/$t.log
  rc=$(cat "$log.rc" 2>/dev/null || echo 1)
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(echo "$done_line" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$done_line" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
  corp=$(echo "$done_line" | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
  if [ "$rc" = 0 ] && [ -n "$done_line" ]; then
    passed=$((passed + 1))
    echo "ok - $t: ${runs:-?} runs in ${secs} s, coverage ${cov:-?} edges, ${ft:-?} features, corpus ${corp:-?}"
  else
    failed=$((failed + 1))
    crash=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n 1 | sed 's/Test unit written to //')
    echo "FAIL - $t: exit $rc${crash:+, input saved as $crash} (log: $log)"
    grep -E 'FUZZ_CHECK|ERROR:|SUMMARY:|#[0-9] 0x' "$log" | head -n 8 | sed 's/^/    /'
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
