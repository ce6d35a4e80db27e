/* fuzz_chunked: the chunked decoder (chi_chunked_decode) on arbitrary bytes.

   Input: byte 0 picks max_body (1000 bytes or 8 MiB), byte 1 seeds the
   splits; the rest is a chunked body.

   Properties:
   - fed in one piece, one byte at a time (short inputs) and at arbitrary
     cuts, the decoder gives the same result, consumes the same bytes and
     decodes the same body (it is resumable: no byte boundary matters);
   - its verdict (complete, valid so far, refused; 413 for a chunk over
     max_body) agrees with an independent reference decoder written from
     RFC 9112 section 7.1, and so does the decoded body. */
#include "fuzz_common.h"

#define MAX_TRAILER 65536 /* inputs are at most a few KiB: never reached */

/* chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ) (RFC 9112
   7.1.1), ext-val = token / quoted-string: whitespace only before a ';' or
   an '=', never before the CR. Returns 1 with *pos at the CR, 0 when the
   bytes run out first, -1 when refused. */
static int ref_chunk_ext(const unsigned char *s, size_t n, size_t *pos)
{
    size_t p = *pos, w0;
    for (;;) {
        w0 = p;
        while (p < n && (s[p] == ' ' || s[p] == '\t')) p++;
        if (p == n) return 0;
        if (s[p] == '\r') {
            if (p != w0) return -1; /* BWS, then no ';' */
            *pos = p;
            return 1;
        }
        if (s[p++] != ';') return -1;
        while (p < n && (s[p] == ' ' || s[p] == '\t')) p++;
        if (p == n) return 0;
        if (!chi_is(s[p], CHI_TOKEN)) return -1; /* a name is required */
        while (p < n && chi_is(s[p], CHI_TOKEN)) p++;
        w0 = p;
        while (p < n && (s[p] == ' ' || s[p] == '\t')) p++;
        if (p == n) return 0;
        if (s[p] != '=') { /* no value: back to the whitespace, which a ';' must follow */
            p = w0;
            continue;
        }
        p++;
        while (p < n && (s[p] == ' ' || s[p] == '\t')) p++;
        if (p == n) return 0;
        if (s[p] == '"') { /* quoted-string: qdtext and quoted-pairs */
            for (p++;; p++) {
                if (p == n) return 0;
                if (s[p] == '"') break;
                if (s[p] == '\\' && ++p == n) return 0;
                if (!chi_is(s[p], CHI_VALUE)) return -1;
            }
            p++;
        } else {
            if (!chi_is(s[p], CHI_TOKEN)) return -1; /* a value is required after '=' */
            while (p < n && chi_is(s[p], CHI_TOKEN)) p++;
        }
    }
}

/* The reference: 1 complete (*used set), 0 valid prefix, -1 refused, -2 413. */
static int ref_chunked(const unsigned char *s, size_t n, uint64_t max_body, char *out, size_t *out_len,
                       size_t *used)
{
    size_t pos = 0;
    uint64_t total = 0;
    *out_len = 0;
    for (;;) {
        uint64_t size = 0;
        if (pos == n) return 0;
        if (chi_hexval(s[pos]) < 0) return -1;
        while (pos < n && chi_hexval(s[pos]) >= 0) {
            if (size > (UINT64_MAX >> 4)) return -1;
            size = size * 16 + (uint64_t)chi_hexval(s[pos++]);
        }
        if (pos == n) return 0;
        if (s[pos] != '\r') {
            int e = ref_chunk_ext(s, n, &pos);
            if (e <= 0) return e;
        }
        if (s[pos++] != '\r') return -1;
        if (pos == n) return 0;
        if (s[pos++] != '\n') return -1;
        if (size > max_body - total) return -2;
        if (size == 0) break;
        if (n - pos < size) return 0;
        memcpy(out + *out_len, s + pos, (size_t)size);
        *out_len += (size_t)size;
        pos += (size_t)size;
        total += size;
        if (pos == n) return 0;
        if (s[pos++] != '\r') return -1;
        if (pos == n) return 0;
        if (s[pos++] != '\n') return -1;
    }
    for (;;) { /* trailer section */
        if (pos == n) return 0;
        if (s[pos] == '\r') {
            pos++;
            if (pos == n) return 0;
            if (s[pos] != '\n') return -1;
            *used = pos + 1;
            return 1;
        }
        if (!chi_is(s[pos], CHI_TOKEN)) return -1;
        while (pos < n && chi_is(s[pos], CHI_TOKEN)) pos++;
        if (pos == n) return 0;
        if (s[pos++] != ':') return -1;
        while (pos < n && chi_is(s[pos], CHI_VALUE)) pos++;
        if (pos == n) return 0;
        if (s[pos++] != '\r') return -1;
        if (pos == n) return 0;
        if (s[pos++] != '\n') return -1;
    }
}

