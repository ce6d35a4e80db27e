/* fuzz_json_writer: the JSON writer's escaping and structure.

   Input: byte 0 chooses the mode.
   - Strings: the rest is a string of arbitrary bytes, written with
     ch_json_strn (and as a key). The output must be one valid JSON string
     (checked by a strict RFC 8259 validator written here and by chopin's
     own reader, ch_json_parse) that decodes to the input with every byte
     that is not part of valid UTF-8 replaced by U+FFFD.
   - Documents: the rest is a program of writer calls (open, close, key,
     string, int, double, bool, null). Unless the writer reports misuse
     (failed), a finished document (depth 0) must be valid JSON for both
     validators, and ch_json_parse must see the same number of values.
     A value asked for after the top-level one is complete must set
     `failed` (before 136cccb it came out as invalid JSON, unflagged). */
#include "fuzz_common.h"

#include <math.h>

/* The input with invalid UTF-8 bytes replaced by U+FFFD (EF BF BD). */
static size_t ref_sanitize(const unsigned char *s, size_t n, char *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        size_t k = ref_utf8_len(s + i, n - i);
        if (k == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        }
    }
    return o;
}

static void check_string_mode(const uint8_t *s, size_t n)
{
    ch_json j;
    char *want = (char *)malloc(3 * n + 1), *got;
    size_t want_len = ref_sanitize(s, n, want), pos = 0;
    long got_len;
    ch_jdoc doc;
    ch_jtok tok[4];
    char *copy = fz_dup(s, n);

    ch_json_init(&j);
    ch_json_strn(&j, copy, n);
    FUZZ_CHECK(!j.failed);
    got = (char *)malloc(j.len + 1);
    got_len = ref_json_string(j.buf, j.len, &pos, got);
    FUZZ_CHECK(got_len >= 0 && pos == j.len);
    FUZZ_CHECK((size_t)got_len == want_len && memcmp(got, want, want_len) == 0);
    /* raw control bytes, DEL aside, never pass; the escapes are the short ones where RFC 8259 has them */
    for (pos = 0; pos < j.len; pos++) FUZZ_CHECK((unsigned char)j.buf[pos] >= 0x20);
    FUZZ_CHECK(ch_json_parse(&doc, j.buf, j.len, tok, 4, 0) == 1 && ch_json_type(&doc, 0) == CH_JSON_STRING);
    {
        char *viaget = (char *)malloc(want_len + 1);
        FUZZ_CHECK(ch_json_get_str(&doc, 0, viaget, want_len + 1) == (long)want_len);
        FUZZ_CHECK(memcmp(viaget, want, want_len) == 0);
        free(viaget);
    }
    /* the same bytes as a key */
    ch_json_reset(&j);
    ch_json_object_begin(&j);
    ch_json_keyn(&j, copy, n);
    ch_json_int(&j, 1);
    ch_json_object_end(&j);
    FUZZ_CHECK(!j.failed && j.depth == 0 && ref_json_valid(j.buf, j.len, 64));
    ch_json_free(&j);
    free(got);
    free(want);
    free(copy);
}

static void check_document_mode(fz *f)
{
    ch_json j;
    int values = 0, steps = 0, second_root = 0;
    char strbuf[64];
    ch_json_init(&j);
    while (f->n > 0 && steps++ < 2000) {
        unsigned op = fz_byte(f) % 11;
        int in_object = j.depth > 0 && !((j.arrays >> (j.depth - 1)) & 1);
        int counts = j.depth > 0 || j.len == 0; /* a value at the top only once */
        second_root = j.depth == 0 && j.len > 0 && op != 2 && op != 3 && op != 4;
        switch (op) {
        case 0: ch_json_object_begin(&j); values += counts; break;
        case 1: ch_json_array_begin(&j); values += counts; break;
        case 2: ch_json_object_end(&j); break;
        case 3: ch_json_array_end(&j); break;
        case 4: {
            const uint8_t *k;
            size_t n = fz_take(f, sizeof strbuf, &k);
            memcpy(strbuf, k, n);
            ch_json_keyn(&j, strbuf, n);
            if (in_object && !j.failed) values++; /* the parser counts keys as string values */
            break;
        }
        case 5: {
            const uint8_t *k;
            size_t n = fz_take(f, sizeof strbuf, &k);
            memcpy(strbuf, k, n);
            ch_json_strn(&j, strbuf, n);
            values += counts;
            break;
        }
        case 6: {
            long long v = 0;
            int b;
            for (b = 0; b < 8; b++) v = (long long)((unsigned long long)v << 8 | fz_byte(f));
            ch_json_int(&j, v);
            values += counts;
            break;
        }
        case 7: {
            uint64_t bits = 0;
            double d;
            int b;
            for (b = 0; b < 8; b++) bits = bits << 8 | fz_byte(f);
            memcpy(&d, &bits, sizeof d);
            ch_json_double(&j, d);
            values += counts;
            if (!j.failed && j.len > 0 && !isnan(d) && !isinf(d)) {
                /* the last number written reads back exactly */
                size_t e = j.len, s = e;
                char tmp[64];
                while (s > 0 && strchr("0123456789+-.eE", j.buf[s - 1])) s--;
                if (e - s < sizeof tmp) {
                    memcpy(tmp, j.buf + s, e - s);
                    tmp[e - s] = 0;
                    FUZZ_CHECK(strtod(tmp, NULL) == d);
                }
            }
            break;
        }
        case 8: ch_json_bool(&j, (int)(fz_byte(f) & 1)); values += counts; break;
        case 9: ch_json_null(&j); values += counts; break;
        default: ch_json_uint(&j, (unsigned long long)fz_byte(f) << 40); values += counts; break;
        }
        if (second_root) FUZZ_CHECK(j.failed); /* a second top-level value */
        if (j.failed) break;
    }
    if (!j.failed && j.depth == 0 && j.len > 0) {
        ch_jdoc doc;
        int ntok, max = (int)j.len + 1;
        ch_jtok *tok = (ch_jtok *)malloc(sizeof *tok * (size_t)max);
        FUZZ_CHECK(ref_json_valid(j.buf, j.len, 64));
        ntok = ch_json_parse(&doc, j.buf, j.len, tok, max, 64);
        FUZZ_CHECK(ntok > 0);
        FUZZ_CHECK(ntok == values);
        free(tok);
    }
    ch_json_free(&j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f;
    if (size < 1) return 0;
    if (data[0] & 1) {
        check_string_mode(data + 1, size - 1);
    } else {
        f.p = data + 1;
        f.n = size - 1;
        check_document_mode(&f);
    }
    return 0;
}
