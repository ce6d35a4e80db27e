/* rest_blackbox.c - black-box tests of examples/rest.c (the todo API) over
   real sockets: auth, CRUD, bad JSON, header injection attempts, and many
   concurrent creates across workers. Usage: rest_blackbox build/rest
   Last line: "N passed, N failed". */
#include "testnet.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

static int port, passed, failed;
static pid_t server;
static int start_server_with(const char *bin, const char *token, const char *const *env, const char *log);
static int stop_server(void);

typedef struct response {
    int status;
    char head[4096];
    char body[65536];
    size_t body_len;
} response;

/* A connection to the server; a read waits at most 5 s. */
static int connect_server(void)
{
    int fd = tn_connect(port);
    if (fd >= 0) tn_recv_timeout(fd, 5);
    return fd;
}

/* Reads one response (head + Content-Length body). Returns 0 or -1. */
static int read_response(int fd, response *r)
{
    char buf[sizeof r->head + sizeof r->body];
    size_t have = 0, head_len = 0, need = 0;
    const char *cl;
    memset(r, 0, sizeof *r);
    for (;;) {
        ssize_t n;
        char *end;
        buf[have] = 0;
        end = head_len ? NULL : strstr(buf, "\r\n\r\n");
        if (end) {
            head_len = (size_t)(end - buf) + 4;
            if (head_len >= sizeof r->head) return -1;
            memcpy(r->head, buf, head_len);
            r->head[head_len] = 0;
            r->status = atoi(buf + 9);
            cl = strstr(r->head, "\r\nContent-Length: ");
            need = cl ? (size_t)atol(cl + 18) : 0;
            if (need > sizeof r->body - 1) return -1;
        }
        if (head_len && have >= head_len + need) break;
        n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0) return -1;
        have += (size_t)n;
    }
    memcpy(r->body, buf + head_len, need);
    r->body[need] = 0;
    r->body_len = need;
    return 0;
}

/* One request on a fresh connection. `auth` is a token or NULL; `extra`
   is more header lines ("Name: value\r\n"...) or NULL. */
static int call_ex(const char *method, const char *path, const char *extra, const char *auth, const char *body,
                   response *r)
{
    char req[8192];
    int fd = connect_server(), n, rc;
    if (fd < 0) return -1;
    n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s", method, path,
                 extra ? extra : "");
    if (auth) n += snprintf(req + n, sizeof req - (size_t)n, "Authorization: Bearer %s\r\n", auth);
    if (body)
        n += snprintf(req + n, sizeof req - (size_t)n, "Content-Type: application/json\r\nContent-Length: %u\r\n\r\n%s",
                      (unsigned)strlen(body), body);
    else
        n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
    rc = write(fd, req, (size_t)n) == n ? read_response(fd, r) : -1;
    close(fd);
    return rc;
}

static int call(const char *method, const char *path, const char *auth, const char *body, response *r)
{
    return call_ex(method, path, NULL, auth, body, r);
}

/* Sends raw bytes on a fresh connection and reads one response. */
static int raw(const char *bytes, response *r)
{
    int fd = connect_server(), rc;
    if (fd < 0) return -1;
    rc = write(fd, bytes, strlen(bytes)) == (ssize_t)strlen(bytes) ? read_response(fd, r) : -1;
    close(fd);
    return rc;
}

/* The value of header `name` ("Name: ") in r's head, copied; "" if none. */
static const char *header(const response *r, const char *name)
{
    static char v[512];
    char pat[128];
    const char *p, *e;
    snprintf(pat, sizeof pat, "\r\n%s: ", name);
    v[0] = 0;
    p = strstr(r->head, pat);
    if (!p) return v;
    p += strlen(pat);
    e = strstr(p, "\r\n");
    snprintf(v, sizeof v, "%.*s", (int)(e ? e - p : 0), p);
    return v;
}

static void result(const char *name, int ok, const response *r);

