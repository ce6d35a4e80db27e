# Sourced by tests/run.sh: the io_uring backend (issue 14; mk/uring.mk).
# Where the kernel lets this process set up a ring (build/no-uring --probe):
# - the black-box suite against examples/bench.c built with
#   CHOPIN_USE_IO_URING, release and ASan+UBSan, and embedded (ch_poll over
#   the ring's descriptor, ASan+UBSan);
# - the OS seam contract (tests/kqueue/seam_test.c -DSEAM_URING);
# - queued sends (tests/uring/sendq.py): answers bigger than the queue, a
#   close or shutdown right behind an answer, pipelining, a file after its
#   queued head, clients that reset mid-answer;
# - the files, async and WebSocket frame-level suites and the hardening
#   fixture (timeouts, slow readers, limits, graceful stop) on io_uring builds;
# - the fuzz `conn` target built with io_uring for 10 s, and a shortened soak.
# Everywhere (a seccomp filter refuses io_uring_setup, tests/uring/no_uring.c):
# - the fallback: one log line, ch_backend() says epoll, and the black-box
#   suite and the seam contract pass on the epoll it fell back to.
# Run alone: `make uring-test` (bash tests/suites/uring.sh --alone).
if [ "${1:-}" = --alone ]; then
  cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
  passed=0 failed=0
  suite() {
    local name=$1 log last
    shift
    log=$(mktemp)
    echo "== $name"
    "$@" 2>&1 | tee "$log"
    last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -z "$last" ]; then echo "!! $name ended without a result line"; failed=$((failed + 1))
    else passed=$((passed + ${last%% *})); failed=$((failed + $(echo "$last" | cut -d' ' -f3))); fi
    rm -f "$log"
  }
fi
make -s build/no-uring build/bench-uring build/bench-uring-asan build/embed-uring-asan build/seam-uring \
  build/files-uring build/async-uring build/chat-uring-asan build/fixture-uring build/blackbox \
  build/ws_blackbox build/soak >/dev/null
if uring_why=$(./build/no-uring --probe); then
  suite "io_uring: black-box, release build" timeout 300 ./build/blackbox ./build/bench-uring
  suite "io_uring: black-box, ASan+UBSan build" \
    env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 timeout 300 ./build/blackbox ./build/bench-uring-asan
  suite "io_uring: black-box, embedded (ch_poll on the ring's descriptor), ASan+UBSan build" \
    env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 timeout 300 ./build/blackbox ./build/embed-uring-asan
  suite "io_uring: OS seam contract" timeout 60 ./build/seam-uring
  suite "io_uring: queued sends (big, closing, pipelined, file after head, resets), ASan+UBSan and release files" \
    env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 timeout 300 python3 tests/uring/sendq.py \
      --bench ./build/bench-uring-asan --files ./build/files-uring
  suite "io_uring: files black-box (examples/files.c), release build" \
    env FILES_BIG_MB=64 timeout 300 python3 tests/files_blackbox.py ./build/files-uring
  suite "io_uring: async black-box (examples/async.c), release build" \
    timeout 300 python3 tests/async_blackbox.py ./build/async-uring
  suite "io_uring: WebSocket frame-level black box, ASan+UBSan build" \
    env WS_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 timeout 300 ./build/ws_blackbox ./build/chat-uring-asan
  suite "io_uring: hardening fixture (timeouts, slow readers, limits, stop), release build" \
    timeout 300 ./build/blackbox --fixture ./build/fixture-uring
  suite "io_uring: soak, 1 M requests over 256 connections, 16 pipelined" \
    bash -c 'timeout 120 ./build/soak --requests 1000000 ./build/bench-uring && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"'
  suite "io_uring: fuzz conn target for 10 s" \
    bash -c 'make -s build/fuzz/fuzz_conn_uring && mkdir -p build/fuzz/corpus/fuzz_conn_uring build/fuzz/artifacts &&
             timeout 120 ./build/fuzz/fuzz_conn_uring -max_total_time=10 -max_len=8192 -timeout=25 -rss_limit_mb=3072 \
               -dict=tests/fuzz/http.dict -artifact_prefix=build/fuzz/artifacts/fuzz_conn_uring- \
               build/fuzz/corpus/fuzz_conn_uring tests/fuzz/corpus/fuzz_conn >build/fuzz/fuzz_conn_uring.log 2>&1 &&
             grep -E "DONE" build/fuzz/fuzz_conn_uring.log | tail -n 1 && echo "1 passed, 0 failed" ||
             { tail -n 20 build/fuzz/fuzz_conn_uring.log; echo "0 passed, 1 failed"; }'
else
  suite "io_uring: the backend's own suites" \
    bash -c "echo '# SKIPPED: $uring_why: the io_uring-proper suites cannot run on this machine'; echo '0 passed, 0 failed'"
fi
suite "io_uring refused by seccomp: one log line, ch_backend() says epoll" bash tests/uring/fallback.sh
suite "io_uring refused by seccomp (EPERM): black-box on the epoll fallback" \
  timeout 300 ./build/blackbox tests/uring/refused-bench.sh
suite "io_uring refused by seccomp (ENOSYS): OS seam contract on the epoll fallback" \
  timeout 60 ./build/no-uring -e ENOSYS ./build/seam-uring
if [ "${1:-}" = --alone ]; then
  echo
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
fi
