# Hardening (issue #5): fuzzing, the fixture server with short timeouts,
# valgrind, soak and idle-memory measurements.
#   make fuzz          every libFuzzer target for FUZZ_TIME seconds (60)
#   make fuzz-short    the same for 10 s each (what `make test` runs)
#   make hardening     the black-box hardening suite against the fixture
#                      (timeouts, limits, EMFILE, faults, graceful shutdown)
#   make memcheck      the black-box conformance suite against a -O1 -g
#                      build under valgrind memcheck: no errors, no leaks
#   make soak          10 million requests over 256 connections (SOAK_REQUESTS;
#                      SOAK_SERVER=build/bench-asan for a sanitized run)
#   make idle-mem      RSS per idle keep-alive connection (IDLE_CONNS, 10000)
FUZZ_TIME    ?= 60
FUZZ_FLAGS    = -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_TARGETS  = $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
SOAK_REQUESTS ?= 10000000
SOAK_SERVER   ?= build/bench
IDLE_CONNS    ?= 10000

.PHONY: fuzz fuzz-short fuzz-build hardening memcheck soak idle-mem

build/fixture: tests/fixtures/server.c chopin.h | build
	$(CC) $(WARN) $(RELEASE) $< -o $@ $(LIBS)

build/fixture-asan: tests/fixtures/server.c chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)

# valgrind wants plain code: no sanitizer, no -march=native. At -O1 gcc
# cannot see that chi_parse_head fills its chi_head whenever it returns a
# length (the only case in which chi_process reads it): that warning is off.
build/bench-memcheck: examples/bench.c chopin.h | build
	$(CC) $(WARN) -Wno-maybe-uninitialized -O1 -g $< -o $@ $(LIBS)

build/fuzz:
	@mkdir -p build/fuzz

build/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz_common.h chopin.h | build/fuzz
	@bash tests/fuzz/need-libfuzzer.sh $(CLANG)
	$(CLANG) $(FUZZ_FLAGS) $< -o $@ $(LIBS)

fuzz-build: $(addprefix build/fuzz/,$(FUZZ_TARGETS))

fuzz: fuzz-build
	@bash tests/fuzz/run.sh $(FUZZ_TIME) $(FUZZ_TARGETS)

fuzz-short: fuzz-build
	@bash tests/fuzz/run.sh 10 $(FUZZ_TARGETS)

hardening: build/fixture build/fixture-asan build/blackbox
	./build/blackbox --fixture ./build/fixture
	BLACKBOX_SANITIZED=1 ./build/blackbox --fixture ./build/fixture-asan

memcheck: build/bench-memcheck build/blackbox
	@bash tests/soak/memcheck.sh

build/soak: tests/soak/soak.c tests/testnet.h | build
	$(CC) $(WARN) -D_GNU_SOURCE -O2 $< -o $@

build/idlemem: tests/soak/idlemem.c tests/testnet.h | build
	$(CC) $(WARN) -D_GNU_SOURCE -O2 $< -o $@

soak: build/soak $(SOAK_SERVER)
	./build/soak --requests $(SOAK_REQUESTS) $(if $(findstring asan,$(SOAK_SERVER)),--sanitized) ./$(SOAK_SERVER)

idle-mem: build/idlemem build/bench
	./build/idlemem --conns $(IDLE_CONNS) ./build/bench
