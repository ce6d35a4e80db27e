/* bench.c - the example app that `make run`, the black-box tests and the
   benchmarks talk to.

     GET  /plaintext   static FastRoute: "Hello, World!"
     GET  /json        dynamic FastRoute: {"message":"Hello, World!"},
                       serialized per request by the worker's JSON writer
     GET  /            a welcome text, through the router
     POST /echo        the request body back, with the request's Content-Type
     GET  /users/:id   {"id":"<id>"}, through the router with a parameter and
                       one middleware (Server-Timing), the routed case of the
                       benchmarks (built with -DBENCH_NO_TIMING: the same
                       route without the middleware, bench/cost.sh's
                       routed.bare case)
     GET  /health      "ok" (text/plain), through the router (ch_health):
                       the health check of a load balancer (deploy/haproxy.cfg,
                       deploy/nginx.conf and tests/ops/haproxy.sh); 503
                       "draining" once the server stops or hands over

   Environment: PORT (default 3000), HOST (default 0.0.0.0), CHOPIN_WORKERS,
   SERVER_MODE=performance|standard, REUSEPORT=true|false, PID_FILE; socket
   activation (LISTEN_FDS, LISTEN_PID); SIGUSR2 restarts it without
   dropping a request (the deploy/ files and tests/ops use all of these). */
#define CHOPIN_IMPLEMENTATION
#include "../chopin.h"

#include <stdio.h>
#include <string.h>

static void json_hello(ch_json *j, void *user)
{
    (void)user;
    ch_json_object_begin(j);
    ch_json_key(j, "message");
    ch_json_str(j, "Hello, World!");
    ch_json_object_end(j);
}

static void welcome(ch_req *req, ch_res *res)
{
    (void)req;
    ch_res_text(res, 200, "Welcome to chopin.h. Try /plaintext, /json, /users/42 or POST /echo.\n");
}

static void echo(ch_req *req, ch_res *res)
{
    ch_str type = ch_req_header(req, "Content-Type");
    if (type.ptr) ch_res_headern(res, "Content-Type", 12, type.ptr, type.len);
    /* the body points into the read buffer, valid until we return */
    ch_res_send(res, 200, NULL, req->body, req->body_len);
}

static void user_by_id(ch_req *req, ch_res *res)
{
    ch_str id = ch_req_param(req, "id");
    ch_json *j = ch_res_json(res, 200);
    ch_json_object_begin(j);
    ch_json_key(j, "id");
    ch_json_strn(j, id.ptr, id.len);
    ch_json_object_end(j);
}

/* The routes, also used by tests/embed/server.c (the same app run from the
   caller's loop with ch_poll). */
static ch_app *bench_app(void)
{
    ch_group *users;
    ch_app *app = ch_app_new();
    if (!app) return NULL;
    ch_fast_text(app, "/plaintext", "Hello, World!");
    ch_fast_json_fn(app, "/json", json_hello, NULL);
    ch_get(app, "/", welcome, NULL);
    ch_health(app, "/health"); /* "ok"; 503 "draining" once it stops */
    ch_post(app, "/echo", echo, NULL);
    users = ch_group_new(app, "/users");
#ifndef BENCH_NO_TIMING
    ch_group_use(users, ch_mw_timing, NULL);
#endif
    ch_group_route(users, CH_GET, "/:id", user_by_id, NULL);
#ifdef BENCH_BATTERIES
    /* the cost of the batteries (bench/cost.sh, batteries.keepalive): the
       same routes behind CORS, request ids and a rate limit, with metrics */
    {
        ch_cors cors;
        ch_ratelimit rl;
        memset(&cors, 0, sizeof cors);
        cors.origins = "https://a.example, https://b.example";
        memset(&rl, 0, sizeof rl);
        rl.rate = 10000000; /* counted, never reached by a cost or CPU run (bench/cpu.sh) */
        rl.burst = 10000000;
        ch_use_cors(app, &cors);
        ch_use(app, ch_mw_request_id, NULL);
        ch_use_ratelimit(app, NULL, &rl);
        ch_metrics_route(app, "/metrics");
    }
#endif
    return app;
}

static void print_listening(const ch_config *used)
{
    printf("chopin listening on http://%s%s%s:%d (mode %s, %d worker%s, %s)\n", strchr(used->host, ':') ? "[" : "",
           used->host, strchr(used->host, ':') ? "]" : "", used->port,
           used->mode == CH_MODE_STANDARD ? "standard" : "performance", used->workers, used->workers == 1 ? "" : "s",
           ch_backend());
    fflush(stdout);
}

#ifndef BENCH_NO_MAIN
int main(int argc, char **argv)
{
    ch_config cfg;
    ch_app *app = bench_app();
    if (!app) {
        fprintf(stderr, "chopin: out of memory\n");
        return 1;
    }
    (void)argc;
    memset(&cfg, 0, sizeof cfg);
    cfg.argv = argv; /* for a restart (SIGUSR2) where /proc/self/cmdline is missing */
    if (ch_listen(app, &cfg) != 0) {
        fprintf(stderr, "chopin: %s\n", ch_error(app));
        ch_app_free(app);
        return 1;
    }
    print_listening(ch_config_used(app));
    if (ch_serve(app) != 0) {
        fprintf(stderr, "chopin: %s\n", ch_error(app));
        ch_app_free(app);
        return 1;
    }
    ch_app_free(app);
    return 0;
}
#endif
