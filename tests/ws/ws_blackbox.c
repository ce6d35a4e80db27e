/*
 * tests/ws/ws_blackbox.c - a frame-level black-box WebSocket (RFC 6455) test
 * client, modelled on the Autobahn|Testsuite case groups.
 *
 *     build/ws_blackbox build/chat          start the server and test it
 *     build/ws_blackbox --port N            test a server already running
 *                                           on 127.0.0.1:N
 *     build/ws_blackbox --fixture build/ws_fixture   the API cases that
 *                                           chat.c does not reach (auth
 *                                           before the upgrade, subprotocols,
 *                                           pings, idle, drain, on_close)
 *
 * The server must follow examples/chat.c's contract: GET /ws/echo echoes
 * every message (16 MiB limit), GET /ws/chat?room=R relays text to the
 * room, POST /rooms/R publishes its body, GET / is an HTML page. Started
 * by the harness, it gets PORT, HOST=127.0.0.1 and CHOPIN_WORKERS=2 (unless
 * set). Each case opens its own connections, speaks raw frames and names
 * the RFC 6455 section it checks, with the Autobahn group in brackets:
 *     ok - 5.2 [3.1] RSV1 set on a text frame: close 1002
 * Every frame the server sends is checked too: never masked (5.1), RSV
 * bits clear, control frames whole and short (5.5). Last line:
 * "N passed, N failed". WS_ONLY=text runs only the cases whose name
 * contains text; WS_SLOW=0 skips the slow-subscriber case; WS_SANITIZED=1
 * (a sanitizer build) skips its memory bound.
 * Nothing waits forever: every wait is a poll() with a timeout, and alarm()
 * guards the whole run.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "../testnet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 5000
#define CLOSE_TIMEOUT_MS 3000
#define QUIET_MS 300         /* "nothing arrives": how long we listen */
#define START_TIMEOUT_MS 30000 /* valgrind on a loaded 2-core machine can take over 10 s */
#define WATCHDOG_SECONDS 240
#define MAX_FRAME (40u << 20)

/* ---- utilities ---- */

static char g_reason[1024];
static int fail(const char *fmt, ...)
{
    va_list ap;
    if (g_reason[0]) return -1; /* the first reason is the most precise */
    va_start(ap, fmt);
    vsnprintf(g_reason, sizeof g_reason, fmt, ap);
    va_end(ap);
    return -1;
}

static uint32_t g_rand = 2463534242u;
static uint32_t rnd(void)
{
    return tn_xorshift32(&g_rand);
}

/* ---- the server ---- */

static int g_port;
static pid_t g_pid = -1;
static int g_reaped, g_status; /* the server exited and was waited for */

/* A connection to the server, Nagle's delay off, non-blocking once made. */
static int connect_port(int port)
{
    int fd = tn_connect(port);
    if (fd < 0) return -1;
    tn_nodelay(fd);
    tn_nonblock(fd);
    return fd;
}

static int server_alive(void)
{
    if (g_pid <= 0) return 1; /* not ours: assume so */
    if (g_reaped) return 0;
    if (waitpid(g_pid, &g_status, WNOHANG) == g_pid) g_reaped = 1;
    return !g_reaped;
}

static int start_server(const char *path)
{
    g_port = tn_free_port();
    fflush(stdout);
    g_pid = fork();
    if (g_pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        tn_server_env(g_port);
        setenv("CHOPIN_WORKERS", getenv("CHOPIN_WORKERS") ? getenv("CHOPIN_WORKERS") : "2", 1);
        execl(path, path, (char *)NULL);
        _exit(127);
    }
    printf("# server %s (pid %d) on 127.0.0.1:%d\n", path, (int)g_pid, g_port);
    switch (tn_wait_listening(g_port, g_pid, START_TIMEOUT_MS, &g_status)) {
    case 0:
        return 0;
    case 1:
        g_reaped = 1;
        return fail("the server exited before listening");
    default:
        break;
    }
    /* never leave it behind: it holds the suite's output pipe open */
    kill(g_pid, SIGKILL);
    waitpid(g_pid, &g_status, 0);
    g_reaped = 1;
    return fail("the server did not listen within %d ms", START_TIMEOUT_MS);
}

static long server_rss_kib(void)
{
    return tn_proc_rss_kib(g_pid);
}

/* ---- connections ---- */

typedef struct conn {
    int fd;
    unsigned char *in; /* received, not yet consumed */
    size_t len, cap;
    int eof;
} conn;

typedef struct frame {
    int fin, rsv, opcode;
    unsigned char *data; /* malloc'ed, NUL-terminated */
    size_t len;
} frame;

static void conn_close(conn *c)
{
    if (c->fd >= 0) close(c->fd);
    free(c->in);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

/* Waits for more bytes; returns 1 (got some), 0 (EOF or reset), -1
   (timeout). */
static int conn_fill(conn *c, long timeout_ms)
{
    long long deadline = tn_now_ms() + timeout_ms;
    for (;;) {
        struct pollfd p = {c->fd, POLLIN, 0};
        long left = (long)(deadline - tn_now_ms());
        ssize_t n;
        if (c->eof) return 0;
        if (left < 0) return -1;
        if (poll(&p, 1, (int)left) <= 0) continue;
        if (c->cap - c->len < 65536) {
            c->cap = c->cap ? c->cap * 2 : 131072;
            c->in = (unsigned char *)realloc(c->in, c->cap);
        }
        n = recv(c->fd, c->in + c->len, c->cap - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            return 1;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            c->eof = 1;
            return 0;
        }
    }
}

static int send_all(conn *c, const void *data, size_t len)
{
    const char *p = (const char *)data;
    long long deadline = tn_now_ms() + IO_TIMEOUT_MS * 4;
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd pf = {c->fd, POLLOUT, 0};
            if (tn_now_ms() > deadline) return fail("send: timed out");
            poll(&pf, 1, 100);
            continue;
        }
        return fail("send: %s", strerror(errno));
    }
    return 0;
}

/* Sends one byte at a time (each its own segment: TCP_NODELAY). */
static int send_chopped(conn *c, const unsigned char *data, size_t len, long gap_ms)
{
    size_t i;
    for (i = 0; i < len; i++) {
        if (send_all(c, data + i, 1) < 0) return -1;
        if (gap_ms) tn_sleep_ms(gap_ms);
    }
    return 0;
}

/* A client frame (masked unless asked not to) into a new buffer. */
static unsigned char *build_frame(unsigned b0, const void *payload, size_t len, int masked, size_t *out_len)
{
    unsigned char *f = (unsigned char *)malloc(len + 14), key[4];
    const unsigned char *p = (const unsigned char *)payload;
    size_t o = 0, i;
    unsigned mb = masked ? 0x80u : 0u;
    uint32_t r = rnd();
    memcpy(key, &r, 4);
    f[o++] = (unsigned char)b0;
    if (len < 126) {
        f[o++] = (unsigned char)(mb | len);
    } else if (len <= 0xFFFF) {
        f[o++] = (unsigned char)(mb | 126);
        f[o++] = (unsigned char)(len >> 8);
        f[o++] = (unsigned char)len;
    } else {
        f[o++] = (unsigned char)(mb | 127);
        for (i = 0; i < 8; i++) f[o++] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    }
    if (masked) {
        memcpy(f + o, key, 4);
        o += 4;
    }
    for (i = 0; i < len; i++) f[o + i] = masked ? (unsigned char)(p[i] ^ key[i & 3]) : p[i];
    *out_len = o + len;
    return f;
}

static int send_frame(conn *c, unsigned b0, const void *payload, size_t len)
{
    size_t n;
    unsigned char *f = build_frame(b0, payload, len, 1, &n);
    int r = send_all(c, f, n);
    free(f);
    return r;
}

static int send_close(conn *c, int code, const char *reason)
{
    unsigned char p[125];
    size_t n = 0;
    if (code >= 0) {
        p[0] = (unsigned char)(code >> 8);
        p[1] = (unsigned char)code;
        n = 2;
        if (reason) {
            memcpy(p + 2, reason, strlen(reason));
            n += strlen(reason);
        }
    }
    return send_frame(c, 0x88, p, n);
}

