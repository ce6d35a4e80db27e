/* tests/ws/fixture.c - a WebSocket server for the parts of the API that
   examples/chat.c does not use; tests/ws/ws_blackbox.c --fixture drives it.
     GET /ws/echo             echo (1 MiB limit)
     GET /secure/ws           echo behind bearer auth (token "sesame"): the
                              group's middleware runs before ch_ws_upgrade
     GET /ws/handler?ok=1     a handler that upgrades only when ok=1 (403)
     GET /ws/proto            subprotocols "v2.chat" then "v1.chat": the
                              first message says which one was chosen
     GET /ws/ping             the server pings every 150 ms, pong within 150
     GET /ws/idle             closed (1001) after 300 ms without a frame
     GET /ws/flood?mib=N      N MiB of 64 KiB binary messages, numbered,
                              sent only as fast as the client takes them
                              (ch_ws_send returns 1: wait for on_drain), then
                              a text message "done drains=K"
     GET /ws/closer           a text "close" makes the server close 4001
     GET /stats               opens, closes and their codes, as text
   Reads PORT, HOST, CHOPIN_WORKERS. */
#define CHOPIN_IMPLEMENTATION
#include "../../chopin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK (64 * 1024)

/* Counters shared by the workers (atomics: this is a test program). */
static long g_opens, g_closes, g_close_1000, g_close_1006, g_close_other;

static void count_open(void) { __atomic_add_fetch(&g_opens, 1, __ATOMIC_RELAXED); }

static void count_close(int code)
{
    __atomic_add_fetch(&g_closes, 1, __ATOMIC_RELAXED);
    if (code == 1000) __atomic_add_fetch(&g_close_1000, 1, __ATOMIC_RELAXED);
    else if (code == 1006) __atomic_add_fetch(&g_close_1006, 1, __ATOMIC_RELAXED);
    else __atomic_add_fetch(&g_close_other, 1, __ATOMIC_RELAXED);
}

static void stats(ch_req *req, ch_res *res)
{
    (void)req;
    ch_res_printf(res, 200, "text/plain", "opens=%ld closes=%ld 1000=%ld 1006=%ld other=%ld\n",
                  __atomic_load_n(&g_opens, __ATOMIC_RELAXED), __atomic_load_n(&g_closes, __ATOMIC_RELAXED),
                  __atomic_load_n(&g_close_1000, __ATOMIC_RELAXED), __atomic_load_n(&g_close_1006, __ATOMIC_RELAXED),
                  __atomic_load_n(&g_close_other, __ATOMIC_RELAXED));
}

static void any_open(ch_ws *ws, ch_req *req)
{
    (void)ws;
    (void)req;
    count_open();
}

static void any_close(ch_ws *ws, int code, const char *reason, size_t len)
{
    (void)ws;
    (void)reason;
    (void)len;
    count_close(code);
}

static void echo_message(ch_ws *ws, ch_ws_type type, const char *data, size_t len) { ch_ws_send(ws, type, data, len); }

/* ---- handlers that upgrade ---- */

static ch_ws_opts g_echo;

static void secure_ws(ch_req *req, ch_res *res) { ch_ws_upgrade(req, res, &g_echo, NULL); }

static void handler_ws(ch_req *req, ch_res *res)
{
    char ok[4];
    if (ch_req_query(req, "ok", ok, sizeof ok) != 1 || ok[0] != '1') {
        ch_res_error(res, 403);
        return;
    }
    ch_ws_upgrade(req, res, &g_echo, NULL);
}

/* ---- subprotocols ---- */

static void proto_open(ch_ws *ws, ch_req *req)
{
    char msg[96];
    (void)req;
    count_open();
    snprintf(msg, sizeof msg, "protocol:%s", ch_ws_protocol(ws));
    ch_ws_send_text(ws, msg);
}

/* ---- flood with backpressure ---- */

