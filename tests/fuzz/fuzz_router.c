/* fuzz_router: the router's path matching (chi_node_match) against a
   reference matcher written from the documented rules.

   Input: a handful of route patterns built from a small alphabet (so that
   they collide: static, ":param" and "*wildcard" segments at the same
   places), each with a method, then paths to match (from the same alphabet
   or raw bytes).

   The rules (README, chopin.h >>routes): segments are split at '/'; a static
   segment matches itself, a ":name" segment any non-empty segment, a last
   "*name" segment the rest of the path (at least one more segment, maybe
   empty); static beats parameter beats wildcard at each segment from the
   left, backing up on a dead end; at most CHOPIN_MAX_PARAMS captures; a
   parameter or wildcard value holding a "." or ".." segment, raw or
   percent-encoded, does not match (chopin.h 0.2, issue 11).

   Properties: the route found (or none) is the reference's, with the same
   parameters; FastRoutes and router routes coexist. */
#include "fuzz_common.h"

#define MAX_ROUTES 10
#define MAX_SEGS 6

static const char *const seg_words[] = {"a", "b", "ab", "", "users", ":id", ":x", "*rest", "*w", "me", "a.b", "%41"};
static const char *const path_words[] = {"a", "b", "ab", "", "users", "me", "42", "a.b", "%41", "zz", "ab/a", ":id",
                                         "..", ".", "%2e%2E", "a/../b"};

typedef struct route {
    char pattern[128];
    const char *segs[MAX_SEGS];
    int nsegs;
    int method;
    int ok; /* registered */
} route;

static void handler(ch_req *req, ch_res *res)
{
    (void)req;
    (void)res;
}

/* Does route r match the path segments? Fills the captures. Returns the
   kind vector (base 3: static 0, param 1, wildcard 2) for ordering, or -1. */
