/* async_unit.c - tests of answering later (issue 10) that need the inside:
     1. the timer heap (>>timers): order, ties, cancel, stale handles, repeat,
        100,000 pending;
     2. the cross-thread queue (>>queue): order, the wake rule, several
        producer threads;
     3. the API against a server run in this process (real sockets): the
        abort callback runs once, finish after abort and twice are -1,
        thousands of resumes from several threads, the per-worker cap (503),
        deadlines (503, 504), worker posts, start/stop hooks on the worker
        threads, timers from a handler, and a deferred response in embedded
        mode (ch_poll), woken by a post from another thread.
   Last line: "N passed, N failed". */
#define CHOPIN_IMPLEMENTATION
#include "../chopin.h"
#include "testnet.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static unsigned g_rand = 12345;
static unsigned rnd(void)
{
    g_rand = g_rand * 1103515245u + 12345u;
    return (g_rand >> 8) & 0xFFFFFF;
}

/* ---- 1. the timer heap ---- */

typedef struct fired {
    int n, cap;
    long *who;
    int64_t *at;
} fired;
static fired g_fired;
static int64_t g_now;
static chi_timers *g_t;

static void note(ch_worker *w, void *user)
{
    (void)w;
    if (g_fired.n == g_fired.cap) {
        g_fired.cap = g_fired.cap ? g_fired.cap * 2 : 1024;
        g_fired.who = (long *)realloc(g_fired.who, sizeof(long) * (size_t)g_fired.cap);
        g_fired.at = (int64_t *)realloc(g_fired.at, sizeof(int64_t) * (size_t)g_fired.cap);
    }
    g_fired.who[g_fired.n] = (long)(intptr_t)user;
    g_fired.at[g_fired.n++] = g_now;
}

static void fired_reset(void) { g_fired.n = 0; }

static void test_timer_order(void)
{
    chi_timers t;
    int64_t due[2000];
    int i, ok = 1;
    chi_timers_init(&t);
    fired_reset();
    for (i = 0; i < 2000; i++) {
        due[i] = (int64_t)(rnd() % 500);
        CHECK(chi_timers_add(&t, 0, (uint64_t)due[i], 0, note, (void *)(intptr_t)i) != 0);
    }
    for (g_now = 0; g_now <= 506; g_now += 7) chi_timers_run(&t, g_now, NULL);
    CHECK(g_fired.n == 2000);
    for (i = 1; i < g_fired.n; i++) {
        long a = g_fired.who[i - 1], b = g_fired.who[i];
        if (due[a] > due[b] || (due[a] == due[b] && a > b)) ok = 0; /* by due, then by arming */
    }
    for (i = 0; i < g_fired.n; i++)
        if (g_fired.at[i] < due[g_fired.who[i]] || g_fired.at[i] >= due[g_fired.who[i]] + 7) ok = 0;
    CHECK(ok);
    CHECK(t.n == 0 && chi_timers_wait(&t, 0) == -1);
    chi_timers_free(&t);
}

static void test_timer_cancel(void)
{
    chi_timers t;
    uint64_t id[1000];
    int i, ok = 1;
    chi_timers_init(&t);
    fired_reset();
    for (i = 0; i < 1000; i++) id[i] = chi_timers_add(&t, 100, (uint64_t)(rnd() % 100), 0, note, (void *)(intptr_t)i);
    for (i = 0; i < 1000; i += 2) CHECK(chi_timers_cancel(&t, id[i]) == 0);
    for (i = 0; i < 1000; i += 2) CHECK(chi_timers_cancel(&t, id[i]) == -1); /* twice */
    CHECK(chi_timers_cancel(&t, 0) == -1);
    CHECK(chi_timers_cancel(&t, ((uint64_t)77 << 32) | 5) == -1); /* a made-up handle */
    CHECK(chi_timers_wait(&t, 100) >= 0 && chi_timers_wait(&t, 100) < 100);
    g_now = 1000;
    chi_timers_run(&t, g_now, NULL);
    CHECK(g_fired.n == 500);
    for (i = 0; i < g_fired.n; i++)
        if (g_fired.who[i] % 2 == 0) ok = 0;
    CHECK(ok);
    /* a freed slot is reused: the old handle must not stop the new timer */
    {
        uint64_t a = chi_timers_add(&t, 0, 10, 0, note, NULL), b;
        CHECK(chi_timers_cancel(&t, a) == 0);
        b = chi_timers_add(&t, 0, 10, 0, note, NULL);
        CHECK((a & 0xFFFFFFFFu) == (b & 0xFFFFFFFFu)); /* same slot */
        CHECK(chi_timers_cancel(&t, a) == -1);
        CHECK(chi_timers_cancel(&t, b) == 0);
    }
    chi_timers_free(&t);
}

