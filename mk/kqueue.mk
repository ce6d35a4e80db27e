# The OS seam's kqueue and poll backends (tests/kqueue/backend_*.inc, pasted
# into chopin.h's >>os section), tested on Linux: poll natively, kqueue over a
# small kqueue emulation built on epoll (tests/kqueue/kqueue.c, tests only).
#   make seam-test      the emulation's unit tests, then the seam contract
#                       (tests/kqueue/seam_test.c) for the poll backend, the
#                       kqueue backend, and the kqueue backend with its
#                       self-pipe waker (as where EVFILT_USER is missing);
#                       ASan+UBSan builds
#   make seam-warnings  both blocks and the emulation compile warning-free as
#                       C99 (gcc, clang, POSIX-only for poll) and C++ (g++)
KQ          = tests/kqueue
KQ_WARN     = $(WARN) -Wconversion -Wshadow
KQ_EMU      = $(KQ)/kqueue.c $(KQ)/sys/event.h
SEAM_BUILDS = build/emu_test build/seam-poll build/seam-kqueue build/seam-kqueue-pipe

.PHONY: seam-test seam-warnings

build/emu_test: $(KQ)/emu_test.c $(KQ_EMU) | build
	$(CC) $(KQ_WARN) $(DEBUG) $(SAN) -I$(KQ) $< $(KQ)/kqueue.c -o $@ $(LIBS)

build/seam-poll: $(KQ)/seam_test.c $(KQ)/backend_poll.inc | build
	$(CC) $(KQ_WARN) $(DEBUG) $(SAN) -DSEAM_POLL -I$(KQ) $< -o $@ $(LIBS)

build/seam-kqueue: $(KQ)/seam_test.c $(KQ)/backend_kqueue.inc $(KQ_EMU) | build
	$(CC) $(KQ_WARN) $(DEBUG) $(SAN) -DSEAM_KQUEUE -I$(KQ) $< $(KQ)/kqueue.c -o $@ $(LIBS)

build/seam-kqueue-pipe: $(KQ)/seam_test.c $(KQ)/backend_kqueue.inc $(KQ_EMU) | build
	$(CC) $(KQ_WARN) $(DEBUG) $(SAN) -DSEAM_KQUEUE -DSEAM_NO_EVFILT_USER -I$(KQ) $< $(KQ)/kqueue.c -o $@ $(LIBS)

seam-warnings:
	@for b in -DSEAM_POLL -DSEAM_KQUEUE '-DSEAM_KQUEUE -DSEAM_NO_EVFILT_USER'; do \
	  $(CC) $(KQ_WARN) -Werror -O2 $$b -I$(KQ) -c -o /dev/null $(KQ)/seam_test.c || exit 1; \
	  if command -v $(CLANG) >/dev/null; then $(CLANG) $(KQ_WARN) -Werror -O2 $$b -I$(KQ) -c -o /dev/null $(KQ)/seam_test.c || exit 1; fi; \
	  $(CXX) -x c++ -Wall -Wextra -Wpedantic -Wconversion -Wshadow -Werror -O2 $$b -I$(KQ) -c -o /dev/null $(KQ)/seam_test.c || exit 1; \
	done
	@$(CC) $(KQ_WARN) -Werror -O2 -D_POSIX_C_SOURCE=200809L -DSEAM_POLL -I$(KQ) -c -o /dev/null $(KQ)/seam_test.c
	@$(CC) $(KQ_WARN) -Werror -O2 -I$(KQ) -c -o /dev/null $(KQ)/kqueue.c
	@$(CXX) -x c++ -Wall -Wextra -Wpedantic -Wconversion -Wshadow -Werror -O2 -I$(KQ) -c -o /dev/null $(KQ)/kqueue.c
	@echo "seam warnings: none (kqueue and poll blocks: gcc, clang, g++; poll as POSIX only)"

seam-test: seam-warnings $(SEAM_BUILDS)
	./build/emu_test
	./build/seam-poll
	./build/seam-kqueue
	./build/seam-kqueue-pipe
