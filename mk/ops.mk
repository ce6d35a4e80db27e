# Operations (issue 12): scale-out behind HAProxy, socket activation, hand-over.
# `make test` runs all of them (tests/suites/ops.sh); one by one:
#   make ops-test        two build/bench instances behind HAProxy
#                        (deploy/haproxy.cfg), one killed and restarted under
#                        load (tests/ops/haproxy.sh; installs haproxy as root,
#                        else skips)
#   make ops-activation  socket activation through build/launcher
#   make ops-restart     five SIGUSR2 hand-overs under load, both modes
#   make ops-health      the health route while draining, ch_restart
#   make ops-unit        unit tests of the operations parts (ASan+UBSan)
.PHONY: ops-test ops-activation ops-restart ops-health ops-unit

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

build/selfrestart: tests/ops/selfrestart.c examples/bench.c chopin.h | build
	$(CC) $(WARN) $(RELEASE) $< -o $@ $(LIBS)

build/selfrestart-asan: tests/ops/selfrestart.c examples/bench.c chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)

build/ops_unit: tests/ops/unit.c tests/check.h chopin.h | build
	$(CC) $(WARN) $(DEBUG) $(SAN) $< -o $@ $(LIBS)

ops-health: build/selfrestart
	bash tests/ops/health.sh

ops-unit: build/ops_unit
	./build/ops_unit
