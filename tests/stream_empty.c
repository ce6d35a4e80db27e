/* stream_empty.c - a stream route's request without a body, and a refused
   ch_req_body_stream, against a server run in this process (real sockets):
     - Content-Length: 0 and no body framing at all are an empty stream, as
       the chunked empty body is: the handler's ch_req_body_stream succeeds,
       on_data never runs, on_end runs once with status 0 and res as the
       handler and the middleware left it; the connection stays alive and
       pipelined requests behind it are answered in order; HEAD reaches a
       GET stream route the same way;
     - ch_req_body_stream refused (from a plain route, or without on_end)
       logs CH_LOGITEM_BODY_STREAM_REFUSED and answers 500 unless the
       handler answers itself: never an empty 200.
   Built for each backend (mk/stream_empty.mk); under ASan a state that
   on_end never freed is a leak. Last line: "N passed, N failed". */
#define CHOPIN_IMPLEMENTATION
#include "../chopin.h"
#include "testnet.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

static ch_app *g_app;
static pthread_t g_server;
static int g_port;
static int g_taken, g_ends, g_refused_logs;

static int get(int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void inc(int *p) { __atomic_add_fetch(p, 1, __ATOMIC_ACQ_REL); }

typedef struct tally {
    int calls;
    size_t bytes;
} tally;

static int on_data(ch_req *req, const char *data, size_t len, void *state)
{
    tally *t = (tally *)state;
    (void)req;
    (void)data;
    t->calls++;
    t->bytes += len;
    return 0;
}

static void on_end(ch_req *req, ch_res *res, int status, void *state)
{
    tally *t = (tally *)state;
    (void)req;
    inc(&g_ends);
    if (status == 0) /* copied: res outlives this call; a refusal keeps its preset answer */
        ch_res_printf(res, 200, "text/plain", "end:%d:%d:%lu", status, t->calls, (unsigned long)t->bytes);
    free(t);
}

static void stream_handler(ch_req *req, ch_res *res)
{
    tally *t = (tally *)calloc(1, sizeof *t);
    (void)req;
    ch_res_header(res, "X-Handler", "1"); /* kept for on_end when the body is empty */
    if (ch_req_body_stream(res, on_data, on_end, t) < 0) {
        free(t);
        return;
    }
    inc(&g_taken);
}

/* misuse: a plain route, the -1 ignored / answered; a stream route, no on_end */
static void plain_ignores(ch_req *req, ch_res *res)
{
    (void)req;
    ch_req_body_stream(res, on_data, on_end, NULL);
}

static void plain_answers(ch_req *req, ch_res *res)
{
    (void)req;
    if (ch_req_body_stream(res, on_data, on_end, NULL) < 0) ch_res_text(res, 400, "own answer");
}

static void no_end(ch_req *req, ch_res *res)
{
    (void)req;
    ch_req_body_stream(res, on_data, NULL, NULL);
}

static int mw(ch_req *req, ch_res *res, void *user)
{
    (void)req;
    (void)user;
    ch_res_header(res, "X-Mw", "1");
    return CH_NEXT;
}

static void log_fn(ch_log_level level, ch_log_item item, const char *message, void *user)
{
    (void)level;
    (void)message;
    (void)user;
    if (item == CH_LOGITEM_BODY_STREAM_REFUSED) inc(&g_refused_logs);
}

static void *serve(void *arg)
{
    (void)arg;
    ch_serve(g_app);
    return NULL;
}

static int start_server(void)
{
    ch_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.host = "127.0.0.1";
    cfg.port = CH_PORT_ANY;
    cfg.workers = 1;
    cfg.no_signals = 1;
    cfg.ignore_env = 1;
    cfg.shutdown_timeout = 1;
    cfg.log = log_fn;
    cfg.log_level = CH_LOG_ERROR;
    g_app = ch_app_new();
    ch_use(g_app, mw, NULL);
    ch_route_stream(g_app, CH_POST, "/s/:name", stream_handler, NULL, 1024);
    ch_route_stream(g_app, CH_GET, "/g", stream_handler, NULL, 0);
    ch_route_stream(g_app, CH_POST, "/no-end", no_end, NULL, 0);
    ch_route(g_app, CH_POST, "/plain-ignores", plain_ignores, NULL);
    ch_route(g_app, CH_POST, "/plain-answers", plain_answers, NULL);
    if (ch_listen(g_app, &cfg) < 0) return -1;
    g_port = ch_config_used(g_app)->port;
    pthread_create(&g_server, NULL, serve, NULL);
    return 0;
}

static void stop_server(void)
{
    ch_stop(g_app);
    pthread_join(g_server, NULL);
    ch_app_free(g_app);
    g_app = NULL;
}

static void send_str(int fd, const char *s)
{
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t r = send(fd, s + off, n - off, MSG_NOSIGNAL);
        if (r <= 0) return;
        off += (size_t)r;
    }
}

/* Reads until `count` answers ended in `until` came, the peer closes, or ms pass. */
static size_t recv_count(int fd, char *buf, size_t cap, const char *until, int count, int ms)
{
    size_t len = 0;
    long long end = tn_now_ms() + ms;
    buf[0] = 0;
    for (;;) {
        struct pollfd p;
        long long left = end - tn_now_ms();
        const char *at = buf;
        int seen = 0;
        ssize_t r;
        while ((at = strstr(at, until)) != NULL) {
            seen++;
            at += strlen(until);
        }
        if (seen >= count || len + 1 >= cap || left <= 0) break;
        p.fd = fd;
        p.events = POLLIN;
        if (poll(&p, 1, (int)left) <= 0) break;
        r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r <= 0) break;
        len += (size_t)r;
        buf[len] = 0;
    }
    return len;
}

