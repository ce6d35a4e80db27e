/* batteries_unit.c - unit tests for issue 9's parts of chopin.h: address
   parsing and trusted proxies, X-Forwarded-For, the PROXY protocol header,
   the token buckets and their LRU table, the Set-Cookie builder, integer
   getters, and the response rules fixed by bugs 4-8 (checked through a
   worker built in memory). Includes the implementation, so the internal
   chi_ functions are reachable. Last line: "N passed, N failed". */
#define CHOPIN_IMPLEMENTATION
#include "../chopin.h"

#include <arpa/inet.h>
#include <pthread.h>

#include "check.h"

/* ---- addresses ---- */

/* chi_ip_parse agrees with inet_pton, byte for byte. */
static int ip_agrees(const char *s)
{
    chi_peer p;
    unsigned char want[16];
    int v6 = strchr(s, ':') != NULL;
    int ok_pton = inet_pton(v6 ? AF_INET6 : AF_INET, s, want) == 1;
    int ok_ours = chi_ip_parse(s, strlen(s), &p) == 0;
    if (ok_pton != ok_ours) {
        printf("  %s: inet_pton %d, chi_ip_parse %d\n", s, ok_pton, ok_ours);
        return 0;
    }
    return !ok_ours || (p.family == (v6 ? 6 : 4) && memcmp(p.addr, want, v6 ? 16 : 4) == 0);
}

static void test_ip_parse(void)
{
    static const char *cases[] = {
        "127.0.0.1", "0.0.0.0", "255.255.255.255", "1.2.3.4", "256.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4",
        "1.2.3.4 ", "", "a.b.c.d", "1..2.3", "::", "::1", "1::", "2001:db8::1", "2001:db8:0:0:0:0:2:1",
        "fe80::1:2:3:4:5:6", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", ":1:2:3:4:5:6:7",
        "1:2:3:4:5:6:7:", "1::2::3", "::ffff:10.0.0.1", "::10.0.0.1", "1:2:3:4:5:6:1.2.3.4", "12345::1",
        "g::1", "::1.2.3", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", ":::",
    };
    size_t i;
    chi_peer p;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) CHECK(ip_agrees(cases[i]));
    CHECK(chi_ip_parse("[::1]", 5, &p) == 0 && p.family == 6 && p.addr[15] == 1);
}

static void test_nets(void)
{
    chi_net nets[CHI_MAX_TRUSTED];
    const char *bad = NULL;
    chi_peer p;
    int n = chi_nets_parse("127.0.0.1, 10.0.0.0/8,192.168.1.128/25 ::1 2001:db8::/32", nets, CHI_MAX_TRUSTED, &bad);
    CHECK(n == 5);
    chi_ip_parse("10.200.3.4", 10, &p);
    CHECK(chi_nets_match(nets, n, &p));
    chi_ip_parse("11.0.0.1", 8, &p);
    CHECK(!chi_nets_match(nets, n, &p));
    chi_ip_parse("192.168.1.200", 13, &p);
    CHECK(chi_nets_match(nets, n, &p));
    chi_ip_parse("192.168.1.100", 13, &p);
    CHECK(!chi_nets_match(nets, n, &p));
    chi_ip_parse("::ffff:127.0.0.1", 16, &p); /* a mapped IPv4 peer on a dual-stack socket */
    CHECK(chi_nets_match(nets, n, &p));
    chi_ip_parse("2001:db8:ffff::9", 16, &p);
    CHECK(chi_nets_match(nets, n, &p));
    chi_ip_parse("2001:db9::9", 11, &p);
    CHECK(!chi_nets_match(nets, n, &p));
    CHECK(chi_nets_parse("10.0.0.0/33", nets, CHI_MAX_TRUSTED, &bad) < 0);
    CHECK(chi_nets_parse("10.0.0.0/", nets, CHI_MAX_TRUSTED, &bad) < 0);
    CHECK(chi_nets_parse("localhost", nets, CHI_MAX_TRUSTED, &bad) < 0 && strcmp(bad, "localhost") == 0);
    CHECK(chi_nets_parse("1.1.1.1,2.2.2.2,3.3.3.3", nets, 2, &bad) < 0);
    CHECK(chi_nets_parse("", nets, CHI_MAX_TRUSTED, &bad) == 0);
}

/* One X-Forwarded-For line, through the walk over a request's lines. */
static int chi_xff_client(ch_str xff, const chi_net *nets, int nnets, chi_peer *out)
{
    ch_header h;
    h.name = chi_str("X-Forwarded-For", 15);
    h.value = xff;
    return chi_xff_client_lines(&h, 1, nets, nnets, out);
}

static void test_xff(void)
{
    chi_net nets[4];
    const char *bad;
    chi_peer p, want;
    int n = chi_nets_parse("10.0.0.0/8", nets, 4, &bad);
    const char *a = "203.0.113.9, 10.0.0.2, 10.0.0.3";
    const char *b = "10.0.0.5, 10.0.0.6";
    const char *c = "evil, 198.51.100.4";
    const char *d = "garbage";
    const char *e = "1.1.1.1,  2001:db8::7 ";
    CHECK(chi_xff_client(chi_str(a, strlen(a)), nets, n, &p) == 0);
    chi_ip_parse("203.0.113.9", 11, &want);
    CHECK(memcmp(&p, &want, sizeof p) == 0);
    CHECK(chi_xff_client(chi_str(b, strlen(b)), nets, n, &p) == 0); /* all ours: the left-most */
    chi_ip_parse("10.0.0.5", 8, &want);
    CHECK(memcmp(&p, &want, sizeof p) == 0);
    CHECK(chi_xff_client(chi_str(c, strlen(c)), nets, n, &p) == 0); /* what the client wrote is never reached */
    chi_ip_parse("198.51.100.4", 12, &want);
    CHECK(memcmp(&p, &want, sizeof p) == 0);
    CHECK(chi_xff_client(chi_str(d, strlen(d)), nets, n, &p) < 0);
    CHECK(chi_xff_client(chi_str(e, strlen(e)), nets, n, &p) == 0 && p.family == 6 && p.addr[15] == 7);
}

/* A request's X-Forwarded-For lines are one list (RFC 9110 5.3), walked
   from the right across lines; X-Real-IP counts only when sent once. */
static ch_header hdr(const char *name, const char *value)
{
    ch_header h;
    h.name = chi_str(name, strlen(name));
    h.value = chi_str(value, strlen(value));
    return h;
}

static int peer_is(const chi_peer *p, const char *text)
{
    chi_peer want;
    return chi_ip_parse(text, strlen(text), &want) == 0 && memcmp(p, &want, sizeof want) == 0;
}

