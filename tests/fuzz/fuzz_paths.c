/* fuzz_paths: the path guards of >>paths on arbitrary bytes.

   Input: byte 0 = flags (bit 0: allow dotfiles; the rest picks an output
   size), then a URL path piece (a wildcard value).

   Properties of chi_path_clean's output when it accepts:
   - relative, '/'-separated, no empty segment, no "." or ".." segment, no
     NUL, control byte or backslash; a segment starts with '.' only when
     dotfiles are allowed; it is NUL-terminated and within cap;
   - it never accepts an input that chi_dot_segment says holds a ".."
     segment (the router's guard and the file guard agree);
   - it refuses ("-400") any input holding an encoded '/' or NUL;
   - cleaning an output with no '%' left gives the same bytes. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out, *again;
    size_t cap, i;
    long r, r2;
    int dot;
    const char *in;
    if (size < 1) return 0;
    dot = data[0] & 1;
    cap = (size_t)(data[0] >> 1) * 4 + 1;
    in = (const char *)data + 1;
    size -= 1;
    out = (char *)malloc(cap);
    again = (char *)malloc(cap);
    if (!out || !again) abort();
    r = chi_path_clean(in, size, out, cap, dot);
    FUZZ_CHECK(r >= 0 || r == -400 || r == -404);
    if (r >= 0) {
        size_t n = (size_t)r, seg = 0;
        FUZZ_CHECK(n < cap && out[n] == 0);
        FUZZ_CHECK(n == 0 || (out[0] != '/' && out[n - 1] != '/'));
        for (i = 0; i <= n; i++) {
            unsigned char c = (unsigned char)out[i];
            if (i == n || c == '/') {
                size_t sl = i - seg;
                FUZZ_CHECK(sl > 0 || n == 0);
                FUZZ_CHECK(!(sl == 1 && out[seg] == '.'));
                FUZZ_CHECK(!(sl == 2 && out[seg] == '.' && out[seg + 1] == '.'));
                FUZZ_CHECK(sl == 0 || dot || out[seg] != '.');
                seg = i + 1;
                continue;
            }
            FUZZ_CHECK(c >= 0x20 && c != 0x7f && c != '\\');
        }
        /* the router's guard refuses what this one would resolve upwards */
        if (chi_dot_segment(in, size)) {
            /* only "." segments may be accepted (dropped), never ".." */
            for (i = 0; i + 1 < size; i++) FUZZ_CHECK(!(in[i] == '.' && in[i + 1] == '.' && (i + 2 == size || in[i + 2] == '/') && (i == 0 || in[i - 1] == '/')));
        }
        if (!memchr(out, '%', n)) { /* nothing left to decode: cleaning again changes nothing */
            r2 = chi_path_clean(out, n, again, cap, dot);
            FUZZ_CHECK(r2 == r && memcmp(out, again, n + 1) == 0);
        }
    }
    for (i = 0; i + 2 < size; i++)
        if (in[i] == '%' && in[i + 1] == '2' && (in[i + 2] == 'f' || in[i + 2] == 'F')) FUZZ_CHECK(r == -400);
    for (i = 0; i + 2 < size; i++)
        if (in[i] == '%' && in[i + 1] == '0' && in[i + 2] == '0') FUZZ_CHECK(r == -400);
    free(out);
    free(again);
    return 0;
}
