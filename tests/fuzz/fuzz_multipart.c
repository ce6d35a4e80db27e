/* fuzz_multipart: the streaming multipart/form-data parser on arbitrary
   bytes.

   Input: byte 0 picks a boundary length (1-8 bytes of "b0123456" are the
   boundary), byte 1 a split point; the rest is the body.

   Properties:
   - fed whole, fed split at the chosen point, and fed one byte at a time,
     the parser gives the same result, the same error and the same events
     (part names, file names, data bytes, ends): the boundary may fall
     anywhere across reads;
   - it never reads or writes out of bounds (ASan), and the data handed to
     the application is never more than what was fed;
   - after a successful parse, every part that began has ended. */
#include "fuzz_common.h"

/* Events (part heads, ends with the data count so far) in buf; the data
   bytes, however they were split, in dbuf. */
typedef struct fz_log {
    unsigned char *buf, *dbuf;
    size_t len, cap, dlen, dcap;
    size_t begun, ended, data;
} fz_log;

static void fz_grow(unsigned char **b, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (*len + n > *cap) {
        size_t c = *cap ? *cap * 2 : 4096;
        while (c < *len + n) c *= 2;
        *b = (unsigned char *)realloc(*b, c);
        if (!*b) abort();
        *cap = c;
    }
    memcpy(*b + *len, p, n);
    *len += n;
}

static void fz_put(fz_log *l, const void *p, size_t n) { fz_grow(&l->buf, &l->len, &l->cap, p, n); }

static int fz_begin(const ch_part *p, void *user)
{
    fz_log *l = (fz_log *)user;
    fz_put(l, "B", 1);
    fz_put(l, p->name.ptr, p->name.len);
    fz_put(l, "|", 1);
    if (p->has_filename) fz_put(l, p->filename.ptr, p->filename.len);
    fz_put(l, "|", 1);
    if (p->content_type.ptr) fz_put(l, p->content_type.ptr, p->content_type.len);
    l->begun++;
    return 0;
}

static int fz_data(const char *d, size_t n, void *user)
{
    fz_log *l = (fz_log *)user;
    FUZZ_CHECK(n > 0);
    fz_grow(&l->dbuf, &l->dlen, &l->dcap, d, n);
    l->data += n;
    return 0;
}

static int fz_end(void *user)
{
    fz_log *l = (fz_log *)user;
    fz_put(l, "E", 1);
    fz_put(l, &l->data, sizeof l->data);
    l->ended++;
    return 0;
}

static int fz_run(const char *b, size_t blen, const uint8_t *d, size_t n, size_t step, size_t at, fz_log *l,
                  char *err, size_t errcap)
{
    ch_multipart_cb cb;
    ch_multipart_limits lim;
    ch_multipart *mp;
    size_t off = 0;
    int r = 0;
    memset(&cb, 0, sizeof cb);
    memset(&lim, 0, sizeof lim);
    lim.max_parts = 64;
    lim.max_header = 256;
    cb.part_begin = fz_begin;
    cb.part_data = fz_data;
    cb.part_end = fz_end;
    cb.user = l;
    mp = ch_multipart_new(b, blen, &lim, &cb);
    FUZZ_CHECK(mp != NULL);
    while (off < n && r == 0) {
        size_t k = step ? step : (off < at ? at - off : n - off);
        if (k > n - off) k = n - off;
        r = ch_multipart_feed(mp, (const char *)d + off, k);
        off += k;
    }
    if (r == 0) r = ch_multipart_finish(mp) == 0 ? 1 : -1;
    snprintf(err, errcap, "%s", ch_multipart_error(mp));
    ch_multipart_free(mp);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char bchars[] = "b0123456";
    fz_log a, s, o;
    char ea[64], es[64], eo[64];
    size_t blen, at;
    int ra, rs, ro;
    if (size < 2) return 0;
    blen = (size_t)(data[0] % 8) + 1;
    at = data[1];
    data += 2;
    size -= 2;
    memset(&a, 0, sizeof a);
    memset(&s, 0, sizeof s);
    memset(&o, 0, sizeof o);
    ra = fz_run(bchars, blen, data, size, 0, size, &a, ea, sizeof ea);
    rs = fz_run(bchars, blen, data, size, 0, at % (size + 1), &s, es, sizeof es);
    ro = fz_run(bchars, blen, data, size, 1, 0, &o, eo, sizeof eo);
    FUZZ_CHECK(ra == rs && ra == ro);
    FUZZ_CHECK(strcmp(ea, es) == 0 && strcmp(ea, eo) == 0);
    FUZZ_CHECK(a.begun == s.begun && a.begun == o.begun && a.ended == s.ended && a.ended == o.ended);
    FUZZ_CHECK(a.data == s.data && a.data == o.data);
    FUZZ_CHECK(a.data <= size);
    if (ra == 1) FUZZ_CHECK(a.begun == a.ended);
    FUZZ_CHECK(a.len == s.len && a.len == o.len);
    FUZZ_CHECK(a.len == 0 || (memcmp(a.buf, s.buf, a.len) == 0 && memcmp(a.buf, o.buf, a.len) == 0));
    FUZZ_CHECK(a.dlen == s.dlen && a.dlen == o.dlen);
    FUZZ_CHECK(a.dlen == 0 || (memcmp(a.dbuf, s.dbuf, a.dlen) == 0 && memcmp(a.dbuf, o.dbuf, a.dlen) == 0));
    free(a.dbuf);
    free(s.dbuf);
    free(o.dbuf);
    free(a.buf);
    free(s.buf);
    free(o.buf);
    return 0;
}