static uint64_t g_self_id;
static int g_self_cancel;
static void self_stop(ch_worker *w, void *user)
{
    (void)w;
    (void)user;
    g_self_cancel = chi_timers_cancel(g_t, g_self_id);
}

static int g_rearm_count;
static void rearm_zero(ch_worker *w, void *user)
{
    (void)w;
    (void)user;
    g_rearm_count++;
    chi_timers_add(g_t, g_now, 0, 0, rearm_zero, NULL);
}

static void test_timer_repeat(void)
{
    chi_timers t;
    uint64_t r;
    int i;
    chi_timers_init(&t);
    g_t = &t;
    fired_reset();
    r = chi_timers_add(&t, 0, 10, 25, note, (void *)(intptr_t)1);
    for (g_now = 0; g_now <= 100; g_now++) chi_timers_run(&t, g_now, NULL);
    CHECK(g_fired.n == 4); /* 10, 35, 60, 85 */
    for (i = 0; i < g_fired.n && i < 4; i++) CHECK(g_fired.at[i] == 10 + 25 * i);
    CHECK(chi_timers_cancel(&t, r) == 0);
    g_now = 1000;
    chi_timers_run(&t, g_now, NULL);
    CHECK(g_fired.n == 4);
    /* late by far: one run, not a burst of catch-ups */
    fired_reset();
    r = chi_timers_add(&t, 0, 10, 10, note, NULL);
    chi_timers_run(&t, 10000, NULL);
    CHECK(g_fired.n == 1);
    CHECK(chi_timers_wait(&t, 10000) == 10);
    CHECK(chi_timers_cancel(&t, r) == 0);
    /* a one-shot timer's handle is stale inside its own callback */
    g_self_id = chi_timers_add(&t, 0, 5, 0, self_stop, NULL);
    g_self_cancel = 99;
    chi_timers_run(&t, 5, NULL);
    CHECK(g_self_cancel == -1);
    /* a repeating one can stop itself */
    g_self_id = chi_timers_add(&t, 0, 5, 5, self_stop, NULL);
    chi_timers_run(&t, 5, NULL);
    CHECK(g_self_cancel == 0 && t.n == 0);
    /* a callback arming a 0 ms timer does not keep one run going */
    g_rearm_count = 0;
    g_now = 0;
    chi_timers_add(&t, 0, 0, 0, rearm_zero, NULL);
    chi_timers_run(&t, 0, NULL);
    CHECK(g_rearm_count == 1);
    chi_timers_run(&t, 0, NULL);
    CHECK(g_rearm_count == 2);
    chi_timers_free(&t);
}

