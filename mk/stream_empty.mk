# stream_empty.mk - a stream route's request without a body, and a refused
# ch_req_body_stream (tests/stream_empty.c, an in-process server), on each
# backend: epoll (ASan+UBSan), poll, kqueue over tests/kqueue's emulation.
# Run by tests/suites/stream_empty.sh; `make stream-empty-test` alone.
STREAM_EMPTY = build/stream_empty build/stream_empty-poll build/stream_empty-kqueue

build/stream_empty: tests/stream_empty.c tests/check.h tests/testnet.h chopin.h | build
	$(CC) $(WARN) -Wconversion -Wshadow $(DEBUG) $(SAN) $< -o $@ $(LIBS)

build/stream_empty-poll: tests/stream_empty.c tests/check.h tests/testnet.h chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) -DCHOPIN_USE_POLL $< -o $@ $(LIBS)

build/stream_empty-kqueue: tests/stream_empty.c tests/check.h tests/testnet.h chopin.h $(KQ_EMU) | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $(KQ_FLAGS) $< $(KQ)/kqueue.c -o $@ $(LIBS)

stream-empty-test: $(STREAM_EMPTY)
	./build/stream_empty
	./build/stream_empty-poll
	./build/stream_empty-kqueue
.PHONY: stream-empty-test
