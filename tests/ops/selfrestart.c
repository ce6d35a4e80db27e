/* selfrestart.c - examples/bench.c's app plus POST /restart, whose handler
   calls ch_restart(app): the hand-over asked for by the program instead of
   SIGUSR2 (tests/ops/health.sh). A test app only: a real one would guard
   such a route. Build: make build/selfrestart. */
#define BENCH_NO_MAIN
#include "../../examples/bench.c"

static void restart(ch_req *req, ch_res *res)
{
    ch_app *app = (ch_app *)req->user;
    if (ch_restart(app) == 0)
        ch_res_text(res, 202, "restarting\n");
    else
        ch_res_printf(res, 500, "text/plain", "%s\n", ch_error(app));
}

int main(int argc, char **argv)
{
    ch_config cfg;
    ch_app *app = bench_app();
    int rc;
    (void)argc;
    if (!app) return 1;
    ch_post(app, "/restart", restart, app);
    memset(&cfg, 0, sizeof cfg);
    cfg.argv = argv;
    cfg.no_signals = 0;
    if (ch_listen(app, &cfg) != 0) {
        fprintf(stderr, "selfrestart: %s\n", ch_error(app));
        ch_app_free(app);
        return 1;
    }
    print_listening(ch_config_used(app));
    rc = ch_serve(app);
    if (rc != 0) fprintf(stderr, "selfrestart: %s\n", ch_error(app));
    ch_app_free(app);
    return rc == 0 ? 0 : 1;
}
