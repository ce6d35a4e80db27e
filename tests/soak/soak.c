/*
 * tests/soak/soak.c - a long run of keep-alive, pipelined, good and bad
 * requests against a chopin.h server, checking that nothing leaks.
 *
 *     build/soak [--requests N] [--conns C] [--depth D] [--seconds S] [--sanitized] SERVER
 *     make soak                     (10,000,000 requests, 256 connections)
 *
 * It starts SERVER (the example app, build/bench) on a free port, then:
 *   1. measures the server idle (RSS, open descriptors);
 *   2. warms it up with 200,000 requests on the C connections, closes them
 *      and measures again: the starting level (per-worker buffers and the
 *      connection free list are allocated once and kept);
 *   3. sends N requests over C connections, D pipelined per round trip,
 *      a mix of GET /plaintext, /json, /users/N, POST /echo (Content-Length
 *      and chunked), HEAD, 404 and 405; one batch in 200 ends with a bad
 *      request (missing Host, CL+TE, bad chunk size, obs-fold, NUL, a bare
 *      LF), which must get 400 and a close; one batch in 500 is abandoned
 *      half sent (the client closes or resets); the client reconnects;
 *   4. closes everything and measures again: RSS within 1 MiB of the
 *      starting level, descriptors exactly at it;
 *   5. stops the server with SIGTERM: exit status 0.
 * Every response is checked (status, framing). Bounded: S seconds (default
 * 900) for step 3. Exit status 0 when everything held. --sanitized (an ASan
 * server, whose allocator keeps freed memory in quarantine): RSS is
 * reported, not checked; the exit status then carries ASan's leak check.
 */
#include "../testnet.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HOST "Host: soak\r\n"

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "soak: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

/* ---- the server process ---------------------------------------------- */

static pid_t g_pid;
static int g_port;

/* A connection to the server with Nagle's delay off: blocking, or started
   without waiting (nonblock). */
static int dial(int nonblock)
{
    int fd = nonblock ? tn_connect_start(g_port, 0) : tn_connect(g_port);
    if (fd >= 0) tn_nodelay(fd);
    return fd;
}

static void start_server(const char *path)
{
    int rc;
    g_port = tn_free_port();
    g_pid = fork();
    if (g_pid < 0) die("fork: %s", strerror(errno));
    if (g_pid == 0) {
        tn_server_env(g_port);
        signal(SIGPIPE, SIG_DFL);
        execl(path, path, (char *)NULL);
        _exit(127);
    }
    rc = tn_wait_listening(g_port, g_pid, 10000, NULL);
    if (rc == 1) die("the server exited at start");
    if (rc < 0) die("the server does not listen");
}

static long rss_kib(void)
{
    return tn_proc_rss_kib(g_pid);
}

static int fd_count(void)
{
    return tn_proc_fd_count(g_pid);
}

/* ---- requests ---------------------------------------------------------- */

enum { K_PLAIN, K_JSON, K_USER, K_ECHO, K_CHUNKED, K_HEAD, K_404, K_405, K_GOOD, K_BAD = K_GOOD };

static const char *const bad_requests[] = {
    "GET /plaintext HTTP/1.1\r\n\r\n",                                                     /* no Host */
    "POST /echo HTTP/1.1\r\n" HOST "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", /* CL+TE */
    "POST /echo HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\nzz\r\n",              /* bad chunk size */
    "GET /plaintext HTTP/1.1\r\n" HOST "X-A: 1\r\n folded\r\n\r\n",                         /* obs-fold */
    "GET /plain\0text HTTP/1.1\r\n" HOST "\r\n",                                            /* NUL */
    "GET /plaintext HTTP/1.1\n" HOST "\n",                                                  /* bare LF */
};
static const size_t bad_len[] = {
    sizeof "GET /plaintext HTTP/1.1\r\n\r\n" - 1,
    sizeof "POST /echo HTTP/1.1\r\n" HOST "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" - 1,
    sizeof "POST /echo HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\nzz\r\n" - 1,
    sizeof "GET /plaintext HTTP/1.1\r\n" HOST "X-A: 1\r\n folded\r\n\r\n" - 1,
    sizeof "GET /plain\0text HTTP/1.1\r\n" HOST "\r\n" - 1,
    sizeof "GET /plaintext HTTP/1.1\n" HOST "\n" - 1,
};

