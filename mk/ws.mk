# WebSocket (issue 13): RFC 6455 in the core (>>sha1, >>base64,
# >>websocket frames) and the server (>>websocket), examples/chat.c.
#   make ws-unit      unit tests of the core pieces (ASan+UBSan)
#   make ws-test      every WebSocket suite (what tests/suites/ws.sh runs in
#                     make test): unit, the frame-level black box against
#                     build/chat (release, ASan+UBSan, poll, kqueue,
#                     valgrind), the API fixture, Node's ws, Chromium
#   make ws-bench     not a test: echo round trips and fan-out beside a Node
#                     ws server (also run by make bench)
# The libFuzzer targets (tests/fuzz/fuzz_ws_*.c) build with the others.
build/ws_unit: tests/ws/unit_ws.c tests/ws/ws_frames.h tests/check.h chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)

.PHONY: ws-unit
ws-unit: build/ws_unit
	./build/ws_unit

build/ws_blackbox: tests/ws/ws_blackbox.c tests/testnet.h | build
	$(CC) $(WARN) -D_GNU_SOURCE -O1 -g $< -o $@ $(LIBS)

# The Node.js `ws` package, installed under build/ by the test scripts.
build/node/node_modules/ws/package.json:
	@bash tests/ws/need-node-ws.sh build/node

build/chat-asan: examples/chat.c chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)

# valgrind wants plain code (see build/bench-memcheck in hardening.mk)
build/chat-memcheck: examples/chat.c chopin.h | build
	$(CC) $(WARN) -Wno-maybe-uninitialized -O1 -g $< -o $@ $(LIBS)

# the other backends (see backends.mk): poll natively, kqueue over the
# tests' emulation
build/chat-poll: examples/chat.c chopin.h | build
	$(CC) $(WARN) $(RELEASE) -DCHOPIN_USE_POLL $< -o $@ $(LIBS)

build/chat-kqueue: examples/chat.c chopin.h $(KQ_EMU) | build
	$(CC) $(WARN) $(RELEASE) $(KQ_FLAGS) $< $(KQ)/kqueue.c -o $@ $(LIBS)

build/ws_fixture: tests/ws/fixture.c chopin.h | build
	$(CC) $(WARN) $(RELEASE) $< -o $@ $(LIBS)

build/ws_fixture-asan: tests/ws/fixture.c chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)

build/ws_load: tests/ws/ws_load.c tests/testnet.h | build
	$(CC) $(WARN) -D_GNU_SOURCE -O2 $< -o $@

.PHONY: ws-test ws-bench
# every WebSocket suite, alone (tests/run.sh runs them within make test)
ws-test:
	@bash tests/ws/run_suites.sh

# Not a test: echo round trips and fan-out beside Node's ws (tests/ws/bench.sh).
ws-bench: build/chat build/ws_load build/node/node_modules/ws/package.json
	bash tests/ws/bench.sh

bench: ws-bench
