# Operations (issue 12): scale-out behind HAProxy, socket activation, hand-over.
#   make ops-test     the suite `make test` runs (tests/suites/ops.sh): two
#                     build/bench instances behind HAProxy (deploy/haproxy.cfg),
#                     one killed and restarted under load (tests/ops/haproxy.sh;
#                     installs haproxy as root, else skips)
#   make ops-activation  socket activation through build/launcher
#   make ops-restart     five SIGUSR2 hand-overs under load
# The last two wait for chopin.h's side of issue 12 and fail until it lands.
.PHONY: ops-test ops-activation ops-restart

build/launcher: tests/ops/launcher.c | build
	$(CC) $(WARN) -O2 $< -o $@

build/load: tests/ops/load.c | build
	$(CC) $(WARN) -O2 $< -o $@

ops-test: build/bench build/load
	bash tests/ops/haproxy.sh

ops-activation: build/bench build/launcher build/load
	bash tests/ops/activation.sh

ops-restart: build/bench build/load
	bash tests/ops/restart.sh
