/* unit.c - unit tests for chopin.h's pieces: itoa, the Date format, the
   character table, the pre-built errors, the request parser (every request
   also fed split at every byte), the chunked decoder, the JSON writer, the
   router and the configuration. It includes the implementation, so the
   internal chi_ functions are reachable. Last line: "N passed, N failed". */
#define CHOPIN_IMPLEMENTATION
#include "../chopin.h"

#include <math.h>

static int g_passed, g_failed, g_case_failed;
static const char *g_case;

#define CHECK(cond) check((cond), #cond, __FILE__, __LINE__)
static void check(int ok, const char *what, const char *file, int line)
{
    if (!ok) {
        printf("  FAIL %s: %s (%s:%d)\n", g_case, what, file, line);
        g_case_failed = 1;
    }
}

static void run(const char *name, void (*fn)(void))
{
    g_case = name;
    g_case_failed = 0;
    fn();
    if (g_case_failed) {
        g_failed++;
        printf("not ok - %s\n", name);
    } else {
        g_passed++;
        printf("ok - %s\n", name);
    }
}

/* ---- itoa and Date ---- */

static void test_itoa(void)
{
    static const uint64_t v[] = {0, 7, 9, 10, 42, 99, 100, 101, 999, 1000, 65535, 1234567890ULL, UINT64_MAX};
    char out[24], want[32];
    size_t i, n;
    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        n = chi_utoa(v[i], out);
        snprintf(want, sizeof want, "%llu", (unsigned long long)v[i]);
        CHECK(n == strlen(want) && memcmp(out, want, n) == 0);
    }
    n = chi_itoa(-9223372036854775807LL - 1, out);
    CHECK(n == 20 && memcmp(out, "-9223372036854775808", 20) == 0);
    n = chi_itoa(-5, out);
    CHECK(n == 2 && memcmp(out, "-5", 2) == 0);
}

