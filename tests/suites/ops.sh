# Sourced by tests/run.sh: operations (issue 12), about 90 s in all.
# - unit tests of the operations parts (LISTEN_FDS parsing, inherited socket
#   checks, listeners dealt to workers, PID file, the successor's environment),
#   ASan+UBSan;
# - socket activation through build/launcher (tests/ops/activation.sh), release
#   and ASan+UBSan builds: both modes, two sockets, six broken cases;
# - five SIGUSR2 hand-overs under load (tests/ops/restart.sh): both modes,
#   release, plus a new executable that fails to start; then the same started
#   by socket activation from build/launcher, ASan+UBSan build, performance
#   mode. Each prints its count of correct answers and failures;
# - the health route while draining and ch_restart from a handler
#   (tests/ops/health.sh), ASan+UBSan build;
# - two build/bench instances behind HAProxy (deploy/haproxy.cfg rewritten for
#   loopback ports), load through it while one instance is killed (SIGKILL)
#   and restarted and the other stopped (SIGTERM) and restarted: the failed
#   requests stay within the requests in flight on the killed instance, and
#   HAProxy takes each out and back within 5 s (about 15 s; skipped with a
#   reason when haproxy is missing and cannot be installed).
make -s build/bench build/bench-asan build/load build/launcher build/ops_unit build/selfrestart-asan >/dev/null
suite "ops: unit tests (LISTEN_FDS, inherited sockets, PID file, successor), ASan+UBSan" ./build/ops_unit
suite "ops: socket activation through a launcher, release build" bash tests/ops/activation.sh
suite "ops: socket activation through a launcher, ASan+UBSan build" \
  env OPS_SERVER=./build/bench-asan bash tests/ops/activation.sh
suite "ops: five SIGUSR2 hand-overs under load, both modes, release build" \
  env RESTART_FAIL_CASE=1 bash tests/ops/restart.sh
suite "ops: five hand-overs under load after socket activation by the launcher, ASan+UBSan build" \
  env RESTART_LAUNCHER=1 RESTART_MODES=performance OPS_SERVER=build/bench-asan bash tests/ops/restart.sh
suite "ops: health route while draining, ch_restart from a handler, ASan+UBSan build" \
  env OPS_SERVER=build/selfrestart-asan bash tests/ops/health.sh
suite "ops: scale-out behind HAProxy, an instance killed and restarted" \
  bash -c 'make -s build/bench build/load && bash tests/ops/haproxy.sh'