/* The issue 9 contract: CORS_ORIGINS. */
static void test_cors(const char *bin)
{
    static const char *const env[] = {"CORS_ORIGINS=https://a.example,https://b.example", NULL};
    response r;
    int ok;
    if (start_server_with(bin, NULL, env, NULL) < 0) {
        result("CORS: server starts", 0, NULL);
        return;
    }
    ok = call_ex("OPTIONS", "/api/v1/todos", "Origin: https://a.example\r\nAccess-Control-Request-Method: POST\r\n"
                 "Access-Control-Request-Headers: authorization, content-type\r\n", NULL, NULL, &r) == 0 &&
         r.status == 204 && strcmp(header(&r, "Access-Control-Allow-Origin"), "https://a.example") == 0 &&
         strstr(header(&r, "Access-Control-Allow-Methods"), "POST") &&
         strstr(header(&r, "Access-Control-Allow-Headers"), "Authorization") &&
         strstr(header(&r, "Access-Control-Allow-Headers"), "Content-Type") &&
         atoi(header(&r, "Access-Control-Max-Age")) > 0 && strstr(header(&r, "Vary"), "Origin");
    result("CORS: preflight from an allowed origin, without a token: 204 with the CORS headers", ok, &r);
    ok = call_ex("GET", "/api/v1/todos", "Origin: https://b.example\r\n", "secret", NULL, &r) == 0 && r.status == 200 &&
         strcmp(header(&r, "Access-Control-Allow-Origin"), "https://b.example") == 0 && strstr(header(&r, "Vary"), "Origin");
    result("CORS: an allowed origin's request carries Access-Control-Allow-Origin", ok, &r);
    ok = call_ex("GET", "/api/v1/todos", "Origin: https://b.example\r\n", NULL, NULL, &r) == 0 && r.status == 401 &&
         strcmp(header(&r, "Access-Control-Allow-Origin"), "https://b.example") == 0;
    result("CORS: a 401 to an allowed origin carries it too (the page can read the error)", ok, &r);
    ok = call_ex("GET", "/api/v1/todos", "Origin: https://evil.example\r\n", "secret", NULL, &r) == 0 &&
         r.status == 200 && !strstr(r.head, "Access-Control-") && !strstr(r.head, "Vary: Origin");
    result("CORS: another origin gets no CORS header", ok, &r);
    ok = call_ex("OPTIONS", "/api/v1/todos", "Origin: https://a.example.evil\r\nAccess-Control-Request-Method: POST\r\n",
                 NULL, NULL, &r) == 0 && r.status != 204 && !strstr(r.head, "Access-Control-");
    result("CORS: a preflight from another origin is not approved", ok, &r);
    ok = call("GET", "/api/v1/todos", "secret", NULL, &r) == 0 && r.status == 200 && !strstr(r.head, "Access-Control-") &&
         strstr(r.head, "\r\nVary: Origin\r\n");
    result("CORS: a request without Origin gets no CORS header, but Vary: Origin (Fetch: CORS and HTTP caches)", ok, &r);
    stop_server();
}

/* The issue 9 contract: RATE_LIMIT. One table for all workers (exact). */
static void test_rate_limit(const char *bin)
{
    static const char *const env[] = {"RATE_LIMIT=3", NULL};
    response r;
    int i, ok = 1, status[5], retry;
    if (start_server_with(bin, NULL, env, NULL) < 0) {
        result("rate limit: server starts", 0, NULL);
        return;
    }
    for (i = 0; i < 3; i++) {
        char want[16];
        snprintf(want, sizeof want, "%d", 2 - i);
        ok = ok && call("GET", "/api/v1/todos", "secret", NULL, &r) == 0 && r.status == 200 &&
             strcmp(header(&r, "X-RateLimit-Limit"), "3") == 0 && strcmp(header(&r, "X-RateLimit-Remaining"), want) == 0;
        status[i] = r.status;
    }
    result("rate limit: the first 3 pass with X-RateLimit-Limit: 3 and Remaining 2, 1, 0", ok, &r);
    ok = call("GET", "/api/v1/todos", "secret", NULL, &r) == 0 && r.status == 429 &&
         strstr(header(&r, "Content-Type"), "application/json") && r.body[0] == '{' && strstr(r.body, "\"detail\"") &&
         atoi(header(&r, "Retry-After")) >= 1 && strcmp(header(&r, "X-RateLimit-Remaining"), "0") == 0;
    retry = atoi(header(&r, "Retry-After"));
    result("rate limit: the 4th gets 429, JSON, Retry-After >= 1, Remaining 0 (connections on any worker)", ok, &r);
    for (i = 0, ok = 1; i < 10; i++) ok = ok && call("GET", "/health", NULL, NULL, &r) == 0 && r.status == 200;
    result("rate limit: /health is never limited", ok, &r);
    ok = call("GET", "/api/v1/todos", NULL, NULL, &r) == 0 && r.status == 429;
    result("rate limit: runs before auth (no token, still 429)", ok, &r);
    sleep((unsigned)(retry > 0 && retry < 5 ? retry : 1));
    ok = call("GET", "/api/v1/todos", "secret", NULL, &r) == 0 && r.status == 200;
    result("rate limit: after Retry-After seconds requests pass again", ok, &r);
    ok = call_ex("GET", "/api/v1/todos", "X-Forwarded-For: 10.1.1.1\r\n", "secret", NULL, &r) == 0 && r.status == 200 &&
         call_ex("GET", "/api/v1/todos", "X-Forwarded-For: 10.1.1.2\r\n", "secret", NULL, &r) == 0 && r.status == 200 &&
         call_ex("GET", "/api/v1/todos", "X-Forwarded-For: 10.1.1.3\r\n", "secret", NULL, &r) == 0 && r.status == 429;
    result("rate limit: X-Forwarded-For from an untrusted peer is ignored", ok, &r);
    (void)status;
    stop_server();
}

