/* files_unit.c - unit tests for the files sections of chopin.h: the MIME
   table, the path guards (chi_dot_segment, chi_path_clean), validators,
   preconditions, Range, Accept-Encoding, the multipart parser (every input
   also fed split at every byte offset, and one byte at a time), the
   urlencoded helper, and opening beneath a root (a temporary tree with
   symlinks that escape). Built twice by mk/files.mk: once as is and once
   with CHOPIN_NO_OPENAT2 (the per-segment walk). Last line: "N passed,
   N failed". */
#define CHOPIN_IMPLEMENTATION
#include "../chopin.h"

#include <sys/stat.h>

#include "check.h"

static ch_str S(const char *s) { return chi_str(s, s ? strlen(s) : 0); }

static void test_mime(void)
{
    size_t i;
    CHECK(strcmp(ch_mime_type("index.html"), "text/html; charset=utf-8") == 0);
    CHECK(strcmp(ch_mime_type("a/b/APP.JS"), "text/javascript; charset=utf-8") == 0);
    CHECK(strcmp(ch_mime_type("css"), "text/css; charset=utf-8") == 0);
    CHECK(strcmp(ch_mime_type(".png"), "image/png") == 0);
    CHECK(strcmp(ch_mime_type("x.woff2"), "font/woff2") == 0);
    CHECK(strcmp(ch_mime_type("x.wasm"), "application/wasm") == 0);
    CHECK(strcmp(ch_mime_type("x.svg"), "image/svg+xml") == 0);
    CHECK(strcmp(ch_mime_type("Makefile"), "application/octet-stream") == 0);
    CHECK(strcmp(ch_mime_type("dir.d/noext"), "application/octet-stream") == 0);
    CHECK(strcmp(ch_mime_type("x.unknownext"), "application/octet-stream") == 0);
    CHECK(strcmp(ch_mime_type("x."), "application/octet-stream") == 0);
    CHECK(strcmp(ch_mime_type(""), "application/octet-stream") == 0);
    CHECK(strcmp(ch_mime_type(NULL), "application/octet-stream") == 0);
    /* the table is sorted, or binary search misses entries */
    for (i = 1; i < sizeof chi_mime_table / sizeof chi_mime_table[0]; i++)
        CHECK(strcmp(chi_mime_table[i - 1].ext, chi_mime_table[i].ext) < 0);
    for (i = 0; i < sizeof chi_mime_table / sizeof chi_mime_table[0]; i++)
        CHECK(strcmp(ch_mime_type(chi_mime_table[i].ext), chi_mime_table[i].type) == 0);
}

static void test_mime_override(void)
{
    ch_app *app = ch_app_new();
    CHECK(ch_mime_set(app, "txt", "text/x-custom") == 0);
    CHECK(ch_mime_set(app, ".abc", "application/x-abc") == 0);
    CHECK(strcmp(chi_app_mime(app, "a.TXT"), "text/x-custom") == 0);
    CHECK(strcmp(chi_app_mime(app, "a.abc"), "application/x-abc") == 0);
    CHECK(strcmp(chi_app_mime(app, "a.css"), "text/css; charset=utf-8") == 0);
    CHECK(strcmp(ch_mime_type("a.txt"), "text/plain; charset=utf-8") == 0); /* the table is untouched */
    ch_app_free(app);
}

static void test_dot_segment(void)
{
    static const char *yes[] = {".", "..", "a/..", "../a", "a/./b", "%2e", "%2E%2e", ".%2e/x", "a%2f..", "a%2F%2e%2e",
                                "..\\x", "a\\..", "%5c..", "..%5c", "x/%2e/y", "a/.."};
    static const char *no[] = {"", "a", "...", ".a", "a.", "..a", "a..b", "%2e%2e%2e", "%2ex", "a/b.c/d", "%", "%2",
                               "%zz", "a//b", "....//"};
    size_t i;
    for (i = 0; i < sizeof yes / sizeof yes[0]; i++) CHECK(chi_dot_segment(yes[i], strlen(yes[i])) == 1);
    for (i = 0; i < sizeof no / sizeof no[0]; i++) CHECK(chi_dot_segment(no[i], strlen(no[i])) == 0);
}

static void dummy_handler(ch_req *req, ch_res *res)
{
    (void)req;
    (void)res;
}

static void test_router_dot_segments(void)
{
    ch_app *app = ch_app_new();
    static chi_req_store st;
    ch_req req;
    static const char *refused[] = {"files/..", "files/../etc", "files/%2e%2e/etc", "files/a/%2E%2E", "files/a/./b",
                                    "files/..%2fetc", "files/..%5cetc", "u/..", "u/%2e%2e", "u/."};
    static const char *ok[] = {"files/a/b.txt", "files/.well-known", "files/a...", "u/7", "u/v1.2"};
    size_t i;
    ch_get(app, "/files/*rest", dummy_handler, NULL);
    ch_get(app, "/u/:id", dummy_handler, NULL);
    for (i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        chi_req_bind(&req, &st);
        CHECK(chi_node_match(app->root, refused[i], refused[i] + strlen(refused[i]), &req) == NULL);
    }
    for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        chi_req_bind(&req, &st);
        CHECK(chi_node_match(app->root, ok[i], ok[i] + strlen(ok[i]), &req) != NULL);
    }
    ch_app_free(app);
}

