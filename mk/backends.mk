# The OS seam's backends and the embedding mode (issue 8). On Linux epoll
# and poll run natively; kqueue runs over a small kqueue-over-epoll emulation
# written for the tests (tests/kqueue/kqueue.c, never in chopin.h).
#   make backends      the black-box suite against bench built with each
#                      backend (release and ASan+UBSan), and against the
#                      embedded server (tests/embed/server.c: ch_poll, 10 ms
#                      per call)
#   make seam-test     the emulation's own tests, then the seam contract
#                      (tests/kqueue/seam_test.c) for epoll, poll, kqueue and
#                      kqueue without EVFILT_USER; ASan+UBSan builds
#   make layers        the core builds alone without system calls, and
#                      nothing outside >>os calls the kernel (tests/layers.sh)
KQ        = tests/kqueue
KQ_EMU    = $(KQ)/kqueue.c $(KQ)/sys/event.h
KQ_FLAGS  = -DCHOPIN_USE_KQUEUE -I$(KQ)
SEAM_CC   = $(CC) $(WARN) -Wno-unused-function $(DEBUG) $(SAN) -I$(KQ)
BACKEND_BUILDS = build/bench-poll build/bench-poll-asan build/bench-kqueue build/bench-kqueue-asan \
                 build/embed build/embed-asan
SEAM_BUILDS = build/emu_test build/seam-epoll build/seam-poll build/seam-kqueue build/seam-kqueue-pipe

.PHONY: backends seam-test layers

build/bench-poll: examples/bench.c chopin.h | build
	$(CC) $(WARN) $(RELEASE) -DCHOPIN_USE_POLL $< -o $@ $(LIBS)

build/bench-poll-asan: examples/bench.c chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) -DCHOPIN_USE_POLL $< -o $@ $(LIBS)

build/bench-kqueue: examples/bench.c chopin.h $(KQ_EMU) | build
	$(CC) $(WARN) $(RELEASE) $(KQ_FLAGS) $< $(KQ)/kqueue.c -o $@ $(LIBS)

build/bench-kqueue-asan: examples/bench.c chopin.h $(KQ_EMU) | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $(KQ_FLAGS) $< $(KQ)/kqueue.c -o $@ $(LIBS)

build/embed: tests/embed/server.c examples/bench.c chopin.h | build
	$(CC) $(WARN) $(RELEASE) $< -o $@ $(LIBS)

build/embed-asan: tests/embed/server.c examples/bench.c chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)

build/emu_test: $(KQ)/emu_test.c $(KQ_EMU) | build
	$(CC) $(WARN) -Wconversion -Wshadow $(DEBUG) $(SAN) -I$(KQ) $< $(KQ)/kqueue.c -o $@ $(LIBS)

build/seam-epoll: $(KQ)/seam_test.c chopin.h | build
	$(SEAM_CC) $< -o $@ $(LIBS)

build/seam-poll: $(KQ)/seam_test.c chopin.h | build
	$(SEAM_CC) -DSEAM_POLL $< -o $@ $(LIBS)

build/seam-kqueue: $(KQ)/seam_test.c chopin.h $(KQ_EMU) | build
	$(SEAM_CC) -DSEAM_KQUEUE $< $(KQ)/kqueue.c -o $@ $(LIBS)

build/seam-kqueue-pipe: $(KQ)/seam_test.c chopin.h $(KQ_EMU) | build
	$(SEAM_CC) -DSEAM_KQUEUE -DSEAM_NO_EVFILT_USER $< $(KQ)/kqueue.c -o $@ $(LIBS)

backends: $(BACKEND_BUILDS) build/blackbox
	./build/blackbox ./build/bench-poll
	./build/blackbox ./build/bench-kqueue
	ASAN_OPTIONS=detect_leaks=1 ./build/blackbox ./build/bench-poll-asan
	ASAN_OPTIONS=detect_leaks=1 ./build/blackbox ./build/bench-kqueue-asan
	./build/blackbox ./build/embed
	ASAN_OPTIONS=detect_leaks=1 ./build/blackbox ./build/embed-asan

seam-test: $(SEAM_BUILDS)
	./build/emu_test
	./build/seam-epoll
	./build/seam-poll
	./build/seam-kqueue
	./build/seam-kqueue-pipe

layers:
	bash tests/layers.sh
