/* rest.c - a small in-memory todo API: route groups, parameters, JSON in
   and out, the bearer-token middleware and the access log.

     GET    /health                 200 {"status":"ok"}           (no auth)
     GET    /api/v1/todos           200 [{"id":1,"title":"...","done":false}, ...]
     POST   /api/v1/todos           201 the stored todo, with its id
     GET    /api/v1/todos/:id       200 the todo, or 404
     PUT    /api/v1/todos/:id       200 the updated todo, or 404
     DELETE /api/v1/todos/:id       204, or 404

   Every /api/v1 route needs "Authorization: Bearer <token>", the token being
   $API_TOKEN (default "secret"); missing or wrong gives 401. A body must be
   {"title": string, "done": boolean}: malformed JSON or a missing or
   mistyped field gives 400 saying what is wrong. PORT, HOST, CHOPIN_WORKERS
   as for every chopin.h program; ACCESS_LOG=off silences the access log.

     GET    /metrics                200 Prometheus text            (no auth)

   The batteries, switched on from the environment:
     CORS_ORIGINS=https://a.example,https://b.example
                 browsers on these origins may call the API: a preflight is
                 answered 204 before auth; other origins get no CORS header
     RATE_LIMIT=N
                 N requests a second per client, bursts of N (exact across
                 workers); over it 429 with Retry-After; /health and
                 /metrics are never limited
     TRUST_PROXY=127.0.0.1
                 behind a proxy at that address: the client is the one
                 X-Forwarded-For names (all its lines as one list, the
                 right-most address that is not a trusted proxy), else
                 X-Real-IP when sent once (access log, rate limit)
     PROXY_PROTOCOL=on
                 connections from TRUST_PROXY addresses start with a PROXY
                 v1/v2 header (HAProxy's send-proxy), which names the client
   Every answer carries X-Request-Id (the client's, or a new one).

   SHARED STATE. chopin.h is shared-nothing: each worker thread runs its own
   loop and nothing the server owns is shared. The todo list, though, is the
   application's, and requests for it arrive on every worker, so the
   application must protect it. Here one mutex guards the list: each handler
   holds it for a microsecond or two, far less than a request costs, so it
   does not limit throughput at this size. A busier service would shard the
   data (by id, one lock per shard), keep it in a database, or run one worker
   (SERVER_MODE=standard) where no lock is needed at all. What a handler must
   never do is keep a pointer into the shared list after it unlocks: it
   copies what it answers with while it holds the lock. */
#define CHOPIN_IMPLEMENTATION
#include "../chopin.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TITLE 1024

typedef struct todo {
    long long id;
    char title[MAX_TITLE + 1];
    int done;
} todo;

static struct {
    pthread_mutex_t lock;
    todo *items;
    size_t count, cap;
    long long next_id;
} store = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 1};

/* ---- the store: every function expects store.lock held ---- */

static todo *store_find(long long id)
{
    size_t i;
    for (i = 0; i < store.count; i++)
        if (store.items[i].id == id) return &store.items[i];
    return NULL;
}

static todo *store_add(void)
{
    if (store.count == store.cap) {
        size_t cap = store.cap ? store.cap * 2 : 16;
        todo *items = (todo *)realloc(store.items, cap * sizeof *items);
        if (!items) return NULL;
        store.items = items;
        store.cap = cap;
    }
    store.items[store.count].id = store.next_id++;
    return &store.items[store.count++];
}

static void store_remove(todo *t)
{
    size_t i = (size_t)(t - store.items);
    memmove(t, t + 1, (store.count - i - 1) * sizeof *t);
    store.count--;
}

/* ---- JSON in and out ---- */

static void write_todo(ch_json *j, const todo *t)
{
    ch_json_object_begin(j);
    ch_json_key(j, "id");
    ch_json_int(j, t->id);
    ch_json_key(j, "title");
    ch_json_str(j, t->title);
    ch_json_key(j, "done");
    ch_json_bool(j, t->done);
    ch_json_object_end(j);
}