static void test_timer_100k(void)
{
    chi_timers t;
    static uint64_t id[100000];
    int i, ok = 1;
    long long t0 = tn_now_ms(), spent;
    chi_timers_init(&t);
    fired_reset();
    for (i = 0; i < 100000; i++) id[i] = chi_timers_add(&t, 0, 1 + (uint64_t)(rnd() % 60000), 0, note, (void *)(intptr_t)i);
    CHECK(t.n == 100000);
    for (i = 0; i < 100000; i += 3) CHECK(chi_timers_cancel(&t, id[i]) == 0);
    for (g_now = 0; g_now <= 60000; g_now += 50) chi_timers_run(&t, g_now, NULL);
    CHECK(g_fired.n == 100000 - 33334);
    for (i = 1; i < g_fired.n; i++)
        if (g_fired.at[i] < g_fired.at[i - 1]) ok = 0;
    CHECK(ok && t.n == 0);
    spent = tn_now_ms() - t0;
    printf("# 100,000 timers armed, a third stopped, the rest run: %lld ms\n", spent);
    chi_timers_free(&t);
}

/* ---- 2. the queue ---- */

static void test_queue_order(void)
{
    chi_mpsc q;
    chi_qnode n[5], *got;
    int i;
    memset(&q, 0, sizeof q);
    memset(n, 0, sizeof n);
    for (i = 0; i < 5; i++) {
        n[i].user = (void *)(intptr_t)i;
        CHECK(chi_mpsc_push(&q, &n[i]) == (i == 0)); /* only the first push wakes */
    }
    got = chi_mpsc_take(&q);
    for (i = 0; i < 5; i++, got = got ? got->next : NULL) CHECK(got && got->user == (void *)(intptr_t)i);
    CHECK(got == NULL);
    CHECK(chi_mpsc_take(&q) == NULL);
    CHECK(chi_mpsc_push(&q, &n[0]) == 1); /* empty again */
}

#define QP 4
#define QN 50000
static chi_mpsc g_q;
static void *producer(void *arg)
{
    int p = (int)(intptr_t)arg, i;
    for (i = 0; i < QN; i++) {
        chi_qnode *n = (chi_qnode *)malloc(sizeof *n);
        memset(n, 0, sizeof *n);
        n->user = (void *)(intptr_t)(p * QN + i);
        chi_mpsc_push(&g_q, n);
    }
    return NULL;
}

static void test_queue_threads(void)
{
    pthread_t th[QP];
    int next[QP] = {0}, total = 0, ok = 1, i;
    long long t0 = tn_now_ms();
    memset(&g_q, 0, sizeof g_q);
    for (i = 0; i < QP; i++) pthread_create(&th[i], NULL, producer, (void *)(intptr_t)i);
    while (total < QP * QN && tn_now_ms() - t0 < 20000) {
        chi_qnode *n = chi_mpsc_take(&g_q);
        while (n) {
            chi_qnode *nx = n->next;
            int v = (int)(intptr_t)n->user, p = v / QN;
            if (v % QN != next[p]) ok = 0; /* each producer's order kept */
            next[p] = v % QN + 1;
            total++;
            free(n);
            n = nx;
        }
    }
    for (i = 0; i < QP; i++) pthread_join(th[i], NULL);
    CHECK(total == QP * QN);
    CHECK(ok);
}

/* ---- 3. the API, in-process server ---- */

static int g_port;
static ch_app *g_app;
static pthread_t g_server;
static int g_aborts, g_finish_after_abort = 99, g_finish_twice = 99, g_posts_run, g_start_hooks, g_stop_hooks;
static int g_hooks_off_main, g_timer_runs, g_worker_posts;
static int g_deadline_finish = 99;
static pthread_t g_main;

