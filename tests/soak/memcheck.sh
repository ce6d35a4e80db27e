#!/usr/bin/env bash
# make memcheck: the black-box conformance suite against the example app
# built -O1 -g (build/bench-memcheck) and run under valgrind memcheck.
# Passes when every case passes, valgrind reports no error, and no block is
# definitely, indirectly or possibly lost at exit (the suite ends with
# SIGTERM, so the server exits through ch_serve and ch_app_free).
# BLACKBOX_TIME_SCALE (default 4) stretches the harness's timeouts.
set -u
cd "$(dirname "$0")/../.."
if ! command -v valgrind >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq valgrind >/dev/null
  fi
  command -v valgrind >/dev/null || { echo "memcheck: valgrind is not installed"; echo "0 passed, 1 failed"; exit 1; }
fi
dir=build/memcheck
rm -rf "$dir"
mkdir -p "$dir"
cat >"$dir/bench-under-valgrind" <<WRAP
#!/bin/sh
exec valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \\
  --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \\
  --log-file=$PWD/$dir/valgrind.%p.log $PWD/build/bench-memcheck "\$@"
WRAP
chmod +x "$dir/bench-under-valgrind"
BLACKBOX_TIME_SCALE=${BLACKBOX_TIME_SCALE:-4} ./build/blackbox "$dir/bench-under-valgrind" | tee "$dir/blackbox.log"
rc=${PIPESTATUS[0]}
for log in "$dir"/valgrind.*.log; do
  [ -e "$log" ] || continue
  echo "== $log"
  grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable|All heap blocks were freed|total heap usage' "$log" | sed 's/^==[0-9]*== */  /'
  if ! grep -q 'ERROR SUMMARY: 0 errors' "$log"; then
    echo "memcheck: valgrind found errors (see $log)"
    rc=1
  fi
done
if [ "$rc" = 0 ]; then echo "memcheck: no errors, no leaks"; else echo "memcheck: FAILED"; fi
exit "$rc"