static char g_head[4096]; /* the last handshake's response head */

static const char *g_keys[3][2] = {
    {"dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}, /* RFC 6455 1.3 */
    {"AQIDBAUGBwgJCgsMDQ4PEA==", "C/0nmHhBztSRGR1CwL6Tf4ZjwpY="},
    {"x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="}, /* computed apart (Python hashlib) */
};

/* Reads an HTTP response head; returns its status and copies the head into
   head (cap bytes); what follows stays in c->in. */
static int read_head(conn *c, char *head, size_t cap)
{
    long long deadline = tn_now_ms() + IO_TIMEOUT_MS;
    for (;;) {
        unsigned char *end = c->len >= 4 ? (unsigned char *)memmem(c->in, c->len, "\r\n\r\n", 4) : NULL;
        if (end) {
            size_t hl = (size_t)(end - c->in) + 4;
            int status = 0;
            snprintf(head, cap, "%.*s", (int)hl, (char *)c->in);
            memmove(c->in, c->in + hl, c->len - hl);
            c->len -= hl;
            if (sscanf(head, "HTTP/1.1 %d", &status) != 1) return fail("bad status line: %.40s", head);
            return status;
        }
        if (tn_now_ms() > deadline) return fail("no response head within %d ms", IO_TIMEOUT_MS);
        if (conn_fill(c, IO_TIMEOUT_MS) == 0) return fail("connection closed before a response head");
    }
}

/* The value of a header line in a head (first match, any case), or NULL. */
static const char *head_value(const char *head, const char *name, char *out, size_t cap)
{
    const char *p = strstr(head, "\r\n");
    size_t n = strlen(name);
    while (p && p[2] != '\r') {
        const char *line = p + 2, *eol = strstr(line, "\r\n");
        if (!eol) break;
        if ((size_t)(eol - line) > n && line[n] == ':' && strncasecmp(line, name, n) == 0) {
            const char *v = line + n + 1;
            while (*v == ' ') v++;
            snprintf(out, cap, "%.*s", (int)(eol - v), v);
            return out;
        }
        p = eol;
    }
    return NULL;
}

/* Connects and performs the opening handshake on path; extra is added to
   the request (each line ending in CRLF), pipelined is sent in the same
   write right after it. Returns 0 and an open connection. */
static int ws_open_with(conn *c, const char *path, const char *extra, const void *pipelined, size_t plen)
{
    char req[2048], head[4096], v[256];
    int which = (int)(rnd() % 3), status;
    size_t n;
    c->in = NULL;
    c->len = c->cap = 0;
    c->eof = 0;
    c->fd = connect_port(g_port);
    if (c->fd < 0) return fail("connect: %s", strerror(errno));
    n = (size_t)snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                         path, g_keys[which][0], extra ? extra : "");
    if (pipelined) {
        memcpy(req + n, pipelined, plen);
        n += plen;
    }
    if (send_all(c, req, n) < 0) return -1;
    status = read_head(c, head, sizeof head);
    if (status < 0) return -1;
    memcpy(g_head, head, sizeof head);
    if (status != 101) return fail("handshake on %s: status %d, not 101", path, status);
    if (!head_value(head, "Sec-WebSocket-Accept", v, sizeof v) || strcmp(v, g_keys[which][1]) != 0)
        return fail("Sec-WebSocket-Accept %s, want %s", v, g_keys[which][1]);
    if (!head_value(head, "Upgrade", v, sizeof v) || strcasecmp(v, "websocket") != 0)
        return fail("101 without Upgrade: websocket");
    if (!head_value(head, "Connection", v, sizeof v) || !strcasestr(v, "upgrade"))
        return fail("101 without Connection: Upgrade");
    if (head_value(head, "Sec-WebSocket-Extensions", v, sizeof v)) return fail("an extension was negotiated: %s", v);
    return 0;
}

static int ws_open(conn *c, const char *path) { return ws_open_with(c, path, NULL, NULL, 0); }

/* Reads one server frame and checks what the RFC asks of a server's
   frames. Returns 1, 0 at EOF, -1 on a timeout or a bad frame. */
static int read_frame(conn *c, frame *f, long timeout_ms)
{
    long long deadline = tn_now_ms() + timeout_ms;
    memset(f, 0, sizeof *f);
    for (;;) {
        if (c->len >= 2) {
            unsigned b0 = c->in[0], b1 = c->in[1];
            size_t hl = 2, i;
            uint64_t len = b1 & 0x7F;
            if (len == 126) hl = 4;
            if (len == 127) hl = 10;
            if (b1 & 0x80) return fail("the server masked a frame (RFC 6455 5.1)");
            if (c->len >= hl) {
                if (hl == 4) len = (uint64_t)c->in[2] << 8 | c->in[3];
                if (hl == 10)
                    for (len = 0, i = 0; i < 8; i++) len = len << 8 | c->in[2 + i];
                if ((hl == 4 && len < 126) || (hl == 10 && len <= 0xFFFF))
                    return fail("the server's length is not in its shortest form (5.2)");
                if (len > MAX_FRAME) return fail("a server frame of %llu bytes", (unsigned long long)len);
                if (c->len >= hl + len) {
                    f->fin = (b0 & 0x80) != 0;
                    f->rsv = (int)(b0 & 0x70);
                    f->opcode = (int)(b0 & 0x0F);
                    f->len = (size_t)len;
                    f->data = (unsigned char *)malloc(f->len + 1);
                    memcpy(f->data, c->in + hl, f->len);
                    f->data[f->len] = 0;
                    memmove(c->in, c->in + hl + len, c->len - hl - (size_t)len);
                    c->len -= hl + (size_t)len;
                    if (f->rsv) return fail("the server set RSV bits 0x%x (5.2)", f->rsv);
                    if (f->opcode >= 8 && (!f->fin || f->len > 125))
                        return fail("a fragmented or long control frame from the server (5.5)");
                    return 1;
                }
            }
        }
        {
            long left = (long)(deadline - tn_now_ms());
            int r;
            if (left < 0) return -1;
            r = conn_fill(c, left);
            if (r == 0) return 0;
            if (r < 0) return -1;
        }
    }
}

/* The next message (fragments joined, pings answered) or control frame the
   caller wants to see: with want_controls, pings and pongs come back too. */
static int read_message(conn *c, frame *m, long timeout_ms, int want_controls)
{
    frame f;
    int r;
    memset(m, 0, sizeof *m);
    for (;;) {
        r = read_frame(c, &f, timeout_ms);
        if (r <= 0) {
            free(m->data);
            m->data = NULL;
            return r;
        }
        if (f.opcode >= 8) {
            if (want_controls || f.opcode == 8) {
                free(m->data);
                *m = f;
                return 1;
            }
            if (f.opcode == 9) send_frame(c, 0x8A, f.data, f.len);
            free(f.data);
            continue;
        }
        if (f.opcode != 0) {
            m->opcode = f.opcode;
            m->len = 0;
        }
        m->data = (unsigned char *)realloc(m->data, m->len + f.len + 1);
        memcpy(m->data + m->len, f.data, f.len);
        m->len += f.len;
        m->data[m->len] = 0;
        free(f.data);
        if (f.fin) {
            m->fin = 1;
            return 1;
        }
    }
}

/* The next message must be this one. */
static int expect_message(conn *c, int opcode, const void *data, size_t len)
{
    frame m;
    int r = read_message(c, &m, IO_TIMEOUT_MS, 1);
    if (r == 0) return fail("the server closed instead of sending a message");
    if (r < 0) return fail("no message within %d ms", IO_TIMEOUT_MS);
    if (m.opcode != opcode || m.len != len || (len && memcmp(m.data, data, len) != 0)) {
        int rc = fail("got opcode %d, %zu bytes (%.40s), want opcode %d, %zu bytes", m.opcode, m.len,
                      m.opcode == 8 && m.len >= 2 ? "close" : (char *)m.data, opcode, len);
        if (m.opcode == 8 && m.len >= 2) fail("closed with %d", m.data[0] << 8 | m.data[1]);
        free(m.data);
        return rc;
    }
    free(m.data);
    return 0;
}

