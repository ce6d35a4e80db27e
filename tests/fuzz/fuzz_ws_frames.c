/* fuzz_ws_frames: the incremental WebSocket frame parser (chi_ws_parse) on
   arbitrary client bytes.

   Input: byte 0 picks the message limit (16 bytes, 1000, or 1 MiB), byte 1
   seeds the cuts; the rest is the stream from the client.

   Properties:
   - fed whole, at arbitrary cuts, and one byte at a time (short inputs), it
     reports the same messages, controls and error (no byte boundary
     matters), and a DATA piece always lies inside the bytes it was given;
   - what it reports agrees with a reference decoder written apart, from
     RFC 6455 (sections 5.2-5.5, 7.4 and 8.1), which reads the whole stream
     at once: same messages and payloads, same close code on error, and the
     error found as early (fail fast: from the bytes received so far). */
#include "fuzz_common.h"
#include "../ws/ws_frames.h"

/* RFC 3629 prefix check: 1 if s[0, n) is valid UTF-8 or can be continued
   into it; *whole: valid as it is. */
static int ref_utf8(const unsigned char *s, size_t n, int *whole)
{
    size_t i = 0;
    *whole = 0;
    while (i < n) {
        unsigned c = s[i], cp, len, k;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC0 && c < 0xE0) len = 2, cp = c & 0x1F;
        else if (c >= 0xE0 && c < 0xF0) len = 3, cp = c & 0x0F;
        else if (c >= 0xF0 && c < 0xF8) len = 4, cp = c & 0x07;
        else return 0;
        for (k = 1; k < len; k++) {
            if (i + k >= n) {
                unsigned lo = cp << 6 * (len - k), hi = lo | ((1u << 6 * (len - k)) - 1);
                unsigned min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
                return !(hi < min || lo > 0x10FFFF || (lo >= 0xD800 && hi <= 0xDFFF));
            }
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    *whole = 1;
    return 1;
}

static int ref_close_code_ok(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

static void ref_error(wsf_transcript *t, int code)
{
    char e[16];
    snprintf(e, sizeof e, "E%d;", code);
    wsf_put(t, e, strlen(e));
}

/* The whole stream at once, frame by frame. */
static void ref_parse(const unsigned char *s, size_t n, uint64_t max, wsf_transcript *t)
{
    size_t pos = 0;
    int msg = 0, whole;
    unsigned char *buf = (unsigned char *)malloc(n + 1);
    size_t blen = 0;
    uint64_t mlen = 0;
    wsf_put(t, "", 0);
    while (n - pos >= 2) {
        unsigned b0 = s[pos], b1 = s[pos + 1], op = b0 & 15, fin = b0 >> 7, len7 = b1 & 127, i;
        size_t hl, avail, k;
        uint64_t len;
        int control = op >= 8;
        if (b0 & 0x70) return ref_error(t, 1002), free(buf);
        if (!(op <= 2 || (op >= 8 && op <= 10))) return ref_error(t, 1002), free(buf);
        if (!(b1 & 0x80)) return ref_error(t, 1002), free(buf);
        if (control && (!fin || len7 > 125)) return ref_error(t, 1002), free(buf);
        if (!control && op == 0 && !msg) return ref_error(t, 1002), free(buf);
        if (!control && op != 0 && msg) return ref_error(t, 1002), free(buf);
        hl = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
        if (n - pos < hl) break;
        len = len7;
        if (len7 == 126) {
            len = (uint64_t)s[pos + 2] << 8 | s[pos + 3];
            if (len < 126) return ref_error(t, 1002), free(buf);
        } else if (len7 == 127) {
            for (len = 0, i = 0; i < 8; i++) len = len << 8 | s[pos + 2 + i];
            if (len < 65536 || len >= ((uint64_t)1 << 63)) return ref_error(t, 1002), free(buf);
        }
        if (!control) {
            if (op != 0) msg = (int)op, mlen = 0, blen = 0;
            if (mlen + len > max || len > max) return ref_error(t, 1009), free(buf);
            mlen += len;
        }
        avail = n - pos - hl < len ? n - pos - hl : (size_t)len;
        if (control) {
            unsigned char c[125];
            if (avail < len) break;
            for (k = 0; k < avail; k++) c[k] = s[pos + hl + k] ^ s[pos + hl - 4 + (k & 3)];
            if (op == 9) wsf_put_item(t, "ping", c, avail);
            else if (op == 10) wsf_put_item(t, "pong", c, avail);
            else if (avail == 0) wsf_put_item(t, "close1005/", c, 0);
            else {
                unsigned code = avail >= 2 ? (unsigned)c[0] << 8 | c[1] : 0;
                char tag[24];
                if (avail == 1 || !ref_close_code_ok(code)) return ref_error(t, 1002), free(buf);
                if (!ref_utf8(c + 2, avail - 2, &whole) || !whole) return ref_error(t, 1007), free(buf);
                snprintf(tag, sizeof tag, "close%u/", code);
                wsf_put_item(t, tag, c + 2, avail - 2);
            }
            pos += hl + avail;
            continue;
        }
        for (k = 0; k < avail; k++) buf[blen + k] = s[pos + hl + k] ^ s[pos + hl - 4 + (k & 3)];
        blen += avail;
        if (msg == 1 && !ref_utf8(buf, blen, &whole)) return ref_error(t, 1007), free(buf);
        if (avail < len) break;
        pos += hl + avail;
        if (fin) {
            if (msg == 1 && !whole) return ref_error(t, 1007), free(buf);
            wsf_put_item(t, msg == 1 ? "T" : "B", buf, blen);
            msg = 0;
            blen = 0;
        }
    }
    free(buf);
}

/* Runs the parser at the cuts and checks every DATA piece is inside the
   buffer. */
static void run_cuts(const unsigned char *s, size_t n, uint64_t max, const size_t *cuts, size_t nc, wsf_transcript *t)
{
    unsigned char *copy = (unsigned char *)fz_dup(s, n);
    chi_ws_parser ps;
    chi_ws_parser_init(&ps, max);
    wsf_run(&ps, copy, n, cuts, nc, t);
    wsf_put(t, "", 0);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t limits[] = {16, 1000, 1 << 20};
    const unsigned char *s;
    size_t n, cuts[4096], nc, i;
    uint64_t max;
    wsf_transcript whole, split, bytes, ref;
    if (size < 2 || size > 4098) return 0;
    max = limits[data[0] % 3];
    s = data + 2;
    n = size - 2;
    memset(&whole, 0, sizeof whole);
    memset(&split, 0, sizeof split);
    memset(&bytes, 0, sizeof bytes);
    memset(&ref, 0, sizeof ref);
    run_cuts(s, n, max, cuts, 0, &whole);
    nc = fz_cuts(data[1] | (uint32_t)n << 8, n, cuts, 1 + data[1] % 40);
    run_cuts(s, n, max, cuts, nc, &split);
    FUZZ_CHECK(strcmp(whole.text, split.text) == 0);
    if (n <= 512) {
        for (i = 1; i < n; i++) cuts[i - 1] = i;
        run_cuts(s, n, max, cuts, n ? n - 1 : 0, &bytes);
        FUZZ_CHECK(strcmp(whole.text, bytes.text) == 0);
    }
    ref_parse(s, n, max, &ref);
    if (strcmp(whole.text, ref.text) != 0) fprintf(stderr, "parser:    %s\nreference: %s\n", whole.text, ref.text);
    FUZZ_CHECK(strcmp(whole.text, ref.text) == 0);
    wsf_free(&whole);
    wsf_free(&split);
    wsf_free(&bytes);
    wsf_free(&ref);
    return 0;
}
