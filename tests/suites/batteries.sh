# Sourced by tests/run.sh (issue 9): the batteries' unit tests (ASan+UBSan,
# and built -m32), each CHOPIN_NO_* switch of theirs compiled alone, a
# server of their own (408s in the access log, a 50 MB answer not kept,
# CORS modes, HEAD), the todo API's contract (CORS_ORIGINS, RATE_LIMIT,
# /metrics, TRUST_PROXY, PROXY) on the release build (the ASan+UBSan build
# runs in tests/run.sh's own rest suite), and /metrics read by Prometheus's
# client parser.
# every build first, two at a time (MAKEFLAGS); a failed one shows again,
# with its errors, in its suite below
make -s -k build/batteries_unit build/batteries_oom build/batteries_blackbox build/batteries_blackbox-asan \
  build/rest build/rest_blackbox >/dev/null || true
suite "batteries: unit tests (addresses, PROXY header, buckets, cookies, bugs 4-8), ASan+UBSan" \
  bash -c 'make -s build/batteries_unit && ./build/batteries_unit'
suite "batteries: out of memory for an answer closes the connection, skips none (ASan+UBSan)" \
  bash -c 'make -s build/batteries_oom && ./build/batteries_oom'
suite "batteries: unit tests built -m32 (counters never read torn on a 32-bit CPU), UBSan" make -s batteries-m32
# (each CHOPIN_NO_* switch built warning-free, make batteries-switches: in
#  tests/run.sh's background lanes, with the other compile-only checks)
suite "batteries: 408 after a partial head reaches the access log; a 50 MB answer is not kept (RSS), release" \
  bash -c 'make -s build/batteries_blackbox && ./build/batteries_blackbox'
suite "batteries: the same, ASan+UBSan (RSS reported, not checked)" \
  bash -c 'make -s build/batteries_blackbox-asan && BATTERIES_SANITIZED=1 ./build/batteries_blackbox-asan'
suite "todo API (examples/rest.c), release build" bash -c 'make -s build/rest build/rest_blackbox && ./build/rest_blackbox ./build/rest'
# /metrics read by the real Prometheus client's text parser (Debian's
# python3-prometheus-client, for the system python3): installed here when
# running as root and missing, else the test prints why it skips
if ! /usr/bin/python3 -c 'import prometheus_client' 2>/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq python3-prometheus-client >/dev/null 2>&1 ||
    { timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq python3-prometheus-client >/dev/null 2>&1; } ||
    echo "batteries: could not install python3-prometheus-client"
fi
suite "batteries: /metrics read by the Prometheus client's own parser (4 workers summed)" \
  bash -c 'make -s build/rest && if [ -x /usr/bin/python3 ]; then /usr/bin/python3 tests/batteries_metrics.py ./build/rest;
           else echo "skip: no /usr/bin/python3"; echo "0 passed, 0 failed"; fi'
suite "Server-Timing on /users/:id; with metrics, the shared end read leaks into no other answer (release)" \
  bash -c 'make -s build/bench build/bench-cost-batteries && python3 tests/timing_blackbox.py ./build/bench &&
           python3 tests/timing_blackbox.py ./build/bench-cost-batteries --metrics'