/* After the server's close frame: the server closes the TCP connection
   (RFC 6455 7.1.1). */
static int expect_eof(conn *c)
{
    long long deadline = tn_now_ms() + CLOSE_TIMEOUT_MS;
    while (tn_now_ms() < deadline) {
        int r = conn_fill(c, CLOSE_TIMEOUT_MS);
        if (r == 0) return 0;
        if (r > 0) c->len = 0; /* nothing should come, but it is not our case */
    }
    return fail("the server kept the TCP connection open %d ms after the close handshake", CLOSE_TIMEOUT_MS);
}

/* The next frame must be a close with this code (-1: no code at all; 0:
   any); then we answer it and the server must close the connection. */
static int expect_close(conn *c, int code)
{
    frame f;
    int r = read_message(c, &f, IO_TIMEOUT_MS, 0), got;
    if (r == 0) return fail("the connection closed without a close frame");
    if (r < 0) return fail("no close frame within %d ms", IO_TIMEOUT_MS);
    if (f.opcode != 8) {
        free(f.data);
        return fail("got a message (opcode %d, %zu bytes) instead of close %d", f.opcode, f.len, code);
    }
    got = f.len >= 2 ? f.data[0] << 8 | f.data[1] : -1;
    free(f.data);
    if (code != 0 && got != code) return fail("closed with %d, want %d", got, code);
    send_close(c, got >= 0 ? got : -1, NULL); /* may fail: the server may be gone */
    g_reason[0] = 0;
    return expect_eof(c);
}

/* Nothing may arrive for QUIET_MS. */
static int expect_quiet(conn *c)
{
    frame f;
    int r = read_frame(c, &f, QUIET_MS);
    if (r > 0) {
        int rc = fail("unexpected frame, opcode %d, %zu bytes", f.opcode, f.len);
        free(f.data);
        return rc;
    }
    if (r == 0) return fail("the connection closed");
    g_reason[0] = 0; /* the timeout is what we wanted */
    return 0;
}

/* A plain HTTP request on a new connection; returns the status, the head
   and (up to cap) the body in out. */
static int http_request(const char *req, size_t len, char *head, size_t head_cap, char *body, size_t body_cap)
{
    conn c;
    int status;
    char v[64];
    size_t want = 0;
    memset(&c, 0, sizeof c);
    c.fd = connect_port(g_port);
    if (c.fd < 0) return fail("connect: %s", strerror(errno));
    if (send_all(&c, req, len) < 0 || (status = read_head(&c, head, head_cap)) < 0) {
        conn_close(&c);
        return -1;
    }
    if (head_value(head, "Content-Length", v, sizeof v)) want = (size_t)strtoul(v, NULL, 10);
    while (c.len < want && conn_fill(&c, IO_TIMEOUT_MS) > 0) {
    }
    if (body) snprintf(body, body_cap, "%.*s", (int)(c.len < want ? c.len : want), (char *)c.in);
    conn_close(&c);
    return status;
}

/* ---- the cases ---- */

typedef struct wcase {
    const char *name;
    int (*fn)(void);
} wcase;


/* A case with one echo connection: open, run, close. */
#define WITH_ECHO(c) WITH_ECHO_PATH(c, "/ws/echo")
#define WITH_ECHO_PATH(c, path)                             \
    conn c;                                                 \
    if (ws_open(&c, path) < 0) return (conn_close(&c), -1)

static int echo_round(conn *c, int opcode, const void *data, size_t len)
{
    if (send_frame(c, 0x80u | (unsigned)opcode, data, len) < 0) return -1;
    return expect_message(c, opcode, data, len);
}

static int done(conn *c, int rc)
{
    conn_close(c);
    return rc;
}

/* 4.x: the opening handshake */

static int hs_request(const char *extra, const char *method, char *head, size_t cap)
{
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "%s /ws/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s\r\n", method, extra,
                     strcmp(method, "POST") == 0 ? "Content-Length: 0\r\n" : "");
    return http_request(req, (size_t)n, head, cap, NULL, 0);
}

#define UPGRADE "Upgrade: websocket\r\nConnection: Upgrade\r\n"
#define KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define V13 "Sec-WebSocket-Version: 13\r\n"

static int case_hs_ok(void)
{
    WITH_ECHO(c);
    return done(&c, echo_round(&c, 1, "hello", 5));
}

static int case_hs_version(void)
{
    char head[4096], v[64];
    int st = hs_request(UPGRADE KEY "Sec-WebSocket-Version: 8\r\n", "GET", head, sizeof head);
    if (st != 426) return fail("version 8: status %d, want 426", st);
    if (!head_value(head, "Sec-WebSocket-Version", v, sizeof v) || strcmp(v, "13") != 0)
        return fail("426 without Sec-WebSocket-Version: 13");
    /* RFC 9110 7.8: the Upgrade it sends is named in Connection too */
    if (!head_value(head, "Upgrade", v, sizeof v) || strcmp(v, "websocket") != 0)
        return fail("426 without Upgrade: websocket");
    if (!head_value(head, "Connection", v, sizeof v) || strcmp(v, "Upgrade") != 0)
        return fail("426 without Connection: Upgrade");
    st = hs_request(UPGRADE KEY, "GET", head, sizeof head);
    if (st != 426) return fail("no version: status %d, want 426", st);
    return 0;
}

static int case_hs_bad_key(void)
{
    char head[4096];
    int st = hs_request(UPGRADE V13, "GET", head, sizeof head);
    if (st != 400) return fail("no key: status %d, want 400", st);
    st = hs_request(UPGRADE "Sec-WebSocket-Key: c2hvcnQ=\r\n" V13, "GET", head, sizeof head);
    if (st != 400) return fail("an 5-byte key: status %d, want 400", st);
    st = hs_request(UPGRADE "Sec-WebSocket-Key: not base64 at all!!!!!\r\n" V13, "GET", head, sizeof head);
    if (st != 400) return fail("a key that is not base64: status %d, want 400", st);
    return 0;
}

static int case_hs_no_connection(void)
{
    char head[4096];
    int st = hs_request("Upgrade: websocket\r\n" KEY V13, "GET", head, sizeof head);
    if (st != 400) return fail("Upgrade without Connection: upgrade: status %d, want 400", st);
    return 0;
}

static int case_hs_not_upgrade(void)
{
    char head[4096];
    int st = hs_request("", "GET", head, sizeof head);
    if (st != 426 && st != 400) return fail("a plain GET on a WebSocket route: status %d, want 426 or 400", st);
    st = hs_request(UPGRADE KEY V13, "POST", head, sizeof head);
    if (st < 400 || st > 499) return fail("POST with an upgrade: status %d, want 4xx", st);
    return 0;
}

static int case_hs_pipelined_frame(void)
{
    size_t n;
    unsigned char *f = build_frame(0x81, "early", 5, 1, &n);
    conn c;
    int rc = ws_open_with(&c, "/ws/echo", NULL, f, n);
    free(f);
    if (rc < 0) return done(&c, -1);
    return done(&c, expect_message(&c, 1, "early", 5));
}

static int case_hs_tokens(void)
{
    char head[4096];
    int st = hs_request("Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n" KEY V13, "GET", head, sizeof head);
    if (st != 101) return fail("Connection: keep-alive, Upgrade and Upgrade: WebSocket: status %d", st);
    return 0;
}

/* 5.x [1.x]: framing, text and binary of every length form */

static int echo_sizes(int opcode, int chopped)
{
    static const size_t sizes[] = {0, 1, 125, 126, 127, 128, 65535, 65536, 200000};
    unsigned char *data = (unsigned char *)malloc(200000);
    size_t i, k;
    WITH_ECHO(c);
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (k = 0; k < sizes[i]; k++) data[k] = (unsigned char)(opcode == 1 ? 'a' + k % 26 : rnd());
        if (chopped && sizes[i] > 200) continue;
        if (chopped) {
            size_t n;
            unsigned char *f = build_frame(0x80u | (unsigned)opcode, data, sizes[i], 1, &n);
            int r = send_chopped(&c, f, n, 0);
            free(f);
            if (r < 0 || expect_message(&c, opcode, data, sizes[i]) < 0) break;
        } else if (echo_round(&c, opcode, data, sizes[i]) < 0) {
            break;
        }
    }
    free(data);
    if (i < sizeof sizes / sizeof sizes[0]) fail("(at %zu bytes)", sizes[i]);
    return done(&c, i < sizeof sizes / sizeof sizes[0] ? -1 : 0);
}
static int case_text_sizes(void) { return echo_sizes(1, 0); }
static int case_binary_sizes(void) { return echo_sizes(2, 0); }
static int case_text_chopped(void) { return echo_sizes(1, 1); }

