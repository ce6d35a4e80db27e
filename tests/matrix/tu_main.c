/* tu_main.c - one of the two translation units of the matrix's two-TU test
   (tests/matrix/matrix.sh): this one holds the implementation and main();
   tu_use.c only includes the header. Linked together they prove that the
   declarations can be seen by two files, that a second #include is
   harmless in both, and that the implementation is compiled exactly once
   (no duplicate symbols). Built as C and C++, and as C (this file) with a
   C++ tu_use.c, which proves the extern "C" block. */
#define CHOPIN_IMPLEMENTATION
#include "../../chopin.h"
#include "../../chopin.h" /* a second include adds nothing */

#ifdef __cplusplus
extern "C" int tu_use(void); /* as tu_use.c defines it, in either language */
#else
int tu_use(void);
#endif

int main(void)
{
    return tu_use();
}
