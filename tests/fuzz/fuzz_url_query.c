/* fuzz_url_query: the percent-decoder (ch_url_decode) and the query walk
   (ch_form_next, ch_req_query) on arbitrary bytes.

   Input: byte 0 = flags (bit 0: '+' means space; the rest picks a small
   output size), then a name (up to 16 bytes) and a query string.

   Properties:
   - with room enough, ch_url_decode refuses exactly the inputs with a '%'
     not followed by two hex digits (CH_BAD), and otherwise returns the
     decoding built here independently, NUL-terminated;
   - with a small buffer it returns the same length if it fits, else
     CH_TOO_LONG (or CH_BAD), and never writes past cap;
   - ch_form_next walks the query in pieces that tile it (no byte lost or
     read twice, '&' separators only, empty pieces skipped);
   - ch_req_query returns the value of the first key that decodes to the
     name, decoded like ch_url_decode, or CH_ABSENT.

   - out always gets a NUL terminator when cap > 0, on CH_TOO_LONG and
     CH_BAD too (FUZZ_EXPECT_NUL_ON_ERROR: a finding fixed in 136cccb; on by
     default, -DFUZZ_EXPECT_NUL_ON_ERROR=0 for an older chopin.h). */
#include "fuzz_common.h"

#ifndef FUZZ_EXPECT_NUL_ON_ERROR
#define FUZZ_EXPECT_NUL_ON_ERROR 1
#endif

/* The reference decoding; returns -2 (bad) or the length. out: len bytes. */
static long ref_decode(const char *s, size_t len, char *out, int plus)
{
    size_t i, n = 0;
    for (i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi, lo;
            if (len - i < 3) return -2;
            hi = chi_hexval((unsigned char)s[i + 1]);
            lo = chi_hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0) return -2;
            out[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[n++] = (plus && s[i] == '+') ? ' ' : s[i];
        }
    }
    return (long)n;
}

static void check_decode(const char *s, size_t len, int plus, size_t small)
{
    char *want = (char *)malloc(len + 1), *big = (char *)malloc(len + 1), *tiny = (char *)malloc(small ? small : 1);
    long r = ref_decode(s, len, want, plus), got = ch_url_decode(s, len, big, len + 1, plus), got2;
    if (r == -2) {
        FUZZ_CHECK(got == CH_BAD);
    } else {
        FUZZ_CHECK(got == r && big[r] == 0 && memcmp(big, want, (size_t)r) == 0);
    }
    got2 = ch_url_decode(s, len, tiny, small, plus); /* ASan: nothing past tiny[small - 1] */
    if (r >= 0 && (size_t)r + 1 <= small)
        FUZZ_CHECK(got2 == r && memcmp(tiny, want, (size_t)r) == 0 && tiny[r] == 0);
    else if (r >= 0)
        FUZZ_CHECK(got2 == CH_TOO_LONG || (r == 0 && small == 0 && got2 == 0));
    else
        FUZZ_CHECK(got2 == CH_BAD || got2 == CH_TOO_LONG);
    if (FUZZ_EXPECT_NUL_ON_ERROR && got2 < 0 && small > 0) FUZZ_CHECK(memchr(tiny, 0, small) != NULL);
    free(want);
    free(big);
    free(tiny);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f;
    const uint8_t *nm;
    char name[17], *q, *val, *want, *ref_key;
    size_t nlen, qlen, small, covered = 0;
    unsigned flags;
    int plus;
    ch_req *req;
    ch_str rest, key, value;
    long got, expect = CH_ABSENT;

    if (size < 1) return 0;
    f.p = data;
    f.n = size;
    flags = fz_byte(&f);
    plus = flags & 1;
    small = (flags >> 1) % 24;
    nlen = fz_take(&f, 16, &nm);
    memcpy(name, nm, nlen);
    name[nlen] = 0;
    nlen = strlen(name); /* the API takes a C string */
    qlen = f.n;
    q = fz_dup(f.p, qlen);

    check_decode(q, qlen, plus, small);
    check_decode(name, nlen, plus, small);

    /* ch_form_next tiles the query */
    rest = chi_str(q, qlen);
    while (ch_form_next(&rest, &key, &value)) {
        size_t start = (size_t)(key.ptr - q), end = (size_t)(value.ptr + value.len - q); /* the piece's end */
        FUZZ_CHECK(key.ptr >= q && start >= covered && end <= qlen);
        FUZZ_CHECK(!memchr(key.ptr, '&', key.len) && !memchr(key.ptr, '=', key.len));
        FUZZ_CHECK(value.ptr == key.ptr + key.len + (end > start + key.len) && !memchr(value.ptr, '&', value.len));
        FUZZ_CHECK(key.len + value.len > 0 || (start < qlen && q[start] == '='));
        /* everything skipped since the last piece is '&' */
        while (covered < start) FUZZ_CHECK(q[covered++] == '&');
        covered = end;
        /* the reference for ch_req_query: the first key that decodes to the name */
        if (expect == CH_ABSENT) {
            ref_key = (char *)malloc(key.len + 1);
            if (ref_decode(key.ptr, key.len, ref_key, 1) == (long)nlen && memcmp(ref_key, name, nlen) == 0 &&
                nlen < 256) {
                want = (char *)malloc(value.len + 1);
                expect = ref_decode(value.ptr, value.len, want, 1);
                if (expect == -2) expect = CH_BAD;
                val = (char *)malloc(value.len + 1);
                req = (ch_req *)calloc(1, sizeof *req);
                req->query = chi_str(q, qlen);
                got = ch_req_query(req, name, val, value.len + 1);
                FUZZ_CHECK(got == expect);
                if (got >= 0) FUZZ_CHECK(memcmp(val, want, (size_t)got) == 0 && val[got] == 0);
                free(req);
                free(val);
                free(want);
            }
            free(ref_key);
        }
    }
    while (covered < qlen) FUZZ_CHECK(q[covered++] == '&');
    if (expect == CH_ABSENT && nlen < 256) {
        char out[8];
        req = (ch_req *)calloc(1, sizeof *req);
        req->query = chi_str(q, qlen);
        FUZZ_CHECK(ch_req_query(req, name, out, sizeof out) == CH_ABSENT);
        free(req);
    }
    free(q);
    return 0;
}
