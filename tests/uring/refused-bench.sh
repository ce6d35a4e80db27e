#!/bin/sh
# examples/bench.c built with CHOPIN_USE_IO_URING, run where io_uring_setup
# fails with EPERM (a seccomp filter): it must serve with epoll.
dir=$(dirname "$0")/../../build
exec "$dir/no-uring" "$dir/bench-uring" "$@"
