#!/usr/bin/env bash
# The layering of chopin.h, checked (issue 8):
#  1. the core (layer 1) builds alone, with CHOPIN_CORE_ONLY, in strict ISO
#     C99 with no POSIX or GNU declarations, and runs;
#  2. the core's object needs no external symbol but the C library's memory,
#     string, number and formatting functions: no system call;
#  3. outside the >>os section, no line of chopin.h calls a system function
#     by name (the server goes through chi_os_* and the backend's chi_*).
# Last line: "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
CC=${CC:-cc}
passed=0 failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
no() { echo "not ok - $1"; failed=$((failed + 1)); }
mkdir -p build
obj=build/layers-core.o
if $CC -std=c99 -Wall -Wextra -Wpedantic -Werror -Wno-unused-function -O0 -U_GNU_SOURCE -D_ISOC99_SOURCE \
     -Werror=implicit-function-declaration -c tests/layers/core.c -o "$obj" 2> build/layers-core.log &&
   $CC "$obj" -o build/layers-core -lm 2>> build/layers-core.log && ./build/layers-core; then
  ok "core builds alone as strict ISO C99 (CHOPIN_CORE_ONLY) and runs"
else
  cat build/layers-core.log
  no "core builds alone as strict ISO C99 (CHOPIN_CORE_ONLY) and runs"
fi
# The C library functions the core may use; anything else is a finding.
allowed='^(memcpy|memmove|memset|memcmp|memchr|strlen|strchr|strcmp|strncmp|malloc|realloc|free|snprintf|vsnprintf|sprintf|strtod|localeconv|__assert_fail|__stack_chk_fail|__isoc99_sscanf)$'
if [ -f "$obj" ]; then
  extra=$(nm -u "$obj" | awk '{print $NF}' | sed 's/@.*//' | grep -v '^ch_' | grep -Ev "$allowed" || true)
  if [ -z "$extra" ]; then
    ok "the core calls only C library memory, string and number functions"
  else
    echo "# the core needs: $extra"
    no "the core calls only C library memory, string and number functions"
  fi
else
  no "the core calls only C library memory, string and number functions (no object)"
fi
# Outside >>os: no call to a kernel-facing function by its own name (code
# only: comments and strings are blanked first).
outside=$(python3 - <<'PY'
import re
src = open('chopin.h').read()
impl = src[src.index('#define CHOPIN_IMPLEMENTATION_DONE'):]
code = re.sub(r'/\*.*?\*/', lambda m: re.sub(r'[^\n]', ' ', m.group(0)), impl, flags=re.S)
code = re.sub(r'"(?:\\.|[^"\\\n])*"', '""', code)
calls = re.compile(r'(?<![A-Za-z0-9_.>])(read|write|send|recv|sendto|recvfrom|close|accept|accept4|socket|bind|listen|connect|shutdown|setsockopt|getsockopt|getsockname|fcntl|ioctl|epoll_[a-z_]+|kevent|kqueue|poll|select|eventfd|signalfd|timerfd_[a-z]+|clock_gettime|gettimeofday|time|nanosleep|usleep|sleep|pthread_[a-z_]+|sigprocmask|sigaction|signal|kill|fork|exec[a-z]*|open|openat|fstat|stat|lstat|mmap|munmap|sendfile|splice|getaddrinfo|sched_getaffinity|sysconf|getrlimit|setrlimit)\s*\(')
inside = False
for n, line in enumerate(code.split('\n')):
    raw = impl.split('\n')[n]
    if raw.startswith('/* >>os'): inside = True
    elif raw.startswith('/* >>structs'): inside = False
    if not inside and calls.search(line): print(raw.strip())
PY
)
if [ -z "$outside" ]; then
  ok "outside >>os nothing calls the kernel by name"
else
  echo "$outside" | sed 's/^/# /'
  no "outside >>os nothing calls the kernel by name"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
