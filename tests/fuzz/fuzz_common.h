/* tests/fuzz/fuzz_common.h - shared by the libFuzzer targets in this folder.

   Each target includes the implementation, so the private chi_ functions
   (parser, chunked decoder, router) are reachable, and checks properties
   with FUZZ_CHECK, which prints the failed condition and aborts: libFuzzer
   then saves the input as a crash. Build one with
       clang -fsanitize=fuzzer,address,undefined tests/fuzz/fuzz_parser.c
   or all with `make fuzz-build`. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#define CHOPIN_IMPLEMENTATION
#include "../../chopin.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                    \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "FUZZ_CHECK failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

/* A request with its header and parameter storage (ch_req points into a
   chi_req_store since chopin.h 0.2), in one allocation: free() frees both. */
typedef struct fz_req {
    ch_req req;
    chi_req_store store;
} fz_req;

static inline ch_req *fz_req_new(void)
{
    fz_req *r = (fz_req *)calloc(1, sizeof *r);
    if (!r) abort();
    chi_req_bind(&r->req, &r->store);
    return &r->req;
}

/* Reads the fuzz input as a stream of choices, then raw bytes. */
typedef struct fz {
    const uint8_t *p;
    size_t n;
} fz;

static inline unsigned fz_byte(fz *f)
{
    unsigned b;
    if (f->n == 0) return 0;
    b = f->p[0];
    f->p++;
    f->n--;
    return b;
}

/* Up to max bytes (as many as the first byte says, mod max + 1). */
static inline size_t fz_take(fz *f, size_t max, const uint8_t **out)
{
    size_t k = fz_byte(f);
    if (max < 255) k %= max + 1;
    if (k > f->n) k = f->n;
    *out = f->p;
    f->p += k;
    f->n -= k;
    return k;
}

/* A heap copy of exactly n bytes (at least 1 allocated), so that ASan sees
   any read past the end. */
static inline char *fz_dup(const void *p, size_t n)
{
    char *d = (char *)malloc(n ? n : 1);
    if (n) memcpy(d, p, n);
    return d;
}

/* A deterministic list of cut points in (0, len), from a seed. */
static inline size_t fz_cuts(uint32_t seed, size_t len, size_t *cuts, size_t max)
{
    size_t k = 0, i;
    uint32_t x = seed * 2654435761u + 1;
    if (len < 2) return 0;
    for (i = 0; i < max; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        cuts[k++] = 1 + x % (len - 1);
    }
    /* sorted, duplicates removed */
    for (i = 1; i < k; i++) {
        size_t v = cuts[i], j = i;
        while (j > 0 && cuts[j - 1] > v) {
            cuts[j] = cuts[j - 1];
            j--;
        }
        cuts[j] = v;
    }
    for (i = 0, max = 0; i < k; i++)
        if (max == 0 || cuts[max - 1] != cuts[i]) cuts[max++] = cuts[i];
    return max;
}

/* RFC 3629 UTF-8: the length of the valid sequence at s, or 0. Written
   apart from chopin.h's own, to check it. */
static inline size_t ref_utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0], cp;
    size_t len, i;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
    else return 0;
    if (n < len) return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return 0; /* overlong */
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;                          /* surrogate */
    if (cp > 0x10FFFF) return 0;
    return len;
}

/* A strict RFC 8259 validator, independent of chopin.h's reader. It also
   decodes strings: ref_json_string() reads one from s[*pos] (at the quote)
   into out (if not NULL; room for len bytes is enough) and returns the
   decoded length, or -1. */