static uint32_t g_rng = 2463534242u;
static uint32_t rnd(void)
{
    return tn_xorshift32(&g_rng);
}

typedef struct conn {
    int fd;
    int state;            /* 0 connecting/idle, 1 waiting, 2 closing (bad sent), 3 dead */
    char *out;
    size_t out_len, out_off, out_cap;
    char *in;
    size_t in_len, in_cap;
    unsigned char kinds[64]; /* expected answers, in order */
    int nk, ki;
} conn;

static void out_add(conn *c, const char *p, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        c->out_cap = (c->out_len + n) * 2;
        c->out = realloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

#define ADD(c, lit) out_add((c), (lit), sizeof(lit) - 1)

static void add_request(conn *c, int kind)
{
    char tmp[256];
    int n;
    switch (kind) {
    case K_PLAIN: ADD(c, "GET /plaintext HTTP/1.1\r\n" HOST "\r\n"); break;
    case K_JSON: ADD(c, "GET /json HTTP/1.1\r\n" HOST "\r\n"); break;
    case K_USER:
        n = snprintf(tmp, sizeof tmp, "GET /users/%u HTTP/1.1\r\n" HOST "\r\n", rnd() % 100000);
        out_add(c, tmp, (size_t)n);
        break;
    case K_ECHO: ADD(c, "POST /echo HTTP/1.1\r\n" HOST "Content-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"); break;
    case K_CHUNKED:
        ADD(c, "POST /echo HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        break;
    case K_HEAD: ADD(c, "HEAD /plaintext HTTP/1.1\r\n" HOST "\r\n"); break;
    case K_404: ADD(c, "GET /nothing/here HTTP/1.1\r\n" HOST "\r\n"); break;
    case K_405: ADD(c, "DELETE /plaintext HTTP/1.1\r\n" HOST "\r\n"); break;
    default: {
        int b = (int)(rnd() % (sizeof bad_requests / sizeof bad_requests[0]));
        out_add(c, bad_requests[b], bad_len[b]);
    }
    }
    c->kinds[c->nk++] = (unsigned char)kind;
}

static const int expect_status[] = {200, 200, 200, 200, 200, 200, 404, 405, 400};

/* ---- the load loop ------------------------------------------------------- */

typedef struct stats {
    unsigned long long sent, answered, by_status[6], bad_sent, aborted, reconnects, errors;
} stats;

static int g_ep;
static int g_depth = 16;

static void set_interest(conn *c, unsigned events)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.ptr = c;
    epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_open(conn *c)
{
    struct epoll_event ev;
    c->fd = dial(1);
    if (c->fd < 0) die("connect: %s", strerror(errno));
    c->state = 0;
    c->out_len = c->out_off = c->in_len = 0;
    c->nk = c->ki = 0;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLOUT; /* connected once writable */
    ev.data.ptr = c;
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll_ctl: %s", strerror(errno));
}

static void conn_drop(conn *c, int reset)
{
    if (reset) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(c->fd);
    c->fd = -1;
    c->state = 3;
}

/* Sends what is pending; asks for EPOLLOUT only while something is. */
static void pump_send(conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w <= 0) break;
        c->out_off += (size_t)w;
    }
    set_interest(c, c->out_off < c->out_len ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

/* A new batch: depth requests, sometimes ending with a bad one, sometimes
   abandoned half sent (then the connection is dropped: returns -1). */
static int new_batch(conn *c, stats *st, unsigned long long budget, int allow_bad)
{
    int i, n = g_depth;
    uint32_t r = rnd();
    if ((unsigned long long)n > budget) n = (int)budget;
    if (n <= 0) {
        set_interest(c, EPOLLIN);
        return 0;
    }
    c->nk = c->ki = 0;
    c->out_len = c->out_off = 0;
    for (i = 0; i < n; i++) {
        uint32_t k = rnd() % 100;
        int kind = k < 30 ? K_PLAIN : k < 50 ? K_JSON : k < 65 ? K_USER : k < 75 ? K_ECHO : k < 82 ? K_CHUNKED
                 : k < 90 ? K_HEAD : k < 95 ? K_404 : K_405;
        if (allow_bad && i == n - 1 && r % 200 == 0) {
            kind = K_BAD;
            st->bad_sent++;
        }
        add_request(c, kind);
    }
    if (allow_bad && r % 500 == 1) { /* abandon it: half of it, then close or reset */
        ssize_t w = send(c->fd, c->out, c->out_len / 2, MSG_NOSIGNAL);
        (void)w;
        st->aborted++;
        conn_drop(c, (int)(r & 2));
        return -1;
    }
    st->sent += (unsigned long long)n;
    c->state = 1;
    pump_send(c);
    return 0;
}

/* Parses answers in c->in; returns -1 on a protocol error. */
static int parse_answers(conn *c, stats *st)
{
    size_t off = 0;
    while (c->ki < c->nk) {
        char *p = c->in + off, *end;
        size_t avail = c->in_len - off, head, body = 0;
        int status, kind = c->kinds[c->ki];
        char *cl;
        if (avail < 12) break;
        end = memmem(p, avail, "\r\n\r\n", 4);
        if (!end) break;
        head = (size_t)(end + 4 - p);
        if (memcmp(p, "HTTP/1.1 ", 9) != 0) return -1;
        status = atoi(p + 9);
        if (status != expect_status[kind]) {
            fprintf(stderr, "soak: expected %d for kind %d, got %.*s\n", expect_status[kind], kind, 40, p);
            return -1;
        }
        cl = memmem(p, head, "\r\nContent-Length: ", 18);
        if (!cl) return -1;
        if (kind != K_HEAD) body = strtoul(cl + 18, NULL, 10);
        if (avail < head + body) break;
        off += head + body;
        c->ki++;
        st->answered++;
        st->by_status[status / 100]++;
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    return 0;
}

static void reconnect(conn *c, stats *st, unsigned long long total, int allow_bad)
{
    st->reconnects++;
    conn_open(c);
    (void)total;
    (void)allow_bad;
}

/* Runs until `total` requests were answered (or the deadline). */
static void run_load(conn *cs, int nconns, unsigned long long total, long long deadline, stats *st, int allow_bad)
{
    struct epoll_event evs[512];
    int i;
    for (i = 0; i < nconns; i++) conn_open(&cs[i]);
    while (st->answered < total && tn_now_ms() < deadline) {
        int n = epoll_wait(g_ep, evs, 512, 100), k;
        for (k = 0; k < n; k++) {
            conn *c = evs[k].data.ptr;
            if (c->fd < 0) continue;
            if (c->state == 0) { /* just connected */
                if (new_batch(c, st, total - (st->sent < total ? st->sent : total), allow_bad) < 0)
                    reconnect(c, st, total, allow_bad);
                continue;
            }
            if (evs[k].events & EPOLLOUT) pump_send(c);
            if (!(evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            for (;;) {
                ssize_t r;
                if (c->in_cap - c->in_len < 65536) {
                    c->in_cap = c->in_cap * 2 + 65536;
                    c->in = realloc(c->in, c->in_cap);
                }
                r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
                if (r > 0) {
                    c->in_len += (size_t)r;
                    continue;
                }
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                /* closed (or reset) by the server: fine only after a bad request */
                if (parse_answers(c, st) < 0) st->errors++;
                if (c->ki < c->nk && !(c->nk && c->kinds[c->nk - 1] == K_BAD)) {
                    fprintf(stderr, "soak: closed after %d of %d answers\n", c->ki, c->nk);
                    st->errors++;
                }
                conn_drop(c, 0);
                break;
            }
            if (c->fd < 0) {
                reconnect(c, st, total, allow_bad);
                continue;
            }
            if (parse_answers(c, st) < 0) {
                st->errors++;
                conn_drop(c, 1);
                reconnect(c, st, total, allow_bad);
                continue;
            }
            if (c->ki == c->nk && c->state == 1) {
                if (c->kinds[c->nk - 1] == K_BAD) {
                    c->state = 2; /* the server closes next */
                } else if (new_batch(c, st, total - (st->sent < total ? st->sent : total), allow_bad) < 0) {
                    reconnect(c, st, total, allow_bad);
                }
            }
        }
    }
    for (i = 0; i < nconns; i++)
        if (cs[i].fd >= 0) conn_drop(&cs[i], 0);
}

static void settle(int want_fds, int wait_ms)
{
    long long end = tn_now_ms() + wait_ms;
    while (tn_now_ms() < end && fd_count() != want_fds) usleep(50000);
    usleep(300000);
}

int main(int argc, char **argv)
{
    unsigned long long requests = 10000000ULL;
    int nconns = 256, seconds = 900, i, st_code, ok = 1, sanitized = 0;
    const char *server = NULL;
    conn *cs;
    stats warm, st;
    long rss0, rss1, rss2;
    int fds0, fds1, fds2;
    long long t0, t1;
    struct rlimit rl;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--requests") == 0 && i + 1 < argc) requests = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc) nconns = atoi(argv[++i]);
        else if (strcmp(argv[i], "--depth") == 0 && i + 1 < argc) g_depth = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) seconds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--sanitized") == 0) sanitized = 1;
        else server = argv[i];
    }
    if (!server || nconns < 1 || g_depth < 1 || g_depth > 64)
        die("usage: soak [--requests N] [--conns C] [--depth D] [--seconds S] [--sanitized] SERVER");
    signal(SIGPIPE, SIG_IGN);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    g_ep = epoll_create1(0);
    cs = calloc((size_t)nconns, sizeof *cs);
    start_server(server);
    usleep(200000);
    rss0 = rss_kib();
    fds0 = fd_count();
    printf("soak: server %s (pid %d), idle: RSS %ld KiB, %d descriptors\n", server, (int)g_pid, rss0, fds0);

    memset(&warm, 0, sizeof warm);
    run_load(cs, nconns, 200000, tn_now_ms() + 120000, &warm, 1);
    if (warm.errors) die("%llu protocol errors in the warm-up", warm.errors);
    settle(fds0, 10000);
    rss1 = rss_kib();
    fds1 = fd_count();
    printf("soak: after a warm-up of %llu requests: RSS %ld KiB, %d descriptors (the starting level)\n",
           warm.answered, rss1, fds1);

    memset(&st, 0, sizeof st);
    t0 = tn_now_ms();
    run_load(cs, nconns, requests, t0 + (long long)seconds * 1000, &st, 1);
    t1 = tn_now_ms();
    settle(fds1, 10000);
    rss2 = rss_kib();
    fds2 = fd_count();
    printf("soak: %llu requests answered in %.1f s (%.0f/s) over %d connections, %d pipelined\n", st.answered,
           (t1 - t0) / 1000.0, st.answered * 1000.0 / (double)(t1 - t0 ? t1 - t0 : 1), nconns, g_depth);
    printf("soak: answers 2xx %llu, 4xx %llu (of them bad requests refused with 400 and a close: %llu), 5xx %llu\n",
           st.by_status[2], st.by_status[4], st.bad_sent, st.by_status[5]);
    printf("soak: batches abandoned half sent: %llu; reconnections: %llu; protocol errors: %llu\n", st.aborted,
           st.reconnects, st.errors);
    printf("soak: at the end: RSS %ld KiB (%+ld KiB from the starting level), %d descriptors (%+d)\n", rss2,
           rss2 - rss1, fds2, fds2 - fds1);
    if (st.answered < requests) {
        printf("soak: FAIL only %llu of %llu requests answered in %d s\n", st.answered, requests, seconds);
        ok = 0;
    }
    if (st.errors) {
        printf("soak: FAIL %llu protocol errors\n", st.errors);
        ok = 0;
    }
    if (rss2 - rss1 > 1024 && !sanitized) {
        printf("soak: FAIL RSS grew by %ld KiB (limit 1024)\n", rss2 - rss1);
        ok = 0;
    }
    if (fds2 != fds1) {
        printf("soak: FAIL %d descriptors open, %d at the start\n", fds2, fds1);
        ok = 0;
    }
    kill(g_pid, SIGTERM);
    if (waitpid(g_pid, &st_code, 0) != g_pid || !WIFEXITED(st_code) || WEXITSTATUS(st_code) != 0) {
        printf("soak: FAIL the server did not exit cleanly on SIGTERM\n");
        ok = 0;
    }
    printf("soak: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