static void clean_is(const char *in, int dot, long want, const char *out)
{
    char buf[64];
    long r = chi_path_clean(in, strlen(in), buf, sizeof buf, dot);
    CHECK(r == want);
    if (r >= 0 && out) CHECK(strcmp(buf, out) == 0);
    if (r != want || (r >= 0 && out && strcmp(buf, out) != 0)) printf("  path %s -> %ld\n", in, r);
}

static void test_path_clean(void)
{
    clean_is("", 0, 0, "");
    clean_is("a/b.txt", 0, 7, "a/b.txt");
    clean_is("/a//b/", 0, 3, "a/b");
    clean_is("./a/./b", 0, 3, "a/b");
    clean_is("a%20b", 0, 3, "a b");
    clean_is("%C3%A9t%C3%A9", 0, 5, "\xc3\xa9t\xc3\xa9");
    clean_is("..", 0, -400, NULL);
    clean_is("a/../b", 0, -400, NULL);
    clean_is("%2e%2e/x", 0, -400, NULL);
    clean_is("a/%2E%2e", 0, -400, NULL);
    clean_is("a%2fb", 0, -400, NULL);
    clean_is("a%2Fb", 0, -400, NULL);
    clean_is("a%00b", 0, -400, NULL);
    clean_is("a\\b", 0, -400, NULL);
    clean_is("a%5cb", 0, -400, NULL);
    clean_is("a%0ab", 0, -400, NULL);
    clean_is("a%7fb", 0, -400, NULL);
    clean_is("a%zz", 0, -400, NULL);
    clean_is("a%2", 0, -400, NULL);
    clean_is("%", 0, -400, NULL);
    clean_is(".env", 0, -404, NULL);
    clean_is("a/.git/config", 0, -404, NULL);
    clean_is(".env", 1, 4, ".env");
    clean_is("...", 0, -404, NULL);
    clean_is("a/b..c", 0, 6, "a/b..c");
    {
        char big[200], out[16];
        memset(big, 'a', sizeof big);
        CHECK(chi_path_clean(big, sizeof big, out, sizeof out, 0) == -400); /* too long: refused, no overflow */
    }
}

static void test_etag_and_dates(void)
{
    char e[CHI_ETAG_MAX], d[CHI_DATE_LEN];
    size_t n = chi_etag_format(0x1a, 0, 0x10, e);
    int64_t t, i;
    CHECK(n == 9 && memcmp(e, "\"1a-0-10\"", 9) == 0);
    n = chi_etag_format(UINT64_MAX, UINT64_MAX, INT64_MAX, e);
    CHECK(n < CHI_ETAG_MAX && e[0] == '"' && e[n - 1] == '"');
    CHECK(chi_http_date("Sun, 06 Nov 1994 08:49:37 GMT", 29, &t) == 0 && t == 784111777);
    /* the two obsolete forms a recipient must accept too (RFC 9110 5.6.7) */
    CHECK(chi_http_date("Sunday, 06-Nov-94 08:49:37 GMT", 30, &t) == 0 && t == 784111777);
    CHECK(chi_http_date("Wednesday, 06-Nov-24 08:49:37 GMT", 33, &t) == 0 && t == 1730882977);
    CHECK(chi_http_date("Sun Nov  6 08:49:37 1994", 24, &t) == 0 && t == 784111777);
    CHECK(chi_http_date("Sun Nov 16 08:49:37 1994", 24, &t) == 0 && t == 784111777 + 10 * 86400);
    CHECK(chi_http_date("Sun Nov  0 08:49:37 1994", 24, &t) == -1);
    CHECK(chi_http_date("Sun Nov 6  08:49:37 1994", 24, &t) == -1);
    CHECK(chi_http_date("Sunday, 06-Nov-94 08:49:37 UTC", 30, &t) == -1);
    CHECK(chi_http_date("Sunday, 06 Nov 94 08:49:37 GMT", 30, &t) == -1);
    CHECK(chi_http_date("Sunday, 06-Nov-94 08:49:37 GMT ", 31, &t) == -1);
    CHECK(chi_http_date("Sun, 06 Nov 1994 08:49:37 GMT", 28, &t) == -1);
    CHECK(chi_http_date("Sun, 06 Nov 1994 25:49:37 GMT", 29, &t) == -1);
    CHECK(chi_http_date("Sun, 06-Nov-1994 08:49:37 GMT", 29, &t) == -1);
    CHECK(chi_http_date(",", 1, &t) == -1 && chi_http_date("", 0, &t) == -1);
    CHECK(chi_http_date("Sun, 06 Xyz 1994 08:49:37 GMT", 29, &t) == -1);
    CHECK(chi_http_date("Sun, 0a Nov 1994 08:49:37 GMT", 29, &t) == -1);
    for (i = -86400 * 3; i < (int64_t)4102444800LL; i += 86400 * 37 + 3671) { /* round trip */
        chi_format_date(i, d);
        CHECK(chi_http_date(d, CHI_DATE_LEN, &t) == 0 && t == i);
    }
}