static void bad_request(ch_res *res, const char *detail)
{
    ch_json *j = ch_res_json(res, 400);
    ch_json_object_begin(j);
    ch_json_key(j, "detail");
    ch_json_str(j, detail);
    ch_json_object_end(j);
}

/* Reads {"title": string, "done": boolean} from the body into *out.
   Returns 0, or answers 400 and returns -1. */
static int read_todo(ch_req *req, ch_res *res, todo *out)
{
    ch_jtok tok[64];
    ch_jdoc doc;
    char why[160];
    int title, done;
    long n;
    if (ch_json_parse(&doc, req->body, req->body_len, tok, 64, 8) < 0) {
        snprintf(why, sizeof why, "invalid JSON at byte %lu: %s", (unsigned long)doc.err_pos, doc.err);
        bad_request(res, why);
        return -1;
    }
    if (ch_json_type(&doc, 0) != CH_JSON_OBJECT) {
        bad_request(res, "the body must be a JSON object");
        return -1;
    }
    title = ch_json_find(&doc, 0, "title");
    done = ch_json_find(&doc, 0, "done");
    if (title < 0 || done < 0) {
        bad_request(res, title < 0 ? "missing field 'title'" : "missing field 'done'");
        return -1;
    }
    if (ch_json_type(&doc, title) != CH_JSON_STRING) {
        bad_request(res, "field 'title' must be a string");
        return -1;
    }
    if (ch_json_get_bool(&doc, done, &out->done) < 0) {
        bad_request(res, "field 'done' must be true or false");
        return -1;
    }
    n = ch_json_get_str(&doc, title, out->title, sizeof out->title);
    if (n < 0) {
        bad_request(res, "field 'title' is longer than 1024 bytes");
        return -1;
    }
    if (n == 0 || strlen(out->title) != (size_t)n) {
        bad_request(res, "field 'title' must be a non-empty string without NUL");
        return -1;
    }
    return 0;
}

/* The :id parameter as a number; 0 when it is not one (no todo has id 0). */
static long long todo_id(const ch_req *req)
{
    long long v;
    return ch_req_param_int(req, "id", 1, LLONG_MAX, &v) == 0 ? v : 0;
}

/* ---- handlers ---- */

static void health(ch_req *req, ch_res *res)
{
    (void)req;
    ch_res_send(res, 200, "application/json", "{\"status\":\"ok\"}", 15);
}

static void list_todos(ch_req *req, ch_res *res)
{
    ch_json *j = ch_res_json(res, 200);
    size_t i;
    (void)req;
    pthread_mutex_lock(&store.lock);
    ch_json_array_begin(j); /* the writer copies: nothing points into the store after unlock */
    for (i = 0; i < store.count; i++) write_todo(j, &store.items[i]);
    ch_json_array_end(j);
    pthread_mutex_unlock(&store.lock);
}

static void create_todo(ch_req *req, ch_res *res)
{
    todo in, *t;
    char location[64];
    if (read_todo(req, res, &in) < 0) return;
    pthread_mutex_lock(&store.lock);
    t = store_add();
    if (t) {
        memcpy(t->title, in.title, sizeof in.title);
        t->done = in.done;
        in = *t;
    }
    pthread_mutex_unlock(&store.lock);
    if (!t) {
        ch_res_error(res, 500);
        return;
    }
    snprintf(location, sizeof location, "/api/v1/todos/%lld", in.id);
    ch_res_header(res, "Location", location);
    write_todo(ch_res_json(res, 201), &in);
}

static void get_todo(ch_req *req, ch_res *res)
{
    todo copy, *t;
    pthread_mutex_lock(&store.lock);
    t = store_find(todo_id(req));
    if (t) copy = *t;
    pthread_mutex_unlock(&store.lock);
    if (!t) {
        ch_res_error(res, 404);
        return;
    }
    write_todo(ch_res_json(res, 200), &copy);
}

static void put_todo(ch_req *req, ch_res *res)
{
    todo in, *t;
    if (read_todo(req, res, &in) < 0) return;
    pthread_mutex_lock(&store.lock);
    t = store_find(todo_id(req));
    if (t) {
        memcpy(t->title, in.title, sizeof in.title);
        t->done = in.done;
        in = *t;
    }
    pthread_mutex_unlock(&store.lock);
    if (!t) {
        ch_res_error(res, 404);
        return;
    }
    write_todo(ch_res_json(res, 200), &in);
}