static void test_xff_lines(void)
{
    chi_net nets[4];
    const char *bad;
    chi_peer p;
    int n = chi_nets_parse("10.0.0.0/8", nets, 4, &bad);
    ch_header h[6];
    h[0] = hdr("X-Forwarded-For", "198.51.100.50");
    h[1] = hdr("Accept", "*/*");
    h[2] = hdr("x-forwarded-for", "203.0.113.46, 10.0.0.9");
    CHECK(chi_xff_client_lines(h, 3, nets, n, &p) == 0 && peer_is(&p, "203.0.113.46")); /* the last line counts */
    h[2] = hdr("X-FORWARDED-FOR", "10.0.0.7 ,10.0.0.8");
    CHECK(chi_xff_client_lines(h, 3, nets, n, &p) == 0 && peer_is(&p, "198.51.100.50")); /* all ours: go left */
    h[0] = hdr("X-Forwarded-For", "10.0.0.1");
    CHECK(chi_xff_client_lines(h, 3, nets, n, &p) == 0 && peer_is(&p, "10.0.0.1")); /* all ours: the left-most */
    h[0] = hdr("X-Forwarded-For", "garbage, 10.0.0.1");
    CHECK(chi_xff_client_lines(h, 3, nets, n, &p) == 0 && peer_is(&p, "10.0.0.1")); /* the nearest readable */
    h[0] = hdr("X-Forwarded-For", "");
    h[2] = hdr("X-Forwarded-For", " , 192.0.2.1,,");
    CHECK(chi_xff_client_lines(h, 3, nets, n, &p) == 0 && peer_is(&p, "192.0.2.1")); /* empty elements skipped */
    h[2] = hdr("X-Forwarded-For", "unknown");
    CHECK(chi_xff_client_lines(h, 3, nets, n, &p) < 0);
    CHECK(chi_xff_client_lines(h, 2, nets, n, &p) < 0); /* an empty line names no one */
    h[0] = hdr("X-Real-IP", "192.0.2.77");
    CHECK(chi_real_ip_client(h, 2, &p) == 0 && peer_is(&p, "192.0.2.77"));
    h[2] = hdr("x-real-ip", "192.0.2.78");
    CHECK(chi_real_ip_client(h, 3, &p) < 0); /* two lines: ambiguous, neither is used */
    h[2] = hdr("x-real-ip", "192.0.2.77");
    CHECK(chi_real_ip_client(h, 3, &p) < 0); /* even when they agree */
    h[0] = hdr("X-Real-IP", "192.0.2.77, 192.0.2.78");
    CHECK(chi_real_ip_client(h, 2, &p) < 0); /* a list is not one address */
}

/* ---- PROXY protocol ---- */

/* Every prefix of a valid header must say "need more", never a verdict. */
static int proxy_prefixes_wait(const char *h, size_t len)
{
    size_t i;
    chi_peer p;
    for (i = 1; i < len; i++)
        if (chi_proxy_parse(h, i, &p) != 0) {
            printf("  prefix %u: %ld\n", (unsigned)i, chi_proxy_parse(h, i, &p));
            return 0;
        }
    return 1;
}

static void test_proxy_v1(void)
{
    static const char *bad[] = {
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",         "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",     "PROXY TCP4 ::1 ::1 1 2\r\n",
        "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",      "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",     "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",    "GET / HTTP/1.1\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",    "PROXY UNKNOWNX\r\n",
        "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",    "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",    "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
        "PROXY \r\n",                             "PROXY TCP4\r\n",
    };
    const char *ok4 = "PROXY TCP4 203.0.113.9 10.0.0.1 56324 443\r\nGET /";
    const char *ok6 = "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
    const char *unk = "PROXY UNKNOWN whatever\r\n";
    char longline[200];
    chi_peer p;
    size_t i;
    CHECK(chi_proxy_parse(ok4, strlen(ok4), &p) == (long)strlen(ok4) - 5 && p.family == 4 && p.addr[0] == 203 &&
          p.addr[3] == 9);
    CHECK(proxy_prefixes_wait(ok4, strlen(ok4) - 5));
    CHECK(chi_proxy_parse(ok6, strlen(ok6), &p) == (long)strlen(ok6) && p.family == 6 && p.addr[15] == 1);
    CHECK(chi_proxy_parse(unk, strlen(unk), &p) == (long)strlen(unk) && p.family == 0);
    CHECK(chi_proxy_parse("PROXY UNKNOWN\r\n", 15, &p) == 15 && p.family == 0); /* nothing after UNKNOWN */
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long r = chi_proxy_parse(bad[i], strlen(bad[i]), &p);
        if (r != -1) printf("  bad v1 case %u: %ld\n", (unsigned)i, r);
        CHECK(r == -1);
    }
    memset(longline, 'x', sizeof longline);
    memcpy(longline, "PROXY TCP4 ", 11);
    CHECK(chi_proxy_parse(longline, sizeof longline, &p) == -1); /* no CRLF within 107 bytes */
}

static size_t v2_header(unsigned char *b, int cmd, int fam, const unsigned char *addr, size_t alen)
{
    memcpy(b, chi_proxy_v2_sig, 12);
    b[12] = (unsigned char)(0x20 | cmd);
    b[13] = (unsigned char)(fam << 4 | 1);
    b[14] = (unsigned char)(alen >> 8);
    b[15] = (unsigned char)alen;
    memcpy(b + 16, addr, alen);
    return 16 + alen;
}

static void test_proxy_v2(void)
{
    unsigned char b[128], a4[12] = {198, 51, 100, 7, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb}, a6[36 + 5];
    chi_peer p;
    size_t n;
    memset(a6, 0, sizeof a6);
    a6[0] = 0x20;
    a6[1] = 0x01;
    a6[15] = 9;
    n = v2_header(b, 1, 1, a4, sizeof a4);
    CHECK(chi_proxy_parse((const char *)b, n, &p) == (long)n && p.family == 4 && p.addr[0] == 198 && p.addr[3] == 7);
    CHECK(proxy_prefixes_wait((const char *)b, n));
    n = v2_header(b, 1, 2, a6, sizeof a6); /* TLVs after the addresses are skipped */
    CHECK(chi_proxy_parse((const char *)b, n, &p) == (long)n && p.family == 6 && p.addr[0] == 0x20 && p.addr[15] == 9);
    n = v2_header(b, 0, 0, a4, 0); /* LOCAL: a health check of the proxy's own */
    CHECK(chi_proxy_parse((const char *)b, n, &p) == (long)n && p.family == 0);
    n = v2_header(b, 1, 1, a4, 8); /* too short for two IPv4 addresses and ports */
    CHECK(chi_proxy_parse((const char *)b, n, &p) == -1);
    {
        static unsigned char unix_addrs[216];
        static unsigned char big[16 + 216];
        n = v2_header(big, 1, 3, unix_addrs, sizeof unix_addrs); /* AF_UNIX: served as the proxy itself */
        CHECK(chi_proxy_parse((const char *)big, n, &p) == (long)n && p.family == 0);
        n = v2_header(big, 1, 3, unix_addrs, 12); /* AF_UNIX too short for its two paths */
        CHECK(chi_proxy_parse((const char *)big, n, &p) == -1);
    }
    n = v2_header(b, 2, 1, a4, sizeof a4); /* an unknown command */
    CHECK(chi_proxy_parse((const char *)b, n, &p) == -1);
    n = v2_header(b, 1, 1, a4, sizeof a4);
    b[12] = 0x31; /* version 3 */
    CHECK(chi_proxy_parse((const char *)b, n, &p) == -1);
    n = v2_header(b, 1, 4, a4, sizeof a4); /* an unknown family */
    CHECK(chi_proxy_parse((const char *)b, n, &p) == -1);
    b[11] = 'X'; /* not the signature */
    CHECK(chi_proxy_parse((const char *)b, n, &p) == -1);
}

