/* unit_ws.c - unit tests for chopin.h's WebSocket core (RFC 6455): SHA-1,
   base64, the handshake checks and accept key, the incremental UTF-8
   validator, close codes, the frame writer and the incremental frame
   parser, every stream also fed at every split point. It includes the
   implementation, so the internal chi_ functions are reachable.
   Last line: "N passed, N failed". */
#define CHOPIN_IMPLEMENTATION
#include "../../chopin.h"
#include "ws_frames.h"

#include "../check.h"

static const unsigned char KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* ---- SHA-1 and base64 ---- */

static void hex(const unsigned char *d, size_t n, char *out)
{
    size_t i;
    for (i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static int sha1_is(const void *data, size_t n, const char *want)
{
    chi_sha1 s;
    unsigned char d[20];
    char h[41];
    chi_sha1_init(&s);
    chi_sha1_update(&s, data, n);
    chi_sha1_final(&s, d);
    hex(d, 20, h);
    return strcmp(h, want) == 0;
}

static void test_sha1(void)
{
    /* FIPS 180 and RFC 3174 test vectors */
    static const char *abc56 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    chi_sha1 s;
    unsigned char d[20], e[20];
    char h[41];
    char *million = (char *)malloc(1000000);
    size_t i, split;
    CHECK(sha1_is("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709"));
    CHECK(sha1_is("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d"));
    CHECK(sha1_is(abc56, 56, "84983e441c3bd26ebaae4aa1f95129e5e54670f1"));
    memset(million, 'a', 1000000);
    CHECK(sha1_is(million, 1000000, "34aa973cd4c4daa4f61eeb2bdbad27316534016f"));
    /* any split of the input gives the same digest (55, 56, 63, 64, 65 bytes
       straddle the padding cases) */
    for (i = 50; i <= 130; i++) {
        chi_sha1_init(&s);
        chi_sha1_update(&s, million, i);
        chi_sha1_final(&s, d);
        for (split = 0; split <= i; split += 7) {
            chi_sha1_init(&s);
            chi_sha1_update(&s, million, split);
            chi_sha1_update(&s, million + split, i - split);
            chi_sha1_final(&s, e);
            CHECK(memcmp(d, e, 20) == 0);
        }
    }
    chi_sha1_init(&s);
    chi_sha1_update(&s, "The quick brown fox jumps over the lazy dog", 43);
    chi_sha1_final(&s, d);
    hex(d, 20, h);
    CHECK(strcmp(h, "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12") == 0);
    free(million);
}

static void test_base64(void)
{
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    static const char *bad[] = {"Zg=", "Zh==", "Zm9=", "Z===", "Zm9v=", "Zg==Zg==", "Zm9v!A==", "=Zg=", "Zg=a",
                                "Zm 9", "Zm9vYg=\n"};
    unsigned char buf[64], raw[256];
    char out[400];
    size_t i, n;
    unsigned seed = 7;
    for (i = 0; i < 7; i++) {
        n = chi_base64_encode((const unsigned char *)plain[i], strlen(plain[i]), out);
        CHECK(n == strlen(enc[i]) && memcmp(out, enc[i], n) == 0);
        CHECK(chi_base64_decode(enc[i], strlen(enc[i]), buf, sizeof buf) == (long)strlen(plain[i]));
        CHECK(memcmp(buf, plain[i], strlen(plain[i])) == 0);
    }
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK(chi_base64_decode(bad[i], strlen(bad[i]), buf, sizeof buf) == -1);
    CHECK(chi_base64_decode("Zm9vYmFy", 8, buf, 5) == -1); /* no room */
    /* round trips of random bytes, every length to 256 */
    for (n = 0; n <= 256; n++) {
        size_t k;
        for (k = 0; k < n; k++) {
            seed = seed * 1103515245u + 12345u;
            raw[k] = (unsigned char)(seed >> 16);
        }
        k = chi_base64_encode(raw, n, out);
        CHECK(k == (n + 2) / 3 * 4);
        CHECK(chi_base64_decode(out, k, (unsigned char *)out + 360, 40) == (n <= 40 ? (long)n : -1));
        {
            unsigned char back[256];
            CHECK(chi_base64_decode(out, k, back, sizeof back) == (long)n && memcmp(back, raw, n) == 0);
        }
    }
}

/* ---- the handshake ---- */

typedef struct hs_req {
    ch_req req;
    chi_req_store store;
    char buf[2048];
} hs_req;

/* Parses a request head given without its final CRLF. */
static ch_req *hs_parse(hs_req *r, const char *head)
{
    static const chi_limits lim = {16384, 8192, 1 << 20};
    chi_head h;
    size_t n = strlen(head);
    memcpy(r->buf, head, n);
    memcpy(r->buf + n, "\r\n", 2);
    chi_req_bind(&r->req, &r->store);
    if (chi_parse_head(r->buf, n + 2, &lim, &r->req, &h) <= 0) return NULL;
    return &r->req;
}

#define HS_GOOD_HEADERS "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
#define HS_KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define HS_V13 "Sec-WebSocket-Version: 13\r\n"

static int hs_status(const char *head)
{
    hs_req r;
    ch_str key = {NULL, 0};
    ch_req *req = hs_parse(&r, head);
    if (!req) return -1;
    return chi_ws_check_request(req, &key);
}

static void test_handshake(void)
{
    char accept[CHI_WS_ACCEPT_LEN + 1];
    hs_req r;
    ch_str key = {NULL, 0};
    ch_req *req;
    /* RFC 6455 1.3's example */
    chi_ws_accept(chi_str("dGhlIHNhbXBsZSBub25jZQ==", 24), accept);
    accept[CHI_WS_ACCEPT_LEN] = 0;
    CHECK(strcmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);

    req = hs_parse(&r, "GET /chat HTTP/1.1\r\n" HS_GOOD_HEADERS HS_KEY HS_V13);
    CHECK(req && chi_ws_check_request(req, &key) == 0 && ch_str_eq(key, "dGhlIHNhbXBsZSBub25jZQ=="));
    /* tokens in any case, inside lists */
    CHECK(hs_status("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: foo/2, WebSocket\r\nConnection: keep-alive, UPGRADE\r\n" HS_KEY
                    HS_V13) == 0);
    /* not asking for WebSocket: 426 */
    CHECK(hs_status("GET / HTTP/1.1\r\nHost: x\r\n") == 426);
    CHECK(hs_status("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n" HS_KEY HS_V13) == 426);
    /* other versions, none, two: 426 */
    CHECK(hs_status("GET / HTTP/1.1\r\n" HS_GOOD_HEADERS HS_KEY "Sec-WebSocket-Version: 8\r\n") == 426);
    CHECK(hs_status("GET / HTTP/1.1\r\n" HS_GOOD_HEADERS HS_KEY) == 426);
    CHECK(hs_status("GET / HTTP/1.1\r\n" HS_GOOD_HEADERS HS_KEY "Sec-WebSocket-Version: 13, 8\r\n") == 426);
    CHECK(hs_status("GET / HTTP/1.1\r\n" HS_GOOD_HEADERS HS_KEY HS_V13 HS_V13) == 426);
    /* malformed: 400 */
    CHECK(hs_status("POST / HTTP/1.1\r\n" HS_GOOD_HEADERS HS_KEY HS_V13 "Content-Length: 0\r\n") == 400);
    CHECK(hs_status("GET / HTTP/1.0\r\n" HS_GOOD_HEADERS HS_KEY HS_V13) == 400);
    CHECK(hs_status("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" HS_KEY HS_V13) == 400);
    CHECK(hs_status("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: close\r\n" HS_KEY HS_V13) == 400);
    CHECK(hs_status("GET / HTTP/1.1\r\n" HS_GOOD_HEADERS HS_V13) == 400);
    CHECK(hs_status("GET / HTTP/1.1\r\n" HS_GOOD_HEADERS "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j\r\n" HS_V13) == 400);
    CHECK(hs_status("GET / HTTP/1.1\r\n" HS_GOOD_HEADERS "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n" HS_V13) == 400);
    CHECK(hs_status("GET / HTTP/1.1\r\n" HS_GOOD_HEADERS "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n" HS_V13) == 400);
    CHECK(hs_status("GET / HTTP/1.1\r\n" HS_GOOD_HEADERS HS_KEY HS_KEY HS_V13) == 400);
}

static void test_lists(void)
{
    ch_str rest = chi_str(" a , ,b\t,c ", 11), item;
    CHECK(chi_list_next(&rest, &item) && ch_str_eq(item, "a"));
    CHECK(chi_list_next(&rest, &item) && ch_str_eq(item, "b"));
    CHECK(chi_list_next(&rest, &item) && ch_str_eq(item, "c"));
    CHECK(!chi_list_next(&rest, &item));
    CHECK(chi_list_has(chi_str("Upgrade", 7), "upgrade"));
    CHECK(!chi_list_has(chi_str("upgrades", 8), "upgrade"));
    CHECK(!chi_list_has(chi_str(NULL, 0), "upgrade"));
}

/* ---- UTF-8 ---- */

/* The reference: decode code points one by one. 1 valid, 0 invalid, and
   *prefix tells whether the bytes could still begin valid UTF-8. */
static int ref_valid(const unsigned char *s, size_t n, int *prefix)
{
    size_t i = 0;
    *prefix = 1;
    while (i < n) {
        unsigned c = s[i], cp, len, k;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC0 && c < 0xE0) len = 2, cp = c & 0x1F;
        else if (c >= 0xE0 && c < 0xF0) len = 3, cp = c & 0x0F;
        else if (c >= 0xF0 && c < 0xF8) len = 4, cp = c & 0x07;
        else return *prefix = 0;
        for (k = 1; k < len; k++) {
            if (i + k >= n) {
                /* truncated: a valid prefix if some completion is valid */
                unsigned lo = cp << 6 * (len - k), hi = (cp << 6 * (len - k)) | ((1u << 6 * (len - k)) - 1);
                unsigned min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
                if (hi < min || lo > 0x10FFFF || (lo >= 0xD800 && hi <= 0xDFFF)) *prefix = 0;
                return 0;
            }
            if ((s[i + k] & 0xC0) != 0x80) return *prefix = 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return *prefix = 0;
        i += len;
    }
    return 1;
}

static int utf8_whole(const unsigned char *s, size_t n)
{
    chi_utf8 u;
    chi_utf8_init(&u);
    return chi_utf8_feed(&u, s, n) == 0 && chi_utf8_done(&u);
}

static void test_utf8_samples(void)
{
    static const char *good[] = {"", "hello", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", "\xc2\x80", "\xdf\xbf",
                                 "\xe0\xa0\x80", "\xef\xbf\xbf", "\xed\x9f\xbf", "\xee\x80\x80", "\xf0\x90\x80\x80",
                                 "\xf4\x8f\xbf\xbf", "\xef\xbb\xbf BOM", "0123456789abcdef0123456789\xc3\xa9"};
    static const char *bad[] = {"\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf",
                                "\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
                                "\xf8\x88\x80\x80\x80", "\xfe", "\xff", "\xc3", "\xe2\x82", "\xf0\x9f\x98",
                                "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited",
                                "0123456789abcdef0123456789\x80"};
    size_t i;
    for (i = 0; i < sizeof good / sizeof good[0]; i++) CHECK(utf8_whole((const unsigned char *)good[i], strlen(good[i])));
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK(!utf8_whole((const unsigned char *)bad[i], strlen(bad[i])));
}

/* Every 1-, 2- and 3-byte string, and 4-byte strings over the bytes that
   matter, against the reference; each fed whole and split at every point. */
static void test_utf8_exhaustive(void)
{
    static const unsigned char pick[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1,
                                         0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3,
                                         0xf4, 0xf5, 0xf7, 0xf8, 0xff};
    unsigned char s[4];
    unsigned a, b, c, d, bad = 0;
    size_t np = sizeof pick;
    for (a = 0; a < 256; a++) {
        for (b = 0; b < 256; b++) {
            for (c = 0; c < 256; c++) {
                int prefix, want;
                chi_utf8 u;
                size_t cut;
                s[0] = (unsigned char)a, s[1] = (unsigned char)b, s[2] = (unsigned char)c;
                want = ref_valid(s, 3, &prefix);
                if (utf8_whole(s, 3) != want) bad++;
                chi_utf8_init(&u);
                if ((chi_utf8_feed(&u, s, 3) == 0) != prefix) bad++;
                for (cut = 1; cut < 3 && c % 17 == 0; cut++) {
                    chi_utf8_init(&u);
                    if (((chi_utf8_feed(&u, s, cut) == 0 && chi_utf8_feed(&u, s + cut, 3 - cut) == 0) &&
                         chi_utf8_done(&u)) != want)
                        bad++;
                }
            }
            s[0] = (unsigned char)a, s[1] = (unsigned char)b;
            {
                int prefix, want = ref_valid(s, 2, &prefix);
                if (utf8_whole(s, 2) != want) bad++;
            }
        }
        {
            int prefix, want;
            s[0] = (unsigned char)a;
            want = ref_valid(s, 1, &prefix);
            if (utf8_whole(s, 1) != want) bad++;
        }
    }
    for (a = 0; a < np; a++)
        for (b = 0; b < np; b++)
            for (c = 0; c < np; c++)
                for (d = 0; d < np; d++) {
                    int prefix, want;
                    size_t cut;
                    s[0] = pick[a], s[1] = pick[b], s[2] = pick[c], s[3] = pick[d];
                    want = ref_valid(s, 4, &prefix);
                    if (utf8_whole(s, 4) != want) bad++;
                    for (cut = 1; cut < 4; cut++) {
                        chi_utf8 u;
                        chi_utf8_init(&u);
                        if (((chi_utf8_feed(&u, s, cut) == 0 && chi_utf8_feed(&u, s + cut, 4 - cut) == 0) &&
                             chi_utf8_done(&u)) != want)
                            bad++;
                    }
                }
    if (bad) printf("  %u disagreements\n", bad);
    CHECK(bad == 0);
}

/* ---- close codes and the writer ---- */

static void test_close_codes(void)
{
    static const int ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const int no[] = {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535, -1};
    unsigned char out[CHI_WS_MAX_CONTROL];
    char reason[200];
    size_t i, n;
    for (i = 0; i < sizeof ok / sizeof ok[0]; i++) CHECK(chi_ws_close_code_ok(ok[i]));
    for (i = 0; i < sizeof no / sizeof no[0]; i++) CHECK(!chi_ws_close_code_ok(no[i]));
    n = chi_ws_close_payload(out, 1001, "bye", 3);
    CHECK(n == 5 && out[0] == 0x03 && out[1] == 0xE9 && memcmp(out + 2, "bye", 3) == 0);
    /* a long reason is cut at a character boundary: 61 two-byte characters
       fit in 123 bytes (122), the 62nd does not */
    for (i = 0; i < 100; i++) memcpy(reason + 2 * i, "\xc3\xa9", 2);
    n = chi_ws_close_payload(out, 1000, reason, 200);
    CHECK(n == 2 + 122 && utf8_whole(out + 2, n - 2));
}

static void test_writer(void)
{
    static const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 1u << 24, (uint64_t)1 << 40};
    static const size_t head[] = {2, 2, 2, 4, 4, 4, 10, 10, 10};
    unsigned char out[10];
    chi_buf b = {NULL, 0, 0};
    size_t i;
    for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        size_t n = chi_ws_head_put(out, CHI_WS_BINARY, 1, lens[i]);
        uint64_t got = out[1] & 0x7F;
        int k;
        CHECK(n == head[i] && out[0] == 0x82 && !(out[1] & 0x80));
        if (got == 126) got = (uint64_t)out[2] << 8 | out[3];
        else if (got == 127)
            for (got = 0, k = 0; k < 8; k++) got = got << 8 | out[2 + k];
        CHECK(got == lens[i]);
    }
    CHECK(chi_ws_head_put(out, CHI_WS_TEXT, 0, 3) == 2 && out[0] == 0x01);
    CHECK(chi_ws_frame_append(&b, CHI_WS_TEXT, "Hello", 5) == 0);
    CHECK(b.len == 7 && memcmp(b.ptr, "\x81\x05Hello", 7) == 0);
    chi_buf_free(&b);
}

