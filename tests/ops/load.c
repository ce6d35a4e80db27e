/* load.c - a bounded load client for the operations tests (issue 12).

   Keeps K keep-alive connections busy (one request at a time on each, the
   next sent as soon as the answer is complete) and, beside them, opens a new
   connection for each of M further requests (sent with Connection: close), at
   a given rate, to 127.0.0.1:PORT. Every request is GET PATH; a correct answer
   is status 200 with a Content-Length and exactly the expected body. Runs for
   a duration or a count, then waits for the requests in flight (up to the
   timeout) and prints the totals, the failures per class and, last,

       N passed, N failed

   where passed counts complete correct answers and failed counts failures.
   Exit status 0 when nothing failed, 1 otherwise, 2 on a usage error.

   Classes of failure (each request ends in exactly one outcome):
     refused      connect() answered ECONNREFUSED (nobody listening)
     connect      another connect error, or no connection within the timeout
     reset        a NEW connection was reset (ECONNRESET, EPIPE) before any
                  byte of the answer (e.g. it sat in the accept queue of a
                  listener that was closed)
     closed       a clean close (EOF) before any byte of the answer on a NEW
                  connection (the server accepted and dropped it)
     truncated    the connection ended (EOF or reset) inside an answer
     status       a complete answer with a status other than 200
     body         a complete answer with the wrong body, no Content-Length,
                  a chunked or malformed head, or bytes after the answer
     timeout      no complete answer within the timeout
   Not failures:
     reconnects   a keep-alive connection the server closed cleanly between
                  answers (after an answer with Connection: close, or an EOF
                  while no request was outstanding): the client reconnects;
     unanswered   a request written on a REUSED keep-alive connection that
                  then ended (EOF, or a reset: how many of these were resets
                  is printed too) without a byte of answer: the race every
                  HTTP client meets when a server closes an idle connection
                  just as a request arrives, and the reason clients (browsers,
                  Go's net/http, curl) retry idempotent requests on a fresh
                  connection. It is printed, retried on a fresh connection,
                  and counted as a failure only with --strict.

   Usage: load [options]
     --port N          127.0.0.1:N (required)
     --seconds S       run for S seconds (decimals allowed; default 5 when no
                       count is given)
     --requests N      stop the keep-alive connections after N requests
     --keepalive K     keep-alive connections (default 4; 0 for none)
     --ka-rate R       at most R requests per second over all the keep-alive
                       connections together (default 0: as fast as answered)
     --rate R          new-connection requests per second (default 0)
     --new N           stop the new-connection requests after N (with no
                       --rate: as fast as --concurrency allows)
     --concurrency C   new connections open at once, at most (default 8)
     --path P          request target (default /plaintext)
     --body B          expected body (default "Hello, World!")
     --timeout MS      per request, connect included (default 2000)
     --timeline        print one line a second: elapsed, passed, failed
     --strict          count unanswered requests as failures
     --quiet           only the result line
   SIGINT or SIGTERM ends the run early: no new requests, those in flight
   get up to the timeout, then the totals are printed as usual.

   Builds with any C99 compiler, no dependencies:
     cc -std=c99 -Wall -Wextra -Wpedantic -O2 tests/ops/load.c -o build/load */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF 16384

enum outcome {
    O_PASS,
    O_REFUSED,
    O_CONNECT,
    O_RESET,
    O_CLOSED,
    O_TRUNCATED,
    O_STATUS,
    O_BODY,
    O_TIMEOUT,
    O_UNANSWERED,
    O_COUNT
};

static const char *const outcome_name[O_COUNT] = {"passed",    "refused", "connect", "reset",  "closed",
                                                  "truncated", "status",  "body",    "timeout", "unanswered"};

enum kind { K_KEEPALIVE, K_NEW };
enum state { S_OFF, S_WAIT, S_CONNECTING, S_WRITING, S_READING };

typedef struct conn {
    int fd;
    enum kind kind;
    enum state state;
    int reused;      /* this connection has already carried a complete answer */
    int issued;      /* the request to send is counted (a retry is not again) */
    double started;  /* when the current request (or connect) began */
    double wake;     /* S_WAIT: when to connect again */
    size_t sent, got;
    char buf[RBUF + 1]; /* + a NUL after the bytes read, for strstr */
} conn;