static void test_date(void)
{
    char out[CHI_DATE_LEN + 1], want[64];
    int64_t t;
    struct tm tm;
    unsigned seed = 12345;
    int i;
    out[CHI_DATE_LEN] = 0;
    chi_format_date(784111777, out);
    CHECK(strcmp(out, "Sun, 06 Nov 1994 08:49:37 GMT") == 0);
    chi_format_date(0, out);
    CHECK(strcmp(out, "Thu, 01 Jan 1970 00:00:00 GMT") == 0);
    chi_format_date(951782400, out); /* leap day */
    CHECK(strcmp(out, "Tue, 29 Feb 2000 00:00:00 GMT") == 0);
    /* against the C library for many instants up to year 2400 */
    for (i = 0; i < 20000; i++) {
        time_t tt;
        seed = seed * 1103515245u + 12345u;
        t = (int64_t)(((uint64_t)seed << 16) % 13569465600ULL);
        tt = (time_t)t;
        gmtime_r(&tt, &tm);
        strftime(want, sizeof want, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        chi_format_date(t, out);
        if (strcmp(out, want) != 0) {
            CHECK(strcmp(out, want) == 0);
            break;
        }
    }
}

/* ---- the character table against the RFC grammar ---- */

static void test_char_table(void)
{
    const char *tchar = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const char *uri = "-._~:/?[]@!$&'()*+,;=%0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const char *hex = "0123456789abcdefABCDEF";
    const char *host = "-._~!$&'()*+,;=%:[]0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    int c;
    for (c = 1; c < 256; c++) {
        int value = (c >= 0x21 && c <= 0x7e) || c >= 0x80 || c == ' ' || c == '\t';
        CHECK(chi_is((unsigned char)c, CHI_TOKEN) == (strchr(tchar, c) != NULL));
        CHECK(chi_is((unsigned char)c, CHI_URI) == (strchr(uri, c) != NULL));
        CHECK(chi_is((unsigned char)c, CHI_HEX) == (strchr(hex, c) != NULL));
        CHECK(chi_is((unsigned char)c, CHI_HOST) == (strchr(host, c) != NULL));
        CHECK(chi_is((unsigned char)c, CHI_VALUE) == value);
    }
    CHECK(chi_cclass[0] == 0);
}

static void test_prebuilt_errors(void)
{
    size_t i;
    for (i = 0; i < sizeof chi_errors / sizeof chi_errors[0]; i++) {
        const chi_prebuilt *e = &chi_errors[i];
        char want[64], line[64];
        size_t n = chi_status_line(e->status, line);
        snprintf(want, sizeof want, "Content-Length: %u\r\n", (unsigned)strlen(e->body));
        CHECK(strstr(e->head, want) != NULL);
        CHECK(strncmp(e->head, line, n) == 0);
        CHECK(strncmp(e->body, "{\"detail\":\"", 11) == 0);
    }
}

/* ---- parser ---- */

static const chi_limits lim = {16 * 1024, 8 * 1024, 8 * 1024 * 1024};

/* Parses `raw` whole and at every prefix: each prefix must say "need more"
   (or already the same error), and the whole must give `want` (a head
   length > 0, or -status). Returns the parse of the whole. */
static long parse_all_splits(const char *raw, size_t len, ch_req *req, chi_head *h, long want)
{
    size_t cut;
    long r;
    for (cut = 0; cut < len; cut++) {
        char *copy = (char *)malloc(cut ? cut : 1); /* exact size: ASan catches over-reads */
        memcpy(copy, raw, cut);
        r = chi_parse_head(copy, cut, &lim, req, h);
        free(copy);
        if (want > 0 && (size_t)want <= cut) break;
        if (!(r == 0 || (want < 0 && r == want))) {
            printf("  split at %u of %u gave %ld\n", (unsigned)cut, (unsigned)len, r);
            CHECK(r == 0 || (want < 0 && r == want));
            break;
        }
    }
    r = chi_parse_head(raw, len, &lim, req, h);
    return r;
}

static void test_parse_simple_get(void)
{
    const char *raw = "GET /users/7?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nX-Empty:\r\nX-Pad:  a b  \r\n\r\n";
    ch_req req;
    chi_head h;
    long r = parse_all_splits(raw, strlen(raw), &req, &h, (long)strlen(raw));
    CHECK(r == (long)strlen(raw));
    CHECK(req.method == CH_GET);
    CHECK(ch_str_eq(req.method_name, "GET"));
    CHECK(ch_str_eq(req.target, "/users/7?x=1&y=2"));
    CHECK(ch_str_eq(req.path, "/users/7"));
    CHECK(ch_str_eq(req.query, "x=1&y=2"));
    CHECK(req.version_minor == 1);
    CHECK(req.header_count == 4);
    CHECK(ch_str_eq(ch_req_header(&req, "host"), "example.com"));
    CHECK(ch_str_eq(ch_req_header(&req, "USER-AGENT"), "t"));
    CHECK(ch_str_eq(ch_req_header(&req, "x-empty"), ""));
    CHECK(ch_str_eq(ch_req_header(&req, "x-pad"), "a b"));
    CHECK(ch_req_header(&req, "missing").ptr == NULL);
    CHECK(h.body_kind == CHI_BODY_NONE && h.keep_alive == 1 && h.expect_continue == 0);
}

static void test_parse_framing(void)
{
    ch_req req;
    chi_head h;
    const char *a = "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    const char *b = "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n";
    const char *c = "GET / HTTP/1.0\r\n\r\n";
    const char *d = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    const char *e = "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, close\r\n\r\n";
    const char *f = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\nExpect: 100-Continue\r\n\r\n";
    const char *g = "\r\n\r\nGET / HTTP/1.2\r\nHost: h\r\nContent-Length: 7, 7\r\n\r\n";
    long r = parse_all_splits(a, strlen(a), &req, &h, (long)strlen(a) - 5);
    CHECK(r == (long)strlen(a) - 5 && h.body_kind == CHI_BODY_LENGTH && h.content_length == 5);
    r = parse_all_splits(b, strlen(b), &req, &h, (long)strlen(b));
    CHECK(r > 0 && h.body_kind == CHI_BODY_CHUNKED);
    r = parse_all_splits(c, strlen(c), &req, &h, (long)strlen(c));
    CHECK(r > 0 && req.version_minor == 0 && h.keep_alive == 0);
    r = parse_all_splits(d, strlen(d), &req, &h, (long)strlen(d));
    CHECK(r > 0 && h.keep_alive == 1);
    r = parse_all_splits(e, strlen(e), &req, &h, (long)strlen(e));
    CHECK(r > 0 && h.keep_alive == 0);
    r = parse_all_splits(f, strlen(f), &req, &h, (long)strlen(f));
    CHECK(r > 0 && h.content_length == 5 && h.expect_continue == 1);
    r = parse_all_splits(g, strlen(g), &req, &h, (long)strlen(g));
    CHECK(r == (long)strlen(g) && req.version_minor == 1 && h.content_length == 7);
}

static void test_parse_targets(void)
{
    ch_req req;
    chi_head h;
    const char *a = "GET http://example.com:8080/a/b?q HTTP/1.1\r\nHost: x\r\n\r\n";
    const char *b = "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n";
    const char *c = "GET HTTP://example.com HTTP/1.1\r\nHost: x\r\n\r\n";
    const char *d = "GET /a%20b HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(parse_all_splits(a, strlen(a), &req, &h, (long)strlen(a)) > 0);
    CHECK(ch_str_eq(req.path, "/a/b") && ch_str_eq(req.query, "q"));
    CHECK(parse_all_splits(b, strlen(b), &req, &h, (long)strlen(b)) > 0);
    CHECK(ch_str_eq(req.path, "*") && req.method == CH_OPTIONS);
    CHECK(parse_all_splits(c, strlen(c), &req, &h, (long)strlen(c)) > 0);
    CHECK(ch_str_eq(req.path, "/"));
    CHECK(parse_all_splits(d, strlen(d), &req, &h, (long)strlen(d)) > 0);
    CHECK(ch_str_eq(req.path, "/a%20b"));
}

typedef struct bad_case {
    const char *raw;
    long status;
} bad_case;

static void test_parse_rejects(void)
{
    static const bad_case bad[] = {
        {"GET /\r\n\r\n", -400},
        {"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", -400},
        {"GET / http/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET / HTTP/1.10\r\nHost: h\r\n\r\n", -400},
        {"GET / HTTP/1\r\nHost: h\r\n\r\n", -400},
        {"GET / HTTP/2.0\r\nHost: h\r\n\r\n", -505},
        {"GET / HTTP/0.9\r\nHost: h\r\n\r\n", -505},
        {"\x01\x02\x03\r\n\r\n", -400},
        {"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /a\x80 HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /%4 HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET * HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET / HTTP/1.1\nHost: h\n\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHo st: h\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost : h\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\n: h\r\nHost: h\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nX\x7f: 1\r\nHost: h\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  folded\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\n Host: h\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", -400},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9000000\r\n\r\n", -413},
        {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", -413},
        {"GET / HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n", -417},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMNOP / HTTP/1.1\r\nHost: h\r\n\r\n", -501},
    };
    size_t i;
    ch_req req;
    chi_head h;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = strlen(bad[i].raw);
        long r;
        r = parse_all_splits(bad[i].raw, len, &req, &h, bad[i].status);
        if (r != bad[i].status) {
            printf("  case %u: got %ld, want %ld\n", (unsigned)i, r, bad[i].status);
            CHECK(r == bad[i].status);
        }
    }
}

static void test_parse_nul(void)
{
    static const char raw[] = "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n";
    static const char raw2[] = "GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n";
    ch_req req;
    chi_head h;
    CHECK(parse_all_splits(raw, sizeof raw - 1, &req, &h, -400) == -400);
    CHECK(parse_all_splits(raw2, sizeof raw2 - 1, &req, &h, -400) == -400);
}

static void test_parse_limits(void)
{
    ch_req req;
    chi_head h;
    char *big = (char *)malloc(40000);
    size_t n;
    int i;
    /* a 10 KiB target: 414, even before the line is complete */
    n = (size_t)sprintf(big, "GET /");
    memset(big + n, 'a', 10 * 1024);
    n += 10 * 1024;
    CHECK(chi_parse_head(big, n, &lim, &req, &h) == -414);
    n += (size_t)sprintf(big + n, " HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(chi_parse_head(big, n, &lim, &req, &h) == -414);
    /* a 20 KiB header block: 431 */
    n = (size_t)sprintf(big, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (i = 0; i < 20; i++) {
        n += (size_t)sprintf(big + n, "X-%d: ", i);
        memset(big + n, 'v', 1024);
        n += 1024;
        n += (size_t)sprintf(big + n, "\r\n");
    }
    CHECK(chi_parse_head(big, n, &lim, &req, &h) == -431);
    n += (size_t)sprintf(big + n, "\r\n");
    CHECK(chi_parse_head(big, n, &lim, &req, &h) == -431);
    /* more header lines than CHOPIN_MAX_HEADERS: 431 */
    n = (size_t)sprintf(big, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (i = 0; i < CHOPIN_MAX_HEADERS + 1; i++) n += (size_t)sprintf(big + n, "X-%d: 1\r\n", i);
    n += (size_t)sprintf(big + n, "\r\n");
    CHECK(chi_parse_head(big, n, &lim, &req, &h) == -431);
    free(big);
}

static void test_parse_methods(void)
{
    static const char *names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"};
    int m;
    for (m = 0; m < CH_METHOD_COUNT; m++) CHECK(chi_method_of(names[m], strlen(names[m])) == (ch_method)m);
    CHECK(chi_method_of("get", 3) == CH_OTHER);
    CHECK(chi_method_of("PROPFIND", 8) == CH_OTHER);
}

/* ---- chunked decoder ---- */

/* Decodes `enc` fed one more byte at a time (as a dribbling client would
   send it) and checks the result. The buffer is a copy, decoded in place. */
static int decode_dribbled(const char *enc, size_t len, char *out, size_t *out_len, size_t *consumed)
{
    char *buf = (char *)malloc(len + 1);
    chi_chunked ck;
    size_t have;
    int r = 0;
    memcpy(buf, enc, len);
    chi_chunked_init(&ck, 0);
    for (have = 1; have <= len; have++) {
        r = chi_chunked_decode(&ck, buf, have, 1 << 20, 1024);
        if (r != 0) break;
    }
    if (r == 1) {
        memcpy(out, buf, ck.dst);
        *out_len = ck.dst;
        *consumed = ck.src;
    }
    free(buf);
    return r;
}

static void test_chunked_valid(void)
{
    char out[256];
    size_t n, used;
    const char *a = "5\r\nhello\r\n7;ext=1;q=\"x y\"\r\n, world\r\n0\r\nTrailer-A: 1\r\nB: two\r\n\r\nNEXT";
    const char *b = "0\r\n\r\n";
    const char *c = "A \t;e\r\n0123456789\r\n00000\r\n\r\n";
    CHECK(decode_dribbled(a, strlen(a), out, &n, &used) == 1);
    CHECK(n == 12 && memcmp(out, "hello, world", 12) == 0);
    CHECK(used == strlen(a) - 4);
    CHECK(decode_dribbled(b, strlen(b), out, &n, &used) == 1 && n == 0 && used == 5);
    CHECK(decode_dribbled(c, strlen(c), out, &n, &used) == 1 && n == 10 && memcmp(out, "0123456789", 10) == 0);
}

static void test_chunked_invalid(void)
{
    static const bad_case bad[] = {
        {"zz\r\nhello\r\n0\r\n\r\n", -400},
        {"\r\n", -400},
        {"-5\r\nhello\r\n0\r\n\r\n", -400},
        {"5\r\nhelloXX0\r\n\r\n", -400},
        {"5\nhello\r\n0\r\n\r\n", -400},
        {"5\r\nhello\r\n0\r\n\r\r", -400},
        {"5;a\x01\r\nhello\r\n0\r\n\r\n", -400},
        {"5 x\r\nhello\r\n0\r\n\r\n", -400},
        {"0\r\nBad Trailer: 1\r\n\r\n", -400},
        {"0\r\n folded: 1\r\n\r\n", -400},
        {"ffffffffffffffffffff\r\n", -400},
        {"200000\r\n", -413},
    };
    size_t i, n, used;
    char out[64];
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r = decode_dribbled(bad[i].raw, strlen(bad[i].raw), out, &n, &used);
        if (r != bad[i].status) {
            printf("  chunked case %u: got %d, want %ld\n", (unsigned)i, r, bad[i].status);
            CHECK(r == bad[i].status);
        }
    }
}

/* ---- JSON writer ---- */

static int json_is(ch_json *j, const char *want)
{
    int ok = !j->failed && j->len == strlen(want) && memcmp(j->buf, want, j->len) == 0;
    if (!ok) printf("  got %.*s\n  want %s\n", (int)j->len, j->buf ? j->buf : "", want);
    return ok;
}

static void test_json_structure(void)
{
    ch_json j;
    ch_json_init(&j);
    ch_json_object_begin(&j);
    ch_json_key(&j, "a");
    ch_json_int(&j, -12);
    ch_json_key(&j, "b");
    ch_json_array_begin(&j);
    ch_json_bool(&j, 1);
    ch_json_bool(&j, 0);
    ch_json_null(&j);
    ch_json_object_begin(&j);
    ch_json_object_end(&j);
    ch_json_array_begin(&j);
    ch_json_array_end(&j);
    ch_json_uint(&j, 18446744073709551615ULL);
    ch_json_array_end(&j);
    ch_json_key(&j, "c");
    ch_json_str(&j, "x");
    ch_json_object_end(&j);
    CHECK(json_is(&j, "{\"a\":-12,\"b\":[true,false,null,{},[],18446744073709551615],\"c\":\"x\"}"));
    /* misuse is reported, not written */
    ch_json_reset(&j);
    ch_json_object_end(&j);
    CHECK(j.failed);
    ch_json_reset(&j);
    ch_json_array_begin(&j);
    ch_json_key(&j, "k");
    CHECK(j.failed);
    ch_json_reset(&j);
    ch_json_object_begin(&j);
    ch_json_int(&j, 1); /* a value without its key */
    CHECK(j.failed);
    ch_json_reset(&j);
    ch_json_array_begin(&j);
    ch_json_object_end(&j); /* the wrong closer */
    CHECK(j.failed);
    ch_json_free(&j);
}

static void test_json_escaping(void)
{
    ch_json j;
    const char raw[] = "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f";
    ch_json_init(&j);
    ch_json_strn(&j, raw, sizeof raw - 1);
    CHECK(json_is(&j, "\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\""));
    ch_json_reset(&j);
    ch_json_strn(&j, "a\0b", 3);
    CHECK(json_is(&j, "\"a\\u0000b\""));
    ch_json_reset(&j);
    ch_json_str(&j, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\xb9"); /* é € 🎹 pass through */
    CHECK(json_is(&j, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\xb9\""));
    ch_json_reset(&j);
    ch_json_str(&j, "\xff\xc3(\xed\xa0\x80\xc0\xaf"); /* invalid: each bad byte becomes U+FFFD */
    CHECK(json_is(&j, "\"\\ufffd\\ufffd(\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\""));
    ch_json_free(&j);
}

static void test_json_numbers(void)
{
    ch_json j;
    unsigned seed = 99;
    int i;
    ch_json_init(&j);
    ch_json_double(&j, 0.1);
    CHECK(json_is(&j, "0.1"));
    ch_json_reset(&j);
    ch_json_double(&j, 1.0 / 3.0);
    CHECK(json_is(&j, "0.3333333333333333")); /* 16 digits read back exactly */
    ch_json_reset(&j);
    ch_json_double(&j, NAN);
    CHECK(json_is(&j, "null"));
    ch_json_reset(&j);
    ch_json_double(&j, -HUGE_VAL);
    CHECK(json_is(&j, "null"));
    ch_json_reset(&j);
    ch_json_int(&j, 0);
    CHECK(json_is(&j, "0"));
    /* random bit patterns read back exactly */
    for (i = 0; i < 5000; i++) {
        uint64_t bits = 0;
        double v;
        int k;
        for (k = 0; k < 4; k++) {
            seed = seed * 1103515245u + 12345u;
            bits = (bits << 16) | (seed >> 16);
        }
        memcpy(&v, &bits, sizeof v);
        if (v != v || isinf(v)) continue;
        ch_json_reset(&j);
        ch_json_double(&j, v);
        chi_json_raw(&j, "", 1);
        if (strtod(j.buf, NULL) != v) {
            CHECK(strtod(j.buf, NULL) == v);
            break;
        }
    }
    ch_json_free(&j);
}

/* ---- router ---- */

static void h_any(ch_req *req, ch_res *res)
{
    (void)req;
    (void)res;
}
static void h_other(ch_req *req, ch_res *res)
{
    (void)req;
    (void)res;
}

static chi_node *match(ch_app *app, const char *path, ch_req *req)
{
    req->param_count = 0;
    return chi_node_match(app->root, path + 1, path + strlen(path), req);
}

static void test_router_match(void)
{
    ch_app *app = ch_app_new();
    ch_req req;
    chi_node *n;
    CHECK(ch_get(app, "/", h_any, NULL) == 0);
    CHECK(ch_get(app, "/users/me", h_other, NULL) == 0);
    CHECK(ch_get(app, "/users/:id", h_any, NULL) == 0);
    CHECK(ch_put(app, "/users/:id", h_any, NULL) == 0);
    CHECK(ch_get(app, "/users/:id/posts/:post", h_any, NULL) == 0);
    CHECK(ch_get(app, "/files/*path", h_any, NULL) == 0);
    CHECK(ch_get(app, "/a/b/c", h_any, NULL) == 0);
    CHECK(ch_get(app, "/a/:x/d", h_other, NULL) == 0);

    n = match(app, "/", &req);
    CHECK(n && n->routes[CH_GET].handler == h_any);
    n = match(app, "/users/me", &req);
    CHECK(n && n->routes[CH_GET].handler == h_other && req.param_count == 0);
    n = match(app, "/users/42", &req);
    CHECK(n && n->routes[CH_GET].handler == h_any && ch_str_eq(ch_req_param(&req, "id"), "42"));
    CHECK(n && (n->methods == ((1u << CH_GET) | (1u << CH_PUT))));
    n = match(app, "/users/7/posts/9", &req);
    CHECK(n && ch_str_eq(ch_req_param(&req, "id"), "7") && ch_str_eq(ch_req_param(&req, "post"), "9"));
    n = match(app, "/files/a/b.txt", &req);
    CHECK(n && ch_str_eq(ch_req_param(&req, "path"), "a/b.txt"));
    /* static beats parameter, and a dead end backs up to the parameter */
    n = match(app, "/a/b/d", &req);
    CHECK(n && n->routes[CH_GET].handler == h_other && ch_str_eq(ch_req_param(&req, "x"), "b"));
    CHECK(match(app, "/users", &req) == NULL);
    CHECK(match(app, "/users/", &req) == NULL); /* a parameter is never empty */
    CHECK(match(app, "/nope", &req) == NULL);
    CHECK(match(app, "/users/7/posts", &req) == NULL);
    ch_app_free(app);
}

static void test_router_errors(void)
{
    ch_app *app = ch_app_new();
    CHECK(ch_get(app, "/x/:id", h_any, NULL) == 0);
    CHECK(ch_get(app, "/x/:id", h_any, NULL) == -1);
    CHECK(strstr(ch_error(app), "twice") != NULL);
    CHECK(ch_get(app, "/x/:name/y", h_any, NULL) == -1);
    CHECK(ch_get(app, "no-slash", h_any, NULL) == -1);
    CHECK(ch_get(app, "/w/*rest/more", h_any, NULL) == -1);
    CHECK(ch_get(app, "/p/:", h_any, NULL) == -1);
    CHECK(ch_fast_text(app, "/plain", "x") == 0);
    CHECK(ch_fast_text(app, "/plain", "x") == -1);
    CHECK(ch_get(app, "/plain", h_any, NULL) == -1);
    CHECK(ch_post(app, "/plain", h_any, NULL) == 0);
    CHECK(ch_fast_text(app, "/q?x", "x") == -1);
    /* the first error is kept, and ch_listen reports it */
    CHECK(strstr(ch_error(app), "/x/:id") != NULL);
    CHECK(ch_listen(app, NULL) == -1);
    ch_app_free(app);
}

static void test_allow_list(void)
{
    char out[96];
    size_t n = chi_allow_list((1u << CH_GET) | (1u << CH_DELETE), out);
    CHECK(n == strlen("GET, HEAD, DELETE, OPTIONS") && memcmp(out, "GET, HEAD, DELETE, OPTIONS", n) == 0);
    n = chi_allow_list(1u << CH_POST, out);
    CHECK(n == strlen("POST, OPTIONS") && memcmp(out, "POST, OPTIONS", n) == 0);
}

/* ---- configuration from the environment ---- */

static const char *listen_error_with(const char *var, const char *value)
{
    static char msg[256];
    ch_app *app = ch_app_new();
    ch_config cfg;
    memset(&cfg, 0, sizeof cfg);
    setenv(var, value, 1);
    msg[0] = 0;
    if (ch_listen(app, &cfg) != 0) snprintf(msg, sizeof msg, "%s", ch_error(app));
    unsetenv(var);
    ch_app_free(app);
    return msg;
}

static void test_config_env(void)
{
    ch_app *app;
    ch_config cfg;
    const ch_config *used;
    CHECK(strstr(listen_error_with("PORT", "abc"), "invalid PORT 'abc'") != NULL);
    CHECK(strstr(listen_error_with("PORT", "70000"), "invalid PORT") != NULL);
    CHECK(strstr(listen_error_with("PORT", ""), "invalid PORT") != NULL);
    CHECK(strstr(listen_error_with("SERVER_MODE", "fast"), "invalid SERVER_MODE 'fast'") != NULL);
    CHECK(strstr(listen_error_with("CHOPIN_WORKERS", "0"), "invalid CHOPIN_WORKERS") != NULL);
    CHECK(strstr(listen_error_with("CHOPIN_WORKERS", "two"), "invalid CHOPIN_WORKERS") != NULL);
    CHECK(strstr(listen_error_with("REUSEPORT", "maybe"), "invalid REUSEPORT") != NULL);
    CHECK(strstr(listen_error_with("HOST", "no.such.host.invalid"), "cannot listen on") != NULL);
    setenv("SERVER_MODE", "standard", 1);
    CHECK(strstr(listen_error_with("CHOPIN_WORKERS", "4"), "standard mode") != NULL);
    unsetenv("SERVER_MODE");

    /* a good environment: PORT=0 picks a free port, reported back */
    setenv("PORT", "0", 1);
    setenv("HOST", "127.0.0.1", 1);
    setenv("CHOPIN_WORKERS", "3", 1);
    setenv("REUSEPORT", "false", 1);
    app = ch_app_new();
    memset(&cfg, 0, sizeof cfg);
    CHECK(ch_listen(app, &cfg) == 0);
    used = ch_config_used(app);
    CHECK(used && used->port > 0 && used->workers == 3 && used->reuseport == CH_NO && used->mode == CH_MODE_PERFORMANCE);
    CHECK(used && strcmp(used->host, "127.0.0.1") == 0 && used->max_body_size == 8 * 1024 * 1024);
    ch_app_free(app);
    /* ignore_env leaves the struct alone */
    app = ch_app_new();
    cfg.ignore_env = 1;
    cfg.port = CH_PORT_ANY;
    cfg.mode = CH_MODE_STANDARD;
    CHECK(ch_listen(app, &cfg) == 0);
    used = ch_config_used(app);
    CHECK(used && used->workers == 1 && used->reuseport == CH_NO && strcmp(used->host, "0.0.0.0") == 0);
    ch_app_free(app);
    unsetenv("PORT");
    unsetenv("HOST");
    unsetenv("CHOPIN_WORKERS");
    unsetenv("REUSEPORT");
}

static void test_port_in_use(void)
{
    ch_app *a = ch_app_new(), *b = ch_app_new();
    ch_config cfg;
    char port[16];
    memset(&cfg, 0, sizeof cfg);
    cfg.ignore_env = 1;
    cfg.host = "127.0.0.1";
    cfg.port = CH_PORT_ANY;
    cfg.workers = 2;
    CHECK(ch_listen(a, &cfg) == 0);
    cfg.port = ch_config_used(a)->port;
    snprintf(port, sizeof port, "%d", cfg.port);
    /* SO_REUSEPORT must not let a second server join the first */
    CHECK(ch_listen(b, &cfg) == -1);
    CHECK(strstr(ch_error(b), "in use") != NULL);
    ch_app_free(a);
    ch_app_free(b);
}

int main(void)
{
    run("itoa", test_itoa);
    run("date: IMF-fixdate", test_date);
    run("character table matches the RFC grammar", test_char_table);
    run("pre-built error responses", test_prebuilt_errors);
    run("parser: a GET with query and headers", test_parse_simple_get);
    run("parser: framing and keep-alive", test_parse_framing);
    run("parser: target forms", test_parse_targets);
    run("parser: every rejection", test_parse_rejects);
    run("parser: NUL bytes", test_parse_nul);
    run("parser: size limits (414, 431)", test_parse_limits);
    run("parser: method names", test_parse_methods);
    run("chunked: valid bodies, byte by byte", test_chunked_valid);
    run("chunked: invalid bodies", test_chunked_invalid);
    run("json: structure and commas", test_json_structure);
    run("json: string escaping", test_json_escaping);
    run("json: numbers round-trip", test_json_numbers);
    run("router: matching and precedence", test_router_match);
    run("router: registration errors", test_router_errors);
    run("router: Allow list", test_allow_list);
    run("config: environment", test_config_env);
    run("config: port in use", test_port_in_use);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
