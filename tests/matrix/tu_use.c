/* tu_use.c - the translation unit of the two-TU test (see tu_main.c) that
   includes chopin.h without CHOPIN_IMPLEMENTATION, twice, and calls the API
   the implementation in tu_main.c defines. Returns 0 when every call gives
   the expected answer. */
#include "../../chopin.h"
#include "../../chopin.h"

#include <string.h>

#ifdef __cplusplus
extern "C" int tu_use(void);
#else
int tu_use(void);
#endif

static void hello(ch_req *req, ch_res *res)
{
    (void)req;
    ch_res_text(res, 200, "hello\n");
}

int tu_use(void)
{
    char out[16];
    ch_app *app = ch_app_new();
    if (!app) return 1;
    if (ch_get(app, "/hello/:name", hello, NULL) != 0) return 2;
    if (ch_fast_text(app, "/plaintext", "Hello, World!") != 0) return 3;
    if (ch_get(app, "/hello/:name", hello, NULL) == 0) return 4; /* a duplicate is refused */
    ch_app_free(app);
    if (ch_url_decode("a%20b", 5, out, sizeof out, 0) != 3 || strcmp(out, "a b") != 0) return 5;
    return 0;
}
