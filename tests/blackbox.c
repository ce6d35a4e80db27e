/*
 * tests/blackbox.c - black-box HTTP/1.1 tests for a server built on chopin.h
 *
 *     build/blackbox build/bench                   the conformance suite
 *     build/blackbox --fixture build/fixture       the hardening suite
 *
 * The harness starts the server binary named on the command line on a free
 * port (environment PORT=<port> and HOST=127.0.0.1, the rest inherited),
 * talks to it over plain TCP sockets and prints one line per case:
 *
 *     ok - <name>
 *     FAIL - <name>: <reason>
 *
 * and finally "N passed, N failed".  The exit status is 0 when no case
 * failed and 1 otherwise.
 *
 * The conformance suite runs against the example app (examples/bench.c).
 * Each case is named after the rule it checks, "RFC9112-6.3-cl-te-conflict"
 * being RFC 9112 section 6.3; rules of the application itself (its routes)
 * are named after the RFC 9110 method or status they exercise.  After every
 * hostile case the harness checks that the server still answers a fresh
 * request.
 *
 * The hardening suite (--fixture) runs against tests/fixtures/server.c, a
 * server with 2-second timeouts: slowloris, idle, stalled-body and
 * stalled-reader timeouts, max_connections, running out of descriptors
 * (EMFILE), bounded memory for a client that does not read, resets and
 * half-closes, interrupted system calls, and graceful shutdown under load.
 * It restarts the fixture with other settings where a case needs them, and
 * checks the server's open descriptors (/proc/PID/fd) and memory
 * (/proc/PID/status) from outside.
 *
 * Environment: BLACKBOX_TIME_SCALE=N multiplies every timeout of the
 * harness (for a server under valgrind); BLACKBOX_ONLY=text runs only the
 * cases whose name contains text.
 *
 * The file reads top to bottom:
 *   1. utilities: clocks, failure reasons, escaping, a growable buffer
 *   2. the server process: start, liveness, stop, /proc figures
 *   3. connections: connect_to, send_all, send_slow, wait_closed
 *   4. the response reader: one HTTP/1.1 response out of a connection buffer
 *   5. expectations and request helpers
 *   6. the conformance cases, grouped like the contract
 *   7. the hardening cases (--fixture)
 *   8. the case runner and main
 *
 * Nothing waits forever: every socket wait goes through poll() with a
 * timeout, and alarm() guards the whole run.
 */

#include "testnet.h" /* the loopback sockets, clock and /proc readers the C tests share */

#include <arpa/inet.h>
#include <dirent.h>
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Timeouts, all multiplied by $BLACKBOX_TIME_SCALE (default 1). */
static int g_scale = 1;
#define IO_TIMEOUT_MS (5000 * g_scale)        /* longest wait for any single socket event */
#define START_TIMEOUT_MS (10000 * g_scale)    /* time the server gets to start listening */
#define CLOSE_TIMEOUT_MS (2000 * g_scale)     /* time the server gets to close after a final response */
#define SHUTDOWN_TIMEOUT_MS (5000 * g_scale)  /* time the server gets to exit on SIGTERM */
#define WATCHDOG_SECONDS (240 * g_scale)      /* the whole suite must end within this */
#define MAX_HEAD_BYTES (64 * 1024) /* longest response head we accept */
#define MAX_HEADERS 64            /* most response header lines we keep */

/* Requests used again and again. */
#define HOST "Host: localhost\r\n"
#define GET_PLAINTEXT "GET /plaintext HTTP/1.1\r\n" HOST "\r\n"
#define GET_JSON "GET /json HTTP/1.1\r\n" HOST "\r\n"
#define POST_ECHO "POST /echo HTTP/1.1\r\n" HOST

/* Bodies the server is expected to send. */
#define HELLO "Hello, World!"
#define JSON_HELLO "{\"message\":\"Hello, World!\"}"

/* ==================================================================== */
/* 1. Utilities                                                          */
/* ==================================================================== */

/*
 * Why the current case failed.  Checks call fail() and return its -1, so a
 * check reads `return fail("expected ..., got ...")`.  The first reason
 * recorded wins because it is the most specific one; fail_ctx() puts
 * context ("response 7 of 100") in front of it.
 */
static char g_reason[1024];

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail_ctx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
    va_list ap;

    if (g_reason[0] != '\0')
        return -1;
    va_start(ap, fmt);
    vsnprintf(g_reason, sizeof g_reason, fmt, ap);
    va_end(ap);
    return -1;
}

static int fail_ctx(const char *fmt, ...)
{
    char joined[256 + 2 + sizeof g_reason];
    size_t len;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(joined, 256, fmt, ap);
    va_end(ap);
    if (g_reason[0] != '\0') {
        len = strlen(joined);
        memcpy(joined + len, ": ", 2);
        memcpy(joined + len + 2, g_reason, sizeof g_reason); /* g_reason is NUL-terminated */
    }
    len = strlen(joined);
    if (len >= sizeof g_reason) /* a long reason is simply cut */
        len = sizeof g_reason - 1;
    memcpy(g_reason, joined, len);
    g_reason[len] = '\0';
    return -1;
}

static void clear_reason(void)
{
    g_reason[0] = '\0';
}

/*
 * Printable form of raw bytes for failure messages: CR, LF and TAB as \r \n
 * \t, other control and non-ASCII bytes as \xHH, cut after 100 bytes.  It
 * rotates over four buffers so one message can show several values.
 */
