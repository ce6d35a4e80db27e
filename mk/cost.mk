# The hot path's raw system calls (issue 14), checked on a second
# architecture by compiling: chopin.h issues read, sendto and epoll_wait with
# the syscall instruction itself on Linux x86-64 and arm64 (>>os, chi_sys6).
#   make cross-arm64   tests/cross_arm64.sh: examples/bench.c built for arm64
#                      (clang --target over libc6-dev-arm64-cross, and Debian's
#                      gcc-aarch64-linux-gnu when installed), C99 and C++17,
#                      with and without CHOPIN_NO_RAW_SYSCALLS; skipped, saying
#                      so, when no arm64 compiler can run
.PHONY: cross-arm64

cross-arm64:
	@CC=$(CC) CLANG=$(CLANG) bash tests/cross_arm64.sh