static int case_many_messages_one_write(void)
{
    unsigned char buf[100 * 20];
    size_t n = 0, i;
    WITH_ECHO(c);
    for (i = 0; i < 100; i++) {
        char msg[16];
        size_t fl;
        unsigned char *f;
        snprintf(msg, sizeof msg, "msg %03zu", i);
        f = build_frame(0x81, msg, 7, 1, &fl);
        memcpy(buf + n, f, fl);
        n += fl;
        free(f);
    }
    if (send_all(&c, buf, n) < 0) return done(&c, -1);
    for (i = 0; i < 100; i++) {
        char msg[16];
        snprintf(msg, sizeof msg, "msg %03zu", i);
        if (expect_message(&c, 1, msg, 7) < 0) return done(&c, -1);
    }
    return done(&c, 0);
}

static int case_unmasked(void)
{
    size_t n;
    unsigned char *f = build_frame(0x81, "hi", 2, 0, &n);
    int r;
    WITH_ECHO(c);
    r = send_all(&c, f, n);
    free(f);
    return done(&c, r < 0 ? -1 : expect_close(&c, 1002));
}

/* 5.5.2/5.5.3 [2.x]: pings and pongs */

static int expect_pong(conn *c, const void *data, size_t len)
{
    frame f;
    int r = read_message(c, &f, IO_TIMEOUT_MS, 1);
    if (r <= 0) return fail("no pong");
    if (f.opcode != 10 || f.len != len || (len && memcmp(f.data, data, len) != 0)) {
        free(f.data);
        return fail("got opcode %d (%zu bytes), want a pong of %zu bytes", f.opcode, f.len, len);
    }
    free(f.data);
    return 0;
}

static int case_ping_empty(void)
{
    WITH_ECHO(c);
    if (send_frame(&c, 0x89, "", 0) < 0) return done(&c, -1);
    return done(&c, expect_pong(&c, "", 0));
}

static int case_ping_125(void)
{
    unsigned char p[125];
    size_t i;
    WITH_ECHO(c);
    for (i = 0; i < 125; i++) p[i] = (unsigned char)i;
    if (send_frame(&c, 0x89, p, 125) < 0) return done(&c, -1);
    return done(&c, expect_pong(&c, p, 125));
}

static int case_ping_126(void)
{
    unsigned char p[126];
    WITH_ECHO(c);
    memset(p, 'x', sizeof p);
    if (send_frame(&c, 0x89, p, 126) < 0) return done(&c, -1);
    return done(&c, expect_close(&c, 1002));
}

static int case_ping_chopped(void)
{
    size_t n;
    unsigned char *f = build_frame(0x89, "Hello, pinged world", 19, 1, &n);
    int r;
    WITH_ECHO(c);
    r = send_chopped(&c, f, n, 1);
    free(f);
    return done(&c, r < 0 ? -1 : expect_pong(&c, "Hello, pinged world", 19));
}

static int case_unsolicited_pong(void)
{
    WITH_ECHO(c);
    if (send_frame(&c, 0x8A, "unasked", 7) < 0) return done(&c, -1);
    return done(&c, echo_round(&c, 1, "after", 5));
}

static int case_ten_pings(void)
{
    int i;
    WITH_ECHO(c);
    for (i = 0; i < 10; i++) {
        char p[8];
        snprintf(p, sizeof p, "ping%d", i);
        if (send_frame(&c, 0x89, p, strlen(p)) < 0) return done(&c, -1);
    }
    for (i = 0; i < 10; i++) {
        char p[8];
        snprintf(p, sizeof p, "ping%d", i);
        if (expect_pong(&c, p, strlen(p)) < 0) return done(&c, -1);
    }
    return done(&c, 0);
}

/* 5.2 [3.x]: reserved bits */

static int rsv_case(unsigned b0, int echo_first)
{
    WITH_ECHO(c);
    if (echo_first && echo_round(&c, 1, "good", 4) < 0) return done(&c, -1);
    if (send_frame(&c, b0, "x", 1) < 0) return done(&c, -1);
    if (echo_first) send_frame(&c, 0x89, "", 0); /* must not be answered */
    return done(&c, expect_close(&c, 1002));
}
static int case_rsv1(void) { return rsv_case(0xC1, 0); }
static int case_rsv2(void) { return rsv_case(0xA1, 1); }
static int case_rsv3(void) { return rsv_case(0x92, 0); }
static int case_rsv_all_ping(void) { return rsv_case(0xF9, 0); }

/* 5.2 [4.x]: opcodes */

static int case_reserved_opcodes(void)
{
    unsigned op;
    for (op = 3; op <= 15; op++) {
        conn c;
        if (op >= 8 && op <= 10) continue;
        if (ws_open(&c, "/ws/echo") < 0) return done(&c, -1);
        if (send_frame(&c, 0x80 | op, "", 0) < 0 || expect_close(&c, 1002) < 0) {
            fail("(opcode %u)", op);
            return done(&c, -1);
        }
        conn_close(&c);
    }
    return 0;
}

/* 5.4 [5.x]: fragmentation */

static int case_fragmented_text(void)
{
    WITH_ECHO(c);
    if (send_frame(&c, 0x01, "frag", 4) < 0 || send_frame(&c, 0x00, "men", 3) < 0 || send_frame(&c, 0x80, "ted", 3) < 0)
        return done(&c, -1);
    return done(&c, expect_message(&c, 1, "fragmented", 10));
}

static int case_fragments_with_ping(void)
{
    WITH_ECHO(c);
    if (send_frame(&c, 0x02, "\x01\x02", 2) < 0 || send_frame(&c, 0x89, "mid", 3) < 0 ||
        send_frame(&c, 0x80, "\x03", 1) < 0)
        return done(&c, -1);
    if (expect_pong(&c, "mid", 3) < 0) return done(&c, -1);
    return done(&c, expect_message(&c, 2, "\x01\x02\x03", 3));
}

static int case_many_fragments(void)
{
    char whole[1001];
    int i;
    WITH_ECHO(c);
    for (i = 0; i < 1000; i++) whole[i] = (char)('A' + i % 26);
    for (i = 0; i < 1000; i++)
        if (send_frame(&c, (i == 999 ? 0x80u : 0u) | (i == 0 ? 1u : 0u), whole + i, 1) < 0) return done(&c, -1);
    return done(&c, expect_message(&c, 1, whole, 1000));
}

static int case_fragmented_control(void)
{
    WITH_ECHO(c);
    if (send_frame(&c, 0x09, "a", 1) < 0) return done(&c, -1);
    return done(&c, expect_close(&c, 1002));
}

static int case_continuation_alone(void)
{
    WITH_ECHO(c);
    if (send_frame(&c, 0x80, "orphan", 6) < 0) return done(&c, -1);
    return done(&c, expect_close(&c, 1002));
}

static int case_new_message_in_fragments(void)
{
    WITH_ECHO(c);
    if (send_frame(&c, 0x01, "one", 3) < 0 || send_frame(&c, 0x81, "two", 3) < 0) return done(&c, -1);
    return done(&c, expect_close(&c, 1002));
}


static int case_fragmented_pong_close(void)
{
    conn c;
    if (ws_open(&c, "/ws/echo") < 0) return done(&c, -1);
    if (send_frame(&c, 0x0A, "a", 1) < 0 || expect_close(&c, 1002) < 0) return done(&c, fail("(a fragmented pong)"));
    conn_close(&c);
    if (ws_open(&c, "/ws/echo") < 0) return done(&c, -1);
    if (send_frame(&c, 0x08, "\x03\xe8", 2) < 0 || expect_close(&c, 1002) < 0)
        return done(&c, fail("(a fragmented close)"));
    return done(&c, 0);
}