/* ---- token buckets ---- */

#define SEC 1000000000LL
/* One token from key's bucket at time now_ns (the middleware's two steps). */
static chi_take chi_buckets_take(chi_buckets *t, const char *key, size_t n, int64_t now_ns)
{
    return chi_bucket_take(t, chi_buckets_get(t, key, n, now_ns), now_ns);
}

static void test_buckets(void)
{
    chi_buckets t;
    chi_take r;
    int i;
    CHECK(chi_buckets_init(&t, 2, 2.0, 3.0) == 0); /* 2 a second, bursts of 3, 2 keys */
    for (i = 0; i < 3; i++) {
        r = chi_buckets_take(&t, "a", 1, 0);
        CHECK(r.allowed && r.remaining == 2 - i);
    }
    r = chi_buckets_take(&t, "a", 1, 0);
    CHECK(!r.allowed && r.remaining == 0 && r.retry_after == 1 && r.reset == 2);
    r = chi_buckets_take(&t, "a", 1, SEC / 2); /* half a second: one token back */
    CHECK(r.allowed && r.remaining == 0);
    r = chi_buckets_take(&t, "a", 1, SEC / 2 + SEC / 4);
    CHECK(!r.allowed && r.retry_after == 1);
    r = chi_buckets_take(&t, "a", 1, 100 * SEC); /* refills only up to the burst */
    CHECK(r.allowed && r.remaining == 2);
    /* LRU: a, then b, then c evicts the least recently used */
    r = chi_buckets_take(&t, "b", 1, 100 * SEC);
    CHECK(r.allowed && r.remaining == 2 && t.used == 2);
    chi_buckets_take(&t, "a", 1, 100 * SEC); /* a is now the most recent: b goes */
    r = chi_buckets_take(&t, "c", 1, 100 * SEC);
    CHECK(r.allowed && r.remaining == 2 && t.used == 2);
    r = chi_buckets_take(&t, "a", 1, 100 * SEC); /* a kept its count: its third token since the refill */
    CHECK(r.allowed && r.remaining == 0);
    r = chi_buckets_take(&t, "b", 1, 100 * SEC); /* b was forgotten: a full bucket */
    CHECK(r.allowed && r.remaining == 2);
    chi_buckets_free(&t);
    /* a slow rate: Retry-After rounds up */
    CHECK(chi_buckets_init(&t, 8, 0.1, 1.0) == 0);
    chi_buckets_take(&t, "k", 1, 0);
    r = chi_buckets_take(&t, "k", 1, SEC);
    CHECK(!r.allowed && r.retry_after == 9);
    chi_buckets_free(&t);
}

/* Many keys through a small table: chains and the LRU list stay whole. */
static void test_buckets_churn(void)
{
    chi_buckets t;
    int i, n, j;
    unsigned seed = 7;
    CHECK(chi_buckets_init(&t, 16, 1.0, 1.0) == 0);
    for (i = 0; i < 5000; i++) {
        char key[16];
        seed = seed * 1103515245u + 12345u;
        n = snprintf(key, sizeof key, "k%u", (seed >> 16) % 40);
        chi_buckets_take(&t, key, (size_t)n, i);
    }
    for (i = t.lru_head, n = 0; i >= 0 && n <= 16; i = t.e[i].next) n++;
    CHECK(n == 16 && t.used == 16);
    for (j = 0, n = 0; j < t.nheads; j++)
        for (i = t.heads[j]; i >= 0 && n <= 16; i = t.e[i].hnext) n++;
    CHECK(n == 16);
    chi_buckets_free(&t);
}

/* ---- cookies ---- */

static void test_cookie(void)
{
    ch_cookie c;
    char out[CH_COOKIE_MAX];
    memset(&c, 0, sizeof c);
    c.name = "sid";
    c.value = "abc123";
    c.path = "/";
    c.max_age = 3600;
    c.expires = 784111777;
    c.secure = c.http_only = 1;
    c.same_site = CH_SAMESITE_LAX;
    CHECK(ch_cookie_format(&c, out, sizeof out) > 0);
    CHECK(strcmp(out, "sid=abc123; Max-Age=3600; Expires=Sun, 06 Nov 1994 08:49:37 GMT; Path=/; Secure; HttpOnly; "
                      "SameSite=Lax") == 0);
    c.max_age = -1;
    c.expires = 0;
    c.path = NULL;
    c.secure = c.http_only = 0;
    c.same_site = CH_SAMESITE_DEFAULT;
    c.value = "\"quoted\"";
    CHECK(ch_cookie_format(&c, out, sizeof out) > 0 && strcmp(out, "sid=\"quoted\"; Max-Age=0") == 0);
    c.value = "a b";
    CHECK(ch_cookie_format(&c, out, sizeof out) == -1 && out[0] == 0);
    c.value = "a;b";
    CHECK(ch_cookie_format(&c, out, sizeof out) == -1);
    c.value = "a\r\nSet-Cookie: x=y";
    CHECK(ch_cookie_format(&c, out, sizeof out) == -1);
    c.value = "ok";
    c.name = "bad name";
    CHECK(ch_cookie_format(&c, out, sizeof out) == -1);
    c.name = "sid";
    c.path = "/a;b";
    CHECK(ch_cookie_format(&c, out, sizeof out) == -1);
    c.path = NULL;
    c.domain = "example.com\r\n";
    CHECK(ch_cookie_format(&c, out, sizeof out) == -1);
    {
        /* Domain is a host name (RFC 6265 4.1.2.3): labels of letters,
           digits, '-'; one leading dot allowed */
        static const char *good[] = {"example.com", ".example.com", "a-b.example", "localhost", "127.0.0.1", "x1.y2"};
        static const char *bad[] = {"", ".", "exa mple.com", "example..com", "-a.com", "a-.com", "example.com.",
                                    "ex_ample.com", "example.com:80", "a,b", "\xc3\xa9.com", "a=b"};
        size_t i;
        for (i = 0; i < sizeof good / sizeof good[0]; i++) {
            c.domain = good[i];
            CHECK(ch_cookie_format(&c, out, sizeof out) > 0 && strstr(out, "; Domain="));
        }
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            c.domain = bad[i];
            if (ch_cookie_format(&c, out, sizeof out) != -1) printf("  Domain accepted: '%s'\n", bad[i]);
            CHECK(ch_cookie_format(&c, out, sizeof out) == -1);
        }
    }
    c.domain = NULL;
    {
        /* cookie-octet (RFC 6265 4.1.1): no CTL, whitespace, DQUOTE inside,
           comma, semicolon or backslash; a token for the name */
        static const char *bad_values[] = {"a\"b", "a,b", "a\\b", "a\tb", "\"", "a\x7f", "\xc3\xa9"};
        static const char *bad_names[] = {"a=b", "a;b", "", "a\"", "(a)", "a/b", "a@b"};
        size_t i;
        for (i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
            c.value = bad_values[i];
            CHECK(ch_cookie_format(&c, out, sizeof out) == -1);
        }
        c.value = "";
        CHECK(ch_cookie_format(&c, out, sizeof out) > 0 && strncmp(out, "sid=;", 5) == 0); /* empty is allowed */
        c.value = "ok";
        for (i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
            c.name = bad_names[i];
            CHECK(ch_cookie_format(&c, out, sizeof out) == -1);
        }
        c.name = "sid";
    }
    c.same_site = CH_SAMESITE_NONE; /* None without Secure: browsers drop it */
    CHECK(ch_cookie_format(&c, out, sizeof out) == -1);
    c.secure = 1;
    CHECK(ch_cookie_format(&c, out, sizeof out) > 0 && strstr(out, "; Secure; SameSite=None"));
    c.name = "__Host-id";
    CHECK(ch_cookie_format(&c, out, sizeof out) == -1); /* needs Path=/ */
    c.path = "/";
    CHECK(ch_cookie_format(&c, out, sizeof out) > 0);
    c.domain = "example.com";
    CHECK(ch_cookie_format(&c, out, sizeof out) == -1); /* and no Domain */
    c.domain = NULL;
    c.secure = 0;
    c.same_site = CH_SAMESITE_STRICT;
    c.name = "__Secure-id";
    CHECK(ch_cookie_format(&c, out, sizeof out) == -1);
    CHECK(ch_cookie_format(&c, out, 4) == -1); /* does not fit */
}