/* The issue 9 contract: GET /metrics. */
static void test_metrics(const char *bin)
{
    response r;
    int ok, i;
    if (start_server_with(bin, NULL, NULL, NULL) < 0) {
        result("metrics: server starts", 0, NULL);
        return;
    }
    for (i = 0; i < 4; i++) call("GET", "/health", NULL, NULL, &r);
    call("GET", "/api/v1/todos", NULL, NULL, &r);
    raw("GET /x HTTP/1.1\r\nHost: foo:abc\r\n\r\n", &r);
    ok = call("GET", "/metrics", NULL, NULL, &r) == 0 && r.status == 200 &&
         strstr(header(&r, "Content-Type"), "text/plain; version=0.0.4") &&
         strstr(r.body, "# TYPE chopin_requests_total counter") && strstr(r.body, "chopin_requests_total{code=\"200\"} 4\n") &&
         strstr(r.body, "chopin_requests_total{code=\"401\"} 1\n") && strstr(r.body, "chopin_connections_open ") &&
         strstr(r.body, "# TYPE chopin_request_duration_seconds histogram") &&
         strstr(r.body, "chopin_request_duration_seconds_bucket{le=\"+Inf\"} 6\n") &&
         strstr(r.body, "chopin_request_duration_seconds_sum ") && strstr(r.body, "chopin_request_duration_seconds_count 6\n") &&
         strstr(r.body, "chopin_refused_requests_total{code=\"400\"} 1\n");
    result("metrics: 200 Prometheus text, summed over the workers (requests by code, open connections, histogram, "
           "refusals)", ok, &r);
    stop_server();
}

