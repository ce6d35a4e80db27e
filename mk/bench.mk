# Benchmarks and the cost budget (issue #4).
#   make bench        throughput beside nginx, h2o and Node (bench/run.sh;
#                     writes bench/results/latest.md and latest.svg), then
#                     static files beside nginx (make bench-files, issue 11)
#                     and io_uring against epoll (make bench-uring, issue 14)
#   make cost         instructions (callgrind) and syscalls (strace) per
#                     request, checked against bench/budget.txt
#   make cost-update  measures afresh and rewrites bench/budget.txt
# build/bench-cost is the example app without -march=native (valgrind must
# decode every instruction) and with -g (callgrind_annotate shows the lines).
COST_FLAGS = -O3 -DNDEBUG -g

.PHONY: bench cost cost-update

build/client: bench/client.c | build
	$(CC) $(WARN) -O2 $< -o $@

build/bench-cost: examples/bench.c chopin.h | build
	$(CC) $(WARN) $(COST_FLAGS) $< -o $@ $(LIBS)

bench: build/bench build/client
	bash bench/run.sh
	$(MAKE) --no-print-directory bench-files bench-uring

# The cost case routed.bare.keepalive: /users/:id without its Server-Timing
# middleware (issue 14's "routed without middleware" target).
build/bench-cost-bare: examples/bench.c chopin.h | build
	$(CC) $(WARN) $(COST_FLAGS) -DBENCH_NO_TIMING $< -o $@ $(LIBS)

cost: build/bench-cost build/client
	bash bench/cost.sh --check

cost-update: build/bench-cost build/client
	bash bench/cost.sh --update
