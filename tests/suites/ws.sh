# Sourced by tests/run.sh: the WebSocket suites (issue 13).
# - unit tests of the core's RFC 6455 pieces (ASan+UBSan);
# - the frame-level black box (tests/ws/ws_blackbox.c, Autobahn groups)
#   against examples/chat.c: release, ASan+UBSan, poll and kqueue backends,
#   valgrind;
# - the API fixture (tests/ws/fixture.c): auth before the upgrade,
#   subprotocols, pings, idle, drain, on_close codes: release, ASan+UBSan;
# - real clients: Node.js `ws` (npm) and headless Chromium (Debian).
# (fuzz_ws_frames and fuzz_ws_utf8 run with every libFuzzer target, last in
#  tests/run.sh.)
# every build first, two at a time (MAKEFLAGS); a failed one shows again,
# with its errors, in its suite below
make -s -k build/ws_unit build/chat build/ws_blackbox build/chat-asan build/chat-poll build/chat-kqueue \
  build/ws_fixture build/ws_fixture-asan build/chat-memcheck >/dev/null || true
suite "websocket: core unit tests (ASan+UBSan)" \
  bash -c 'make -s build/ws_unit && ./build/ws_unit'
suite "websocket: frame-level black box (examples/chat.c), release build" \
  bash -c 'make -s build/chat build/ws_blackbox && ./build/ws_blackbox ./build/chat'
suite "websocket: frame-level black box, ASan+UBSan build" \
  bash -c 'make -s build/chat-asan build/ws_blackbox &&
           WS_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 ./build/ws_blackbox ./build/chat-asan'
suite "websocket: frame-level black box, poll backend" \
  bash -c 'make -s build/chat-poll build/ws_blackbox && ./build/ws_blackbox ./build/chat-poll'
suite "websocket: frame-level black box, kqueue backend (emulation)" \
  bash -c 'make -s build/chat-kqueue build/ws_blackbox && ./build/ws_blackbox ./build/chat-kqueue'
suite "websocket: frame-level black box under valgrind" \
  bash -c 'if ! command -v valgrind >/dev/null; then echo "# skipped: no valgrind"; echo "0 passed, 0 failed"; exit 0; fi
           make -s build/chat-memcheck build/ws_blackbox && WS_SLOW=0 WS_SANITIZED=1 ./build/ws_blackbox tests/ws/valgrind-chat.sh'
suite "websocket: API fixture, release build" \
  bash -c 'make -s build/ws_fixture build/ws_blackbox && CHOPIN_WORKERS=1 ./build/ws_blackbox --fixture ./build/ws_fixture'
suite "websocket: API fixture, ASan+UBSan build" \
  bash -c 'make -s build/ws_fixture-asan build/ws_blackbox &&
           CHOPIN_WORKERS=1 WS_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 ./build/ws_blackbox --fixture ./build/ws_fixture-asan'
suite "websocket: Node.js ws client (npm)" bash tests/ws/clients.sh node
suite "websocket: headless Chromium" bash tests/ws/clients.sh browser
