/* async.c - answering later, streaming and server-sent events (issue 10).

     GET  /fast                 200 text/plain "fast", at once
     GET  /delay?ms=N           deferred; a worker timer answers after N ms
                                (0-10000): 200 "waited N ms"; bad ms: 400
     GET  /offload?ms=N         a blocking usleep(N ms) on the off-loop pool,
                                then 200 "slept N ms" (0-10000)
     GET  /stream?bytes=N&chunk=K
                                200 application/octet-stream, chunked: N
                                bytes, byte i = 'a' + i % 26, K bytes a
                                write (default 16384), produced only as fast
                                as the client takes them (the drain callback)
     GET  /events?n=N&every=MS  server-sent events 1..N (default 5), one every
                                MS ms (default 100; the first at once), each
                                "id: i", "event: tick", "data: tick i", then
                                the end; with Last-Event-ID: k it starts at k+1
     POST /publish              body = a message: 204, and every client of
     GET  /subscribe            /subscribe (an SSE stream, on any worker) gets
                                "data: <message>" (one line ending the body,
                                as `echo msg | curl --data-binary @-` sends,
                                is not part of the message)

   Environment: PORT (default 3000), HOST, CHOPIN_WORKERS, SERVER_MODE as
   for build/bench; SHUTDOWN_TIMEOUT (seconds, default 10) for the tests. */
#define CHOPIN_IMPLEMENTATION
#include "../chopin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A query value as a number in [lo, hi]; -1 when absent or bad. */
static long query_num(const ch_req *req, const char *name, long lo, long hi, long dflt)
{
    char buf[32], *end;
    long n = ch_req_query(req, name, buf, sizeof buf), v;
    if (n == CH_ABSENT) return dflt;
    if (n <= 0) return -1;
    v = strtol(buf, &end, 10);
    if (*end || v < lo || v > hi) return -1;
    return v;
}

static void fast(ch_req *req, ch_res *res)
{
    (void)req;
    ch_res_text(res, 200, "fast");
}

/* ---- /delay: a timer finishes the response ---- */

static void delay_done(ch_defer d, void *user)
{
    ch_res_printf(ch_defer_res(d), 200, "text/plain", "waited %ld ms", (long)(intptr_t)user);
    ch_defer_finish(d); /* -1 if the client left: nothing to do */
}

static void delay(ch_req *req, ch_res *res)
{
    long ms = query_num(req, "ms", 0, 10000, -1);
    ch_defer d;
    if (ms < 0) {
        ch_res_text(res, 400, "ms must be a number from 0 to 10000\n");
        return;
    }
    d = ch_res_defer(res);
    if (d.id) ch_defer_after(d, (uint64_t)ms, delay_done, (void *)(intptr_t)ms);
}

/* ---- /offload: blocking work on the pool ---- */

static void offload_sleep(void *user) { usleep((useconds_t)((intptr_t)user * 1000)); }

static void offload_done(ch_defer d, void *user)
{
    ch_res_printf(ch_defer_res(d), 200, "text/plain", "slept %ld ms", (long)(intptr_t)user);
    ch_defer_finish(d);
}

static void offload(ch_req *req, ch_res *res)
{
    long ms = query_num(req, "ms", 0, 10000, -1);
    ch_defer d;
    if (ms < 0) {
        ch_res_text(res, 400, "ms must be a number from 0 to 10000\n");
        return;
    }
    d = ch_res_defer(res);
    if (d.id && ch_defer_offload(d, offload_sleep, offload_done, (void *)(intptr_t)ms) < 0) {
        ch_res_text(ch_defer_res(d), 503, "no pool\n");
        ch_defer_finish(d);
    }
}

/* ---- /stream: backpressure ---- */

typedef struct stream_ctx {
    uint64_t total, sent;
    size_t chunk;
    char *buf;
} stream_ctx;

static void stream_free(stream_ctx *s)
{
    free(s->buf);
    free(s);
}