static struct {
    int port;
    double seconds;
    long requests, new_total;
    int keepalive, concurrency;
    double rate, ka_rate;
    const char *path, *body;
    double timeout;
    int timeline, strict, quiet;
} opt = {0, 0, -1, -1, 4, 8, 0, 0, "/plaintext", "Hello, World!", 2.0, 0, 0, 0};

static long counts[2][O_COUNT];
static long reconnects, sent_total, unanswered_reset;
static char request_ka[1024], request_new[1024];
static size_t request_ka_len, request_new_len, body_len;
static struct sockaddr_in addr;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long total(int o)
{
    return counts[K_KEEPALIVE][o] + counts[K_NEW][o];
}

static long failures(void)
{
    long f = 0;
    int o;
    for (o = O_REFUSED; o < O_COUNT; o++)
        if (o != O_UNANSWERED || opt.strict) f += total(o);
    return f;
}

static void conn_close(conn *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->sent = c->got = 0;
    c->reused = 0;
}

/* Starts a non-blocking connect; the outcome shows in poll (POLLOUT). */
static int conn_open(conn *c, double t)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    c->started = t;
    c->sent = c->got = 0;
    c->reused = 0;
    if (fd < 0) return -errno;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
        c->state = S_WRITING;
        return 0;
    }
    if (errno == EINPROGRESS) {
        c->state = S_CONNECTING;
        return 0;
    }
    return -errno;
}

/* The request on c ends with outcome o; the connection is closed unless
   keep is set. A keep-alive slot reconnects at once, or after a short pause
   when nobody answered the connect (so a dead port is not hammered). */
static void finish(conn *c, int o, int keep, double t)
{
    c->issued = o == O_UNANSWERED && !opt.strict; /* retried: not issued again */
    counts[c->kind][o]++;
    if (!keep) {
        conn_close(c);
        c->state = c->kind == K_KEEPALIVE ? S_WAIT : S_OFF;
        c->wake = t + (o == O_REFUSED || o == O_CONNECT ? 0.01 : 0.0);
    } else {
        c->reused = 1;
        c->sent = c->got = 0;
        c->state = S_WRITING;
        c->started = t;
    }
}

static void connect_failed(conn *c, int err, double t)
{
    finish(c, err == ECONNREFUSED ? O_REFUSED : O_CONNECT, 0, t);
}

static int lower_eq(const char *a, const char *b, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = (char)(x - 'A' + 'a');
        if (x != y) return 0;
    }
    return 1;
}

/* Looks at the bytes read so far. Returns -1 while the answer is incomplete,
   else an outcome; *close_after is set when the server said Connection:
   close (or answered HTTP/1.0 without keep-alive). */
static int parse(conn *c, int *close_after)
{
    const char *b = c->buf, *end = b + c->got, *p, *head_end = NULL, *line;
    long status, length = -1;
    int chunked = 0, http10 = 0, keep_alive = 0;
    size_t head_len;
    *close_after = 0;
    for (p = b; p + 3 < end; p++)
        if (p[0] == '\r' && p[1] == '\n' && p[2] == '\r' && p[3] == '\n') {
            head_end = p + 4;
            break;
        }
    if (!head_end) return c->got >= RBUF ? O_BODY : -1;
    head_len = (size_t)(head_end - b);
    if (head_len < 12 || memcmp(b, "HTTP/1.", 7) != 0 || (b[7] != '0' && b[7] != '1') || b[8] != ' ') return O_BODY;
    http10 = b[7] == '0';
    status = strtol(b + 9, NULL, 10);
    for (line = strstr(b, "\r\n") + 2; line < head_end - 2; line = strstr(line, "\r\n") + 2) {
        const char *eol = strstr(line, "\r\n"), *v = memchr(line, ':', (size_t)(eol - line));
        size_t nlen;
        if (!v) return O_BODY;
        nlen = (size_t)(v - line);
        v++;
        while (v < eol && (*v == ' ' || *v == '\t')) v++;
        if (nlen == 14 && lower_eq(line, "content-length", 14)) {
            char *e;
            long n = strtol(v, &e, 10);
            if (e == v || n < 0 || (length >= 0 && n != length)) return O_BODY;
            length = n;
        } else if (nlen == 17 && lower_eq(line, "transfer-encoding", 17)) {
            chunked = 1;
        } else if (nlen == 10 && lower_eq(line, "connection", 10)) {
            size_t vlen = (size_t)(eol - v);
            if (vlen >= 5 && lower_eq(v, "close", 5)) *close_after = 1;
            if (vlen >= 10 && lower_eq(v, "keep-alive", 10)) keep_alive = 1;
        }
    }
    if (http10 && !keep_alive) *close_after = 1;
    if (chunked || length < 0) return O_BODY;
    if (c->got < head_len + (size_t)length) return (size_t)length > RBUF - head_len ? O_BODY : -1;
    if (c->got > head_len + (size_t)length) return O_BODY; /* bytes nobody asked for */
    if (status != 200) return O_STATUS;
    if ((size_t)length != body_len || memcmp(head_end, opt.body, body_len) != 0) return O_BODY;
    return O_PASS;
}

