/* unit.c - unit tests for chopin.h's pieces: itoa, the Date format, the
   character table, the pre-built errors, the request parser (every request
   also fed split at every byte), the chunked decoder, the JSON writer, the
   router and the configuration. It includes the implementation, so the
   internal chi_ functions are reachable. Last line: "N passed, N failed". */
#define CHOPIN_IMPLEMENTATION
#include "../chopin.h"

#include <math.h>

#include "check.h"

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
    { /* every digit-count boundary: 10^k - 1 and 10^k */
        uint64_t p = 1;
        int k;
        for (k = 0; k < 20; k++, p *= 10) {
            uint64_t b[2];
            int j;
            b[0] = p - 1;
            b[1] = p;
            for (j = 0; j < 2; j++) {
                n = chi_utoa(b[j], out);
                snprintf(want, sizeof want, "%llu", (unsigned long long)b[j]);
                CHECK(n == strlen(want) && memcmp(out, want, n) == 0);
            }
        }
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
    const char *uri = "-._~:/?[]@!$&'()*+,;=%\"^`{|}0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const char *hex = "0123456789abcdefABCDEF";
    const char *host = "-._~!$&'()*+,;=%:[]0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    int c;
    for (c = 1; c < 256; c++) {
        int value = (c >= 0x21 && c <= 0x7e) || c >= 0x80 || c == ' ' || c == '\t';
        CHECK(chi_is((unsigned char)c, CHI_PATH) == (strchr(uri, c) != NULL && c != '%' && c != '?'));
        CHECK(chi_is((unsigned char)c, CHI_JSON) == (c >= 0x20 && c < 0x80 && c != '"' && c != '\\'));
        CHECK(chi_is((unsigned char)c, CHI_TOKEN) == (strchr(tchar, c) != NULL));
        CHECK(chi_is((unsigned char)c, CHI_URI) == (strchr(uri, c) != NULL));
        CHECK(chi_is((unsigned char)c, CHI_HEX) == (strchr(hex, c) != NULL));
        CHECK(chi_is((unsigned char)c, CHI_HOST) == (strchr(host, c) != NULL));
        CHECK(chi_is((unsigned char)c, CHI_REGNAME) == (strchr(host, c) != NULL && c != ':' && c != '[' && c != ']'));
        CHECK(chi_is((unsigned char)c, CHI_VALUE) == value);
    }
    CHECK(chi_cclass[0] == 0);
}

/* The 8-byte scanner must stop exactly where the byte-by-byte one does. */
/* The common header names (chi_header_id, compared a word at a time):
   each in lower case, upper case and alternating case is found; with any
   one byte changed (to another letter, a '-' or its case-folded neighbour
   '@' / '`' that OR 0x20 does not make a letter) it is not. Names sit in
   buffers of their exact size (ASan: no read past them). */
static void test_header_names(void)
{
    static const struct { const char *name; ch_hdr id; } names[] = {
        {"host", CH_H_HOST}, {"range", CH_H_RANGE}, {"accept", CH_H_ACCEPT}, {"cookie", CH_H_COOKIE},
        {"expect", CH_H_EXPECT}, {"origin", CH_H_ORIGIN}, {"referer", CH_H_REFERER}, {"upgrade", CH_H_UPGRADE},
        {"x-real-ip", CH_H_X_REAL_IP}, {"connection", CH_H_CONNECTION}, {"user-agent", CH_H_USER_AGENT},
        {"content-type", CH_H_CONTENT_TYPE}, {"x-request-id", CH_H_X_REQUEST_ID},
        {"authorization", CH_H_AUTHORIZATION}, {"cache-control", CH_H_CACHE_CONTROL},
        {"if-none-match", CH_H_IF_NONE_MATCH}, {"content-length", CH_H_CONTENT_LENGTH},
        {"accept-encoding", CH_H_ACCEPT_ENCODING}, {"accept-language", CH_H_ACCEPT_LANGUAGE},
        {"x-forwarded-for", CH_H_X_FORWARDED_FOR}, {"transfer-encoding", CH_H_TRANSFER_ENCODING},
        {"if-modified-since", CH_H_IF_MODIFIED_SINCE}, {"x-forwarded-proto", CH_H_X_FORWARDED_PROTO}};
    static const char swaps[] = "q-@`";
    size_t i, k, n, at;
    int bad = 0;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        n = strlen(names[i].name);
        for (k = 0; k < 3; k++) { /* lower, upper, alternating */
            char *s = (char *)malloc(n);
            for (at = 0; at < n; at++) {
                char c = names[i].name[at];
                s[at] = (k == 1 || (k == 2 && at % 2)) && c >= 'a' && c <= 'z' ? (char)(c - 32) : c;
            }
            bad += chi_header_id(s, n) != (int)names[i].id;
            free(s);
        }
        for (at = 0; at < n; at++)
            for (k = 0; k < sizeof swaps - 1; k++) {
                char *s = (char *)malloc(n);
                memcpy(s, names[i].name, n);
                if (s[at] == swaps[k]) {
                    free(s);
                    continue;
                }
                s[at] = swaps[k];
                bad += chi_header_id(s, n) == (int)names[i].id;
                free(s);
            }
    }
    CHECK(bad == 0);
}

static void test_skip_value(void)
{
    char buf[40];
    unsigned seed = 7;
    int i, k;
    for (i = 0; i < 20000; i++) {
        const char *p, *slow;
        size_t n = 1 + (size_t)(i % 39);
        for (k = 0; k < (int)n; k++) {
            seed = seed * 1103515245u + 12345u;
            buf[k] = (char)((seed >> 16) % 7 == 0 ? (seed >> 8) & 0xff : 'a' + (seed >> 20) % 26);
        }
        p = chi_skip_value(buf, buf + n);
        for (slow = buf; slow < buf + n && chi_is((unsigned char)*slow, CHI_VALUE); slow++) {}
        if (p != slow) {
            CHECK(p == slow);
            break;
        }
    }
}

/* The JSON writer's word test agrees with the table: for every byte value
   at every place in a word of plain bytes, and for random words, it says
   "look closer" exactly when some byte is not one a string holds as it is.
   Then the short-string path and the general writer give the same text. */
static void test_json_word(void)
{
    unsigned seed = 11;
    int i, k, v;
    for (k = 0; k < 8; k++)
        for (v = 0; v < 256; v++) {
            char b[8];
            memset(b, 'a', sizeof b);
            b[k] = (char)v;
            if ((chi_json_word_special(chi_load8(b)) != 0) != !chi_is((unsigned char)v, CHI_JSON)) {
                CHECK(!"a byte misjudged");
                return;
            }
        }
    for (i = 0; i < 200000; i++) {
        char b[8];
        int want = 0;
        for (k = 0; k < 8; k++) {
            seed = seed * 1103515245u + 12345u;
            b[k] = (char)((seed >> 16) % 5 == 0 ? (seed >> 8) & 0xff : 0x20 + (seed >> 20) % 0x60);
            want |= !chi_is((unsigned char)b[k], CHI_JSON);
        }
        if ((chi_json_word_special(chi_load8(b)) != 0) != want) {
            CHECK(!"a word misjudged");
            return;
        }
    }
    for (i = 0; i < 20000; i++) {
        char s[20];
        ch_json a, c;
        size_t n = (size_t)(i % 19);
        for (k = 0; k < (int)n; k++) {
            seed = seed * 1103515245u + 12345u;
            s[k] = (char)((seed >> 16) % 9 == 0 ? (seed >> 8) & 0xff : 'a' + (seed >> 20) % 26);
        }
        ch_json_init(&a);
        ch_json_init(&c);
        CHECK(chi_json_reserve(&a, 64) == 0); /* room: the short path can run */
        ch_json_strn(&a, s, n); /* the short path when it can */
        chi_json_quoted(&c, 0, s, n, 0); /* the general writer */
        if (a.len != c.len || memcmp(a.buf, c.buf, a.len) != 0) {
            CHECK(!"the short path and the general writer differ");
            ch_json_free(&a);
            ch_json_free(&c);
            return;
        }
        ch_json_free(&a);
        ch_json_free(&c);
    }
}

