# Sourced by tests/run.sh: portability and static analysis (issue #8).
# - the compile matrix: gcc, clang, g++, clang++ over C99-C17 and C++11-C++20,
#   -m32, musl static and tcc (the last three also run), the header alone
#   with -Wconversion -Wshadow; a compiler that is missing is skipped;
# - cppcheck and clang-tidy on the implementation (.clang-tidy,
#   tests/matrix/cppcheck.supp).
# Both are compile-only: tests/run.sh runs them in its background lanes
# (under nice, beside the suites that mostly wait), so nothing is left here.