static void test_etag_match(void)
{
    const char *e = "\"abc\"";
    CHECK(chi_etag_match(S("\"abc\""), e, 5, 1));
    CHECK(chi_etag_match(S("W/\"abc\""), e, 5, 1));
    CHECK(!chi_etag_match(S("W/\"abc\""), e, 5, 0));
    CHECK(chi_etag_match(S("\"x\", \"abc\""), e, 5, 1));
    CHECK(chi_etag_match(S("*"), e, 5, 0));
    CHECK(!chi_etag_match(S("\"abcd\""), e, 5, 1));
    CHECK(!chi_etag_match(S("abc"), e, 5, 1));
    CHECK(!chi_etag_match(S("\"ab"), e, 5, 1));
    CHECK(!chi_etag_match(S(""), e, 5, 1));
}

static void test_preconditions(void)
{
    const char *e = "\"v1\"";
    ch_str none = chi_str(NULL, 0);
    int64_t mt = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
    ch_str same = S("Sun, 06 Nov 1994 08:49:37 GMT"), later = S("Mon, 07 Nov 1994 08:49:37 GMT"),
           earlier = S("Sat, 05 Nov 1994 08:49:37 GMT"), bad = S("yesterday");
    CHECK(chi_preconditions(none, none, none, none, e, 4, mt, 1) == 0);
    CHECK(chi_preconditions(none, none, S("\"v1\""), none, e, 4, mt, 1) == 304);
    CHECK(chi_preconditions(none, none, S("\"v0\""), none, e, 4, mt, 1) == 0);
    CHECK(chi_preconditions(none, none, none, same, e, 4, mt, 1) == 304);
    CHECK(chi_preconditions(none, none, none, later, e, 4, mt, 1) == 304);
    CHECK(chi_preconditions(none, none, none, earlier, e, 4, mt, 1) == 0);
    CHECK(chi_preconditions(none, none, none, bad, e, 4, mt, 1) == 0);
    /* If-None-Match wins over If-Modified-Since, both ways */
    CHECK(chi_preconditions(none, none, S("\"v0\""), later, e, 4, mt, 1) == 0);
    CHECK(chi_preconditions(none, none, S("\"v1\""), earlier, e, 4, mt, 1) == 304);
    /* If-Match, If-Unmodified-Since: 412 first */
    CHECK(chi_preconditions(S("\"v0\""), none, S("\"v1\""), none, e, 4, mt, 1) == 412);
    CHECK(chi_preconditions(S("\"v1\""), none, none, none, e, 4, mt, 1) == 0);
    CHECK(chi_preconditions(S("W/\"v1\""), none, none, none, e, 4, mt, 1) == 412);
    CHECK(chi_preconditions(none, earlier, none, none, e, 4, mt, 1) == 412);
    CHECK(chi_preconditions(none, same, none, none, e, 4, mt, 1) == 0);
    CHECK(chi_preconditions(S("\"v1\""), earlier, none, none, e, 4, mt, 1) == 0); /* If-Match wins */
    /* another method than GET/HEAD: a matching If-None-Match is 412,
       If-Modified-Since is ignored (RFC 9110 13.1.2, 13.1.3) */
    CHECK(chi_preconditions(none, none, S("\"v1\""), none, e, 4, mt, 0) == 412);
    CHECK(chi_preconditions(none, none, S("*"), none, e, 4, mt, 0) == 412);
    CHECK(chi_preconditions(none, none, S("\"v0\""), none, e, 4, mt, 0) == 0);
    CHECK(chi_preconditions(none, none, none, later, e, 4, mt, 0) == 0);
    /* the obsolete date forms count as dates */
    CHECK(chi_preconditions(none, none, none, S("Sunday, 06-Nov-94 08:49:37 GMT"), e, 4, mt, 1) == 304);
    CHECK(chi_preconditions(none, none, none, S("Sun Nov  6 08:49:36 1994"), e, 4, mt, 1) == 0);
    /* If-Range */
    CHECK(chi_if_range_ok(none, e, 4, mt, mt + 5));
    CHECK(chi_if_range_ok(S("\"v1\""), e, 4, mt, mt + 5));
    CHECK(chi_if_range_ok(S("\"v1\""), e, 4, mt, mt)); /* an ETag is strong whatever its age */
    CHECK(!chi_if_range_ok(S("\"v0\""), e, 4, mt, mt + 5));
    CHECK(!chi_if_range_ok(S("W/\"v1\""), e, 4, mt, mt + 5));
    CHECK(chi_if_range_ok(same, e, 4, mt, mt + 5));
    CHECK(chi_if_range_ok(same, e, 4, mt, mt + 1)); /* one second before the Date: strong */
    CHECK(!chi_if_range_ok(later, e, 4, mt, mt + 5));
    CHECK(!chi_if_range_ok(earlier, e, 4, mt, mt + 5)); /* exact match, not "not after" */
    CHECK(!chi_if_range_ok(bad, e, 4, mt, mt + 5));
    /* RFC 9110 8.8.2.2: a Last-Modified in the Date's second (or after it)
       is weak, so If-Range with it never applies the range */
    CHECK(!chi_if_range_ok(same, e, 4, mt, mt));
    CHECK(!chi_if_range_ok(same, e, 4, mt, mt - 3));
    CHECK(!chi_if_range_ok(same, e, 4, mt, -1));
    /* a date on a Wednesday opens with 'W' and is still a date, not a weak tag */
    CHECK(chi_if_range_ok(S("Wed, 01 Jan 2020 00:00:00 GMT"), e, 4, 1577836800, 1577836801));
    CHECK(chi_if_range_ok(S("Wednesday, 01-Jan-20 00:00:00 GMT"), e, 4, 1577836800, 1577836801));
    CHECK(chi_if_range_ok(S("Wed Jan  1 00:00:00 2020"), e, 4, 1577836800, 1577836801));
}