static int atomic_get(int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void atomic_inc(int *p) { __atomic_add_fetch(p, 1, __ATOMIC_ACQ_REL); }

static void on_abort_count(ch_defer d, void *user)
{
    (void)user;
    atomic_inc(&g_aborts);
    /* the handle is still ours: finishing now is defined */
    __atomic_store_n(&g_finish_after_abort, ch_defer_finish(d), __ATOMIC_RELEASE);
    ch_defer_finish(d); /* and again: stale, -1, no crash */
}

static void hold(ch_req *req, ch_res *res)
{
    ch_defer d = ch_res_defer(res);
    (void)req;
    if (d.id) ch_defer_on_abort(d, on_abort_count, NULL);
}

/* mid-offload: the client leaves while the pool sleeps; the abort callback
   runs once on the worker, done still runs once and finish says -1 */
static int g_off_aborts, g_off_done, g_off_finish = 99;
static void off_abort(ch_defer d, void *user)
{
    (void)d;
    (void)user;
    atomic_inc(&g_off_aborts);
}
static void off_work(void *user)
{
    (void)user;
    usleep(100000);
}
static void off_done(ch_defer d, void *user)
{
    (void)user;
    __atomic_store_n(&g_off_finish, ch_defer_finish(d), __ATOMIC_RELEASE);
    atomic_inc(&g_off_done);
}
static void off_hold(ch_req *req, ch_res *res)
{
    ch_defer d = ch_res_defer(res);
    (void)req;
    ch_defer_on_abort(d, off_abort, NULL);
    ch_defer_offload(d, off_work, off_done, NULL);
}

/* mid-stream: a producer waiting for the drain when the client leaves */
static int g_st_aborts, g_st_write_after = 99;
static char g_big[65536];
static void st_abort(ch_defer d, void *user)
{
    (void)user;
    atomic_inc(&g_st_aborts);
    __atomic_store_n(&g_st_write_after, ch_defer_write(d, "x", 1), __ATOMIC_RELEASE);
    ch_defer_end(d); /* ours to let go: -1, nothing sent */
}
static void st_fill(ch_defer d, void *user)
{
    (void)user;
    while (ch_defer_write(d, g_big, sizeof g_big) == 0) {}
}
static void st_hold(ch_req *req, ch_res *res)
{
    ch_defer d = ch_res_defer(res);
    (void)req;
    ch_defer_begin(d, -1);
    ch_defer_on_abort(d, st_abort, NULL);
    ch_defer_on_drain(d, st_fill, NULL);
    st_fill(d, NULL);
}

/* SSE: retry, comments, refused fields, heartbeats on a timer */
static int g_sse_bad = 99;
static void sse_end(ch_defer d, void *user)
{
    (void)user;
    ch_defer_end(d);
}
static void sse_hb(ch_req *req, ch_res *res)
{
    ch_defer d = ch_res_defer(res);
    int bad;
    (void)req;
    ch_sse_begin(d, 20);
    ch_sse_retry(d, 1500);
    ch_sse_comment(d, "two\nlines");
    bad = ch_sse_event(d, "bad\nname", NULL, "x", 1) + ch_sse_event(d, NULL, "1\r2", "x", 1);
    __atomic_store_n(&g_sse_bad, bad, __ATOMIC_RELEASE);
    ch_sse_event(d, NULL, NULL, "last", 4);
    ch_sse_event(d, NULL, NULL, "end\r\n", 5); /* the client's data is "end\n": a last, empty line */
    ch_defer_after(d, 90, sse_end, NULL);
}

static void twice(ch_req *req, ch_res *res)
{
    ch_defer d = ch_res_defer(res);
    (void)req;
    ch_res_text(ch_defer_res(d), 200, "once");
    ch_defer_finish(d);
    __atomic_store_n(&g_finish_twice, ch_defer_finish(d), __ATOMIC_RELEASE);
    ch_res_text(ch_defer_res(d), 500, "never"); /* a stale handle's scratch */
}

/* resumes from other threads: the handler hands its handle to a ring the
   resumer threads take from */
#define RING 8192
static ch_defer g_ring[RING];
static unsigned g_ring_head, g_ring_tail;
static pthread_mutex_t g_ring_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_resumers_stop;

static void resume_fn(ch_defer d, void *user)
{
    (void)user;
    atomic_inc(&g_posts_run);
    ch_res_text(ch_defer_res(d), 200, "resumed");
    ch_defer_finish(d);
}

static void resume(ch_req *req, ch_res *res)
{
    ch_defer d = ch_res_defer(res);
    (void)req;
    if (!d.id) return;
    pthread_mutex_lock(&g_ring_mu);
    g_ring[g_ring_head++ % RING] = d;
    pthread_mutex_unlock(&g_ring_mu);
}

static void *resumer(void *arg)
{
    (void)arg;
    while (!atomic_get(&g_resumers_stop)) {
        ch_defer d;
        int have = 0;
        pthread_mutex_lock(&g_ring_mu);
        if (g_ring_tail != g_ring_head) {
            d = g_ring[g_ring_tail++ % RING];
            have = 1;
        }
        pthread_mutex_unlock(&g_ring_mu);
        if (have)
            ch_defer_post(d, resume_fn, NULL);
        else
            usleep(100);
    }
    return NULL;
}

static void deadline_abort(ch_defer d, void *user)
{
    (void)user;
    __atomic_store_n(&g_deadline_finish, ch_defer_finish(d), __ATOMIC_RELEASE);
}

static void deadline(ch_req *req, ch_res *res)
{
    char s[8];
    ch_defer d;
    long n = ch_req_query(req, "status", s, sizeof s);
    d = ch_res_defer(res);
    if (!d.id) return;
    ch_defer_deadline(d, 100, n > 0 ? atoi(s) : 503);
    ch_defer_on_abort(d, deadline_abort, NULL);
}

static void count_timer(ch_worker *w, void *user)
{
    ch_timer *t = (ch_timer *)user;
    if (++g_timer_runs == 3) ch_timer_stop(w, *t);
}

static ch_timer g_rep;
static void timers(ch_req *req, ch_res *res)
{
    (void)req;
    g_timer_runs = 0;
    g_rep = ch_timer_start(ch_res_worker(res), 10, 10, count_timer, &g_rep);
    ch_res_text(res, 200, "armed");
}

static void timer_count(ch_req *req, ch_res *res)
{
    (void)req;
    ch_res_printf(res, 200, "text/plain", "%d", g_timer_runs);
}

static void worker_post_fn(ch_worker *w, void *user)
{
    (void)user;
    if (ch_worker_index(w) >= 0) atomic_inc(&g_worker_posts);
}

static void hook_start(ch_worker *w, void *user)
{
    (void)user;
    (void)w;
    atomic_inc(&g_start_hooks);
    if (!pthread_equal(pthread_self(), g_main)) atomic_inc(&g_hooks_off_main);
}

static void hook_stop(ch_worker *w, void *user)
{
    (void)user;
    (void)w;
    atomic_inc(&g_stop_hooks);
    if (!pthread_equal(pthread_self(), g_main)) atomic_inc(&g_hooks_off_main);
}

static void *serve(void *arg)
{
    (void)arg;
    ch_serve(g_app);
    return NULL;
}

static ch_app *test_app(void)
{
    ch_app *app = ch_app_new();
    ch_get(app, "/hold", hold, NULL);
    ch_get(app, "/twice", twice, NULL);
    ch_get(app, "/off-hold", off_hold, NULL);
    ch_get(app, "/sse-hb", sse_hb, NULL);
    ch_get(app, "/st-hold", st_hold, NULL);
    ch_get(app, "/resume", resume, NULL);
    ch_get(app, "/deadline", deadline, NULL);
    ch_get(app, "/timers", timers, NULL);
    ch_get(app, "/timer-count", timer_count, NULL);
    ch_on_worker_start(app, hook_start, NULL);
    ch_on_worker_stop(app, hook_stop, NULL);
    return app;
}

static int start_server(int workers, int max_deferred)
{
    ch_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.host = "127.0.0.1";
    cfg.port = CH_PORT_ANY;
    cfg.workers = workers;
    cfg.max_deferred = max_deferred;
    cfg.no_signals = 1;
    cfg.ignore_env = 1;
    cfg.shutdown_timeout = 1;
    g_app = test_app();
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

static int dial(void)
{
    return tn_connect(g_port);
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

/* Reads until `until` appears, the peer closes, or ms pass. */
static size_t recv_until(int fd, char *buf, size_t cap, const char *until, int ms)
{
    size_t len = 0;
    long long end = tn_now_ms() + ms;
    buf[0] = 0;
    while (len + 1 < cap && !strstr(buf, until)) {
        struct pollfd p;
        long long left = end - tn_now_ms();
        ssize_t r;
        if (left <= 0) break;
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

static int wait_for(int *p, int want, int ms)
{
    long long end = tn_now_ms() + ms;
    while (atomic_get(p) < want && tn_now_ms() < end) usleep(1000);
    return atomic_get(p) >= want;
}

static void test_abort_and_twice(void)
{
    char buf[4096];
    int fd, i;
    g_aborts = 0;
    CHECK(start_server(1, 0) == 0);
    for (i = 0; i < 20; i++) { /* the client leaves mid-defer */
        fd = dial();
        send_str(fd, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
        usleep(2000);
        close(fd);
    }
    CHECK(wait_for(&g_aborts, 20, 3000));
    usleep(50000);
    CHECK(atomic_get(&g_aborts) == 20); /* once each */
    CHECK(atomic_get(&g_finish_after_abort) == -1);
    for (i = 0; i < 10; i++) { /* mid-offload */
        fd = dial();
        send_str(fd, "GET /off-hold HTTP/1.1\r\nHost: x\r\n\r\n");
        usleep(2000);
        close(fd);
    }
    CHECK(wait_for(&g_off_done, 10, 5000));
    CHECK(atomic_get(&g_off_aborts) == 10 && atomic_get(&g_off_done) == 10);
    CHECK(atomic_get(&g_off_finish) == -1);
    for (i = 0; i < 10; i++) { /* mid-stream, blocked on the drain */
        fd = dial();
        send_str(fd, "GET /st-hold HTTP/1.1\r\nHost: x\r\n\r\n");
        recv_until(fd, buf, sizeof buf, "zzzz", 30); /* a little of it */
        close(fd);
    }
    CHECK(wait_for(&g_st_aborts, 10, 5000));
    usleep(50000);
    CHECK(atomic_get(&g_st_aborts) == 10);
    CHECK(atomic_get(&g_st_write_after) == -1);
    fd = dial();
    send_str(fd, "GET /twice HTTP/1.1\r\nHost: x\r\n\r\n");
    recv_until(fd, buf, sizeof buf, "once", 3000);
    CHECK(strstr(buf, "200 OK") && strstr(buf, "once") && !strstr(buf, "never"));
    CHECK(atomic_get(&g_finish_twice) == -1);
    /* SSE: the retry field, a two-line comment, two refused events (CR/LF in
       a name or id), two events (one whose data ends with a line end),
       heartbeats every 20 ms, then the end */
    {
        static const char want[] = "d\r\nretry: 1500\n\n\r\nf\r\n: two\n: lines\n\n\r\nc\r\ndata: last\n\n\r\n"
                                   "12\r\ndata: end\ndata: \n\n\r\n";
        char *body;
        int beats = 0;
        char *p;
        send_str(fd, "GET /sse-hb HTTP/1.1\r\nHost: x\r\n\r\n");
        recv_until(fd, buf, sizeof buf, "\r\n0\r\n\r\n", 3000);
        body = strstr(buf, "\r\n\r\n");
        CHECK(body && strncmp(body + 4, want, sizeof want - 1) == 0);
        for (p = buf; (p = strstr(p, "\r\n4\r\n: \n\n\r\n")) != NULL; p++) beats++;
        CHECK(beats >= 1 && beats <= 5); /* 90 ms at 20 ms a beat (fewer on a busy machine) */
        CHECK(strstr(buf, "\r\n0\r\n\r\n") != NULL);
        CHECK(atomic_get(&g_sse_bad) == -2);
    }
    /* the same connection still serves */
    send_str(fd, "GET /twice HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(recv_until(fd, buf, sizeof buf, "once", 3000) > 0 && strstr(buf, "once"));
    close(fd);
    stop_server();
}

#define RCONN 32
#define RREQ 64
static void *resume_client(void *arg)
{
    int *ok = (int *)arg, i, j, fds[RCONN / 4];
    char buf[1024];
    for (j = 0; j < RCONN / 4; j++) fds[j] = dial();
    for (i = 0; i < RREQ; i++)
        for (j = 0; j < RCONN / 4; j++) {
            send_str(fds[j], "GET /resume HTTP/1.1\r\nHost: x\r\n\r\n");
            if (recv_until(fds[j], buf, sizeof buf, "resumed", 5000) && strstr(buf, "resumed")) (*ok)++;
        }
    for (j = 0; j < RCONN / 4; j++) close(fds[j]);
    return NULL;
}

static void test_resume_threads(void)
{
    pthread_t res[4], cli[4];
    int ok[4] = {0}, i, total = 0;
    g_posts_run = 0;
    g_resumers_stop = 0;
    CHECK(start_server(2, 0) == 0);
    for (i = 0; i < 4; i++) pthread_create(&res[i], NULL, resumer, NULL);
    for (i = 0; i < 4; i++) pthread_create(&cli[i], NULL, resume_client, &ok[i]);
    for (i = 0; i < 4; i++) pthread_join(cli[i], NULL);
    __atomic_store_n(&g_resumers_stop, 1, __ATOMIC_RELEASE);
    for (i = 0; i < 4; i++) pthread_join(res[i], NULL);
    for (i = 0; i < 4; i++) total += ok[i];
    printf("# %d responses resumed from 4 threads over %d connections, 2 workers\n", total, RCONN);
    CHECK(total == RCONN * RREQ);
    CHECK(atomic_get(&g_posts_run) == RCONN * RREQ);
    stop_server();
}

static void test_cap_deadline_hooks(void)
{
    char buf[4096];
    int fd[5], i, f;
    g_start_hooks = g_stop_hooks = g_hooks_off_main = g_worker_posts = 0;
    CHECK(start_server(1, 4) == 0);
    for (i = 0; i < 5; i++) {
        fd[i] = dial();
        send_str(fd[i], "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
        usleep(20000);
    }
    recv_until(fd[4], buf, sizeof buf, "}", 3000);
    CHECK(strstr(buf, "HTTP/1.1 503") != NULL); /* the fifth is over the cap */
    for (i = 0; i < 5; i++) close(fd[i]);
    usleep(100000);
    f = dial(); /* the slots came back */
    send_str(f, "GET /deadline?status=504 HTTP/1.1\r\nHost: x\r\n\r\n");
    recv_until(f, buf, sizeof buf, "}", 3000);
    CHECK(strstr(buf, "HTTP/1.1 504 Gateway Timeout") != NULL);
    /* the abort callback runs on the worker around the 504's write: on a
       busy machine it may not have run yet when the 504 arrives */
    for (i = 0; i < 3000 && atomic_get(&g_deadline_finish) == 99; i++) usleep(1000);
    CHECK(atomic_get(&g_deadline_finish) == -1);
    send_str(f, "GET /deadline HTTP/1.1\r\nHost: x\r\n\r\n");
    recv_until(f, buf, sizeof buf, "}", 3000);
    CHECK(strstr(buf, "HTTP/1.1 503 Service Unavailable") != NULL);
    /* timers from a handler: repeat three times, then stopped */
    send_str(f, "GET /timers HTTP/1.1\r\nHost: x\r\n\r\n");
    recv_until(f, buf, sizeof buf, "armed", 3000);
    usleep(150000);
    send_str(f, "GET /timer-count HTTP/1.1\r\nHost: x\r\n\r\n");
    recv_until(f, buf, sizeof buf, "\r\n\r\n3", 3000);
    CHECK(strstr(buf, "\r\n\r\n3") != NULL);
    close(f);
    for (i = 0; i < 100; i++) ch_worker_post(ch_app_worker(g_app, 0), worker_post_fn, NULL);
    CHECK(ch_app_worker(g_app, 1) == NULL);
    CHECK(wait_for(&g_worker_posts, 100, 3000));
    stop_server();
    CHECK(atomic_get(&g_start_hooks) == 1 && atomic_get(&g_stop_hooks) == 1 && atomic_get(&g_hooks_off_main) == 2);
}

/* Embedded: a deferred response finished by a post from another thread must
   wake ch_poll (the app's waker carries posts and the stop). */
static ch_defer g_emb;
static int g_emb_ready;
static void emb_hold(ch_req *req, ch_res *res)
{
    (void)req;
    g_emb = ch_res_defer(res);
    __atomic_store_n(&g_emb_ready, 1, __ATOMIC_RELEASE);
}

static void emb_finish(ch_defer d, void *user)
{
    (void)user;
    ch_res_text(ch_defer_res(d), 200, "embedded later");
    ch_defer_finish(d);
}

static void *emb_client(void *arg)
{
    char *buf = (char *)arg;
    int fd = dial();
    send_str(fd, "GET /e HTTP/1.1\r\nHost: x\r\n\r\n");
    long long t0 = tn_now_ms();
    while (!atomic_get(&g_emb_ready) && tn_now_ms() - t0 < 3000) usleep(1000);
    if (atomic_get(&g_emb_ready)) ch_defer_post(g_emb, emb_finish, NULL);
    recv_until(fd, buf, 4096, "later", 3000);
    close(fd);
    ch_stop(g_app);
    return NULL;
}

static void test_embedded(void)
{
    ch_config cfg;
    pthread_t cl;
    static char buf[4096];
    long long t0;
    int rc = 0, turns = 0;
    memset(&cfg, 0, sizeof cfg);
    cfg.host = "127.0.0.1";
    cfg.port = CH_PORT_ANY;
    cfg.ignore_env = 1;
    cfg.shutdown_timeout = 1;
    cfg.workers = 1;
    g_app = ch_app_new();
    ch_get(g_app, "/e", emb_hold, NULL);
    CHECK(ch_listen(g_app, &cfg) == 0);
    g_port = ch_config_used(g_app)->port;
    pthread_create(&cl, NULL, emb_client, buf);
    t0 = tn_now_ms();
    while (rc == 0 && tn_now_ms() - t0 < 5000) {
        rc = ch_poll(g_app, 1000); /* a long wait: only the waker can end it early */
        turns++;
    }
    pthread_join(cl, NULL);
    CHECK(rc == 1);
    CHECK(strstr(buf, "embedded later") != NULL);
    CHECK(tn_now_ms() - t0 < 3000);
    ch_app_free(g_app);
    g_app = NULL;
}

int main(void)
{
    g_main = pthread_self();
    run("timers: run by due time, ties in arming order, each within its pass", test_timer_order);
    run("timers: stop, stop twice, made-up and reused handles", test_timer_cancel);
    run("timers: repeat, late repeat without a burst, stop from the callback, 0 ms re-arm", test_timer_repeat);
    run("timers: 100,000 pending, a third stopped, the rest in order", test_timer_100k);
    run("queue: FIFO, only the push onto an empty queue wakes", test_queue_order);
    run("queue: 4 producer threads x 50,000, each one's order kept, none lost", test_queue_threads);
    run("defer: client leaves mid-defer, mid-offload, mid-stream: abort callback once; finish/write after it and "
        "finish twice are -1; SSE retry, comments, heartbeats, refused fields",
        test_abort_and_twice);
    run("defer: 2,048 responses resumed by posts from 4 threads (2 workers)", test_resume_threads);
    run("defer: per-worker cap 503, deadlines 504 and 503, handler timers, worker posts, hooks on the worker thread",
        test_cap_deadline_hooks);
    run("defer: embedded (ch_poll): a post from another thread wakes the loop and finishes", test_embedded);
    free(g_fired.who);
    free(g_fired.at);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