/* Writes until the queue says "wait" or all is sent. */
static void stream_produce(ch_defer d, void *user)
{
    stream_ctx *s = (stream_ctx *)user;
    while (s->sent < s->total) {
        size_t n = s->total - s->sent < s->chunk ? (size_t)(s->total - s->sent) : s->chunk, i;
        int r;
        for (i = 0; i < n; i++) s->buf[i] = (char)('a' + (s->sent + i) % 26);
        r = ch_defer_write(d, s->buf, n);
        if (r < 0) return; /* cut off: the abort callback frees s */
        s->sent += n;
        if (r == 1) return; /* over the bound: the drain callback calls us again */
    }
    ch_defer_end(d);
    stream_free(s);
}

static void stream_abort(ch_defer d, void *user)
{
    (void)d;
    stream_free((stream_ctx *)user);
}

static void stream(ch_req *req, ch_res *res)
{
    long long bytes;
    long chunk = query_num(req, "chunk", 1, 1 << 20, 16384);
    char buf[32], *end;
    long n = ch_req_query(req, "bytes", buf, sizeof buf);
    stream_ctx *s;
    ch_defer d;
    bytes = n > 0 ? strtoll(buf, &end, 10) : -1;
    if (n <= 0 || *end || bytes < 0 || chunk < 0) {
        ch_res_text(res, 400, "bytes must be a number, chunk 1 to 1048576\n");
        return;
    }
    d = ch_res_defer(res);
    if (!d.id) return;
    ch_res_header(ch_defer_res(d), "Content-Type", "application/octet-stream");
    if (ch_defer_begin(d, -1) != 0) { /* HEAD: the head only */
        ch_defer_end(d);
        return;
    }
    s = (stream_ctx *)calloc(1, sizeof *s);
    if (s) s->buf = (char *)malloc((size_t)chunk);
    if (!s || !s->buf) {
        if (s) free(s);
        ch_defer_release(d);
        return;
    }
    s->total = (uint64_t)bytes;
    s->chunk = (size_t)chunk;
    ch_defer_on_drain(d, stream_produce, s);
    ch_defer_on_abort(d, stream_abort, s);
    stream_produce(d, s);
}

/* ---- /events: SSE on a timer ---- */

typedef struct events_ctx {
    long next, last, every;
    ch_timer timer;
} events_ctx;

static void events_tick(ch_defer d, void *user)
{
    events_ctx *e = (events_ctx *)user;
    char id[24], data[40];
    snprintf(id, sizeof id, "%ld", e->next);
    snprintf(data, sizeof data, "tick %ld", e->next);
    e->timer = 0;
    if (e->next > e->last || ch_sse_event(d, "tick", id, data, strlen(data)) < 0 || ++e->next > e->last) {
        ch_defer_end(d);
        free(e);
        return;
    }
    e->timer = ch_defer_after(d, (uint64_t)e->every, events_tick, e);
}

static void events_abort(ch_defer d, void *user)
{
    events_ctx *e = (events_ctx *)user;
    if (e->timer) ch_timer_stop(d.w, e->timer);
    free(e);
}

static void events(ch_req *req, ch_res *res)
{
    long n = query_num(req, "n", 0, 1000000, 5), every = query_num(req, "every", 0, 60000, 100), from = 1;
    ch_str last = ch_sse_last_event_id(req);
    events_ctx *e;
    ch_defer d;
    if (n < 0 || every < 0) {
        ch_res_text(res, 400, "n and every must be numbers\n");
        return;
    }
    if (last.len && last.len < 20) {
        char buf[24];
        memcpy(buf, last.ptr, last.len);
        buf[last.len] = 0;
        from = strtol(buf, NULL, 10) + 1;
    }
    d = ch_res_defer(res);
    if (!d.id) return;
    if (ch_sse_begin(d, 0) != 0 || !(e = (events_ctx *)calloc(1, sizeof *e))) {
        ch_defer_end(d);
        return;
    }
    e->next = from;
    e->last = n;
    e->every = every;
    ch_defer_on_abort(d, events_abort, e);
    events_tick(d, e);
}

/* ---- /publish and /subscribe: across workers ---- */

/* Each worker keeps its own subscribers (set up by the start hook): a
   publish hands each worker a copy of the message through its queue. */
typedef struct subs {
    ch_defer *d;
    size_t n, cap;
} subs;

static void subs_start(ch_worker *w, void *user)
{
    (void)user;
    ch_worker_set_data(w, calloc(1, sizeof(subs)));
}