static long ref_match(const route *r, const char *const *ps, const size_t *pl, int np, const char *path_after_slash,
                      const size_t *pstart, size_t plen, ch_param *caps, int *ncaps)
{
    long key = 0;
    int i;
    *ncaps = 0;
    for (i = 0; i < r->nsegs; i++) {
        const char *s = r->segs[i];
        if (s[0] == '*') {
            if (i >= np) return -1;
            if (*ncaps >= CHOPIN_MAX_PARAMS) return -1;
            caps[*ncaps].name = chi_str(s + 1, strlen(s + 1));
            caps[*ncaps].value = chi_str(path_after_slash + pstart[i], plen - pstart[i]);
            if (chi_dot_segment(caps[*ncaps].value.ptr, caps[*ncaps].value.len)) return -1;
            (*ncaps)++;
            key = key * 3 + 2;
            for (i = i + 1; i < MAX_SEGS; i++) key *= 3;
            return key;
        }
        if (i >= np) return -1;
        if (s[0] == ':') {
            if (pl[i] == 0 || *ncaps >= CHOPIN_MAX_PARAMS) return -1;
            caps[*ncaps].name = chi_str(s + 1, strlen(s + 1));
            caps[*ncaps].value = chi_str(ps[i], pl[i]);
            if (chi_dot_segment(ps[i], pl[i])) return -1;
            (*ncaps)++;
            key = key * 3 + 1;
        } else {
            if (strlen(s) != pl[i] || memcmp(s, ps[i], pl[i]) != 0) return -1;
            key = key * 3;
        }
    }
    if (np != r->nsegs) return -1;
    for (; i < MAX_SEGS; i++) key *= 3;
    return key;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f;
    route routes[MAX_ROUTES];
    int nroutes, i, k, npaths;
    ch_app *app = ch_app_new();

    f.p = data;
    f.n = size;
    nroutes = 1 + (int)(fz_byte(&f) % MAX_ROUTES);
    for (i = 0; i < nroutes; i++) {
        route *r = &routes[i];
        size_t pos = 0;
        r->nsegs = 1 + (int)(fz_byte(&f) % (MAX_SEGS - 1));
        for (k = 0; k < r->nsegs; k++) {
            r->segs[k] = seg_words[fz_byte(&f) % (sizeof seg_words / sizeof seg_words[0])];
            pos += (size_t)snprintf(r->pattern + pos, sizeof r->pattern - pos, "/%s", r->segs[k]);
        }
        r->method = (int)(fz_byte(&f) % 4); /* GET HEAD POST PUT */
        if (fz_byte(&f) % 8 == 0 && !strpbrk(r->pattern, ":*")) {
            r->method = CH_GET; /* a FastRoute: GET and HEAD, exact path */
            r->ok = ch_fast_text(app, r->pattern, "fast") == 0;
            r->method = -1 - r->method; /* marks FastRoute */
        } else {
            r->ok = ch_route(app, (ch_method)r->method, r->pattern, handler, (void *)(intptr_t)(i + 1)) == 0;
        }
    }

    npaths = 1 + (int)(fz_byte(&f) % 8);
    for (k = 0; k < npaths; k++) {
        char path[256];
        const char *ps[64];
        size_t pl[64], pstart[64], plen;
        int np = 0, best = -1, bestcaps = 0, j;
        long bestkey = -1;
        ch_param bestparams[CHOPIN_MAX_PARAMS];
        ch_req *req = fz_req_new();
        chi_node *node;
        size_t pos = 0;
        char *heap;

        if (fz_byte(&f) % 4 == 0) { /* raw bytes */
            const uint8_t *raw;
            size_t n = fz_take(&f, 60, &raw);
            path[0] = '/';
            memcpy(path + 1, raw, n);
            pos = 1 + n;
        } else {
            int nseg = (int)(fz_byte(&f) % 7);
            if (nseg == 0) path[pos++] = '/';
            for (j = 0; j < nseg; j++)
                pos += (size_t)snprintf(path + pos, sizeof path - pos, "/%s",
                                        path_words[fz_byte(&f) % (sizeof path_words / sizeof path_words[0])]);
        }
        heap = fz_dup(path, pos); /* exact size: ASan sees over-reads */
        /* the path's segments after the leading '/' */
        plen = pos - 1;
        {
            size_t s = 0, e;
            for (;;) {
                for (e = s; e < plen && heap[1 + e] != '/'; e++) {}
                if (np == 64) break;
                ps[np] = heap + 1 + s;
                pl[np] = e - s;
                pstart[np] = s;
                np++;
                if (e == plen) break;
                s = e + 1;
            }
        }
        for (i = 0; i < nroutes && np < 64; i++) {
            ch_param caps[CHOPIN_MAX_PARAMS];
            int ncaps;
            long key;
            if (!routes[i].ok) continue;
            key = ref_match(&routes[i], ps, pl, np, heap + 1, pstart, plen, caps, &ncaps);
            if (key >= 0 && (bestkey < 0 || key < bestkey)) {
                bestkey = key;
                best = i;
                bestcaps = ncaps;
                memcpy(bestparams, caps, sizeof caps);
            }
        }
        req->param_count = 0;
        node = chi_node_match(app->root, heap + 1, heap + pos, req);
        if (np < 64) {
            if (best < 0) {
                FUZZ_CHECK(node == NULL);
            } else {
                const route *r = &routes[best];
                FUZZ_CHECK(node != NULL);
                if (r->method >= 0)
                    FUZZ_CHECK(node->routes[r->method].user == (void *)(intptr_t)(best + 1));
                else
                    FUZZ_CHECK(node->fast_methods != 0);
                FUZZ_CHECK(req->param_count == bestcaps);
                for (j = 0; j < bestcaps; j++) {
                    FUZZ_CHECK(req->params[j].name.len == bestparams[j].name.len &&
                               memcmp(req->params[j].name.ptr, bestparams[j].name.ptr, bestparams[j].name.len) == 0);
                    FUZZ_CHECK(req->params[j].value.ptr == bestparams[j].value.ptr &&
                               req->params[j].value.len == bestparams[j].value.len);
                }
            }
        }
        free(heap);
        free(req);
    }
    ch_app_free(app);
    return 0;
}
