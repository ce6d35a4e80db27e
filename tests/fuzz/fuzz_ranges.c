/* fuzz_ranges: the request-side parsers of >>ranges on arbitrary bytes.

   Input: byte 0 picks the file size (a power of two minus byte 0's low
   bits, or 0), the rest is a header value given to each parser.

   Properties:
   - chi_range_parse: 1 gives first <= last < size; 416 only for a
     non-empty unit "bytes=" value; 0 otherwise; never reads past the value;
   - chi_http_date: a date that parses formats back (chi_format_date) to a
     date that parses to the same second;
   - chi_etag_match, chi_if_range_ok, chi_preconditions, chi_accepts_coding
     only answer (0/1, 0/304/412), whatever the bytes. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *v, d[CHI_DATE_LEN];
    uint64_t fsize, first = 0, last = 0;
    int64_t t, t2;
    int r;
    ch_str s;
    if (size < 1) return 0;
    fsize = data[0] >= 250 ? 0 : ((uint64_t)1 << (data[0] % 40)) - (data[0] & 3);
    size -= 1;
    v = (char *)malloc(size ? size : 1); /* exactly the value: an over-read faults under ASan */
    if (!v) abort();
    memcpy(v, data + 1, size);
    s.ptr = v;
    s.len = size;
    r = chi_range_parse(s, fsize, &first, &last);
    FUZZ_CHECK(r == 0 || r == 1 || r == 416);
    if (r == 1) FUZZ_CHECK(first <= last && last < fsize);
    if (r == 416) FUZZ_CHECK(size >= 6 && (v[0] | 0x20) == 'b');
    if (chi_http_date(v, size, &t) == 0) {
        chi_format_date(t, d);
        FUZZ_CHECK(chi_http_date(d, CHI_DATE_LEN, &t2) == 0 && t2 == t);
    }
    r = chi_etag_match(s, "\"1-2-3\"", 7, (int)(fsize & 1));
    FUZZ_CHECK(r == 0 || r == 1);
    r = chi_if_range_ok(s, "\"1-2-3\"", 7, 784111777, (int64_t)784111777 + (int64_t)(fsize & 1));
    FUZZ_CHECK(r == 0 || r == 1);
    r = chi_preconditions(s, s, s, s, "\"1-2-3\"", 7, 784111777, (int)(fsize & 1));
    FUZZ_CHECK(r == 0 || r == 304 || r == 412);
    r = chi_accepts_coding(s, "gzip");
    FUZZ_CHECK(r == 0 || r == 1);
    free(v);
    return 0;
}