/* ---- the frame parser ---- */

/* Runs the stream whole, byte by byte, and cut at every single point; the
   transcripts must agree; returns the whole-run transcript (caller frees). */
static char *parse_all_ways(const unsigned char *stream, size_t n, uint64_t max)
{
    unsigned char *copy = (unsigned char *)malloc(n + 1);
    wsf_transcript whole, t;
    chi_ws_parser ps;
    size_t cut, *cuts = (size_t *)malloc((n + 1) * sizeof *cuts), i;
    char *result;
    memset(&whole, 0, sizeof whole);
    memcpy(copy, stream, n);
    chi_ws_parser_init(&ps, max);
    wsf_run(&ps, copy, n, NULL, 0, &whole);
    wsf_put(&whole, "", 0);
    for (cut = 1; cut < n; cut++) {
        memset(&t, 0, sizeof t);
        memcpy(copy, stream, n);
        chi_ws_parser_init(&ps, max);
        wsf_run(&ps, copy, n, &cut, 1, &t);
        wsf_put(&t, "", 0);
        if (strcmp(t.text, whole.text) != 0) {
            printf("  split at %zu: %s\n  whole: %s\n", cut, t.text, whole.text);
            CHECK(strcmp(t.text, whole.text) == 0);
            wsf_free(&t);
            break;
        }
        wsf_free(&t);
    }
    for (i = 0; i + 1 < n; i++) cuts[i] = i + 1;
    memset(&t, 0, sizeof t);
    memcpy(copy, stream, n);
    chi_ws_parser_init(&ps, max);
    wsf_run(&ps, copy, n, cuts, n ? n - 1 : 0, &t);
    wsf_put(&t, "", 0);
    CHECK(strcmp(t.text, whole.text) == 0);
    wsf_free(&t);
    free(copy);
    free(cuts);
    result = whole.text;
    free(whole.msg);
    return result;
}

