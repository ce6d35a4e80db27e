# Sourced by tests/run.sh: operations (issue 12).
# - two build/bench instances behind HAProxy (deploy/haproxy.cfg rewritten for
#   loopback ports), load through it while one instance is killed (SIGKILL)
#   and restarted and the other stopped (SIGTERM) and restarted: the failed
#   requests stay within the requests in flight on the killed instance, and
#   HAProxy takes each out and back within 5 s (about 15 s; skipped with a
#   reason when haproxy is missing and cannot be installed).
# tests/ops/activation.sh and tests/ops/restart.sh (make ops-activation,
# make ops-restart) join this suite once chopin.h does socket activation and
# the SIGUSR2 hand-over.
suite "ops: scale-out behind HAProxy, an instance killed and restarted" \
  bash -c 'make -s build/bench build/load && bash tests/ops/haproxy.sh'