/* The issue 9 contract: TRUST_PROXY, and bug 2 (refusals in the log). */
static void test_trust_proxy(const char *bin)
{
    static const char *const env[] = {"TRUST_PROXY=127.0.0.1", "RATE_LIMIT=2", NULL};
    char log[] = "/tmp/rest_blackbox_log_XXXXXX", text[65536];
    response r;
    int ok, fd = mkstemp(log);
    if (fd >= 0) close(fd);
    if (fd < 0 || start_server_with(bin, NULL, env, log) < 0) {
        result("trust proxy: server starts", 0, NULL);
        return;
    }
    ok = call_ex("GET", "/api/v1/todos", "X-Forwarded-For: 203.0.113.7\r\n", "secret", NULL, &r) == 0 && r.status == 200 &&
         call_ex("GET", "/api/v1/todos", "X-Forwarded-For: 203.0.113.7\r\n", "secret", NULL, &r) == 0 && r.status == 200 &&
         call_ex("GET", "/api/v1/todos", "X-Forwarded-For: 203.0.113.7\r\n", "secret", NULL, &r) == 0 && r.status == 429 &&
         call_ex("GET", "/api/v1/todos", "X-Forwarded-For: 198.51.100.1, 203.0.113.8\r\n", "secret", NULL, &r) == 0 &&
         r.status == 200;
    result("trust proxy: the rate limiter counts per X-Forwarded-For client (right-most)", ok, &r);
    /* RFC 9110 5.3: two X-Forwarded-For lines are one list, the second
       line's addresses to the right of the first's */
    ok = call_ex("GET", "/health", "X-Forwarded-For: 198.51.100.50\r\nX-Forwarded-For: 203.0.113.46\r\n", NULL, NULL,
                 &r) == 0 && r.status == 200 &&
         call_ex("GET", "/health", "X-Forwarded-For: 203.0.113.47\r\nAccept: */*\r\nX-Forwarded-For: 127.0.0.1\r\n",
                 NULL, NULL, &r) == 0 && r.status == 200 &&
         call_ex("GET", "/health", "X-Real-IP: 192.0.2.77\r\nX-Real-IP: 192.0.2.78\r\n", NULL, NULL, &r) == 0 &&
         call_ex("GET", "/health", "X-Real-IP: 192.0.2.79\r\n", NULL, NULL, &r) == 0 && r.status == 200;
    result("trust proxy: several X-Forwarded-For lines, duplicate X-Real-IP (served; the log checks who)", ok, &r);
    raw("GET /bad HTTP/1.1\r\nHost: foo:abc\r\n\r\n", &r);
    raw("\x01\x02 nonsense\r\n\r\n", &r);
    raw("GET /two HTTP/2.0\r\nHost: h\r\n\r\n", &r);
    ok = r.status == 505;
    raw("GET /old HTTP/1.0\r\nHost: a b\r\n\r\n", &r);
    result("refusals for the log: HTTP/2.0 gets 505, a bad Host in HTTP/1.0 gets 400", ok && r.status == 400, &r);
    raw("GET /api/v1/todos?q={\"a\"} HTTP/1.1\r\nHost: h\r\nX-Request-Id: abc-123\r\nConnection: close\r\n\r\n", &r);
    ok = r.status == 401 && strcmp(header(&r, "X-Request-Id"), "abc-123") == 0;
    result("request id: a client's X-Request-Id is kept; quotes and braces in a query are served", ok, &r);
    stop_server(); /* flushes the access log */
    tn_slurp(log, text, sizeof text);
    unlink(log);
    ok = strstr(text, "\n203.0.113.7 [") && strstr(text, "\n203.0.113.8 [") && !strstr(text, "198.51.100.1 [");
    result("trust proxy: the access log names the X-Forwarded-For client", ok, NULL);
    if (!ok) printf("# log:\n%s\n", text);
    ok = strstr(text, "\n203.0.113.46 [") && !strstr(text, "\n198.51.100.50 [") && strstr(text, "\n203.0.113.47 [");
    result("trust proxy: X-Forwarded-For lines combine; the right-most untrusted address of the last line wins", ok,
           NULL);
    ok = !strstr(text, "\n192.0.2.77 [") && !strstr(text, "\n192.0.2.78 [") && strstr(text, "\n192.0.2.79 [");
    result("trust proxy: X-Real-IP sent twice is ambiguous and ignored; sent once it names the client", ok, NULL);
    ok = strstr(text, "\"GET /bad HTTP/1.1\" 400 ") && strstr(text, "\"- - -\" 400 ");
    result("bug 2: refused requests reach the access log (method and target where known, - otherwise)", ok, NULL);
    /* the version a refused request named, not the previous request's: - where it
       was not read or is not HTTP/1.x */
    ok = strstr(text, "\"GET /two -\" 505 ") && strstr(text, "\"GET /old HTTP/1.0\" 400 ");
    result("access log: a refused request's version as it named it (HTTP/1.0; - for HTTP/2.0)", ok, NULL);
    ok = strstr(text, "\"GET /api/v1/todos?q={%22a%22} HTTP/1.1\" 401 ") && strstr(text, "us abc-123\n");
    result("access log: a quote in the target is written %22; the request id ends the line", ok, NULL);
}

/* Sends len bytes on a fresh connection; 1 if the server then closes it
   cleanly (end of stream, within 3 s) without a byte of answer. */
static int closed_unanswered(const char *bytes, size_t len)
{
    char buf[256];
    int fd = connect_server(), ok;
    if (fd < 0) return 0;
    tn_recv_timeout(fd, 3);
    ok = write(fd, bytes, len) == (ssize_t)len && read(fd, buf, sizeof buf) == 0;
    close(fd);
    return ok;
}

/* Malformed PROXY headers (haproxy's proxy-protocol.txt): each closes the
   connection, unanswered; UNKNOWN and LOCAL keep the proxy's address. */
