/* client.c - a small, exact HTTP/1.1 load client for the benchmarks and the
   cost budget (bench/run.sh, bench/cost.sh).

   It sends exactly N requests and reads exactly N responses, checking the
   status of every one (and, with -b, its body). Over C keep-alive
   connections, each connection sends its requests in batches of D (one
   write per batch: D=1 is plain keep-alive, D=16 the TechEmpower pipelined
   shape) and waits until a batch is fully answered before it sends the next
   one. With -c 1 the server therefore sees a strictly repeatable sequence of
   reads and writes, which is what the syscall and instruction counts need.
   With -k 0 (churn) every request has a connection of its own: it says
   Connection: close, and the client closes after the answer and connects
   again; C such connections at a time, depth 1.

     client [-h host] [-p port] [-P path] [-n requests] [-c connections]
            [-d depth] [-k 0|1] [-s status] [-b body] [-t seconds] [-q]

   Prints one line: "<n> responses, <n> ok, <s> s, <r> req/s". Exit status 0
   only when every response came back with the expected status (and body).
   Responses may be framed by Content-Length or chunked encoding. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

typedef struct conn {
    int fd;
    long left;          /* requests not yet sent */
    long inflight;      /* sent, not yet answered */
    size_t out_len;     /* bytes of the current batch */
    size_t out_off;     /* ... already written */
    char *in;           /* received, not yet parsed */
    size_t in_len, in_cap;
    int want_write;
} conn;

static const char *expect_body;
static size_t expect_body_len;
static int expect_status = 200;
static long n_ok, n_bad, n_done;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "client: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* Finds the end of a chunked body that starts at p. Returns the bytes it
   takes, 0 when incomplete, -1 when malformed; the decoded body is copied to
   dec (which has room for n bytes) when dec is not NULL. */
static long chunked_end(const char *p, size_t n, char *dec, size_t *dec_len)
{
    size_t off = 0, d = 0;
    for (;;) {
        size_t size = 0, digits = 0;
        const char *nl;
        while (off < n) {
            char c = p[off];
            int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                  : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
            if (v < 0) break;
            if (++digits > 15) return -1;
            size = size * 16 + (size_t)v;
            off++;
        }
        if (off >= n) return 0;
        if (digits == 0) return -1;
        nl = memchr(p + off, '\n', n - off); /* chunk extensions are skipped */
        if (!nl) return 0;
        off = (size_t)(nl - p) + 1;
        if (size == 0) {
            /* trailers, then an empty line */
            for (;;) {
                nl = memchr(p + off, '\n', n - off);
                if (!nl) return 0;
                if (nl == p + off || (nl == p + off + 1 && p[off] == '\r')) {
                    if (dec_len) *dec_len = d;
                    return (long)((size_t)(nl - p) + 1);
                }
                off = (size_t)(nl - p) + 1;
            }
        }
        if (n - off < size + 2) return 0;
        if (dec) memcpy(dec + d, p + off, size);
        d += size;
        off += size;
        if (p[off] == '\r') off++;
        if (p[off] != '\n') return -1;
        off++;
    }
}

/* Parses one response from buf. Returns its length, 0 when incomplete,
   -1 when malformed. */
