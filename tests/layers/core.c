/* Layer 1 alone: chopin.h built with CHOPIN_CORE_ONLY and strict ISO C (no
   POSIX or GNU declarations), using each core part once so that the
   compiler emits it. tests/layers.sh then lists every external symbol the
   object needs: only the C library's memory, string and number functions
   may appear. A system call anywhere in the core fails one of the two. */
#define CHOPIN_IMPLEMENTATION
#define CHOPIN_CORE_ONLY
#include "../../chopin.h"

int main(void)
{
    static const char raw[] = "POST /a/b?x=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    static const chi_limits lim = {16384, 8192, 1 << 20};
    char buf[sizeof raw], out[512], date[CHI_DATE_LEN], common[CHI_COMMON_LEN], *end;
    chi_req_store st;
    ch_req req;
    chi_head h;
    chi_chunked ck;
    chi_head_spec hs;
    chi_node *root = chi_node_new(), *leaf;
    const char *err = NULL;
    ch_json j;
    ch_jdoc doc;
    ch_jtok tok[16];
    long n;
    int bad = 0;
    memcpy(buf, raw, sizeof raw);
    chi_req_bind(&req, &st);
    n = chi_parse_head(buf, sizeof raw - 1, &lim, &req, &h);
    bad |= n <= 0;
    chi_chunked_init(&ck, (size_t)n);
    bad |= chi_chunked_decode(&ck, buf, sizeof raw - 1, lim.max_body, lim.max_header) != 1;
    leaf = chi_node_insert(root, "/a/:id", &err);
    if (leaf) leaf->methods = 1u << CH_GET;
    bad |= !leaf || chi_node_match(root, "a/b", "a/b" + 3, &req) != leaf || req.param_count != 1;
    chi_node_free(root);
    chi_format_date(0, date);
    chi_common_init(common);
    memset(&hs, 0, sizeof hs);
    hs.status = 200;
    hs.keep_alive = 1;
    hs.minor = 1;
    hs.common = common;
    hs.common_len = sizeof common;
    end = chi_head_put(out, &hs);
    bad |= end == out;
    bad |= chi_error_body(404, out) == 0;
    bad |= ch_req_query(&req, "x", out, sizeof out) != 1;
    ch_json_init(&j);
    ch_json_object_begin(&j);
    ch_json_key(&j, "n");
    ch_json_double(&j, 1.5);
    ch_json_object_end(&j);
    bad |= ch_json_parse(&doc, j.buf, j.len, tok, 16, 0) < 0;
    bad |= ch_json_path(&doc, 0, "n") < 0;
    ch_json_free(&j);
    return bad;
}
