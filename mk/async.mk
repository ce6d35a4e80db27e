# Answering later (issue 10): deferred responses, timers, the cross-thread
# queue, the off-loop pool, streaming and server-sent events.
#   make async-test    the unit tests of the timer heap and the queue, the
#                      in-process API tests (tests/async_unit.c) and the
#                      black-box suite against examples/async.c (release and
#                      ASan+UBSan builds, tests/async_blackbox.py)
#   make async-bench   the three figures of issue 10 (bench/async.sh):
#                      /fast beside 64 /delay in flight, /delay?ms=0 against
#                      /fast, SSE fan-out to 10,000 subscribers
.PHONY: async-test async-bench

build/async-asan: examples/async.c chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)

build/async-poll: examples/async.c chopin.h | build
	$(CC) $(WARN) $(RELEASE) -DCHOPIN_USE_POLL $< -o $@ $(LIBS)

build/async-kqueue: examples/async.c chopin.h $(KQ_EMU) | build
	$(CC) $(WARN) $(RELEASE) $(KQ_FLAGS) $< $(KQ)/kqueue.c -o $@ $(LIBS)

build/async_unit: tests/async_unit.c tests/check.h tests/testnet.h chopin.h | build
	$(CC) $(WARN) -Wconversion -Wshadow $(DEBUG) $(SAN) $< -o $@ $(LIBS)

async-test: build/async build/async-asan build/async_unit
	./build/async_unit
	python3 tests/async_blackbox.py ./build/async
	ASAN_OPTIONS=detect_leaks=1 python3 tests/async_blackbox.py ./build/async-asan

async-bench: build/async build/async-overhead build/async-overhead-cost build/client
	bash bench/async.sh

# the example app without -march=native, for callgrind (bench/async.sh)
build/async-cost: examples/async.c chopin.h | build
	$(CC) $(WARN) $(COST_FLAGS) $< -o $@ $(LIBS)

build/async-overhead: bench/async_overhead.c examples/async.c chopin.h | build
	$(CC) $(WARN) $(RELEASE) $< -o $@ $(LIBS)

build/async-overhead-cost: bench/async_overhead.c examples/async.c chopin.h | build
	$(CC) $(WARN) $(COST_FLAGS) $< -o $@ $(LIBS)
