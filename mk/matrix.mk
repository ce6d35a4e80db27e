# Portability and static analysis (issue #8).
#   make matrix   every example and a two-translation-unit program built
#                 with -Werror by gcc and clang (C99, C11, C17), g++ and
#                 clang++ (C++11, C++17, C++20), gcc and clang -m32, musl-gcc
#                 -static and tcc (these three also started and asked for a
#                 page), and the implementation alone with -Wconversion
#                 -Wshadow once per backend macro (tests/matrix/matrix.sh);
#                 a compiler that is not installed is skipped, not failed;
#                 C11, C17, C++17 and C++20 get the front end's checks only
#                 (-fsyntax-only; `make matrix-full` builds them whole)
#   make lint     cppcheck and clang-tidy on the implementation, once per
#                 backend macro, with the committed configuration
#                 (.clang-tidy, tests/matrix/cppcheck.supp; tests/matrix/lint.sh)
# Both end with "N passed, N failed, N skipped"; `make test` runs both.
# MATRIX_BACKENDS lists backend macros ("default" is the platform's own),
# e.g. make matrix lint MATRIX_BACKENDS="default CHOPIN_USE_POLL".
# MATRIX_CC, MATRIX_CXX, MATRIX_C_STDS, MATRIX_CXX_STDS, MATRIX_OPT,
# MATRIX_OPT_CLANG and MATRIX_JOBS narrow or change the matrix (see
# tests/matrix/matrix.sh); CPPCHECK and CLANG_TIDY name the tools.
MATRIX_BACKENDS ?= default CHOPIN_USE_POLL CHOPIN_USE_KQUEUE
CPPCHECK        ?= cppcheck
CLANG_TIDY      ?= clang-tidy
MATRIX_VARS      = MATRIX_BACKENDS MATRIX_CC MATRIX_CXX MATRIX_C_STDS MATRIX_CXX_STDS MATRIX_SYNTAX_STDS \
                   MATRIX_OPT MATRIX_OPT_CLANG MATRIX_JOBS MATRIX_VERBOSE CPPCHECK CLANG_TIDY
export $(foreach v,$(MATRIX_VARS),$(if $(filter undefined,$(origin $(v))),,$(v)))

.PHONY: matrix matrix-full lint

matrix:
	@bash tests/matrix/matrix.sh

# every standard built whole and optimized (make matrix checks C11, C17,
# C++17 and C++20 with the front end only, to keep make test short)
matrix-full:
	@MATRIX_SYNTAX_STDS= bash tests/matrix/matrix.sh

lint:
	@bash tests/matrix/lint.sh
