/* batteries_oom.c - issue 9's allocation-failure rule: when the memory for
   an answer cannot be had, the connection is closed after the answers
   before it, never left with that answer missing and later ones sent (a
   pipelined client would take them for the wrong requests). The allocator
   hooks fail every allocation above a size while `fail_big` is set.
   Last line: "N passed, N failed". */
#define _GNU_SOURCE /* chopin.h asks for it, and this file includes a header first */
#include <stdlib.h>

static int fail_big, fail_all;
static void *oom_malloc(size_t n) { return fail_all || (fail_big && n > 100000) ? NULL : malloc(n); }
static void *oom_realloc(void *p, size_t n) { return fail_all || (fail_big && n > 100000) ? NULL : realloc(p, n); }

#define CHOPIN_MALLOC(n) oom_malloc(n)
#define CHOPIN_REALLOC(p, n) oom_realloc(p, n)
#define CHOPIN_FREE(p) free(p)
#define CHOPIN_IMPLEMENTATION
#include "../chopin.h"

static int passed, failed, oom_logged;
static char last_oom[256];

static void check(int ok, const char *what)
{
    printf("%s - %s\n", ok ? "ok" : "not ok", what);
    if (ok)
        passed++;
    else
        failed++;
}

static void capture_log(ch_log_level level, ch_log_item item, const char *msg, void *user)
{
    (void)level;
    (void)user;
    if (item == CH_LOGITEM_OUT_OF_MEMORY) {
        oom_logged++;
        snprintf(last_oom, sizeof last_oom, "%s", msg);
    }
}

static void h_small(ch_req *req, ch_res *res)
{
    (void)req;
    ch_res_text(res, 200, "small");
}

static void h_big(ch_req *req, ch_res *res)
{
    static char big[1 << 19]; /* under CHOPIN_MAX_PENDING: all three are answered */
    (void)req;
    ch_res_send(res, 200, "application/octet-stream", big, sizeof big);
}

static size_t count(const char *hay, size_t n, const char *needle)
{
    size_t c = 0, k = strlen(needle), i;
    for (i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) c++;
    return c;
}

int main(void)
{
    static chi_worker w;
    chi_conn c;
    ch_app *app = ch_app_new();
    char reqs[] = "GET /small HTTP/1.1\r\nHost: h\r\n\r\n"
                  "GET /big HTTP/1.1\r\nHost: h\r\n\r\n"
                  "GET /small HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t used;
    ch_get(app, "/small", h_small, NULL);
    ch_get(app, "/big", h_big, NULL);
    app->lim.max_header = 16384;
    app->lim.max_target = 8192;
    app->lim.max_body = 1 << 20;
    app->cfg.log = capture_log;
    app->log_level = CH_LOG_ERROR;
    memset(&w, 0, sizeof w);
    w.app = app;
    w.res.w = &w;
    w.res.json = &w.json;
    chi_req_bind(&w.req, &w.req_store);
    w.req.worker = &w;
    chi_common_init(w.common);
    memset(&c, 0, sizeof c);
    c.queue = CHI_Q_NONE;

    used = chi_process(&w, &c, reqs, strlen(reqs));
    check(used == strlen(reqs) && !(c.flags & CHI_F_CLOSING) && count(w.out.ptr, w.out.len, "HTTP/1.1 200") == 3,
          "with memory: three answers, the connection stays");
    w.out.len = 0;
    chi_buf_free(&w.out);

    fail_big = 1;
    used = chi_process(&w, &c, reqs, strlen(reqs));
    check(used == strlen(reqs) && (c.flags & CHI_F_CLOSING), "out of memory for the 2nd answer: the connection closes");
    /* the 2nd answer: none, or a small 500 in its place; never the 3rd */
    check(count(w.out.ptr, w.out.len, "HTTP/1.1 200") == 1 && count(w.out.ptr, w.out.len, "\r\n\r\nsmall") == 1 &&
              count(w.out.ptr, w.out.len, "HTTP/1.1 ") - count(w.out.ptr, w.out.len, "HTTP/1.1 500") == 1,
          "the answer before it goes out; none after it (no answer is skipped)");
    check(oom_logged >= 1, "the logger says why (CH_LOGITEM_OUT_OF_MEMORY)");
    fail_big = 0;

    /* A header line the framework adds (here a 405's Allow) that finds no
       memory: the answer goes without it, and the logger names the line. */
    {
        char del[] = "DELETE /small HTTP/1.1\r\nHost: h\r\n\r\n";
        memset(&c, 0, sizeof c);
        c.queue = CHI_Q_NONE;
        chi_buf_free(&w.out);
        chi_buf_free(&w.res.headers);
        check(chi_buf_reserve(&w.out, 65536) == 0, "room for the answer made beforehand");
        oom_logged = 0;
        last_oom[0] = 0;
        fail_all = 1;
        used = chi_process(&w, &c, del, strlen(del));
        fail_all = 0;
        check(used == strlen(del) && count(w.out.ptr, w.out.len, "HTTP/1.1 405") == 1 &&
                  count(w.out.ptr, w.out.len, "Allow:") == 0,
              "no memory for the Allow line: the 405 goes without it");
        check(oom_logged >= 1 && strstr(last_oom, "Allow") != NULL, "the logger names the line left out");
        if (!strstr(last_oom, "Allow")) printf("# last out-of-memory line: %s\n", last_oom);
        w.out.len = 0;
        used = chi_process(&w, &c, del, strlen(del));
        check(count(w.out.ptr, w.out.len, "Allow: GET, HEAD") == 1, "with memory again: the Allow line is there");
    }

    chi_buf_free(&w.out);
    ch_json_free(&w.json);
    chi_buf_free(&w.res.ctype);
    chi_buf_free(&w.res.headers);
    ch_app_free(app);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
