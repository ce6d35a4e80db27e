/* fuzz_proxy: the PROXY protocol header parser (chi_proxy_parse, v1 text
   and v2 binary), the IP literal parser and the X-Forwarded-For walk, on
   arbitrary bytes.

   Input: byte 0 picks the part (even: PROXY header; odd: the bytes as an
   address and as an X-Forwarded-For value), the rest is the data, copied
   into a buffer of exactly its size (so ASan sees any over-read).

   Properties:
   - chi_proxy_parse returns -1, 0 (need more) or a length in 1..len;
   - it is stateless: when the whole input gives a length r, every prefix
     shorter than r gives 0 and every longer one r with the same address;
     when the whole gives -1, no prefix gives a length;
   - a v1 header found ends with CRLF; the address family is 0, 4 or 6;
   - chi_ip_parse agrees with inet_pton on every input without brackets,
     byte for byte;
   - the X-Forwarded-For walk returns an address only when one of the
     list's items parses, never reads outside the value, and gives the
     same over two lines as over their comma-joined one (RFC 9110 5.3);
     X-Real-IP sent twice names no one. */
#include "fuzz_common.h"

#include <arpa/inet.h>

static void fuzz_proxy_header(const char *buf, size_t len)
{
    chi_peer p, q;
    long r = chi_proxy_parse(buf, len, &p);
    size_t k;
    FUZZ_CHECK(r >= -1 && r <= (long)len);
    if (r > 0) {
        FUZZ_CHECK(p.family == 0 || p.family == 4 || p.family == 6);
        if (buf[0] == 'P') FUZZ_CHECK(r >= 2 && buf[r - 2] == '\r' && buf[r - 1] == '\n');
    }
    for (k = 1; k < len; k++) {
        long rk = chi_proxy_parse(buf, k, &q);
        if (r > 0 && (long)k < r) FUZZ_CHECK(rk == 0);
        if (r > 0 && (long)k >= r) FUZZ_CHECK(rk == r && memcmp(&p, &q, sizeof p) == 0);
        if (r < 0) FUZZ_CHECK(rk <= 0);
        if (r == 0) FUZZ_CHECK(rk == 0);
    }
}

/* X-Forwarded-For over several lines (RFC 9110 5.3): the bytes up to the
   first '\n' are one line, the rest another; the walk over the two lines
   must give what it gives over the one line "first,rest". X-Real-IP: two
   lines never name anyone. */
static void fuzz_xff_lines(const char *buf, size_t len, const chi_net *nets, int n)
{
    ch_header h[2];
    chi_peer p, q;
    const char *nl = (const char *)memchr(buf, '\n', len);
    int r2, r1;
    h[0].name = h[1].name = chi_str("X-Forwarded-For", 15);
    h[0].value = chi_str(buf, len);
    if (chi_xff_client_lines(h, 1, nets, n, &p) == 0) FUZZ_CHECK(p.family == 4 || p.family == 6);
    if (!nl) return;
    h[0].value = chi_str(buf, (size_t)(nl - buf));
    h[1].value = chi_str(nl + 1, len - (size_t)(nl - buf) - 1);
    r2 = chi_xff_client_lines(h, 2, nets, n, &p);
    {
        char *joined = (char *)malloc(len);
        memcpy(joined, buf, len);
        joined[nl - buf] = ',';
        h[0].value = chi_str(joined, len);
        r1 = chi_xff_client_lines(h, 1, nets, n, &q);
        free(joined);
    }
    FUZZ_CHECK(r1 == r2);
    if (r1 == 0) FUZZ_CHECK(memcmp(&p, &q, sizeof p) == 0);
    h[0].name = h[1].name = chi_str("X-Real-IP", 9);
    h[0].value = chi_str(buf, (size_t)(nl - buf));
    FUZZ_CHECK(chi_real_ip_client(h, 2, &p) < 0);
}

static void fuzz_addresses(const char *buf, size_t len)
{
    chi_peer p;
    chi_net nets[2];
    const char *bad;
    int n = chi_nets_parse("10.0.0.0/8, ::1", nets, 2, &bad);
    int ours = chi_ip_parse(buf, len, &p);
    if (len < 64 && !memchr(buf, '[', len) && !memchr(buf, 0, len)) {
        char text[64];
        unsigned char want[16];
        int v6 = memchr(buf, ':', len) != NULL;
        int theirs;
        memcpy(text, buf, len);
        text[len] = 0;
        theirs = inet_pton(v6 ? AF_INET6 : AF_INET, text, want) == 1;
        FUZZ_CHECK(theirs == (ours == 0));
        if (theirs) FUZZ_CHECK(p.family == (v6 ? 6 : 4) && memcmp(p.addr, want, v6 ? 16 : 4) == 0);
    }
    FUZZ_CHECK(n == 2);
    fuzz_xff_lines(buf, len, nets, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf;
    if (size < 2) return 0;
    buf = (char *)malloc(size - 1);
    memcpy(buf, data + 1, size - 1);
    if (data[0] & 1)
        fuzz_addresses(buf, size - 1);
    else
        fuzz_proxy_header(buf, size - 1);
    free(buf);
    return 0;
}
