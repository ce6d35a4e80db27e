# The hot path's raw system calls (issue 14), checked on a second
# architecture by compiling: chopin.h issues read, sendto and epoll_wait with
# the syscall instruction itself on Linux x86-64 and arm64 (>>os, chi_sys6).
#   make cross-arm64   builds examples/bench.c (the whole implementation) for
#                      arm64 with Debian's cross compilers (gcc-aarch64-linux-
#                      gnu, g++-aarch64-linux-gnu), -Werror, C99 with
#                      -Wconversion -Wshadow and C++17, and with
#                      CHOPIN_NO_RAW_SYSCALLS (the C library's calls, also
#                      natively); skipped, saying so, when they are missing
AARCH64_CC  ?= aarch64-linux-gnu-gcc
AARCH64_CXX ?= aarch64-linux-gnu-g++

.PHONY: cross-arm64

cross-arm64: | build
	@if ! command -v $(AARCH64_CC) >/dev/null || ! command -v $(AARCH64_CXX) >/dev/null; then \
	  echo "cross-arm64: SKIPPED ($(AARCH64_CC) / $(AARCH64_CXX) not installed: apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu)"; \
	  echo "0 passed, 0 failed, 1 skipped"; exit 0; fi; \
	passed=0; failed=0; \
	if $(CC) $(WARN) -Werror -Wconversion -Wshadow -O2 -c -o build/cross-arm64.o -DCHOPIN_NO_RAW_SYSCALLS examples/bench.c; \
	then passed=$$((passed + 1)); else echo "not ok - CHOPIN_NO_RAW_SYSCALLS natively"; failed=$$((failed + 1)); fi; \
	for f in examples/bench.c; do \
	  if $(AARCH64_CC) $(WARN) -Werror -Wconversion -Wshadow -O2 -c -o build/cross-arm64.o $$f && \
	     $(AARCH64_CXX) -x c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -O2 -c -o build/cross-arm64.o $$f; \
	  then passed=$$((passed + 1)); else echo "not ok - $$f for arm64"; failed=$$((failed + 1)); fi; \
	done; \
	if $(AARCH64_CC) $(WARN) -Werror -O2 -c -o build/cross-arm64.o -DCHOPIN_NO_RAW_SYSCALLS examples/bench.c; \
	then passed=$$((passed + 1)); else echo "not ok - CHOPIN_NO_RAW_SYSCALLS for arm64"; failed=$$((failed + 1)); fi; \
	if $(AARCH64_CC) -O2 -S -o build/cross-arm64.s examples/bench.c && grep -q 'svc' build/cross-arm64.s; \
	then passed=$$((passed + 1)); else echo "not ok - arm64 build issues its own svc"; failed=$$((failed + 1)); fi; \
	echo "cross-arm64: chopin.h compiles for arm64 (gcc C99, g++ C++17), raw and libc system calls"; \
	echo "$$passed passed, $$failed failed"; [ $$failed -eq 0 ]
