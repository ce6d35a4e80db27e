# chopin.h - build, run and test.
#   make          every example, release build, into build/
#   make run      the example app (examples/bench.c) on port 3000
#   make test     unit tests, warning checks, black-box tests (release and
#                 ASan+UBSan builds, every backend); the last line is
#                 "N passed, N failed"
#   make check    the fast loop: warnings, unit tests, black-box (release)
#   make wrk      quick wrk figures beside nginx (bench/wrk.sh)
# Each further area (benchmarks, fuzzing, ...) keeps its targets in mk/NAME.mk.
CC      ?= cc
CLANG   ?= clang
CXX     ?= g++
WARN     = -std=c99 -Wall -Wextra -Wpedantic
RELEASE  = -O3 -march=native -DNDEBUG
DEBUG    = -O1 -g -fno-omit-frame-pointer
SAN      = -fsanitize=address,undefined -fno-sanitize-recover=undefined
LIBS     = -pthread

EXAMPLES = $(patsubst examples/%.c,build/%,$(wildcard examples/*.c))

.PHONY: all run test check unit blackbox warnings wrk clean
all: $(EXAMPLES)

build:
	@mkdir -p build

build/%: examples/%.c chopin.h | build
	$(CC) $(WARN) $(RELEASE) $< -o $@ $(LIBS)

build/bench-asan: examples/bench.c chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)

build/unit: tests/unit.c tests/check.h chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)

build/rest_blackbox: tests/rest_blackbox.c tests/testnet.h | build
	$(CC) $(WARN) -D_GNU_SOURCE -O1 -g $< -o $@ $(LIBS)

build/rest-asan: examples/rest.c chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)

build/blackbox: tests/blackbox.c tests/testnet.h | build
	$(CC) $(WARN) -D_GNU_SOURCE -O1 -g $< -o $@ $(LIBS)

run: build/bench
	./build/bench

# Every example must compile without a warning as C99 (gcc, clang) and C++.
warnings: | build
	@for f in examples/*.c; do \
	  $(CC) $(WARN) -Werror -O3 -c -o /dev/null $$f || exit 1; \
	  if command -v $(CLANG) >/dev/null; then $(CLANG) $(WARN) -Werror -O3 -c -o /dev/null $$f || exit 1; fi; \
	  $(CXX) -x c++ -Wall -Wextra -Wpedantic -Werror -O2 -c -o /dev/null $$f || exit 1; \
	done
	@$(CC) $(WARN) -Werror -O2 -c -o /dev/null -DCHOPIN_STATIC examples/hello.c
	@$(CC) $(WARN) -Werror -O2 -c -o /dev/null -DCHOPIN_NO_AUTH -DCHOPIN_NO_ACCESS_LOG -DCHOPIN_NO_TIMING -DCHOPIN_NO_SSE \
	  -DCHOPIN_NO_STATIC -DCHOPIN_NO_MULTIPART -DCHOPIN_NO_FILE_CACHE -DCHOPIN_NO_WEBSOCKET -DCHOPIN_NO_RESTART \
	  -DCHOPIN_NO_CORS -DCHOPIN_NO_RATELIMIT -DCHOPIN_NO_METRICS -DCHOPIN_NO_PROXY -DCHOPIN_NO_REQUEST_ID -DCHOPIN_NO_RAW_SYSCALLS examples/hello.c
	@$(CC) $(WARN) -Werror -Wconversion -Wshadow -O2 -c -o /dev/null -DCHOPIN_NO_RESTART examples/bench.c
	@$(CC) $(WARN) -Werror -Wconversion -Wshadow -O2 -c -o /dev/null -DCHOPIN_NO_FILE_CACHE examples/bench.c
	@$(CC) $(WARN) -Werror -O2 -c -o /dev/null '-DCHOPIN_MALLOC(n)=malloc(n)' '-DCHOPIN_REALLOC(p,n)=realloc(p,n)' \
	  '-DCHOPIN_FREE(p)=free(p)' '-DCHOPIN_ASSERT(c)=((void)0)' examples/hello.c
	@! $(CC) $(WARN) -c -o /dev/null '-DCHOPIN_MALLOC(n)=malloc(n)' examples/hello.c 2>/dev/null # all or none
	@for b in -DCHOPIN_USE_EPOLL -DCHOPIN_USE_POLL '-DCHOPIN_USE_KQUEUE -Itests/kqueue' -DCHOPIN_USE_IO_URING; do \
	  $(CC) $(WARN) -Werror -O2 -c -o /dev/null $$b examples/bench.c || exit 1; \
	  $(CXX) -x c++ -Wall -Wextra -Wpedantic -Werror -O2 -c -o /dev/null $$b examples/bench.c || exit 1; \
	done
	@! $(CC) $(WARN) -c -o /dev/null -DCHOPIN_USE_POLL -DCHOPIN_USE_EPOLL examples/hello.c 2>/dev/null # one backend
	@! $(CC) $(WARN) -c -o /dev/null -DCHOPIN_USE_IO_URING -DCHOPIN_USE_EPOLL examples/hello.c 2>/dev/null # one backend
	@$(CC) $(WARN) -Werror -Wconversion -Wshadow -O2 -c -o /dev/null -DCHOPIN_USE_IO_URING -DCHOPIN_NO_RESTART examples/bench.c
	@$(CC) $(WARN) -Werror -Wconversion -Wshadow -O2 -c -o /dev/null -DCHOPIN_USE_IO_URING -DCHOPIN_IO_URING_POLL_ONLY examples/bench.c
	@echo "warnings: none (gcc, clang, g++; CHOPIN_STATIC, CHOPIN_NO_*, a user allocator, each backend, io_uring)"

unit: build/unit
	./build/unit

blackbox: build/bench build/bench-asan build/blackbox
	./build/blackbox ./build/bench
	ASAN_OPTIONS=detect_leaks=1 ./build/blackbox ./build/bench-asan

# (tests/run.sh runs `make warnings` itself, in a background lane)
test:
	@bash tests/run.sh

check: warnings build/unit build/bench build/blackbox
	./build/unit
	./build/blackbox ./build/bench

wrk: build/bench
	bash bench/wrk.sh

clean:
	rm -rf build

include $(wildcard mk/*.mk)