typedef struct flood {
    long left;      /* messages still to send */
    long next;      /* the next one's number */
    long drains;    /* on_drain calls */
    char buf[CHUNK];
} flood;

/* Sends until the queue is over the bound (1) or all is sent. */
static void flood_pump(ch_ws *ws)
{
    flood *f = (flood *)ch_ws_user(ws);
    while (f->left > 0) {
        int r;
        memcpy(f->buf, &f->next, sizeof f->next);
        r = ch_ws_send(ws, CH_WS_BINARY, f->buf, CHUNK);
        if (r < 0) return;
        f->next++;
        f->left--;
        if (r == 1) return; /* wait for on_drain */
    }
    if (f->left == 0) {
        char done[64];
        snprintf(done, sizeof done, "done drains=%ld", f->drains);
        ch_ws_send_text(ws, done);
        f->left = -1;
    }
}

static void flood_open(ch_ws *ws, ch_req *req)
{
    char mib[16];
    flood *f = (flood *)calloc(1, sizeof *f);
    long n = ch_req_query(req, "mib", mib, sizeof mib) > 0 ? atol(mib) : 1;
    count_open();
    if (!f) {
        ch_ws_close(ws, 1011, "no memory");
        return;
    }
    memset(f->buf, 'z', sizeof f->buf);
    f->left = n * (1024 * 1024 / CHUNK);
    ch_ws_set_user(ws, f);
    flood_pump(ws);
}

static void flood_drain(ch_ws *ws)
{
    flood *f = (flood *)ch_ws_user(ws);
    f->drains++;
    flood_pump(ws);
}

static void flood_close(ch_ws *ws, int code, const char *reason, size_t len)
{
    free(ch_ws_user(ws));
    any_close(ws, code, reason, len);
}

/* ---- the server closes ---- */

static void closer_message(ch_ws *ws, ch_ws_type type, const char *data, size_t len)
{
    if (type == CH_WS_TEXT && len == 5 && memcmp(data, "close", 5) == 0) ch_ws_close(ws, 4001, "asked");
    else ch_ws_send(ws, type, data, len);
}

int main(void)
{
    static const char *const protocols[] = {"v2.chat", "v1.chat", NULL};
    static ch_bearer bearer;
    static ch_ws_opts proto, ping, idle, flooder, closer;
    ch_app *app = ch_app_new();
    ch_group *secure = ch_group_new(app, "/secure");
    int rc;
    bearer.token = "sesame";
    g_echo.on_open = any_open;
    g_echo.on_message = echo_message;
    g_echo.on_close = any_close;
    proto = g_echo;
    proto.on_open = proto_open;
    proto.protocols = protocols;
    ping = g_echo;
    ping.ping_interval_ms = 150;
    ping.pong_timeout_ms = 150;
    idle = g_echo;
    idle.idle_timeout_ms = 300;
    flooder = g_echo;
    flooder.on_open = flood_open;
    flooder.on_drain = flood_drain;
    flooder.on_close = flood_close;
    closer = g_echo;
    closer.on_message = closer_message;
    ch_ws_route(app, "/ws/echo", &g_echo);
    ch_group_use(secure, ch_mw_bearer, &bearer);
    ch_group_route(secure, CH_GET, "/ws", secure_ws, NULL);
    ch_get(app, "/ws/handler", handler_ws, NULL);
    ch_ws_route(app, "/ws/proto", &proto);
    ch_ws_route(app, "/ws/ping", &ping);
    ch_ws_route(app, "/ws/idle", &idle);
    ch_ws_route(app, "/ws/flood", &flooder);
    ch_ws_route(app, "/ws/closer", &closer);
    ch_get(app, "/stats", stats, NULL);
    rc = ch_run(app, NULL);
    if (rc != 0) fprintf(stderr, "fixture: %s\n", ch_error(app));
    ch_app_free(app);
    return rc == 0 ? 0 : 1;
}
