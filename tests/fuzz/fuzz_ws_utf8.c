/* fuzz_ws_utf8: the incremental UTF-8 validator (chi_utf8_feed) that checks
   WebSocket text across fragments.

   Input: byte 0 seeds the cuts; the rest is the text.

   Properties:
   - fed whole, fed at arbitrary cuts and fed one byte at a time, it gives
     the same verdict (a split never matters);
   - the verdict agrees with a decoder written apart, from RFC 3629, both
     for whole texts and for prefixes: feeding fails exactly when no
     continuation could make the bytes valid (it fails fast);
   - it agrees with chopin.h's other UTF-8 check (chi_utf8_len, used by the
     JSON code) on whole texts. */
#include "fuzz_common.h"

/* 1: valid; 0: not. *prefix: 1 if some continuation could make it valid. */
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
            if (i + k >= n) { /* the code points any completion could give */
                unsigned lo = cp << 6 * (len - k), hi = lo | ((1u << 6 * (len - k)) - 1);
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

static int json_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        k = chi_utf8_len(s + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

/* 1 valid, 0 invalid; *failed_prefix: feeding failed before the end. */
static int feed_cuts(const unsigned char *s, size_t n, const size_t *cuts, size_t nc, int *fed_ok)
{
    chi_utf8 u;
    size_t start = 0, i;
    chi_utf8_init(&u);
    *fed_ok = 1;
    for (i = 0; i <= nc; i++) {
        size_t end = i < nc ? cuts[i] : n;
        if (chi_utf8_feed(&u, s + start, end - start) < 0) {
            *fed_ok = 0;
            return 0;
        }
        start = end;
    }
    return chi_utf8_done(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const unsigned char *s;
    unsigned char *copy;
    size_t n, cuts[4096], nc, i;
    int whole, split, bytewise, fed_whole, fed_split, fed_bytes, ref, prefix;
    if (size < 1 || size > 4097) return 0;
    s = data + 1;
    n = size - 1;
    copy = (unsigned char *)fz_dup(s, n);
    whole = feed_cuts(copy, n, cuts, 0, &fed_whole);
    nc = fz_cuts(data[0] | (uint32_t)n << 8, n, cuts, 1 + data[0] % 32);
    split = feed_cuts(copy, n, cuts, nc, &fed_split);
    for (i = 1; i < n; i++) cuts[i - 1] = i;
    bytewise = feed_cuts(copy, n, cuts, n ? n - 1 : 0, &fed_bytes);
    ref = ref_valid(copy, n, &prefix);
    FUZZ_CHECK(whole == split && whole == bytewise);
    FUZZ_CHECK(fed_whole == fed_split && fed_whole == fed_bytes);
    FUZZ_CHECK(whole == ref);
    FUZZ_CHECK(fed_whole == prefix);
    FUZZ_CHECK(whole == json_utf8_valid(copy, n));
    free(copy);
    return 0;
}