static void test_parse_ll(void)
{
    long long v = 0;
    CHECK(chi_parse_ll("42", 2, 0, 100, &v) == 0 && v == 42);
    CHECK(chi_parse_ll("-7", 2, -10, 10, &v) == 0 && v == -7);
    CHECK(chi_parse_ll("101", 3, 0, 100, &v) == CH_BAD);
    CHECK(chi_parse_ll("", 0, 0, 100, &v) == CH_BAD);
    CHECK(chi_parse_ll("-", 1, -5, 5, &v) == CH_BAD);
    CHECK(chi_parse_ll("1x", 2, 0, 100, &v) == CH_BAD);
    CHECK(chi_parse_ll("9223372036854775807", 19, LLONG_MIN, LLONG_MAX, &v) == 0 && v == LLONG_MAX);
    CHECK(chi_parse_ll("-9223372036854775808", 20, LLONG_MIN, LLONG_MAX, &v) == 0 && v == LLONG_MIN);
    CHECK(chi_parse_ll("9223372036854775808", 19, LLONG_MIN, LLONG_MAX, &v) == CH_BAD);
    CHECK(chi_parse_ll("99999999999999999999", 20, LLONG_MIN, LLONG_MAX, &v) == CH_BAD);
}

/* ---- responses, through a worker built in memory ---- */

static const chi_limits lim = {16384, 8192, 1 << 20};
static char logged[4096];
static int log_items[CH_LOGITEM_COUNT];

static void capture_log(ch_log_level level, ch_log_item item, const char *msg, void *user)
{
    (void)level;
    (void)user;
    log_items[item]++;
    snprintf(logged, sizeof logged, "%s", msg);
}

static chi_worker *test_worker(ch_app *app)
{
    static chi_worker w;
    memset(&w, 0, sizeof w);
    w.app = app;
    w.res.w = &w;
    w.res.json = &w.json;
    chi_req_bind(&w.req, &w.req_store);
    w.req.worker = &w;
    chi_common_init(w.common);
    chi_format_date(784111777, w.common + CHI_DATE_AT);
    app->cfg.log = capture_log;
    app->log_level = CH_LOG_DEBUG;
    return &w;
}

static void free_test_worker(chi_worker *w)
{
    chi_buf_free(&w->out);
    ch_json_free(&w->json);
    chi_buf_free(&w->res.ctype);
    chi_buf_free(&w->res.headers);
    chi_buf_free(&w->decoded);
    chi_slots_free(w);
}

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

static void h_html_then_text(ch_req *req, ch_res *res)
{
    (void)req;
    ch_res_header(res, "Content-Type", "text/html; charset=utf-8");
    ch_res_text(res, 200, "<p>hi</p>");
}

static void h_html_then_json(ch_req *req, ch_res *res)
{
    ch_json *j;
    (void)req;
    ch_res_header(res, "Content-Type", "application/problem+json");
    j = ch_res_json(res, 400);
    ch_json_object_begin(j);
    ch_json_object_end(j);
}

static void h_plain(ch_req *req, ch_res *res)
{
    (void)req;
    ch_res_send(res, 200, "text/csv", "a,b", 3);
}

static void h_head_aware(ch_req *req, ch_res *res)
{
    ch_res_length(res, 123456789);
    if (ch_req_is_head(req)) return; /* nothing built */
    ch_res_text(res, 200, "big");
}

static void h_head_skips(ch_req *req, ch_res *res)
{
    if (!ch_req_is_head(req)) ch_res_text(res, 200, "body");
}

static void h_unfinished(ch_req *req, ch_res *res)
{
    ch_json *j = ch_res_json(res, 200);
    (void)req;
    ch_json_object_begin(j);
    ch_json_key(j, "a");
    ch_json_array_begin(j);
}

static void h_misused(ch_req *req, ch_res *res)
{
    ch_json *j = ch_res_json(res, 200);
    (void)req;
    ch_json_object_begin(j);
    ch_json_int(j, 1); /* a value without its key */
    ch_json_object_end(j);
}

static void h_bad_status(ch_req *req, ch_res *res)
{
    (void)req;
    ch_res_status(res, 99);
}

static void h_error_msg(ch_req *req, ch_res *res)
{
    (void)req;
    ch_res_error_msg(res, 422, "field \"title\" is\nmissing\\");
}

static char got_name[64], got_dec[64];
static long long got_id;
static int got_id_rc, got_page_rc;
static long long got_page;
static void h_params(ch_req *req, ch_res *res)
{
    ch_str name = ch_req_param_decoded(req, "name"), again = ch_req_param_decoded(req, "name");
    ch_str rest = ch_req_param_decoded(req, "rest");
    snprintf(got_name, sizeof got_name, "%.*s", (int)name.len, name.ptr);
    snprintf(got_dec, sizeof got_dec, "%.*s", (int)rest.len, rest.ptr);
    CHECK(again.ptr == name.ptr);
    got_id_rc = ch_req_param_int(req, "id", 1, 1000, &got_id);
    got_page_rc = ch_req_query_int(req, "page", 0, 50, &got_page);
    ch_res_status(res, 204);
}

static void h_cookie(ch_req *req, ch_res *res)
{
    ch_cookie c;
    (void)req;
    memset(&c, 0, sizeof c);
    c.name = "sid";
    c.value = "v1";
    c.http_only = 1;
    CHECK(ch_res_cookie(res, &c) == 0);
    c.value = "bad value";
    CHECK(ch_res_cookie(res, &c) == -1);
    ch_res_status(res, 204);
}

static void h_big(ch_req *req, ch_res *res)
{
    static char big[1 << 20];
    (void)req;
    memset(big, 'x', sizeof big);
    ch_res_body(res, "application/octet-stream", big, sizeof big);
}

