# Sourced by tests/run.sh: answering later (issue 10). The timer heap and the
# queue, the API in-process (tests/async_unit.c, ASan+UBSan), and the
# black-box suite against examples/async.c in the release and ASan+UBSan
# builds, and with the poll and kqueue backends (tests/async_blackbox.py).
make -s build/async build/async-asan build/async_unit build/async-poll build/async-kqueue >/dev/null
suite "async: timers, queue and the API in-process (ASan+UBSan)" timeout 120 ./build/async_unit
suite "async: black-box, examples/async.c, release build" timeout 300 python3 tests/async_blackbox.py ./build/async
suite "async: black-box, examples/async.c, ASan+UBSan build" \
  env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 timeout 300 python3 tests/async_blackbox.py ./build/async-asan
suite "async: black-box, examples/async.c, poll backend" timeout 300 python3 tests/async_blackbox.py ./build/async-poll
suite "async: black-box, examples/async.c, kqueue backend (emulation)" timeout 300 python3 tests/async_blackbox.py ./build/async-kqueue
