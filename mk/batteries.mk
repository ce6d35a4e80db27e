# Issue 9 (batteries and sharp edges): the unit tests of the new parts
# (addresses, PROXY header, token buckets, cookies, the response rules),
# and each of the batteries' CHOPIN_NO_* switches compiled on its own,
# warning-free with -Wconversion -Wshadow (gcc -O2; clang -fsyntax-only:
# its warnings are all front-end ones, and the suite stays short).
#   make batteries     the unit tests (ASan+UBSan) and the switch builds
BATTERIES_OFF = CHOPIN_NO_CORS CHOPIN_NO_RATELIMIT CHOPIN_NO_METRICS CHOPIN_NO_PROXY CHOPIN_NO_REQUEST_ID

.PHONY: batteries batteries-switches batteries-m32
build/batteries_unit: tests/batteries_unit.c tests/check.h chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)

batteries-switches: | build
	@for m in $(BATTERIES_OFF); do \
	  $(CC) $(WARN) -Wconversion -Wshadow -Werror -O2 -c -o build/batteries-switch.o -D$$m examples/hello.c || exit 1; \
	  if command -v $(CLANG) >/dev/null; then \
	    $(CLANG) $(WARN) -Wconversion -Wshadow -Werror -fsyntax-only -D$$m examples/hello.c || exit 1; fi; \
	done
	@echo "1 passed, 0 failed"

batteries: build/batteries_unit build/batteries_oom batteries-switches batteries-m32
	./build/batteries_unit
	./build/batteries_oom

# The cost case batteries.keepalive (bench/cost.sh) runs this build.
build/bench-cost-batteries: examples/bench.c chopin.h | build
	$(CC) $(WARN) $(COST_FLAGS) -DBENCH_BATTERIES $< -o $@ $(LIBS)

build/batteries_oom: tests/batteries_oom.c chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)

# The unit tests built for a 32-bit CPU (gcc -m32, gcc-multilib), with
# UBSan: the metrics counters must not be read torn there (issue 9). A
# machine without the 32-bit headers and libraries (gcc-multilib, which
# Debian will not install beside gcc-aarch64-linux-gnu) prints why and
# passes nothing.
build/batteries_unit32: tests/batteries_unit.c tests/check.h chopin.h | build
	$(CC) -m32 $(WARN) -O2 -g -fsanitize=undefined -fno-sanitize-recover=undefined $< -o $@ $(LIBS)

batteries-m32: | build
	@if printf '#include <errno.h>\n#include <pthread.h>\nint main(void){return errno;}\n' | \
	    $(CC) -m32 -x c - -o build/m32-probe $(LIBS) 2>/dev/null; then \
	  $(MAKE) -s build/batteries_unit32 && ./build/batteries_unit32; \
	else echo "skip: $(CC) -m32 cannot link here (install gcc-multilib)"; echo "0 passed, 0 failed"; fi

# Contracts that need a server of their own (the 408 after-hook path, a 50 MB
# answer not kept resident): release build, since RSS is measured.
build/batteries_blackbox: tests/batteries_blackbox.c tests/testnet.h chopin.h | build
	$(CC) $(WARN) -O2 -g $< -o $@ $(LIBS)

build/batteries_blackbox-asan: tests/batteries_blackbox.c tests/testnet.h chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)