static void delete_todo(ch_req *req, ch_res *res)
{
    todo *t;
    pthread_mutex_lock(&store.lock);
    t = store_find(todo_id(req));
    if (t) store_remove(t);
    pthread_mutex_unlock(&store.lock);
    if (!t)
        ch_res_error(res, 404);
    else
        ch_res_status(res, 204);
}

/* CORS, request ids and the rate limit, in the order they must run: a
   preflight is answered before anything else. Returns 0, or -1 with a
   message for a bad RATE_LIMIT. */
static int use_batteries(ch_app *app)
{
    static const char *const never_limited[] = {"/health", "/metrics", NULL};
    const char *origins = getenv("CORS_ORIGINS"), *rate = getenv("RATE_LIMIT");
    if (origins && *origins) {
        ch_cors cors;
        memset(&cors, 0, sizeof cors);
        cors.origins = origins;
        cors.methods = "GET, POST, PUT, DELETE";
        cors.headers = "Authorization, Content-Type";
        cors.max_age = 600;
        ch_use_cors(app, &cors);
    }
    ch_use(app, ch_mw_request_id, NULL);
    if (rate && *rate) {
        ch_ratelimit rl;
        char *end;
        long n = strtol(rate, &end, 10);
        if (*end || n < 1 || n > 1000000) {
            fprintf(stderr, "rest: RATE_LIMIT must be a number of requests a second (1-1000000)\n");
            return -1;
        }
        memset(&rl, 0, sizeof rl);
        rl.rate = (double)n;
        rl.burst = (int)n;
        rl.exact = 1; /* a client's connections land on any worker: one table for all */
        rl.exempt = never_limited;
        ch_use_ratelimit(app, NULL, &rl);
    }
    ch_metrics_route(app, "/metrics");
    return 0;
}

int main(void)
{
    const char *token = getenv("API_TOKEN"), *log = getenv("ACCESS_LOG");
    ch_bearer auth;
    ch_app *app = ch_app_new();
    ch_group *api;
    const ch_config *used;
    ch_config cfg;
    if (!app) return 1;
    memset(&auth, 0, sizeof auth);
    auth.token = token && *token ? token : "secret";
    memset(&cfg, 0, sizeof cfg);
    cfg.trust_proxy = getenv("TRUST_PROXY");
    if (getenv("PROXY_PROTOCOL") && strcmp(getenv("PROXY_PROTOCOL"), "on") == 0) cfg.proxy_protocol = CH_YES;
    if (use_batteries(app) < 0) {
        ch_app_free(app);
        return 1;
    }

    ch_get(app, "/health", health, NULL);
    api = ch_group_new(app, "/api/v1");
    ch_group_use(api, ch_mw_bearer, &auth);
    ch_group_route(api, CH_GET, "/todos", list_todos, NULL);
    ch_group_route(api, CH_POST, "/todos", create_todo, NULL);
    ch_group_route(api, CH_GET, "/todos/:id", get_todo, NULL);
    ch_group_route(api, CH_PUT, "/todos/:id", put_todo, NULL);
    ch_group_route(api, CH_DELETE, "/todos/:id", delete_todo, NULL);
    if (!log || strcmp(log, "off") != 0) ch_after(app, ch_access_log, NULL);

    if (ch_listen(app, &cfg) != 0) {
        fprintf(stderr, "rest: %s\n", ch_error(app));
        ch_app_free(app);
        return 1;
    }
    used = ch_config_used(app);
    printf("rest listening on port %d (%d worker%s)\n", used->port, used->workers, used->workers == 1 ? "" : "s");
    fflush(stdout);
    if (ch_serve(app) != 0) fprintf(stderr, "rest: %s\n", ch_error(app));
    ch_app_free(app);
    pthread_mutex_lock(&store.lock);
    free(store.items);
    pthread_mutex_unlock(&store.lock);
    return 0;
}
