/* impl.c - chopin.h's implementation alone, the translation unit that the
   matrix's strict build (-Wconversion -Wshadow) and `make lint` (cppcheck,
   clang-tidy) look at. */
#define CHOPIN_IMPLEMENTATION
#include "../../chopin.h"