/* One request on a new connection; the answer in buf. */
static void ask(const char *req, char *buf, size_t cap, const char *until)
{
    int fd = tn_connect(g_port);
    CHECK(fd >= 0);
    if (fd < 0) {
        buf[0] = 0;
        return;
    }
    send_str(fd, req);
    recv_count(fd, buf, cap, until, 1, 3000);
    close(fd);
}

static void test_empty_bodies(void)
{
    char buf[4096];
    int ends = get(&g_ends);
    ask("POST /s/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", buf, sizeof buf, "end:");
    CHECK(strncmp(buf, "HTTP/1.1 200", 12) == 0);
    CHECK(strstr(buf, "\r\n\r\nend:0:0:0") != NULL); /* on_end ran, status 0, no on_data */
    CHECK(strstr(buf, "X-Mw: 1\r\n") != NULL);        /* the middleware's line stays */
    CHECK(strstr(buf, "X-Handler: 1\r\n") != NULL);   /* and the handler's */
    ask("POST /s/a HTTP/1.1\r\nHost: x\r\n\r\n", buf, sizeof buf, "end:");
    CHECK(strstr(buf, "HTTP/1.1 200") == buf && strstr(buf, "\r\n\r\nend:0:0:0") != NULL);
    ask("POST /s/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", buf, sizeof buf, "end:");
    CHECK(strstr(buf, "HTTP/1.1 200") == buf && strstr(buf, "\r\n\r\nend:0:0:0") != NULL);
    CHECK(strstr(buf, "X-Mw: 1\r\n") != NULL && strstr(buf, "X-Handler: 1\r\n") != NULL); /* a streamed body too */
    ask("POST /s/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", buf, sizeof buf, "end:");
    CHECK(strstr(buf, "\r\n\r\nend:0:1:5") != NULL);
    CHECK(strstr(buf, "X-Mw: 1\r\n") != NULL && strstr(buf, "X-Handler: 1\r\n") != NULL);
    /* over the route's limit (1024): on_end's res is the 413, the middleware's line in it */
    ask("POST /s/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n", buf, sizeof buf, "\r\n\r\n");
    CHECK(strncmp(buf, "HTTP/1.1 413", 12) == 0 && strstr(buf, "X-Mw: 1\r\n") != NULL);
    CHECK(get(&g_ends) == ends + 5);
    CHECK(get(&g_taken) == get(&g_ends));
}

static void test_pipelined_keep_alive(void)
{
    char buf[8192];
    int fd = tn_connect(g_port), ends = get(&g_ends);
    const char *at;
    int n = 0;
    CHECK(fd >= 0);
    if (fd < 0) return;
    send_str(fd, "POST /s/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                 "POST /s/2 HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /g HTTP/1.1\r\nHost: x\r\n\r\n");
    recv_count(fd, buf, sizeof buf, "end:0:0:0", 3, 3000);
    for (at = buf; (at = strstr(at, "end:0:0:0")) != NULL; at++) n++;
    CHECK(n == 3);
    CHECK(strstr(buf, "Connection: close") == NULL);
    /* the same connection serves another request afterwards */
    send_str(fd, "HEAD /g HTTP/1.1\r\nHost: x\r\n\r\n");
    recv_count(fd, buf, sizeof buf, "\r\n\r\n", 1, 3000);
    CHECK(strncmp(buf, "HTTP/1.1 200", 12) == 0);
    CHECK(strstr(buf, "Content-Length: 9\r\n") != NULL); /* HEAD: on_end's answer, without its body */
    close(fd);
    CHECK(get(&g_ends) == ends + 4);
}

static void test_refused(void)
{
    char buf[4096];
    int logs = get(&g_refused_logs);
    ask("POST /plain-ignores HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", buf, sizeof buf, "\r\n\r\n");
    CHECK(strncmp(buf, "HTTP/1.1 500", 12) == 0);
    ask("POST /plain-answers HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", buf, sizeof buf, "own answer");
    CHECK(strncmp(buf, "HTTP/1.1 400", 12) == 0 && strstr(buf, "own answer") != NULL);
    ask("POST /no-end HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", buf, sizeof buf, "\r\n\r\n");
    CHECK(strncmp(buf, "HTTP/1.1 500", 12) == 0);
    ask("POST /no-end HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", buf, sizeof buf, "\r\n\r\n");
    CHECK(strncmp(buf, "HTTP/1.1 500", 12) == 0);
    CHECK(get(&g_refused_logs) == logs + 4);
}

static void test_balance(void)
{
    CHECK(get(&g_taken) == get(&g_ends)); /* every stream taken ended, once */
    CHECK(get(&g_taken) == 9);
}

int main(void)
{
    if (start_server() < 0) {
        printf("the server did not start\n0 passed, 1 failed\n");
        return 1;
    }
    run("Content-Length: 0, no framing and chunked 0 are an empty stream: on_end once, status 0", test_empty_bodies);
    run("empty bodies pipelined on a kept-alive connection; HEAD on a GET stream route", test_pipelined_keep_alive);
    run("a refused ch_req_body_stream: 500 and a log line, or the handler's own answer", test_refused);
    stop_server();
    run("after the stop: on_end ran once for every stream taken", test_balance);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