static void range_is(const char *h, uint64_t size, int want, uint64_t a, uint64_t b)
{
    uint64_t x = 99, y = 99;
    int r = chi_range_parse(S(h), size, &x, &y);
    CHECK(r == want);
    if (r == 1) CHECK(x == a && y == b);
    if (r != want || (r == 1 && (x != a || y != b)))
        printf("  range %s over %llu -> %d %llu-%llu\n", h ? h : "(none)", (unsigned long long)size, r,
               (unsigned long long)x, (unsigned long long)y);
}

static void test_ranges(void)
{
    range_is(NULL, 100, 0, 0, 0);
    range_is("bytes=0-0", 100, 1, 0, 0);
    range_is("bytes=0-99", 100, 1, 0, 99);
    range_is("bytes=0-1000", 100, 1, 0, 99);
    range_is("bytes=99-", 100, 1, 99, 99);
    range_is("bytes=10-", 100, 1, 10, 99);
    range_is("bytes=-1", 100, 1, 99, 99);
    range_is("bytes=-100", 100, 1, 0, 99);
    range_is("bytes=-1000", 100, 1, 0, 99);
    range_is("BYTES=5-6", 100, 1, 5, 6);
    range_is("bytes= 5-6 ", 100, 1, 5, 6);
    range_is("bytes=100-", 100, 416, 0, 0);
    range_is("bytes=100-200", 100, 416, 0, 0);
    range_is("bytes=-0", 100, 416, 0, 0);
    range_is("bytes=0-0", 0, 416, 0, 0);
    range_is("bytes=-5", 0, 416, 0, 0);
    range_is("bytes=5-4", 100, 0, 0, 0);
    range_is("bytes=0-1,5-6", 100, 0, 0, 0);
    range_is("bytes=0-1, 500-600", 100, 0, 0, 0);
    /* several ranges, none satisfiable: 416 like one (RFC 9110 14.2, 15.5.17) */
    range_is("bytes=100-101,200-201", 26, 416, 0, 0);
    range_is("bytes=100-101, 200-", 26, 416, 0, 0);
    range_is("bytes=-0,26-", 26, 416, 0, 0);
    range_is("bytes=100-101,,200-201", 26, 416, 0, 0); /* empty elements skipped (5.6.1) */
    range_is("bytes=0-0,5-6", 0, 416, 0, 0);
    range_is("bytes=100-101,25-", 26, 0, 0, 0); /* one satisfiable: the whole file */
    range_is("bytes=100-101,-3", 26, 0, 0, 0);
    range_is("bytes=100-101,5-2", 26, 0, 0, 0); /* one invalid: the header is ignored */
    range_is("bytes=100-101,abc", 26, 0, 0, 0);
    range_is("bytes=100-101 200-201", 26, 0, 0, 0);
    range_is("bytes=100-101,", 26, 416, 0, 0);
    range_is("bytes=,5-6", 26, 1, 5, 6);
    range_is("bytes=,", 26, 0, 0, 0);
    range_is("bytes=5-2", 26, 0, 0, 0);
    range_is("items=0-5", 100, 0, 0, 0);
    range_is("bytes=", 100, 0, 0, 0);
    range_is("bytes=-", 100, 0, 0, 0);
    range_is("bytes=a-5", 100, 0, 0, 0);
    /* numbers past 18 digits: a last byte clamped, a first byte beyond any file */
    range_is("bytes=5-99999999999999999999999", 100, 1, 5, 99);
    range_is("bytes=99999999999999999999999-", 100, 416, 0, 0);
    range_is("bytes=-99999999999999999999999", 100, 1, 0, 99);
    range_is("bytes=5", 100, 0, 0, 0);
    range_is("bytes=1-2x", 100, 0, 0, 0);
    range_is("bytes=99999999999999999999-", 100, 416, 0, 0); /* 20 digits: past any end */
    range_is("bytes=0-", UINT64_C(5000000000), 1, 0, UINT64_C(4999999999));
}

