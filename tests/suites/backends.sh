# Sourced by tests/run.sh (issue 8): every backend of the OS seam, and the
# embedding mode, against the same black-box suite; the seam contract per
# backend; the layering. See mk/backends.mk. Each black-box run prints the
# backend in the server's first line ("... 2 workers, kqueue)").
make -s build/bench-poll build/bench-poll-asan build/bench-kqueue build/bench-kqueue-asan build/embed-asan build/blackbox \
  build/emu_test build/seam-epoll build/seam-poll build/seam-kqueue build/seam-kqueue-pipe >/dev/null
suite "black-box, poll backend, release build" ./build/blackbox ./build/bench-poll
suite "black-box, poll backend, ASan+UBSan build" env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 ./build/blackbox ./build/bench-poll-asan
suite "black-box, kqueue backend over the epoll emulation, release build" ./build/blackbox ./build/bench-kqueue
suite "black-box, kqueue backend over the epoll emulation, ASan+UBSan build" env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 ./build/blackbox ./build/bench-kqueue-asan
suite "black-box, embedded in the caller's loop (ch_poll, 10 ms a call), ASan+UBSan build" env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 ./build/blackbox ./build/embed-asan
suite "OS seam: the kqueue emulation's own tests (tests only)" bash -c 'make -s build/emu_test && timeout 60 ./build/emu_test'
for b in epoll poll kqueue kqueue-pipe; do
  suite "OS seam contract: $b" bash -c "make -s build/seam-$b && timeout 60 ./build/seam-$b"
done
# (the layering, tests/layers.sh, compile-only: in tests/run.sh's background lanes)