static int parses_to(const unsigned char *stream, size_t n, uint64_t max, const char *want)
{
    char *got = parse_all_ways(stream, n, max);
    int ok = strcmp(got, want) == 0;
    if (!ok) printf("  got  %s\n  want %s\n", got, want);
    free(got);
    return ok;
}

static void test_parser_messages(void)
{
    /* RFC 6455 5.7: a masked "Hello" */
    static const unsigned char hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    unsigned char s[70000 + 64], *big;
    size_t n = 0;
    CHECK(parses_to(hello, sizeof hello, 1 << 20, "T5:Hello;"));
    /* fragmented "Hel" + "lo", with a ping in between (RFC 6455 5.4) */
    n = wsf_frame(s, 0x01, "Hel", 3, KEY, 0);
    n += wsf_frame(s + n, 0x89, "hi", 2, KEY, 0);
    n += wsf_frame(s + n, 0x80, "lo", 2, KEY, 0);
    n += wsf_frame(s + n, 0x8A, "", 0, KEY, 0);
    n += wsf_frame(s + n, 0x82, "\x00\x01", 2, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "ping2:hi;T5:Hello;pong0:;B2:..;"));
    /* empty messages, empty fragments */
    n = wsf_frame(s, 0x81, "", 0, KEY, 0);
    n += wsf_frame(s + n, 0x01, "", 0, KEY, 0);
    n += wsf_frame(s + n, 0x00, "", 0, KEY, 0);
    n += wsf_frame(s + n, 0x80, "", 0, KEY, 0);
    n += wsf_frame(s + n, 0x82, "", 0, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "T0:;T0:;B0:;"));
    /* a close with and without a code */
    n = wsf_frame(s, 0x88, "\x03\xe8" "done", 6, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "close1000/4:done;"));
    n = wsf_frame(s, 0x88, "", 0, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "close1005/0:;"));
    /* a zero mask key is still a mask */
    n = wsf_frame(s, 0x81, "ok", 2, (const unsigned char *)"\0\0\0\0", 0);
    CHECK(parses_to(s, n, 1 << 20, "T2:ok;"));
    /* lengths at the edges of the three forms */
    big = (unsigned char *)malloc(70000);
    memset(big, 'x', 70000);
    {
        static const size_t lens[] = {125, 126, 65535, 65536, 69999};
        size_t i;
        for (i = 0; i < 5; i++) {
            unsigned char *copy = (unsigned char *)malloc(lens[i] + 14);
            wsf_transcript t;
            chi_ws_parser ps;
            char want[32];
            size_t fl = wsf_frame(copy, 0x82, big, lens[i], KEY, 0);
            memset(&t, 0, sizeof t);
            chi_ws_parser_init(&ps, 1 << 20);
            CHECK(wsf_run(&ps, copy, fl, NULL, 0, &t) == 0);
            snprintf(want, sizeof want, "B%zu:", lens[i]);
            CHECK(t.text && strncmp(t.text, want, strlen(want)) == 0 && t.msg_len == 0);
            wsf_free(&t);
            free(copy);
        }
    }
    free(big);
}

