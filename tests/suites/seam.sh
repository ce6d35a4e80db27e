# Sourced by tests/run.sh: the OS seam's kqueue and poll backends (mk/kqueue.mk).
# - the kqueue emulation over epoll (tests only) under its own unit tests;
# - the seam contract (tests/kqueue/seam_test.c) for the poll backend, the
#   kqueue backend over the emulation, and the kqueue backend with the
#   self-pipe waker used where EVFILT_USER is missing; ASan+UBSan builds;
# - both blocks warning-free as C99 (gcc, clang) and C++.
suite "OS seam: warnings (kqueue and poll blocks, C99 and C++)" \
  bash -c 'if make -s seam-warnings; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi'
suite "OS seam: kqueue emulation over epoll (tests only)" \
  bash -c 'make -s build/emu_test && timeout 60 ./build/emu_test'
suite "OS seam: poll backend" \
  bash -c 'make -s build/seam-poll && timeout 60 ./build/seam-poll'
suite "OS seam: kqueue backend over the emulation" \
  bash -c 'make -s build/seam-kqueue && timeout 60 ./build/seam-kqueue'
suite "OS seam: kqueue backend, self-pipe waker (no EVFILT_USER)" \
  bash -c 'make -s build/seam-kqueue-pipe && timeout 60 ./build/seam-kqueue-pipe'