static void test_proxy_malformed(void)
{
    static const char *const v1_bad[] = {
        "PROXY TCP4 192.0.2.5 127.0.0.1 51000\r\n",        /* a port missing */
        "PROXY TCP4 999.0.2.5 127.0.0.1 51000 80\r\n",     /* not an IPv4 address */
        "PROXY TCP6 192.0.2.5 127.0.0.1 51000 80\r\n",     /* TCP6 with IPv4 addresses */
        "PROXY TCP4 192.0.2.5 127.0.0.1 51000 80\n",        /* LF without CR */
        "PROXY TCP4 192.0.2.5 127.0.0.1 51000 65536\r\n",  /* a port out of range */
        "PROXY UDP4 192.0.2.5 127.0.0.1 51000 80\r\n",     /* not a v1 protocol */
    };
    static const unsigned char v2_ok[] = {'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n', 0x21, 0x11, 0, 12,
                                          198, 51, 100, 23, 127, 0, 0, 1, 0x30, 0x39, 0, 80};
    static const char req[] = "GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    char buf[512], name[160];
    size_t i;
    response r;
    int ok = 1, fd;
    for (i = 0; i < sizeof v1_bad / sizeof v1_bad[0]; i++) {
        snprintf(buf, sizeof buf, "%s%s", v1_bad[i], req);
        if (!closed_unanswered(buf, strlen(buf))) {
            ok = 0;
            printf("# not closed unanswered: %.*s\n", (int)strlen(v1_bad[i]) - 2, v1_bad[i]);
        }
    }
    memset(buf, 'x', 130);
    memcpy(buf, "PROXY TCP4 ", 11);
    memcpy(buf + 130, "\r\n", 2);
    ok = ok && closed_unanswered(buf, 132); /* no CRLF within v1's 107 bytes */
    result("PROXY protocol v1: malformed headers close the connection unanswered", ok, NULL);
    for (i = 0, ok = 1; i < 4; i++) {
        memcpy(buf, v2_ok, sizeof v2_ok);
        if (i == 0) buf[12] = 0x11;           /* version 1 in the binary form */
        if (i == 1) buf[12] = 0x22;           /* command 2 */
        if (i == 2) buf[13] = 0x41;           /* address family 4 */
        if (i == 3) buf[15] = 8;              /* too short for two IPv4 addresses and ports */
        memcpy(buf + sizeof v2_ok - (i == 3 ? 4 : 0), req, sizeof req - 1);
        snprintf(name, sizeof name, "%u", (unsigned)i);
        if (!closed_unanswered(buf, sizeof v2_ok - (i == 3 ? 4 : 0) + sizeof req - 1)) {
            ok = 0;
            printf("# v2 case %s not closed unanswered\n", name);
        }
    }
    result("PROXY protocol v2: bad version, command, family or length close the connection unanswered", ok, NULL);
    snprintf(buf, sizeof buf, "PROXY UNKNOWN\r\n%s", req);
    ok = raw(buf, &r) == 0 && r.status == 200;
    memcpy(buf, v2_ok, 16);
    buf[12] = 0x20; /* LOCAL: the proxy's own health check */
    buf[13] = 0;
    buf[15] = 0;
    memcpy(buf + 16, req, sizeof req - 1);
    fd = connect_server();
    ok = ok && fd >= 0 && write(fd, buf, 16 + sizeof req - 1) > 0 && read_response(fd, &r) == 0 && r.status == 200;
    if (fd >= 0) close(fd);
    result("PROXY protocol: v1 UNKNOWN and v2 LOCAL are served (as the proxy itself)", ok, &r);
}

/* PROXY protocol on, from a peer that is not a trusted proxy: no header is
   expected or believed (a client cannot name itself someone else). */
static void test_proxy_untrusted(const char *bin)
{
    static const char *const env[] = {"TRUST_PROXY=10.9.9.9", "PROXY_PROTOCOL=on", NULL};
    response r;
    int ok;
    if (start_server_with(bin, NULL, env, NULL) < 0) {
        result("PROXY protocol (untrusted peer): server starts", 0, NULL);
        return;
    }
    ok = raw("GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", &r) == 0 && r.status == 200;
    ok = ok && raw("PROXY TCP4 192.0.2.5 127.0.0.1 51000 80\r\nGET /health HTTP/1.1\r\nHost: h\r\n"
                   "Connection: close\r\n\r\n", &r) == 0 && r.status == 400;
    result("PROXY protocol: an untrusted peer is served without a header; one it sends is a bad request (400)", ok, &r);
    stop_server();
}