/* Every status chopin.h answers by itself: the one head writer gives a
   status line, framing that matches the body, and an error body made from
   the same reason phrase. */
static void test_error_responses(void)
{
    static const int statuses[] = {400, 401, 403, 404, 405, 408, 413, 414, 417, 429, 431, 500, 501, 503, 505};
    size_t i;
    for (i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        char head[512], body[CHI_ERROR_BODY_MAX], want[128], *end;
        size_t bl = chi_error_body(statuses[i], body);
        chi_head_spec h;
        memset(&h, 0, sizeof h);
        h.status = statuses[i];
        h.keep_alive = 1;
        h.minor = 1;
        h.ctype = "application/json";
        h.ctype_len = 16;
        h.length = bl;
        CHECK(chi_head_size(&h) < sizeof head);
        end = chi_head_put(head, &h);
        *end = 0;
        snprintf(want, sizeof want, "HTTP/1.1 %d %s\r\n", statuses[i], chi_reason(statuses[i]));
        CHECK(strncmp(head, want, strlen(want)) == 0);
        snprintf(want, sizeof want, "Content-Length: %u\r\n\r\n", (unsigned)bl);
        CHECK(strstr(head, want) != NULL && strcmp(end - strlen(want), want) == 0);
        snprintf(want, sizeof want, "{\"detail\":\"%s\"}", chi_error_detail(statuses[i]));
        CHECK(bl == strlen(want) && memcmp(body, want, bl) == 0);
    }
    /* no Content-Length on 1xx, 204, 304; Connection by version and keep-alive */
    {
        char head[512], *end;
        chi_head_spec h;
        memset(&h, 0, sizeof h);
        h.status = 100;
        h.keep_alive = 1;
        h.minor = 1;
        h.framing = CHI_FRAME_NONE;
        end = chi_head_put(head, &h);
        CHECK((size_t)(end - head) == 25 && memcmp(head, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0);
        h.status = 204;
        h.framing = CHI_FRAME_LENGTH;
        h.keep_alive = 0;
        end = chi_head_put(head, &h);
        *end = 0;
        CHECK(strcmp(head, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n") == 0);
        h.status = 200;
        h.keep_alive = 1;
        h.minor = 0;
        h.length = 3;
        end = chi_head_put(head, &h);
        *end = 0;
        CHECK(strcmp(head, "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n") == 0);
    }
}

/* Requests' header lines live outside ch_req (see chi_req_store). */
static ch_req new_req(void)
{
    static chi_req_store st;
    ch_req r;
    chi_req_bind(&r, &st);
    return r;
}

/* ---- parser ---- */

static const chi_limits lim = {16 * 1024, 8 * 1024, 8 * 1024 * 1024};

/* A worker's Host memo, carried from one parser test to the next as a
   worker carries it from request to request: whatever it holds, every
   answer must be the one without it. */
static chi_parse_memo carried_memo;

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
    /* with the memo that earlier tests left, then with what this one
       stored in it: the same answer each time */
    r = chi_parse_head_memo(raw, len, &lim, req, h, &carried_memo);
    CHECK(chi_parse_head_memo(raw, len, &lim, req, h, &carried_memo) == r);
    CHECK(chi_parse_head(raw, len, &lim, req, h) == r);
    return r;
}

/* Parses "GET / HTTP/1.1\r\nHost: <value>\r\n\r\n" with memo, and checks
   the answer is the one without it. */
static long parse_host(const char *value, chi_parse_memo *memo)
{
    char raw[256];
    ch_req req = new_req();
    chi_head h;
    long r, plain;
    size_t n = (size_t)snprintf(raw, sizeof raw, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", value);
    plain = chi_parse_head(raw, n, &lim, &req, &h);
    r = chi_parse_head_memo(raw, n, &lim, &req, &h, memo);
    CHECK(r == plain);
    return r;
}

static void test_parse_host_memo(void)
{
    chi_parse_memo memo;
    char big[80];
    memset(&memo, 0, sizeof memo);
    CHECK(parse_host("a.example:80", &memo) > 0);
    CHECK(memo.line_len == 20 && memcmp(memo.line, "Host: a.example:80\r\n", 20) == 0);
    CHECK(memo.value_off == 6 && memo.value_len == 12);
    /* the stored line, then other bytes: scanned as ever */
    CHECK(parse_host("a.example:80", &memo) > 0);
    CHECK(parse_host("a.example:80 ", &memo) > 0);
    CHECK(parse_host("a.example:80x", &memo) == -400);
    CHECK(parse_host("a.example:80@", &memo) == -400);
    CHECK(parse_host("a.example:80:1", &memo) == -400);
    CHECK(parse_host("a.example:80]", &memo) == -400);
    CHECK(parse_host("a.example:8", &memo) > 0);
    CHECK(parse_host("a.example", &memo) > 0);
    CHECK(parse_host("a.exa mple:80", &memo) == -400);
    /* a refused line is never stored */
    memset(&memo, 0, sizeof memo);
    CHECK(parse_host("a b", &memo) == -400 && memo.line_len == 0);
    CHECK(parse_host("[::1", &memo) == -400 && memo.line_len == 0);
    CHECK(parse_host("x:1:2", &memo) == -400 && memo.line_len == 0);
    CHECK(parse_host("[::1]:8080", &memo) > 0 && memo.line_len == 18);
    CHECK(parse_host("[::1]:8080", &memo) > 0);
    CHECK(parse_host("[::1]:8080]", &memo) == -400);
    /* whitespace after the value is part of the line, not of the value */
    memset(&memo, 0, sizeof memo);
    CHECK(parse_host("h.example  ", &memo) > 0 && memo.line_len == 19 && memo.value_len == 9);
    {
        const char *raw = "GET / HTTP/1.1\r\nHost: h.example  \r\n\r\n";
        ch_req req = new_req();
        chi_head h;
        CHECK(chi_parse_head_memo(raw, strlen(raw), &lim, &req, &h, &memo) > 0);
        CHECK(req.header_count == 1 && ch_str_eq(req.headers[0].value, "h.example") &&
              ch_str_eq(req.headers[0].name, "Host") && ch_str_eq(ch_req_header(&req, "host"), "h.example"));
    }
    /* no host (RFC 9110 4.2.1): refused, and never stored */
    memset(&memo, 0, sizeof memo);
    CHECK(parse_host("", &memo) == -400 && memo.line_len == 0);
    CHECK(parse_host(":80", &memo) == -400 && memo.line_len == 0);
    CHECK(parse_host("  ", &memo) == -400 && memo.line_len == 0);
    /* a line longer than the memo is not stored */
    memset(&memo, 0, sizeof memo);
    memset(big, 'a', sizeof big);
    big[CHI_HOST_MEMO_MAX] = 0;
    CHECK(parse_host(big, &memo) > 0 && memo.line_len == 0);
    big[CHI_HOST_MEMO_MAX - 8] = 0;
    CHECK(parse_host(big, &memo) > 0 && memo.line_len == CHI_HOST_MEMO_MAX);
    CHECK(parse_host(big, &memo) > 0);
    /* the stored line cut short by the end of the bytes: need more; and a
       second Host line, stored or not, is still refused */
    {
        const char *raw = "GET / HTTP/1.1\r\nHost: aaaa\r";
        const char *two = "GET / HTTP/1.1\r\nHost: aaaa\r\nHost: aaaa\r\n\r\n";
        ch_req req = new_req();
        chi_head h;
        memset(&memo, 0, sizeof memo);
        CHECK(parse_host("aaaa", &memo) > 0 && memo.line_len == 12);
        CHECK(chi_parse_head_memo(raw, strlen(raw), &lim, &req, &h, &memo) == 0);
        CHECK(chi_parse_head_memo(two, strlen(two), &lim, &req, &h, &memo) == -400);
    }
}

/* Other field lines through the memo's slots: the same requests parse to
   the same fields with a memo that holds their lines, one that holds lines
   differing by a byte, and none. */
static void test_parse_other_memo(void)
{
    static const char *const heads[] = {
        "GET / HTTP/1.1\r\nHost: a\r\nOrigin: https://a.example\r\nUser-Agent: t/1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nOrigin: https://a.exampl\x01\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nOrigin : https://a.example\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nOrigin: https://a.example\r",
        "GET / HTTP/1.1\r\nHost: a\r\nOrigin: https://a.example \r\nExpect: 100-continue\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\nX-Long-Header-Name-Over-Sixty-Four: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
    };
    size_t i, j, k, round;
    chi_parse_memo memo;
    memset(&memo, 0, sizeof memo);
    for (round = 0; round < 3; round++)
        for (i = 0; i < sizeof heads / sizeof heads[0]; i++) {
            ch_req a = new_req(), b = new_req();
            chi_head ha, hb;
            long ra = chi_parse_head(heads[i], strlen(heads[i]), &lim, &a, &ha);
            long rb = chi_parse_head_memo(heads[i], strlen(heads[i]), &lim, &b, &hb, &memo);
            CHECK(ra == rb);
            if (ra <= 0 || rb != ra) continue;
            CHECK(a.header_count == b.header_count && ha.keep_alive == hb.keep_alive &&
                  ha.body_kind == hb.body_kind && ha.content_length == hb.content_length &&
                  ha.expect_continue == hb.expect_continue);
            for (j = 0; j < (size_t)a.header_count && j < (size_t)b.header_count; j++)
                CHECK(a.headers[j].name.len == b.headers[j].name.len && a.headers[j].value.len == b.headers[j].value.len &&
                      memcmp(a.headers[j].name.ptr, b.headers[j].name.ptr, a.headers[j].name.len) == 0 &&
                      memcmp(a.headers[j].value.ptr, b.headers[j].value.ptr, a.headers[j].value.len) == 0);
            for (k = 0; k < CH_H_COUNT; k++) CHECK(a.common[k] == b.common[k]);
        }
    /* an accepted line is stored in its slot; a refused one never */
    {
        const char *line = "Origin: https://a.example\r\n";
        const chi_memo_line *m = &memo.other[chi_memo_slot(line)];
        ch_req r = new_req();
        chi_head h;
        CHECK(chi_parse_head_memo(heads[0], strlen(heads[0]), &lim, &r, &h, &memo) > 0);
        CHECK(m->line_len == strlen(line) && memcmp(m->line, line, m->line_len) == 0 && m->value_off == 8 &&
              m->value_len == 17 && m->name_len == 6);
        CHECK(chi_memo_find(&memo, line, line + strlen(line)) == m);
        CHECK(chi_memo_find(&memo, line, line + strlen(line) - 1) == NULL);
        memset(&memo, 0, sizeof memo);
        CHECK(chi_parse_head_memo(heads[6], strlen(heads[6]), &lim, &r, &h, &memo) == -400);
        for (k = 0; k < CHI_MEMO_SLOTS; k++) CHECK(memo.other[k].line_len == 0);
    }
}

static void test_parse_simple_get(void)
{
    const char *raw = "GET /users/7?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nX-Empty:\r\nX-Pad:  a b  \r\n\r\n";
    ch_req req = new_req();
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
    ch_req req = new_req();
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
    ch_req req = new_req();
    chi_head h;
    const char *a = "GET http://example.com:8080/a/b?q HTTP/1.1\r\nHost: x\r\n\r\n";
    const char *b = "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n";
    const char *c = "GET HTTP://example.com HTTP/1.1\r\nHost: x\r\n\r\n";
    const char *d = "GET /a%20b?c=%41 HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(parse_all_splits(a, strlen(a), &req, &h, (long)strlen(a)) > 0);
    CHECK(ch_str_eq(req.path, "/a/b") && ch_str_eq(req.query, "q"));
    CHECK(parse_all_splits(b, strlen(b), &req, &h, (long)strlen(b)) > 0);
    CHECK(ch_str_eq(req.path, "*") && req.method == CH_OPTIONS);
    CHECK(parse_all_splits(c, strlen(c), &req, &h, (long)strlen(c)) > 0);
    CHECK(ch_str_eq(req.path, "/"));
    CHECK(parse_all_splits(d, strlen(d), &req, &h, (long)strlen(d)) > 0);
    CHECK(ch_str_eq(req.path, "/a%20b") && ch_str_eq(req.query, "c=%41"));
    {
        /* what browsers send unencoded (issue 9, bug 9), and valid authorities */
        const char *e = "GET /a{b}|c^d`e\"f?x={\"k\":1}|^` HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n";
        const char *f = "GET http://[::1]:80/p HTTP/1.1\r\nHost: a.b:\r\n\r\n";
        CHECK(parse_all_splits(e, strlen(e), &req, &h, (long)strlen(e)) > 0);
        CHECK(ch_str_eq(req.path, "/a{b}|c^d`e\"f") && ch_str_eq(req.query, "x={\"k\":1}|^`"));
        CHECK(parse_all_splits(f, strlen(f), &req, &h, (long)strlen(f)) > 0);
        CHECK(ch_str_eq(req.path, "/p"));
    }
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
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", -501},
        {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: foo:abc\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: foo:80a\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: foo:1:2\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a]b\r\n\r\n", -400},
        {"GET http://foo:abc/ HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET http://[::1/ HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET http://a:1:2/x HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /a<b HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /a\\b HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", -400},
        {"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", -400},
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
    ch_req req = new_req();
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
    ch_req req = new_req();
    chi_head h;
    CHECK(parse_all_splits(raw, sizeof raw - 1, &req, &h, -400) == -400);
    CHECK(parse_all_splits(raw2, sizeof raw2 - 1, &req, &h, -400) == -400);
}

static void test_parse_limits(void)
{
    ch_req req = new_req();
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
    const char *d = "5 ; a = b ;c;d=\"q\\\"\\\\ x\"\r\nhello\r\n0;last\r\n\r\n";
    CHECK(decode_dribbled(a, strlen(a), out, &n, &used) == 1);
    CHECK(n == 12 && memcmp(out, "hello, world", 12) == 0);
    CHECK(used == strlen(a) - 4);
    CHECK(decode_dribbled(b, strlen(b), out, &n, &used) == 1 && n == 0 && used == 5);
    CHECK(decode_dribbled(c, strlen(c), out, &n, &used) == 1 && n == 10 && memcmp(out, "0123456789", 10) == 0);
    CHECK(decode_dribbled(d, strlen(d), out, &n, &used) == 1 && n == 5 && memcmp(out, "hello", 5) == 0);
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
        /* chunk-ext grammar (RFC 9112 7.1.1), issue 9 bug 9 */
        {"5;\r\nhello\r\n0\r\n\r\n", -400},
        {"5;a b\r\nhello\r\n0\r\n\r\n", -400},
        {"5;a@b\r\nhello\r\n0\r\n\r\n", -400},
        {"5;a=\r\nhello\r\n0\r\n\r\n", -400},
        {"5;a=\"b\r\nhello\r\n0\r\n\r\n", -400},
        {"5;=b\r\nhello\r\n0\r\n\r\n", -400},
        {"5;a=b c\r\nhello\r\n0\r\n\r\n", -400},
        {"5;a=\"b\"c\r\nhello\r\n0\r\n\r\n", -400},
        /* BWS only before ';' or '=', never before the CRLF */
        {"5 \r\nhello\r\n0\r\n\r\n", -400},
        {"5\t\r\nhello\r\n0\r\n\r\n", -400},
        {"5\r\nhello\r\n0 \r\n\r\n", -400},
        {"5;a \r\nhello\r\n0\r\n\r\n", -400},
        {"5;a=b \r\nhello\r\n0\r\n\r\n", -400},
        {"5;a=\"b\" \r\nhello\r\n0\r\n\r\n", -400},
        {"5 ;a \tx\r\nhello\r\n0\r\n\r\n", -400},
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
    ch_json_reset(&j);
    ch_json_int(&j, 1);
    ch_json_str(&j, "x"); /* a second top-level value */
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

/* The word-at-a-time paths (chi_json_plain, the general loop): every length
   from 0 to 40, with one byte that needs a look at every position, against
   the byte-by-byte answer. Each string sits in a buffer of its exact size, so
   ASan (the unit build) catches a read past it. Keys and values in an
   object check the comma and colon written with them. */
static void test_json_short_strings(void)
{
    static const char *const special[] = {"/", "\"", "\\", "\n", "\x7f", "\xc3\xa9", "\x80"};
    static const char *const escaped[] = {"/", "\\\"", "\\\\", "\\n", "\x7f", "\xc3\xa9", "\\ufffd"};
    ch_json j;
    char want[256];
    size_t n, at, k;
    int ok;
    ch_json_init(&j);
    for (n = 0; n <= 40; n++) {
        for (k = 0; k < sizeof special / sizeof special[0]; k++) {
            for (at = 0; at <= n; at++) { /* at == n: nothing special (the plain path) */
                size_t sl = at < n ? strlen(special[k]) : 0, len = at < n ? n - 1 + sl : n, w = 0, i;
                char *s;
                if (at == n && k > 0) continue;
                s = (char *)malloc(len ? len : 1);
                for (i = 0; i < len; i++) s[i] = (char)('a' + i % 26);
                if (at < n) memcpy(s + at, special[k], sl);
                want[w++] = '"';
                for (i = 0; i < len; i++) {
                    if (at < n && i == at) {
                        memcpy(want + w, escaped[k], strlen(escaped[k]));
                        w += strlen(escaped[k]);
                        i += sl - 1;
                    } else {
                        want[w++] = s[i];
                    }
                }
                want[w++] = '"';
                want[w] = 0;
                ch_json_reset(&j);
                ch_json_strn(&j, s, len);
                ok = json_is(&j, want);
                if (!ok) printf("  (length %u, special %u at %u)\n", (unsigned)len, (unsigned)k, (unsigned)at);
                CHECK(ok);
                free(s);
            }
        }
    }
    ch_json_reset(&j);
    ch_json_object_begin(&j);
    ch_json_key(&j, "message");
    ch_json_str(&j, "Hello, World!");
    ch_json_key(&j, "a\"b");
    ch_json_array_begin(&j);
    ch_json_str(&j, "x");
    ch_json_str(&j, "");
    ch_json_str(&j, "0123456789abcdef");
    ch_json_array_end(&j);
    ch_json_key(&j, "");
    ch_json_strn(&j, "\n", 1);
    ch_json_object_end(&j);
    CHECK(json_is(&j, "{\"message\":\"Hello, World!\",\"a\\\"b\":[\"x\",\"\",\"0123456789abcdef\"],\"\":\"\\n\"}"));
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
    ch_req req = new_req();
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
    /* a dead end several levels into a walk without choices (parameters
       and static children only) leaves no parameter behind */
    CHECK(match(app, "/users/7/posts/9/x", &req) == NULL && req.param_count == 0);
    CHECK(match(app, "/users/7/comments/9", &req) == NULL && req.param_count == 0);
    CHECK(match(app, "/a/b/c/d", &req) == NULL && req.param_count == 0);
    CHECK(match(app, "/a/z/e", &req) == NULL && req.param_count == 0);
    n = match(app, "/a/z/d", &req);
    CHECK(n && n->routes[CH_GET].handler == h_other && req.param_count == 1 && ch_str_eq(ch_req_param(&req, "x"), "z"));
    ch_app_free(app);
}

/* Many siblings in the static-child table (>>routes: chi_node_index): each
   is found by its own handler's user pointer; kids that share length, first
   and last byte ("uaers", "ubers", ...) must collide and still be found;
   near misses are not found. */
static void test_router_many_siblings(void)
{
    static char names[200][8];
    ch_app *app = ch_app_new();
    ch_req req = new_req();
    char path[16];
    chi_node *n;
    int i, found = 0, missed = 0;
    for (i = 0; i < 200; i++) {
        if (i < 26)
            snprintf(names[i], sizeof names[i], "u%cers", 'a' + i); /* the same key */
        else
            snprintf(names[i], sizeof names[i], "s%d", i * 7919 % 10007);
        snprintf(path, sizeof path, "/%s", names[i]);
        CHECK(ch_get(app, path, h_any, names[i]) == 0);
    }
    CHECK(ch_get(app, "/", h_other, NULL) == 0);
    for (i = 0; i < 200; i++) {
        snprintf(path, sizeof path, "/%s", names[i]);
        n = match(app, path, &req);
        found += n && n->routes[CH_GET].user == names[i];
        snprintf(path, sizeof path, "/%sx", names[i]);
        missed += match(app, path, &req) == NULL;
    }
    CHECK(found == 200 && missed == 200);
    n = match(app, "/", &req);
    CHECK(n && n->routes[CH_GET].handler == h_other);
    CHECK(match(app, "/uzzrs", &req) == NULL && match(app, "/users", &req) != NULL);
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
    {
        /* a parameter named twice, an empty segment (each on a fresh app: the
           first registration error is the one ch_error keeps) */
        ch_app *a1 = ch_app_new(), *a2 = ch_app_new(), *a3 = ch_app_new(), *a4 = ch_app_new();
        CHECK(ch_get(a1, "/d/:x/:x", h_any, NULL) == -1 && strstr(ch_error(a1), "same parameter twice"));
        CHECK(ch_get(a2, "/d/:x/y/*x", h_any, NULL) == -1 && strstr(ch_error(a2), "same parameter twice"));
        CHECK(ch_get(a3, "/e//f", h_any, NULL) == -1 && strstr(ch_error(a3), "empty segment"));
        CHECK(ch_get(a4, "/d/:x/:xy", h_any, NULL) == 0 && ch_get(a4, "/d2/:xy/:x", h_any, NULL) == 0 &&
              ch_get(a4, "/e2/", h_any, NULL) == 0 && ch_get(a4, "/", h_any, NULL) == 0 && !ch_error(a4)[0]);
        ch_app_free(a1);
        ch_app_free(a2);
        ch_app_free(a3);
        ch_app_free(a4);
    }
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
    /* an IPv6 address written as in a URL, in brackets, is the address inside
       (checked without listening: a machine may have no IPv6 loopback) */
    {
        char h1[] = "[::1]", h2[] = "::1", h3[] = "[]", h4[] = "[", h5[] = "a.example";
        chi_host_unbracket(h1);
        chi_host_unbracket(h2);
        chi_host_unbracket(h3);
        chi_host_unbracket(h4);
        chi_host_unbracket(h5);
        CHECK(strcmp(h1, "::1") == 0 && strcmp(h2, "::1") == 0 && strcmp(h3, "") == 0 && strcmp(h4, "[") == 0 &&
              strcmp(h5, "a.example") == 0);
    }
    unsetenv("PORT");
    unsetenv("HOST");
    unsetenv("CHOPIN_WORKERS");
    unsetenv("REUSEPORT");
}

/* Bug (issue 9.1): the environment used to override values set in code, so
   a private service listened publicly under an inherited HOST=0.0.0.0. */
static void test_config_code_beats_env(void)
{
    ch_app *app = ch_app_new();
    ch_config cfg;
    const ch_config *used;
    setenv("HOST", "0.0.0.0", 1);
    setenv("PORT", "1", 1);                 /* would fail to bind as non-root, or clash */
    setenv("CHOPIN_WORKERS", "7", 1);
    setenv("SERVER_MODE", "garbage", 1);    /* not read at all: the field is set */
    setenv("REUSEPORT", "true", 1);
    memset(&cfg, 0, sizeof cfg);
    cfg.host = "127.0.0.1";
    cfg.port = CH_PORT_ANY;
    cfg.workers = 2;
    cfg.mode = CH_MODE_PERFORMANCE;
    cfg.reuseport = CH_NO;
    CHECK(ch_listen(app, &cfg) == 0);
    used = ch_config_used(app);
    CHECK(used && strcmp(used->host, "127.0.0.1") == 0);
    CHECK(used && used->port != 1 && used->workers == 2 && used->reuseport == CH_NO &&
          used->mode == CH_MODE_PERFORMANCE);
    ch_app_free(app);
    /* fields left at zero are still filled from the environment */
    setenv("SERVER_MODE", "standard", 1);
    setenv("PORT", "0", 1);
    unsetenv("CHOPIN_WORKERS");
    app = ch_app_new();
    memset(&cfg, 0, sizeof cfg);
    cfg.host = "127.0.0.1";
    CHECK(ch_listen(app, &cfg) == 0);
    used = ch_config_used(app);
    CHECK(used && used->mode == CH_MODE_STANDARD && used->workers == 1 && used->reuseport == CH_YES &&
          strcmp(used->host, "127.0.0.1") == 0);
    ch_app_free(app);
    unsetenv("HOST");
    unsetenv("PORT");
    unsetenv("SERVER_MODE");
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

/* ---- header lookup, query, cookies, percent-decoding ---- */

static void parse_or_die(const char *raw, ch_req *req)
{
    chi_head h;
    long r = chi_parse_head(raw, strlen(raw), &lim, req, &h);
    CHECK(r > 0);
}

static void test_header_lookup(void)
{
    ch_req req = new_req();
    parse_or_die("GET /?a=1 HTTP/1.1\r\nHost: h\r\nCONTENT-TYPE: text/x\r\nX-Custom: yes\r\nCookie: a=1\r\n"
                 "Cookie: b=2\r\nX-Request-Id: r1\r\nIf-None-Match: \"e\"\r\nX-Forwarded-Proto: https\r\n\r\n",
                 &req);
    CHECK(ch_str_eq(ch_req_common(&req, CH_H_CONTENT_TYPE), "text/x"));
    CHECK(ch_str_eq(ch_req_common(&req, CH_H_HOST), "h"));
    CHECK(ch_str_eq(ch_req_common(&req, CH_H_COOKIE), "a=1")); /* the first line of a name */
    CHECK(ch_str_eq(ch_req_common(&req, CH_H_X_REQUEST_ID), "r1"));
    CHECK(ch_str_eq(ch_req_common(&req, CH_H_IF_NONE_MATCH), "\"e\""));
    CHECK(ch_str_eq(ch_req_common(&req, CH_H_X_FORWARDED_PROTO), "https"));
    CHECK(ch_req_common(&req, CH_H_AUTHORIZATION).ptr == NULL);
    CHECK(ch_req_common(&req, CH_H_COUNT).ptr == NULL);
    CHECK(ch_str_eq(ch_req_header(&req, "content-type"), "text/x"));
    CHECK(ch_str_eq(ch_req_header(&req, "x-custom"), "yes"));
    CHECK(ch_req_header(&req, "x-missing").ptr == NULL);
}

static void test_header_ids(void)
{
    static const char *names[CH_H_COUNT] = {
        "Host", "Content-Type", "Content-Length", "Transfer-Encoding", "Connection", "Expect", "Authorization",
        "Accept", "Accept-Encoding", "Accept-Language", "Cookie", "User-Agent", "Origin", "Referer",
        "If-None-Match", "If-Modified-Since", "X-Forwarded-For", "X-Forwarded-Proto", "X-Real-IP",
        "X-Request-Id", "Cache-Control", "Upgrade", "Range"};
    int i;
    for (i = 0; i < CH_H_COUNT; i++) CHECK(chi_header_id(names[i], strlen(names[i])) == i);
    CHECK(chi_header_id("Hosts", 5) == -1);
    CHECK(chi_header_id("X-Request-Ie", 12) == -1);
    CHECK(chi_header_id("", 0) == -1);
}

static void test_url_decode(void)
{
    char out[16];
    CHECK(ch_url_decode("a%20b+c", 7, out, sizeof out, 1) == 5 && strcmp(out, "a b c") == 0);
    CHECK(ch_url_decode("a%20b+c", 7, out, sizeof out, 0) == 5 && strcmp(out, "a b+c") == 0);
    CHECK(ch_url_decode("%41%c3%A9", 9, out, sizeof out, 0) == 3 && strcmp(out, "A\xc3\xa9") == 0);
    CHECK(ch_url_decode("%00", 3, out, sizeof out, 0) == 1 && out[0] == 0);
    CHECK(ch_url_decode("%", 1, out, sizeof out, 0) == CH_BAD);
    CHECK(ch_url_decode("%4", 2, out, sizeof out, 0) == CH_BAD);
    CHECK(ch_url_decode("%zz", 3, out, sizeof out, 0) == CH_BAD);
    CHECK(ch_url_decode("ab%4g", 5, out, sizeof out, 0) == CH_BAD);
    CHECK(ch_url_decode("0123456789abcdef", 16, out, sizeof out, 0) == CH_TOO_LONG && strlen(out) == 15);
    memset(out, 'X', sizeof out);
    CHECK(ch_url_decode("ab%zz", 5, out, sizeof out, 0) == CH_BAD && strlen(out) < sizeof out);
    CHECK(ch_url_decode("abc", 3, out, 0, 0) == CH_TOO_LONG);
    CHECK(ch_url_decode("", 0, out, sizeof out, 0) == 0 && out[0] == 0);
}

static void test_query(void)
{
    ch_req req = new_req();
    char out[64];
    ch_str rest, k, v;
    int n = 0;
    parse_or_die("GET /s?q=hello+world&empty=&flag&%6Eame=J%C3%BCrgen&&q=second HTTP/1.1\r\nHost: h\r\n\r\n", &req);
    CHECK(ch_req_query(&req, "q", out, sizeof out) == 11 && strcmp(out, "hello world") == 0);
    CHECK(ch_req_query(&req, "empty", out, sizeof out) == 0 && out[0] == 0);
    CHECK(ch_req_query(&req, "flag", out, sizeof out) == 0);
    CHECK(ch_req_query(&req, "name", out, sizeof out) == 7 && strcmp(out, "J\xc3\xbcrgen") == 0);
    /* a bad %-escape never gets this far: the parser refuses the target */
    CHECK(ch_req_query(&req, "missing", out, sizeof out) == CH_ABSENT);
    CHECK(ch_req_query(&req, "q", out, 4) == CH_TOO_LONG);
    rest = req.query;
    while (ch_form_next(&rest, &k, &v)) n++;
    CHECK(n == 5);
    parse_or_die("GET /s HTTP/1.1\r\nHost: h\r\n\r\n", &req);
    CHECK(ch_req_query(&req, "q", out, sizeof out) == CH_ABSENT);
}

static void test_cookies(void)
{
    ch_req req = new_req();
    char out[64];
    parse_or_die("GET / HTTP/1.1\r\nHost: h\r\nCookie: sid=abc123; theme=\"dark\";  lang=fr%2DCA ;x=a%zz\r\n\r\n", &req);
    CHECK(ch_req_cookie(&req, "sid", out, sizeof out) == 6 && strcmp(out, "abc123") == 0);
    CHECK(ch_req_cookie(&req, "theme", out, sizeof out) == 4 && strcmp(out, "dark") == 0);
    CHECK(ch_req_cookie(&req, "lang", out, sizeof out) == 5 && strcmp(out, "fr-CA") == 0);
    CHECK(ch_req_cookie(&req, "x", out, sizeof out) == CH_BAD);
    CHECK(ch_req_cookie(&req, "si", out, sizeof out) == CH_ABSENT);
    CHECK(ch_req_cookie(&req, "nope", out, sizeof out) == CH_ABSENT);
    parse_or_die("GET / HTTP/1.1\r\nHost: h\r\n\r\n", &req);
    CHECK(ch_req_cookie(&req, "sid", out, sizeof out) == CH_ABSENT);
}

/* ---- JSON reader ---- */

static void test_json_reader_valid(void)
{
    const char *src = " {\"a\": [1, -2.5e3, true, false, null, {\"b\": \"x\\\"y\\u00e9\\ud83c\\udfb9\\n\"}], "
                      "\"n\": -9223372036854775808, \"big\": 9223372036854775808, \"e\\u0073c\": 0, \"s\": \"\"} ";
    ch_jtok tok[32];
    ch_jdoc d;
    char out[32];
    long long i;
    double x;
    int b, t;
    CHECK(ch_json_parse(&d, src, strlen(src), tok, 32, 0) == 19);
    CHECK(ch_json_type(&d, 0) == CH_JSON_OBJECT && tok[0].count == 5);
    t = ch_json_find(&d, 0, "a");
    CHECK(ch_json_type(&d, t) == CH_JSON_ARRAY && tok[t].count == 6);
    CHECK(ch_json_get_int(&d, ch_json_at(&d, t, 0), &i) == 0 && i == 1);
    CHECK(ch_json_get_int(&d, ch_json_at(&d, t, 1), &i) == -1); /* not an integer */
    CHECK(ch_json_get_double(&d, ch_json_at(&d, t, 1), &x) == 0 && x == -2500.0);
    CHECK(ch_json_get_bool(&d, ch_json_at(&d, t, 2), &b) == 0 && b == 1);
    CHECK(ch_json_get_bool(&d, ch_json_at(&d, t, 3), &b) == 0 && b == 0);
    CHECK(ch_json_type(&d, ch_json_at(&d, t, 4)) == CH_JSON_NULL);
    CHECK(ch_json_at(&d, t, 6) == -1);
    CHECK(ch_json_get_str(&d, ch_json_path(&d, 0, "a.5.b"), out, sizeof out) == 10);
    CHECK(strcmp(out, "x\"y\xc3\xa9\xf0\x9f\x8e\xb9\n") == 0);
    CHECK(ch_json_get_int(&d, ch_json_find(&d, 0, "n"), &i) == 0 && i == LLONG_MIN);
    CHECK(ch_json_get_int(&d, ch_json_find(&d, 0, "big"), &i) == -1); /* out of range */
    CHECK(ch_json_find(&d, 0, "esc") >= 0);                          /* an escaped key */
    CHECK(ch_json_get_str(&d, ch_json_find(&d, 0, "s"), out, sizeof out) == 0);
    CHECK(ch_json_find(&d, 0, "missing") == -1);
    CHECK(ch_json_path(&d, 0, "a.9") == -1 && ch_json_path(&d, 0, "a.x") == -1);
    CHECK(ch_json_get_str(&d, ch_json_path(&d, 0, "a.5.b"), out, 4) == CH_TOO_LONG);
    CHECK(ch_json_get_str(&d, ch_json_find(&d, 0, "n"), out, sizeof out) == CH_BAD);
    CHECK(ch_json_get_str(&d, ch_json_find(&d, 0, "s"), out, 0) == CH_TOO_LONG); /* cap 0: nothing written */
    CHECK(tok[1].next == 2); /* a key's next is its value */
    CHECK(ch_json_parse(&d, "0", 1, tok, 1, 0) == 1 && ch_json_type(&d, 0) == CH_JSON_NUMBER);
    CHECK(ch_json_parse(&d, "[]", 2, tok, 1, 0) == 1 && tok[0].count == 0);
}

static void test_json_reader_invalid(void)
{
    static const char *bad[] = {
        "", " ", "{", "}", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "{\"a\":}", "[1 2]",
        "01", "-", "1.", ".5", "1e", "1e+", "+1", "0x10", "NaN", "Infinity", "tru", "nul", "truex",
        "\"abc", "\"a\\x\"", "\"\\u12\"", "\"\\u12g4\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",
        "\"a\x01\"", "\"\xff\"", "\"\xc3(\"", "[1]x", "{} {}", "[\"a\"]]", "'a'", "[1,\n", "\"\\",
    };
    ch_jtok tok[64];
    ch_jdoc d;
    size_t i;
    char deep[200];
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r = ch_json_parse(&d, bad[i], strlen(bad[i]), tok, 64, 0);
        if (r != -1 || !d.err) {
            printf("  accepted bad JSON #%u: %s\n", (unsigned)i, bad[i]);
            CHECK(r == -1 && d.err);
        }
    }
    CHECK(ch_json_parse(&d, "[1, 2, x]", 9, tok, 64, 0) == -1 && d.err_pos == 7);
    /* depth and token limits */
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    CHECK(ch_json_parse(&d, deep, 200, tok, 64, 0) == -1 && strstr(d.err, "deep"));
    CHECK(ch_json_parse(&d, deep + 90, 20, tok, 64, 0) == 10);
    CHECK(ch_json_parse(&d, "[1,2,3,4,5]", 11, tok, 5, 0) == -1 && strstr(d.err, "too many"));
    /* getters on a failed document refuse */
    CHECK(ch_json_type(&d, 0) == CH_JSON_NONE);
}

/* Random documents: written by the writer, read back by the reader. */
static unsigned rt_seed = 4242;
static unsigned rt_rand(void)
{
    rt_seed = rt_seed * 1103515245u + 12345u;
    return rt_seed >> 16;
}

static void rt_write(ch_json *j, int depth)
{
    unsigned kind = depth > 4 ? rt_rand() % 5 : rt_rand() % 7, i, n;
    char s[12];
    switch (kind) {
    case 0: ch_json_int(j, (long long)rt_rand() * (rt_rand() % 2 ? -1 : 1)); break;
    case 1: ch_json_double(j, (double)rt_rand() / 7.0); break;
    case 2: ch_json_bool(j, (int)(rt_rand() % 2)); break;
    case 3: ch_json_null(j); break;
    case 4:
        for (i = 0; i < sizeof s - 1; i++) s[i] = (char)(rt_rand() % 128);
        ch_json_strn(j, s, sizeof s - 1);
        break;
    case 5:
        ch_json_array_begin(j);
        for (n = rt_rand() % 4, i = 0; i < n; i++) rt_write(j, depth + 1);
        ch_json_array_end(j);
        break;
    default:
        ch_json_object_begin(j);
        for (n = rt_rand() % 4, i = 0; i < n; i++) {
            char key[8];
            snprintf(key, sizeof key, "k%u", i);
            ch_json_key(j, key);
            rt_write(j, depth + 1);
        }
        ch_json_object_end(j);
    }
}

static void test_json_round_trip(void)
{
    ch_json j;
    ch_jtok tok[512];
    ch_jdoc d;
    int i;
    ch_json_init(&j);
    for (i = 0; i < 2000; i++) {
        ch_json_reset(&j);
        rt_write(&j, 0);
        if (j.failed || ch_json_parse(&d, j.buf, j.len, tok, 512, 16) < 0) {
            printf("  round trip failed: %.*s (%s at %u)\n", (int)j.len, j.buf, d.err, (unsigned)d.err_pos);
            CHECK(0);
            break;
        }
    }
    /* a string survives exactly, every byte value below 0x80 included */
    {
        char raw[128], back[256];
        int k;
        for (k = 0; k < 128; k++) raw[k] = (char)k;
        ch_json_reset(&j);
        ch_json_strn(&j, raw, 128);
        CHECK(ch_json_parse(&d, j.buf, j.len, tok, 4, 0) == 1);
        CHECK(ch_json_get_str(&d, 0, back, sizeof back) == 128 && memcmp(back, raw, 128) == 0);
    }
    ch_json_free(&j);
}

/* ---- routing, middleware and responses, on a worker without sockets ---- */

static chi_worker *test_worker(ch_app *app)
{
    static chi_worker w;
    memset(&w, 0, sizeof w);
    w.app = app;
    w.res.w = &w;
    w.res.json = &w.json;
    chi_req_bind(&w.req, &w.req_store);
    chi_common_init(w.common);
    chi_format_date(784111777, w.common + CHI_DATE_AT);
    chi_build_ok_lead(&w); /* the 200 lead, as a worker builds it */
    return &w;
}

static void free_test_worker(chi_worker *w)
{
    chi_buf_free(&w->out);
    ch_json_free(&w->json);
    chi_buf_free(&w->res.ctype);
    chi_buf_free(&w->res.headers);
}

/* Routes `raw` and returns the response as written, NUL-terminated. */
static const char *respond(chi_worker *w, const char *raw)
{
    chi_head h;
    CHECK(chi_parse_head(raw, strlen(raw), &lim, &w->req, &h) > 0);
    w->req.body = NULL;
    w->req.body_len = 0;
    w->req.ctx = NULL;
    w->out.len = 0;
    chi_dispatch(w, &w->req, 1);
    chi_buf_append(&w->out, "", 1);
    return w->out.ptr;
}

static char trail[64];
static int mw_mark(ch_req *req, ch_res *res, void *user)
{
    (void)res;
    strcat(trail, (const char *)user);
    req->ctx = (void *)user;
    return CH_NEXT;
}
static int mw_stop(ch_req *req, ch_res *res, void *user)
{
    (void)req;
    (void)user;
    strcat(trail, "!");
    ch_res_error(res, 403);
    return CH_DONE;
}
static void h_ctx(ch_req *req, ch_res *res)
{
    strcat(trail, "H");
    ch_res_text(res, 200, req->ctx ? (const char *)req->ctx : "-");
}
static void fin_header(ch_req *req, ch_res *res, void *user)
{
    (void)req;
    (void)user;
    ch_res_header(res, "X-Finished", "1");
}
static int mw_finisher(ch_req *req, ch_res *res, void *user)
{
    (void)req;
    (void)user;
    ch_res_on_finish(res, fin_header, NULL);
    return CH_NEXT;
}
static int after_calls, after_status;
static size_t after_bytes;
static void after_hook(const ch_req *req, const ch_res *res, void *user)
{
    (void)req;
    (void)user;
    after_calls++;
    after_status = ch_res_status_code(res);
    after_bytes = ch_res_bytes(res);
    CHECK(ch_res_seconds(res) >= 0);
}

static void test_dispatch_404_405_options(void)
{
    ch_app *app = ch_app_new();
    chi_worker *w;
    const char *r;
    ch_get(app, "/items/:id", h_ctx, NULL);
    ch_delete(app, "/items/:id", h_ctx, NULL);
    ch_fast_text(app, "/fast", "F");
    w = test_worker(app);
    CHECK(chi_build_fast(w) == 0);
    r = respond(w, "GET /nope HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 404 Not Found\r\n", 24) == 0 && strstr(r, "{\"detail\":\"Not Found\"}"));
    r = respond(w, "POST /items/1 HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 405 ", 13) == 0 && strstr(r, "\r\nAllow: GET, HEAD, DELETE, OPTIONS\r\n"));
    r = respond(w, "OPTIONS /items/1 HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0 && strstr(r, "\r\nAllow: GET, HEAD, DELETE, OPTIONS\r\n"));
    CHECK(strstr(r, "Content-Length: 0\r\n") != NULL);
    r = respond(w, "PUT /fast HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 405 ", 13) == 0 && strstr(r, "\r\nAllow: GET, HEAD, OPTIONS\r\n"));
    r = respond(w, "HEAD /items/1 HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0 && strstr(r, "Content-Length: 1\r\n") &&
          strcmp(r + strlen(r) - 4, "\r\n\r\n") == 0);
    r = respond(w, "BREW /items/1 HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 501 ", 13) == 0);
    r = respond(w, "GET /fast HTTP/1.0\r\n\r\n"); /* answered as kept alive: 1.0 must be told */
    CHECK(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0 && strstr(r, "\r\nConnection: keep-alive\r\n"));
    free_test_worker(w);
    ch_json_free(&w->json);
    chi_buf_free(&w->fast_bytes);
    CHOPIN_FREE(w->fast);
    ch_app_free(app);
}

static void test_middleware_order(void)
{
    ch_app *app = ch_app_new();
    ch_group *outer, *inner, *locked;
    chi_worker *w;
    const char *r;
    ch_use(app, mw_mark, (void *)"g");
    outer = ch_group_new(app, "/api/");
    ch_group_use(outer, mw_mark, (void *)"o");
    inner = ch_group_sub(outer, "/v1");
    ch_group_use(inner, mw_mark, (void *)"i");
    ch_group_use(inner, mw_finisher, NULL);
    ch_group_route(inner, CH_GET, "/x", h_ctx, NULL);
    ch_group_route(inner, CH_GET, "/", h_ctx, NULL);
    locked = ch_group_new(app, "");
    ch_group_use(locked, mw_stop, NULL);
    ch_group_route(locked, CH_GET, "/secret", h_ctx, NULL);
    ch_get(app, "/open", h_ctx, NULL);
    ch_after(app, after_hook, NULL);
    w = test_worker(app);
    CHECK(chi_build_fast(w) == 0);

    trail[0] = 0;
    r = respond(w, "GET /api/v1/x HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strcmp(trail, "goiH") == 0);
    CHECK(strstr(r, "\r\nX-Finished: 1\r\n") != NULL);
    CHECK(strcmp(r + strlen(r) - 1, "i") == 0); /* ctx from the last middleware */
    CHECK(after_calls == 1 && after_status == 200 && after_bytes == strlen(r));
    trail[0] = 0;
    respond(w, "GET /api/v1 HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strcmp(trail, "goiH") == 0);
    trail[0] = 0;
    r = respond(w, "GET /secret HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strcmp(trail, "g!") == 0 && strncmp(r, "HTTP/1.1 403 ", 13) == 0);
    CHECK(after_calls == 3 && after_status == 403);
    trail[0] = 0;
    r = respond(w, "GET /open HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strcmp(trail, "gH") == 0 && strstr(r, "X-Finished") == NULL);
    trail[0] = 0;
    respond(w, "GET /missing HTTP/1.1\r\nHost: h\r\n\r\n"); /* app middleware sees 404s too */
    CHECK(strcmp(trail, "g") == 0 && after_status == 404);
    free_test_worker(w);
    CHOPIN_FREE(w->fast);
    ch_app_free(app);
}

static void h_headers(ch_req *req, ch_res *res)
{
    (void)req;
    CHECK(ch_res_header(res, "X-Ok", "fine value\twith tab") == 0);
    CHECK(ch_res_header(res, "X-Bad", "a\r\nSet-Cookie: x=1") == -1);
    CHECK(ch_res_header(res, "X-Bad", "a\nb") == -1);
    CHECK(ch_res_headern(res, "X-Bad", 5, "a\0b", 3) == -1);
    CHECK(ch_res_header(res, "X Bad", "v") == -1);
    CHECK(ch_res_header(res, "X-Bad\r\nY", "v") == -1);
    CHECK(ch_res_header(res, "", "v") == -1);
    CHECK(ch_res_header(res, "Content-Length", "5") == -1);
    CHECK(ch_res_header(res, "transfer-encoding", "chunked") == -1);
    CHECK(ch_res_header(res, "Connection", "close") == -1);
    CHECK(ch_res_header(res, "Content-Type", "text/csv") == 0);
    ch_res_printf(res, 201, NULL, "n=%d", 42);
}

static void h_redirect(ch_req *req, ch_res *res)
{
    (void)req;
    CHECK(ch_res_redirect(res, 302, "/login\r\nX-Evil: 1") == -1);
    ch_res_redirect(res, 303, "/next");
}

static void test_response_headers(void)
{
    ch_app *app = ch_app_new();
    chi_worker *w;
    const char *r;
    ch_get(app, "/h", h_headers, NULL);
    ch_get(app, "/r", h_redirect, NULL);
    w = test_worker(app);
    CHECK(chi_build_fast(w) == 0);
    r = respond(w, "GET /h HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 201 Created\r\n", 22) == 0);
    CHECK(strstr(r, "\r\nX-Ok: fine value\twith tab\r\n") && strstr(r, "\r\nContent-Type: text/csv\r\n"));
    CHECK(strstr(r, "X-Bad") == NULL && strstr(r, "Set-Cookie") == NULL && strstr(r, "chunked") == NULL);
    CHECK(strstr(r, "\r\nContent-Length: 4\r\n") && strcmp(r + strlen(r) - 4, "n=42") == 0);
    r = respond(w, "GET /r HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 303 See Other\r\n", 24) == 0 && strstr(r, "\r\nLocation: /next\r\n"));
    CHECK(strstr(r, "X-Evil") == NULL);
    free_test_worker(w);
    CHOPIN_FREE(w->fast);
    ch_app_free(app);
}

static int verify_admin(const char *tok, size_t len, ch_req *req, void *user)
{
    (void)req;
    (void)user;
    if (len == 5 && memcmp(tok, "admin", 5) == 0) return 0;
    if (len == 4 && memcmp(tok, "user", 4) == 0) return 403;
    return 401;
}

static void test_bearer(void)
{
    ch_app *app = ch_app_new();
    ch_bearer tok, ver;
    ch_group *a, *b;
    chi_worker *w;
    const char *r;
    memset(&tok, 0, sizeof tok);
    memset(&ver, 0, sizeof ver);
    tok.token = "s3cret";
    ver.verify = verify_admin;
    a = ch_group_new(app, "/a");
    ch_group_use(a, ch_mw_bearer, &tok);
    ch_group_route(a, CH_GET, "/x", h_ctx, NULL);
    b = ch_group_new(app, "/b");
    ch_group_use(b, ch_mw_bearer, &ver);
    ch_group_route(b, CH_GET, "/x", h_ctx, NULL);
    w = test_worker(app);
    CHECK(chi_build_fast(w) == 0);
    r = respond(w, "GET /a/x HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 401 ", 13) == 0 && strstr(r, "WWW-Authenticate: Bearer\r\n") &&
          strstr(r, "{\"detail\":\"Authentication required\"}"));
    r = respond(w, "GET /a/x HTTP/1.1\r\nHost: h\r\nAuthorization: Basic czNjcmV0\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 401 ", 13) == 0);
    r = respond(w, "GET /a/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer s3cre\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 401 ", 13) == 0 && strstr(r, "invalid_token"));
    r = respond(w, "GET /a/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer s3cret!\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 401 ", 13) == 0);
    r = respond(w, "GET /a/x HTTP/1.1\r\nHost: h\r\nAuthorization: bearer s3cret\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200 ", 13) == 0);
    r = respond(w, "GET /b/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer user\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 403 ", 13) == 0 && strstr(r, "{\"detail\":\"Permission denied\"}"));
    r = respond(w, "GET /b/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer admin\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200 ", 13) == 0);
    free_test_worker(w);
    CHOPIN_FREE(w->fast);
    ch_app_free(app);
}