static long parse_response(const char *buf, size_t len)
{
    const char *end = NULL, *p, *line;
    size_t head_len, i;
    long status;
    int chunked = 0;
    long long clen = -1;
    char *e;
    for (i = 3; i < len; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
            end = buf + i + 1;
            break;
        }
    if (!end) return len > 65536 ? -1 : 0;
    head_len = (size_t)(end - buf);
    if (head_len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ') return -1;
    status = strtol(buf + 9, &e, 10);
    if (e != buf + 12) return -1;
    /* header lines */
    line = (const char *)memchr(buf, '\n', head_len) + 1;
    while (line < end - 2) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t ll = (size_t)(nl - line);
        if (ll >= 15 && strncasecmp(line, "Content-Length:", 15) == 0) {
            p = line + 15;
            while (*p == ' ' || *p == '\t') p++;
            clen = strtoll(p, NULL, 10);
        } else if (ll >= 18 && strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
            p = line + 18;
            while (*p == ' ' || *p == '\t') p++;
            if (strncasecmp(p, "chunked", 7) == 0) chunked = 1;
        }
        line = nl + 1;
    }
    if (status == 204 || status == 304 || (status >= 100 && status < 200)) clen = 0;
    if (chunked) {
        size_t dl = 0;
        long body;
        char *dec = NULL;
        if (expect_body && !(dec = malloc(len - head_len + 1))) die("malloc");
        body = chunked_end(end, len - head_len, dec, &dl);
        if (body > 0) {
            int ok = status == expect_status &&
                     (!expect_body || (dl == expect_body_len && memcmp(dec, expect_body, dl) == 0));
            if (ok) n_ok++; else n_bad++;
        }
        free(dec);
        return body <= 0 ? body : (long)head_len + body;
    }
    if (clen < 0) return -1; /* a keep-alive response must be framed */
    if (len - head_len < (size_t)clen) return 0;
    if (status == expect_status &&
        (!expect_body || ((size_t)clen == expect_body_len && memcmp(end, expect_body, expect_body_len) == 0)))
        n_ok++;
    else
        n_bad++;
    return (long)(head_len + (size_t)clen);
}

static const char *batch;  /* depth copies of the request */
static size_t req_len;
static int depth = 1;
static int keep_alive = 1;
static struct addrinfo *peer;

/* A new connection for c, in ep (EPOLLIN). */
static void open_conn(int ep, conn *c)
{
    int one = 1;
    struct epoll_event ev;
    c->fd = socket(peer->ai_family, SOCK_STREAM, 0);
    if (c->fd < 0) die("socket");
    if (connect(c->fd, peer->ai_addr, peer->ai_addrlen) < 0) die("connect");
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(c->fd, F_SETFL, O_NONBLOCK);
    c->want_write = 0;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
}

static void start_batch(conn *c)
{
    long k = c->left < depth ? c->left : depth;
    c->out_len = (size_t)k * req_len;
    c->out_off = 0;
    c->left -= k;
    c->inflight = k;
}