static void test_parser_errors(void)
{
    unsigned char s[300];
    size_t n;
    int op;
    /* 5.2: reserved bits without an extension */
    n = wsf_frame(s, 0xC1, "x", 1, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "E1002;"));
    n = wsf_frame(s, 0xA1, "x", 1, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "E1002;"));
    n = wsf_frame(s, 0x91, "x", 1, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "E1002;"));
    /* 5.2: reserved opcodes */
    for (op = 3; op <= 15; op++) {
        if (op >= 8 && op <= 10) continue;
        n = wsf_frame(s, 0x80u | (unsigned)op, "", 0, KEY, 0);
        CHECK(parses_to(s, n, 1 << 20, "E1002;"));
    }
    /* 5.1: an unmasked client frame */
    n = wsf_frame(s, 0x81, "hi", 2, NULL, 0);
    CHECK(parses_to(s, n, 1 << 20, "E1002;"));
    /* 5.5: control frames fragmented or over 125 bytes */
    n = wsf_frame(s, 0x09, "x", 1, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "E1002;"));
    memset(s + 100, 'p', 126);
    n = wsf_frame(s, 0x89, s + 100, 126, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "E1002;"));
    /* 5.4: a continuation with nothing to continue; a new message inside one */
    n = wsf_frame(s, 0x80, "x", 1, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "E1002;"));
    n = wsf_frame(s, 0x01, "a", 1, KEY, 0);
    n += wsf_frame(s + n, 0x81, "b", 1, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "E1002;"));
    n = wsf_frame(s, 0x81, "a", 1, KEY, 0);
    n += wsf_frame(s + n, 0x80, "b", 1, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "T1:a;E1002;"));
    /* 5.2: lengths not in their shortest form, or with the top bit set */
    n = wsf_frame(s, 0x82, "abc", 3, KEY, 126);
    CHECK(parses_to(s, n, 1 << 20, "E1002;"));
    n = wsf_frame(s, 0x82, "abc", 3, KEY, 127);
    CHECK(parses_to(s, n, 1 << 20, "E1002;"));
    memcpy(s, "\x82\xff\x80\0\0\0\0\0\0\x01" "\0\0\0\0", 14);
    CHECK(parses_to(s, 14, UINT64_MAX, "E1002;"));
    /* 7.4: close frames with a 1-byte payload, a bad code, a bad reason */
    n = wsf_frame(s, 0x88, "\x03", 1, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "E1002;"));
    n = wsf_frame(s, 0x88, "\x03\xed", 2, KEY, 0); /* 1005 */
    CHECK(parses_to(s, n, 1 << 20, "E1002;"));
    n = wsf_frame(s, 0x88, "\x03\xe8\xff", 3, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "E1007;"));
    /* 8.1: text that is not UTF-8 */
    n = wsf_frame(s, 0x81, "a\xc0\xafz", 4, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "E1007;"));
    n = wsf_frame(s, 0x81, "a\xe2\x82", 3, KEY, 0); /* cut short at the end */
    CHECK(parses_to(s, n, 1 << 20, "E1007;"));
    /* ... across fragments: "\xce\xba" split between frames is fine */
    n = wsf_frame(s, 0x01, "\xce", 1, KEY, 0);
    n += wsf_frame(s + n, 0x80, "\xba", 1, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "T2:..;"));
    /* binary is never checked */
    n = wsf_frame(s, 0x82, "\xff\xfe", 2, KEY, 0);
    CHECK(parses_to(s, n, 1 << 20, "B2:..;"));
    /* 1009: over the limit, one frame or fragments summed */
    n = wsf_frame(s, 0x82, "0123456789", 10, KEY, 0);
    CHECK(parses_to(s, n, 10, "B10:0123456789;"));
    CHECK(parses_to(s, n, 9, "E1009;"));
    n = wsf_frame(s, 0x01, "01234", 5, KEY, 0);
    n += wsf_frame(s + n, 0x80, "56789", 5, KEY, 0);
    CHECK(parses_to(s, n, 9, "E1009;"));
    /* ... but a control frame is not part of the message */
    n = wsf_frame(s, 0x01, "01234", 5, KEY, 0);
    n += wsf_frame(s + n, 0x89, "0123456789", 10, KEY, 0);
    n += wsf_frame(s + n, 0x80, "5678", 4, KEY, 0);
    CHECK(parses_to(s, n, 9, "ping10:0123456789;T9:012345678;"));
}