static int case_close_too_long(void)
{
    unsigned char p[126];
    WITH_ECHO(c);
    memset(p, 'r', sizeof p);
    p[0] = 0x03;
    p[1] = 0xe8;
    if (send_frame(&c, 0x88, p, sizeof p) < 0) return done(&c, -1);
    return done(&c, expect_close(&c, 1002));
}

static int case_hs_extension_offer(void)
{
    conn c;
    /* offered, never accepted: ws_open_with fails on a Sec-WebSocket-Extensions answer */
    if (ws_open_with(&c, "/ws/echo", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n", NULL, 0) < 0)
        return done(&c, -1);
    return done(&c, echo_round(&c, 1, "plain", 5));
}

/* 8.1 [6.x]: UTF-8 */

static int case_utf8_valid(void)
{
    static const char *texts[] = {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", "\xf0\x9f\x98\x80 emoji",
                                  "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf"};
    size_t i;
    WITH_ECHO(c);
    for (i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (echo_round(&c, 1, texts[i], strlen(texts[i])) < 0) return done(&c, -1);
    return done(&c, 0);
}

/* "Hello-µ@ßöäüàá-UTF-8!!" split into two fragments at every byte. */
static int case_utf8_every_split(void)
{
    static const char text[] = "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!! \xf0\x9f\x98\x80";
    size_t n = sizeof text - 1, cut;
    WITH_ECHO(c);
    for (cut = 0; cut <= n; cut++) {
        if (send_frame(&c, 0x01, text, cut) < 0 || send_frame(&c, 0x80, text + cut, n - cut) < 0 ||
            expect_message(&c, 1, text, n) < 0) {
            fail("(split at %zu)", cut);
            return done(&c, -1);
        }
    }
    return done(&c, 0);
}

static int utf8_bad(const char *text, size_t n, size_t cut)
{
    WITH_ECHO(c);
    if (cut == (size_t)-1) {
        if (send_frame(&c, 0x81, text, n) < 0) return done(&c, -1);
    } else if (send_frame(&c, 0x01, text, cut) < 0 || send_frame(&c, 0x80, text + cut, n - cut) < 0) {
        return done(&c, -1);
    }
    return done(&c, expect_close(&c, 1007));
}

static int case_utf8_invalid(void)
{
    static const char *bad[] = {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited",
                                "\xc0\xaf", "\xe0\x80\xaf", "\xf8\x88\x80\x80\xaf", "\xed\xbf\xbf",
                                "\xf4\x90\x80\x80", "\xfe", "\x80", "ends in\xe2\x82"};
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (utf8_bad(bad[i], strlen(bad[i]), (size_t)-1) < 0) return fail("(sample %zu)", i);
    return 0;
}

static int case_utf8_invalid_every_split(void)
{
    static const char text[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited";
    size_t n = sizeof text - 1, cut;
    for (cut = 0; cut <= n; cut++)
        if (utf8_bad(text, n, cut) < 0) return fail("(split at %zu)", cut);
    return 0;
}

/* [6.4.x]: fail fast: the invalid bytes arrive, the rest of the frame never
   does; the server must close 1007 without waiting for it. */
static int case_utf8_fail_fast(void)
{
    unsigned char payload[64], *f;
    size_t n;
    int r;
    WITH_ECHO(c);
    memset(payload, 'a', sizeof payload);
    memcpy(payload + 4, "\xf4\x90\x80\x80", 4);
    f = build_frame(0x81, payload, sizeof payload, 1, &n);
    r = send_all(&c, f, n - 40); /* head + 24 payload bytes */
    free(f);
    return done(&c, r < 0 ? -1 : expect_close(&c, 1007));
}

/* [9.x] and the route's limit: 16 MiB on /ws/echo, 1 MiB on /ws/chat */

static int case_limit_16mib(void)
{
    size_t n = 16u << 20, i;
    unsigned char *data = (unsigned char *)malloc(n);
    int r;
    WITH_ECHO(c);
    for (i = 0; i < n; i++) data[i] = (unsigned char)i;
    r = echo_round(&c, 2, data, n);
    free(data);
    return done(&c, r);
}

static int case_limit_over(void)
{
    unsigned char head[14] = {0x82, 0x80 | 127, 0, 0, 0, 0, 0x01, 0, 0, 0x01, 1, 2, 3, 4};
    WITH_ECHO(c);
    /* only the head of a 16 MiB + 1 frame: refused before the payload */
    if (send_all(&c, head, sizeof head) < 0) return done(&c, -1);
    return done(&c, expect_close(&c, 1009));
}

static int case_limit_fragments(void)
{
    size_t n = (8u << 20) + 1;
    unsigned char *data = (unsigned char *)calloc(1, n);
    int r;
    WITH_ECHO(c);
    /* 8 MiB + 1, then the head of an 8 MiB continuation: over at its head */
    r = send_frame(&c, 0x02, data, n);
    free(data);
    if (r == 0) {
        unsigned char head[14] = {0x00, 0x80 | 127, 0, 0, 0, 0, 0, 0x80, 0, 0, 9, 9, 9, 9};
        r = send_all(&c, head, sizeof head);
    }
    if (r < 0) return done(&c, -1);
    return done(&c, expect_close(&c, 1009));
}

static int case_chat_limit(void)
{
    size_t n = (1u << 20) + 1;
    char *data = (char *)malloc(n);
    conn c;
    int r;
    memset(data, 'a', n);
    if (ws_open(&c, "/ws/chat?room=limit") < 0) return done(&c, -1);
    r = send_frame(&c, 0x81, data, n);
    free(data);
    return done(&c, r < 0 ? -1 : expect_close(&c, 1009));
}

/* 5.5.1, 7.4 [7.x]: the closing handshake */

static int close_case(int code, const char *reason, int want)
{
    WITH_ECHO(c);
    if (send_close(&c, code, reason) < 0) return done(&c, -1);
    return done(&c, expect_close(&c, want));
}

static int case_close_normal(void) { return close_case(1000, "bye", 1000); }
static int case_close_empty(void) { return close_case(-1, NULL, -1); }

static int case_close_valid_codes(void)
{
    static const int codes[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999};
    size_t i;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (close_case(codes[i], NULL, codes[i]) < 0) return fail("(code %d)", codes[i]);
    return 0;
}

static int case_close_invalid_codes(void)
{
    static const int codes[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
    size_t i;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (close_case(codes[i], NULL, 1002) < 0) return fail("(code %d)", codes[i]);
    return 0;
}

static int case_close_one_byte(void)
{
    WITH_ECHO(c);
    if (send_frame(&c, 0x88, "\x03", 1) < 0) return done(&c, -1);
    return done(&c, expect_close(&c, 1002));
}

static int case_close_long_reason(void)
{
    char reason[124];
    memset(reason, 'r', 123);
    reason[123] = 0;
    return close_case(1000, reason, 1000);
}

static int case_close_bad_reason(void) { return close_case(1000, "\xce\xba\xe1\xbd\xb9\xed\xa0\x80", 1007); }

static int case_close_then_data(void)
{
    WITH_ECHO(c);
    if (send_close(&c, 1000, NULL) < 0 || send_frame(&c, 0x81, "late", 4) < 0 || send_frame(&c, 0x89, "", 0) < 0)
        return done(&c, -1);
    return done(&c, expect_close(&c, 1000)); /* no echo, no pong: the close frame comes first and only */
}

static int case_close_after_fragment(void)
{
    WITH_ECHO(c);
    if (send_frame(&c, 0x01, "half", 4) < 0 || send_close(&c, 1000, NULL) < 0) return done(&c, -1);
    return done(&c, expect_close(&c, 1000));
}

/* The server goes on: a client that leaves without a close costs nothing
   and others are served. */
static int case_abrupt_leave(void)
{
    int i;
    for (i = 0; i < 20; i++) {
        conn c;
        if (ws_open(&c, "/ws/echo") < 0) return done(&c, -1);
        send_frame(&c, 0x01, "unfinished", 10);
        conn_close(&c);
    }
    {
        WITH_ECHO(c);
        return done(&c, echo_round(&c, 1, "still here", 10));
    }
}

/* The chat contract: rooms across workers, POST /rooms/NAME. */

static int case_chat_room(void)
{
    conn a[4], b;
    int i, rc = 0;
    for (i = 0; i < 4; i++)
        if (ws_open(&a[i], "/ws/chat?room=alpha") < 0) return -1;
    if (ws_open(&b, "/ws/chat?room=beta") < 0) return -1;
    tn_sleep_ms(50); /* every member has joined on its worker */
    if (send_frame(&a[0], 0x81, "hello room", 10) < 0) rc = -1;
    for (i = 0; i < 4 && rc == 0; i++)
        if (expect_message(&a[i], 1, "hello room", 10) < 0) rc = fail("(member %d of alpha)", i);
    if (rc == 0) rc = expect_quiet(&b);
    for (i = 0; i < 4; i++) conn_close(&a[i]);
    conn_close(&b);
    return rc;
}

static int case_chat_post(void)
{
    conn a[3];
    char req[256], head[2048];
    int i, rc = 0, st, n;
    for (i = 0; i < 3; i++)
        if (ws_open(&a[i], "/ws/chat?room=news") < 0) return -1;
    tn_sleep_ms(50);
    n = snprintf(req, sizeof req,
                 "POST /rooms/news HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nextra!!!!");
    st = http_request(req, (size_t)n, head, sizeof head, NULL, 0);
    if (st != 204) rc = fail("POST /rooms/news: status %d, want 204", st);
    for (i = 0; i < 3 && rc == 0; i++)
        if (expect_message(&a[i], 1, "extra!!!!", 9) < 0) rc = fail("(member %d)", i);
    for (i = 0; i < 3; i++) conn_close(&a[i]);
    return rc;
}

static int case_chat_page(void)
{
    char head[4096], v[128];
    static char body[65536];
    int st = http_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, head, sizeof head, body, sizeof body);
    if (st != 200) return fail("GET /: status %d", st);
    if (!head_value(head, "Content-Type", v, sizeof v) || !strstr(v, "text/html")) return fail("GET /: not text/html");
    if (!strstr(body, "<script") || !strstr(body, "WebSocket")) return fail("GET /: no chat client script");
    return 0;
}

/* A subscriber that stops reading while the room is flooded: the server's
   memory stays bounded, that client is cut, the others keep receiving. */
static int case_slow_subscriber(void)
{
    conn slow, fast, pub;
    char *msg = (char *)malloc(65536);
    long rss0, rss, peak = 0;
    int i, rc = 0, got = 0;
    long long t0;
    if (g_pid <= 0) {
        free(msg);
        printf("# skipped: the server was not started here (its memory cannot be read)\n");
        return 0;
    }
    memset(msg, 'f', 65536);
    slow.fd = -1;
    if (ws_open(&fast, "/ws/chat?room=flood") < 0 || ws_open(&pub, "/ws/chat?room=other") < 0) {
        free(msg);
        return -1;
    }
    /* the slow one never reads (the kernel's buffers on both sides fill,
       a few MiB, then the server's queue) */
    if (ws_open(&slow, "/ws/chat?room=flood") < 0) {
        free(msg);
        return -1;
    }
    tn_sleep_ms(50);
    rss0 = server_rss_kib();
    t0 = tn_now_ms();
    /* 2000 messages of 64 KiB (125 MiB) posted to the room while "fast"
       reads them all and "slow" reads nothing */
    for (i = 0; i < 2000 && rc == 0; i++) {
        char req[256], head[1024];
        int n = snprintf(req, sizeof req, "POST /rooms/flood HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n"), st;
        char *full = (char *)malloc((size_t)n + 65536);
        memcpy(full, req, (size_t)n);
        memcpy(full + n, msg, 65536);
        st = http_request(full, (size_t)n + 65536, head, sizeof head, NULL, 0);
        free(full);
        if (st != 204) rc = fail("POST %d: status %d", i, st);
        for (;;) { /* drain what "fast" has */
            frame m;
            int r = read_message(&fast, &m, got <= i ? 2000 : 0, 0);
            if (r <= 0) break;
            if (m.opcode == 1 && m.len == 65536) got++;
            free(m.data);
            if (got > i) break;
        }
        rss = server_rss_kib();
        if (rss > peak) peak = rss;
    }
    printf("# slow subscriber: server RSS %ld KiB before, peak %ld KiB; the fast client got %d of %d in %lld ms\n",
           rss0, peak, got, i, tn_now_ms() - t0);
    if (rc == 0 && got != 2000) rc = fail("the reading client got %d of 2000 messages", got);
    /* ASan keeps freed memory in quarantine: the bound holds for plain builds */
    if (rc == 0 && peak - rss0 > 16 * 1024 && !getenv("WS_SANITIZED"))
        rc = fail("server memory grew by %ld KiB (bound: 16 MiB)", peak - rss0);
    if (rc == 0) { /* the slow one was cut: reading now, its stream ends */
        long long deadline = tn_now_ms() + 10000;
        size_t total = 0;
        while (tn_now_ms() < deadline) {
            int r = conn_fill(&slow, 1000);
            if (r == 0) break;
            total += slow.len;
            slow.len = 0;
        }
        if (!slow.eof) rc = fail("the client that did not read is still connected (it read %zu bytes since)", total);
        else printf("# the slow client was cut after %zu bytes\n", total);
    }
    free(msg);
    conn_close(&slow);
    conn_close(&fast);
    conn_close(&pub);
    return rc;
}


/* 7.1.2 and the server's graceful stop: on SIGTERM every WebSocket gets
   close 1001; once the clients have answered, the server exits (0) without
   waiting out its grace period. Runs last: the server is gone after it. */
static int case_graceful_shutdown(void)
{
    conn c[3];
    int i, rc = 0;
    long long t0;
    if (g_pid <= 0) {
        printf("# skipped: the server was not started here\n");
        return 0;
    }
    for (i = 0; i < 3; i++)
        if (ws_open(&c[i], i ? "/ws/chat?room=bye" : "/ws/echo") < 0) return -1;
    if (echo_round(&c[0], 1, "before", 6) < 0) return -1;
    t0 = tn_now_ms();
    kill(g_pid, SIGTERM);
    for (i = 0; i < 3 && rc == 0; i++)
        if (expect_close(&c[i], 1001) < 0) rc = fail("(client %d)", i);
    for (i = 0; i < 3; i++) conn_close(&c[i]);
    while (rc == 0 && server_alive() && tn_now_ms() - t0 < 5000) tn_sleep_ms(20);
    if (rc == 0 && server_alive()) rc = fail("the server still runs 5 s after SIGTERM with every WebSocket closed");
    if (rc == 0 && (!WIFEXITED(g_status) || WEXITSTATUS(g_status) != 0))
        rc = fail("the server ended with status 0x%x", (unsigned)g_status);
    if (rc == 0) printf("# the server exited %lld ms after SIGTERM\n", tn_now_ms() - t0);
    return rc;
}


/* ---- the fixture's cases (--fixture: tests/ws/fixture.c) ---- */

static long stat_of(const char *name)
{
    char head[2048], body[512], key[32];
    const char *p;
    if (http_request("GET /stats HTTP/1.1\r\nHost: x\r\n\r\n", 32, head, sizeof head, body, sizeof body) != 200) return -1;
    snprintf(key, sizeof key, "%s=", name);
    p = strstr(body, key);
    return p ? atol(p + strlen(key)) : -1;
}

static int fx_auth(void)
{
    char head[4096];
    char req[512];
    int n = snprintf(req, sizeof req, "GET /secure/ws HTTP/1.1\r\nHost: x\r\n" UPGRADE KEY V13 "\r\n"), st;
    conn c;
    st = http_request(req, (size_t)n, head, sizeof head, NULL, 0);
    if (st != 401) return fail("no token: status %d, want 401 from the group's middleware", st);
    if (ws_open_with(&c, "/secure/ws", "Authorization: Bearer sesame\r\n", NULL, 0) < 0) return done(&c, -1);
    return done(&c, echo_round(&c, 1, "let in", 6));
}

static int fx_handler(void)
{
    char head[4096], req[512];
    int n = snprintf(req, sizeof req, "GET /ws/handler HTTP/1.1\r\nHost: x\r\n" UPGRADE KEY V13 "\r\n"), st;
    conn c;
    st = http_request(req, (size_t)n, head, sizeof head, NULL, 0);
    if (st != 403) return fail("the handler's refusal: status %d, want 403", st);
    if (ws_open(&c, "/ws/handler?ok=1") < 0) return done(&c, -1);
    return done(&c, echo_round(&c, 2, "\x01\x02", 2));
}

static int proto_case(const char *offer, const char *want)
{
    char line[128], v[128];
    conn c;
    int has;
    snprintf(line, sizeof line, "Sec-WebSocket-Protocol: %s\r\n", offer);
    if (ws_open_with(&c, "/ws/proto", offer ? line : NULL, NULL, 0) < 0) return done(&c, -1);
    has = head_value(g_head, "Sec-WebSocket-Protocol", v, sizeof v) != NULL;
    if (*want && (!has || strcmp(v, want) != 0)) return done(&c, fail("offered %s: chose %s, want %s", offer, has ? v : "none", want));
    if (!*want && has) return done(&c, fail("offered %s: chose %s, want none", offer, v));
    snprintf(line, sizeof line, "protocol:%s", want);
    return done(&c, expect_message(&c, 1, line, strlen(line)));
}

static int fx_protocols(void)
{
    if (proto_case("v1.chat, v2.chat", "v2.chat") < 0) return -1;
    if (proto_case("v1.chat", "v1.chat") < 0) return -1;
    if (proto_case("mqtt", "") < 0) return -1;
    return proto_case("V2.CHAT", ""); /* names are case-sensitive */
}

static int fx_ping(void)
{
    long long t0 = tn_now_ms();
    int pings = 0;
    frame f;
    WITH_ECHO_PATH(c, "/ws/ping");
    /* answering: pings keep coming and the connection stays */
    while (tn_now_ms() - t0 < 800) {
        int r = read_frame(&c, &f, 300);
        if (r == 0) return done(&c, fail("cut although every ping was answered"));
        if (r < 0) continue;
        if (f.opcode == 9) {
            pings++;
            send_frame(&c, 0x8A, f.data, f.len);
        }
        free(f.data);
    }
    g_reason[0] = 0;
    if (pings < 3) return done(&c, fail("%d pings in 800 ms, want one every 150 ms", pings));
    if (echo_round(&c, 1, "alive", 5) < 0) return done(&c, -1);
    /* silent: cut within the pong deadline */
    t0 = tn_now_ms();
    for (;;) {
        int r = read_frame(&c, &f, 1500);
        if (r == 0) break;
        if (r < 0) return done(&c, fail("still connected 1.5 s after the pongs stopped"));
        free(f.data);
    }
    printf("# %d pings answered; cut %lld ms after the pongs stopped\n", pings, tn_now_ms() - t0);
    return done(&c, 0);
}

static int fx_idle(void)
{
    long long t0;
    int i;
    WITH_ECHO_PATH(c, "/ws/idle");
    for (i = 0; i < 6; i++) { /* a frame every 100 ms keeps it open */
        tn_sleep_ms(100);
        if (echo_round(&c, 1, "tick", 4) < 0) return done(&c, -1);
    }
    t0 = tn_now_ms();
    if (expect_close(&c, 1001) < 0) return done(&c, -1);
    if (tn_now_ms() - t0 < 250) return done(&c, fail("closed %lld ms into 300 ms of silence", tn_now_ms() - t0));
    return done(&c, 0);
}

static int fx_flood(void)
{
    long expect = 0, rss0, peak = 0;
    frame m;
    WITH_ECHO_PATH(c, "/ws/flood?mib=64");
    rss0 = server_rss_kib();
    tn_sleep_ms(300); /* not reading: the server's queue goes over its bound */
    for (;;) {
        long n;
        int r = read_message(&c, &m, IO_TIMEOUT_MS, 0);
        if (r <= 0) return done(&c, fail("the flood stopped after %ld messages", expect));
        if (m.opcode == 1) {
            long drains = strncmp((char *)m.data, "done drains=", 12) == 0 ? atol((char *)m.data + 12) : -1;
            free(m.data);
            if (expect != 1024) return done(&c, fail("done after %ld messages, want 1024", expect));
            if (drains < 1) return done(&c, fail("on_drain never ran: backpressure did not engage"));
            printf("# 64 MiB in 1024 messages, on_drain ran %ld times, server RSS grew %ld KiB at most\n", drains,
                   peak - rss0);
            break;
        }
        memcpy(&n, m.data, sizeof n);
        free(m.data);
        if (m.len != 65536 || n != expect) return done(&c, fail("message %ld: %zu bytes numbered %ld", expect, m.len, n));
        expect++;
        if (expect % 64 == 0) {
            long rss = server_rss_kib();
            if (rss > peak) peak = rss;
        }
    }
    if (g_pid > 0 && !getenv("WS_SANITIZED") && peak - rss0 > 16 * 1024)
        return done(&c, fail("server memory grew by %ld KiB for a 64 MiB flood", peak - rss0));
    return done(&c, 0);
}

static int fx_server_close(void)
{
    frame f;
    int r;
    WITH_ECHO_PATH(c, "/ws/closer");
    if (send_frame(&c, 0x81, "close", 5) < 0) return done(&c, -1);
    r = read_message(&c, &f, IO_TIMEOUT_MS, 0);
    if (r <= 0 || f.opcode != 8) return done(&c, fail("no close frame"));
    if (f.len != 7 || (f.data[0] << 8 | f.data[1]) != 4001 || memcmp(f.data + 2, "asked", 5) != 0) {
        free(f.data);
        return done(&c, fail("the close frame is not 4001 \"asked\""));
    }
    free(f.data);
    /* a message after the server's close is not answered; our close is */
    send_frame(&c, 0x81, "late", 4);
    send_close(&c, 4001, NULL);
    return done(&c, expect_eof(&c));
}

static int fx_on_close_codes(void)
{
    long a0 = stat_of("1006"), b0 = stat_of("1000"), opens0 = stat_of("opens"), closes;
    conn c;
    if (ws_open(&c, "/ws/echo") < 0) return done(&c, -1);
    conn_close(&c); /* gone without a close frame */
    if (ws_open(&c, "/ws/echo") < 0) return done(&c, -1);
    if (send_close(&c, 1000, NULL) < 0 || expect_close(&c, 1000) < 0) return done(&c, -1);
    conn_close(&c);
    tn_sleep_ms(100);
    closes = stat_of("closes");
    if (stat_of("opens") != opens0 + 2) return fail("on_open ran %ld times for 2 connections", stat_of("opens") - opens0);
    if (stat_of("1006") != a0 + 1) return fail("a client that vanished: on_close 1006 ran %ld times", stat_of("1006") - a0);
    if (stat_of("1000") != b0 + 1) return fail("a closing handshake: on_close 1000 ran %ld times", stat_of("1000") - b0);
    if (closes != stat_of("opens")) return fail("%ld opens but %ld closes", stat_of("opens"), closes);
    return 0;
}

static const wcase g_fixture_cases[] = {
    {"4.2 upgrade after middleware: bearer auth refuses (401), then lets in", fx_auth},
    {"4.2 ch_ws_upgrade from a handler that may refuse (403)", fx_handler},
    {"4.2.2 subprotocols: the server's first choice among those offered, case-sensitive", fx_protocols},
    {"5.5.2 automatic pings; a client that stops answering is cut", fx_ping},
    {"idle timeout: close 1001 after 300 ms without a frame", fx_idle},
    {"backpressure: 64 MiB sent only as fast as read (ch_ws_send 1, on_drain), memory flat", fx_flood},
    {"7.1.2 the server's close: 4001 with its reason, then the client's answer", fx_server_close},
    {"on_open and on_close run once each, with 1000 or 1006", fx_on_close_codes},
};

/* ---- the runner ---- */


static const wcase g_cases[] = {
    {"4.2.1 [1.1] handshake: 101 with the accept key, then an echo", case_hs_ok},
    {"4.2.2 handshake: version 8 or none gets 426 and Sec-WebSocket-Version: 13", case_hs_version},
    {"4.2.1 handshake: a missing or malformed key gets 400", case_hs_bad_key},
    {"4.2.1 handshake: Upgrade without Connection: upgrade gets 400", case_hs_no_connection},
    {"4.2.1 handshake: a plain GET gets 426 or 400, a POST 4xx", case_hs_not_upgrade},
    {"4.2.1 handshake: header tokens in any case and inside lists", case_hs_tokens},
    {"4.2.2 handshake: a frame in the same packet as the request", case_hs_pipelined_frame},
    {"9.1 [12, 13] permessage-deflate offered: no extension is negotiated", case_hs_extension_offer},
    {"5.2 [1.1] text of 0 to 200000 bytes, every length form", case_text_sizes},
    {"5.2 [1.2] binary of 0 to 200000 bytes, every length form", case_binary_sizes},
    {"5.2 [1.1.8] text frames sent one byte at a time", case_text_chopped},
    {"5.2 100 messages in one write, answered in order", case_many_messages_one_write},
    {"5.1 an unmasked client frame: close 1002", case_unmasked},
    {"5.5.2 [2.1] ping without payload: pong", case_ping_empty},
    {"5.5.2 [2.4] ping with 125 bytes: pong with them", case_ping_125},
    {"5.5 [2.5] ping with 126 bytes: close 1002", case_ping_126},
    {"5.5.2 [2.6] ping sent one byte at a time: pong", case_ping_chopped},
    {"5.5.3 [2.7] an unsolicited pong is ignored", case_unsolicited_pong},
    {"5.5.2 [2.10] ten pings, ten pongs in order", case_ten_pings},
    {"5.2 [3.1] RSV1 on a text frame: close 1002", case_rsv1},
    {"5.2 [3.2] RSV2 after a good echo: close 1002, no pong", case_rsv2},
    {"5.2 [3.3] RSV3 on a binary frame: close 1002", case_rsv3},
    {"5.2 [3.7] every RSV bit on a ping: close 1002", case_rsv_all_ping},
    {"5.2 [4.1, 4.2] reserved opcodes 3-7 and 11-15: close 1002", case_reserved_opcodes},
    {"5.4 [5.3] text in three fragments: one message", case_fragmented_text},
    {"5.4 [5.6] a ping between fragments: pong, then the message", case_fragments_with_ping},
    {"5.4 [5.19] 1000 fragments of one byte", case_many_fragments},
    {"5.4 [5.1] a fragmented ping: close 1002", case_fragmented_control},
    {"5.4 [5.2] a fragmented pong, a fragmented close: close 1002", case_fragmented_pong_close},
    {"5.4 [5.9] a continuation with nothing to continue: close 1002", case_continuation_alone},
    {"5.4 [5.18] a new text frame inside a fragmented one: close 1002", case_new_message_in_fragments},
    {"8.1 [6.2] valid UTF-8 text of 2, 3 and 4-byte characters", case_utf8_valid},
    {"8.1 [6.2.3] valid UTF-8 split into two fragments at every byte", case_utf8_every_split},
    {"8.1 [6.3, 6.5-6.21] invalid UTF-8: close 1007", case_utf8_invalid},
    {"8.1 [6.3.2] invalid UTF-8 split into two fragments at every byte: close 1007", case_utf8_invalid_every_split},
    {"8.1 [6.4.1] fail fast: close 1007 before the rest of the frame", case_utf8_fail_fast},
    {"10.4 [9.1.6] a 16 MiB binary message is echoed", case_limit_16mib},
    {"10.4 a 16 MiB + 1 frame head: close 1009 before its payload", case_limit_over},
    {"10.4 fragments that add up over 16 MiB: close 1009", case_limit_fragments},
    {"10.4 /ws/chat's 1 MiB limit: close 1009", case_chat_limit},
    {"5.5.1 [7.1.1] close 1000: the server answers 1000 and closes TCP", case_close_normal},
    {"5.5.1 [7.3.1] close without a payload: answered without one", case_close_empty},
    {"7.4.1 [7.7] every code a client may send is echoed", case_close_valid_codes},
    {"7.4.1 [7.9] codes 0, 999, 1004-1006, 1015, 1016, 1100, 2000, 2999, 5000: close 1002", case_close_invalid_codes},
    {"5.5.1 [7.3.2] a close payload of one byte: close 1002", case_close_one_byte},
    {"5.5.1 [7.3.5] a 123-byte reason", case_close_long_reason},
    {"5.5 [7.3.6] a close payload of 126 bytes: close 1002", case_close_too_long},
    {"5.5.1 [7.5.1] a close reason that is not UTF-8: close 1007", case_close_bad_reason},
    {"5.5.1 [7.1.3] data and ping after close are ignored", case_close_then_data},
    {"5.5.1 [7.1.6] close in the middle of a fragmented message", case_close_after_fragment},
    {"7.1.7 clients that leave mid-message cost nothing", case_abrupt_leave},
    {"chat: a text message reaches every member of the room, and no other", case_chat_room},
    {"chat: POST /rooms/NAME gives 204 and publishes the body", case_chat_post},
    {"chat: GET / is an HTML page with a WebSocket client", case_chat_page},
    {"backpressure: a subscriber that does not read is cut, memory bounded, others served", case_slow_subscriber},
    {"7.1.2 graceful stop: SIGTERM sends close 1001, the server exits once answered", case_graceful_shutdown},
};

int main(int argc, char **argv)
{
    const char *only = getenv("WS_ONLY");
    const wcase *cases = g_cases;
    size_t ncases = sizeof g_cases / sizeof g_cases[0], i;
    int passed = 0, failed = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    alarm(WATCHDOG_SECONDS);
    if (argc == 3 && strcmp(argv[1], "--port") == 0) {
        g_port = atoi(argv[2]);
    } else if (argc == 3 && strcmp(argv[1], "--fixture") == 0) {
        cases = g_fixture_cases;
        ncases = sizeof g_fixture_cases / sizeof g_fixture_cases[0];
        if (start_server(argv[2]) < 0) {
            printf("FAIL - start: %s\n0 passed, 1 failed\n", g_reason);
            return 1;
        }
    } else if (argc == 2) {
        if (start_server(argv[1]) < 0) {
            printf("FAIL - start: %s\n0 passed, 1 failed\n", g_reason);
            return 1;
        }
    } else {
        fprintf(stderr, "usage: %s SERVER | --port N\n", argv[0]);
        return 2;
    }
    for (i = 0; i < ncases; i++) {
        const wcase *k = &cases[i];
        long long t0 = tn_now_ms();
        int rc;
        if (only && !strstr(k->name, only)) continue;
        if (getenv("WS_SLOW") && strcmp(getenv("WS_SLOW"), "0") == 0 && k->fn == case_slow_subscriber) continue;
        g_reason[0] = 0;
        rc = k->fn();
        if (rc == 0 && !server_alive() && k->fn != case_graceful_shutdown) rc = fail("the server died");
        if (rc == 0) {
            passed++;
            printf("ok - %s (%lld ms)\n", k->name, tn_now_ms() - t0);
        } else {
            failed++;
            printf("FAIL - %s: %s\n", k->name, g_reason);
        }
        fflush(stdout);
        if (!server_alive()) break;
    }
    if (g_pid > 0 && !g_reaped) {
        int st;
        kill(g_pid, SIGTERM);
        for (i = 0; i < 100 && waitpid(g_pid, &st, WNOHANG) == 0; i++) tn_sleep_ms(50);
        if (i == 100) {
            kill(g_pid, SIGKILL);
            waitpid(g_pid, &st, 0);
            printf("FAIL - the server did not exit within 5 s of SIGTERM\n");
            failed++;
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            printf("FAIL - the server ended badly (status 0x%x)\n", (unsigned)st);
            failed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