/* The connection ended (EOF when err is 0) while c waited for an answer. */
static void ended(conn *c, int err, double t)
{
    if (c->got > 0) {
        finish(c, O_TRUNCATED, 0, t);
    } else if (c->kind == K_KEEPALIVE && c->reused) {
        if (err) unanswered_reset++;
        finish(c, O_UNANSWERED, 0, t);
    } else {
        finish(c, err ? O_RESET : O_CLOSED, 0, t);
    }
}

static void on_read(conn *c, double t)
{
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->got, RBUF - c->got);
        int o, close_after;
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            ended(c, errno, t);
            return;
        }
        if (n == 0) {
            ended(c, 0, t);
            return;
        }
        c->got += (size_t)n;
        c->buf[c->got] = '\0';
        o = parse(c, &close_after);
        if (o < 0) {
            if (c->got == RBUF) finish(c, O_BODY, 0, t);
            else continue;
            return;
        }
        if (o == O_PASS && c->kind == K_KEEPALIVE && close_after) reconnects++;
        finish(c, o, o == O_PASS && c->kind == K_KEEPALIVE && !close_after, t);
        return;
    }
}

static void on_write(conn *c, double t)
{
    const char *req = c->kind == K_KEEPALIVE ? request_ka : request_new;
    size_t len = c->kind == K_KEEPALIVE ? request_ka_len : request_new_len;
    while (c->sent < len) {
        ssize_t n = send(c->fd, req + c->sent, len - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (c->sent == 0 && c->kind == K_KEEPALIVE && c->reused) { /* closed between answers */
                reconnects++;
                conn_close(c);
                c->state = S_WAIT;
                c->wake = t;
                return;
            }
            ended(c, errno, t);
            return;
        }
        if (c->sent == 0) sent_total++;
        c->sent += (size_t)n;
    }
    c->state = S_READING;
}

/* A keep-alive connection with no request outstanding (after a complete
   answer, before the next request is written) saw the server close: that is
   a clean close between answers, not a failure. */
static int closed_between(conn *c)
{
    char byte;
    ssize_t n = recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static double start, deadline;

/* May a keep-alive connection send another new request? */
static int ka_more(long issued, double t)
{
    return t < deadline && (opt.requests < 0 || issued < opt.requests);
}

/* With --ka-rate: must the next keep-alive request wait a little? */
static int ka_paced(long issued, double t)
{
    return opt.ka_rate > 0 && issued >= (long)((t - start) * opt.ka_rate) + 1;
}

static int parse_args(int argc, char **argv)
{
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--timeline")) opt.timeline = 1;
        else if (!strcmp(a, "--strict")) opt.strict = 1;
        else if (!strcmp(a, "--quiet")) opt.quiet = 1;
        else if (!v) {
            fprintf(stderr, "load: %s needs a value (or is unknown)\n", a);
            return -1;
        } else {
            i++;
            if (!strcmp(a, "--port")) opt.port = atoi(v);
            else if (!strcmp(a, "--seconds")) opt.seconds = atof(v);
            else if (!strcmp(a, "--requests")) opt.requests = atol(v);
            else if (!strcmp(a, "--keepalive")) opt.keepalive = atoi(v);
            else if (!strcmp(a, "--rate")) opt.rate = atof(v);
            else if (!strcmp(a, "--ka-rate")) opt.ka_rate = atof(v);
            else if (!strcmp(a, "--new")) opt.new_total = atol(v);
            else if (!strcmp(a, "--concurrency")) opt.concurrency = atoi(v);
            else if (!strcmp(a, "--path")) opt.path = v;
            else if (!strcmp(a, "--body")) opt.body = v;
            else if (!strcmp(a, "--timeout")) opt.timeout = atof(v) / 1000.0;
            else {
                fprintf(stderr, "load: unknown option %s\n", a);
                return -1;
            }
        }
    }
    if (opt.port <= 0 || opt.port > 65535 || opt.keepalive < 0 || opt.keepalive > 10000 || opt.concurrency < 1 ||
        opt.concurrency > 10000 || opt.rate < 0 || opt.ka_rate < 0 || opt.seconds < 0 || opt.timeout <= 0 || opt.path[0] != '/' ||
        strlen(opt.path) > 512) {
        fprintf(stderr, "load: bad option value (see the comment at the top of tests/ops/load.c)\n");
        return -1;
    }
    if (opt.seconds == 0 && opt.requests < 0 && opt.new_total < 0) opt.seconds = 5;
    if (opt.seconds == 0 && opt.requests < 0 && opt.keepalive > 0) opt.requests = 0; /* counts only */
    if (opt.seconds == 0 && opt.new_total < 0) opt.new_total = 0;
    return 0;
}