/* Feeds buf up to each cut in turn, then up to n. */
static int decode_cuts(char *buf, size_t n, const size_t *cuts, size_t nc, uint64_t max_body, chi_chunked *ck)
{
    size_t i;
    int r = 0;
    chi_chunked_init(ck, 0);
    for (i = 0; i <= nc; i++) {
        r = chi_chunked_decode(ck, buf, i < nc ? cuts[i] : n, max_body, MAX_TRAILER);
        if (r != 0) break;
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t max_body;
    const unsigned char *body;
    size_t n, cuts[4096], nc, i, ref_len = 0, ref_used = 0;
    char *one, *split, *bytewise, *ref_out;
    chi_chunked a, b, c;
    int ra, rb, rc = 0, rr;

    if (size < 2 || size > 4096 + 2) return 0;
    max_body = (data[0] & 1) ? 1000 : 8u << 20;
    body = data + 2;
    n = size - 2;
    one = fz_dup(body, n);
    split = fz_dup(body, n);
    bytewise = fz_dup(body, n);
    ref_out = (char *)malloc(n + 1);

    ra = decode_cuts(one, n, cuts, 0, max_body, &a);
    nc = fz_cuts(data[1] | (uint32_t)n << 8, n, cuts, 1 + data[1] % 40);
    rb = decode_cuts(split, n, cuts, nc, max_body, &b);
    if (n <= 512) {
        for (i = 1; i < n; i++) cuts[i - 1] = i;
        rc = decode_cuts(bytewise, n, cuts, n ? n - 1 : 0, max_body, &c);
    }
    FUZZ_CHECK(ra == 1 || ra == 0 || ra == -400 || ra == -413);
    FUZZ_CHECK(ra == rb);
    FUZZ_CHECK(a.dst <= a.src && a.src <= n && a.total == a.dst);
    if (ra == 1) {
        FUZZ_CHECK(a.src == b.src && a.dst == b.dst && memcmp(one, split, a.dst) == 0);
        FUZZ_CHECK(a.total <= max_body);
    }
    if (n <= 512) {
        FUZZ_CHECK(rc == ra);
        if (ra == 1) FUZZ_CHECK(c.src == a.src && c.dst == a.dst && memcmp(one, bytewise, a.dst) == 0);
    }

    rr = ref_chunked(body, n, max_body, ref_out, &ref_len, &ref_used);
    if (rr == 1) {
        FUZZ_CHECK(ra == 1);
        FUZZ_CHECK(a.src == ref_used && a.dst == ref_len && memcmp(one, ref_out, ref_len) == 0);
    } else if (rr == 0) {
        FUZZ_CHECK(ra == 0);
    } else if (rr == -2) {
        FUZZ_CHECK(ra == -413);
    } else {
        FUZZ_CHECK(ra == -400);
    }
    free(one);
    free(split);
    free(bytewise);
    free(ref_out);
    return 0;
}