/* Fail fast (6.4 of Autobahn): the error comes from the bad byte itself,
   before the rest of its frame has arrived, and the parser then refuses
   everything. */
static void test_parser_fail_fast(void)
{
    unsigned char s[200];
    chi_ws_parser ps;
    chi_ws_event ev;
    size_t n, used;
    char text[100];
    memset(text, 'a', sizeof text);
    text[10] = (char)0xf5; /* can never start UTF-8 */
    n = wsf_frame(s, 0x81, text, sizeof text, KEY, 0);
    chi_ws_parser_init(&ps, 1 << 20);
    used = chi_ws_parse(&ps, s, 8 + 11, &ev); /* the 6-byte head and 13 payload bytes */
    CHECK(ev.kind == CHI_WS_EV_ERROR && ev.code == 1007);
    CHECK(used <= 8 + 11);
    CHECK(chi_ws_parse(&ps, s + used, n - used, &ev) == 0 && ev.kind == CHI_WS_EV_ERROR);
    /* an unmasked frame fails on its second byte */
    chi_ws_parser_init(&ps, 1 << 20);
    used = chi_ws_parse(&ps, (unsigned char *)"\x81\x05", 2, &ev);
    CHECK(used == 2 && ev.kind == CHI_WS_EV_ERROR && ev.code == 1002);
    /* a too-big frame fails on its head, with no payload sent */
    chi_ws_parser_init(&ps, 1000);
    memcpy(s, "\x82\xfe\x10\x00" "abcd", 8);
    used = chi_ws_parse(&ps, s, 8, &ev);
    CHECK(used == 8 && ev.kind == CHI_WS_EV_ERROR && ev.code == 1009);
}