/* PROXY protocol from a trusted proxy: the header names the client. */
static void test_proxy_protocol(const char *bin)
{
    static const char *const env[] = {"TRUST_PROXY=127.0.0.1", "PROXY_PROTOCOL=on", NULL};
    static const unsigned char v2[] = {'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n', 0x21, 0x11, 0, 12,
                                       198, 51, 100, 23, 127, 0, 0, 1, 0x30, 0x39, 0, 80};
    char log[] = "/tmp/rest_blackbox_pp_XXXXXX", text[65536], buf[512];
    response r;
    int ok, fd = mkstemp(log);
    if (fd >= 0) close(fd);
    if (fd < 0 || start_server_with(bin, NULL, env, log) < 0) {
        result("PROXY protocol: server starts", 0, NULL);
        return;
    }
    ok = raw("PROXY TCP4 192.0.2.5 127.0.0.1 51000 80\r\nGET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
             &r) == 0 && r.status == 200;
    result("PROXY protocol v1: the request after the header is served", ok, &r);
    memcpy(buf, v2, sizeof v2);
    strcpy(buf + sizeof v2, "GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    fd = connect_server();
    ok = fd >= 0 && write(fd, buf, sizeof v2 + strlen(buf + sizeof v2)) > 0 && read_response(fd, &r) == 0 &&
         r.status == 200;
    if (fd >= 0) close(fd);
    result("PROXY protocol v2: the request after the header is served", ok, &r);
    ok = raw("GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", &r) < 0;
    result("PROXY protocol: a trusted peer without the header is closed unanswered", ok, &r);
    test_proxy_malformed();
    stop_server();
    tn_slurp(log, text, sizeof text);
    unlink(log);
    ok = strstr(text, "\n192.0.2.5 [") && strstr(text, "\n198.51.100.23 [");
    result("PROXY protocol: the access log names the client from the header (v1 and v2)", ok, NULL);
    if (!ok) printf("# log:\n%s\n", text);
}

/* Issue 9, bug 9, over a socket: what the parser refuses and accepts. */
static void test_strictness(const char *bin)
{
    static const struct {
        const char *name, *req;
        int status;
    } cases[] = {
        {"chunk-ext '5;'", "POST /api/v1/todos HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;\r\nhello\r\n0\r\n\r\n", 400},
        {"chunk-ext '5;a b'", "POST /api/v1/todos HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a b\r\nhello\r\n0\r\n\r\n", 400},
        {"chunk-ext '5;a@b'", "POST /api/v1/todos HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a@b\r\nhello\r\n0\r\n\r\n", 400},
        {"chunk-ext '5;a='", "POST /api/v1/todos HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\r\nhello\r\n0\r\n\r\n", 400},
        {"chunk-ext '5;a=\"b'", "POST /api/v1/todos HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b\r\nhello\r\n0\r\n\r\n", 400},
        {"Host foo:abc", "GET /health HTTP/1.1\r\nHost: foo:abc\r\n\r\n", 400},
        {"Host foo:80a", "GET /health HTTP/1.1\r\nHost: foo:80a\r\n\r\n", 400},
        {"Host foo:1:2", "GET /health HTTP/1.1\r\nHost: foo:1:2\r\n\r\n", 400},
        {"Host [::1", "GET /health HTTP/1.1\r\nHost: [::1\r\n\r\n", 400},
        {"Host [zz]", "GET /health HTTP/1.1\r\nHost: [zz]\r\n\r\n", 400},
        {"absolute-form authority foo:abc", "GET http://foo:abc/health HTTP/1.1\r\nHost: foo\r\n\r\n", 400},
        {"Transfer-Encoding: gzip, chunked", "POST /api/v1/todos HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
        {"a space in the target", "GET /he alth HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"a byte >= 0x80 in the target", "GET /h\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"a CTL in the target", "GET /h\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"{ } | ^ ` \" in the target are served", "GET /health?q={\"a\"}|^`x HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 200},
        {"chunk-ext with a quoted value is fine", "POST /api/v1/todos HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2 ; a = \"b c\";d\r\n{}\r\n0\r\n\r\n", 401},
    };
    response r;
    size_t i;
    char name[160];
    if (start_server_with(bin, NULL, NULL, NULL) < 0) {
        result("strictness: server starts", 0, NULL);
        return;
    }
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(name, sizeof name, "bug 9: %s: %d", cases[i].name, cases[i].status);
        result(name, raw(cases[i].req, &r) == 0 && r.status == cases[i].status, &r);
    }
    stop_server();
}

static void result(const char *name, int ok, const response *r)
{
    if (ok) {
        passed++;
        printf("ok - %s\n", name);
    } else {
        failed++;
        printf("FAIL - %s: status %d, body %.200s\n", name, r ? r->status : -1, r ? r->body : "");
    }
}

/* env: NULL-terminated "NAME=value" strings for the server; log: a file
   for its standard output (the access log), or NULL (no access log). */
static int start_server_with(const char *bin, const char *token, const char *const *env, const char *log)
{
    int i;
    port = tn_free_port();
    fflush(stdout); /* or the child would print our buffered lines again */
    server = fork();
    if (server == 0) {
        tn_server_env(port);
        setenv("ACCESS_LOG", log ? "on" : "off", 1);
        unsetenv("CORS_ORIGINS");
        unsetenv("RATE_LIMIT");
        unsetenv("TRUST_PROXY");
        if (token)
            setenv("API_TOKEN", token, 1);
        else
            unsetenv("API_TOKEN");
        for (i = 0; env && env[i]; i++) putenv((char *)env[i]);
        if (!freopen(log ? log : "/dev/null", "w", stdout)) _exit(127);
        execl(bin, bin, (char *)NULL);
        _exit(127);
    }
    return tn_wait_listening(port, server, 5000, NULL) == 0 ? 0 : -1;
}

static int start_server(const char *bin, const char *token) { return start_server_with(bin, token, NULL, NULL); }

/* 1 when the server exits with status 0 within 5 s of SIGTERM. */
static int stop_server(void)
{
    return tn_stop_server(server, 5000);
}

static long long id_of(const response *r)
{
    const char *p = strstr(r->body, "\"id\":");
    return p ? atoll(p + 5) : -1;
}

#define CREATERS 8
#define CREATES_EACH 25
static void *creator(void *arg)
{
    int i, *bad = (int *)arg;
    for (i = 0; i < CREATES_EACH; i++) {
        response r;
        if (call("POST", "/api/v1/todos", "secret", "{\"title\":\"load\",\"done\":false}", &r) < 0 || r.status != 201)
            (*bad)++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    response r;
    char path[64];
    long long id;
    int i, ok;
    if (argc < 2) {
        fprintf(stderr, "usage: rest_blackbox build/rest\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (start_server(argv[1], NULL) < 0) {
        printf("FAIL - server starts\n0 passed, 1 failed\n");
        return 1;
    }

    result("health needs no auth", call("GET", "/health", NULL, NULL, &r) == 0 && r.status == 200 &&
                                       strcmp(r.body, "{\"status\":\"ok\"}") == 0, &r);
    ok = call("GET", "/api/v1/todos", NULL, NULL, &r) == 0 && r.status == 401 &&
         strstr(r.head, "\r\nWWW-Authenticate: Bearer") && strstr(r.body, "\"detail\"") &&
         strstr(r.head, "Content-Type: application/json");
    result("missing token: 401 JSON", ok, &r);
    result("wrong token: 401", call("GET", "/api/v1/todos", "nope", NULL, &r) == 0 && r.status == 401, &r);
    result("Basic instead of Bearer: 401", call("GET", "/api/v1/todos", NULL, NULL, &r) == 0 && r.status == 401, &r);
    result("empty list", call("GET", "/api/v1/todos", "secret", NULL, &r) == 0 && r.status == 200 &&
                              strcmp(r.body, "[]") == 0, &r);

    ok = call("POST", "/api/v1/todos", "secret", "{\"title\":\"buy milk\",\"done\":false}", &r) == 0 && r.status == 201;
    id = id_of(&r);
    snprintf(path, sizeof path, "/api/v1/todos/%lld", id);
    ok = ok && id > 0 && strstr(r.body, "\"title\":\"buy milk\"") && strstr(r.body, "\"done\":false") &&
         strstr(r.head, path);
    result("create: 201 with a numeric id and Location", ok, &r);
    result("read it back", call("GET", path, "secret", NULL, &r) == 0 && r.status == 200 && id_of(&r) == id &&
                               strstr(r.body, "buy milk"), &r);
    ok = call("PUT", path, "secret", "{\"title\":\"buy oat milk\",\"done\":true}", &r) == 0 && r.status == 200 &&
         strstr(r.body, "\"title\":\"buy oat milk\"") && strstr(r.body, "\"done\":true");
    result("update: 200", ok, &r);
    result("list has it", call("GET", "/api/v1/todos", "secret", NULL, &r) == 0 && r.status == 200 &&
                              strstr(r.body, "oat milk") && r.body[0] == '[', &r);
    result("delete: 204 without a body", call("DELETE", path, "secret", NULL, &r) == 0 && r.status == 204 &&
                                             r.body_len == 0 && !strstr(r.head, "Content-Length"), &r);
    result("deleted: 404", call("GET", path, "secret", NULL, &r) == 0 && r.status == 404, &r);
    result("put unknown id: 404", call("PUT", "/api/v1/todos/999999", "secret", "{\"title\":\"x\",\"done\":true}", &r) == 0 &&
                                      r.status == 404, &r);
    result("delete unknown id: 404", call("DELETE", "/api/v1/todos/999999", "secret", NULL, &r) == 0 && r.status == 404, &r);
    result("non-numeric id: 404", call("GET", "/api/v1/todos/abc", "secret", NULL, &r) == 0 && r.status == 404, &r);

    result("malformed JSON: 400 with the position",
           call("POST", "/api/v1/todos", "secret", "{\"title\":\"x\" \"done\":false}", &r) == 0 && r.status == 400 &&
               strstr(r.body, "invalid JSON at byte 13"), &r);
    result("truncated JSON: 400", call("POST", "/api/v1/todos", "secret", "{\"title\":\"x\",", &r) == 0 && r.status == 400, &r);
    result("empty body: 400", call("POST", "/api/v1/todos", "secret", "", &r) == 0 && r.status == 400, &r);
    result("not an object: 400", call("POST", "/api/v1/todos", "secret", "[1,2]", &r) == 0 && r.status == 400 &&
                                     strstr(r.body, "object"), &r);
    result("missing title: 400", call("POST", "/api/v1/todos", "secret", "{\"done\":false}", &r) == 0 && r.status == 400 &&
                                     strstr(r.body, "missing field 'title'"), &r);
    result("missing done: 400", call("POST", "/api/v1/todos", "secret", "{\"title\":\"a\"}", &r) == 0 && r.status == 400 &&
                                    strstr(r.body, "missing field 'done'"), &r);
    result("title not a string: 400", call("POST", "/api/v1/todos", "secret", "{\"title\":5,\"done\":false}", &r) == 0 &&
                                          r.status == 400 && strstr(r.body, "'title' must be a string"), &r);
    result("done not a boolean: 400", call("POST", "/api/v1/todos", "secret", "{\"title\":\"a\",\"done\":\"no\"}", &r) == 0 &&
                                          r.status == 400 && strstr(r.body, "'done'"), &r);
    result("bad JSON on PUT: 400", call("PUT", "/api/v1/todos/1", "secret", "{", &r) == 0 && r.status == 400, &r);

    /* header injection: CR LF inside data never becomes a header */
    ok = call("POST", "/api/v1/todos", "secret", "{\"title\":\"a\\r\\nX-Injected: 1\",\"done\":false}", &r) == 0 &&
         r.status == 201 && !strstr(r.head, "X-Injected") && strstr(r.body, "a\\r\\nX-Injected: 1");
    result("CR LF in a title stays escaped in the body", ok, &r);
    {
        /* a raw CR LF smuggled into a header value is refused by the parser */
        int fd = connect_server();
        const char *req = "GET /api/v1/todos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\rX-Injected: 1\r\n\r\n";
        ok = fd >= 0 && write(fd, req, strlen(req)) == (ssize_t)strlen(req) && read_response(fd, &r) == 0 &&
             r.status == 400;
        if (fd >= 0) close(fd);
        result("bare CR in a request header: 400", ok, &r);
    }
    result("OPTIONS lists the methods", call("OPTIONS", "/api/v1/todos/1", NULL, NULL, &r) == 0 && r.status == 200 &&
                                            strstr(r.head, "Allow: GET, HEAD, PUT, DELETE, OPTIONS"), &r);
    result("PATCH: 405 with Allow", call("PATCH", "/api/v1/todos/1", "secret", "{}", &r) == 0 && r.status == 405 &&
                                        strstr(r.head, "Allow: "), &r);

    /* concurrent creates from several connections, on several workers */
    {
        pthread_t t[CREATERS];
        int bad = 0, count = 0;
        const char *p;
        for (i = 0; i < CREATERS; i++) pthread_create(&t[i], NULL, creator, &bad);
        for (i = 0; i < CREATERS; i++) pthread_join(t[i], NULL);
        ok = bad == 0 && call("GET", "/api/v1/todos", "secret", NULL, &r) == 0 && r.status == 200;
        for (p = r.body; (p = strstr(p, "\"title\":\"load\"")) != NULL; p++) count++;
        ok = ok && count == CREATERS * CREATES_EACH;
        result("200 concurrent creates are all stored", ok, &r);
    }
    result("SIGTERM: exit status 0", stop_server(), NULL);

    /* API_TOKEN is read from the environment */
    if (start_server(argv[1], "tok-123") < 0) {
        result("server starts with API_TOKEN", 0, NULL);
    } else {
        result("API_TOKEN replaces the default", call("GET", "/api/v1/todos", "secret", NULL, &r) == 0 && r.status == 401, &r);
        result("API_TOKEN accepted", call("GET", "/api/v1/todos", "tok-123", NULL, &r) == 0 && r.status == 200, &r);
        stop_server();
    }
    test_cors(argv[1]);
    test_rate_limit(argv[1]);
    test_metrics(argv[1]);
    test_trust_proxy(argv[1]);
    test_proxy_protocol(argv[1]);
    test_proxy_untrusted(argv[1]);
    test_strictness(argv[1]);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
