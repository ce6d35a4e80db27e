#!/usr/bin/env bash
# Makes sure $1 (clang) can build a libFuzzer target; on Debian the runtime
# comes with libclang-rt-N-dev, installed here when missing and we are root.
set -u
cc=${1:-clang}
probe() {
  local dir
  dir=$(mktemp -d)
  printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$dir/p.c"
  "$cc" -fsanitize=fuzzer,address,undefined "$dir/p.c" -o "$dir/p" >/dev/null 2>&1
  local rc=$?
  rm -rf "$dir"
  return $rc
}
if ! command -v "$cc" >/dev/null; then
  echo "fuzz: $cc not found (install clang)" >&2
  exit 1
fi
probe && exit 0
major=$("$cc" -dumpversion | cut -d. -f1)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "fuzz: installing libclang-rt-$major-dev for -fsanitize=fuzzer" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq "libclang-rt-$major-dev" >/dev/null
  probe && exit 0
fi
echo "fuzz: $cc cannot link -fsanitize=fuzzer (Debian: apt-get install libclang-rt-$major-dev)" >&2
exit 1
