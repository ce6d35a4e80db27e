/*
 * tests/blackbox.c - black-box HTTP/1.1 tests for a server built on chopin.h
 *
 *     build/blackbox build/bench
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
 * The file reads top to bottom:
 *   1. utilities: clocks, failure reasons, escaping, a growable buffer
 *   2. the server process: start, liveness, stop
 *   3. connections: connect_to, send_all, send_slow, wait_closed
 *   4. the response reader: one HTTP/1.1 response out of a connection buffer
 *   5. expectations and request helpers
 *   6. the cases, grouped like the contract
 *   7. the case runner and main
 *
 * Nothing waits forever: every socket wait goes through poll() with a
 * timeout, and alarm() guards the whole run.
 */

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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 5000        /* longest wait for any single socket event */
#define START_TIMEOUT_MS 10000    /* time the server gets to start listening */
#define CLOSE_TIMEOUT_MS 2000     /* time the server gets to close after a final response */
#define SHUTDOWN_TIMEOUT_MS 5000  /* time the server gets to exit on SIGTERM */
#define WATCHDOG_SECONDS 120      /* the whole suite must end within this */
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

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_us(long us)
{
    struct timespec ts;

    ts.tv_sec = us / 1000000;
    ts.tv_nsec = (us % 1000000) * 1000;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

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

    for (i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (unsigned char)(x >> 24);
    }
}

/* ==================================================================== */
/* 2. The server process                                                 */
/* ==================================================================== */

static pid_t g_server_pid = -1;
static int g_server_exited;     /* reaped: g_server_status is valid */
static int g_server_status;
static int g_death_reported;    /* a death was already blamed on a case */
static int g_port;

/* Ask the kernel for a free port: bind to port 0, read it back, close. */
static int pick_free_port(void)
{
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = -1;

    if (fd < 0)
        return -1;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &addr_len) == 0)
        port = ntohs(addr.sin_port);
    close(fd);
    return port;
}

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

/* A plain blocking connect, used only to see whether the server listens. */
static int try_connect(int port)
{
    struct sockaddr_in addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int ok;

    if (fd < 0)
        return 0;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
    close(fd);
    return ok;
}