static void test_content_type_rule(void)
{
    ch_app *app = ch_app_new();
    chi_worker *w;
    const char *r;
    ch_get(app, "/html", h_html_then_text, NULL);
    ch_get(app, "/problem", h_html_then_json, NULL);
    ch_get(app, "/csv", h_plain, NULL);
    w = test_worker(app);
    r = respond(w, "GET /html HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strstr(r, "\r\nContent-Type: text/html; charset=utf-8\r\n") && !strstr(r, "text/plain"));
    r = respond(w, "GET /problem HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strstr(r, "\r\nContent-Type: application/problem+json\r\n") && strncmp(r, "HTTP/1.1 400", 12) == 0);
    r = respond(w, "GET /csv HTTP/1.1\r\nHost: h\r\n\r\n"); /* nothing set: the call's type */
    CHECK(strstr(r, "\r\nContent-Type: text/csv\r\n") != NULL);
    free_test_worker(w);
    ch_app_free(app);
}

static void test_head(void)
{
    ch_app *app = ch_app_new();
    chi_worker *w;
    const char *r;
    ch_get(app, "/aware", h_head_aware, NULL);
    ch_get(app, "/skips", h_head_skips, NULL);
    w = test_worker(app);
    r = respond(w, "HEAD /aware HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strstr(r, "\r\nContent-Length: 123456789\r\n\r\n") && strcmp(r + strlen(r) - 4, "\r\n\r\n") == 0);
    r = respond(w, "HEAD /skips HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0 && !strstr(r, "Content-Length"));
    r = respond(w, "GET /skips HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strstr(r, "\r\nContent-Length: 4\r\n\r\nbody") != NULL);
    free_test_worker(w);
    ch_app_free(app);
}

static void test_json_misuse_logged(void)
{
    ch_app *app = ch_app_new();
    chi_worker *w;
    const char *r;
    ch_get(app, "/unfinished", h_unfinished, NULL);
    ch_get(app, "/misused", h_misused, NULL);
    ch_get(app, "/status", h_bad_status, NULL);
    ch_get(app, "/msg", h_error_msg, NULL);
    w = test_worker(app);
    memset(log_items, 0, sizeof log_items);
    r = respond(w, "GET /unfinished HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 500", 12) == 0 && log_items[CH_LOGITEM_JSON_UNFINISHED] == 1 &&
          strstr(logged, "GET /unfinished") && strstr(logged, "2 JSON containers open"));
    r = respond(w, "GET /misused HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 500", 12) == 0 && log_items[CH_LOGITEM_JSON_MISUSE] == 1 && strstr(logged, "/misused"));
    r = respond(w, "GET /status HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 500", 12) == 0 && log_items[CH_LOGITEM_BAD_STATUS] == 1 && strstr(logged, "99"));
    r = respond(w, "GET /msg HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 422", 12) == 0 &&
          strstr(r, "\r\n\r\n{\"detail\":\"field \\\"title\\\" is\\nmissing\\\\\"}") &&
          strstr(r, "Content-Type: application/json"));
    free_test_worker(w);
    ch_app_free(app);
}

static void test_log_rate_limit(void)
{
    ch_app *app = ch_app_new();
    chi_worker *w = test_worker(app);
    int i;
    memset(log_items, 0, sizeof log_items);
    w->now = 10;
    for (i = 0; i < 1000; i++) chi_log(w, CH_LOG_ERROR, CH_LOGITEM_OUT_OF_MEMORY, "flood %d", i);
    CHECK(log_items[CH_LOGITEM_OUT_OF_MEMORY] == CHI_LOG_PER_SECOND);
    w->now = 11;
    chi_log(w, CH_LOG_ERROR, CH_LOGITEM_OUT_OF_MEMORY, "next second");
    CHECK(log_items[CH_LOGITEM_SUPPRESSED] == 1 && log_items[CH_LOGITEM_OUT_OF_MEMORY] == CHI_LOG_PER_SECOND + 1);
    app->log_level = CH_LOG_WARN;
    chi_log(w, CH_LOG_INFO, CH_LOGITEM_REQUEST_REFUSED, "below the level");
    CHECK(log_items[CH_LOGITEM_REQUEST_REFUSED] == 0);
    app->log_level = CH_LOG_OFF;
    chi_log(w, CH_LOG_ERROR, CH_LOGITEM_OUT_OF_MEMORY, "off");
    CHECK(log_items[CH_LOGITEM_OUT_OF_MEMORY] == CHI_LOG_PER_SECOND + 1);
    free_test_worker(w);
    ch_app_free(app);
}

static void test_params_and_cookie(void)
{
    ch_app *app = ch_app_new();
    chi_worker *w;
    const char *r;
    ch_get(app, "/u/:name/:id/*rest", h_params, NULL);
    ch_get(app, "/cookie", h_cookie, NULL);
    w = test_worker(app);
    respond(w, "GET /u/J%C3%B6rg%20K/42/a%2Fb/c?page=7 HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strcmp(got_name, "J\xc3\xb6rg K") == 0 && strcmp(got_dec, "a/b/c") == 0);
    CHECK(got_id_rc == 0 && got_id == 42 && got_page_rc == 0 && got_page == 7);
    respond(w, "GET /u/x/0/r?page=51 HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(got_id_rc == CH_BAD && got_page_rc == CH_BAD);
    respond(w, "GET /u/x/%34%32/r HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(got_id_rc == 0 && got_id == 42 && got_page_rc == CH_ABSENT);
    respond(w, "GET /u/x/4x/r?page=-1 HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(got_id_rc == CH_BAD && got_page_rc == CH_BAD);
    r = respond(w, "GET /cookie HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strstr(r, "\r\nSet-Cookie: sid=v1; HttpOnly\r\n") && !strstr(r, "bad value"));
    free_test_worker(w);
    ch_app_free(app);
}

/* Bug 6: a huge body does not stay resident once written. */
static void test_big_buffers_released(void)
{
    ch_app *app = ch_app_new();
    chi_worker *w;
    ch_get(app, "/big", h_big, NULL);
    w = test_worker(app);
    respond(w, "GET /big HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(w->json.cap >= (1 << 20) && w->out.cap >= (1 << 20));
    w->out.len = 0;
    chi_release_big(w);
    CHECK(w->json.cap == 0 && w->json.buf == NULL && w->out.cap == 0);
    free_test_worker(w);
    ch_app_free(app);
}

static void test_request_id(void)
{
    ch_app *app = ch_app_new();
    chi_worker *w;
    const char *r;
    ch_use(app, ch_mw_request_id, NULL);
    ch_get(app, "/csv", h_plain, NULL);
    w = test_worker(app);
    r = respond(w, "GET /csv HTTP/1.1\r\nHost: h\r\nX-Request-Id: req-77\r\n\r\n");
    CHECK(strstr(r, "\r\nX-Request-Id: req-77\r\n") && ch_str_eq(ch_res_request_id(&w->res), "req-77"));
    r = respond(w, "GET /csv HTTP/1.1\r\nHost: h\r\nX-Request-Id: bad id\r\n\r\n");
    CHECK(strstr(r, "\r\nX-Request-Id: ") && !strstr(r, "bad id") && w->res.rid_len > 4);
    free_test_worker(w);
    ch_app_free(app);
}

/* The made ids count up in hex, turned in place: each one is the prefix
   and the count written anew, across every carry and every digit gained. */
static void test_request_id_count(void)
{
    chi_worker w;
    char want[64];
    const char *id = w.rid_line + CHI_RID_AT;
    uint64_t k;
    int bad = 0;
    memset(&w, 0, sizeof w);
    w.id = 3;
    for (k = 1; k <= 70000; k++) {
        size_t n;
        chi_rid_make(&w);
        memcpy(want, id, w.rid_prefix_len);
        n = w.rid_prefix_len + chi_hex(k, want + w.rid_prefix_len);
        memcpy(want + n, "\r\n", 2); /* the line goes on after the id */
        if (w.rid_next != k || w.rid_last_len != n || memcmp(id, want, n + 2) != 0) bad++;
    }
    CHECK(bad == 0);
    CHECK(memcmp(w.rid_line, "X-Request-Id: ", CHI_RID_AT) == 0);
    CHECK(w.rid_prefix_len >= 4 && memcmp(id + w.rid_prefix_len - 3, "-3-", 3) == 0);
    CHECK(w.rid_last_len == w.rid_prefix_len + 5 && memcmp(id + w.rid_prefix_len, "11170", 5) == 0);
}

/* The made ids through the middleware's own path (a digit turned in the
   kept line, carries and a digit gained out of line): each answer's
   X-Request-Id is the prefix and the count, and res->rid agrees. */
static void test_request_id_fast(void)
{
    ch_app *app = ch_app_new();
    chi_worker *w;
    uint64_t k;
    int bad = 0;
    ch_use(app, ch_mw_request_id, NULL);
    ch_get(app, "/csv", h_plain, NULL);
    w = test_worker(app);
    for (k = 1; k <= 4400; k++) { /* carries of one digit and more, past 0xff and 0xfff: digits gained */
        char want[80];
        size_t n;
        const char *r = respond(w, "GET /csv HTTP/1.1\r\nHost: h\r\n\r\n");
        const char *at = strstr(r, "\r\nX-Request-Id: ");
        memcpy(want, w->rid_line + CHI_RID_AT, w->rid_prefix_len);
        n = w->rid_prefix_len + chi_hex(k, want + w->rid_prefix_len);
        memcpy(want + n, "\r\n", 3);
        if (!at || strncmp(at + 16, want, n + 2) != 0 || w->res.rid_len != n || memcmp(w->res.rid, want, n) != 0)
            bad++;
    }
    CHECK(bad == 0);
    free_test_worker(w);
    ch_app_free(app);
}

/* Each CORS or rate limit registration takes a per-worker slot; past
   CHI_MAX_SLOTS a registration fails with a clear error, nothing else. */
static void test_slots_limit(void)
{
    ch_app *app = ch_app_new();
    ch_cors cors;
    ch_ratelimit rl;
    int i, ok = 1;
    memset(&cors, 0, sizeof cors);
    cors.origins = "https://a.example";
    memset(&rl, 0, sizeof rl);
    rl.rate = 10;
    for (i = 0; i < CHI_MAX_SLOTS; i++)
        if ((i % 2 ? ch_use_cors(app, &cors) : ch_use_ratelimit(app, NULL, &rl)) != 0) ok = 0;
    CHECK(ok && app->nslots == CHI_MAX_SLOTS && !ch_error(app)[0]);
    CHECK(ch_use_cors(app, &cors) == -1 && strstr(ch_error(app), "too many"));
    CHECK(ch_use_ratelimit(app, NULL, &rl) == -1 && app->nslots == CHI_MAX_SLOTS);
    ch_app_free(app);
}

/* A connection keeps its client's bucket (index and generation): another
   client that takes the slot over (a table of one) makes the connection
   look its bucket up again, and a kept bucket stays the most recent (the
   fast path touches the LRU list). Rate 1e9 a second: a bucket is full
   again by the next request, so the fast path runs. */
static chi_conn rl_conn_a, rl_conn_b, rl_conn_c;

static const char *respond_on(chi_worker *w, chi_conn *c)
{
    chi_head h;
    const char *raw = "GET /csv HTTP/1.1\r\nHost: h\r\n\r\n";
    CHECK(chi_parse_head(raw, strlen(raw), &lim, &w->req, &h) > 0);
    w->req.body = NULL;
    w->req.body_len = 0;
    w->req.ctx = NULL;
    w->req.conn = &c->peer;
    w->cur = c;
    w->out.len = 0;
    chi_dispatch(w, &w->req, 1);
    w->cur = NULL;
    chi_buf_append(&w->out, "", 1);
    return w->out.ptr;
}

static void test_ratelimit_conn_bucket(void)
{
    ch_app *app = ch_app_new();
    ch_ratelimit rl;
    chi_worker *w;
    chi_rl_worker *s;
    const char *r;
    uint32_t gen;
    memset(&rl, 0, sizeof rl);
    rl.rate = 1e9;
    rl.burst = 3;
    rl.table_size = 1;
    memset(&rl_conn_a, 0, sizeof rl_conn_a);
    memset(&rl_conn_b, 0, sizeof rl_conn_b);
    memset(&rl_conn_c, 0, sizeof rl_conn_c);
    rl_conn_a.peer.family = rl_conn_b.peer.family = rl_conn_c.peer.family = 4;
    rl_conn_a.peer.addr[3] = 1;
    rl_conn_b.peer.addr[3] = 2;
    rl_conn_c.peer.addr[3] = 3;
    CHECK(ch_use_ratelimit(app, NULL, &rl) == 0);
    ch_metrics_route(app, "/metrics"); /* the clock read at dispatch: the fast path's condition */
    ch_get(app, "/csv", h_plain, NULL);
    w = test_worker(app);
    r = respond_on(w, &rl_conn_a);
    CHECK(strstr(r, "X-RateLimit-Remaining: 2\r\n") != NULL);
    s = (chi_rl_worker *)chi_slot_get(w, ((chi_rl *)app->mw[0].user)->slot);
    CHECK(s && rl_conn_a.rl_table == &s->t && rl_conn_a.rl_bucket == 0);
    if (!s) return;
    gen = s->t.e[0].gen;
    r = respond_on(w, &rl_conn_a); /* the kept bucket, full again */
    CHECK(strstr(r, "X-RateLimit-Remaining: 2\r\n") != NULL && s->t.e[0].gen == gen);
    r = respond_on(w, &rl_conn_b); /* b takes the only slot over */
    CHECK(strstr(r, "X-RateLimit-Remaining: 2\r\n") != NULL && s->t.e[0].gen != gen && s->t.e[0].key[4] == 2);
    r = respond_on(w, &rl_conn_a); /* a's kept index is stale: looked up again, b's bucket left alone */
    CHECK(strstr(r, "X-RateLimit-Remaining: 2\r\n") != NULL && s->t.e[0].key[4] == 1 &&
          rl_conn_a.rl_gen == s->t.e[0].gen);
    free_test_worker(w);
    ch_app_free(app);
    /* two slots: a (kept by its connection), b, a again by the fast path,
       then c evicts the least recently used: b, not a */
    app = ch_app_new();
    rl.table_size = 2;
    memset(&rl_conn_a, 0, sizeof rl_conn_a);
    rl_conn_a.peer.family = 4;
    rl_conn_a.peer.addr[3] = 1;
    CHECK(ch_use_ratelimit(app, NULL, &rl) == 0);
    ch_metrics_route(app, "/metrics");
    ch_get(app, "/csv", h_plain, NULL);
    w = test_worker(app);
    respond_on(w, &rl_conn_a);
    s = (chi_rl_worker *)chi_slot_get(w, ((chi_rl *)app->mw[0].user)->slot);
    if (!s) return;
    gen = s->t.e[rl_conn_a.rl_bucket].gen;
    respond_on(w, &rl_conn_b);
    respond_on(w, &rl_conn_a);
    CHECK(s->t.lru_head == rl_conn_a.rl_bucket);
    respond_on(w, &rl_conn_c);
    CHECK(s->t.e[rl_conn_a.rl_bucket].gen == gen && s->t.e[rl_conn_a.rl_bucket].key[4] == 1);
    free_test_worker(w);
    ch_app_free(app);
    /* a busy client (1 a second, bursts of 3; no clock at dispatch): its
       bucket is not full, so the whole way, through the kept index; a
       slot taken over is still looked up again */
    app = ch_app_new();
    rl.rate = 1;
    rl.table_size = 1;
    memset(&rl_conn_a, 0, sizeof rl_conn_a);
    memset(&rl_conn_b, 0, sizeof rl_conn_b);
    rl_conn_a.peer.family = rl_conn_b.peer.family = 4;
    rl_conn_a.peer.addr[3] = 1;
    rl_conn_b.peer.addr[3] = 2;
    CHECK(ch_use_ratelimit(app, NULL, &rl) == 0);
    ch_get(app, "/csv", h_plain, NULL);
    w = test_worker(app);
    CHECK(strstr(respond_on(w, &rl_conn_a), "X-RateLimit-Remaining: 2\r\n") != NULL);
    CHECK(strstr(respond_on(w, &rl_conn_a), "X-RateLimit-Remaining: 1\r\n") != NULL);
    CHECK(strstr(respond_on(w, &rl_conn_b), "X-RateLimit-Remaining: 2\r\n") != NULL); /* a forgotten */
    CHECK(strstr(respond_on(w, &rl_conn_a), "X-RateLimit-Remaining: 2\r\n") != NULL); /* a new bucket, b's left */
    CHECK(strstr(respond_on(w, &rl_conn_a), "X-RateLimit-Remaining: 1\r\n") != NULL);
    CHECK(strstr(respond_on(w, &rl_conn_a), "X-RateLimit-Remaining: 0\r\n") != NULL);
    r = respond_on(w, &rl_conn_a);
    CHECK(strncmp(r, "HTTP/1.1 429 ", 13) == 0 && strstr(r, "\r\nRetry-After: 1\r\n") != NULL &&
          strstr(r, "X-RateLimit-Remaining: 0\r\n") != NULL);
    free_test_worker(w);
    ch_app_free(app);
}

/* chi_same_bytes against memcmp: every length to 70, a difference at
   every place (its straight-line first 24 bytes, its loop, its tail). */
static void test_same_bytes(void)
{
    char a[80], b[80];
    size_t n, i;
    int bad = 0;
    for (i = 0; i < sizeof a; i++) a[i] = b[i] = (char)('a' + i % 26);
    for (n = 0; n <= 70; n++) {
        if (!chi_same_bytes(a, b, n)) bad++;
        for (i = 0; i < n; i++) {
            b[i] ^= 1;
            if (chi_same_bytes(a, b, n)) bad++;
            b[i] ^= 1;
        }
    }
    CHECK(bad == 0);
}

/* An allowed origin's lines as cached and copied whole, for origins whose
   lines take each copy size (64, 128, 224 bytes), with credentials; the
   same origin again (the fast path) and after another (the slow one). */
static void test_cors_lines(void)
{
    static const size_t lens[] = {12, 40, 100, 127};
    ch_app *app = ch_app_new();
    ch_cors cors;
    chi_worker *w;
    char list[1024], origin[4][140], raw[400], want[400];
    size_t k;
    int round, bad = 0;
    list[0] = 0;
    for (k = 0; k < 4; k++) {
        size_t n = lens[k], i;
        memcpy(origin[k], "https://", 8);
        for (i = 8; i < n; i++) origin[k][i] = (char)('a' + (i + k) % 26);
        origin[k][n] = 0;
        strcat(list, k ? "," : "");
        strcat(list, origin[k]);
    }
    memset(&cors, 0, sizeof cors);
    cors.origins = list;
    cors.credentials = 1;
    CHECK(ch_use_cors(app, &cors) == 0);
    ch_get(app, "/csv", h_plain, NULL);
    w = test_worker(app);
    for (round = 0; round < 3; round++)
        for (k = 0; k < 4; k++) {
            const char *r;
            snprintf(raw, sizeof raw, "GET /csv HTTP/1.1\r\nHost: h\r\nOrigin: %s\r\n\r\n", origin[k]);
            snprintf(want, sizeof want, "\r\nAccess-Control-Allow-Origin: %s\r\nVary: Origin\r\n"
                     "Access-Control-Allow-Credentials: true\r\n", origin[k]);
            r = respond(w, raw);
            if (!strstr(r, want)) bad++;
            r = respond(w, raw); /* the same origin again: the fast path */
            if (!strstr(r, want)) bad++;
        }
    CHECK(bad == 0);
    free_test_worker(w);
    ch_app_free(app);
}

/* The bearer token from a cookie or a query parameter, when the route asks. */
static void test_bearer_elsewhere(void)
{
    ch_app *app = ch_app_new();
    ch_bearer header_only, anywhere;
    ch_group *a, *b;
    chi_worker *w;
    const char *r;
    memset(&header_only, 0, sizeof header_only);
    header_only.token = "s3cret";
    anywhere = header_only;
    anywhere.cookie = "token";
    anywhere.query = "access_token";
    a = ch_group_new(app, "/a");
    ch_group_use(a, ch_mw_bearer, &header_only);
    ch_group_route(a, CH_GET, "/x", h_plain, NULL);
    b = ch_group_new(app, "/b");
    ch_group_use(b, ch_mw_bearer, &anywhere);
    ch_group_route(b, CH_GET, "/x", h_plain, NULL);
    w = test_worker(app);
    r = respond(w, "GET /a/x?access_token=s3cret HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 401", 12) == 0); /* not asked for: the header only */
    r = respond(w, "GET /b/x?access_token=s3cret HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
    r = respond(w, "GET /b/x HTTP/1.1\r\nHost: h\r\nCookie: a=1; token=s3cret\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
    r = respond(w, "GET /b/x?access_token=wrong HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 401", 12) == 0 && strstr(r, "invalid_token"));
    r = respond(w, "GET /b/x HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 401", 12) == 0);
    r = respond(w, "GET /b/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer s3cret\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
    free_test_worker(w);
    ch_app_free(app);
}

/* CHOPIN_LOG and trust_proxy through ch_listen: code beats the
   environment, bad values are errors with a message. */
static int listen_with(ch_config *cfg, ch_app **out)
{
    ch_app *app = ch_app_new();
    int rc;
    cfg->host = "127.0.0.1";
    cfg->port = CH_PORT_ANY;
    cfg->workers = 1;
    rc = ch_listen(app, cfg);
    *out = app;
    return rc;
}

static void test_config(void)
{
    ch_config cfg;
    ch_app *app;
    memset(&cfg, 0, sizeof cfg);
    unsetenv("CHOPIN_LOG");
    unsetenv("CHOPIN_TRUST_PROXY");
    CHECK(listen_with(&cfg, &app) == 0 && app->log_level == CH_LOG_WARN && app->ntrusted == 0);
    ch_app_free(app);
    setenv("CHOPIN_LOG", "debug", 1);
    memset(&cfg, 0, sizeof cfg);
    CHECK(listen_with(&cfg, &app) == 0 && app->log_level == CH_LOG_DEBUG);
    ch_app_free(app);
    memset(&cfg, 0, sizeof cfg);
    cfg.log_level = CH_LOG_ERROR; /* set in code: the environment does not change it */
    CHECK(listen_with(&cfg, &app) == 0 && app->log_level == CH_LOG_ERROR);
    ch_app_free(app);
    setenv("CHOPIN_LOG", "loud", 1);
    memset(&cfg, 0, sizeof cfg);
    CHECK(listen_with(&cfg, &app) < 0 && strstr(ch_error(app), "CHOPIN_LOG") != NULL);
    ch_app_free(app);
    unsetenv("CHOPIN_LOG");
    setenv("CHOPIN_TRUST_PROXY", "10.0.0.0/8, ::1", 1);
    memset(&cfg, 0, sizeof cfg);
    CHECK(listen_with(&cfg, &app) == 0 && app->ntrusted == 2);
    ch_app_free(app);
    memset(&cfg, 0, sizeof cfg);
    cfg.trust_proxy = "127.0.0.1";
    CHECK(listen_with(&cfg, &app) == 0 && app->ntrusted == 1);
    ch_app_free(app);
    memset(&cfg, 0, sizeof cfg);
    cfg.trust_proxy = "proxy.local";
    CHECK(listen_with(&cfg, &app) < 0 && strstr(ch_error(app), "trust_proxy") != NULL);
    ch_app_free(app);
    unsetenv("CHOPIN_TRUST_PROXY");
}

/* ---- counters ---- */

/* The metrics counters are never read torn (issue 9, left open 4): a writer
   adds 2^32 + 1 at a time, so both 32-bit halves of every value it stores
   are equal; a reader on another thread must never see them differ. On a
   64-bit CPU this cannot fail. Built -m32 (make batteries-m32) plain 64-bit
   accesses are two 32-bit moves, but on x86 the two stores drain back to
   back and a torn read is rarely seen (0 in 26 million reads here, the
   plain way forced); it shows on weaker-ordered 32-bit CPUs (ARMv7). So
   the firm check is the first: gcc and clang compile the atomic way, the
   one whose 8-byte moves cannot tear. */
#define TEAR_ADDS 3000000
typedef struct tear_state {
    uint64_t count;
    int done;
} tear_state;

static void *tear_writer(void *arg)
{
    tear_state *t = (tear_state *)arg;
    int i;
    for (i = 0; i < TEAR_ADDS; i++) chi_stat_add(&t->count, 0x100000001ull);
    __atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_counters_tear_free(void)
{
    static tear_state t __attribute__((aligned(64)));
    pthread_t th;
    long reads = 0, torn = 0;
    uint64_t v;
    memset(&t, 0, sizeof t);
    CHECK(CHI_STAT_ATOMIC == 1);
    CHECK(__atomic_always_lock_free(sizeof(uint64_t), 0));
    CHECK(pthread_create(&th, NULL, tear_writer, &t) == 0);
    while (!__atomic_load_n(&t.done, __ATOMIC_ACQUIRE)) {
        v = chi_stat_read(&t.count);
        reads++;
        if ((uint32_t)(v >> 32) != (uint32_t)v) torn++;
    }
    pthread_join(th, NULL);
    v = chi_stat_read(&t.count);
    CHECK(v == (uint64_t)TEAR_ADDS * 0x100000001ull);
    printf("  %ld reads while counting, %ld torn (pointer size %u)\n", reads, torn, (unsigned)sizeof(void *));
    CHECK(torn == 0);
    CHECK(chi_stat_read(&t.count) >> 32 == TEAR_ADDS); /* the high half carried, not lost */
}

int main(void)
{
    run("addresses: IPv4 and IPv6 literals agree with inet_pton", test_ip_parse);
    run("addresses: trusted networks (CIDR, mapped IPv4)", test_nets);
    run("addresses: X-Forwarded-For read from the right", test_xff);
    run("addresses: several X-Forwarded-For lines are one list; X-Real-IP only once", test_xff_lines);
    run("counters: never read torn by the thread summing /metrics", test_counters_tear_free);
    run("PROXY v1: valid, every prefix waits, malformed refused", test_proxy_v1);
    run("PROXY v2: IPv4, IPv6, LOCAL, malformed refused", test_proxy_v2);
    run("buckets: refill, burst, Retry-After, LRU eviction", test_buckets);
    run("buckets: churn keeps the chains and LRU list whole", test_buckets_churn);
    run("cookies: Set-Cookie built and validated", test_cookie);
    run("integers: range and overflow checks", test_parse_ll);
    run("bug 4: an explicit Content-Type wins over every body call", test_content_type_rule);
    run("bug 5: HEAD states a length without a body, no false Content-Length: 0", test_head);
    run("bug 7: a misused JSON writer says why in the log; error messages JSON-escaped", test_json_misuse_logged);
    run("logger: rate-limited per second, levels, off", test_log_rate_limit);
    run("bug 8: decoded parameters and integer getters; Set-Cookie on a response", test_params_and_cookie);
    run("bug 6: buffers above the high-water mark are released", test_big_buffers_released);
    run("request id: kept when valid, else made", test_request_id);
    run("request id: the made ids count up in hex (carries, a digit gained)", test_request_id_count);
    run("request id: the middleware's ids, turned in the kept line, in the answers", test_request_id_fast);
    run("addresses: chi_same_bytes agrees with memcmp (every length, every place)", test_same_bytes);
    run("cors: an allowed origin's cached lines, whole, for each copy size", test_cors_lines);
    run("ratelimit: a connection keeps its client's bucket; a slot taken over is looked up again; LRU kept",
        test_ratelimit_conn_bucket);
    run("bearer: the token from a cookie or a query parameter when the route asks", test_bearer_elsewhere);
    run("config: CHOPIN_LOG, trust_proxy (code beats the environment; bad values refused)", test_config);
    run("slots: CHI_MAX_SLOTS CORS and rate limit registrations, then a clear error", test_slots_limit);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
