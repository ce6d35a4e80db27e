/* check.h - the small harness every C unit-test program here shares:
   CHECK(cond) records a failed condition in the running case, run(name, fn)
   runs one case and prints "ok - name" or "not ok - name", and the program
   ends with printf("%d passed, %d failed\n", g_passed, g_failed).
   Included once, after chopin.h, by a test program (static state: one per
   program). */
#ifndef CHOPIN_TESTS_CHECK_H
#define CHOPIN_TESTS_CHECK_H
#include <stdio.h>

static int g_passed, g_failed, g_case_failed;
static const char *g_case;

#define CHECK(cond) check((cond), #cond, __FILE__, __LINE__)
/* a loop over many inputs may fail many times: the first few are enough */
static void check(int ok, const char *what, const char *file, int line)
{
    if (!ok && g_case_failed++ < 20) printf("  FAIL %s: %s (%s:%d)\n", g_case, what, file, line);
}

static void run(const char *name, void (*fn)(void))
{
    g_case = name;
    g_case_failed = 0;
    fn();
    if (g_case_failed) {
        g_failed++;
        printf("not ok - %s\n", name);
    } else {
        g_passed++;
        printf("ok - %s\n", name);
    }
    fflush(stdout);
}
#endif