static void test_accept_encoding(void)
{
    CHECK(chi_accepts_coding(S("gzip"), "gzip"));
    CHECK(chi_accepts_coding(S("deflate, GZIP;q=0.5"), "gzip"));
    CHECK(!chi_accepts_coding(S("gzip;q=0"), "gzip"));
    CHECK(!chi_accepts_coding(S("gzip; q=0.000"), "gzip"));
    CHECK(chi_accepts_coding(S("gzip;q=0.001"), "gzip"));
    CHECK(chi_accepts_coding(S("*"), "br"));
    CHECK(!chi_accepts_coding(S("*;q=0"), "br"));
    CHECK(!chi_accepts_coding(S("br;q=0, *"), "br"));
    CHECK(!chi_accepts_coding(S("identity"), "gzip"));
    CHECK(!chi_accepts_coding(S("gzipx"), "gzip"));
    CHECK(!chi_accepts_coding(chi_str(NULL, 0), "gzip"));
    CHECK(chi_accepts_coding(S("gzip, deflate, br, zstd"), "br"));
}

/* ---- multipart ---- */

typedef struct mp_log {
    char text[1 << 16];
    size_t len;
    int stop_at_part;        /* part_begin of this index returns 1 (0: never) */
} mp_log;

static void mp_put(mp_log *l, const char *s, size_t n)
{
    if (l->len + n < sizeof l->text) {
        memcpy(l->text + l->len, s, n);
        l->len += n;
    }
}

static int mp_begin(const ch_part *p, void *user)
{
    mp_log *l = (mp_log *)user;
    mp_put(l, "[", 1);
    mp_put(l, p->name.ptr, p->name.len);
    if (p->has_filename) {
        mp_put(l, "|f=", 3);
        mp_put(l, p->filename.ptr, p->filename.len);
    }
    if (p->content_type.ptr) {
        mp_put(l, "|t=", 3);
        mp_put(l, p->content_type.ptr, p->content_type.len);
    }
    mp_put(l, "]", 1);
    return l->stop_at_part && p->index + 1 == l->stop_at_part;
}

static int mp_data(const char *d, size_t n, void *user)
{
    mp_put((mp_log *)user, d, n);
    return 0;
}

static int mp_end(void *user)
{
    mp_put((mp_log *)user, "<end>", 5);
    return 0;
}

/* Feeds body in pieces of `step` bytes (0: split once at `at`); returns
   the last feed result (or finish's), the log in l. */
static int mp_run(const char *boundary, const char *body, size_t len, size_t step, size_t at, mp_log *l,
                  const ch_multipart_limits *lim, const char **err)
{
    ch_multipart_cb cb;
    ch_multipart *mp;
    int r = 0;
    size_t off = 0;
    memset(&cb, 0, sizeof cb);
    cb.part_begin = mp_begin;
    cb.part_data = mp_data;
    cb.part_end = mp_end;
    cb.user = l;
    l->len = 0;
    mp = ch_multipart_new(boundary, strlen(boundary), lim, &cb);
    if (!mp) return -9;
    while (off < len && r == 0) {
        size_t n = step ? step : (off < at ? at - off : len - off);
        if (n > len - off) n = len - off;
        r = ch_multipart_feed(mp, body + off, n);
        off += n;
    }
    if (r == 0) r = ch_multipart_finish(mp) == 0 ? 1 : -1;
    if (err) *err = ch_multipart_error(mp);
    ch_multipart_free(mp);
    return r;
}

/* The same log and result whatever the split. */
static void mp_expect(const char *boundary, const char *body, size_t len, int want, const char *want_log,
                      const char *want_err)
{
    static mp_log l;
    size_t at;
    const char *err = NULL;
    int r = mp_run(boundary, body, len, len ? len : 1, 0, &l, NULL, &err);
    CHECK(r == want);
    if (want_log) CHECK(l.len == strlen(want_log) && memcmp(l.text, want_log, l.len) == 0);
    if (want_err) CHECK(strcmp(err, want_err) == 0);
    if (r != want || (want_log && (l.len != strlen(want_log) || memcmp(l.text, want_log, l.len) != 0)))
        printf("  got %d [%.*s] err=%s\n", r, (int)l.len, l.text, err);
    for (at = 1; at < len; at++) {
        r = mp_run(boundary, body, len, 0, at, &l, NULL, NULL);
        CHECK(r == want);
        if (want_log) CHECK(l.len == strlen(want_log) && memcmp(l.text, want_log, l.len) == 0);
    }
    r = mp_run(boundary, body, len, 1, 0, &l, NULL, NULL);
    CHECK(r == want);
    if (want_log) CHECK(l.len == strlen(want_log) && memcmp(l.text, want_log, l.len) == 0);
}