/* fork/exec the server and wait until it accepts connections. */
static int start_server(const char *path)
{
    char port_str[16];
    long long deadline;

    g_port = pick_free_port();
    if (g_port <= 0)
        return fail("could not find a free port: %s", strerror(errno));
    snprintf(port_str, sizeof port_str, "%d", g_port);

    fflush(stdout);
    fflush(stderr);
    g_server_pid = fork();
    if (g_server_pid < 0)
        return fail("fork: %s", strerror(errno));
    if (g_server_pid == 0) {
        char *child_argv[2];

        /* The harness ignores SIGPIPE; the server must get the default so
         * that a server which forgets to handle it is caught. */
        signal(SIGPIPE, SIG_DFL);
        setenv("PORT", port_str, 1);
        setenv("HOST", "127.0.0.1", 1);
        child_argv[0] = (char *)path;
        child_argv[1] = NULL;
        execv(path, child_argv);
        fprintf(stderr, "blackbox: cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }

    printf("# server %s (pid %d) on 127.0.0.1:%d\n", path, (int)g_server_pid, g_port);
    deadline = now_ms() + START_TIMEOUT_MS;
    for (;;) {
        if (!server_alive()) {
            g_death_reported = 1;
            return fail("the server exited before listening (%s)",
                        describe_status(g_server_status));
        }
        if (try_connect(g_port))
            return 0;
        if (now_ms() > deadline)
            return fail("the server did not accept connections on port %d within %d ms",
                        g_port, START_TIMEOUT_MS);
        sleep_us(20 * 1000);
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
static int connect_start(int port)
{
    struct sockaddr_in addr;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0) {
        fail("socket: %s", strerror(errno));
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0 && errno != EINPROGRESS) {
        fail("connect to 127.0.0.1:%d: %s", port, strerror(errno));
        close(fd);
        return -1;
    }
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
    long long deadline = now_ms() + IO_TIMEOUT_MS;

    for (;;) {
        long left = (long)(deadline - now_ms());
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
        sleep_us(delay_us);
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
    long long deadline = now_ms() + CLOSE_TIMEOUT_MS;

    while (!c->eof && !c->reset) {
        long left = (long)(deadline - now_ms());

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
    {"get_plaintext", GET_PLAINTEXT, 200, "text/plain", HELLO},
    {"get_json", GET_JSON, 200, "application/json", JSON_HELLO},
    {"get_users_id", "GET /users/42 HTTP/1.1\r\n" HOST "\r\n", 200, "application/json",
     "{\"id\":\"42\"}"},
    {"get_users_id_word", "GET /users/chopin HTTP/1.1\r\n" HOST "\r\n", 200,
     "application/json", "{\"id\":\"chopin\"}"},
    {"post_echo",
     POST_ECHO "Content-Type: application/x-chopin-test\r\nContent-Length: 11\r\n\r\nhello world",
     200, "application/x-chopin-test", "hello world"},
    {"post_echo_empty_body", POST_ECHO "Content-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
     200, "text/plain", ""},
    {"unknown_path_404", "GET /no/such/path HTTP/1.1\r\n" HOST "\r\n", 404, "application/json",
     "{\"detail\":\"Not Found\"}"},
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
    {"delete_users_id_405_allow_get", "DELETE /users/1 HTTP/1.1\r\n" HOST "\r\n", "GET"},
    {"post_plaintext_405_allow_get",
     "POST /plaintext HTTP/1.1\r\n" HOST "Content-Length: 0\r\n\r\n", "GET"},
    {"get_echo_405_allow_post", "GET /echo HTTP/1.1\r\n" HOST "\r\n", "POST"},
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
        if (!has_token(resp_header(r, "Connection"), "keep-alive")) {
            fail("expected \"Connection: keep-alive\", got \"%s\"",
                 show(resp_header(r, "Connection")));
            goto out;
        }
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
    if (!has_token(resp_header(r, "Connection"), "close")) {
        fail("expected \"Connection: close\", got \"%s\"", show(resp_header(r, "Connection")));
        goto out;
    }
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
        sleep_us(1000); /* let the first part arrive on its own */
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
    REJECT("reject_request_line_without_version", "GET /\r\n" HOST "\r\n", 400, 0),
    REJECT("reject_two_spaces_in_request_line", "GET  / HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("reject_garbage_request", "\x01\x02\x03\r\n\r\n", 400, 0),
    /* request target */
    REJECT("reject_control_byte_in_target", "GET /a\x01" "b HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("reject_space_in_target", "GET /a b HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    REJECT("reject_del_in_target", "GET /a\x7f" "b HTTP/1.1\r\n" HOST "\r\n", 400, 0),
    /* header names */
    REJECT("reject_space_in_header_name", "GET / HTTP/1.1\r\n" HOST "Ho st: x\r\n\r\n", 400, 0),
    REJECT("reject_del_in_header_name", "GET / HTTP/1.1\r\n" HOST "X-A\x7f" "B: x\r\n\r\n", 400, 0),
    REJECT("reject_whitespace_before_colon_host", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, 0),
    REJECT("reject_whitespace_before_colon", "GET / HTTP/1.1\r\n" HOST "X-A : x\r\n\r\n", 400, 0),
    /* header values */
    REJECT("reject_nul_in_header_value", "GET / HTTP/1.1\r\n" HOST "X-A: a\0b\r\n\r\n", 400, 0),
    REJECT("reject_bare_cr_in_header_value", "GET / HTTP/1.1\r\n" HOST "X-A: a\rb\r\n\r\n", 400, 0),
    REJECT("reject_obs_fold", "GET / HTTP/1.1\r\n" HOST "X-A: a\r\n b\r\n\r\n", 400, 0),
    /* Host */
    REJECT("reject_missing_host_http11", "GET / HTTP/1.1\r\n\r\n", 400, 0),
    REJECT("reject_two_host_headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, 0),
    /* Content-Length */
    REJECT("reject_content_length_not_a_number", POST_ECHO "Content-Length: abc\r\n\r\n", 400, 0),
    REJECT("reject_content_length_negative", POST_ECHO "Content-Length: -1\r\n\r\n", 400, 0),
    REJECT("reject_content_length_two_numbers", POST_ECHO "Content-Length: 1 2\r\n\r\n", 400, 0),
    REJECT("reject_conflicting_content_lengths",
           POST_ECHO "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400, 0),
    /* Transfer-Encoding */
    REJECT("reject_content_length_with_chunked",
           POST_ECHO "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 0),
    REJECT("reject_transfer_encoding_gzip", POST_ECHO "Transfer-Encoding: gzip\r\n\r\n", 400, 0),
    REJECT("reject_chunked_on_http10",
           "POST /echo HTTP/1.0\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n"
           "5\r\nhello\r\n0\r\n\r\n",
           400, 0),
    /* chunked framing */
    REJECT("reject_bad_chunk_size",
           POST_ECHO "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400, 0),
    REJECT("reject_chunk_size_overflow",
           POST_ECHO "Transfer-Encoding: chunked\r\n\r\n"
           "ffffffffffffffffffff\r\nhello\r\n", /* 20 hex digits */
           400, 413),
    REJECT("reject_chunk_data_without_crlf",
           POST_ECHO "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400, 0),
    /* versions */
    REJECT("reject_http2_version_505", "GET / HTTP/2.0\r\n" HOST "\r\n", 505, 0),
    REJECT("reject_http_1_10", "GET / HTTP/1.10\r\n" HOST "\r\n", 400, 505),
    REJECT("reject_httx_protocol", "GET / HTTX/1.1\r\n" HOST "\r\n", 400, 0),
    /* limits: the body is never sent, so the answer must come right away */
    REJECT("reject_body_over_limit_413",
           POST_ECHO "Content-Type: application/octet-stream\r\nContent-Length: 9000000\r\n\r\n",
           413, 0),
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
    sleep_us(50 * 1000);
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
    sleep_us(50 * 1000);
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
    sleep_us(100 * 1000); /* give the server time to hit the failed write */
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
    long long deadline = now_ms() + 30 * 1000;
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

        if (now_ms() > deadline) {
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
    deadline = now_ms() + SHUTDOWN_TIMEOUT_MS;
    while (server_alive() && now_ms() < deadline)
        sleep_us(10 * 1000);
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

/* ==================================================================== */
/* 7. The case runner and main                                           */
/* ==================================================================== */

static const struct {
    const char *name;
    int (*fn)(void);
} function_cases[] = {
    /* routes */
    {"get_root", case_get_root},
    {"head_same_length_no_body", case_head_has_no_body},
    {"standard_headers_on_every_response", case_standard_headers_everywhere},
    /* connection semantics */
    {"keep_alive_100_sequential_requests", case_keep_alive_100_sequential},
    {"http10_closes_by_default", case_http10_closes_by_default},
    {"http10_keep_alive", case_http10_keep_alive},
    {"http11_connection_close", case_http11_connection_close},
    /* pipelining */
    {"pipeline_100_requests_in_one_write", case_pipeline_100_in_one_write},
    {"pipeline_split_at_every_byte", case_pipeline_split_at_every_byte},
    {"pipeline_post_echo_split_at_every_byte", case_pipeline_post_echo_split_at_every_byte},
    /* slow clients */
    {"slow_client_byte_by_byte", case_slow_client_byte_by_byte},
    {"slow_client_post_body_byte_by_byte", case_slow_client_post_body},
    /* bodies */
    {"echo_4mib_content_length", case_echo_4mib_content_length},
    {"echo_chunked_extensions_and_trailer", case_echo_chunked_extensions_trailer},
    {"echo_3mib_chunked_64kib_chunks", case_echo_3mib_chunked},
    {"expect_100_continue", case_expect_100_continue},
    {"duplicate_identical_content_length", case_duplicate_identical_content_length},
};

static const struct {
    const char *name;
    int (*fn)(void);
} late_cases[] = {
    /* rejections built at run time */
    {"reject_long_target_414", case_reject_long_target_414},
    {"reject_header_block_over_16kib_431", case_reject_header_block_431},
    /* faults */
    {"client_half_request_then_close", case_client_half_request_then_close},
    {"client_rst_after_full_request", case_client_rst_after_full_request},
    {"client_rst_during_large_response", case_client_rst_during_large_response},
    {"concurrent_1000_connections", case_concurrent_1000_connections},
    /* shutdown: must stay last */
    {"sigterm_exits_cleanly", case_sigterm_exits_cleanly},
};

static int g_passed, g_failed;
static const char *volatile g_case_name = "(startup)";
static const char *g_death_case;  /* the case during which the server died */

static int end_case(int rc);

/*
 * Start a case.  Returns 1 when it should run.  Once the server has died
 * there is nothing to test: the case fails here, naming the case that
 * killed the server, and returns 0.
 */
static int begin_case(const char *name)
{
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
    long long grace = now_ms() + 200;

    /* After a failure, give a crashing server a moment to finish dying, so
     * the death is reported with the case that caused it. */
    while (rc != 0 && server_alive() && now_ms() < grace)
        sleep_us(10 * 1000);
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

    if (argc != 2) {
        fprintf(stderr, "usage: %s SERVER_BINARY\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN; /* a closed socket must give EPIPE, not kill us */
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_watchdog;
    sigaction(SIGALRM, &sa, NULL);
    alarm(WATCHDOG_SECONDS);
    raise_fd_limit(); /* before the fork, so the server gets the higher limit too */

    begin_case("server_starts");
    if (end_case(start_server(argv[1])) != 0) {
        stop_server();
        printf("%d passed, %d failed\n", g_passed, g_failed);
        return 1;
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
