# The io_uring backend (issue 14): examples/bench.c and the embedded server
# built with -DCHOPIN_USE_IO_URING, the seccomp launcher that makes the
# kernel refuse io_uring (the fallback to epoll), the seam contract, the
# fuzz `conn` target. tests/suites/uring.sh runs them.
#   make uring-test    the same runs as the suite, by hand
#   make bench-uring   io_uring against epoll on one pinned worker (not a test)
URING_FLAGS = -DCHOPIN_USE_IO_URING
URING_BUILDS = build/bench-uring build/bench-uring-asan build/embed-uring-asan build/no-uring \
               build/seam-uring build/files-uring build/async-uring build/chat-uring-asan

.PHONY: uring-test bench-uring

build/bench-uring: examples/bench.c chopin.h | build
	$(CC) $(WARN) $(RELEASE) $(URING_FLAGS) $< -o $@ $(LIBS)

build/bench-uring-asan: examples/bench.c chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $(URING_FLAGS) $< -o $@ $(LIBS)

build/embed-uring-asan: tests/embed/server.c examples/bench.c chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $(URING_FLAGS) $< -o $@ $(LIBS)

build/files-uring: examples/files.c chopin.h | build
	$(CC) $(WARN) $(RELEASE) $(URING_FLAGS) $< -o $@ $(LIBS)

build/async-uring: examples/async.c chopin.h | build
	$(CC) $(WARN) $(RELEASE) $(URING_FLAGS) $< -o $@ $(LIBS)

build/chat-uring-asan: examples/chat.c chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $(URING_FLAGS) $< -o $@ $(LIBS)

build/no-uring: tests/uring/no_uring.c | build
	$(CC) $(WARN) -Wconversion -Wshadow -O2 $< -o $@

build/seam-uring: tests/kqueue/seam_test.c chopin.h | build
	$(SEAM_CC) -DSEAM_URING $< -o $@ $(LIBS)

uring-test: $(URING_BUILDS) build/blackbox
	bash tests/suites/uring.sh --alone

bench-uring: build/bench build/bench-uring build/client
	bash bench/uring.sh

build/fixture-uring: tests/fixtures/server.c chopin.h | build
	$(CC) $(WARN) $(RELEASE) $(URING_FLAGS) $< -o $@ $(LIBS)

build/fixture-uring-asan: tests/fixtures/server.c chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $(URING_FLAGS) $< -o $@ $(LIBS)

build/fuzz/fuzz_conn_uring: tests/fuzz/fuzz_conn.c tests/fuzz/fuzz_common.h chopin.h | build/fuzz
	@bash tests/fuzz/need-libfuzzer.sh $(CLANG)
	$(CLANG) $(FUZZ_FLAGS) $(URING_FLAGS) $< -o $@ $(LIBS)
