#!/usr/bin/env bash
# The compile matrix (issue #8), run by `make matrix`. Every examples/*.c
# and the two-TU test (tu_main.c + tu_use.c) are built with -Werror under
# each compiler and standard; the -m32, musl-static and tcc builds are also
# started and asked for one page (smoke.sh); chopin.h's implementation alone
# (impl.c) gets the strict build with -Wconversion -Wshadow, once per
# backend macro. A compiler that is not installed is skipped with the
# reason, never failed. The last line is "N passed, N failed, N skipped".
#
# Environment (mk/matrix.mk passes the make variables of the same names):
#   MATRIX_CC        C compilers            (gcc clang)
#   MATRIX_CXX       C++ compilers          (g++ clang++)
#   MATRIX_C_STDS    C standards            (c99 c11 c17)
#   MATRIX_CXX_STDS  C++ standards          (c++11 c++17 c++20)
#   MATRIX_SYNTAX_STDS standards whose examples are only checked by the
#                    front end (-fsyntax-only: every warning that does not
#                    come from the optimizer), the two-TU program still built
#                    and run; the first standard of each list is always built
#                    whole, with the optimizer's warnings (c11 c17 c++17
#                    c++20; empty: build every standard whole, as `make
#                    matrix-full` does)
#   MATRIX_BACKENDS  backend macros for the strict build and the smoke run,
#                    "default" being the platform's own (default)
#   MATRIX_OPT       optimization for gcc: its flow-based warnings
#                    (-Wmaybe-uninitialized, -Wstringop-*) need one (-O2)
#   MATRIX_OPT_CLANG the same for clang, whose warnings come from the front
#                    end whatever the level: -O0 saves nine tenths (-O0)
#   MATRIX_JOBS      builds at a time       (the number of CPUs)
#   MATRIX_VERBOSE=1 print every build's output, not only a failure's
set -u
cd "$(dirname "$0")/../.."
CCS=${MATRIX_CC-gcc clang}
CXXS=${MATRIX_CXX-g++ clang++}
C_STDS=${MATRIX_C_STDS-c99 c11 c17}
CXX_STDS=${MATRIX_CXX_STDS-c++11 c++17 c++20}
BACKENDS=${MATRIX_BACKENDS:-default}
SYNTAX_STDS=${MATRIX_SYNTAX_STDS-c11 c17 c++17 c++20}
OPT=${MATRIX_OPT:--O2}
OPT_CLANG=${MATRIX_OPT_CLANG:--O0}
JOBS=${MATRIX_JOBS:-$(nproc 2>/dev/null || echo 2)}
WARN="-Wall -Wextra -Wpedantic -Werror"
STRICT="$WARN -Wconversion -Wshadow"
LIBS=-pthread
OUT=build/matrix
EXAMPLES=$(ls examples/*.c)
TU=tests/matrix

rm -rf "$OUT"
mkdir -p "$OUT/log"

names=()
cmds=()
skips=()
# check NAME COMMAND: a shell command that must exit 0 (and, with -Werror,
# print no warning).
check() { names+=("$1"); cmds+=("$2"); }
skip() { skips+=("$1: $2"); }
have() { command -v "$1" >/dev/null 2>&1; }
# the C compiler that goes with a C++ one, for the mixed two-TU test
c_of() { case $1 in g++*) echo "gcc${1#g++}" ;; clang++*) echo "clang${1#clang++}" ;; *) echo cc ;; esac; }
# can COMPILER FLAGS... link a program?
links() {
  local cc=$1
  shift
  echo 'int main(void) { return 0; }' | "$cc" "$@" -x c - -o "$OUT/probe.$$" >/dev/null 2>&1
  local rc=$?
  rm -f "$OUT/probe.$$"
  return $rc
}
# kqueue builds on Linux against the emulation's header (tests/kqueue)
bflag() { case $1 in default) ;; CHOPIN_USE_KQUEUE) echo "-D$1 -Itests/kqueue" ;; *) echo "-D$1" ;; esac; }
opt() { case $1 in clang*) echo "$OPT_CLANG" ;; tcc*) ;; *) echo "$OPT" ;; esac; }

# build_all DIR COMPILER FLAGS: the command that builds every example and
# the two-TU program into DIR, then runs the two-TU program. The examples
# get the compiler's optimization level (opt), the two-TU program -O0: it
# is there for linkage, and the same code was just compiled optimized.
build_all() {
  local dir=$1 cc=$2 flags=$3 f s
  s="mkdir -p $dir"
  for f in $EXAMPLES; do
    s+=" && $cc $flags $(opt "$cc") $f -o $dir/$(basename "$f" .c) $LIBS"
  done
  s+=" && $cc $flags -O0 $TU/tu_main.c $TU/tu_use.c -o $dir/two-tu $LIBS && ./$dir/two-tu"
  echo "$s"
}

# syntax_all DIR COMPILER FLAGS: the same with the examples checked by the
# front end only (a standard whose optimized build adds nothing that the
# first standard's did not check)
syntax_all() {
  local dir=$1 cc=$2 flags=$3 f s
  s="mkdir -p $dir"
  for f in $EXAMPLES; do
    s+=" && $cc $flags -fsyntax-only $f"
  done
  s+=" && $cc $flags -O0 $TU/tu_main.c $TU/tu_use.c -o $dir/two-tu $LIBS && ./$dir/two-tu"
  echo "$s"
}

# syntax_only STD: is STD in MATRIX_SYNTAX_STDS (and not its list's first)?
syntax_only() {
  local first_c=${C_STDS%% *} first_cxx=${CXX_STDS%% *}
  [ "$1" = "$first_c" ] || [ "$1" = "$first_cxx" ] && return 1
  case " $SYNTAX_STDS " in *" $1 "*) return 0 ;; esac
  return 1
}

# 1. C compilers x C standards
for cc in $CCS; do
  if ! have "$cc"; then
    skip "$cc (every C standard)" "$cc is not installed"
    continue
  fi
  for std in $C_STDS; do
    if syntax_only "$std"; then
      check "$cc -std=$std: examples (front end), two TUs" "$(syntax_all "$OUT/$cc-$std" "$cc" "-std=$std $WARN")"
    else
      check "$cc -std=$std: examples, two TUs" "$(build_all "$OUT/$cc-$std" "$cc" "-std=$std $WARN")"
    fi
  done
done

# 2. C++ compilers x C++ standards (the .c files compiled as C++), and a
# C++ file using the header linked with the C implementation
for cxx in $CXXS; do
  if ! have "$cxx"; then
    skip "$cxx (every C++ standard)" "$cxx is not installed"
    continue
  fi
  for std in $CXX_STDS; do
    if syntax_only "$std"; then
      check "$cxx -std=$std: examples (front end), two TUs" "$(syntax_all "$OUT/$cxx-$std" "$cxx -x c++" "-std=$std $WARN")"
    else
      check "$cxx -std=$std: examples, two TUs" "$(build_all "$OUT/$cxx-$std" "$cxx -x c++" "-std=$std $WARN")"
    fi
  done
  cc=$(c_of "$cxx")
  if have "$cc"; then
    d=$OUT/$cxx-mixed
    check "$cxx: a C++ TU with the header + the C implementation ($cc)" \
      "mkdir -p $d && $cc -std=c99 $WARN -O0 -c $TU/tu_main.c -o $d/tu_main.o &&
       $cxx -x c++ -std=c++11 $WARN -O0 -c $TU/tu_use.c -o $d/tu_use.o &&
       $cxx $d/tu_main.o $d/tu_use.o -o $d/two-tu $LIBS && ./$d/two-tu"
  else
    skip "$cxx: C++ TU + C implementation" "$cc is not installed"
  fi
done

# 3. -m32: built, the two TUs run, bench answers one request
for cc in gcc clang; do
  if ! have "$cc"; then
    skip "$cc -m32" "$cc is not installed"
  elif ! links "$cc" -m32; then
    skip "$cc -m32" "$cc -m32 cannot link a program (install gcc-multilib)"
  else
    d=$OUT/$cc-m32
    check "$cc -m32 -std=c99: examples, two TUs, smoke run" \
      "$(build_all "$d" "$cc" "-m32 -std=c99 $WARN") && bash $TU/smoke.sh ./$d/bench"
  fi
done

# 4. musl, statically linked
if ! have musl-gcc; then
  skip "musl-gcc -static" "musl-gcc is not installed (install musl-tools)"
elif ! links musl-gcc -static; then
  skip "musl-gcc -static" "musl-gcc cannot link a static program"
else
  d=$OUT/musl-static
  check "musl-gcc -static -std=c99: examples, two TUs, smoke run" \
    "$(build_all "$d" musl-gcc "-static -std=c99 $WARN") && bash $TU/smoke.sh ./$d/bench"
fi

# 5. tcc (no optimizer; -Wall -Werror are its whole warning set)
if ! have tcc; then
  skip "tcc" "tcc is not installed"
else
  d=$OUT/tcc
  check "tcc: examples, two TUs, smoke run" \
    "$(build_all "$d" tcc "-std=c99 -Wall -Werror") && bash $TU/smoke.sh ./$d/bench"
fi

# 6. the header alone, strict: -Wconversion -Wshadow, per backend; a backend
# other than the default also gets a native smoke run
for b in $BACKENDS; do
  bf=$(bflag "$b")
  # every compiler on the default backend; the others on gcc, clang and g++
  # (the -m32 and clang++ builds of a backend block add no warning of their own)
  ccs=(gcc clang "gcc -m32" g++ clang++)
  [ "$b" != default ] && ccs=(gcc clang g++)
  for cc in "${ccs[@]}"; do
    set -- $cc
    if ! have "$1"; then
      skip "strict $cc [$b]" "$1 is not installed"
      continue
    fi
    if [ "${2:-}" = -m32 ] && ! links "$1" -m32; then
      skip "strict $cc [$b]" "$1 -m32 cannot link a program (install gcc-multilib)"
      continue
    fi
    case $1 in *++) x="-x c++ -std=c++17" ;; *) x="-std=c99" ;; esac
    check "strict $cc -Wconversion -Wshadow [$b]" "$cc $x $STRICT $(opt "$1") $bf -c $TU/impl.c -o /dev/null"
  done
  # (kqueue runs in the backends suite, linked with the emulation)
  if [ "$b" != default ] && [ "$b" != CHOPIN_USE_KQUEUE ]; then
    d=$OUT/backend-$b
    check "gcc $bf: examples, two TUs, smoke run" \
      "$(build_all "$d" gcc "-std=c99 $WARN $bf") && bash $TU/smoke.sh ./$d/bench"
  fi
done

# run the checks, JOBS at a time; report them in order
start=$(date +%s)
for i in "${!cmds[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  ( timeout 300 bash -c "${cmds[$i]}" >"$OUT/log/$i" 2>&1
    echo $? >"$OUT/log/$i.rc" ) &
done
wait
passed=0
failed=0
for i in "${!cmds[@]}"; do
  rc=$(cat "$OUT/log/$i.rc" 2>/dev/null || echo 1)
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "PASS  ${names[$i]}"
    [ "${MATRIX_VERBOSE:-0}" = 1 ] && sed 's/^/      /' "$OUT/log/$i"
  else
    failed=$((failed + 1))
    echo "FAIL  ${names[$i]} (exit $rc)"
    echo "      \$ ${cmds[$i]}" | tr -s ' \n' ' ' | cut -c1-400
    echo
    sed 's/^/      /' "$OUT/log/$i" | head -n 200
  fi
done
for s in "${skips[@]+"${skips[@]}"}"; do echo "SKIP  $s"; done
echo "matrix: $((passed + failed)) builds in $(($(date +%s) - start)) s, $JOBS at a time"
echo "$passed passed, $failed failed, ${#skips[@]} skipped"
[ "$failed" -eq 0 ]
