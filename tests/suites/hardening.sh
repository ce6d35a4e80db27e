# Sourced by tests/run.sh: the hardening suites (issue #5).
# - the fixture server (tests/fixtures/server.c, 2-second timeouts) under the
#   black-box hardening cases: slowloris, idle, stalled body and stalled
#   reader timeouts, bounded memory, max_connections, EMFILE, resets,
#   half-close, EINTR, graceful shutdown; release and ASan+UBSan builds;
# - every libFuzzer target for 5 s (make fuzz runs them for FUZZ_TIME, 60 s):
#   built in tests/run.sh's background lanes, run there last, with the CPUs
#   to themselves.
make -s -k build/fixture build/fixture-asan build/blackbox >/dev/null || true
# the two fixtures run side by side: each mostly waits out its timeouts
suite_beside "hardening: fixture server, ASan+UBSan build" \
  bash -c 'make -s build/fixture-asan build/blackbox &&
           BLACKBOX_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 ./build/blackbox --fixture ./build/fixture-asan'
suite "hardening: fixture server, release build" \
  bash -c 'make -s build/fixture build/blackbox && ./build/blackbox --fixture ./build/fixture'
suites_beside_done