int main(int argc, char **argv)
{
    conn *conns;
    struct pollfd *pfd;
    int *pidx, n, i, o;
    long ka_issued = 0, new_issued = 0;
    double t, hard_stop, next_tick;
    long tick_pass = 0, tick_fail = 0;

    if (parse_args(argc, argv) != 0) return 2;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)opt.port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    request_ka_len = (size_t)snprintf(request_ka, sizeof request_ka, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
                                      opt.path, opt.port);
    request_new_len = (size_t)snprintf(request_new, sizeof request_new,
                                       "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", opt.path,
                                       opt.port);
    body_len = strlen(opt.body);

    n = opt.keepalive + opt.concurrency;
    conns = (conn *)calloc((size_t)n, sizeof *conns);
    pfd = (struct pollfd *)calloc((size_t)n, sizeof *pfd);
    pidx = (int *)calloc((size_t)n, sizeof *pidx);
    if (!conns || !pfd || !pidx) {
        fprintf(stderr, "load: out of memory\n");
        return 2;
    }
    start = now();
    deadline = opt.seconds > 0 ? start + opt.seconds : 1e300;
    hard_stop = deadline + opt.timeout + 1.0;
    next_tick = start + 1.0;
    for (i = 0; i < n; i++) {
        conns[i].fd = -1;
        conns[i].kind = i < opt.keepalive ? K_KEEPALIVE : K_NEW;
        conns[i].state = i < opt.keepalive ? S_WAIT : S_OFF;
        conns[i].wake = start;
    }

    for (;;) {
        int nfds = 0, busy = 0, r;
        int more_ka, more_new;
        double wait = 0.01;
        t = now();
        if (interrupted && deadline > t) { /* stop: finish what is in flight, print */
            deadline = t;
            hard_stop = t + opt.timeout + 1.0;
        }
        more_ka = ka_more(ka_issued, t);
        more_new = t < deadline && (opt.new_total < 0 || new_issued < opt.new_total) &&
                   (opt.rate > 0 || opt.new_total > 0);

        /* keep-alive connections: closes between answers, new requests,
           reconnects, and every timeout */
        for (i = 0; i < n; i++) {
            conn *c = &conns[i];
            if (c->kind == K_KEEPALIVE && c->state == S_WRITING && c->sent == 0 && c->reused && closed_between(c)) {
                reconnects++;
                conn_close(c);
                c->state = S_WAIT;
                c->wake = t;
            }
            if (c->kind == K_KEEPALIVE && c->state == S_WRITING && c->sent == 0 && !c->issued) {
                if (!ka_more(ka_issued, t)) {
                    conn_close(c);
                    c->state = S_OFF;
                    continue;
                }
                if (ka_paced(ka_issued, t)) continue;
                ka_issued++;
                c->issued = 1;
                c->started = t;
            }
            if (c->kind == K_KEEPALIVE && c->state == S_WAIT && t >= c->wake) {
                if (!c->issued) {
                    if (!ka_more(ka_issued, t)) {
                        c->state = S_OFF;
                        continue;
                    }
                    if (ka_paced(ka_issued, t)) continue;
                    ka_issued++;
                    c->issued = 1;
                }
                r = conn_open(c, t);
                if (r < 0) connect_failed(c, -r, t);
            }
            if ((c->state == S_CONNECTING || c->state == S_READING ||
                 (c->state == S_WRITING && (c->issued || c->kind == K_NEW))) &&
                t - c->started > opt.timeout)
                finish(c, c->state == S_CONNECTING ? O_CONNECT : O_TIMEOUT, 0, t);
        }
        if (more_new) {
            long due = opt.rate > 0 ? (long)((t - start) * opt.rate) + 1 : new_issued + opt.concurrency;
            if (opt.new_total >= 0 && due > opt.new_total) due = opt.new_total;
            for (i = opt.keepalive; i < n && new_issued < due; i++) {
                conn *c = &conns[i];
                if (c->state != S_OFF) continue;
                new_issued++;
                r = conn_open(c, t);
                if (r < 0) connect_failed(c, -r, t);
            }
        }

        /* poll every open connection */
        for (i = 0; i < n; i++) {
            conn *c = &conns[i];
            if (c->state == S_WAIT && c->kind == K_KEEPALIVE) busy = 1;
            if (c->state == S_WRITING && c->kind == K_KEEPALIVE && !c->issued) busy = 1; /* paced */
            if (c->fd < 0 || c->state == S_OFF || c->state == S_WAIT) continue;
            busy = 1;
            if (c->state == S_WRITING && c->kind == K_KEEPALIVE && !c->issued) continue;
            pfd[nfds].fd = c->fd;
            pfd[nfds].events = c->state == S_READING ? POLLIN : POLLOUT;
            pfd[nfds].revents = 0;
            pidx[nfds++] = i;
        }
        if (!busy && !more_ka && !more_new) break;
        if (t > hard_stop) break;
        if (opt.timeline && t >= next_tick) {
            long p = total(O_PASS), f = failures();
            fprintf(stderr, "load: %5.1f s  %8ld passed  %6ld failed\n", t - start, p - tick_pass, f - tick_fail);
            tick_pass = p;
            tick_fail = f;
            next_tick += 1.0;
        }
        if (more_new && opt.rate > 0) wait = 1.0 / opt.rate < wait ? 1.0 / opt.rate : wait;
        if (more_ka && opt.ka_rate > 0) wait = 1.0 / opt.ka_rate < wait ? 1.0 / opt.ka_rate : wait;
        r = poll(pfd, (nfds_t)nfds, (int)(wait * 1000) + 1);
        if (r < 0 && errno != EINTR) {
            perror("load: poll");
            return 2;
        }
        t = now();
        for (i = 0; r > 0 && i < nfds; i++) {
            conn *c = &conns[pidx[i]];
            if (!pfd[i].revents) continue;
            if (c->state == S_CONNECTING) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) {
                    connect_failed(c, err, t);
                    continue;
                }
                c->state = S_WRITING;
            }
            if (c->state == S_WRITING) on_write(c, t);
            else if (c->state == S_READING) on_read(c, t);
        }
    }
    t = now();
    for (i = 0; i < n; i++) /* still in flight at the hard stop: timed out */
        if (conns[i].fd >= 0 && (conns[i].state == S_CONNECTING || conns[i].state == S_READING ||
                                 (conns[i].state == S_WRITING && conns[i].sent > 0)))
            finish(&conns[i], conns[i].state == S_CONNECTING ? O_CONNECT : O_TIMEOUT, 0, t);

    if (!opt.quiet) {
        printf("load: GET %s on 127.0.0.1:%d for %.1f s: %d keep-alive connections, new connections", opt.path,
               opt.port, t - start, opt.keepalive);
        if (opt.rate > 0) printf(" at %.0f/s", opt.rate);
        printf(" (at most %d at once)\n", opt.concurrency);
        printf("load: requests written %ld; correct answers %ld (keep-alive %ld, new connections %ld)\n", sent_total,
               total(O_PASS), counts[K_KEEPALIVE][O_PASS], counts[K_NEW][O_PASS]);
        printf("load: reconnects after a clean close %ld; unanswered (a reused connection closed before any byte; "
               "retried) %ld, of which by a reset %ld%s\n",
               reconnects, total(O_UNANSWERED), unanswered_reset, opt.strict ? " [--strict: failures]" : "");
        printf("load: failures:");
        for (o = O_REFUSED; o < O_UNANSWERED; o++) printf(" %s %ld%s", outcome_name[o], total(o), o + 1 < O_UNANSWERED ? "," : "\n");
    }
    printf("%ld passed, %ld failed\n", total(O_PASS), failures());
    for (i = 0; i < n; i++) conn_close(&conns[i]);
    free(conns);
    free(pfd);
    free(pidx);
    return failures() ? 1 : 0;
}
