#!/usr/bin/env bash
# cross_arm64.sh - `make cross-arm64` (mk/cost.mk): the raw system calls of
# >>os (chi_sys6) compile for arm64. Builds examples/bench.c (the whole
# implementation) for arm64, -Werror, as C99 with -Wconversion -Wshadow and
# as C++17, checks that the code issues its own `svc`, and builds it with
# CHOPIN_NO_RAW_SYSCALLS (the C library's calls; also natively). Compilers:
# clang/clang++ --target=aarch64-linux-gnu over Debian's arm64 headers
# (libc6-dev-arm64-cross, which .ci/run installs), and Debian's
# gcc-aarch64-linux-gnu / g++-aarch64-linux-gnu when installed (on amd64 they
# conflict with gcc-multilib, which the matrix needs, so CI does not install
# them). Skipped, saying so, when no arm64 compiler can run.
# Last line: "N passed, N failed[, N skipped]".
set -u
cd "$(dirname "$0")/.."
CC=${CC:-cc} CLANG=${CLANG:-clang}
AARCH64_CC=${AARCH64_CC:-aarch64-linux-gnu-gcc} AARCH64_CXX=${AARCH64_CXX:-aarch64-linux-gnu-g++}
AARCH64_HEADERS=${AARCH64_HEADERS:-/usr/aarch64-linux-gnu/include}
WARN="-std=c99 -Wall -Wextra -Wpedantic -Werror"
mkdir -p build
ccs=()
if command -v "$CLANG" >/dev/null && [ -f "$AARCH64_HEADERS/stdio.h" ]; then
  ccs+=("$CLANG --target=aarch64-linux-gnu|$CLANG++ --target=aarch64-linux-gnu")
fi
if command -v "$AARCH64_CC" >/dev/null && command -v "$AARCH64_CXX" >/dev/null; then
  ccs+=("$AARCH64_CC|$AARCH64_CXX")
fi
if [ ${#ccs[@]} -eq 0 ]; then
  echo "cross-arm64: SKIPPED (no arm64 compiler: apt-get install libc6-dev-arm64-cross for clang --target, or gcc-aarch64-linux-gnu)"
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi
passed=0 failed=0
check() { # name command...
  local name=$1
  shift
  if "$@"; then echo "ok - $name"; passed=$((passed + 1)); else echo "not ok - $name"; failed=$((failed + 1)); fi
}
check "CHOPIN_NO_RAW_SYSCALLS, natively" $CC $WARN -Wconversion -Wshadow -O2 -c -o build/cross-arm64.o \
  -DCHOPIN_NO_RAW_SYSCALLS examples/bench.c
for pair in "${ccs[@]}"; do
  cc=${pair%%|*} cxx=${pair#*|}
  check "$cc: C99, -Wconversion -Wshadow" $cc $WARN -Wconversion -Wshadow -O2 -c -o build/cross-arm64.o examples/bench.c
  check "$cxx: C++17" $cxx -x c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -O2 -c -o build/cross-arm64.o examples/bench.c
  check "$cc: the code issues its own svc" \
    bash -c "$cc -O2 -S -o build/cross-arm64.s examples/bench.c && grep -q 'svc' build/cross-arm64.s"
  check "$cc: CHOPIN_NO_RAW_SYSCALLS" $cc $WARN -O2 -c -o build/cross-arm64.o -DCHOPIN_NO_RAW_SYSCALLS examples/bench.c
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
