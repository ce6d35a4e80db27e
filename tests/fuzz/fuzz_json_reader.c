/* fuzz_json_reader: the JSON reader (ch_json_parse and its getters) on
   arbitrary bytes, against the strict RFC 8259 validator of fuzz_common.h.

   Input: byte 0 picks max_depth (1 to 64); the rest is the document.

   Properties:
   - ch_json_parse accepts exactly what the reference accepts (with room
     for every token; chopin's policies, shared by the reference: UTF-8 is
     checked, lone surrogate escapes are refused);
   - on success the tokens are consistent: each lies in the source, `next`
     skips exactly the value's subtree (a key's is the index after it), `count` is the number of children,
     keys are strings; every string unescapes (ch_json_get_str) to what the
     reference decodes; numbers read back (get_int agrees with strtoll when
     it succeeds); find / at / path never step outside the tokens;
   - with too few tokens it fails cleanly, never writes past them.

   FUZZ_GET_STR_CAP0 (on since 136cccb fixed it; -DFUZZ_GET_STR_CAP0=0 for
   an older chopin.h): ch_json_get_str(doc, t, out, 0) on an empty string
   wrote out[0]. */
#include "fuzz_common.h"

#include <errno.h>

#ifndef FUZZ_GET_STR_CAP0
#define FUZZ_GET_STR_CAP0 1
#endif

static const char *g_src;
static size_t g_len;

/* Checks token t and its subtree; returns the index after it. */
static uint32_t walk(const ch_jdoc *d, uint32_t t, int depth)
{
    const ch_jtok *k = &d->tok[t];
    uint32_t i, c;
    FUZZ_CHECK(t < (uint32_t)d->ntok);
    FUZZ_CHECK(k->start <= k->end && k->end <= g_len);
    switch (k->type) {
    case CH_JSON_OBJECT:
    case CH_JSON_ARRAY:
        FUZZ_CHECK(g_src[k->start] == (k->type == CH_JSON_OBJECT ? '{' : '['));
        FUZZ_CHECK(g_src[k->end - 1] == (k->type == CH_JSON_OBJECT ? '}' : ']'));
        c = t + 1;
        for (i = 0; i < k->count; i++) {
            if (k->type == CH_JSON_OBJECT) {
                FUZZ_CHECK(d->tok[c].type == CH_JSON_STRING);
                FUZZ_CHECK(d->tok[c].next == c + 1); /* 0 before 136cccb */
                c++;
                FUZZ_CHECK(ch_json_find(d, (int)t, "") >= -1);
            }
            c = walk(d, c, depth + 1);
            if (k->type == CH_JSON_ARRAY) FUZZ_CHECK(ch_json_at(d, (int)t, (int)i) >= 0);
        }
        FUZZ_CHECK(k->next == c);
        if (k->type == CH_JSON_ARRAY) FUZZ_CHECK(ch_json_at(d, (int)t, (int)k->count) == -1);
        return c;
    case CH_JSON_STRING: {
        size_t pos = k->start - 1, n = k->end - k->start;
        char *want = (char *)malloc(n + 1), *got = (char *)malloc(n + 1), *small;
        long r = ref_json_string(g_src, g_len, &pos, want), g;
        size_t cap;
        FUZZ_CHECK(r >= 0 && pos == k->end + 1);
        g = ch_json_get_str(d, (int)t, got, n + 1);
        FUZZ_CHECK(g == r && memcmp(got, want, (size_t)r) == 0 && got[r] == 0);
        /* a short buffer: CH_TOO_LONG, nothing written past it */
        cap = (size_t)r / 2 + (FUZZ_GET_STR_CAP0 ? 0 : 1);
        small = (char *)malloc(cap ? cap : 1);
        g = ch_json_get_str(d, (int)t, small, cap);
        FUZZ_CHECK((size_t)r + 1 <= cap ? g == r : g == CH_TOO_LONG);
        free(small);
        free(want);
        free(got);
        FUZZ_CHECK(k->next == t + 1);
        return t + 1;
    }
    case CH_JSON_NUMBER: {
        long long v;
        double dv;
        char tmp[512];
        size_t n = k->end - k->start;
        FUZZ_CHECK(n > 0);
        FUZZ_CHECK(ch_json_get_double(d, (int)t, &dv) == 0 || n >= sizeof tmp);
        if (ch_json_get_int(d, (int)t, &v) == 0 && n < sizeof tmp) {
            long long w;
            memcpy(tmp, g_src + k->start, n);
            tmp[n] = 0;
            errno = 0;
            w = strtoll(tmp, NULL, 10);
            FUZZ_CHECK(errno == 0 && w == v && !strpbrk(tmp, ".eE"));
        }
        FUZZ_CHECK(k->next == t + 1);
        return t + 1;
    }
    case CH_JSON_TRUE:
    case CH_JSON_FALSE: {
        int b;
        FUZZ_CHECK(ch_json_get_bool(d, (int)t, &b) == 0 && b == (k->type == CH_JSON_TRUE));
        FUZZ_CHECK(k->next == t + 1);
        return t + 1;
    }
    case CH_JSON_NULL:
        FUZZ_CHECK(k->next == t + 1);
        return t + 1;
    default:
        FUZZ_CHECK(0);
        return t + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ch_jdoc d;
    ch_jtok *tok;
    char *src;
    int depth, n, ok, small;
    size_t len;

    if (size < 1) return 0;
    depth = 1 + data[0] % 64;
    len = size - 1;
    src = fz_dup(data + 1, len);
    g_src = src;
    g_len = len;
    tok = (ch_jtok *)malloc(sizeof *tok * (len + 1));
    n = ch_json_parse(&d, src, len, tok, (int)len + 1, depth);
    ok = ref_json_valid(src, len, depth);
    FUZZ_CHECK((n > 0) == ok);
    if (n > 0) {
        FUZZ_CHECK(d.err == NULL);
        FUZZ_CHECK(walk(&d, 0, 0) == (uint32_t)n);
        FUZZ_CHECK(ch_json_path(&d, 0, "a.0.b") >= -1 && ch_json_path(&d, 0, "0.0") >= -1);
        /* too few tokens: a clean failure */
        small = n - 1;
        if (small >= 0) {
            ch_jtok *few = (ch_jtok *)malloc(sizeof *few * (size_t)(small ? small : 1));
            FUZZ_CHECK(ch_json_parse(&d, src, len, few, small, depth) == -1 && d.err != NULL);
            free(few);
        }
    } else {
        FUZZ_CHECK(n == -1 && d.err != NULL && d.err_pos <= len);
        FUZZ_CHECK(ch_json_type(&d, 0) == CH_JSON_NONE);
    }
    free(tok);
    free(src);
    return 0;
}