/* Writes what is left of the batch. Returns -1 on error. */
static int write_some(int ep, conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t r = write(c->fd, batch + c->out_off, c->out_len - c->out_off);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            return -1;
        }
        c->out_off += (size_t)r;
    }
    if ((c->out_off < c->out_len) != c->want_write) {
        struct epoll_event ev;
        c->want_write = c->out_off < c->out_len;
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN | (c->want_write ? EPOLLOUT : 0u);
        ev.data.ptr = c;
        if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) return -1;
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: client [-h host] [-p port] [-P path] [-n requests] [-c connections] [-d depth]\n"
                    "              [-k 0|1] [-s status] [-b body] [-t seconds] [-q] [-H \"Name: value\"]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *port = "8080", *path = "/plaintext", *extra_header = "";
    long total = 10000, nconn = 1, active, i;
    double timeout = 60, t0, t1;
    int quiet = 0, opt, ep;
    char *req, *b;
    conn *conns;
    struct addrinfo hints, *ai;
    struct epoll_event evs[256];

    while ((opt = getopt(argc, argv, "h:p:P:n:c:d:k:s:b:t:qH:")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = optarg; break;
        case 'P': path = optarg; break;
        case 'n': total = atol(optarg); break;
        case 'c': nconn = atol(optarg); break;
        case 'd': depth = atoi(optarg); break;
        case 'k': keep_alive = atoi(optarg) != 0; break;
        case 's': expect_status = atoi(optarg); break;
        case 'b': expect_body = optarg; expect_body_len = strlen(optarg); break;
        case 't': timeout = atof(optarg); break;
        case 'q': quiet = 1; break;
        case 'H': extra_header = optarg; break;
        default: usage();
        }
    }
    if (total < 0 || nconn < 1 || nconn > 100000 || depth < 1 || depth > 4096 || timeout <= 0) usage();
    if (!keep_alive) depth = 1; /* one request per connection */
    if (nconn > total && total > 0) nconn = total;

    /* the request, as wrk sends it, and a batch of depth copies */
    req = malloc(strlen(path) + strlen(host) + strlen(port) + strlen(extra_header) + 64);
    if (!req) die("malloc");
    req_len = (size_t)sprintf(req, "GET %s HTTP/1.1\r\nHost: %s:%s\r\n%s%s%s\r\n", path, host, port, extra_header,
                              *extra_header ? "\r\n" : "", keep_alive ? "" : "Connection: close\r\n");
    b = malloc(req_len * (size_t)depth);
    if (!b) die("malloc");
    for (i = 0; i < depth; i++) memcpy(b + (size_t)i * req_len, req, req_len);
    batch = b;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &ai) != 0) {
        fprintf(stderr, "client: cannot resolve %s:%s\n", host, port);
        return 2;
    }
    ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    conns = calloc((size_t)nconn, sizeof *conns);
    if (!conns) die("calloc");
    peer = ai;
    for (i = 0; i < nconn; i++) {
        conn *c = &conns[i];
        open_conn(ep, c);
        c->left = total / nconn + (i < total % nconn ? 1 : 0);
        c->in_cap = 65536;
        c->in = malloc(c->in_cap);
        if (!c->in) die("malloc");
    }

    t0 = now_s();
    active = 0;
    for (i = 0; i < nconn; i++) {
        conn *c = &conns[i];
        if (c->left == 0) {
            close(c->fd);
            c->fd = -1;
            continue;
        }
        active++;
        start_batch(c);
        if (write_some(ep, c) < 0) die("write");
    }
    while (active > 0) {
        int n = epoll_wait(ep, evs, 256, 1000), k;
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        if (now_s() - t0 > timeout) {
            fprintf(stderr, "client: timed out after %.0f s with %ld of %ld responses\n", timeout, n_done, total);
            break;
        }
        for (k = 0; k < n; k++) {
            conn *c = evs[k].data.ptr;
            if (c->fd < 0) continue;
            if ((evs[k].events & EPOLLOUT) && write_some(ep, c) < 0) die("write");
            if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t r;
                size_t used = 0;
                if (c->in_cap - c->in_len < 16384) {
                    c->in_cap *= 2;
                    if (!(c->in = realloc(c->in, c->in_cap))) die("realloc");
                }
                r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                if (r <= 0) {
                    fprintf(stderr, "client: connection %ld %s with %ld responses outstanding\n", (long)(c - conns),
                            r == 0 ? "closed by the server" : strerror(errno), c->inflight + c->left);
                    n_bad += c->inflight + c->left;
                    close(c->fd);
                    c->fd = -1;
                    active--;
                    continue;
                }
                c->in_len += (size_t)r;
                while (c->inflight > 0) {
                    long m = parse_response(c->in + used, c->in_len - used);
                    if (m < 0) {
                        fprintf(stderr, "client: malformed response on connection %ld\n", (long)(c - conns));
                        return 1;
                    }
                    if (m == 0) break;
                    used += (size_t)m;
                    c->inflight--;
                    n_done++;
                }
                if (used) {
                    memmove(c->in, c->in + used, c->in_len - used);
                    c->in_len -= used;
                }
                if (c->inflight == 0 && c->out_off == c->out_len) {
                    if (c->in_len) {
                        fprintf(stderr, "client: %zu unexpected bytes on connection %ld\n", c->in_len,
                                (long)(c - conns));
                        return 1;
                    }
                    if (c->left > 0) {
                        if (!keep_alive) { /* the server closes after the answer: a new connection */
                            close(c->fd);
                            open_conn(ep, c);
                        }
                        start_batch(c);
                        if (write_some(ep, c) < 0) die("write");
                    } else {
                        close(c->fd);
                        c->fd = -1;
                        active--;
                    }
                }
            }
        }
    }
    t1 = now_s();
    freeaddrinfo(ai);
    if (!quiet || n_ok != total || n_bad)
        printf("%ld responses, %ld ok, %.3f s, %.0f req/s\n", n_done, n_ok, t1 - t0,
               t1 > t0 ? (double)n_done / (t1 - t0) : 0.0);
    if (n_bad)
        fprintf(stderr, "client: %ld responses without status %d%s\n", n_bad, expect_status,
                expect_body ? " and the expected body" : "");
    return n_ok == total && n_bad == 0 ? 0 : 1;
}