#define MP(s) s, sizeof(s) - 1

static void test_multipart_basic(void)
{
    mp_expect("XyZ",
              MP("--XyZ\r\n"
                 "Content-Disposition: form-data; name=\"a\"\r\n\r\n"
                 "hello\r\n"
                 "--XyZ\r\n"
                 "content-disposition: form-data; name=\"file\"; filename=\"a b.txt\"\r\n"
                 "Content-Type: text/plain\r\n\r\n"
                 "line1\r\nline2\r\n--XyY\r\n\r\r\n--Xy\r\n"
                 "--XyZ--\r\n"),
              1, "[a]hello<end>[file|f=a b.txt|t=text/plain]line1\r\nline2\r\n--XyY\r\n\r\r\n--Xy<end>", NULL);
}

static void test_multipart_edges(void)
{
    /* preamble and epilogue ignored; padding after the boundary */
    mp_expect("b", MP("junk\r\n--b \t\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--b--epilogue"), 1,
              "[x]1<end>", NULL);
    /* empty value, empty file */
    mp_expect("b", MP("--b\r\nContent-Disposition: form-data; name=\"e\"\r\n\r\n\r\n--b\r\n"
                      "Content-Disposition: form-data; name=\"f\"; filename=\"\"\r\n\r\n\r\n--b--"),
              1, "[e]<end>[f|f=]<end>", NULL);
    /* a value that is only CR LF and bytes like the delimiter */
    mp_expect("bb", MP("--bb\r\nContent-Disposition: form-data; name=v\r\n\r\n\r\n\r\n-\r\n--b\r\n--bb--"), 1,
              "[v]\r\n\r\n-\r\n--b<end>", NULL);
    /* escaped quote in a name */
    mp_expect("b", MP("--b\r\nContent-Disposition: form-data; name=\"a\\\"b\"\r\n\r\nv\r\n--b--"), 1, "[a\"b]v<end>",
              NULL);
    /* missing final boundary */
    mp_expect("b", MP("--b\r\nContent-Disposition: form-data; name=a\r\n\r\nvalue"), -1, NULL, "missing final boundary");
    mp_expect("b", MP("--b\r\nContent-Disposition: form-data; name=a\r\n\r\nvalue\r\n--b"), -1, NULL,
              "missing final boundary");
    mp_expect("b", MP(""), -1, NULL, "missing final boundary");
    /* a part with no name, no headers, or not form-data */
    mp_expect("b", MP("--b\r\nContent-Disposition: form-data\r\n\r\nv\r\n--b--"), -1, NULL, "part without a name");
    mp_expect("b", MP("--b\r\n\r\nv\r\n--b--"), -1, NULL, "part without a name");
    mp_expect("b", MP("--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--"), -1, NULL, "part without a name");
    mp_expect("b", MP("--b\r\nContent-Disposition: attachment; name=a\r\n\r\nv\r\n--b--"), -1, NULL,
              "malformed Content-Disposition");
    /* bare LF line ends, a header without a colon, junk after a boundary */
    mp_expect("b", MP("--b\nContent-Disposition: form-data; name=a\n\nv\n--b--"), -1, NULL, "malformed boundary line");
    mp_expect("b", MP("--b\r\nContent-Disposition: form-data; name=a\n\r\nv\r\n--b--"), -1, NULL,
              "malformed part header");
    mp_expect("b", MP("--b\r\nNoColon\r\n\r\nv\r\n--b--"), -1, NULL, "malformed part header");
    mp_expect("b", MP("--bx\r\n"), -1, NULL, "malformed boundary line");
    mp_expect("b", MP("--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\nv\r\n--b--"), -1, NULL,
              "malformed Content-Disposition");
}