static const char *esc(const void *data, size_t len)
{
    static char bufs[4][512];
    static int next;
    const unsigned char *p = data;
    char *out = bufs[next];
    size_t shown = len < 100 ? len : 100;
    size_t i, o = 0;

    next = (next + 1) % 4;
    for (i = 0; i < shown; i++) {
        unsigned char ch = p[i];

        if (ch == '\r') {
            out[o++] = '\\';
            out[o++] = 'r';
        } else if (ch == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (ch == '\t') {
            out[o++] = '\\';
            out[o++] = 't';
        } else if (ch == '\\') {
            out[o++] = '\\';
            out[o++] = '\\';
        } else if (ch >= 0x20 && ch < 0x7f) {
            out[o++] = (char)ch;
        } else {
            o += (size_t)snprintf(out + o, 5, "\\x%02x", ch);
        }
    }
    if (shown < len) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

/* esc() for a C string that may be NULL (a missing header). */
static const char *show(const char *s)
{
    return s ? esc(s, strlen(s)) : "(missing)";
}

static void *xrealloc(void *p, size_t size)
{
    p = realloc(p, size ? size : 1);
    if (p == NULL) {
        fprintf(stderr, "blackbox: out of memory\n");
        exit(2);
    }
    return p;
}

/* A growable byte buffer for building requests. */
struct sbuf {
    char *data;
    size_t len, cap;
};

static void sb_reserve(struct sbuf *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 256;

    while (cap - b->len < more + 1)
        cap *= 2;
    if (cap != b->cap) {
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
}

static void sb_add(struct sbuf *b, const void *data, size_t len)
{
    sb_reserve(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

static void sb_fill(struct sbuf *b, char ch, size_t count)
{
    sb_reserve(b, count);
    memset(b->data + b->len, ch, count);
    b->len += count;
    b->data[b->len] = '\0';
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    char text[1024]; /* every formatted piece in this file is short */
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof text) {
        fprintf(stderr, "blackbox: sb_printf piece too long\n");
        exit(2);
    }
    sb_add(b, text, (size_t)n);
}

static void sb_free(struct sbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* Deterministic pseudo-random bytes (xorshift32) for large bodies. */
static void fill_pattern(unsigned char *buf, size_t len, uint32_t seed)
{
    uint32_t x = seed ? seed : 1;
    size_t i;

    for (i = 0; i < len; i++)
        buf[i] = (unsigned char)(tn_xorshift32(&x) >> 24);
}

/* ==================================================================== */
/* 2. The server process                                                 */
/* ==================================================================== */

static pid_t g_server_pid = -1;
static int g_server_exited;     /* reaped: g_server_status is valid */
static int g_server_status;
static int g_death_reported;    /* a death was already blamed on a case */
static int g_port;

static const char *describe_status(int status)
{
    static char buf[128];

    if (WIFEXITED(status))
        snprintf(buf, sizeof buf, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, sizeof buf, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, sizeof buf, "wait status 0x%x", (unsigned)status);
    return buf;
}

/* Is the server still running?  Reaps it (once) when it has exited. */
static int server_alive(void)
{
    int status;

    if (g_server_pid <= 0 || g_server_exited)
        return 0;
    if (waitpid(g_server_pid, &status, WNOHANG) == g_server_pid) {
        g_server_exited = 1;
        g_server_status = status;
        return 0;
    }
    return 1;
}

/* Kill the server if it still runs (end of the suite, or a failed start). */
static void stop_server(void)
{
    if (server_alive()) {
        kill(g_server_pid, SIGKILL);
        if (waitpid(g_server_pid, &g_server_status, 0) == g_server_pid)
            g_server_exited = 1;
    }
}

/* Descriptors the server has open (/proc/PID/fd), or -1. */
static int server_fd_count(void)
{
    return tn_proc_fd_count(g_server_pid);
}

/* The server's resident memory in KiB (VmRSS of /proc/PID/status), or -1. */
static long server_rss_kib(void)
{
    return tn_proc_rss_kib(g_server_pid);
}

/* CPU time the server has used (user + system) in ms, or -1. */
static long long server_cpu_ms(void)
{
    return tn_proc_cpu_ms(g_server_pid);
}

/*
 * How the next start_server() runs the server: extra environment
 * ("NAME=value" strings, NULL-terminated) and, when non-zero, a soft and
 * hard RLIMIT_NOFILE for the server alone.
 */
static const char *const *g_server_env;
static long g_server_nofile;
static const char *g_server_path;

/* fork/exec the server and wait until it accepts connections. */
static int start_server(const char *path)
{
    g_server_path = path;
    g_server_exited = 0;
    g_death_reported = 0;

    g_port = tn_free_port();
    if (g_port <= 0)
        return fail("could not find a free port: %s", strerror(errno));

    fflush(stdout);
    fflush(stderr);
    g_server_pid = fork();
    if (g_server_pid < 0)
        return fail("fork: %s", strerror(errno));
    if (g_server_pid == 0) {
        char *child_argv[2];
        int i;

        /* The harness ignores SIGPIPE; the server must get the default so
         * that a server which forgets to handle it is caught. */
        signal(SIGPIPE, SIG_DFL);
        tn_server_env(g_port);
        for (i = 0; g_server_env != NULL && g_server_env[i] != NULL; i++)
            putenv((char *)g_server_env[i]);
        if (g_server_nofile > 0) {
            struct rlimit rl;

            rl.rlim_cur = rl.rlim_max = (rlim_t)g_server_nofile;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        child_argv[0] = (char *)path;
        child_argv[1] = NULL;
        execv(path, child_argv);
        fprintf(stderr, "blackbox: cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }

    printf("# server %s (pid %d) on 127.0.0.1:%d\n", path, (int)g_server_pid, g_port);
    switch (tn_wait_listening(g_port, g_server_pid, START_TIMEOUT_MS, &g_server_status)) {
    case 0:
        return 0;
    case 1:
        g_server_exited = 1;
        g_death_reported = 1;
        return fail("the server exited before listening (%s)", describe_status(g_server_status));
    default:
        return fail("the server did not accept connections on port %d within %d ms", g_port, START_TIMEOUT_MS);
    }
}

/* ==================================================================== */
/* 3. Connections                                                        */
/* ==================================================================== */

/*
 * Wait for `events` on fd.  Returns poll()'s revents (> 0), 0 on timeout or
 * interruption (the caller rechecks its deadline), -1 on error.
 */
static int wait_for(int fd, short events, long timeout_ms)
{
    struct pollfd pfd;
    int n;

    pfd.fd = fd;
    pfd.events = events;
    pfd.revents = 0;
    n = poll(&pfd, 1, timeout_ms > 0 ? (int)timeout_ms : 0);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    return n == 0 ? 0 : pfd.revents;
}

/*
 * Start a non-blocking connect to 127.0.0.1:port with TCP_NODELAY set (so
 * each write leaves as its own segment: the split and slow cases rely on
 * it).  Returns the fd, connected or still connecting, or -1.
 */
static int g_rcvbuf; /* when set, SO_RCVBUF of the next connections */

static int connect_start(int port)
{
    int fd = tn_connect_start(port, g_rcvbuf);

    if (fd < 0) {
        fail("connect to 127.0.0.1:%d: %s", port, strerror(errno));
        return -1;
    }
    tn_nodelay(fd);
    return fd;
}

/* Connect to 127.0.0.1:port and wait (bounded) until it is established. */
static int connect_to(int port)
{
    int fd = connect_start(port);
    int err = 0;
    socklen_t err_len = sizeof err;

    if (fd < 0)
        return -1;
    if (wait_for(fd, POLLOUT, IO_TIMEOUT_MS) <= 0) {
        fail("connect to 127.0.0.1:%d: no answer within %d ms", port, IO_TIMEOUT_MS);
        close(fd);
        return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0 || err != 0) {
        fail("connect to 127.0.0.1:%d: %s", port, strerror(err ? err : errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* One parsed response; head and body are owned by the struct. */
struct header {
    const char *name;
    const char *value;
};

struct response {
    int status;                 /* e.g. 200 */
    const char *status_line;    /* e.g. "HTTP/1.1 200 OK" (points into head) */
    char *head;                 /* copy of the head, one string per line */
    struct header headers[MAX_HEADERS];
    int nheaders;
    char *body;                 /* decoded body, NUL-terminated for convenience */
    size_t body_len;
};

/*
 * A client connection.  Bytes from the server collect in buf; the reader
 * consumes buf[off..len) one response at a time, so whatever follows a
 * response (the next pipelined one) stays for the next read.
 */
struct conn {
    int fd;
    char *buf;
    size_t off, len, cap;
    int eof;                    /* the server closed its side */
    int reset;                  /* the server reset the connection */
    int err;                    /* errno of the last failed recv */
    struct response resp;       /* the last response read */
};

static void resp_free(struct response *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static int conn_open(struct conn *c)
{
    memset(c, 0, sizeof *c);
    c->fd = connect_to(g_port);
    return c->fd < 0 ? -1 : 0;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->off = c->len = c->cap = 0;
    resp_free(&c->resp);
}

/* Close with an RST instead of a FIN: SO_LINGER {on, 0 s}, then close. */
static void conn_reset(struct conn *c)
{
    struct linger lg;

    lg.l_onoff = 1;
    lg.l_linger = 0;
    if (c->fd >= 0)
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    conn_close(c);
}

enum { RECV_AGAIN = -1, RECV_ERROR = -2 };

/*
 * One non-blocking recv() into the connection buffer.  Returns the byte
 * count, 0 when the server closed, RECV_AGAIN when nothing is there yet,
 * RECV_ERROR on an error (c->err holds errno; c->reset is set on a reset).
 */
static long conn_recv_some(struct conn *c)
{
    ssize_t n;

    if (c->off == c->len)
        c->off = c->len = 0;
    if (c->cap - c->len < 4096) {
        if (c->off > 0) { /* slide unread bytes to the front */
            memmove(c->buf, c->buf + c->off, c->len - c->off);
            c->len -= c->off;
            c->off = 0;
        }
        if (c->cap - c->len < 4096) {
            c->cap = c->cap ? c->cap * 2 : 8192;
            c->buf = xrealloc(c->buf, c->cap);
        }
    }
    n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n > 0) {
        c->len += (size_t)n;
        return (long)n;
    }
    if (n == 0) {
        c->eof = 1;
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return RECV_AGAIN;
    c->err = errno;
    if (errno == ECONNRESET)
        c->reset = 1;
    return RECV_ERROR;
}

/*
 * Wait (bounded) for more bytes from the server.  Returns 1 when bytes
 * arrived, 0 when the server closed, -1 on timeout or error.
 */
static int conn_fill(struct conn *c)
{
    long long deadline = tn_now_ms() + IO_TIMEOUT_MS;

    for (;;) {
        long left = (long)(deadline - tn_now_ms());
        long n;

        if (left <= 0)
            return fail("no answer within %d ms (unparsed bytes so far: \"%s\")",
                        IO_TIMEOUT_MS, esc(c->buf ? c->buf + c->off : "", c->len - c->off));
        if (wait_for(c->fd, POLLIN, left) < 0)
            return fail("poll: %s", strerror(errno));
        n = conn_recv_some(c);
        if (n > 0)
            return 1;
        if (n == 0)
            return 0;
        if (n == RECV_ERROR)
            return fail("recv: %s", strerror(c->err));
    }
}

/*
 * Write all of data.  While waiting to write it also reads whatever the
 * server sends (into c->buf), so a large request and a large response
 * cannot block each other when both directions' socket buffers are full.
 */
static int send_all(struct conn *c, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        int revents = wait_for(c->fd, (short)(POLLOUT | (c->eof ? 0 : POLLIN)), IO_TIMEOUT_MS);
        ssize_t n;

        if (revents < 0)
            return fail("poll: %s", strerror(errno));
        if (revents == 0)
            return fail("could not send for %d ms (%zu bytes left to send)", IO_TIMEOUT_MS, len);
        if ((revents & (POLLIN | POLLHUP)) && !c->eof) {
            if (conn_recv_some(c) == RECV_ERROR)
                return fail("recv while sending: %s", strerror(c->err));
        }
        if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
            continue;
        n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                continue;
            return fail("send: %s (%zu bytes left to send)", strerror(errno), len);
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Send data one byte at a time, delay_us apart: a very slow client. */
static int send_slow(struct conn *c, const void *data, size_t len, long delay_us)
{
    const char *p = data;
    size_t i;

    for (i = 0; i < len; i++) {
        if (send_all(c, p + i, 1) != 0)
            return fail_ctx("slow send, byte %zu of %zu", i + 1, len);
        tn_sleep_us(delay_us);
    }
    return 0;
}

/*
 * Check that the server closes the connection: drain whatever it still
 * sends and expect end-of-file (or a reset) within CLOSE_TIMEOUT_MS.  (It
 * is shorter than IO_TIMEOUT_MS so that a server which never closes fails
 * every such case before the watchdog ends the run.)
 */
static int wait_closed(struct conn *c)
{
    long long deadline = tn_now_ms() + CLOSE_TIMEOUT_MS;

    while (!c->eof && !c->reset) {
        long left = (long)(deadline - tn_now_ms());

        if (left <= 0)
            return fail("expected the server to close the connection, "
                        "it was still open %d ms later", CLOSE_TIMEOUT_MS);
        if (wait_for(c->fd, POLLIN, left) < 0)
            return fail("poll: %s", strerror(errno));
        if (conn_recv_some(c) == RECV_ERROR && !c->reset)
            return fail("recv: %s", strerror(c->err));
        c->off = c->len; /* drop anything received */
    }
    return 0;
}

/* ==================================================================== */
/* 4. The response reader                                                */
/* ==================================================================== */

static int is_digit(int ch)
{
    return ch >= '0' && ch <= '9';
}

/* tchar from RFC 9110: the characters allowed in a header field name. */
static int is_tchar(int ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch) ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* First value of a header (case-insensitive name), or NULL. */
static const char *resp_header(const struct response *r, const char *name)
{
    int i;

    for (i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

static int resp_header_count(const struct response *r, const char *name)
{
    int i, n = 0;

    for (i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            n++;
    return n;
}

/* Does a comma-separated header value contain `token` (any case)? */
static int has_token(const char *list, const char *token)
{
    size_t tlen = strlen(token);

    while (list != NULL && *list != '\0') {
        const char *end;
        size_t len;

        while (*list == ' ' || *list == '\t' || *list == ',')
            list++;
        end = list;
        while (*end != '\0' && *end != ',')
            end++;
        len = (size_t)(end - list);
        while (len > 0 && (list[len - 1] == ' ' || list[len - 1] == '\t'))
            len--;
        if (len == tlen && strncasecmp(list, token, tlen) == 0)
            return 1;
        list = end;
    }
    return 0;
}

/* Strict decimal: digits only, no sign, no spaces. */
static int parse_decimal(const char *s, size_t *out)
{
    size_t v = 0;
    int digits = 0;

    for (; *s != '\0'; s++) {
        if (!is_digit((unsigned char)*s) || ++digits > 18)
            return -1;
        v = v * 10 + (size_t)(*s - '0');
    }
    if (digits == 0)
        return -1;
    *out = v;
    return 0;
}

/* An IMF-fixdate (RFC 9110 section 5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT". */
static int is_imf_fixdate(const char *s)
{
    static const char shape[] = "@@@, ## @@@ #### ##:##:## GMT"; /* @ letter, # digit */
    static const char days[] = "Mon Tue Wed Thu Fri Sat Sun ";
    static const char months[] = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec ";
    char name[5];
    size_t i;

    if (strlen(s) != sizeof shape - 1)
        return 0;
    for (i = 0; i < sizeof shape - 1; i++) {
        if (shape[i] == '#' ? !is_digit((unsigned char)s[i])
            : shape[i] == '@' ? !((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z'))
            : s[i] != shape[i])
            return 0;
    }
    memcpy(name, s, 3);
    memcpy(name + 3, " ", 2);
    if (strstr(days, name) == NULL)
        return 0;
    memcpy(name, s + 8, 3);
    if (strstr(months, name) == NULL)
        return 0;
    return atoi(s + 5) >= 1 && atoi(s + 5) <= 31 && atoi(s + 17) <= 23 &&
           atoi(s + 20) <= 59 && atoi(s + 23) <= 60;
}

/* Headers every final response from the server must carry. */
static int check_standard_headers(const struct response *r)
{
    const char *server = resp_header(r, "Server");
    const char *date = resp_header(r, "Date");

    if (server == NULL || strcmp(server, "chopin") != 0)
        return fail("expected \"Server: chopin\" in \"%s\", got Server \"%s\"",
                    show(r->status_line), show(server));
    if (date == NULL || !is_imf_fixdate(date))
        return fail("expected a Date like \"Sun, 06 Nov 1994 08:49:37 GMT\" in \"%s\", got \"%s\"",
                    show(r->status_line), show(date));
    if (resp_header(r, "Content-Length") == NULL)
        return fail("expected a Content-Length header in \"%s\"", show(r->status_line));
    return 0;
}

/*
 * Split a response head (status line, header lines, empty line; every line
 * ends in CRLF) into the status line and a header array.
 */
static int parse_head(struct response *r, const char *p, size_t head_len)
{
    const char *s;
    size_t pos = 0;
    int first = 1;

    r->head = xrealloc(NULL, head_len + 1);
    memcpy(r->head, p, head_len);
    r->head[head_len] = '\0';

    while (pos < head_len) {
        char *line = r->head + pos;
        char *crlf = memmem(line, head_len - pos, "\r\n", 2); /* found: head ends in CRLF */
        size_t line_len = (size_t)(crlf - line);
        char *colon, *value, *end;
        size_t i;

        *crlf = '\0';
        pos += line_len + 2;
        if (memchr(line, '\n', line_len) || memchr(line, '\r', line_len))
            return fail("bare CR or LF in a response line: \"%s\"", esc(line, line_len));
        if (first) {
            r->status_line = line;
            first = 0;
            continue;
        }
        if (line_len == 0)
            break; /* the empty line that ends the head */
        colon = memchr(line, ':', line_len);
        if (colon == NULL || colon == line)
            return fail("malformed response header line \"%s\"", esc(line, line_len));
        for (i = 0; line + i < colon; i++)
            if (!is_tchar((unsigned char)line[i]))
                return fail("bad character in response header name \"%s\"", esc(line, line_len));
        *colon = '\0';
        value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        end = value + strlen(value);
        while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (r->nheaders == MAX_HEADERS)
            return fail("more than %d response header lines", MAX_HEADERS);
        r->headers[r->nheaders].name = line;
        r->headers[r->nheaders].value = value;
        r->nheaders++;
    }

    /* "HTTP/1.x NNN reason" */
    s = r->status_line;
    if (strlen(s) < 12 || strncmp(s, "HTTP/1.", 7) != 0 || !is_digit((unsigned char)s[7]) ||
        s[8] != ' ' || !is_digit((unsigned char)s[9]) || !is_digit((unsigned char)s[10]) ||
        !is_digit((unsigned char)s[11]) || (s[12] != '\0' && s[12] != ' '))
        return fail("malformed status line \"%s\"", show(s));
    r->status = atoi(s + 9);
    return 0;
}

enum parse_result { PARSE_MORE, PARSE_DONE, PARSE_ERROR };

/*
 * Decode a chunked body at p[0..n): chunk-size [;extensions] CRLF data CRLF
 * ..., a last chunk "0", trailer lines, an empty line.  On PARSE_DONE the
 * decoded bytes are in *out and *used tells how many input bytes it took.
 */
static enum parse_result decode_chunked(const char *p, size_t n, struct response *r, size_t *used)
{
    size_t pos = 0;

    r->body = xrealloc(r->body, n + 1);
    r->body_len = 0;
    for (;;) {
        const char *line = p + pos;
        const char *eol = memmem(line, n - pos, "\r\n", 2);
        size_t size = 0;
        int digits = 0;

        if (eol == NULL)
            return PARSE_MORE;
        for (; line < eol && *line != ';'; line++, digits++) {
            int ch = (unsigned char)*line;
            int v = is_digit(ch) ? ch - '0'
                  : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
                  : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10 : -1;

            if (v < 0 || digits >= 15) {
                fail("bad chunk size line \"%s\" in response",
                     esc(p + pos, (size_t)(eol - (p + pos))));
                return PARSE_ERROR;
            }
            size = size * 16 + (size_t)v;
        }
        if (digits == 0) {
            fail("empty chunk size in response");
            return PARSE_ERROR;
        }
        pos = (size_t)(eol - p) + 2;
        if (size == 0)
            break;
        if (n - pos < size + 2)
            return PARSE_MORE;
        memcpy(r->body + r->body_len, p + pos, size);
        r->body_len += size;
        pos += size;
        if (memcmp(p + pos, "\r\n", 2) != 0) {
            fail("chunk data not followed by CRLF in response");
            return PARSE_ERROR;
        }
        pos += 2;
    }
    for (;;) { /* trailer section, up to and including the empty line */
        const char *eol = memmem(p + pos, n - pos, "\r\n", 2);
        size_t line_len;

        if (eol == NULL)
            return PARSE_MORE;
        line_len = (size_t)(eol - (p + pos));
        pos += line_len + 2;
        if (line_len == 0)
            break;
    }
    r->body[r->body_len] = '\0';
    *used = pos;
    return PARSE_DONE;
}

/*
 * Try to parse ONE response from the unread bytes of c into c->resp.
 *   PARSE_DONE:  complete; its bytes are consumed, later bytes stay unread
 *   PARSE_MORE:  incomplete; read more and call again
 *   PARSE_ERROR: malformed (reason recorded)
 * head_request says the request was HEAD, so the response has no body.
 * Every final (non-1xx) response is checked for Server, Date and
 * Content-Length.  It parses from scratch on each call: simple, and cheap
 * enough for a test.
 */
static enum parse_result parse_response(struct conn *c, int head_request)
{
    struct response *r = &c->resp;
    const char *p, *end, *body, *te, *cl;
    size_t avail = c->len - c->off;
    size_t head_len, body_avail, used = 0, length;
    enum parse_result res;

    resp_free(r);
    if (avail == 0)
        return PARSE_MORE;
    p = c->buf + c->off;
    if (memcmp(p, "HTTP/", avail < 5 ? avail : 5) != 0) {
        fail("expected a status line, got \"%s\"", esc(p, avail));
        return PARSE_ERROR;
    }
    end = memmem(p, avail, "\r\n\r\n", 4);
    if (end == NULL) {
        if (avail <= MAX_HEAD_BYTES)
            return PARSE_MORE;
        fail("no end of the response head within %d bytes", MAX_HEAD_BYTES);
        return PARSE_ERROR;
    }
    head_len = (size_t)(end - p) + 4;
    if (parse_head(r, p, head_len) != 0)
        return PARSE_ERROR;
    if (r->status >= 200 && check_standard_headers(r) != 0)
        return PARSE_ERROR;

    body = p + head_len;
    body_avail = avail - head_len;
    te = resp_header(r, "Transfer-Encoding");
    cl = resp_header(r, "Content-Length");
    if (resp_header_count(r, "Content-Length") > 1) {
        fail("response \"%s\" has several Content-Length headers", show(r->status_line));
        return PARSE_ERROR;
    }

    if (head_request || r->status < 200 || r->status == 204 || r->status == 304) {
        r->body = xrealloc(NULL, 1); /* no body by definition */
    } else if (te != NULL) {
        if (!has_token(te, "chunked")) {
            fail("unsupported response Transfer-Encoding \"%s\"", show(te));
            return PARSE_ERROR;
        }
        res = decode_chunked(body, body_avail, r, &used);
        if (res != PARSE_DONE)
            return res;
    } else if (cl != NULL) {
        if (parse_decimal(cl, &length) != 0) {
            fail("bad response Content-Length \"%s\"", show(cl));
            return PARSE_ERROR;
        }
        if (body_avail < length)
            return PARSE_MORE;
        r->body = xrealloc(NULL, length + 1);
        memcpy(r->body, body, length);
        r->body_len = used = length;
    } else {
        if (!c->eof) /* the body runs until the server closes */
            return PARSE_MORE;
        r->body = xrealloc(NULL, body_avail + 1);
        memcpy(r->body, body, body_avail);
        r->body_len = used = body_avail;
    }
    r->body[r->body_len] = '\0';
    c->off += head_len + used;
    return PARSE_DONE;
}

/*
 * Read ONE response from c (waiting as needed).  Returns it (it lives in
 * c->resp until the next read) or NULL with a reason recorded.
 */
static struct response *read_response(struct conn *c, int head_request)
{
    for (;;) {
        switch (parse_response(c, head_request)) {
        case PARSE_DONE:
            return &c->resp;
        case PARSE_ERROR:
            return NULL;
        case PARSE_MORE:
            break;
        }
        if (c->eof || c->reset) {
            if (c->len == c->off)
                fail("the server closed the connection without a response");
            else
                fail("the server closed the connection mid-response: \"%s\"",
                     esc(c->buf + c->off, c->len - c->off));
            return NULL;
        }
        if (conn_fill(c) < 0)
            return NULL;
    }
}

/* ==================================================================== */
/* 5. Expectations and request helpers                                   */
/* ==================================================================== */

/* Check status, Content-Type and body; a NULL content_type or body is not checked. */
static int expect(const struct response *r, int status, const char *content_type, const char *body)
{
    const char *ct = resp_header(r, "Content-Type");

    if (r->status != status)
        return fail("expected status %d, got \"%s\" with body \"%s\"", status,
                    show(r->status_line), esc(r->body, r->body_len));
    if (content_type != NULL && (ct == NULL || strcmp(ct, content_type) != 0))
        return fail("expected Content-Type \"%s\", got \"%s\"", content_type, show(ct));
    if (body != NULL && (r->body_len != strlen(body) || memcmp(r->body, body, r->body_len) != 0))
        return fail("expected body \"%s\", got \"%s\" (%zu bytes)", show(body),
                    esc(r->body, r->body_len), r->body_len);
    return 0;
}

/* Check that the response's Connection header lists `token`. */
static int expect_connection(const struct response *r, const char *token)
{
    if (!has_token(resp_header(r, "Connection"), token))
        return fail("expected \"Connection: %s\", got \"%s\"", token, show(resp_header(r, "Connection")));
    return 0;
}

/* Check a (binary) body byte by byte. */
static int expect_body_bytes(const struct response *r, const unsigned char *want, size_t len)
{
    size_t i;

    if (r->body_len != len)
        return fail("expected a %zu-byte body, got %zu bytes", len, r->body_len);
    for (i = 0; i < len; i++)
        if ((unsigned char)r->body[i] != want[i])
            return fail("body differs at byte %zu: expected 0x%02x, got 0x%02x", i, want[i],
                        (unsigned char)r->body[i]);
    return 0;
}

/* An error response: the status (or alt_status when non-zero) and a JSON body. */
static int expect_error_json(const struct response *r, int status, int alt_status)
{
    static const char prefix[] = "{\"detail\":";
    const char *ct = resp_header(r, "Content-Type");

    if (r->status != status && (alt_status == 0 || r->status != alt_status)) {
        if (alt_status != 0)
            return fail("expected status %d or %d, got \"%s\" with body \"%s\"", status,
                        alt_status, show(r->status_line), esc(r->body, r->body_len));
        return fail("expected status %d, got \"%s\" with body \"%s\"", status,
                    show(r->status_line), esc(r->body, r->body_len));
    }
    if (ct == NULL || strcmp(ct, "application/json") != 0)
        return fail("expected Content-Type \"application/json\" on %d, got \"%s\"", r->status,
                    show(ct));
    if (r->body_len < sizeof prefix - 1 || memcmp(r->body, prefix, sizeof prefix - 1) != 0)
        return fail("expected a body starting with %s on %d, got \"%s\"", prefix, r->status,
                    esc(r->body, r->body_len));
    return 0;
}

/* Send one request on c and read its response (a HEAD request's has no body). */
static struct response *exchange(struct conn *c, const char *request)
{
    if (send_all(c, request, strlen(request)) != 0)
        return NULL;
    return read_response(c, strncmp(request, "HEAD ", 5) == 0);
}

/* exchange() plus expect() on an open connection. */
static int request_expect(struct conn *c, const char *request, int status,
                          const char *content_type, const char *body)
{
    struct response *r = exchange(c, request);

    return r == NULL ? -1 : expect(r, status, content_type, body);
}

/* One request on a fresh connection. */
static int simple_request(const char *request, int status, const char *content_type,
                          const char *body)
{
    struct conn c;
    int rc = -1;

    if (conn_open(&c) == 0)
        rc = request_expect(&c, request, status, content_type, body);
    conn_close(&c);
    return rc;
}

/* After a rejection or a fault: does the server still answer? */
static int fresh_plaintext_ok(void)
{
    if (simple_request(GET_PLAINTEXT, 200, "text/plain", HELLO) != 0)
        return fail_ctx("afterwards, GET /plaintext on a fresh connection failed");
    return 0;
}

/*
 * The rejection pattern: send the bytes, expect the error status (or
 * alt_status) with a JSON body and "Connection: close", expect the server
 * to close, then expect a fresh connection to still get served.
 */
static int check_rejection(const void *request, size_t len, int status, int alt_status)
{
    struct conn c;
    struct response *r;
    int rc = -1;

    if (conn_open(&c) != 0)
        goto out;
    /* The server may answer and close before it has read everything; the
     * response is what counts, so a failed send is not a failure here. */
    if (send_all(&c, request, len) != 0)
        clear_reason();
    r = read_response(&c, 0);
    if (r == NULL || expect_error_json(r, status, alt_status) != 0)
        goto out;
    if (!has_token(resp_header(r, "Connection"), "close")) {
        fail("expected \"Connection: close\" on %d, got Connection \"%s\"", r->status,
             show(resp_header(r, "Connection")));
        goto out;
    }
    if (wait_closed(&c) != 0)
        goto out;
    rc = 0;
out:
    conn_close(&c);
    return rc == 0 ? fresh_plaintext_ok() : rc;
}

/* ==================================================================== */
/* 6. The cases                                                          */
/* ==================================================================== */

/* ---- Routes ---------------------------------------------------------- */

/* Routes answered by one request on a fresh connection. */
static const struct {
    const char *name;
    const char *request;
    int status;
    const char *content_type;
    const char *body;
} simple_cases[] = {
    {"RFC9110-9.3.1-get-plaintext", GET_PLAINTEXT, 200, "text/plain", HELLO},
    {"RFC9110-9.3.1-get-json", GET_JSON, 200, "application/json", JSON_HELLO},
    {"RFC9110-9.3.1-get-route-parameter", "GET /users/42 HTTP/1.1\r\n" HOST "\r\n", 200, "application/json",
     "{\"id\":\"42\"}"},
    {"RFC9110-9.3.1-get-route-parameter-word", "GET /users/chopin HTTP/1.1\r\n" HOST "\r\n", 200,
     "application/json", "{\"id\":\"chopin\"}"},
    {"RFC9110-9.3.3-post-echo-content-length",
     POST_ECHO "Content-Type: application/x-chopin-test\r\nContent-Length: 11\r\n\r\nhello world",
     200, "application/x-chopin-test", "hello world"},
    {"RFC9110-8.6-post-content-length-zero", POST_ECHO "Content-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
     200, "text/plain", ""},
    {"RFC9110-15.5.5-unknown-path-404", "GET /no/such/path HTTP/1.1\r\n" HOST "\r\n", 404, "application/json",
     "{\"detail\":\"Not Found\"}"},
    /* what a server must accept (RFC 9110, RFC 9112) */
    {"RFC9112-2.2-leading-empty-line-ignored", "\r\n" GET_PLAINTEXT, 200, "text/plain", HELLO},
    {"RFC9112-3.2.2-absolute-form-accepted", "GET http://localhost/plaintext HTTP/1.1\r\n" HOST "\r\n", 200,
     "text/plain", HELLO},
    {"RFC9112-3.2.2-absolute-form-https-port-query",
     "GET https://localhost:8443/users/5?x=1 HTTP/1.1\r\n" HOST "\r\n", 200, "application/json", "{\"id\":\"5\"}"},
    {"RFC9112-3.2.2-absolute-form-scheme-case-insensitive",
     "GET HTTP://localhost/plaintext HTTP/1.1\r\n" HOST "\r\n", 200, "text/plain", HELLO},
    {"RFC9112-3.2-http10-without-host", "GET /plaintext HTTP/1.0\r\n\r\n", 200, "text/plain", HELLO},
    {"RFC9112-3.2-host-ipv6-literal-and-port", "GET /plaintext HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 200,
     "text/plain", HELLO},
    {"RFC9110-2.5-http-1.2-served-as-1.1", "GET /plaintext HTTP/1.2\r\n" HOST "\r\n", 200, "text/plain", HELLO},
    {"RFC9110-5.5-obs-text-in-field-value", "GET /plaintext HTTP/1.1\r\n" HOST "X-A: caf\xe9 \xff\r\n\r\n", 200,
     "text/plain", HELLO},
    {"RFC9112-5-empty-field-value", "GET /plaintext HTTP/1.1\r\n" HOST "X-Empty:\r\n\r\n", 200, "text/plain", HELLO},
    {"RFC9110-5.1-field-names-case-insensitive",
     "POST /echo HTTP/1.1\r\nhOsT: localhost\r\ncOnTeNt-TyPe: text/x-case\r\ncontent-length: 5\r\n\r\nhello", 200,
     "text/x-case", "hello"},
    {"RFC9112-5.1-ows-trimmed-around-value",
     POST_ECHO "Content-Type: \t text/x-ows \t \r\nContent-Length:   2  \r\n\r\nhi", 200, "text/x-ows", "hi"},
    {"RFC9112-6.3-content-length-leading-zeros", POST_ECHO "Content-Type: text/plain\r\nContent-Length: 005\r\n\r\nhello",
     200, "text/plain", "hello"},
    {"RFC9110-8.6-content-length-list-identical",
     POST_ECHO "Content-Type: text/plain\r\nContent-Length: 5, 5\r\n\r\nhello", 200, "text/plain", "hello"},
    {"RFC9112-6.1-te-chunked-case-insensitive",
     POST_ECHO "Content-Type: text/plain\r\nTransfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200,
     "text/plain", "hello"},
    {"RFC9112-6.1-te-chunked-with-ows",
     POST_ECHO "Content-Type: text/plain\r\nTransfer-Encoding:\t chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n", 200,
     "text/plain", "hello"},
    {"RFC9112-7.1-chunk-size-uppercase-hex-leading-zeros",
     POST_ECHO "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n00A\r\n0123456789\r\n0000\r\n\r\n",
     200, "text/plain", "0123456789"},
    {"RFC9112-7.1.1-chunk-ext-bws-and-quoted-string",
     POST_ECHO "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
     "5 ;a=b ; c=\"x;y \\\" z\"\r\nhello\r\n0;last\r\n\r\n", 200, "text/plain", "hello"},
    {"RFC9112-7.1-empty-chunked-body", POST_ECHO "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     200, "text/plain", ""},
    {"RFC9112-7.1.2-several-trailer-fields",
     POST_ECHO "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nA: 1\r\nB:\r\nC: x y\r\n\r\n",
     200, "text/plain", "ok"},
    {"RFC9110-9.3.7-options-asterisk", "OPTIONS * HTTP/1.1\r\n" HOST "\r\n", 200, NULL, ""},
    {"RFC9110-15.6.2-unknown-method-501", "PROPFIND /plaintext HTTP/1.1\r\n" HOST "\r\n", 501, "application/json",
     "{\"detail\":\"Not Implemented\"}"},
    {"RFC9110-9.1-method-names-case-sensitive", "get /plaintext HTTP/1.1\r\n" HOST "\r\n", 501, "application/json",
     "{\"detail\":\"Not Implemented\"}"},
};

static int case_get_root(void)
{
    struct conn c;
    struct response *r;
    const char *ct;
    int rc = -1;

    if (conn_open(&c) != 0 || (r = exchange(&c, "GET / HTTP/1.1\r\n" HOST "\r\n")) == NULL ||
        expect(r, 200, NULL, NULL) != 0)
        goto out;
    ct = resp_header(r, "Content-Type");
    if (ct == NULL || strncmp(ct, "text/", 5) != 0)
        fail("expected a text/... Content-Type, got \"%s\"", show(ct));
    else if (r->body_len == 0 || r->body_len > 4096)
        fail("expected a short non-empty body, got %zu bytes", r->body_len);
    else
        rc = 0;
out:
    conn_close(&c);
    return rc;
}

/* A known path with the wrong method: 405 with an Allow header. */
static const struct {
    const char *name;
    const char *request;
    const char *allowed; /* a method the Allow header must list */
} method_cases[] = {
    {"RFC9110-15.5.6-405-allow-delete-route", "DELETE /users/1 HTTP/1.1\r\n" HOST "\r\n", "GET"},
    {"RFC9110-15.5.6-405-allow-post-fastroute",
     "POST /plaintext HTTP/1.1\r\n" HOST "Content-Length: 0\r\n\r\n", "GET"},
    {"RFC9110-15.5.6-405-allow-get-post-only", "GET /echo HTTP/1.1\r\n" HOST "\r\n", "POST"},
    {"RFC9110-15.5.6-405-allow-trace", "TRACE /users/1 HTTP/1.1\r\n" HOST "\r\n", "GET"},
};

static int check_method_not_allowed(const char *request, const char *allowed)
{
    struct conn c;
    struct response *r;
    int rc = -1;

    if (conn_open(&c) != 0 || (r = exchange(&c, request)) == NULL ||
        expect_error_json(r, 405, 0) != 0)
        goto out;
    if (!has_token(resp_header(r, "Allow"), allowed)) {
        fail("expected an Allow header listing %s, got \"%s\"", allowed,
             show(resp_header(r, "Allow")));
        goto out;
    }
    /* A 405 is not a rejection: the connection stays usable. */
    if (request_expect(&c, GET_PLAINTEXT, 200, "text/plain", HELLO) != 0) {
        fail_ctx("GET /plaintext after the 405 on the same connection");
        goto out;
    }
    rc = 0;
out:
    conn_close(&c);
    return rc;
}

/* HEAD: same status and Content-Length as GET, and no body.  The HEAD and
 * a GET /json go out in one write; if HEAD carried a body, the second
 * response would not parse. */
static int case_head_has_no_body(void)
{
    struct conn c;
    struct response *r;
    char get_length[32];
    static const char pair[] = "HEAD /plaintext HTTP/1.1\r\n" HOST "\r\n" GET_JSON;
    int rc = -1;

    if (conn_open(&c) != 0 || (r = exchange(&c, GET_PLAINTEXT)) == NULL ||
        expect(r, 200, "text/plain", HELLO) != 0)
        goto out;
    snprintf(get_length, sizeof get_length, "%s", resp_header(r, "Content-Length"));

    if (send_all(&c, pair, sizeof pair - 1) != 0 || (r = read_response(&c, 1)) == NULL ||
        expect(r, 200, "text/plain", "") != 0) {
        fail_ctx("HEAD /plaintext");
        goto out;
    }
    if (strcmp(resp_header(r, "Content-Length"), get_length) != 0) {
        fail("HEAD Content-Length \"%s\" differs from GET's \"%s\"",
             show(resp_header(r, "Content-Length")), get_length);
        goto out;
    }
    if ((r = read_response(&c, 0)) == NULL || expect(r, 200, "application/json", JSON_HELLO) != 0) {
        fail_ctx("GET /json pipelined after HEAD (did HEAD send a body?)");
        goto out;
    }
    rc = 0;
out:
    conn_close(&c);
    return rc;
}

/* Server, Date and Content-Length on all kinds of responses.  The reader
 * already checks every final response it parses; this case makes the check
 * explicit over each route, a 404, a 405, a HEAD and a 400 rejection. */
static int case_standard_headers_everywhere(void)
{
    static const char *const requests[] = {
        GET_PLAINTEXT,
        GET_JSON,
        "GET / HTTP/1.1\r\n" HOST "\r\n",
        "GET /users/7 HTTP/1.1\r\n" HOST "\r\n",
        POST_ECHO "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
        "GET /missing HTTP/1.1\r\n" HOST "\r\n",
        "DELETE /users/1 HTTP/1.1\r\n" HOST "\r\n",
        "HEAD /json HTTP/1.1\r\n" HOST "\r\n",
    };
    struct conn c;
    struct response *r;
    size_t i;
    int rc = -1;

    if (conn_open(&c) != 0)
        goto out;
    for (i = 0; i < sizeof requests / sizeof requests[0]; i++) {
        if ((r = exchange(&c, requests[i])) == NULL || check_standard_headers(r) != 0) {
            fail_ctx("request \"%s\"", show(requests[i]));
            goto out;
        }
    }
    conn_close(&c);
    /* and on a rejection (HTTP/1.1 without Host) */
    if (conn_open(&c) != 0 || (r = exchange(&c, "GET / HTTP/1.1\r\n\r\n")) == NULL ||
        check_standard_headers(r) != 0) {
        fail_ctx("a 400 response");
        goto out;
    }
    rc = 0;
out:
    conn_close(&c);
    return rc;
}

/* ---- Connection semantics ------------------------------------------ */

static int case_keep_alive_100_sequential(void)
{
    struct conn c;
    char request[128], body[64];
    int i, rc = -1;

    if (conn_open(&c) != 0)
        goto out;
    for (i = 0; i < 100; i++) {
        int err;

        if (i % 3 == 0) {
            err = request_expect(&c, GET_PLAINTEXT, 200, "text/plain", HELLO);
        } else if (i % 3 == 1) {
            err = request_expect(&c, GET_JSON, 200, "application/json", JSON_HELLO);
        } else {
            snprintf(request, sizeof request, "GET /users/%d HTTP/1.1\r\n" HOST "\r\n", i);
            snprintf(body, sizeof body, "{\"id\":\"%d\"}", i);
            err = request_expect(&c, request, 200, "application/json", body);
        }
        if (err != 0) {
            fail_ctx("request %d of 100", i + 1);
            goto out;
        }
    }
    rc = 0;
out:
    conn_close(&c);
    return rc;
}

static int case_http10_closes_by_default(void)
{
    struct conn c;
    int rc = -1;

    if (conn_open(&c) == 0 &&
        request_expect(&c, "GET /plaintext HTTP/1.0\r\n\r\n", 200, "text/plain", HELLO) == 0 &&
        wait_closed(&c) == 0)
        rc = 0;
    conn_close(&c);
    return rc;
}

static int case_http10_keep_alive(void)
{
    static const char request[] = "GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    struct conn c;
    struct response *r;
    int i, rc = -1;

    if (conn_open(&c) != 0)
        goto out;
    for (i = 0; i < 2; i++) {
        if ((r = exchange(&c, request)) == NULL || expect(r, 200, "text/plain", HELLO) != 0) {
            fail_ctx("keep-alive request %d", i + 1);
            goto out;
        }
        if (expect_connection(r, "keep-alive") != 0)
            goto out;
    }
    /* a plain HTTP/1.0 request then ends the connection */
    if (request_expect(&c, "GET /json HTTP/1.0\r\n\r\n", 200, "application/json",
                       JSON_HELLO) != 0 ||
        wait_closed(&c) != 0) {
        fail_ctx("final HTTP/1.0 request without keep-alive");
        goto out;
    }
    rc = 0;
out:
    conn_close(&c);
    return rc;
}

static int case_http11_connection_close(void)
{
    struct conn c;
    struct response *r;
    int rc = -1;

    if (conn_open(&c) != 0 ||
        (r = exchange(&c, "GET /plaintext HTTP/1.1\r\n" HOST
                          "Connection: close\r\n\r\n")) == NULL ||
        expect(r, 200, "text/plain", HELLO) != 0)
        goto out;
    if (expect_connection(r, "close") != 0)
        goto out;
    rc = wait_closed(&c);
out:
    conn_close(&c);
    return rc;
}

/* ---- Pipelining ------------------------------------------------------ */

/* 100 requests in one write; the ids in the bodies prove the order. */
static int case_pipeline_100_in_one_write(void)
{
    struct sbuf req;
    struct conn c;
    struct response *r;
    char body[64];
    int i, rc = -1;

    memset(&req, 0, sizeof req);
    for (i = 0; i < 100; i++)
        sb_printf(&req, "GET /users/%d HTTP/1.1\r\n" HOST "\r\n", i);
    if (conn_open(&c) != 0 || send_all(&c, req.data, req.len) != 0)
        goto out;
    for (i = 0; i < 100; i++) {
        snprintf(body, sizeof body, "{\"id\":\"%d\"}", i);
        if ((r = read_response(&c, 0)) == NULL || expect(r, 200, "application/json", body) != 0) {
            fail_ctx("response %d of 100", i + 1);
            goto out;
        }
    }
    rc = 0;
out:
    conn_close(&c);
    sb_free(&req);
    return rc;
}

/*
 * Two pipelined requests split into two writes at every byte boundary, each
 * split on a fresh connection.  The first request's expected response is
 * given; the second request is always GET /json.
 */
static int check_split_pair(const char *first, const char *first_type, const char *first_body)
{
    struct sbuf pair;
    struct conn c;
    struct response *r;
    size_t cut;
    int rc = 0;

    memset(&pair, 0, sizeof pair);
    sb_add(&pair, first, strlen(first));
    sb_add(&pair, GET_JSON, strlen(GET_JSON));
    for (cut = 1; cut < pair.len && rc == 0; cut++) {
        rc = -1;
        if (conn_open(&c) != 0 || send_all(&c, pair.data, cut) != 0)
            goto next;
        tn_sleep_us(1000); /* let the first part arrive on its own */
        if (send_all(&c, pair.data + cut, pair.len - cut) != 0)
            goto next;
        if ((r = read_response(&c, 0)) == NULL || expect(r, 200, first_type, first_body) != 0) {
            fail_ctx("first response");
            goto next;
        }
        if ((r = read_response(&c, 0)) == NULL ||
            expect(r, 200, "application/json", JSON_HELLO) != 0) {
            fail_ctx("second response");
            goto next;
        }
        rc = 0;
next:
        if (rc != 0)
            fail_ctx("split after byte %zu of %zu (\"%s\" | ...)", cut, pair.len,
                     esc(pair.data, cut));
        conn_close(&c);
    }
    sb_free(&pair);
    return rc;
}

static int case_pipeline_split_at_every_byte(void)
{
    return check_split_pair(GET_PLAINTEXT, "text/plain", HELLO);
}

static int case_pipeline_post_echo_split_at_every_byte(void)
{
    return check_split_pair(POST_ECHO "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
                            "text/plain", "hello");
}

/* ---- Slow clients ---------------------------------------------------- */

static int case_slow_client_byte_by_byte(void)
{
    struct conn c;
    struct response *r;
    int rc = -1;

    if (conn_open(&c) == 0 && send_slow(&c, GET_PLAINTEXT, strlen(GET_PLAINTEXT), 1000) == 0 &&
        (r = read_response(&c, 0)) != NULL)
        rc = expect(r, 200, "text/plain", HELLO);
    conn_close(&c);
    return rc;
}

static int case_slow_client_post_body(void)
{
    static const char request[] =
        POST_ECHO "Content-Type: text/plain\r\nContent-Length: 17\r\n\r\nhello, slow world";
    struct conn c;
    struct response *r;
    int rc = -1;

    if (conn_open(&c) == 0 && send_slow(&c, request, sizeof request - 1, 1000) == 0 &&
        (r = read_response(&c, 0)) != NULL)
        rc = expect(r, 200, "text/plain", "hello, slow world");
    conn_close(&c);
    return rc;
}

/* ---- Bodies ---------------------------------------------------------- */

/* POST /echo with a large pseudo-random body; framed by Content-Length or chunked. */
static int check_large_echo(size_t size, size_t chunk_size)
{
    unsigned char *data = xrealloc(NULL, size);
    struct sbuf req;
    struct conn c;
    struct response *r;
    size_t off;
    int rc = -1;

    fill_pattern(data, size, (uint32_t)(size ^ chunk_size));
    memset(&req, 0, sizeof req);
    sb_printf(&req, POST_ECHO "Content-Type: application/octet-stream\r\n");
    if (chunk_size == 0) {
        sb_printf(&req, "Content-Length: %zu\r\n\r\n", size);
        sb_add(&req, data, size);
    } else {
        sb_printf(&req, "Transfer-Encoding: chunked\r\n\r\n");
        for (off = 0; off < size; off += chunk_size) {
            size_t n = size - off < chunk_size ? size - off : chunk_size;

            sb_printf(&req, "%zx\r\n", n);
            sb_add(&req, data + off, n);
            sb_add(&req, "\r\n", 2);
        }
        sb_printf(&req, "0\r\n\r\n");
    }
    if (conn_open(&c) == 0 && send_all(&c, req.data, req.len) == 0 &&
        (r = read_response(&c, 0)) != NULL && expect(r, 200, "application/octet-stream", NULL) == 0)
        rc = expect_body_bytes(r, data, size);
    conn_close(&c);
    sb_free(&req);
    free(data);
    return rc;
}

static int case_echo_4mib_content_length(void)
{
    return check_large_echo(4u << 20, 0);
}

static int case_echo_3mib_chunked(void)
{
    return check_large_echo(3u << 20, 64u << 10);
}

/* Chunked with extensions and a trailer; a GET rides in the same write to
 * show the server consumed exactly the chunked body and its trailer. */
static int case_echo_chunked_extensions_trailer(void)
{
    static const char request[] =
        POST_ECHO "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;name=value\r\nhello\r\n"
        "2\r\n, \r\n"
        "6;a=1;b\r\nworld!\r\n"
        "0\r\nX-Trailer: yes\r\n\r\n" GET_PLAINTEXT;
    struct conn c;
    struct response *r;
    int rc = -1;

    if (conn_open(&c) != 0 || send_all(&c, request, sizeof request - 1) != 0)
        goto out;
    if ((r = read_response(&c, 0)) == NULL || expect(r, 200, "text/plain", "hello, world!") != 0)
        goto out;
    if ((r = read_response(&c, 0)) == NULL || expect(r, 200, "text/plain", HELLO) != 0) {
        fail_ctx("GET /plaintext pipelined after the chunked request");
        goto out;
    }
    rc = 0;
out:
    conn_close(&c);
    return rc;
}

static int case_expect_100_continue(void)
{
    static const char head[] =
        POST_ECHO "Content-Type: text/plain\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    struct conn c;
    struct response *r;
    int rc = -1;

    if (conn_open(&c) != 0 || send_all(&c, head, sizeof head - 1) != 0)
        goto out;
    if ((r = read_response(&c, 0)) == NULL)
        goto out;
    if (strcmp(r->status_line, "HTTP/1.1 100 Continue") != 0) {
        fail("expected \"HTTP/1.1 100 Continue\" before sending the body, got \"%s\"",
             show(r->status_line));
        goto out;
    }
    if (send_all(&c, "hello", 5) != 0 || (r = read_response(&c, 0)) == NULL ||
        expect(r, 200, "text/plain", "hello") != 0)
        goto out;
    rc = 0;
out:
    conn_close(&c);
    return rc;
}

static int case_duplicate_identical_content_length(void)
{
    return simple_request(POST_ECHO "Content-Type: text/plain\r\n"
                          "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
                          200, "text/plain", "hello");
}

/* ---- More methods, framing and persistence ------------------------- */

/* HEAD on a router route: the GET's Content-Length, no body; a GET pipelined
 * behind it proves that no body was sent. */
static int case_head_router_route(void)
{
    static const char pair[] = "HEAD /users/77 HTTP/1.1\r\n" HOST "\r\n" GET_PLAINTEXT;
    struct conn c;
    struct response *r;
    char get_length[32];
    int rc = -1;

    if (conn_open(&c) != 0 || (r = exchange(&c, "GET /users/77 HTTP/1.1\r\n" HOST "\r\n")) == NULL ||
        expect(r, 200, "application/json", "{\"id\":\"77\"}") != 0)
        goto out;
    snprintf(get_length, sizeof get_length, "%s", resp_header(r, "Content-Length"));
    if (send_all(&c, pair, sizeof pair - 1) != 0 || (r = read_response(&c, 1)) == NULL ||
        expect(r, 200, "application/json", "") != 0) {
        fail_ctx("HEAD /users/77");
        goto out;
    }
    if (strcmp(show(resp_header(r, "Content-Length")), get_length) != 0) {
        fail("HEAD Content-Length \"%s\" differs from GET's \"%s\"", show(resp_header(r, "Content-Length")),
             get_length);
        goto out;
    }
    if ((r = read_response(&c, 0)) == NULL || expect(r, 200, "text/plain", HELLO) != 0) {
        fail_ctx("GET pipelined after HEAD (did HEAD send a body?)");
        goto out;
    }
    rc = 0;
out:
    conn_close(&c);
    return rc;
}

/* OPTIONS on a route: 200 with Allow, and the connection stays usable. */
static int case_options_route_allow(void)
{
    struct conn c;
    struct response *r;
    const char *allow;
    int rc = -1;

    if (conn_open(&c) != 0 || (r = exchange(&c, "OPTIONS /users/1 HTTP/1.1\r\n" HOST "\r\n")) == NULL ||
        expect(r, 200, NULL, "") != 0)
        goto out;
    allow = resp_header(r, "Allow");
    if (!has_token(allow, "GET") || !has_token(allow, "HEAD") || !has_token(allow, "OPTIONS")) {
        fail("expected Allow to list GET, HEAD and OPTIONS, got \"%s\"", show(allow));
        goto out;
    }
    if (request_expect(&c, GET_PLAINTEXT, 200, "text/plain", HELLO) != 0) {
        fail_ctx("GET after OPTIONS on the same connection");
        goto out;
    }
    rc = 0;
out:
    conn_close(&c);
    return rc;
}

/* Answers that are not framing errors (404, 405, 501) keep the connection. */
static int case_errors_keep_connection(void)
{
    static const char *const requests[] = {
        "GET /missing HTTP/1.1\r\n" HOST "\r\n",
        "PUT /plaintext HTTP/1.1\r\n" HOST "Content-Length: 3\r\n\r\nabc",
        "BREW /pot HTTP/1.1\r\n" HOST "\r\n",
    };
    static const int status[] = {404, 405, 501};
    struct conn c;
    struct response *r;
    size_t i;
    int rc = -1;

    if (conn_open(&c) != 0)
        goto out;
    for (i = 0; i < 3; i++) {
        if ((r = exchange(&c, requests[i])) == NULL || expect_error_json(r, status[i], 0) != 0 ||
            has_token(resp_header(r, "Connection"), "close")) {
            if (g_reason[0] == '\0')
                fail("the %d answer closes the connection", status[i]);
            goto out;
        }
        if (request_expect(&c, GET_PLAINTEXT, 200, "text/plain", HELLO) != 0) {
            fail_ctx("GET after the %d on the same connection", status[i]);
            goto out;
        }
    }
    rc = 0;
out:
    conn_close(&c);
    return rc;
}

/* "Connection: close" ends the connection after that response: a request
 * pipelined behind it is never answered. */
static int case_close_ignores_pipelined_rest(void)
{
    static const char both[] = "GET /plaintext HTTP/1.1\r\n" HOST "Connection: close\r\n\r\n" GET_JSON;
    struct conn c;
    struct response *r;
    int rc = -1;

    if (conn_open(&c) != 0 || send_all(&c, both, sizeof both - 1) != 0 || (r = read_response(&c, 0)) == NULL ||
        expect(r, 200, "text/plain", HELLO) != 0)
        goto out;
    if (expect_connection(r, "close") != 0)
        goto out;
    while (!c.eof && !c.reset) {
        if (conn_fill(&c) < 0)
            goto out;
    }
    if (c.len > c.off) {
        fail("bytes after the closing response: \"%s\"", esc(c.buf + c.off, c.len - c.off));
        goto out;
    }
    rc = 0;
out:
    conn_close(&c);
    return rc;
}

/* Connection options are case-insensitive tokens in a list. */
static int case_connection_tokens(void)
{
    struct conn c;
    struct response *r;
    int rc = -1;

    if (conn_open(&c) != 0 ||
        (r = exchange(&c, "GET /plaintext HTTP/1.0\r\nConnection: foo, Keep-Alive\r\n\r\n")) == NULL ||
        expect(r, 200, "text/plain", HELLO) != 0)
        goto out;
    if (!has_token(resp_header(r, "Connection"), "keep-alive")) {
        fail("HTTP/1.0 \"Connection: foo, Keep-Alive\": expected keep-alive, got \"%s\"",
             show(resp_header(r, "Connection")));
        goto out;
    }
    if ((r = exchange(&c, "GET /plaintext HTTP/1.1\r\n" HOST "Connection: keep-alive,, CLOSE\r\n\r\n")) == NULL ||
        expect(r, 200, "text/plain", HELLO) != 0)
        goto out;
    if (!has_token(resp_header(r, "Connection"), "close")) {
        fail("\"Connection: keep-alive,, CLOSE\": expected close, got \"%s\"", show(resp_header(r, "Connection")));
        goto out;
    }
    rc = wait_closed(&c);
out:
    conn_close(&c);
    return rc;
}

/* A request without Content-Length or Transfer-Encoding has no body: the
 * bytes after its head are the next request (RFC 9112 6.3, rule 7). */
static int case_no_framing_no_body(void)
{
    static const char both[] = POST_ECHO "Content-Type: text/plain\r\n\r\n" GET_PLAINTEXT;
    struct conn c;
    struct response *r;
    int rc = -1;

    if (conn_open(&c) != 0 || send_all(&c, both, sizeof both - 1) != 0 || (r = read_response(&c, 0)) == NULL ||
        expect(r, 200, "text/plain", "") != 0)
        goto out;
    if ((r = read_response(&c, 0)) == NULL || expect(r, 200, "text/plain", HELLO) != 0) {
        fail_ctx("the GET behind the body-less POST");
        goto out;
    }
    rc = 0;
out:
    conn_close(&c);
    return rc;
}

/* A GET may carry a body framed by Content-Length: it is consumed, not
 * taken for the next request. */
static int case_get_with_body(void)
{
    static const char both[] = "GET /plaintext HTTP/1.1\r\n" HOST "Content-Length: 26\r\n\r\n"
                               "GET /json HTTP/1.1\r\nX: y\r\n" GET_PLAINTEXT;
    struct conn c;
    struct response *r;
    int rc = -1;

    if (conn_open(&c) != 0 || send_all(&c, both, sizeof both - 1) != 0)
        goto out;
    if ((r = read_response(&c, 0)) == NULL || expect(r, 200, "text/plain", HELLO) != 0 ||
        (r = read_response(&c, 0)) == NULL || expect(r, 200, "text/plain", HELLO) != 0) {
        fail_ctx("the body must not be read as a request");
        goto out;
    }
    rc = 0;
out:
    conn_close(&c);
    return rc;
}

/* Expect: 100-continue in HTTP/1.0 is ignored: no interim response. */
static int case_expect_100_http10_ignored(void)
{
    static const char head[] = "POST /echo HTTP/1.0\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                               "Expect: 100-continue\r\n\r\n";
    struct conn c;
    struct response *r;
    int rc = -1;

    if (conn_open(&c) != 0 || send_all(&c, head, sizeof head - 1) != 0)
        goto out;
    if (wait_for(c.fd, POLLIN, 300) > 0) {
        conn_recv_some(&c);
        if (c.len > c.off && strncmp(c.buf + c.off, "HTTP/1.1 100", 12) == 0) {
            fail("a 100 Continue was sent to an HTTP/1.0 client");
            goto out;
        }
    }
    if (send_all(&c, "hello", 5) != 0 || (r = read_response(&c, 0)) == NULL ||
        expect(r, 200, "text/plain", "hello") != 0)
        goto out;
    rc = 0;
out:
    conn_close(&c);
    return rc;
}

/* The body sent without waiting for 100 Continue: a 100 may come first,
 * then the 200; a chunked body works the same. */
static int case_expect_100_body_without_waiting(void)
{
    static const char *const requests[] = {
        POST_ECHO "Content-Type: text/plain\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
        POST_ECHO "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
                  "5\r\nhello\r\n0\r\n\r\n",
    };
    struct conn c;
    struct response *r;
    int i, rc = -1;

    if (conn_open(&c) != 0)
        goto out;
    for (i = 0; i < 2; i++) {
        if ((r = exchange(&c, requests[i])) == NULL)
            goto out;
        if (r->status == 100 && (r = read_response(&c, 0)) == NULL)
            goto out;
        if (expect(r, 200, "text/plain", "hello") != 0) {
            fail_ctx("request %d", i + 1);
            goto out;
        }
    }
    rc = 0;
out:
    conn_close(&c);
    return rc;
}

/* A pipelined request in a test script: the bytes, whether it is HEAD, and
 * what to expect (NULL content_type / body: not checked). */
struct preq {
    const char *request;
    int head;
    int status;
    const char *content_type;
    const char *body;
};

static const struct preq pipeline16[] = {
    {GET_PLAINTEXT, 0, 200, "text/plain", HELLO},
    {GET_JSON, 0, 200, "application/json", JSON_HELLO},
    {POST_ECHO "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", 0, 200, "text/plain", "hello"},
    {"HEAD /plaintext HTTP/1.1\r\n" HOST "\r\n", 1, 200, "text/plain", ""},
    {"GET /users/abc HTTP/1.1\r\n" HOST "\r\n", 0, 200, "application/json", "{\"id\":\"abc\"}"},
    {POST_ECHO "Content-Type: text/x-c\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n2\r\n, \r\n"
               "6\r\nworld!\r\n0\r\nT: v\r\n\r\n", 0, 200, "text/x-c", "hello, world!"},
    {"GET /nope HTTP/1.1\r\n" HOST "\r\n", 0, 404, "application/json", NULL},
    {"OPTIONS /users/1 HTTP/1.1\r\n" HOST "\r\n", 0, 200, NULL, ""},
    {"GET http://localhost/plaintext HTTP/1.1\r\n" HOST "\r\n", 0, 200, "text/plain", HELLO},
    {"DELETE /users/1 HTTP/1.1\r\n" HOST "\r\n", 0, 405, "application/json", NULL},
    {POST_ECHO "Content-Type: text/plain\r\nContent-Length: 0\r\n\r\n", 0, 200, "text/plain", ""},
    {"GET /users/16 HTTP/1.1\r\n" HOST "\r\n", 0, 200, "application/json", "{\"id\":\"16\"}"},
    {"HEAD /json HTTP/1.1\r\n" HOST "\r\n", 1, 200, "application/json", ""},
    {"PROPFIND /x HTTP/1.1\r\n" HOST "\r\n", 0, 501, "application/json", NULL},
    {POST_ECHO "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 200, "text/plain", ""},
    {"GET /plaintext HTTP/1.1\r\n" HOST "\r\n", 0, 200, "text/plain", HELLO},
};
#define PIPELINE16_N ((int)(sizeof pipeline16 / sizeof pipeline16[0]))

/* Reads n responses for script[0..n) (indices modulo the script length). */
static int read_script_responses(struct conn *c, const struct preq *script, int script_len, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        const struct preq *q = &script[i % script_len];
        struct response *r = read_response(c, q->head);

        if (r == NULL || expect(r, q->status, q->content_type, q->body) != 0)
            return fail_ctx("response %d of %d", i + 1, n);
    }
    return 0;
}

/*
 * n pipelined requests (the script, repeated) split into two writes at each
 * cut in cuts[0..ncuts), all on ONE connection: write the first part, give
 * the server 0.5 ms to read it alone, write the rest, read all n answers.
 * Every answer is checked, so a request mis-framed at any cut shows.
 */
static int check_pipeline_cuts(const struct preq *script, int script_len, int n, const size_t *cuts, size_t ncuts)
{
    struct sbuf all;
    struct conn c;
    size_t k;
    int i, rc = -1;

    memset(&all, 0, sizeof all);
    for (i = 0; i < n; i++)
        sb_add(&all, script[i % script_len].request, strlen(script[i % script_len].request));
    if (conn_open(&c) != 0)
        goto out;
    for (k = 0; k < ncuts; k++) {
        size_t cut = cuts[k];

        if (send_all(&c, all.data, cut) != 0)
            goto fail_cut;
        tn_sleep_us(500);
        if (send_all(&c, all.data + cut, all.len - cut) != 0 ||
            read_script_responses(&c, script, script_len, n) != 0)
            goto fail_cut;
        if (c.len != c.off) {
            fail("%zu unexpected bytes after the last response: \"%s\"", c.len - c.off,
                 esc(c.buf + c.off, c.len - c.off));
            goto fail_cut;
        }
    }
    rc = 0;
    goto out;
fail_cut:
    fail_ctx("split after byte %zu of %zu (\"...%s\" | \"%s...\")", cuts[k], all.len,
             esc(all.data + (cuts[k] > 24 ? cuts[k] - 24 : 0), cuts[k] > 24 ? 24 : cuts[k]),
             esc(all.data + cuts[k], all.len - cuts[k] < 24 ? all.len - cuts[k] : 24));
out:
    conn_close(&c);
    sb_free(&all);
    return rc;
}

/* 16 different requests pipelined, split at every byte (on one connection). */
static int case_pipeline16_split_every_byte(void)
{
    size_t total = 0, i, *cuts;
    int rc;

    for (i = 0; i < (size_t)PIPELINE16_N; i++)
        total += strlen(pipeline16[i].request);
    cuts = xrealloc(NULL, total * sizeof *cuts);
    for (i = 1; i < total; i++)
        cuts[i - 1] = i;
    rc = check_pipeline_cuts(pipeline16, PIPELINE16_N, PIPELINE16_N, cuts, total - 1);
    free(cuts);
    return rc;
}

/*
 * 100 pipelined requests (the 16 above, repeated), split at a sample of
 * cuts: every byte of the first two and last two requests, the three bytes
 * on each side of every boundary between requests, and every 11th byte
 * elsewhere.
 */
static int case_pipeline100_split_sampled(void)
{
    enum { N = 100 };
    size_t start[N + 1], total = 0, ncuts = 0, i, *cuts;
    int k, rc;

    for (k = 0; k < N; k++) {
        start[k] = total;
        total += strlen(pipeline16[k % PIPELINE16_N].request);
    }
    start[N] = total;
    cuts = xrealloc(NULL, total * sizeof *cuts);
    for (i = 1; i < total; i++) {
        int keep = i < start[2] || i >= start[N - 2] || i % 11 == 0;

        for (k = 1; k < N && !keep; k++)
            keep = i + 3 >= start[k] && i <= start[k] + 3;
        if (keep)
            cuts[ncuts++] = i;
    }
    printf("# %zu cuts of %zu bytes\n", ncuts, total);
    rc = check_pipeline_cuts(pipeline16, PIPELINE16_N, N, cuts, ncuts);
    free(cuts);
    return rc;
}

/*
 * Answers over the 1 MiB output limit: a 1.5 MiB echo with a GET right
 * behind it in the same write, then 48 pipelined 96 KiB echoes.  The server
 * holds requests back while its unsent output is over the limit and must
 * resume them, whether the socket took the output at once or later.
 */
static int case_pipeline_over_output_limit(void)
{
    size_t big = 1536u << 10, small = 96u << 10, i;
    unsigned char *data = xrealloc(NULL, big);
    struct sbuf req;
    struct conn c;
    struct response *r;
    int rc = -1;

    fill_pattern(data, big, 99);
    memset(&req, 0, sizeof req);
    sb_printf(&req, POST_ECHO "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n", big);
    sb_add(&req, data, big);
    sb_add(&req, GET_PLAINTEXT, strlen(GET_PLAINTEXT));
    g_rcvbuf = 8 << 20; /* room for the whole answer: the server's send() may take it at once */
    rc = conn_open(&c);
    g_rcvbuf = 0;
    if (rc != 0 || send_all(&c, req.data, req.len) != 0)
        goto out;
    rc = -1;
    if ((r = read_response(&c, 0)) == NULL || expect(r, 200, "application/octet-stream", NULL) != 0 ||
        expect_body_bytes(r, data, big) != 0 || (r = read_response(&c, 0)) == NULL ||
        expect(r, 200, "text/plain", HELLO) != 0) {
        fail_ctx("a 1.5 MiB echo and a GET in one write");
        goto out;
    }
    req.len = 0;
    for (i = 0; i < 48; i++) {
        sb_printf(&req, POST_ECHO "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n", small);
        sb_add(&req, data + i * 1024, small);
    }
    if (send_all(&c, req.data, req.len) != 0)
        goto out;
    for (i = 0; i < 48; i++) {
        if ((r = read_response(&c, 0)) == NULL || expect(r, 200, "application/octet-stream", NULL) != 0 ||
            expect_body_bytes(r, data + i * 1024, small) != 0) {
            fail_ctx("echo %zu of 48", i + 1);
            goto out;
        }
    }
    rc = 0;
out:
    conn_close(&c);
    sb_free(&req);
    free(data);
    return rc;
}

/* ---- Rejections ------------------------------------------------------ */

/*
 * Each entry: the raw request bytes and the status expected (alt_status is
 * another acceptable one, 0 for none).  The length is taken from the
 * literal, so NUL bytes inside are fine.  Mind C's hex escapes: "\x01b" is
 * ONE byte 0x1b, so a hex escape followed by a hex digit is split: "\x01" "b".
 */
struct rejection {
    const char *name;
    const char *request;
    size_t len;
    int status;
    int alt_status;
};

#define REJECT(name, request, status, alt) {name, request, sizeof(request) - 1, status, alt}

static const struct rejection rejections[] = {
    /* request line */
    REJECT("RFC9112-3-request-line-without-version", "GET /\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-3-two-spaces-in-request-line", "GET  / HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-2.2-garbage-bytes", "\x01\x02\x03\r\n\r\n", 400, 0),
    /* request target */
    /* an http URI's host is never empty (RFC 9110 4.2.1); RFC 9112 3.3 lets a
       server reject such a target's authority, as nginx does */
    REJECT("RFC9112-3.2-empty-host-value", "GET /plaintext HTTP/1.1\r\nHost:\r\n\r\n", 400, 0),
    REJECT("RFC9112-3.2-empty-host-with-port", "GET /plaintext HTTP/1.1\r\nHost: :80\r\n\r\n", 400, 0),
    REJECT("RFC9112-3.2-empty-host-http10", "GET /plaintext HTTP/1.0\r\nHost: \r\n\r\n", 400, 0),
    REJECT("RFC9112-3.2-control-byte-in-target", "GET /a\x01" "b HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-3.2-space-in-target", "GET /a b HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-3.2-del-in-target", "GET /a\x7f" "b HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    /* header names */
    REJECT("RFC9110-5.1-space-in-field-name", "GET / HTTP/1.1\r\n" HOST "Ho st: x\r\n\r\n", 400, 0),
    REJECT("RFC9110-5.1-del-in-field-name", "GET / HTTP/1.1\r\n" HOST "X-A\x7f" "B: x\r\n\r\n", 400, 0),
    REJECT("RFC9112-5.1-space-before-colon-host", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, 0),
    REJECT("RFC9112-5.1-space-before-colon", "GET / HTTP/1.1\r\n" HOST "X-A : x\r\n\r\n", 400, 0),
    /* header values */
    REJECT("RFC9110-5.5-nul-in-field-value", "GET / HTTP/1.1\r\n" HOST "X-A: a\0b\r\n\r\n", 400, 0),
    REJECT("RFC9112-2.2-bare-cr-in-field-value", "GET / HTTP/1.1\r\n" HOST "X-A: a\rb\r\n\r\n", 400, 0),
    REJECT("RFC9112-5.2-obs-fold", "GET / HTTP/1.1\r\n" HOST "X-A: a\r\n b\r\n\r\n", 400, 0),
    /* Host */
    REJECT("RFC9112-3.2-missing-host", "GET / HTTP/1.1\r\n\r\n", 400, 0),
    REJECT("RFC9112-3.2-two-host-fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, 0),
    /* Content-Length */
    REJECT("RFC9110-8.6-content-length-not-a-number", POST_ECHO "Content-Length: abc\r\n\r\n", 400, 0),
    REJECT("RFC9110-8.6-content-length-negative", POST_ECHO "Content-Length: -1\r\n\r\n", 400, 0),
    REJECT("RFC9110-8.6-content-length-two-numbers", POST_ECHO "Content-Length: 1 2\r\n\r\n", 400, 0),
    REJECT("RFC9112-6.3-duplicate-cl-differing",
           POST_ECHO "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400, 0),
    /* Transfer-Encoding */
    REJECT("RFC9112-6.3-cl-te-conflict",
           POST_ECHO "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 0),
    REJECT("RFC9112-6.1-te-gzip-only", POST_ECHO "Transfer-Encoding: gzip\r\n\r\n", 400, 0),
    REJECT("RFC9112-6.1-te-in-http10",
           "POST /echo HTTP/1.0\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n"
           "5\r\nhello\r\n0\r\n\r\n",
           400, 0),
    /* chunked framing */
    REJECT("RFC9112-7.1-chunk-size-not-hex",
           POST_ECHO "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-7.1-chunk-size-overflow",
           POST_ECHO "Transfer-Encoding: chunked\r\n\r\n"
           "ffffffffffffffffffff\r\nhello\r\n", /* 20 hex digits */
           400, 413),
    REJECT("RFC9112-7.1-chunk-data-without-crlf",
           POST_ECHO "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400, 0),
    /* versions */
    REJECT("RFC9110-15.6.6-http2-version-505", "GET / HTTP/2.0\r\n" HOST "\r\n", 505, 0),
    REJECT("RFC9112-2.3-version-two-digit-minor", "GET / HTTP/1.10\r\n" HOST "\r\n", 400, 505),
    REJECT("RFC9112-2.3-wrong-protocol-name", "GET / HTTX/1.1\r\n" HOST "\r\n", 400, 0),
    /* limits: the body is never sent, so the answer must come right away */
    REJECT("RFC9110-15.5.14-content-length-over-limit-413",
           POST_ECHO "Content-Type: application/octet-stream\r\nContent-Length: 9000000\r\n\r\n",
           413, 0),

    /* ---- request line (RFC 9112 section 3) ---- */
    REJECT("RFC9112-3-tab-as-separator", "GET\t/ HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-3-space-after-version", "GET / HTTP/1.1 \r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-3-empty-method", " / HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-3-method-not-a-token", "G(T / HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-3-method-over-32-bytes-501",
           "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJ / HTTP/1.1\r\n" HOST "\r\n", 501, 0),
    REJECT("RFC9112-2.2-nul-in-method", "GE\0T / HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-2.2-bare-lf-line-ends", "GET / HTTP/1.1\n" HOST "\n", 400, 0),
    REJECT("RFC9112-2.2-bare-lf-after-field", "GET / HTTP/1.1\r\nHost: localhost\n\r\n", 400, 0),
    REJECT("RFC9112-2.2-bare-cr-in-request-line", "GET /\r HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-2.2-cr-without-lf-after-version", "GET / HTTP/1.1\rX" HOST "\r\n", 400, 0),
    REJECT("RFC9112-2.2-whitespace-before-first-field", "GET / HTTP/1.1\r\n " HOST "\r\n", 400, 0),
    /* ---- versions (RFC 9112 section 2.3) ---- */
    REJECT("RFC9112-2.3-lowercase-protocol-name", "GET / http/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-2.3-version-without-minor", "GET / HTTP/1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9110-15.6.6-http09-version-505", "GET / HTTP/0.9\r\n" HOST "\r\n", 505, 0),
    REJECT("RFC9110-15.6.6-http3-version-505", "GET / HTTP/3.0\r\n" HOST "\r\n", 505, 0),
    /* ---- request target (RFC 9112 section 3.2, RFC 3986) ---- */
    REJECT("RFC9112-2.2-nul-in-target", "GET /a\0b HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-3.2-non-ascii-in-target", "GET /caf\xc3\xa9 HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC3986-3.5-fragment-in-target", "GET /a#frag HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC3986-2.1-bad-percent-encoding", "GET /%zz HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC3986-2.1-truncated-percent-encoding", "GET /a%4 HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-3.2-relative-target", "GET a/b HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-3.2.3-authority-form-with-get", "GET localhost:80 HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-3.2.4-asterisk-form-with-get", "GET * HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-3.2.2-absolute-form-unknown-scheme", "GET ftp://localhost/ HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("RFC9112-3.2.2-absolute-form-empty-authority", "GET http:///plaintext HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    /* ---- Host (RFC 9112 section 3.2) ---- */
    REJECT("RFC9112-3.2-host-with-space", "GET / HTTP/1.1\r\nHost: local host\r\n\r\n", 400, 0),
    REJECT("RFC9112-3.2-host-with-slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, 0),
    REJECT("RFC9112-3.2-host-with-at-sign-userinfo", "GET / HTTP/1.1\r\nHost: user@h\r\n\r\n", 400, 0),
    REJECT("RFC9112-3.2-two-host-fields-http10", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, 0),
    /* ---- field lines (RFC 9112 section 5, RFC 9110 section 5) ---- */
    REJECT("RFC9112-5-field-line-without-colon", "GET / HTTP/1.1\r\n" HOST "X-A value\r\n\r\n", 400, 0),
    REJECT("RFC9112-5-empty-field-name", "GET / HTTP/1.1\r\n" HOST ": value\r\n\r\n", 400, 0),
    REJECT("RFC9112-5.1-tab-before-colon", "GET / HTTP/1.1\r\n" HOST "X-A\t: x\r\n\r\n", 400, 0),
    REJECT("RFC9112-5.2-obs-fold-with-tab", "GET / HTTP/1.1\r\n" HOST "X-A: a\r\n\tb\r\n\r\n", 400, 0),
    REJECT("RFC9110-5.5-control-byte-in-field-value", "GET / HTTP/1.1\r\n" HOST "X-A: a\x01" "b\r\n\r\n", 400, 0),
    REJECT("RFC9110-5.5-del-in-field-value", "GET / HTTP/1.1\r\n" HOST "X-A: a\x7f" "b\r\n\r\n", 400, 0),
    REJECT("RFC9110-5.5-escape-in-field-value", "GET / HTTP/1.1\r\n" HOST "X-A: \x1b[31m\r\n\r\n", 400, 0),
    REJECT("RFC9110-5.5-bare-lf-in-field-value", "GET / HTTP/1.1\r\n" HOST "X-A: a\nb\r\n\r\n", 400, 0),
    REJECT("RFC9110-5.1-non-ascii-field-name", "GET / HTTP/1.1\r\n" HOST "X-\xc3\xa9: 1\r\n\r\n", 400, 0),
    /* ---- Content-Length (RFC 9110 section 8.6, RFC 9112 section 6.3) ---- */
    REJECT("RFC9110-8.6-content-length-plus-sign", POST_ECHO "Content-Length: +5\r\n\r\nhello", 400, 0),
    REJECT("RFC9110-8.6-content-length-hex", POST_ECHO "Content-Length: 0x5\r\n\r\nhello", 400, 0),
    REJECT("RFC9110-8.6-content-length-empty", POST_ECHO "Content-Length:\r\n\r\n", 400, 0),
    REJECT("RFC9110-8.6-content-length-decimal-point", POST_ECHO "Content-Length: 5.0\r\n\r\nhello", 400, 0),
    REJECT("RFC9110-8.6-content-length-list-differing", POST_ECHO "Content-Length: 5, 6\r\n\r\nhello", 400, 0),
    REJECT("RFC9110-8.6-content-length-list-empty-member", POST_ECHO "Content-Length: 5,\r\n\r\nhello", 400, 0),
    REJECT("RFC9110-15.5.14-content-length-overflow-413",
           POST_ECHO "Content-Length: 99999999999999999999999\r\n\r\n", 413, 0),
    /* ---- Transfer-Encoding: smuggling vectors (RFC 9112 sections 6.1, 6.3) ---- */
    REJECT("RFC9112-6.3-te-cl-conflict",
           POST_ECHO "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-6.3-te-cl-zero-conflict",
           POST_ECHO "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-6.1-te-chunked-not-last",
           POST_ECHO "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400, 501),
    REJECT("RFC9112-6.1-te-gzip-then-chunked",
           POST_ECHO "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400, 501),
    REJECT("RFC9112-6.1-te-chunked-twice",
           POST_ECHO "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-6.1-te-two-fields",
           POST_ECHO "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-6.1-te-identity", POST_ECHO "Transfer-Encoding: identity\r\n\r\n", 400, 501),
    REJECT("RFC9112-6.1-te-xchunked", POST_ECHO "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400, 501),
    REJECT("RFC9112-6.1-te-empty-value", POST_ECHO "Transfer-Encoding:\r\n\r\n", 400, 0),
    REJECT("RFC9112-6.1-te-quoted-chunked",
           POST_ECHO "Transfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n", 400, 501),
    REJECT("RFC9112-6.1-te-space-before-colon",
           POST_ECHO "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-6.1-te-vertical-tab", POST_ECHO "Transfer-Encoding:\x0b" "chunked\r\n\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-6.1-te-obs-fold", POST_ECHO "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400, 0),
    /* ---- chunked framing (RFC 9112 section 7.1) ---- */
    REJECT("RFC9112-7.1-chunk-size-missing", POST_ECHO "Transfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-7.1-chunk-size-leading-space", POST_ECHO "Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-7.1-chunk-size-negative", POST_ECHO "Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-7.1-chunk-size-0x-prefix", POST_ECHO "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-7.1-chunk-size-bare-lf", POST_ECHO "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-7.1-chunk-data-longer-than-size", POST_ECHO "Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-7.1-chunk-data-bare-lf", POST_ECHO "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-7.1.1-chunk-ext-control-byte",
           POST_ECHO "Transfer-Encoding: chunked\r\n\r\n5;a\x01\r\nhello\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-7.1.1-chunk-ext-without-semicolon",
           POST_ECHO "Transfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-7.1.1-chunk-size-trailing-whitespace",
           POST_ECHO "Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-7.1.1-last-chunk-trailing-tab", POST_ECHO "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\t\r\n\r\n", 400, 0),
    REJECT("RFC9112-7.1.1-chunk-ext-value-trailing-whitespace",
           POST_ECHO "Transfer-Encoding: chunked\r\n\r\n5;a=b \r\nhello\r\n0\r\n\r\n", 400, 0),
    REJECT("RFC9112-7.1.2-trailer-name-with-space",
           POST_ECHO "Transfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer: 1\r\n\r\n", 400, 0),
    REJECT("RFC9112-7.1.2-trailer-obs-fold",
           POST_ECHO "Transfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\n folded\r\n\r\n", 400, 0),
    REJECT("RFC9112-7.1.2-trailer-control-byte",
           POST_ECHO "Transfer-Encoding: chunked\r\n\r\n0\r\nA: 1\x01\r\n\r\n", 400, 0),
    REJECT("RFC9112-7.1-last-chunk-bare-cr",
           POST_ECHO "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\r", 400, 0),
    REJECT("RFC9110-15.5.14-chunk-size-over-limit-413",
           POST_ECHO "Transfer-Encoding: chunked\r\n\r\n900000\r\n", 413, 0),
    /* ---- expectations (RFC 9110 section 10.1.1) ---- */
    REJECT("RFC9110-10.1.1-expect-100-oversized-body-413-no-100",
           POST_ECHO "Expect: 100-continue\r\nContent-Length: 9000000\r\n\r\n", 413, 0),
    REJECT("RFC9110-10.1.1-unknown-expectation-417",
           POST_ECHO "Expect: something-else\r\nContent-Length: 5\r\n\r\nhello", 417, 0),
};

/* A 10 KiB request target. */
static int case_reject_long_target_414(void)
{
    struct sbuf req;
    int rc;

    memset(&req, 0, sizeof req);
    sb_printf(&req, "GET /");
    sb_fill(&req, 'a', 10 * 1024);
    sb_printf(&req, " HTTP/1.1\r\n" HOST "\r\n");
    rc = check_rejection(req.data, req.len, 414, 0);
    sb_free(&req);
    return rc;
}

/* A header block over 16 KiB: 20 headers of about 1 KiB each. */
static int case_reject_header_block_431(void)
{
    struct sbuf req;
    int i, rc;

    memset(&req, 0, sizeof req);
    sb_printf(&req, "GET /plaintext HTTP/1.1\r\n" HOST);
    for (i = 0; i < 20; i++) {
        sb_printf(&req, "X-Fill-%02d: ", i);
        sb_fill(&req, 'v', 1024);
        sb_printf(&req, "\r\n");
    }
    sb_printf(&req, "\r\n");
    rc = check_rejection(req.data, req.len, 431, 0);
    sb_free(&req);
    return rc;
}

/* ---- Faults ---------------------------------------------------------- */

/* Clients that send part of a request and close. */
static int case_client_half_request_then_close(void)
{
    static const char *const partial[] = {
        "GET /plaintext HTTP/1.1\r\nHo",
        POST_ECHO "Content-Length: 100\r\n\r\nonly part of the body",
        POST_ECHO "Transfer-Encoding: chunked\r\n\r\n10\r\nabc",
    };
    struct conn c;
    int i;

    for (i = 0; i < 12; i++) {
        const char *req = partial[i % 3];

        if (conn_open(&c) != 0 || send_all(&c, req, strlen(req)) != 0) {
            conn_close(&c);
            return fail_ctx("partial request %d", i + 1);
        }
        conn_close(&c);
    }
    tn_sleep_us(50 * 1000);
    return fresh_plaintext_ok();
}

/* Clients that send a full request and reset the connection without reading. */
static int case_client_rst_after_full_request(void)
{
    struct conn c;
    int i;

    for (i = 0; i < 12; i++) {
        const char *req = i % 2 ? GET_PLAINTEXT
                                : POST_ECHO "Content-Length: 5\r\n\r\nhello";

        if (conn_open(&c) != 0 || send_all(&c, req, strlen(req)) != 0) {
            conn_close(&c);
            return fail_ctx("request %d", i + 1);
        }
        conn_reset(&c);
    }
    tn_sleep_us(50 * 1000);
    return fresh_plaintext_ok();
}

/* A client that resets while the server is writing a 4 MiB response: the
 * server's write fails (EPIPE / ECONNRESET) and it must carry on. */
static int case_client_rst_during_large_response(void)
{
    size_t size = 4u << 20;
    unsigned char *data = xrealloc(NULL, size);
    struct sbuf req;
    struct conn c;
    int rc = -1;

    fill_pattern(data, size, 7);
    memset(&req, 0, sizeof req);
    sb_printf(&req, POST_ECHO "Content-Type: application/octet-stream\r\n"
                              "Content-Length: %zu\r\n\r\n", size);
    sb_add(&req, data, size);
    if (conn_open(&c) == 0 && send_all(&c, req.data, req.len) == 0 &&
        (c.len > c.off || conn_fill(&c) > 0))
        rc = 0; /* the response has started */
    conn_reset(&c);
    sb_free(&req);
    free(data);
    if (rc != 0)
        return rc;
    tn_sleep_us(100 * 1000); /* give the server time to hit the failed write */
    return fresh_plaintext_ok();
}

/* 1,000 connections open at once, each sending GET /plaintext. */
static int case_concurrent_1000_connections(void)
{
    enum { N = 1000 };
    static const char request[] = GET_PLAINTEXT;
    const size_t request_len = sizeof request - 1;
    struct conn *cs = calloc(N, sizeof *cs);
    size_t *sent = calloc(N, sizeof *sent);
    char *done = calloc(N, 1);
    struct pollfd *pfds = calloc(N, sizeof *pfds);
    int *index = calloc(N, sizeof *index);
    long long deadline = tn_now_ms() + 30 * 1000;
    int i, remaining = N, rc = -1;

    for (i = 0; cs != NULL && i < N; i++)
        cs[i].fd = -1;
    if (!cs || !sent || !done || !pfds || !index) {
        fail("out of memory");
        goto out;
    }
    for (i = 0; i < N; i++) {
        cs[i].fd = connect_start(g_port);
        if (cs[i].fd < 0) {
            fail_ctx("opening connection %d of %d", i + 1, N);
            goto out;
        }
    }

    while (remaining > 0) {
        int n = 0, k, ready;

        if (tn_now_ms() > deadline) {
            fail("%d of %d connections still had no response after 30 s", remaining, N);
            goto out;
        }
        /* a connection is writable once connected: then send, then read */
        for (i = 0; i < N; i++) {
            if (done[i])
                continue;
            pfds[n].fd = cs[i].fd;
            pfds[n].events = sent[i] < request_len ? POLLOUT : POLLIN;
            pfds[n].revents = 0;
            index[n++] = i;
        }
        ready = poll(pfds, (nfds_t)n, 200);
        if (ready < 0 && errno != EINTR) {
            fail("poll: %s", strerror(errno));
            goto out;
        }
        for (k = 0; k < n && ready > 0; k++) {
            struct conn *c;

            if (pfds[k].revents == 0)
                continue;
            i = index[k];
            c = &cs[i];
            if (sent[i] < request_len) {
                int err = 0;
                socklen_t err_len = sizeof err;
                ssize_t w;

                if (sent[i] == 0 &&
                    (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0 || err != 0)) {
                    fail("connection %d: connect: %s", i + 1, strerror(err ? err : errno));
                    goto out;
                }
                w = send(c->fd, request + sent[i], request_len - sent[i], MSG_NOSIGNAL);
                if (w > 0)
                    sent[i] += (size_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    fail("connection %d: send: %s", i + 1, strerror(errno));
                    goto out;
                }
                continue;
            }
            if (conn_recv_some(c) == RECV_ERROR) {
                fail("connection %d: recv: %s", i + 1, strerror(c->err));
                goto out;
            }
            switch (parse_response(c, 0)) {
            case PARSE_DONE:
                if (expect(&c->resp, 200, "text/plain", HELLO) != 0) {
                    fail_ctx("connection %d", i + 1);
                    goto out;
                }
                done[i] = 1;
                remaining--;
                break;
            case PARSE_ERROR:
                fail_ctx("connection %d", i + 1);
                goto out;
            case PARSE_MORE:
                if (c->eof) {
                    fail("connection %d: closed before a complete response", i + 1);
                    goto out;
                }
                break;
            }
        }
    }
    rc = 0;
out:
    for (i = 0; cs != NULL && i < N; i++)
        conn_close(&cs[i]);
    free(cs);
    free(sent);
    free(done);
    free(pfds);
    free(index);
    return rc;
}

/* ---- Shutdown -------------------------------------------------------- */

static int g_stopping; /* the server is meant to exit now */
static const char *g_death_case;  /* the case during which the server died */

/* SIGTERM with an idle keep-alive connection open: exit status 0 within 5 s. */
static int case_sigterm_exits_cleanly(void)
{
    struct conn c;
    long long deadline;
    int rc = -1;

    if (!server_alive())
        return fail("the server is not running");
    if (conn_open(&c) != 0 || request_expect(&c, GET_PLAINTEXT, 200, "text/plain", HELLO) != 0) {
        fail_ctx("setting up the idle keep-alive connection");
        goto out;
    }
    g_stopping = 1;
    kill(g_server_pid, SIGTERM);
    deadline = tn_now_ms() + SHUTDOWN_TIMEOUT_MS;
    while (server_alive() && tn_now_ms() < deadline)
        tn_sleep_us(10 * 1000);
    if (server_alive()) {
        stop_server();
        fail("the server was still running %d ms after SIGTERM (killed it)", SHUTDOWN_TIMEOUT_MS);
        goto out;
    }
    if (!WIFEXITED(g_server_status) || WEXITSTATUS(g_server_status) != 0) {
        fail("expected exit status 0 after SIGTERM, got %s", describe_status(g_server_status));
        goto out;
    }
    rc = 0;
out:
    conn_close(&c);
    return rc;
}

/* ---- More limits and half-close (conformance) ------------------------- */

/* 101 header lines: over CHOPIN_MAX_HEADERS (100, as Apache and h2o). */
static int case_reject_too_many_fields(void)
{
    struct sbuf req;
    int i, rc;

    memset(&req, 0, sizeof req);
    sb_printf(&req, "GET /plaintext HTTP/1.1\r\n" HOST);
    for (i = 0; i < 100; i++)
        sb_printf(&req, "X-F%d: %d\r\n", i, i);
    sb_printf(&req, "\r\n");
    rc = check_rejection(req.data, req.len, 431, 0);
    sb_free(&req);
    return rc;
}

/* One 20 KiB field line that never ends: 431 without waiting for its CRLF. */
static int case_reject_unterminated_long_line(void)
{
    struct sbuf req;
    int rc;

    memset(&req, 0, sizeof req);
    sb_printf(&req, "GET /plaintext HTTP/1.1\r\n" HOST "X-Long: ");
    sb_fill(&req, 'v', 20 * 1024);
    rc = check_rejection(req.data, req.len, 431, 0);
    sb_free(&req);
    return rc;
}

/* A target of exactly 8 KiB is within the limit: routed (404), not 414. */
static int case_target_at_limit(void)
{
    struct sbuf req;
    int rc;

    memset(&req, 0, sizeof req);
    sb_printf(&req, "GET /");
    sb_fill(&req, 'a', 8 * 1024 - 1);
    sb_printf(&req, " HTTP/1.1\r\n" HOST "\r\n");
    rc = simple_request(req.data, 404, "application/json", NULL);
    sb_free(&req);
    return rc;
}

/* A client that shuts its write side after its requests still gets every
 * answer, then the server closes. */
static int check_half_close(const char *requests, size_t len, int n, const unsigned char *echo, size_t echo_len)
{
    struct conn c;
    struct response *r;
    int i, rc = -1;

    if (conn_open(&c) != 0 || send_all(&c, requests, len) != 0)
        goto out;
    if (shutdown(c.fd, SHUT_WR) != 0) {
        fail("shutdown(SHUT_WR): %s", strerror(errno));
        goto out;
    }
    for (i = 0; i < n; i++) {
        if ((r = read_response(&c, 0)) == NULL || r->status != 200 ||
            (echo != NULL && expect_body_bytes(r, echo, echo_len) != 0)) {
            if (r != NULL && r->status != 200)
                fail("expected 200, got \"%s\"", show(r->status_line));
            fail_ctx("answer %d of %d after the half-close", i + 1, n);
            goto out;
        }
    }
    rc = wait_closed(&c);
out:
    conn_close(&c);
    return rc;
}

static int case_half_close_after_requests(void)
{
    static const char three[] = GET_PLAINTEXT GET_JSON "GET /users/3 HTTP/1.1\r\n" HOST "\r\n";
    size_t size = 2u << 20;
    unsigned char *data;
    struct sbuf req;
    int rc;

    if (check_half_close(GET_PLAINTEXT, strlen(GET_PLAINTEXT), 1, NULL, 0) != 0)
        return fail_ctx("one GET");
    if (check_half_close(three, sizeof three - 1, 3, NULL, 0) != 0)
        return fail_ctx("three pipelined GETs");
    data = xrealloc(NULL, size);
    fill_pattern(data, size, 5);
    memset(&req, 0, sizeof req);
    sb_printf(&req, POST_ECHO "Content-Length: %zu\r\n\r\n", size);
    sb_add(&req, data, size);
    rc = check_half_close(req.data, req.len, 1, data, size);
    sb_free(&req);
    free(data);
    return rc == 0 ? 0 : fail_ctx("a 2 MiB echo");
}

/* ==================================================================== */
/* 7. The hardening cases (--fixture)                                    */
/* ==================================================================== */

/*
 * The fixture (tests/fixtures/server.c) runs with idle_timeout 2 s,
 * request_timeout 2 s and shutdown_timeout 3 s unless a group restarts it
 * with other settings.  chopin checks timeouts on a 1-second tick, so a
 * 2-second timeout fires 1 to 3 seconds after the last progress; the cases
 * accept 0.9 to 4.5 s.  BLACKBOX_SANITIZED=1 says the server is an ASan
 * build, whose memory figures mean nothing (its allocator quarantines freed
 * blocks): memory is then reported, not checked.
 */
#define FIX_MIN_MS 900
#define FIX_MAX_MS (4500 * g_scale)
#define BIG_SEED 2463534242u      /* tests/fixtures/server.c fills /big with this stream */

static int g_base_fds = -1;       /* the fixture's descriptors when idle */

static int sanitized(void)
{
    const char *v = getenv("BLACKBOX_SANITIZED");

    return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

/*
 * Wait until the server closes c, keeping what it sends in c->buf.  Returns
 * the ms it took, or -1 (and a reason) when still open after max_ms.
 */
static long long wait_close_keep(struct conn *c, long long start, long max_ms)
{
    long long deadline = start + max_ms;

    while (!c->eof && !c->reset) {
        long left = (long)(deadline - tn_now_ms());
        long n;

        if (left <= 0) {
            fail("the server had not closed the connection %ld ms later", max_ms);
            return -1;
        }
        if (wait_for(c->fd, POLLIN, left) < 0) {
            fail("poll: %s", strerror(errno));
            return -1;
        }
        n = conn_recv_some(c);
        if (n == RECV_ERROR && !c->reset) {
            fail("recv: %s", strerror(c->err));
            return -1;
        }
    }
    return tn_now_ms() - start;
}

/* The server's descriptor count returns to `want` within max_ms. */
static int fds_return_to(int want, long max_ms)
{
    long long deadline = tn_now_ms() + max_ms;
    int n;

    while ((n = server_fd_count()) != want && tn_now_ms() < deadline)
        tn_sleep_us(20 * 1000);
    if (n != want)
        return fail("the server has %d descriptors open, expected %d", n, want);
    return 0;
}

/* SIGTERM, then wait (bounded) for the exit.  *took_ms: how long it took. */
static int sigterm_and_wait(long max_ms, long long *took_ms, int want_status_zero)
{
    long long start = tn_now_ms();

    if (!server_alive())
        return fail("the server is not running (%s)", describe_status(g_server_status));
    g_stopping = 1;
    kill(g_server_pid, SIGTERM);
    while (server_alive() && tn_now_ms() - start < max_ms)
        tn_sleep_us(5 * 1000);
    if (took_ms != NULL)
        *took_ms = tn_now_ms() - start;
    if (server_alive()) {
        stop_server();
        return fail("the server was still running %ld ms after SIGTERM (killed it)", max_ms);
    }
    if (want_status_zero && (!WIFEXITED(g_server_status) || WEXITSTATUS(g_server_status) != 0))
        return fail("expected exit status 0 after SIGTERM, got %s", describe_status(g_server_status));
    return 0;
}

/* Stop the running server (if any) and start the fixture with `env`. */
static int restart_fixture(const char *const *env, long nofile)
{
    if (server_alive()) {
        g_stopping = 1;
        stop_server();
    }
    g_stopping = 0;
    g_death_case = NULL;
    g_server_env = env;
    g_server_nofile = nofile;
    if (start_server(g_server_path) != 0)
        return -1;
    tn_sleep_us(100 * 1000);
    g_base_fds = server_fd_count();
    printf("# the fixture holds %d descriptors when idle\n", g_base_fds);
    return 0;
}

/* ---- Timeouts ---------------------------------------------------------- */

/* A keep-alive connection after a request, and one that never sends a byte:
 * both closed after idle_timeout. */
static int case_idle_timeouts(void)
{
    struct conn a, b;
    long long start, ta, tb;
    int rc = -1;

    memset(&b, 0, sizeof b);
    b.fd = -1;
    if (conn_open(&a) != 0 || request_expect(&a, GET_PLAINTEXT, 200, "text/plain", HELLO) != 0 ||
        conn_open(&b) != 0)
        goto out;
    start = tn_now_ms();
    if ((ta = wait_close_keep(&a, start, FIX_MAX_MS)) < 0) {
        fail_ctx("the keep-alive connection after its request");
        goto out;
    }
    if ((tb = wait_close_keep(&b, start, FIX_MAX_MS)) < 0) {
        fail_ctx("the connection that sent nothing");
        goto out;
    }
    printf("# idle keep-alive closed after %lld ms, silent connection after %lld ms\n", ta, tb);
    if (ta < FIX_MIN_MS || tb < FIX_MIN_MS) {
        fail("closed too early (%lld / %lld ms) for a 2 s idle timeout", ta, tb);
        goto out;
    }
    if (a.len != a.off || b.len != b.off) {
        fail("an idle connection got bytes before the close: \"%s\"", a.len != a.off ? esc(a.buf + a.off, a.len - a.off)
                                                                                     : esc(b.buf + b.off, b.len - b.off));
        goto out;
    }
    rc = 0;
out:
    conn_close(&a);
    conn_close(&b);
    return rc;
}

/*
 * Slowloris: a head dribbled one byte every 200 ms never completes (it is
 * 200 bytes long: 40 s); the server must answer 408 and close once
 * request_timeout has passed since its first byte, progress or not.
 */
static int case_slowloris_header_timeout(void)
{
    struct sbuf head;
    struct conn c;
    struct response *r;
    long long start, took = -1;
    size_t i = 0;
    int rc = -1;

    memset(&head, 0, sizeof head);
    sb_printf(&head, "GET /plaintext HTTP/1.1\r\n" HOST "X-Slow: ");
    sb_fill(&head, 'z', 200 - head.len);
    if (conn_open(&c) != 0)
        goto out;
    start = tn_now_ms();
    while (!c.eof && !c.reset && tn_now_ms() - start < FIX_MAX_MS + 1500) {
        if (i < head.len && send(c.fd, head.data + i, 1, MSG_NOSIGNAL) == 1)
            i++;
        if (wait_for(c.fd, POLLIN, 200) > 0 && conn_recv_some(&c) == RECV_ERROR && !c.reset) {
            fail("recv: %s", strerror(c.err));
            goto out;
        }
        if (c.len > c.off && took < 0)
            took = tn_now_ms() - start;
    }
    if (took < 0) {
        fail("no answer after %lld ms of dribbling (%zu bytes sent): a slowloris client is never cut off",
             tn_now_ms() - start, i);
        goto out;
    }
    printf("# 408 after %lld ms and %zu dribbled bytes\n", took, i);
    if ((r = read_response(&c, 0)) == NULL || expect_error_json(r, 408, 0) != 0)
        goto out;
    if (took < FIX_MIN_MS || took > FIX_MAX_MS) {
        fail("the 408 came after %lld ms; expected %d to %d ms", took, FIX_MIN_MS, FIX_MAX_MS);
        goto out;
    }
    if (wait_close_keep(&c, tn_now_ms(), CLOSE_TIMEOUT_MS) < 0)
        goto out;
    rc = 0;
out:
    conn_close(&c);
    sb_free(&head);
    return rc == 0 ? fresh_plaintext_ok() : rc;
}

/* A body that stops coming: 408 after request_timeout. */
static int case_body_stall_timeout(void)
{
    static const char part[] = POST_ECHO "Content-Length: 100\r\n\r\nonly ten b";
    struct conn c;
    struct response *r;
    long long start, took;
    int rc = -1;

    if (conn_open(&c) != 0 || send_all(&c, part, sizeof part - 1) != 0)
        goto out;
    start = tn_now_ms();
    if ((took = wait_close_keep(&c, start, FIX_MAX_MS)) < 0)
        goto out;
    printf("# 408 and close after %lld ms\n", took);
    if ((r = read_response(&c, 0)) == NULL || expect_error_json(r, 408, 0) != 0)
        goto out;
    if (took < FIX_MIN_MS) {
        fail("closed after %lld ms: too early for a 2 s timeout", took);
        goto out;
    }
    rc = 0;
out:
    conn_close(&c);
    return rc == 0 ? fresh_plaintext_ok() : rc;
}

/* A body that keeps coming, slowly (one byte every 350 ms, 4.2 s in all):
 * the body timeout counts from the last progress, so it completes. */
static int case_body_slow_progress(void)
{
    static const char head[] = POST_ECHO "Content-Type: text/plain\r\nContent-Length: 12\r\n\r\n";
    struct conn c;
    struct response *r;
    int rc = -1;

    if (conn_open(&c) == 0 && send_all(&c, head, sizeof head - 1) == 0 &&
        send_slow(&c, "slow but on!", 12, 350 * 1000) == 0 && (r = read_response(&c, 0)) != NULL)
        rc = expect(r, 200, "text/plain", "slow but on!");
    conn_close(&c);
    return rc;
}

/* A client that asks for 32 MiB and stops reading: closed after
 * request_timeout without progress, its descriptor released. */
static int case_write_stall_timeout(void)
{
    struct conn c;
    long long start, took;
    int rc = -1;

    g_rcvbuf = 64 << 10; /* a small window, so the server's send stalls early */
    rc = conn_open(&c);
    g_rcvbuf = 0;
    if (rc != 0 || send_all(&c, "GET /big?n=33554432 HTTP/1.1\r\n" HOST "\r\n", 40 + sizeof HOST - 1) != 0 ||
        conn_fill(&c) <= 0) /* the answer has started: the server holds the connection */
        goto out;
    rc = -1;
    if (server_fd_count() <= g_base_fds) {
        fail("the server holds %d descriptors while answering, no more than when idle (%d)", server_fd_count(),
             g_base_fds);
        goto out;
    }
    start = tn_now_ms();
    while (server_fd_count() > g_base_fds && tn_now_ms() - start < FIX_MAX_MS)
        tn_sleep_us(20 * 1000);
    took = tn_now_ms() - start;
    if (server_fd_count() > g_base_fds) {
        fail("the server still holds the connection %lld ms after the client stopped reading", took);
        goto out;
    }
    printf("# the stalled reader was dropped after %lld ms\n", took);
    if (took < FIX_MIN_MS) {
        fail("dropped after %lld ms: too early for a 2 s timeout", took);
        goto out;
    }
    rc = 0;
out:
    conn_close(&c);
    return rc == 0 ? fresh_plaintext_ok() : rc;
}

/*
 * A server that was not scheduled for longer than its timeouts (stopped with
 * SIGSTOP for 3.2 s here) must not count the time as idleness of the clients
 * whose bytes arrived meanwhile: a request sent during the stop on an idle
 * keep-alive connection, and the rest of a body, are answered when it
 * resumes, and both connections stay open for another request.
 */
static int case_stalled_server_no_false_timeout(void)
{
    static const char head[] = POST_ECHO "Content-Type: text/plain\r\nContent-Length: 10\r\n\r\nhello";
    struct conn a, b;
    struct response *r;
    int rc = -1, stopped = 0;

    b.fd = -1;
    b.buf = NULL;
    if (conn_open(&a) != 0 || request_expect(&a, GET_PLAINTEXT, 200, "text/plain", HELLO) != 0 ||
        conn_open(&b) != 0 || send_all(&b, head, sizeof head - 1) != 0)
        goto out;
    tn_sleep_us(100 * 1000);
    kill(g_server_pid, SIGSTOP);
    stopped = 1;
    tn_sleep_us(100 * 1000);
    if (send_all(&a, GET_JSON, strlen(GET_JSON)) != 0 || send_all(&b, "world", 5) != 0)
        goto out;
    tn_sleep_us(3200 * 1000);
    kill(g_server_pid, SIGCONT);
    stopped = 0;
    if ((r = read_response(&a, 0)) == NULL || expect(r, 200, "application/json", JSON_HELLO) != 0) {
        fail_ctx("the request sent to an idle connection while the server was stopped");
        goto out;
    }
    if ((r = read_response(&b, 0)) == NULL || expect(r, 200, "text/plain", "helloworld") != 0) {
        fail_ctx("the body finished while the server was stopped");
        goto out;
    }
    if (request_expect(&a, GET_PLAINTEXT, 200, "text/plain", HELLO) != 0 ||
        request_expect(&b, GET_PLAINTEXT, 200, "text/plain", HELLO) != 0) {
        fail_ctx("the next request on the same connections (were they timed out?)");
        goto out;
    }
    rc = 0;
out:
    if (stopped)
        kill(g_server_pid, SIGCONT);
    conn_close(&a);
    conn_close(&b);
    return rc;
}

/* ---- Memory bound for clients that send without reading ---------------- */

/*
 * 8 clients pipeline GET /big?n=65536 requests without reading any answer,
 * for 1.5 s each: the server reads a client only while that client's unsent
 * output is under 1 MiB, so its memory grows by about 8 x (1 MiB + 64 KiB),
 * not by the 100s of MiB the answers would take.
 */
static int case_memory_bound_no_reader(void)
{
    enum { N = 8 };
    static const char req[] = "GET /big?n=65536 HTTP/1.1\r\n" HOST "\r\n";
    struct conn cs[N];
    size_t sent[N];
    long before, peak = 0, rss;
    long long start;
    int i, rc = -1;

    for (i = 0; i < N; i++)
        cs[i].fd = -1, cs[i].buf = NULL;
    before = server_rss_kib();
    g_rcvbuf = 64 << 10;
    for (i = 0; i < N; i++) {
        sent[i] = 0;
        if (conn_open(&cs[i]) != 0) {
            g_rcvbuf = 0;
            goto out;
        }
    }
    g_rcvbuf = 0;
    start = tn_now_ms();
    while (tn_now_ms() - start < 1500) {
        for (i = 0; i < N; i++) {
            ssize_t w = send(cs[i].fd, req, sizeof req - 1, MSG_NOSIGNAL | MSG_DONTWAIT);

            if (w > 0)
                sent[i] += (size_t)w;
        }
        tn_sleep_us(2000);
        rss = server_rss_kib();
        if (rss > peak)
            peak = rss;
    }
    printf("# RSS %ld KiB before, peak %ld KiB (+%ld KiB) while %d clients sent %zu KiB each without reading\n",
           before, peak, peak - before, N, sent[0] / 1024);
    if (!sanitized() && peak - before > 24 * 1024) {
        fail("the server grew by %ld KiB for %d clients that do not read", peak - before, N);
        goto out;
    }
    rc = 0;
out:
    for (i = 0; i < N; i++)
        conn_reset(&cs[i]);
    if (rc == 0 && fds_return_to(g_base_fds, 3000) != 0)
        rc = -1;
    return rc == 0 ? fresh_plaintext_ok() : rc;
}

/* ---- Faults ------------------------------------------------------------ */

/* Resets in the middle of a head, a body, a chunked body and a response;
 * a close (FIN, unread data: the kernel sends RST) in the middle of a 32 MiB
 * response, so the server writes to a dead socket (no SIGPIPE may kill it).
 * Every descriptor comes back. */
static int case_resets_and_dead_sockets(void)
{
    static const char *const partial[] = {
        "GET /plaintext HTTP/1.1\r\nHost: loc",
        POST_ECHO "Content-Length: 1048576\r\n\r\nthe first bytes of a long body",
        POST_ECHO "Transfer-Encoding: chunked\r\n\r\n100000\r\nsome of a 1 MiB chunk",
        POST_ECHO "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nTrailer-Cut-Sh",
    };
    struct conn c;
    size_t i;
    int k;

    for (i = 0; i < sizeof partial / sizeof partial[0]; i++) {
        if (conn_open(&c) != 0 || send_all(&c, partial[i], strlen(partial[i])) != 0) {
            conn_close(&c);
            return fail_ctx("partial request %zu", i + 1);
        }
        tn_sleep_us(20 * 1000);
        conn_reset(&c);
    }
    for (k = 0; k < 2; k++) { /* k = 0: RST; k = 1: close with unread data */
        if (conn_open(&c) != 0 || send_all(&c, "GET /big?n=33554432 HTTP/1.1\r\n" HOST "\r\n", 40 + sizeof HOST - 1) != 0 ||
            conn_fill(&c) <= 0) {
            conn_close(&c);
            return fail_ctx("the 32 MiB response did not start");
        }
        while (c.len < (256u << 10) && conn_fill(&c) > 0) {
        }
        if (k == 0)
            conn_reset(&c);
        else
            conn_close(&c);
    }
    if (fds_return_to(g_base_fds, 3000) != 0)
        return -1;
    return fresh_plaintext_ok();
}

/* A client that half-closes after a request still gets its answer. */
static int case_fixture_half_close(void)
{
    return case_half_close_after_requests();
}

/*
 * Interrupted system calls: a second process sends the server SIGUSR1
 * (caught without SA_RESTART) every millisecond and SIGSTOP / SIGCONT every
 * 50 ms for 2 s, while this one makes requests, a 1 MiB echo among them.
 */
static int case_interrupted_syscalls(void)
{
    size_t size = 1u << 20;
    unsigned char *data = xrealloc(NULL, size);
    struct sbuf req;
    struct conn c;
    struct response *r;
    pid_t killer;
    int n = 0, status, rc = -1;

    fill_pattern(data, size, 11);
    memset(&req, 0, sizeof req);
    sb_printf(&req, POST_ECHO "Content-Length: %zu\r\n\r\n", size);
    sb_add(&req, data, size);
    fflush(stdout);
    killer = fork();
    if (killer < 0) {
        fail("fork: %s", strerror(errno));
        goto out;
    }
    if (killer == 0) {
        long long end = tn_now_ms() + 2000;
        int i = 0;

        while (tn_now_ms() < end) {
            kill(g_server_pid, SIGUSR1);
            if (++i % 50 == 0) {
                kill(g_server_pid, SIGSTOP);
                tn_sleep_us(2000);
                kill(g_server_pid, SIGCONT);
            }
            tn_sleep_us(1000);
        }
        kill(g_server_pid, SIGCONT);
        _exit(0);
    }
    if (conn_open(&c) != 0)
        goto reap;
    while (waitpid(killer, &status, WNOHANG) == 0) {
        if (n % 10 == 9) {
            if (send_all(&c, req.data, req.len) != 0 || (r = read_response(&c, 0)) == NULL ||
                expect(r, 200, NULL, NULL) != 0 || expect_body_bytes(r, data, size) != 0) {
                fail_ctx("the 1 MiB echo, request %d", n + 1);
                goto reap;
            }
        } else if (request_expect(&c, GET_PLAINTEXT, 200, "text/plain", HELLO) != 0) {
            fail_ctx("request %d", n + 1);
            goto reap;
        }
        n++;
    }
    killer = -1;
    printf("# %d requests while the server was being interrupted\n", n);
    rc = 0;
reap:
    if (killer > 0) {
        kill(killer, SIGKILL);
        waitpid(killer, &status, 0);
    }
    if (server_alive())
        kill(g_server_pid, SIGCONT);
    conn_close(&c);
out:
    sb_free(&req);
    free(data);
    return rc;
}

/* After all the faults: every descriptor is back, and the server serves. */
static int case_descriptors_back(void)
{
    if (fds_return_to(g_base_fds, 6000) != 0)
        return -1;
    return fresh_plaintext_ok();
}

/* The fixture exits with status 0 on SIGTERM (an ASan build also checks
 * for leaks then). */
static int case_fixture_exits_cleanly(void)
{
    return sigterm_and_wait(SHUTDOWN_TIMEOUT_MS, NULL, 1);
}

/* ---- max_connections --------------------------------------------------- */

static const char *const env_maxconn[] = {"FIXTURE_MAX_CONNECTIONS=8", "CHOPIN_WORKERS=1",
                                          "FIXTURE_IDLE_TIMEOUT=30", NULL};

/*
 * At max_connections (8, one worker) a ninth client is not refused and does
 * not disturb the eight: it waits in the listen backlog and is served as
 * soon as one of the eight leaves.
 */
static int case_max_connections(void)
{
    enum { N = 8 };
    struct conn cs[N], extra;
    struct response *r;
    long long start;
    int i, rc = -1;

    for (i = 0; i < N; i++)
        cs[i].fd = -1, cs[i].buf = NULL;
    extra.fd = -1;
    extra.buf = NULL;
    if (restart_fixture(env_maxconn, 0) != 0)
        return -1;
    for (i = 0; i < N; i++) {
        if (conn_open(&cs[i]) != 0 || request_expect(&cs[i], GET_PLAINTEXT, 200, "text/plain", HELLO) != 0) {
            fail_ctx("connection %d of %d", i + 1, N);
            goto out;
        }
    }
    if (conn_open(&extra) != 0 || send_all(&extra, GET_PLAINTEXT, strlen(GET_PLAINTEXT)) != 0)
        goto out;
    if (wait_for(extra.fd, POLLIN, 1000) != 0) {
        fail("the 9th connection was answered (or closed) while 8 were open: max_connections is not enforced");
        goto out;
    }
    for (i = 0; i < N; i++) {
        if (request_expect(&cs[i], GET_JSON, 200, "application/json", JSON_HELLO) != 0) {
            fail_ctx("connection %d, at the limit", i + 1);
            goto out;
        }
    }
    conn_close(&cs[0]);
    start = tn_now_ms();
    if ((r = read_response(&extra, 0)) == NULL || expect(r, 200, "text/plain", HELLO) != 0) {
        fail_ctx("the waiting connection after one left");
        goto out;
    }
    printf("# the waiting connection was served %lld ms after a slot freed\n", tn_now_ms() - start);
    rc = 0;
out:
    for (i = 0; i < N; i++)
        conn_close(&cs[i]);
    conn_close(&extra);
    return rc;
}

/* ---- Out of descriptors (EMFILE) --------------------------------------- */

static const char *const env_emfile[] = {"CHOPIN_WORKERS=1", "FIXTURE_IDLE_TIMEOUT=30", NULL};

/*
 * The fixture under RLIMIT_NOFILE = 64 and 100 clients: accept() fails with
 * EMFILE once the table is full.  The server must neither crash nor spin (CPU
 * is measured for 2 s while the rest wait), keep serving the connections it
 * has, and serve the waiting ones once descriptors are free again.
 */
static int case_emfile(void)
{
    enum { N = 100 };
    struct conn *cs = calloc(N, sizeof *cs);
    char *answered = calloc(N, 1);
    long long cpu0, cpu1, t0, t1, deadline;
    int i, n_answered = 0, rc = -1;

    if (cs == NULL || answered == NULL) {
        fail("out of memory");
        goto out;
    }
    for (i = 0; i < N; i++)
        cs[i].fd = -1;
    if (restart_fixture(env_emfile, 64) != 0)
        goto out;
    for (i = 0; i < N; i++) {
        cs[i].fd = connect_to(g_port); /* completes in the kernel's backlog */
        if (cs[i].fd < 0 || send_all(&cs[i], GET_PLAINTEXT, strlen(GET_PLAINTEXT)) != 0) {
            fail_ctx("client %d of %d", i + 1, N);
            goto out;
        }
    }
    deadline = tn_now_ms() + 1500;
    while (tn_now_ms() < deadline) {
        for (i = 0; i < N; i++) {
            if (answered[i] || wait_for(cs[i].fd, POLLIN, 0) <= 0)
                continue;
            conn_recv_some(&cs[i]);
            if (parse_response(&cs[i], 0) == PARSE_DONE) {
                if (expect(&cs[i].resp, 200, "text/plain", HELLO) != 0) {
                    fail_ctx("client %d", i + 1);
                    goto out;
                }
                answered[i] = 1;
                n_answered++;
            } else if (cs[i].eof || cs[i].reset) {
                fail("client %d was closed without an answer", i + 1);
                goto out;
            }
        }
        tn_sleep_us(10 * 1000);
    }
    if (n_answered == 0 || n_answered == N) {
        fail("%d of %d clients answered under a 64-descriptor limit; expected some to wait", n_answered, N);
        goto out;
    }
    cpu0 = server_cpu_ms();
    t0 = tn_now_ms();
    tn_sleep_us(2000 * 1000);
    cpu1 = server_cpu_ms();
    t1 = tn_now_ms();
    printf("# %d of %d answered; while the rest waited the server used %lld ms of CPU in %lld ms\n", n_answered, N,
           cpu1 - cpu0, t1 - t0);
    if (cpu1 - cpu0 > (t1 - t0) / 5) {
        fail("the server used %lld ms of CPU in %lld ms while out of descriptors: accept() spins", cpu1 - cpu0,
             t1 - t0);
        goto out;
    }
    for (i = 0; i < N; i++) { /* the served ones still work, then leave */
        if (!answered[i])
            continue;
        if (request_expect(&cs[i], GET_JSON, 200, "application/json", JSON_HELLO) != 0) {
            fail_ctx("client %d, served before the limit, asked again", i + 1);
            goto out;
        }
        conn_close(&cs[i]);
    }
    for (i = 0; i < N; i++) {
        struct response *r;

        if (answered[i])
            continue;
        if ((r = read_response(&cs[i], 0)) == NULL || expect(r, 200, "text/plain", HELLO) != 0) {
            fail_ctx("client %d, which waited for a descriptor", i + 1);
            goto out;
        }
        conn_close(&cs[i]);
    }
    rc = fresh_plaintext_ok();
out:
    for (i = 0; cs != NULL && i < N; i++)
        conn_close(&cs[i]);
    free(cs);
    free(answered);
    return rc;
}

/* ---- Graceful shutdown ------------------------------------------------- */

static const char *const env_shutdown[] = {"CHOPIN_WORKERS=1", "FIXTURE_IDLE_TIMEOUT=30", NULL};

/*
 * SIGTERM under load, one worker, shutdown_timeout 3 s.  From t = 0, 16
 * clients loop on GET /plaintext; at 200 ms a client asks for 4 MiB and
 * reads it slowly; at 300 ms GET /sleep?ms=1000 holds the worker in its
 * handler; at 500 ms comes SIGTERM.  Then:
 *   - every answer the 16 got is whole, and each connection ends cleanly,
 *     never inside an answer (a request still unread in the socket when the
 *     worker stops is dropped with the connection, as nginx does);
 *   - the request in its handler completes with 200;
 *   - the 4 MiB answer completes intact;
 *   - 2 idle keep-alive connections are closed;
 *   - the process exits with status 0 within the grace period.
 */
static int case_graceful_shutdown_under_load(void)
{
    enum { NL = 16, NI = 2, BIG = 4 << 20 };
    static const char sleep_req[] = "GET /sleep?ms=1000 HTTP/1.1\r\n" HOST "\r\n";
    static const char big_req[] = "GET /big?n=4194304 HTTP/1.1\r\n" HOST "\r\n";
    struct conn load[NL], idle[NI], slp, big;
    char busy[NL], done[NL];
    unsigned char *want = NULL;
    struct response *r;
    long long start, t, sigterm_at = 0, exit_ms = -1, last_big_read = 0, big_at = -1;
    int i, k, total = 0, ended = 0, rc = -1, big_ok = 0, sent_big = 0, sent_sleep = 0;

    for (i = 0; i < NL; i++)
        load[i].fd = -1, load[i].buf = NULL;
    for (i = 0; i < NI; i++)
        idle[i].fd = -1, idle[i].buf = NULL;
    slp.fd = big.fd = -1;
    slp.buf = big.buf = NULL;
    if (restart_fixture(env_shutdown, 0) != 0)
        return -1;
    for (i = 0; i < NI; i++)
        if (conn_open(&idle[i]) != 0 || request_expect(&idle[i], GET_PLAINTEXT, 200, "text/plain", HELLO) != 0)
            goto out;
    for (i = 0; i < NL; i++) {
        if (conn_open(&load[i]) != 0)
            goto out;
        busy[i] = done[i] = 0;
    }
    g_rcvbuf = 256 << 10; /* the 4 MiB answer comes in slowly */
    rc = conn_open(&big);
    g_rcvbuf = 0;
    if (rc != 0 || conn_open(&slp) != 0) {
        rc = -1;
        goto out;
    }
    rc = -1;
    start = tn_now_ms();
    while ((t = tn_now_ms() - start) < 8000 * g_scale) {
        struct pollfd pf[NL];

        if (!sent_big && t >= 200) {
            if (send_all(&big, big_req, sizeof big_req - 1) != 0)
                goto out;
            sent_big = 1;
        }
        if (!sent_sleep && t >= 300) {
            if (send_all(&slp, sleep_req, sizeof sleep_req - 1) != 0)
                goto out;
            sent_sleep = 1;
        }
        if (sigterm_at == 0 && t >= 500) {
            sigterm_at = tn_now_ms();
            g_stopping = 1;
            kill(g_server_pid, SIGTERM);
        }
        for (i = 0; i < NL; i++) { /* load: one request at a time per connection */
            if (!done[i] && !busy[i]) {
                if (send(load[i].fd, GET_PLAINTEXT, strlen(GET_PLAINTEXT), MSG_NOSIGNAL) < 0) {
                    if (sigterm_at == 0) {
                        fail("load client %d: send: %s before SIGTERM", i + 1, strerror(errno));
                        goto out;
                    }
                    done[i] = 1;
                    ended++;
                } else {
                    busy[i] = 1;
                }
            }
            pf[i].fd = done[i] ? -1 : load[i].fd;
            pf[i].events = POLLIN;
            pf[i].revents = 0;
        }
        if (poll(pf, NL, 10) < 0 && errno != EINTR) {
            fail("poll: %s", strerror(errno));
            goto out;
        }
        for (i = 0; i < NL; i++) {
            if (done[i] || pf[i].revents == 0)
                continue;
            if (conn_recv_some(&load[i]) == RECV_ERROR && !load[i].reset) {
                fail("load client %d: recv: %s", i + 1, strerror(load[i].err));
                goto out;
            }
            for (;;) {
                enum parse_result pr = parse_response(&load[i], 0);

                if (pr == PARSE_ERROR) {
                    fail_ctx("load client %d", i + 1);
                    goto out;
                }
                if (pr == PARSE_MORE)
                    break;
                if (expect(&load[i].resp, 200, "text/plain", HELLO) != 0) {
                    fail_ctx("load client %d", i + 1);
                    goto out;
                }
                total++;
                busy[i] = 0;
            }
            if (load[i].eof || load[i].reset) {
                if (sigterm_at == 0) {
                    fail("load client %d was closed before SIGTERM", i + 1);
                    goto out;
                }
                if (load[i].len != load[i].off) {
                    fail("load client %d: the connection ended inside an answer: \"%s\"", i + 1,
                         esc(load[i].buf + load[i].off, load[i].len - load[i].off));
                    goto out;
                }
                done[i] = 1;
                ended++;
            }
        }
        /* the big answer: read slowly (one recv() per 50 ms, at most the
           256 KiB window) until SIGTERM, so that it is in flight then; at
           full speed after it, so that it ends well within the grace period */
        if (sent_big && !big_ok && (sigterm_at != 0 || tn_now_ms() - last_big_read >= 50)) {
            last_big_read = tn_now_ms();
            while (conn_recv_some(&big) > 0 && sigterm_at != 0) {
            }
            if (parse_response(&big, 0) == PARSE_DONE) {
                if (want == NULL) {
                    want = xrealloc(NULL, BIG);
                    fill_pattern(want, BIG, BIG_SEED);
                }
                if (expect(&big.resp, 200, "application/octet-stream", NULL) != 0 ||
                    expect_body_bytes(&big.resp, want, BIG) != 0) {
                    fail_ctx("the 4 MiB answer in flight at SIGTERM");
                    goto out;
                }
                big_ok = 1;
                big_at = tn_now_ms() - start;
            } else if (big.eof || big.reset) {
                fail("the 4 MiB answer in flight at SIGTERM was cut after %zu bytes", big.len);
                goto out;
            }
        }
        if (sigterm_at != 0 && exit_ms < 0 && !server_alive())
            exit_ms = tn_now_ms() - sigterm_at;
        if (exit_ms >= 0 && ended == NL && big_ok)
            break;
    }
    if (exit_ms < 0) {
        if (sigterm_and_wait(SHUTDOWN_TIMEOUT_MS, NULL, 1) != 0)
            goto out;
        exit_ms = tn_now_ms() - sigterm_at;
    }
    if (!WIFEXITED(g_server_status) || WEXITSTATUS(g_server_status) != 0) {
        fail("expected exit status 0 after SIGTERM, got %s", describe_status(g_server_status));
        goto out;
    }
    if ((r = read_response(&slp, 0)) == NULL || expect(r, 200, "text/plain; charset=utf-8", "slept") != 0) {
        fail_ctx("the request in its handler at SIGTERM");
        goto out;
    }
    if (!big_ok) {
        fail("the 4 MiB answer in flight at SIGTERM did not complete (%zu bytes came)", big.len);
        goto out;
    }
    for (k = 0; k < NI; k++) {
        if (wait_closed(&idle[k]) != 0) {
            fail_ctx("idle connection %d", k + 1);
            goto out;
        }
    }
    if (ended != NL) {
        fail("%d of %d load connections were still open after the exit", NL - ended, NL);
        goto out;
    }
    printf("# %d answers to the load; SIGTERM at %lld ms; 4 MiB answer done at %lld ms; exit %lld ms after "
           "SIGTERM\n", total, sigterm_at - start, big_at, exit_ms);
    if (exit_ms > 3000 + 2500 * g_scale) { /* the grace period, a 1 s tick, the exit itself */
        fail("the server took %lld ms to exit; the grace period is 3 s", exit_ms);
        goto out;
    }
    if (big_at <= sigterm_at - start) {
        fail("the 4 MiB answer was done before SIGTERM: the case tested nothing in flight");
        goto out;
    }
    rc = 0;
out:
    for (i = 0; i < NL; i++)
        conn_close(&load[i]);
    for (i = 0; i < NI; i++)
        conn_close(&idle[i]);
    conn_close(&slp);
    conn_close(&big);
    free(want);
    return rc;
}

static const char *const env_grace[] = {"CHOPIN_WORKERS=1", "FIXTURE_REQUEST_TIMEOUT=30",
                                        "FIXTURE_SHUTDOWN_TIMEOUT=2", NULL};

/*
 * The grace period bounds the wait: a client that stopped reading a 32 MiB
 * answer and one that sent half a request hold the server for
 * shutdown_timeout (2 s here; request_timeout is 30 s), not longer.
 */
static int case_shutdown_grace_period(void)
{
    struct conn a, b;
    long long took = -1;
    int rc = -1;

    a.fd = b.fd = -1;
    a.buf = b.buf = NULL;
    if (restart_fixture(env_grace, 0) != 0)
        return -1;
    g_rcvbuf = 64 << 10;
    rc = conn_open(&a);
    g_rcvbuf = 0;
    if (rc != 0 || send_all(&a, "GET /big?n=33554432 HTTP/1.1\r\n" HOST "\r\n", 40 + sizeof HOST - 1) != 0 ||
        conn_open(&b) != 0 || send_all(&b, "GET /plaintext HTTP/1.1\r\nHo", 27) != 0) {
        rc = -1;
        goto out;
    }
    rc = -1;
    tn_sleep_us(300 * 1000);
    if (sigterm_and_wait(SHUTDOWN_TIMEOUT_MS, &took, 1) != 0)
        goto out;
    printf("# exit %lld ms after SIGTERM with a stalled reader and a half-sent request\n", took);
    if (took < 500) {
        fail("exited after %lld ms: it did not wait for the requests in flight", took);
        goto out;
    }
    if (took > 2000 + 2500 * g_scale) { /* the grace period, a 1 s tick, the exit itself */
        fail("exited after %lld ms: the grace period is 2 s", took);
        goto out;
    }
    rc = 0;
out:
    conn_close(&a);
    conn_close(&b);
    return rc;
}

/* ==================================================================== */
/* 8. The case runner and main                                           */
/* ==================================================================== */

static const struct {
    const char *name;
    int (*fn)(void);
} function_cases[] = {
    /* routes */
    {"RFC9110-9.3.1-get-root", case_get_root},
    {"RFC9110-9.3.2-head-same-length-no-body", case_head_has_no_body},
    {"RFC9110-6.6.1-date-server-length-on-every-response", case_standard_headers_everywhere},
    /* connection semantics */
    {"RFC9112-9.3-http11-persistent-100-sequential", case_keep_alive_100_sequential},
    {"RFC9112-9.3-http10-closes-by-default", case_http10_closes_by_default},
    {"RFC9112-9.3-http10-keep-alive", case_http10_keep_alive},
    {"RFC9112-9.6-http11-connection-close", case_http11_connection_close},
    /* pipelining */
    {"RFC9112-9.3.2-pipeline-100-in-one-write", case_pipeline_100_in_one_write},
    {"RFC9112-9.3.2-pipeline-pair-split-at-every-byte", case_pipeline_split_at_every_byte},
    {"RFC9112-9.3.2-pipeline-post-pair-split-at-every-byte", case_pipeline_post_echo_split_at_every_byte},
    /* slow clients */
    {"RFC9112-2.2-request-byte-by-byte", case_slow_client_byte_by_byte},
    {"RFC9112-6.2-body-byte-by-byte", case_slow_client_post_body},
    /* bodies */
    {"RFC9112-6.2-content-length-body-4mib", case_echo_4mib_content_length},
    {"RFC9112-7.1-chunked-extensions-and-trailer", case_echo_chunked_extensions_trailer},
    {"RFC9112-7.1-chunked-body-3mib", case_echo_3mib_chunked},
    {"RFC9110-10.1.1-expect-100-continue", case_expect_100_continue},
    {"RFC9112-6.3-duplicate-identical-content-length", case_duplicate_identical_content_length},
    /* more methods, framing and persistence */
    {"RFC9110-9.3.2-head-router-route", case_head_router_route},
    {"RFC9110-9.3.7-options-route-allow", case_options_route_allow},
    {"RFC9112-9.3-404-405-501-keep-connection", case_errors_keep_connection},
    {"RFC9112-9.6-close-ignores-pipelined-rest", case_close_ignores_pipelined_rest},
    {"RFC9110-7.6.1-connection-tokens-case-insensitive-list", case_connection_tokens},
    {"RFC9112-6.3-no-length-means-no-body", case_no_framing_no_body},
    {"RFC9112-6.3-get-body-framed-by-content-length", case_get_with_body},
    {"RFC9110-10.1.1-expect-100-ignored-in-http10", case_expect_100_http10_ignored},
    {"RFC9110-10.1.1-expect-100-body-without-waiting", case_expect_100_body_without_waiting},
    {"RFC9112-9.3.2-pipeline-16-mixed-split-at-every-byte", case_pipeline16_split_every_byte},
    {"RFC9112-9.3.2-pipeline-100-mixed-split-sampled", case_pipeline100_split_sampled},
    {"RFC9112-9.3.2-pipeline-answers-over-output-limit", case_pipeline_over_output_limit},
};

static const struct {
    const char *name;
    int (*fn)(void);
} late_cases[] = {
    /* rejections built at run time */
    {"RFC9112-3-target-over-8kib-414", case_reject_long_target_414},
    {"RFC6585-5-header-block-over-16kib-431", case_reject_header_block_431},
    {"RFC6585-5-more-than-64-field-lines-431", case_reject_too_many_fields},
    {"RFC6585-5-unterminated-20kib-field-line-431", case_reject_unterminated_long_line},
    {"RFC9110-15.5.15-target-of-8kib-within-limit", case_target_at_limit},
    {"RFC9112-9.6-half-close-after-requests-answered", case_half_close_after_requests},
    /* faults */
    {"RFC9112-9.6-client-closes-mid-request", case_client_half_request_then_close},
    {"RFC9112-9.6-client-resets-after-request", case_client_rst_after_full_request},
    {"RFC9112-9.6-client-resets-mid-response", case_client_rst_during_large_response},
    {"RFC9112-9.3-1000-concurrent-connections", case_concurrent_1000_connections},
    /* shutdown: must stay last */
    {"shutdown-sigterm-exits-cleanly", case_sigterm_exits_cleanly},
};

/* The hardening suite: tests/fixtures/server.c, restarted where needed. */
static const struct {
    const char *name;
    int (*fn)(void);
} fixture_cases[] = {
    /* timeouts (idle 2 s, request 2 s) */
    {"timeout-idle-keepalive-and-silent-connections", case_idle_timeouts},
    {"timeout-slowloris-head-408", case_slowloris_header_timeout},
    {"timeout-stalled-body-408", case_body_stall_timeout},
    {"timeout-slow-body-with-progress-completes", case_body_slow_progress},
    {"timeout-client-stops-reading-dropped", case_write_stall_timeout},
    {"timeout-not-charged-for-a-stalled-server", case_stalled_server_no_false_timeout},
    /* memory */
    {"memory-bounded-for-clients-that-do-not-read", case_memory_bound_no_reader},
    /* faults */
    {"fault-resets-mid-head-body-response-no-sigpipe", case_resets_and_dead_sockets},
    {"fault-half-close-after-requests-answered", case_fixture_half_close},
    {"fault-interrupted-syscalls-eintr-sigstop", case_interrupted_syscalls},
    {"fault-every-descriptor-released", case_descriptors_back},
    {"fixture-exits-cleanly", case_fixture_exits_cleanly},
    /* limits: each restarts the fixture */
    {"limit-max-connections-excess-waits-in-backlog", case_max_connections},
    {"fixture-exits-cleanly-after-max-connections", case_fixture_exits_cleanly},
    {"limit-emfile-no-spin-and-recovers", case_emfile},
    {"fixture-exits-cleanly-after-emfile", case_fixture_exits_cleanly},
    /* shutdown */
    {"shutdown-graceful-under-load", case_graceful_shutdown_under_load},
    {"shutdown-grace-period-bounds-stalled-clients", case_shutdown_grace_period},
};

static int g_passed, g_failed;
static const char *volatile g_case_name = "(startup)";
static int end_case(int rc);

/*
 * Start a case.  Returns 1 when it should run.  Once the server has died
 * there is nothing to test: the case fails here, naming the case that
 * killed the server, and returns 0.
 */
static int begin_case(const char *name)
{
    const char *only = getenv("BLACKBOX_ONLY");

    if (only != NULL && *only != '\0' && strstr(name, only) == NULL && strcmp(name, "server_starts") != 0)
        return 0;
    g_case_name = name;
    clear_reason();
    if (g_death_case != NULL) {
        fail("not run: the server died during %s", g_death_case);
        end_case(-1);
        return 0;
    }
    return 1;
}

/* Print the case's line.  A server that died during the case fails it. */
static int end_case(int rc)
{
    long long grace = tn_now_ms() + 200;

    /* After a failure, give a crashing server a moment to finish dying, so
     * the death is reported with the case that caused it. */
    while (rc != 0 && server_alive() && tn_now_ms() < grace)
        tn_sleep_us(10 * 1000);
    if (!g_stopping && !g_death_reported && g_server_pid > 0 && !server_alive()) {
        g_death_reported = 1;
        g_death_case = g_case_name;
        rc = -1;
        fail_ctx("the server died (%s)", describe_status(g_server_status));
    }
    if (rc == 0) {
        g_passed++;
        printf("ok - %s\n", g_case_name);
    } else {
        g_failed++;
        printf("FAIL - %s: %s\n", g_case_name, g_reason[0] ? g_reason : "(no reason recorded)");
    }
    return rc;
}

/* Append a string / a number to a buffer with only async-signal-safe code. */
static size_t append_str(char *buf, size_t len, size_t cap, const char *s)
{
    while (*s != '\0' && len + 1 < cap)
        buf[len++] = *s++;
    return len;
}

static size_t append_int(char *buf, size_t len, size_t cap, int v)
{
    char digits[16];
    int n = 0;

    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0 && n < (int)sizeof digits);
    while (n > 0 && len + 1 < cap)
        buf[len++] = digits[--n];
    return len;
}

/* The global watchdog: report, kill the server, give up. */
static void on_watchdog(int sig)
{
    char msg[512];
    size_t n = 0;
    ssize_t ignored;

    (void)sig;
    n = append_str(msg, n, sizeof msg, "FAIL - ");
    n = append_str(msg, n, sizeof msg, g_case_name);
    n = append_str(msg, n, sizeof msg, ": watchdog: the suite ran longer than ");
    n = append_int(msg, n, sizeof msg, WATCHDOG_SECONDS);
    n = append_str(msg, n, sizeof msg, " s\n");
    n = append_int(msg, n, sizeof msg, g_passed);
    n = append_str(msg, n, sizeof msg, " passed, ");
    n = append_int(msg, n, sizeof msg, g_failed + 1);
    n = append_str(msg, n, sizeof msg, " failed\n");
    ignored = write(STDOUT_FILENO, msg, n);
    (void)ignored;
    if (g_server_pid > 0)
        kill(g_server_pid, SIGKILL);
    _exit(1);
}

/* 1,000 sockets need more than the usual 1,024 descriptors with room to spare. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            rl.rlim_cur = 65536; /* e.g. an "unlimited" hard limit the kernel refuses */
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    size_t i;

    const char *scale = getenv("BLACKBOX_TIME_SCALE");
    int fixture = argc == 3 && strcmp(argv[1], "--fixture") == 0;

    if (argc != 2 && !fixture) {
        fprintf(stderr, "usage: %s [--fixture] SERVER_BINARY\n", argv[0]);
        return 2;
    }
    if (scale != NULL && atoi(scale) > 0)
        g_scale = atoi(scale);
    setvbuf(stdout, NULL, _IOLBF, 0);

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN; /* a closed socket must give EPIPE, not kill us */
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_watchdog;
    sigaction(SIGALRM, &sa, NULL);
    alarm(WATCHDOG_SECONDS);
    raise_fd_limit(); /* before the fork, so the server gets the higher limit too */

    g_server_path = argv[argc - 1];
    begin_case("server_starts");
    if (end_case(fixture ? restart_fixture(NULL, 0) : start_server(argv[1])) != 0) {
        stop_server();
        printf("%d passed, %d failed\n", g_passed, g_failed);
        return 1;
    }
    if (fixture) {
        for (i = 0; i < sizeof fixture_cases / sizeof fixture_cases[0]; i++) {
            if (begin_case(fixture_cases[i].name))
                end_case(fixture_cases[i].fn());
        }
        stop_server();
        printf("%d passed, %d failed\n", g_passed, g_failed);
        return g_failed == 0 ? 0 : 1;
    }

    for (i = 0; i < sizeof simple_cases / sizeof simple_cases[0]; i++) {
        if (begin_case(simple_cases[i].name))
            end_case(simple_request(simple_cases[i].request, simple_cases[i].status,
                                    simple_cases[i].content_type, simple_cases[i].body));
    }
    for (i = 0; i < sizeof method_cases / sizeof method_cases[0]; i++) {
        if (begin_case(method_cases[i].name))
            end_case(check_method_not_allowed(method_cases[i].request, method_cases[i].allowed));
    }
    for (i = 0; i < sizeof function_cases / sizeof function_cases[0]; i++) {
        if (begin_case(function_cases[i].name))
            end_case(function_cases[i].fn());
    }
    for (i = 0; i < sizeof rejections / sizeof rejections[0]; i++) {
        if (begin_case(rejections[i].name))
            end_case(check_rejection(rejections[i].request, rejections[i].len,
                                     rejections[i].status, rejections[i].alt_status));
    }
    for (i = 0; i < sizeof late_cases / sizeof late_cases[0]; i++) {
        if (begin_case(late_cases[i].name))
            end_case(late_cases[i].fn());
    }

    stop_server();
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