/* DATA pieces point into the caller's buffer, unmasked in place: no copy. */
static void test_parser_zero_copy(void)
{
    unsigned char s[64];
    chi_ws_parser ps;
    chi_ws_event ev;
    size_t n = wsf_frame(s, 0x82, "payload!payload!payload!", 24, KEY, 0), used;
    chi_ws_parser_init(&ps, 1 << 20);
    used = chi_ws_parse(&ps, s, n, &ev);
    CHECK(ev.kind == CHI_WS_EV_DATA && ev.data == s + 6 && ev.len == 24 && memcmp(ev.data, "payload!payload!payload!", 24) == 0);
    used += chi_ws_parse(&ps, s + used, n - used, &ev);
    CHECK(ev.kind == CHI_WS_EV_MESSAGE && ev.opcode == CHI_WS_BINARY && used == n);
    used += chi_ws_parse(&ps, s + used, n - used, &ev);
    CHECK(ev.kind == CHI_WS_EV_NONE);
}

int main(void)
{
    run("sha1: FIPS 180 vectors, any split", test_sha1);
    run("base64: RFC 4648 vectors, strict decoding, round trips", test_base64);
    run("handshake: accept key (RFC 6455 1.3), 4.2.1 checks, 400 and 426", test_handshake);
    run("handshake: comma-separated token lists", test_lists);
    run("utf-8: valid and invalid samples (RFC 3629)", test_utf8_samples);
    run("utf-8: every 1-3 byte string, 4-byte ones, split anywhere", test_utf8_exhaustive);
    run("close codes (RFC 6455 7.4) and close payloads", test_close_codes);
    run("frame writer: unmasked, shortest length (RFC 6455 5.2)", test_writer);
    run("frame parser: messages, fragments, controls, at every split", test_parser_messages);
    run("frame parser: 1002, 1007, 1009 at every split", test_parser_errors);
    run("frame parser: fails fast on the offending byte", test_parser_fail_fast);
    run("frame parser: payload unmasked in place, no copy", test_parser_zero_copy);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