static void test_multipart_limits(void)
{
    static char body[1 << 20];
    static mp_log l;
    ch_multipart_limits lim;
    const char *err;
    size_t n = 0;
    int i;
    /* 10,000 parts */
    for (i = 0; i < 10000; i++)
        n += (size_t)snprintf(body + n, sizeof body - n, "--b\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\n%d\r\n", i, i);
    n += (size_t)snprintf(body + n, sizeof body - n, "--b--\r\n");
    memset(&lim, 0, sizeof lim);
    lim.max_parts = 10000;
    CHECK(mp_run("b", body, n, 4096, 0, &l, &lim, &err) == 1);
    lim.max_parts = 9999;
    CHECK(mp_run("b", body, n, 4096, 0, &l, &lim, &err) == -1 && strcmp(err, "too many parts") == 0);
    CHECK(mp_run("b", body, n, 4096, 0, &l, NULL, &err) == -1 && strcmp(err, "too many parts") == 0); /* 1000 */
    /* header block size */
    memset(&lim, 0, sizeof lim);
    lim.max_header = 60;
    n = (size_t)snprintf(body, sizeof body, "--b\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Long: %070d\r\n\r\nv\r\n--b--", 0);
    CHECK(mp_run("b", body, n, 7, 0, &l, &lim, &err) == -1 && strcmp(err, "part headers too large") == 0);
    lim.max_header = 200;
    CHECK(mp_run("b", body, n, 7, 0, &l, &lim, &err) == 1);
    /* total size */
    memset(&lim, 0, sizeof lim);
    lim.max_total = (uint64_t)n - 1;
    CHECK(mp_run("b", body, n, 7, 0, &l, &lim, &err) == -1 && strcmp(err, "multipart body too large") == 0);
    /* the application stops it */
    l.stop_at_part = 1;
    CHECK(mp_run("b", body, n, 7, 0, &l, NULL, &err) == -1 && strcmp(err, "stopped by the application") == 0);
    l.stop_at_part = 0;
}

static void test_multipart_boundary(void)
{
    ch_str b;
    ch_multipart_cb cb;
    memset(&cb, 0, sizeof cb);
    CHECK(ch_multipart_boundary(S("multipart/form-data; boundary=abc"), &b) == 0 && b.len == 3 && memcmp(b.ptr, "abc", 3) == 0);
    CHECK(ch_multipart_boundary(S("Multipart/Form-Data;boundary=\"a b\"; x=y"), &b) == 0 && b.len == 3);
    CHECK(ch_multipart_boundary(S("multipart/form-data; charset=utf-8; boundary=zz"), &b) == 0 && b.len == 2);
    CHECK(ch_multipart_boundary(S("multipart/form-data"), &b) == -1);
    CHECK(ch_multipart_boundary(S("multipart/form-data; boundary="), &b) == -1);
    CHECK(ch_multipart_boundary(S("multipart/mixed; boundary=abc"), &b) == -1);
    CHECK(ch_multipart_boundary(S("text/plain"), &b) == -1);
    CHECK(ch_multipart_boundary(chi_str(NULL, 0), &b) == -1);
    CHECK(ch_multipart_new("", 0, NULL, &cb) == NULL);
    CHECK(ch_multipart_new("a\rb", 3, NULL, &cb) == NULL);
    CHECK(ch_multipart_new("ab ", 3, NULL, &cb) == NULL);
    CHECK(ch_multipart_new("0123456789012345678901234567890123456789012345678901234567890123456789x", 71, NULL, &cb) == NULL);
}

static void test_form_decode(void)
{
    ch_str rest = S("a=1&b+c=d%20e&&bad=%zz&last");
    char k[16], v[16];
    CHECK(ch_form_decode_next(&rest, k, sizeof k, v, sizeof v) == 1 && strcmp(k, "a") == 0 && strcmp(v, "1") == 0);
    CHECK(ch_form_decode_next(&rest, k, sizeof k, v, sizeof v) == 1 && strcmp(k, "b c") == 0 && strcmp(v, "d e") == 0);
    CHECK(ch_form_decode_next(&rest, k, sizeof k, v, sizeof v) == CH_BAD);
    CHECK(ch_form_decode_next(&rest, k, sizeof k, v, sizeof v) == 1 && strcmp(k, "last") == 0 && strcmp(v, "") == 0);
    CHECK(ch_form_decode_next(&rest, k, sizeof k, v, sizeof v) == 0);
    rest = S("k=0123456789abcdefghij");
    CHECK(ch_form_decode_next(&rest, k, sizeof k, v, sizeof v) == CH_TOO_LONG);
}

/* ---- opening beneath a root ---- */

static char g_tmp[64];

