/* async_overhead.c - examples/async.c plus GET /now?ms=N, the synchronous
   twin of /delay?ms=N (the same query parsing and the same printf body,
   answered at once), so that bench/async.sh can measure what deferring a
   response costs: /delay?ms=0 against /now?ms=0. Not an example. */
#define ASYNC_NO_MAIN
#include "../examples/async.c"

static void now(ch_req *req, ch_res *res)
{
    long ms = query_num(req, "ms", 0, 10000, -1);
    if (ms < 0) {
        ch_res_text(res, 400, "ms must be a number from 0 to 10000\n");
        return;
    }
    ch_res_printf(res, 200, "text/plain", "waited %ld ms", ms);
}

int main(void)
{
    ch_app *app = async_app();
    if (!app) return 1;
    ch_get(app, "/now", now, NULL);
    if (ch_run(app, NULL) < 0) fprintf(stderr, "async_overhead: %s\n", ch_error(app));
    ch_app_free(app);
    return 0;
}