static void subs_stop(ch_worker *w, void *user)
{
    subs *s = (subs *)ch_worker_data(w);
    (void)user;
    if (s) free(s->d);
    free(s);
    ch_worker_set_data(w, NULL);
}

static void subs_remove(ch_defer d, void *user)
{
    subs *s = (subs *)ch_worker_data(d.w);
    size_t i;
    (void)user;
    for (i = 0; s && i < s->n; i++)
        if (s->d[i].id == d.id) {
            s->d[i] = s->d[--s->n];
            return;
        }
}

static void subscribe(ch_req *req, ch_res *res)
{
    subs *s = (subs *)ch_worker_data(ch_res_worker(res));
    ch_defer d;
    (void)req;
    if (!s) {
        ch_res_error(res, 503);
        return;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        ch_defer *t = (ch_defer *)realloc(s->d, sizeof *t * cap);
        if (!t) {
            ch_res_error(res, 503);
            return;
        }
        s->d = t;
        s->cap = cap;
    }
    d = ch_res_defer(res);
    if (!d.id) return;
    if (ch_sse_begin(d, 15000) != 0) {
        ch_defer_end(d);
        return;
    }
    ch_defer_on_abort(d, subs_remove, NULL);
    s->d[s->n++] = d;
}

typedef struct message {
    size_t len;
    char text[1];
} message;

static void deliver(ch_worker *w, void *user)
{
    message *m = (message *)user;
    subs *s = (subs *)ch_worker_data(w);
    size_t i;
    for (i = 0; s && i < s->n; i++) ch_sse_event(s->d[i], NULL, NULL, m->text, m->len);
    free(m);
}

static void publish(ch_req *req, ch_res *res)
{
    ch_worker *self = ch_res_worker(res);
    ch_app *app = ch_worker_app(self);
    int i, n = ch_worker_count(self);
    size_t len = req->body_len;
    /* a message sent as a line: its line end is not part of it (SSE sends
       data as it is given, and a trailing line end would be an empty line) */
    if (len && req->body[len - 1] == '\n') len--;
    if (len && req->body[len - 1] == '\r') len--;
    for (i = 0; i < n; i++) {
        ch_worker *w = ch_app_worker(app, i);
        message *m = (message *)malloc(sizeof *m + len);
        if (!w || !m) {
            free(m);
            continue;
        }
        memcpy(m->text, req->body, len);
        m->text[len] = 0;
        m->len = len;
        if (ch_worker_post(w, deliver, m) < 0) free(m);
    }
    ch_res_status(res, 204);
}

/* The routes, also used by bench/async_overhead.c. */
static ch_app *async_app(void)
{
    ch_app *app = ch_app_new();
    if (!app) return NULL;
    ch_on_worker_start(app, subs_start, NULL);
    ch_on_worker_stop(app, subs_stop, NULL);
    ch_get(app, "/fast", fast, NULL);
    ch_get(app, "/delay", delay, NULL);
    ch_get(app, "/offload", offload, NULL);
    ch_get(app, "/stream", stream, NULL);
    ch_get(app, "/events", events, NULL);
    ch_get(app, "/subscribe", subscribe, NULL);
    ch_post(app, "/publish", publish, NULL);
    return app;
}

#ifndef ASYNC_NO_MAIN
int main(void)
{
    ch_config cfg;
    const char *grace = getenv("SHUTDOWN_TIMEOUT");
    ch_app *app = async_app();
    const ch_config *used;
    if (!app) return 1;
    memset(&cfg, 0, sizeof cfg);
    if (grace) cfg.shutdown_timeout = atoi(grace);
    if (ch_listen(app, &cfg) < 0) {
        fprintf(stderr, "async: %s\n", ch_error(app));
        ch_app_free(app);
        return 1;
    }
    used = ch_config_used(app);
    printf("chopin async example listening on http://%s:%d (%d worker%s, %s)\n", used->host, used->port, used->workers,
           used->workers == 1 ? "" : "s", ch_backend());
    fflush(stdout);
    if (ch_serve(app) < 0) fprintf(stderr, "async: %s\n", ch_error(app));
    ch_app_free(app);
    return 0;
}
#endif