static void put_file(const char *rel, const char *text)
{
    char p[256];
    FILE *f;
    snprintf(p, sizeof p, "%s/%s", g_tmp, rel);
    f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_open_beneath(void)
{
    char p[256], q[256], buf[64];
    int root, fd;
    chi_file_info fi;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/chopin-files-unit-%d", (int)getpid());
    snprintf(p, sizeof p, "mkdir -p %s/root/sub %s/outside", g_tmp, g_tmp);
    CHECK(system(p) == 0);
    put_file("root/sub/a.txt", "inside");
    put_file("outside/secret.txt", "secret");
    snprintf(p, sizeof p, "%s/outside/secret.txt", g_tmp);
    snprintf(q, sizeof q, "%s/root/link", g_tmp);
    CHECK(symlink(p, q) == 0);
    snprintf(p, sizeof p, "%s/outside", g_tmp);
    snprintf(q, sizeof q, "%s/root/dirlink", g_tmp);
    CHECK(symlink(p, q) == 0);
    snprintf(q, sizeof q, "%s/root/rel", g_tmp);
    CHECK(symlink("../outside/secret.txt", q) == 0);
    snprintf(q, sizeof q, "%s/root/inlink", g_tmp);
    CHECK(symlink("sub/a.txt", q) == 0);
    snprintf(p, sizeof p, "%s/root", g_tmp);
    root = chi_os_open_dir(p);
    CHECK(root >= 0);
    fd = chi_os_open_beneath(root, "sub/a.txt");
    CHECK(fd >= 0 && chi_os_file_stat(fd, &fi) == 0 && fi.is_reg && fi.size == 6);
    if (fd >= 0) {
        CHECK(read(fd, buf, sizeof buf) == 6 && memcmp(buf, "inside", 6) == 0);
        close(fd);
    }
    fd = chi_os_open_beneath(root, "");
    CHECK(fd >= 0 && chi_os_file_stat(fd, &fi) == 0 && fi.is_dir);
    if (fd >= 0) close(fd);
    CHECK(chi_os_open_beneath(root, "link") == CHI_FILE_FORBIDDEN);
    fd = chi_os_open_beneath(root, "dirlink/secret.txt"); /* the walk may see ENOTDIR: refused either way */
    CHECK(fd == CHI_FILE_FORBIDDEN || fd == CHI_FILE_NOTFOUND);
    CHECK(chi_os_open_beneath(root, "rel") == CHI_FILE_FORBIDDEN);
    CHECK(chi_os_open_beneath(root, "inlink") == CHI_FILE_FORBIDDEN); /* no symlink is followed */
    CHECK(chi_os_open_beneath(root, "missing") == CHI_FILE_NOTFOUND);
    CHECK(chi_os_open_beneath(root, "sub/a.txt/x") == CHI_FILE_NOTFOUND);
    /* a file replaced by a symlink is refused from then on */
    snprintf(p, sizeof p, "%s/root/sub/a.txt", g_tmp);
    unlink(p);
    snprintf(q, sizeof q, "%s/outside/secret.txt", g_tmp);
    CHECK(symlink(q, p) == 0);
    CHECK(chi_os_open_beneath(root, "sub/a.txt") == CHI_FILE_FORBIDDEN);
    close(root);
    snprintf(p, sizeof p, "rm -rf %s", g_tmp);
    CHECK(system(p) == 0);
}

static void test_file_create(void)
{
    char dir[96], name[32], name2[32], p[160];
    int fd, fd2;
    snprintf(dir, sizeof dir, "/tmp/chopin-files-create-%d", (int)getpid());
    fd = ch_file_create(dir, name, sizeof name);
    fd2 = ch_file_create(dir, name2, sizeof name2);
    CHECK(fd >= 0 && fd2 >= 0 && strlen(name) == 19 && memcmp(name, "up-", 3) == 0 && strcmp(name, name2) != 0);
    CHECK(ch_file_write(fd, "abc", 3) == 0);
    ch_file_close(fd);
    ch_file_close(fd2);
    CHECK(ch_file_create(dir, name, 8) == -1);
    CHECK(ch_file_create_named(dir, "../x") == -1);
    CHECK(ch_file_create_named(dir, ".hidden") == -1);
    CHECK(ch_file_create_named(dir, "a\\b") == -1);
    CHECK(ch_file_create_named(dir, "") == -1);
    fd = ch_file_create_named(dir, "ok.bin");
    CHECK(fd >= 0);
    ch_file_close(fd);
    snprintf(p, sizeof p, "rm -rf %s", dir);
    CHECK(system(p) == 0);
}

int main(void)
{
    run("mime: table, extensions, default", test_mime);
    run("mime: per-app overrides", test_mime_override);
    run("paths: dot segments, raw and encoded", test_dot_segment);
    run("router: no dot segment reaches a parameter or wildcard", test_router_dot_segments);
    run("paths: chi_path_clean", test_path_clean);
    run("validators: ETag format, IMF-fixdate both ways", test_etag_and_dates);
    run("validators: ETag lists, weak and strong", test_etag_match);
    run("conditionals: RFC 9110 13.2.2 precedence, If-Range", test_preconditions);
    run("ranges: single, suffix, open, past the end, several, invalid", test_ranges);
    run("Accept-Encoding: codings and q=0", test_accept_encoding);
    run("multipart: fields and files, split at every byte", test_multipart_basic);
    run("multipart: CRLF edges, missing final boundary, no name", test_multipart_edges);
    run("multipart: 10,000 parts, header and total limits", test_multipart_limits);
    run("multipart: boundary parameter and validity", test_multipart_boundary);
    run("urlencoded: ch_form_decode_next", test_form_decode);
    run("open beneath: symlinks out, in, replaced; missing", test_open_beneath);
    run("uploads: generated and checked names", test_file_create);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