static inline long ref_json_string(const char *s, size_t len, size_t *pos, char *out)
{
    size_t i = *pos, n = 0;
    if (i >= len || s[i] != '"') return -1;
    i++;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') {
            *pos = i + 1;
            return (long)n;
        }
        if (c < 0x20) return -1;
        if (c == '\\') {
            unsigned u = 0, k;
            if (i + 1 >= len) return -1;
            c = (unsigned char)s[i + 1];
            i += 2;
            switch (c) {
            case '"': case '\\': case '/': if (out) out[n] = (char)c; n++; continue;
            case 'b': if (out) out[n] = '\b'; n++; continue;
            case 'f': if (out) out[n] = '\f'; n++; continue;
            case 'n': if (out) out[n] = '\n'; n++; continue;
            case 'r': if (out) out[n] = '\r'; n++; continue;
            case 't': if (out) out[n] = '\t'; n++; continue;
            case 'u': break;
            default: return -1;
            }
            for (k = 0; k < 4; k++) {
                int d = i + k < len ? chi_hexval((unsigned char)s[i + k]) : -1;
                if (d < 0) return -1;
                u = u * 16 + (unsigned)d;
            }
            i += 4;
            if (u >= 0xDC00 && u <= 0xDFFF) return -1; /* chopin's policy: no lone surrogates */
            if (u >= 0xD800 && u <= 0xDBFF) {
                unsigned lo = 0;
                if (i + 6 > len || s[i] != '\\' || s[i + 1] != 'u') return -1;
                for (k = 0; k < 4; k++) {
                    int d = chi_hexval((unsigned char)s[i + 2 + k]);
                    if (d < 0) return -1;
                    lo = lo * 16 + (unsigned)d;
                }
                if (lo < 0xDC00 || lo > 0xDFFF) return -1;
                i += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (u < 0x80) {
                if (out) out[n] = (char)u;
                n += 1;
            } else if (u < 0x800) {
                if (out) out[n] = (char)(0xC0 | (u >> 6)), out[n + 1] = (char)(0x80 | (u & 0x3F));
                n += 2;
            } else if (u < 0x10000) {
                if (out)
                    out[n] = (char)(0xE0 | (u >> 12)), out[n + 1] = (char)(0x80 | ((u >> 6) & 0x3F)),
                    out[n + 2] = (char)(0x80 | (u & 0x3F));
                n += 3;
            } else {
                if (out)
                    out[n] = (char)(0xF0 | (u >> 18)), out[n + 1] = (char)(0x80 | ((u >> 12) & 0x3F)),
                    out[n + 2] = (char)(0x80 | ((u >> 6) & 0x3F)), out[n + 3] = (char)(0x80 | (u & 0x3F));
                n += 4;
            }
            continue;
        }
        {
            size_t k = ref_utf8_len((const unsigned char *)s + i, len - i);
            if (k == 0) return -1;
            if (out) memcpy(out + n, s + i, k);
            n += k;
            i += k;
        }
    }
    return -1;
}

static inline void ref_json_ws(const char *s, size_t len, size_t *pos)
{
    while (*pos < len && (s[*pos] == ' ' || s[*pos] == '\t' || s[*pos] == '\n' || s[*pos] == '\r')) (*pos)++;
}

/* One value at s[*pos]; returns 0 or -1. depth counts open containers. */
static inline int ref_json_value(const char *s, size_t len, size_t *pos, int depth, int max_depth)
{
    size_t i;
    ref_json_ws(s, len, pos);
    i = *pos;
    if (i >= len) return -1;
    if (s[i] == '{' || s[i] == '[') {
        char close = s[i] == '{' ? '}' : ']';
        int obj = s[i] == '{';
        if (depth + 1 > max_depth) return -1;
        (*pos)++;
        ref_json_ws(s, len, pos);
        if (*pos < len && s[*pos] == close) {
            (*pos)++;
            return 0;
        }
        for (;;) {
            if (obj) {
                ref_json_ws(s, len, pos);
                if (ref_json_string(s, len, pos, NULL) < 0) return -1;
                ref_json_ws(s, len, pos);
                if (*pos >= len || s[*pos] != ':') return -1;
                (*pos)++;
            }
            if (ref_json_value(s, len, pos, depth + 1, max_depth) < 0) return -1;
            ref_json_ws(s, len, pos);
            if (*pos < len && s[*pos] == ',') {
                (*pos)++;
                continue;
            }
            if (*pos < len && s[*pos] == close) {
                (*pos)++;
                return 0;
            }
            return -1;
        }
    }
    if (s[i] == '"') return ref_json_string(s, len, pos, NULL) < 0 ? -1 : 0;
    if (len - i >= 4 && memcmp(s + i, "true", 4) == 0) return *pos += 4, 0;
    if (len - i >= 5 && memcmp(s + i, "false", 5) == 0) return *pos += 5, 0;
    if (len - i >= 4 && memcmp(s + i, "null", 4) == 0) return *pos += 4, 0;
    /* number = [ minus ] int [ frac ] [ exp ] */
    if (s[i] == '-') i++;
    if (i < len && s[i] == '0') {
        i++;
    } else if (i < len && s[i] >= '1' && s[i] <= '9') {
        while (i < len && s[i] >= '0' && s[i] <= '9') i++;
    } else {
        return -1;
    }
    if (i < len && s[i] == '.') {
        size_t d = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9') i++;
        if (i == d) return -1;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        size_t d;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) i++;
        d = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') i++;
        if (i == d) return -1;
    }
    *pos = i;
    return 0;
}

/* A whole document: one value with optional whitespace around it. */
static inline int ref_json_valid(const char *s, size_t len, int max_depth)
{
    size_t pos = 0;
    if (ref_json_value(s, len, &pos, 0, max_depth) < 0) return 0;
    ref_json_ws(s, len, &pos);
    return pos == len;
}

#endif
