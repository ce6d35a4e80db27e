# Sourced by tests/run.sh (issue 9): the batteries' unit tests (ASan+UBSan),
# each CHOPIN_NO_* switch of theirs compiled alone, and the todo API's
# contract (CORS_ORIGINS, RATE_LIMIT, /metrics, TRUST_PROXY) on the release
# build (the ASan+UBSan build runs in tests/run.sh's own rest suite).
suite "batteries: unit tests (addresses, PROXY header, buckets, cookies, bugs 4-8), ASan+UBSan" \
  bash -c 'make -s build/batteries_unit && ./build/batteries_unit'
suite "batteries: out of memory for an answer closes the connection, skips none (ASan+UBSan)" \
  bash -c 'make -s build/batteries_oom && ./build/batteries_oom'
suite "batteries: unit tests built -m32 (counters never read torn on a 32-bit CPU), UBSan" make -s batteries-m32
suite "batteries: each CHOPIN_NO_* switch builds warning-free" make -s batteries-switches
suite "batteries: 408 after a partial head reaches the access log; a 50 MB answer is not kept (RSS), release" \
  bash -c 'make -s build/batteries_blackbox && ./build/batteries_blackbox'
suite "todo API (examples/rest.c), release build" bash -c 'make -s build/rest build/rest_blackbox && ./build/rest_blackbox ./build/rest'