int main(void)
{
    run("itoa", test_itoa);
    run("date: IMF-fixdate", test_date);
    run("character table matches the RFC grammar", test_char_table);
    run("SWAR value scanner agrees with the table", test_skip_value);
    run("JSON writer: the word test agrees with the table", test_json_word);
    run("header names: every case, every one-byte change", test_header_names);
    run("responses: the one head writer and error bodies", test_error_responses);
    run("parser: a GET with query and headers", test_parse_simple_get);
    run("parser: the worker's Host memo changes no answer", test_parse_host_memo);
    run("parser: the worker's memo of other field lines changes no answer", test_parse_other_memo);
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
    run("json: strings of every length 0-40, a special byte at every position", test_json_short_strings);
    run("json: numbers round-trip", test_json_numbers);
    run("router: matching and precedence", test_router_match);
    run("router: 200 siblings, 26 with the same hash key", test_router_many_siblings);
    run("router: registration errors", test_router_errors);
    run("router: Allow list", test_allow_list);
    run("request: common headers in O(1)", test_header_lookup);
    run("request: common header ids", test_header_ids);
    run("request: percent-decoding", test_url_decode);
    run("request: lazy query parsing", test_query);
    run("request: cookies", test_cookies);
    run("json reader: valid documents and getters", test_json_reader_valid);
    run("json reader: malformed input, depth and size limits", test_json_reader_invalid);
    run("json: writer to reader round trip", test_json_round_trip);
    run("dispatch: 404, 405 with Allow, OPTIONS, HEAD, 501", test_dispatch_404_405_options);
    run("middleware: order, groups, ctx, stop, finishers, after-hooks", test_middleware_order);
    run("response: header validation, printf, redirect", test_response_headers);
    run("middleware: bearer auth 401/403", test_bearer);
    run("config: environment", test_config_env);
    run("config: values set in code beat the environment", test_config_code_beats_env);
    run("config: port in use", test_port_in_use);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
