# Sourced by tests/run.sh: the deterministic cost budget (bench/cost.sh).
# Instructions (callgrind) and syscalls (strace) per request against
# bench/budget.txt; a figure more than 10% over its budget fails.
suite "cost budget (callgrind, strace)" bash bench/cost.sh --check
# The raw system calls compile for arm64 too (make cross-arm64, mk/cost.mk,
# tests/cross_arm64.sh; skipped, saying so, without an arm64 compiler): a
# compile-only check, run in tests/run.sh's background lanes.
