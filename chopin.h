/* chopin.h - a fast, strict HTTP/1.1 server and microframework in one C header.

   Do this:
       #define CHOPIN_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the
   implementation. Every other file includes it without the define.

       #define CHOPIN_IMPLEMENTATION
       #include "chopin.h"

       static void hello(ch_req *req, ch_res *res) {
           (void)req;
           ch_res_text(res, 200, "Hello from chopin.h\n");
       }

       int main(void) {
           ch_app *app = ch_app_new();
           ch_fast_text(app, "/plaintext", "Hello, World!");
           ch_get(app, "/", hello, NULL);
           return ch_run(app, NULL) == 0 ? 0 : 1;   // PORT=3000 by default
       }

   Link with -pthread. Include chopin.h before any system header in the
   implementation file (it defines _GNU_SOURCE there), or build with
   -D_GNU_SOURCE.

   WHAT IT IS
   A shared-nothing, thread-per-core server. Each worker thread owns its own
   listening socket (SO_REUSEPORT), its own epoll loop, its own connections
   and buffers: nothing is locked on the request path. Requests are parsed in
   place (zero copy), strictly by RFC 9112; every complete request in a read is
   answered and the answers of one read leave in one write. Routes come in two
   kinds:
     - FastRoutes: exact paths whose whole response is built at start-up
       (ch_fast_text, ch_fast_json) or whose JSON body is written per request
       by a callback into the worker's JSON writer (ch_fast_json_fn).
     - Router routes: method + pattern with :name parameters and a trailing
       *name wildcard (ch_route, ch_get, ch_post, ...), answered by a handler
       that fills a response. 404, 405 (with Allow) and OPTIONS come for free.
   Around the router: route groups, middleware chains and after-hooks (bearer
   auth, access log and request timing ship with it), O(1) lookup of common
   request headers, lazy query and cookie decoding, a JSON writer and a
   strict zero-copy JSON reader.

   RUN-TIME CONFIGURATION
   ch_run() and ch_listen() take a ch_config; a zeroed struct (or NULL) is a
   good default. Precedence, field by field: a value set in code wins; the
   environment fills only the fields left at zero (unless cfg.ignore_env is
   set); the default fills the rest. So cfg.host = "127.0.0.1" stays private
   under an inherited HOST=0.0.0.0. The variables:
       PORT=3000                       0-65535; 0 picks a free port
       HOST=0.0.0.0                    an IPv4 or IPv6 address (::1) or a name
       SERVER_MODE=performance         performance: one worker per CPU, each
                                        with its own SO_REUSEPORT listener;
                                        standard: one loop (for debugging)
       CHOPIN_WORKERS=N                worker threads (performance mode)
       REUSEPORT=true|false            false: the workers share one listener
   An invalid value makes ch_listen() fail with a message from ch_error().

   COMPILE-TIME OPTIONS (define before including; only the implementation
   file needs them, except CHOPIN_STATIC/CHOPIN_API, which every file needs)
       CHOPIN_STATIC                   make every function static
       CHOPIN_API                      linkage of the API (default: extern)
       CHOPIN_MALLOC(n)                allocator; define MALLOC, REALLOC and
       CHOPIN_REALLOC(p, n)            FREE together or none of them
       CHOPIN_FREE(p)                  (default: malloc, realloc, free)
       CHOPIN_ASSERT(c)                default: assert(c)
       CHOPIN_MAX_HEADERS      64      request header lines kept per request
       CHOPIN_MAX_PARAMS       8       route parameters per request
       CHOPIN_READ_SIZE        65536   bytes a worker reads per read() call
       CHOPIN_MAX_PENDING      1048576 unsent response bytes after which a
                                       connection stops being read
       CHOPIN_SERVER_NAME      "chopin"  value of the Server header
       CHOPIN_NO_AUTH          compile out the bearer-token middleware
       CHOPIN_NO_ACCESS_LOG    compile out the access log after-hook
       CHOPIN_NO_TIMING        compile out the Server-Timing middleware

   LIMITS AND TIMEOUTS (ch_config fields; 0 means the default shown)
       max_header_size   16 KiB   request line + headers; over it: 431
       max_target_size    8 KiB   request target; over it: 414
       max_body_size      8 MiB   request body; over it: 413
       max_connections   10000    per worker; at the limit accept pauses
       idle_timeout         60 s  keep-alive connection with no request
       header_timeout       20 s  a request head must be whole this long after
                                  its first byte (slowloris)
       body_timeout         30 s  a request body that makes no progress: 408
       write_timeout        30 s  a client that takes none of our answer
       shutdown_timeout     10 s  grace period for in-flight requests

   READING THIS FILE
   Each section starts with a banner you can search for, and a few lines on
   what it does and why, in the order a request meets them:
     >>api           the public declarations (this is all a user needs)
     >>platform      includes, allocator and assert hooks, defaults
     >>utilities     byte buffer, itoa, the Date header, character classes
     >>json          the JSON writer        >>json reader  the JSON tokenizer
     >>parser        request line and headers (RFC 9112), stateless
     >>chunked       the in-place chunked decoder
     >>responses     status lines and the pre-built error responses
     >>routes        FastRoutes and the router's segment tree
     >>app, >>request, >>response API     what handlers call
     >>poller        the epoll backend behind five functions
     >>worker state  per-thread state, the Date cache, timeout queues
     >>dispatch, >>middleware             from a parsed request to bytes
     >>connection    read, answer every request, write once, close
     >>accept, >>worker loop, >>config, >>listen, >>run

   NOT YET
   kqueue (BSD/macOS) backend, streaming responses (chunked, SSE), rate
   limiting, CORS, HTTP/2, TLS.

   LICENSE
   MIT or public domain, your choice: see the end of the file.
*/
#ifndef CHOPIN_H
#define CHOPIN_H

/* The implementation needs GNU/POSIX declarations (accept4, clock_gettime);
   they must be requested before the first system header is seen. */
#if defined(CHOPIN_IMPLEMENTATION) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif

#include <stddef.h>
#include <stdint.h>

#ifndef CHOPIN_API
#ifdef CHOPIN_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define CHOPIN_API static __attribute__((unused)) /* no warning for what you don't call */
#else
#define CHOPIN_API static
#endif
#else
#define CHOPIN_API extern
#endif
#endif

#ifndef CHOPIN_MAX_HEADERS
#define CHOPIN_MAX_HEADERS 64
#endif
#ifndef CHOPIN_MAX_PARAMS
#define CHOPIN_MAX_PARAMS 8
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* >>api ------------------------------------------------------------------ */

/* A slice of bytes that is not NUL-terminated: request data points into the
   connection's read buffer and is valid until the handler returns. */
typedef struct ch_str {
    const char *ptr;
    size_t len;
} ch_str;

typedef enum ch_method {
    CH_GET, CH_HEAD, CH_POST, CH_PUT, CH_DELETE, CH_PATCH, CH_OPTIONS,
    CH_CONNECT, CH_TRACE,
    CH_METHOD_COUNT,        /* number of methods the router knows */
    CH_OTHER = CH_METHOD_COUNT /* any other token: answered with 501 */
} ch_method;

typedef enum ch_mode {
    CH_MODE_DEFAULT = 0,    /* $SERVER_MODE, else performance */
    CH_MODE_PERFORMANCE,    /* N workers, each with its own listener */
    CH_MODE_STANDARD        /* one event loop */
} ch_mode;

#define CH_PORT_ANY (-1)    /* ch_config.port: let the kernel pick a port */
#define CH_YES 1            /* tri-state switches: 0 = default */
#define CH_NO (-1)

typedef struct ch_config {
    const char *host;        /* NULL: $HOST, else "0.0.0.0" */
    int port;                /* 0: $PORT, else 3000; CH_PORT_ANY: any free */
    ch_mode mode;            /* CH_MODE_DEFAULT: $SERVER_MODE, else performance */
    int workers;             /* 0: $CHOPIN_WORKERS, else usable CPUs */
    int reuseport;           /* 0: $REUSEPORT, else CH_YES; CH_NO shares one
                                listener between the workers */
    size_t max_header_size;  /* 0: 16 KiB */
    size_t max_target_size;  /* 0: 8 KiB */
    size_t max_body_size;    /* 0: 8 MiB */
    int max_connections;     /* 0: 10000 per worker */
    int idle_timeout;        /* seconds; 0: 60 (keep-alive, no request yet) */
    int header_timeout;      /* seconds; 0: 20 (a head, from its first byte) */
    int body_timeout;        /* seconds; 0: 30 (a body that makes no progress) */
    int write_timeout;       /* seconds; 0: 30 (an answer the client won't take) */
    int shutdown_timeout;    /* seconds; 0: 10 */
    int backlog;             /* 0: 4096 (the kernel caps it at somaxconn) */
    int ignore_env;          /* non-zero: do not read the environment */
    int no_signals;          /* non-zero: ch_serve does not stop on SIGINT /
                                SIGTERM; call ch_stop() instead */
} ch_config;

typedef struct ch_header {
    ch_str name;
    ch_str value;
} ch_header;

typedef struct ch_param {
    ch_str name;
    ch_str value;
} ch_param;

/* The common request headers, found in O(1): the parser recognises them by
   name (a switch on the length, then at most three comparisons) and notes
   where each one is, so ch_req_common(req, CH_H_COOKIE) is an array read. */
typedef enum ch_hdr {
    CH_H_HOST, CH_H_CONTENT_TYPE, CH_H_CONTENT_LENGTH, CH_H_TRANSFER_ENCODING,
    CH_H_CONNECTION, CH_H_EXPECT, CH_H_AUTHORIZATION, CH_H_ACCEPT,
    CH_H_ACCEPT_ENCODING, CH_H_ACCEPT_LANGUAGE, CH_H_COOKIE, CH_H_USER_AGENT,
    CH_H_ORIGIN, CH_H_REFERER, CH_H_IF_NONE_MATCH, CH_H_IF_MODIFIED_SINCE,
    CH_H_X_FORWARDED_FOR, CH_H_X_FORWARDED_PROTO, CH_H_X_REAL_IP,
    CH_H_X_REQUEST_ID, CH_H_CACHE_CONTROL, CH_H_UPGRADE, CH_H_RANGE,
    CH_H_COUNT
} ch_hdr;

/* A parsed request. Every ch_str points into the read buffer. */
typedef struct ch_req {
    ch_method method;
    ch_str method_name;      /* as sent, e.g. "GET" */
    ch_str target;           /* as sent, e.g. "/users/7?x=1" */
    ch_str path;             /* target without the query, e.g. "/users/7" */
    ch_str query;            /* after '?', without it; empty if none */
    int version_minor;       /* 1 for HTTP/1.1, 0 for HTTP/1.0 */
    int header_count;
    ch_header headers[CHOPIN_MAX_HEADERS];
    unsigned char common[CH_H_COUNT]; /* 1 + index in headers of the first
                                         line with that name, 0 if none */
    const char *body;        /* decoded body (chunked is already decoded) */
    size_t body_len;
    int param_count;
    ch_param params[CHOPIN_MAX_PARAMS];
    void *user;              /* the pointer given when the route was added */
    void *ctx;               /* free for middleware to pass data to the handler;
                                NULL at the start of every request */
    const void *conn;        /* internal: the connection's peer address */
} ch_req;

typedef struct ch_app ch_app;
typedef struct ch_res ch_res;   /* opaque: filled through ch_res_* calls */

/* The JSON writer. Every worker has one; a handler gets it from ch_res_json()
   and a FastRoute callback receives it. It never allocates once its buffer has
   grown to the largest document written. For use on its own: zero it (or
   ch_json_init), write, read buf/len, then ch_json_free. */
typedef struct ch_json {
    char *buf;
    size_t len, cap;
    uint64_t fresh;          /* bit d: container at depth d has no item yet */
    uint64_t arrays;         /* bit d: container at depth d is an array */
    int depth;
    int after_key;
    int failed;              /* out of memory or misuse; the output is void */
} ch_json;

typedef void (*ch_handler)(ch_req *req, ch_res *res);
typedef void (*ch_json_fn)(ch_json *json, void *user);

/* The application: routes are added before ch_listen/ch_run. A registration
   error is kept and reported by ch_listen, so calls may go unchecked. */
CHOPIN_API ch_app *ch_app_new(void);
CHOPIN_API void ch_app_free(ch_app *app);
CHOPIN_API const char *ch_error(const ch_app *app); /* last error, or "" */

/* FastRoutes: exact path, GET and HEAD. The strings must outlive the app. */
CHOPIN_API int ch_fast_text(ch_app *app, const char *path, const char *body);
CHOPIN_API int ch_fast_json(ch_app *app, const char *path, const char *json);
CHOPIN_API int ch_fast_json_fn(ch_app *app, const char *path, ch_json_fn fn, void *user);

/* Router routes. A pattern such as "/users/:id" has parameters; a last
   segment "*name" is a wildcard that takes the rest of the path.
   Returns 0, or -1 with the reason in ch_error(). */
CHOPIN_API int ch_route(ch_app *app, ch_method method, const char *pattern, ch_handler h, void *user);
CHOPIN_API int ch_get(ch_app *app, const char *pattern, ch_handler h, void *user);
CHOPIN_API int ch_post(ch_app *app, const char *pattern, ch_handler h, void *user);
CHOPIN_API int ch_put(ch_app *app, const char *pattern, ch_handler h, void *user);
CHOPIN_API int ch_delete(ch_app *app, const char *pattern, ch_handler h, void *user);

CHOPIN_API int ch_patch(ch_app *app, const char *pattern, ch_handler h, void *user);
CHOPIN_API int ch_any(ch_app *app, const char *pattern, ch_handler h, void *user); /* every method */

/* Middleware: plain functions run before the handler, in the order added:
   first the app's (ch_use, for every routed request, 404 and 405 included),
   then the route's group's, outermost group first. One returns CH_NEXT to go
   on, or fills the response and returns CH_DONE to stop the chain (an auth
   check answering 401, say). FastRoutes skip middleware: that is their point.
   After-hooks (ch_after) see every finished response, FastRoutes included:
   status, bytes and duration, for access logs and metrics. A middleware can
   also ask, with ch_res_on_finish, to be called back just before its
   response is written (to add a header that depends on the handler). */
#define CH_NEXT 0
#define CH_DONE 1
typedef int (*ch_middleware)(ch_req *req, ch_res *res, void *user);
typedef void (*ch_after_fn)(const ch_req *req, const ch_res *res, void *user);
typedef void (*ch_finish_fn)(ch_req *req, ch_res *res, void *user);
typedef struct ch_group ch_group;

CHOPIN_API int ch_use(ch_app *app, ch_middleware mw, void *user);
CHOPIN_API int ch_after(ch_app *app, ch_after_fn fn, void *user);
/* A group: routes under a shared prefix with shared middleware. Groups nest;
   a group with the prefix "" gives middleware to just the routes added to it. */
CHOPIN_API ch_group *ch_group_new(ch_app *app, const char *prefix);
CHOPIN_API ch_group *ch_group_sub(ch_group *parent, const char *prefix);
CHOPIN_API int ch_group_use(ch_group *g, ch_middleware mw, void *user);
CHOPIN_API int ch_group_route(ch_group *g, ch_method method, const char *pattern, ch_handler h, void *user);
CHOPIN_API int ch_res_on_finish(ch_res *res, ch_finish_fn fn, void *user);
/* For after-hooks: the finished response. */
CHOPIN_API int ch_res_status_code(const ch_res *res);
CHOPIN_API size_t ch_res_bytes(const ch_res *res);   /* head and body as sent */
CHOPIN_API double ch_res_seconds(const ch_res *res); /* dispatch to written */

/* Shipped middleware; each can be compiled out with its CHOPIN_NO_* macro.
   Bearer auth: ch_use or ch_group_use(g, ch_mw_bearer, &bearer) with a
   ch_bearer that holds the token, or a verify function that returns 0 (let
   in), 401 or 403. Missing or wrong credentials get 401 with
   WWW-Authenticate, a refusal by verify gets 403, both with the pre-built
   JSON bodies. */
#ifndef CHOPIN_NO_AUTH
typedef struct ch_bearer {
    const char *token;
    int (*verify)(const char *token, size_t len, ch_req *req, void *user);
    void *user;
} ch_bearer;
CHOPIN_API int ch_mw_bearer(ch_req *req, ch_res *res, void *user);
#endif
/* Access log, an after-hook: ch_after(app, ch_access_log, NULL) logs to
   stdout, or pass a pointer to an int fd. One line per request, kept in the
   worker's buffer and written at most once a second or per 32 KiB, so the
   loop never waits on the log per request:
   127.0.0.1 [Mon, 23 Nov 2026 10:00:00 GMT] "GET /json HTTP/1.1" 200 150 12us */
#ifndef CHOPIN_NO_ACCESS_LOG
CHOPIN_API void ch_access_log(const ch_req *req, const ch_res *res, void *user);
#endif
/* Request timing: adds "Server-Timing: app;dur=0.042" (milliseconds spent
   from this middleware to the end of the handler). */
#ifndef CHOPIN_NO_TIMING
CHOPIN_API int ch_mw_timing(ch_req *req, ch_res *res, void *user);
#endif

/* Running. ch_run = ch_listen + ch_serve. ch_listen resolves the
   configuration and binds the sockets (so a port in use fails here);
   ch_config_used then tells what was chosen (the real port with PORT=0).
   ch_serve blocks until SIGINT/SIGTERM or ch_stop, lets in-flight requests
   finish, and returns 0. ch_stop may be called from any thread or handler. */
CHOPIN_API int ch_listen(ch_app *app, const ch_config *cfg);
CHOPIN_API const ch_config *ch_config_used(const ch_app *app);
CHOPIN_API int ch_serve(ch_app *app);
CHOPIN_API int ch_run(ch_app *app, const ch_config *cfg);
CHOPIN_API void ch_stop(ch_app *app);

/* Request helpers. A missing header or parameter gives {NULL, 0}. */
CHOPIN_API ch_str ch_req_header(const ch_req *req, const char *name); /* any case */
CHOPIN_API ch_str ch_req_common(const ch_req *req, ch_hdr which);    /* O(1) */
CHOPIN_API ch_str ch_req_param(const ch_req *req, const char *name);
CHOPIN_API int ch_str_eq(ch_str s, const char *cstr);
/* The client's address as text ("127.0.0.1", "::1"); returns its length. */
CHOPIN_API size_t ch_req_remote_addr(const ch_req *req, char *out, size_t cap);

/* Query strings and cookies are parsed only when asked, value by value.
   ch_req_query and ch_req_cookie copy the percent-decoded value of `name`
   into out (NUL-terminated) and return its length, or CH_ABSENT, CH_BAD
   (a bad %-escape) or CH_TOO_LONG. In a query '+' means a space. */
#define CH_ABSENT (-1)
#define CH_BAD (-2)
#define CH_TOO_LONG (-3)
CHOPIN_API long ch_req_query(const ch_req *req, const char *name, char *out, size_t cap);
CHOPIN_API long ch_req_cookie(const ch_req *req, const char *name, char *out, size_t cap);
CHOPIN_API long ch_url_decode(const char *in, size_t len, char *out, size_t cap, int plus_is_space);
/* Walks "a=1&b=2" (a query or a form body): returns 1 and the next raw
   (still encoded) key and value, or 0 at the end. */
CHOPIN_API int ch_form_next(ch_str *rest, ch_str *key, ch_str *value);

/* Response. Unless set, the status is 200 and the body empty. A body given by
   pointer (ch_res_send, ch_res_text) is copied when the handler returns, so it
   may point at request data or static memory but not at the handler's stack;
   ch_res_body copies at once. */
CHOPIN_API void ch_res_status(ch_res *res, int status);
CHOPIN_API int ch_res_header(ch_res *res, const char *name, const char *value); /* -1: refused */
CHOPIN_API int ch_res_headern(ch_res *res, const char *name, size_t name_len, const char *value, size_t value_len);
CHOPIN_API void ch_res_send(ch_res *res, int status, const char *content_type, const void *body, size_t len);
CHOPIN_API void ch_res_text(ch_res *res, int status, const char *text);
CHOPIN_API int ch_res_body(ch_res *res, const char *content_type, const void *body, size_t len);
CHOPIN_API ch_json *ch_res_json(ch_res *res, int status); /* body = the writer's output */
CHOPIN_API void ch_res_error(ch_res *res, int status);    /* {"detail":"..."} body */
CHOPIN_API int ch_res_printf(ch_res *res, int status, const char *content_type, const char *fmt, ...);
CHOPIN_API int ch_res_redirect(ch_res *res, int status, const char *location); /* 301/302/303/307/308 */

/* JSON writer. Commas and nesting are tracked for you. */
CHOPIN_API void ch_json_init(ch_json *j);
CHOPIN_API void ch_json_reset(ch_json *j);
CHOPIN_API void ch_json_free(ch_json *j);
CHOPIN_API void ch_json_object_begin(ch_json *j);
CHOPIN_API void ch_json_object_end(ch_json *j);
CHOPIN_API void ch_json_array_begin(ch_json *j);
CHOPIN_API void ch_json_array_end(ch_json *j);
CHOPIN_API void ch_json_key(ch_json *j, const char *key);
CHOPIN_API void ch_json_keyn(ch_json *j, const char *key, size_t len);
CHOPIN_API void ch_json_str(ch_json *j, const char *s);
CHOPIN_API void ch_json_strn(ch_json *j, const char *s, size_t len);
CHOPIN_API void ch_json_int(ch_json *j, long long v);
CHOPIN_API void ch_json_uint(ch_json *j, unsigned long long v);
CHOPIN_API void ch_json_double(ch_json *j, double v);   /* NaN, inf: null */
CHOPIN_API void ch_json_bool(ch_json *j, int v);
CHOPIN_API void ch_json_null(ch_json *j);

/* JSON reader: a strict tokenizer (RFC 8259) over the body, in the manner of
   jsmn. Tokens are slices of the source, in document order: an object is
   followed by its members (key, value, key, value...), an array by its items.
   Nothing is allocated: the caller gives the token array, and both the token
   count and the nesting depth are bounded. On malformed input it returns -1
   with err_pos (the byte offset) and err (what was wrong), which a handler
   can put in its 400 answer. Duplicate keys are kept; lookups find the first. */
typedef enum ch_jtype {
    CH_JSON_NONE, CH_JSON_OBJECT, CH_JSON_ARRAY, CH_JSON_STRING, CH_JSON_NUMBER,
    CH_JSON_TRUE, CH_JSON_FALSE, CH_JSON_NULL
} ch_jtype;

typedef struct ch_jtok {
    ch_jtype type;
    uint32_t start, end;   /* the value's bytes; a string's without quotes */
    uint32_t count;        /* members of an object, items of an array */
    uint32_t next;         /* the token after this value and all inside it */
} ch_jtok;

typedef struct ch_jdoc {
    const char *src;
    size_t len;
    ch_jtok *tok;
    int ntok;
    size_t err_pos;
    const char *err;       /* NULL when the document is valid */
} ch_jdoc;

/* Returns the number of tokens (the root is token 0), or -1. max_depth 0
   means 32. */
CHOPIN_API int ch_json_parse(ch_jdoc *doc, const char *src, size_t len, ch_jtok *tok, int max_tok, int max_depth);
CHOPIN_API ch_jtype ch_json_type(const ch_jdoc *doc, int t);
CHOPIN_API int ch_json_find(const ch_jdoc *doc, int object, const char *key);  /* value token or -1 */
CHOPIN_API int ch_json_at(const ch_jdoc *doc, int array, int index);          /* item token or -1 */
CHOPIN_API int ch_json_path(const ch_jdoc *doc, int root, const char *path);   /* "a.b.0.c", or -1 */
/* Getters return 0, or -1 when the token is missing or of another type (or
   the number does not fit); ch_json_get_str returns the unescaped length,
   CH_BAD or CH_TOO_LONG, and always NUL-terminates out. */
CHOPIN_API long ch_json_get_str(const ch_jdoc *doc, int t, char *out, size_t cap);
CHOPIN_API int ch_json_get_int(const ch_jdoc *doc, int t, long long *out);
CHOPIN_API int ch_json_get_double(const ch_jdoc *doc, int t, double *out);
CHOPIN_API int ch_json_get_bool(const ch_jdoc *doc, int t, int *out);

#ifdef __cplusplus
}
#endif
#endif /* CHOPIN_H */

/* ======================================================================== */
/*                            IMPLEMENTATION                                */
/* ======================================================================== */
#if defined(CHOPIN_IMPLEMENTATION) && !defined(CHOPIN_IMPLEMENTATION_DONE)
#define CHOPIN_IMPLEMENTATION_DONE

/* >>platform ----------------------------------------------------------------
   Everything below is private: `static`, with the prefix chi_. Only Linux
   (epoll) is implemented; the poller sits behind five functions (see
   >>poller) so a kqueue backend can be added without touching the rest. */
#if !defined(__linux__)
#error "chopin.h: only the Linux epoll backend exists so far"
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#ifndef CHOPIN_ASSERT
#include <assert.h>
#define CHOPIN_ASSERT(c) assert(c)
#endif

#if defined(CHOPIN_MALLOC) && defined(CHOPIN_REALLOC) && defined(CHOPIN_FREE)
/* the user's allocator */
#elif !defined(CHOPIN_MALLOC) && !defined(CHOPIN_REALLOC) && !defined(CHOPIN_FREE)
#define CHOPIN_MALLOC(n) malloc(n)
#define CHOPIN_REALLOC(p, n) realloc(p, n)
#define CHOPIN_FREE(p) free(p)
#else
#error "chopin.h: define CHOPIN_MALLOC, CHOPIN_REALLOC and CHOPIN_FREE together, or none"
#endif

#ifndef CHOPIN_READ_SIZE
#define CHOPIN_READ_SIZE 65536
#endif
#ifndef CHOPIN_MAX_PENDING
#define CHOPIN_MAX_PENDING (1024 * 1024)
#endif
#ifndef CHOPIN_SERVER_NAME
#define CHOPIN_SERVER_NAME "chopin"
#endif

/* Defaults for a zeroed ch_config, resolved in one place (chi_resolve_config). */
#define CHI_DEFAULT_PORT 3000
#define CHI_DEFAULT_HOST "0.0.0.0"
#define CHI_DEFAULT_MAX_HEADER (16 * 1024)
#define CHI_DEFAULT_MAX_TARGET (8 * 1024)
#define CHI_DEFAULT_MAX_BODY (8 * 1024 * 1024)
#define CHI_DEFAULT_MAX_CONNS 10000
#define CHI_DEFAULT_IDLE_TIMEOUT 60
#define CHI_DEFAULT_HEADER_TIMEOUT 20
#define CHI_DEFAULT_BODY_TIMEOUT 30
#define CHI_DEFAULT_WRITE_TIMEOUT 30
#define CHI_DEFAULT_SHUTDOWN_TIMEOUT 10
#define CHI_DEFAULT_BACKLOG 4096
#define CHI_LINGER_TIMEOUT 5          /* seconds a closing socket is drained */
#define CHI_LINGER_MAX (256 * 1024)   /* bytes drained before giving up */
#define CHI_MAX_METHOD_LEN 32         /* longer method tokens get 501 */
#define CHI_OUT_KEEP (256 * 1024)     /* the worker's output buffer shrinks back to this */

static int chi_def(int v, int d) { return v ? v : d; }
static size_t chi_defz(size_t v, size_t d) { return v ? v : d; }

/* >>utilities ---------------------------------------------------------------
   A growable byte buffer, integer formatting, the Date header, and the
   character classes of RFC 9110/9112 as one lookup table. */

typedef struct chi_buf {
    char *ptr;
    size_t len, cap;
} chi_buf;

/* Makes room for `extra` more bytes. Returns 0, or -1 when out of memory. */
static int chi_buf_reserve(chi_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;
    if (b->cap - b->len >= extra) return 0;
    if (extra > (size_t)-1 / 2 - b->len) return -1;
    need = b->len + extra;
    cap = b->cap ? b->cap : 1024;
    while (cap < need) cap *= 2;
    p = (char *)CHOPIN_REALLOC(b->ptr, cap);
    if (!p) return -1;
    b->ptr = p;
    b->cap = cap;
    return 0;
}

static int chi_buf_append(chi_buf *b, const void *data, size_t n)
{
    if (chi_buf_reserve(b, n) < 0) return -1;
    if (n) memcpy(b->ptr + b->len, data, n);
    b->len += n;
    return 0;
}

static void chi_buf_free(chi_buf *b)
{
    CHOPIN_FREE(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

/* Appends without a capacity check: the caller reserved the room. An empty
   piece may have a NULL pointer, which memcpy must never see. */
static char *chi_put(char *p, const char *s, size_t n)
{
    if (n) memcpy(p, s, n);
    return p + n;
}

/* Unsigned integer to decimal, two digits per division; `out` needs 20
   bytes. Returns the number of digits. No printf on the hot path. */
static size_t chi_utoa(uint64_t v, char *out)
{
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    char tmp[20];
    size_t i = sizeof tmp, n;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        i -= 2;
        memcpy(tmp + i, pairs + 2 * r, 2);
    }
    if (v >= 10) {
        i -= 2;
        memcpy(tmp + i, pairs + 2 * v, 2);
    } else {
        tmp[--i] = (char)('0' + v);
    }
    n = sizeof tmp - i;
    memcpy(out, tmp + i, n);
    return n;
}

static size_t chi_itoa(int64_t v, char *out)
{
    if (v < 0) {
        out[0] = '-';
        return 1 + chi_utoa((uint64_t)0 - (uint64_t)v, out + 1);
    }
    return chi_utoa((uint64_t)v, out);
}

/* IMF-fixdate (RFC 9110 5.6.7), e.g. "Sun, 06 Nov 1994 08:49:37 GMT": always
   29 bytes. Days since the epoch become a civil date with the
   era/day-of-era method, so no locale or time zone is involved. */
#define CHI_DATE_LEN 29
static void chi_format_date(int64_t t, char out[CHI_DATE_LEN])
{
    static const char wday[] = "ThuFriSatSunMonTueWed"; /* 1970-01-01 was a Thursday */
    static const char mon[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    int64_t days = t / 86400, secs = t % 86400, era, doe, yoe, y, doy, mp, d, m;
    if (secs < 0) {
        secs += 86400;
        days -= 1;
    }
    memcpy(out, wday + 3 * (((days % 7) + 7) % 7), 3);
    days += 719468;
    era = (days >= 0 ? days : days - 146096) / 146097;
    doe = days - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    if (y < 0) y = 0;
    if (y > 9999) y = 9999;
    out[3] = ',';
    out[4] = ' ';
    out[5] = (char)('0' + d / 10);
    out[6] = (char)('0' + d % 10);
    out[7] = ' ';
    memcpy(out + 8, mon + 3 * (m - 1), 3);
    out[11] = ' ';
    out[12] = (char)('0' + y / 1000);
    out[13] = (char)('0' + y / 100 % 10);
    out[14] = (char)('0' + y / 10 % 10);
    out[15] = (char)('0' + y % 10);
    out[16] = ' ';
    out[17] = (char)('0' + secs / 36000);
    out[18] = (char)('0' + secs / 3600 % 10);
    out[19] = ':';
    out[20] = (char)('0' + secs % 3600 / 600);
    out[21] = (char)('0' + secs % 600 / 60);
    out[22] = ':';
    out[23] = (char)('0' + secs % 60 / 10);
    out[24] = (char)('0' + secs % 10);
    memcpy(out + 25, " GMT", 4);
}

/* Character classes, one byte of flags per octet (checked against the RFC
   grammar by tests/unit.c):
     TOKEN  tchar (RFC 9110 5.6.2): method names, header names
     URI    bytes allowed in a request-target (RFC 3986, without '#')
     VALUE  field-value bytes: VCHAR, obs-text, SP, HTAB (RFC 9110 5.5)
     HEX    hexadecimal digits
     HOST   bytes of uri-host [":" port], IP literals included
     PATH   URI bytes that need no second look: all but '%' and '?'
     JSON   bytes a JSON string holds as they are: 0x20-0x7F but '"', '\\' */
enum { CHI_TOKEN = 1, CHI_URI = 2, CHI_VALUE = 4, CHI_HEX = 8, CHI_HOST = 16, CHI_PATH = 32, CHI_JSON = 64 };
static const unsigned char chi_cclass[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0,  4,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    68,119,  4, 69,119, 87,119,119,118,118,119,119,118,119,119,102,
   127,127,127,127,127,127,127,127,127,127,118,118, 68,118, 68, 70,
   102,127,127,127,127,127,127,119,119,119,119,119,119,119,119,119,
   119,119,119,119,119,119,119,119,119,119,119,118,  4,118, 69,119,
    69,127,127,127,127,127,127,119,119,119,119,119,119,119,119,119,
   119,119,119,119,119,119,119,119,119,119,119, 68, 69, 68,119, 64,
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
     4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,
};

static int chi_is(unsigned char c, int cls) { return (chi_cclass[c] & cls) != 0; }

/* Eight bytes at a time ("SWAR": SIMD within a register). The classic
   bit tricks answer, for a whole 64-bit word, "is any byte below n?" and
   "is any byte zero?" exactly; the scanners below use them to skip words that
   need no per-byte look, and fall back to the table for the word that does. */
#define CHI_ONES 0x0101010101010101ULL
#define CHI_HIGHS 0x8080808080808080ULL
static uint64_t chi_load8(const char *p)
{
    uint64_t x;
    memcpy(&x, p, 8); /* compiles to one unaligned load */
    return x;
}
static uint64_t chi_has_below(uint64_t x, unsigned n) { return (x - CHI_ONES * n) & ~x & CHI_HIGHS; }
static uint64_t chi_has_byte(uint64_t x, unsigned b) { return chi_has_below(x ^ (CHI_ONES * b), 1); }

/* Skips bytes of class cls, four per step while all four are (one test for
   four table lookups), then one by one. */
static const char *chi_skip_class(const char *p, const char *end, int cls)
{
    const unsigned char *u = (const unsigned char *)p;
    while (end - (const char *)u >= 4 &&
           (chi_cclass[u[0]] & chi_cclass[u[1]] & chi_cclass[u[2]] & chi_cclass[u[3]] & cls))
        u += 4;
    while ((const char *)u < end && chi_is(*u, cls)) u++;
    return (const char *)u;
}

/* Skips field-value bytes; stops at CR or any byte a value may not hold. */
static const char *chi_skip_value(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t x = chi_load8(p);
        if (chi_has_below(x, 0x20) | chi_has_byte(x, 0x7f)) break; /* HTAB, CR, CTL or DEL */
        p += 8;
    }
    while (p < end && chi_is((unsigned char)*p, CHI_VALUE)) p++;
    return p;
}
static char chi_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }

/* Case-insensitive comparison of n bytes with a lower-case literal. */
static int chi_ieq(const char *s, const char *lower, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (chi_lower(s[i]) != lower[i]) return 0;
    return 1;
}

static int chi_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = (unsigned char)(c | 0x20);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* A decimal number from lo to hi, digits only. */
static int chi_parse_int(const char *s, long lo, long hi, long *out)
{
    long v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (*s - '0');
        if (v > hi) return -1;
    }
    if (v < lo) return -1;
    *out = v;
    return 0;
}

static ch_str chi_str(const char *p, size_t n)
{
    ch_str s;
    s.ptr = p;
    s.len = n;
    return s;
}

CHOPIN_API int ch_str_eq(ch_str s, const char *cstr)
{
    size_t n = strlen(cstr);
    return s.len == n && (n == 0 || memcmp(s.ptr, cstr, n) == 0);
}

/* >>json --------------------------------------------------------------------
   The JSON writer appends to one growable buffer. `fresh` has a bit per
   nesting level saying "no item written here yet", so the writer knows where
   a comma goes; `after_key` says a value completes a "key": pair. Strings are
   escaped by RFC 8259: quote, backslash and control bytes; valid UTF-8 passes
   through, invalid UTF-8 becomes U+FFFD so the output is always valid JSON. */

CHOPIN_API void ch_json_init(ch_json *j) { memset(j, 0, sizeof *j); }

CHOPIN_API void ch_json_reset(ch_json *j)
{
    j->len = 0;
    j->fresh = 0;
    j->arrays = 0;
    j->depth = 0;
    j->after_key = 0;
    j->failed = 0;
}

CHOPIN_API void ch_json_free(ch_json *j)
{
    CHOPIN_FREE(j->buf);
    ch_json_init(j);
}

/* The slow path of chi_json_reserve: grow the buffer. */
static int chi_json_grow(ch_json *j, size_t extra)
{
    chi_buf b;
    if (j->failed) return -1;
    b.ptr = j->buf;
    b.len = j->len;
    b.cap = j->cap;
    if (chi_buf_reserve(&b, extra) < 0) {
        j->failed = 1;
        return -1;
    }
    j->buf = b.ptr;
    j->cap = b.cap;
    return 0;
}

static int chi_json_reserve(ch_json *j, size_t extra)
{
    return j->cap - j->len >= extra && !j->failed ? 0 : chi_json_grow(j, extra);
}

static void chi_json_raw(ch_json *j, const char *s, size_t n)
{
    if (chi_json_reserve(j, n) < 0) return;
    memcpy(j->buf + j->len, s, n);
    j->len += n;
}

static void chi_json_char(ch_json *j, char c)
{
    if (chi_json_reserve(j, 1) == 0) j->buf[j->len++] = c;
}

static int chi_json_in_array(const ch_json *j)
{
    return j->depth > 0 && ((j->arrays >> (j->depth - 1)) & 1);
}

/* Called before every value and key: writes the comma if one is due. A
   value in an object must follow its key. */
static void chi_json_sep_for(ch_json *j, int is_key)
{
    uint64_t bit;
    if (j->after_key) {
        j->after_key = 0;
        return;
    }
    if (j->depth == 0) {
        if (j->len) j->failed = 1; /* a second top-level value */
        return;
    }
    if (!is_key && !chi_json_in_array(j)) j->failed = 1;
    bit = (uint64_t)1 << (j->depth - 1);
    if (j->fresh & bit)
        j->fresh &= ~bit;
    else
        chi_json_char(j, ',');
}

static void chi_json_sep(ch_json *j) { chi_json_sep_for(j, 0); }

static void chi_json_open(ch_json *j, char c)
{
    chi_json_sep(j);
    if (j->depth >= 64) {
        j->failed = 1;
        return;
    }
    chi_json_char(j, c);
    j->fresh |= (uint64_t)1 << j->depth;
    if (c == '[')
        j->arrays |= (uint64_t)1 << j->depth;
    else
        j->arrays &= ~((uint64_t)1 << j->depth);
    j->depth++;
}

static void chi_json_close(ch_json *j, char c)
{
    if (j->depth == 0 || j->after_key || chi_json_in_array(j) != (c == ']')) {
        j->failed = 1;
        return;
    }
    j->depth--;
    j->fresh &= ~((uint64_t)1 << j->depth);
    chi_json_char(j, c);
}

CHOPIN_API void ch_json_object_begin(ch_json *j) { chi_json_open(j, '{'); }
CHOPIN_API void ch_json_object_end(ch_json *j) { chi_json_close(j, '}'); }
CHOPIN_API void ch_json_array_begin(ch_json *j) { chi_json_open(j, '['); }
CHOPIN_API void ch_json_array_end(ch_json *j) { chi_json_close(j, ']'); }

/* Length of the valid UTF-8 sequence at s (RFC 3629), or 0 if invalid. */
static size_t chi_utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0xC2 || c > 0xF4) return 0;
    if (c < 0xE0) return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && s[1] > 0x9F) return 0; /* surrogate */
        return 3;
    }
    if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
    if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong */
    if (c == 0xF4 && s[1] > 0x8F) return 0; /* above U+10FFFF */
    return 4;
}

/* Writes a quoted, escaped string. One capacity check covers the worst
   case; words of eight bytes that need no escape are copied whole. */
static void chi_json_quoted(ch_json *j, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    char *o;
    /* worst case: every byte becomes \u00XX (6 bytes) or U+FFFD (6 bytes) */
    if (n > ((size_t)-1 - 2) / 6 || chi_json_reserve(j, n * 6 + 2) < 0) {
        j->failed = 1;
        return;
    }
    o = j->buf + j->len;
    *o++ = '"';
    while (i < n) {
        unsigned char c;
        while (n - i >= 8) {
            uint64_t x = chi_load8(str + i);
            /* a control byte, a byte >= 0x80, '"' or '\\' needs a closer look */
            if (chi_has_below(x, 0x20) | (x & CHI_HIGHS) | chi_has_byte(x, '"') | chi_has_byte(x, '\\')) break;
            memcpy(o, str + i, 8);
            o += 8;
            i += 8;
        }
        while (i < n && chi_is(s[i], CHI_JSON)) *o++ = (char)s[i++]; /* the tail of a run */
        if (i == n) break;
        c = s[i];
        if (c >= 0x80) {
            size_t u = chi_utf8_len(s + i, n - i);
            if (u) {
                memcpy(o, s + i, u);
                o += u;
                i += u;
            } else {
                memcpy(o, "\\ufffd", 6);
                o += 6;
                i++;
            }
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            memcpy(o, "u00", 3);
            o[3] = hex[c >> 4];
            o[4] = hex[c & 15];
            o += 5;
        }
        i++;
    }
    *o++ = '"';
    j->len = (size_t)(o - j->buf);
}

CHOPIN_API void ch_json_keyn(ch_json *j, const char *key, size_t len)
{
    if (j->depth == 0 || j->after_key || chi_json_in_array(j)) {
        j->failed = 1;
        return;
    }
    chi_json_sep_for(j, 1);
    chi_json_quoted(j, key, len);
    chi_json_char(j, ':');
    j->after_key = 1;
}

CHOPIN_API void ch_json_key(ch_json *j, const char *key) { ch_json_keyn(j, key, strlen(key)); }

CHOPIN_API void ch_json_strn(ch_json *j, const char *s, size_t len)
{
    chi_json_sep(j);
    chi_json_quoted(j, s, len);
}

CHOPIN_API void ch_json_str(ch_json *j, const char *s)
{
    if (!s) {
        ch_json_null(j);
        return;
    }
    ch_json_strn(j, s, strlen(s));
}

CHOPIN_API void ch_json_int(ch_json *j, long long v)
{
    char tmp[24];
    chi_json_sep(j);
    chi_json_raw(j, tmp, chi_itoa((int64_t)v, tmp));
}

CHOPIN_API void ch_json_uint(ch_json *j, unsigned long long v)
{
    char tmp[24];
    chi_json_sep(j);
    chi_json_raw(j, tmp, chi_utoa((uint64_t)v, tmp));
}

/* The shortest of %.15g, %.16g, %.17g that reads back as the same double:
   %.17g always round-trips, the shorter forms look like what people wrote.
   A locale that uses ',' as the decimal point is undone. */
CHOPIN_API void ch_json_double(ch_json *j, double v)
{
    char tmp[40];
    int prec, n = 0, i;
    if (v != v || v > 1.7976931348623157e308 || v < -1.7976931348623157e308) {
        ch_json_null(j);
        return;
    }
    for (prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        for (i = 0; i < n; i++)
            if (tmp[i] == ',') tmp[i] = '.';
        if (strtod(tmp, NULL) == v) break;
    }
    chi_json_sep(j);
    chi_json_raw(j, tmp, (size_t)n);
}

CHOPIN_API void ch_json_bool(ch_json *j, int v)
{
    chi_json_sep(j);
    if (v)
        chi_json_raw(j, "true", 4);
    else
        chi_json_raw(j, "false", 5);
}

CHOPIN_API void ch_json_null(ch_json *j)
{
    chi_json_sep(j);
    chi_json_raw(j, "null", 4);
}

/* >>json reader -------------------------------------------------------------
   A recursive-descent validator that records a token per value. Recursion
   is bounded by max_depth, so hostile nesting cannot exhaust the stack. */

typedef struct chi_jp {
    ch_jdoc *doc;
    const char *s;
    size_t pos, len;
    int max_tok, depth, max_depth;
} chi_jp;

static int chi_jp_fail(chi_jp *p, const char *why)
{
    if (!p->doc->err) {
        p->doc->err = why;
        p->doc->err_pos = p->pos;
    }
    return -1;
}

static void chi_jp_ws(chi_jp *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int chi_jp_new(chi_jp *p, ch_jtype type, size_t start)
{
    ch_jtok *t;
    if (p->doc->ntok >= p->max_tok) return chi_jp_fail(p, "too many values");
    t = &p->doc->tok[p->doc->ntok];
    t->type = type;
    t->start = (uint32_t)start;
    t->end = (uint32_t)start;
    t->count = 0;
    t->next = 0;
    return p->doc->ntok++;
}

static int chi_jp_hex4(const char *s, unsigned *out)
{
    int i;
    *out = 0;
    for (i = 0; i < 4; i++) {
        int d = chi_hexval((unsigned char)s[i]);
        if (d < 0) return -1;
        *out = *out * 16 + (unsigned)d;
    }
    return 0;
}

/* A string, from its opening quote: escapes and UTF-8 are checked here, so
   ch_json_get_str can unescape without failing. */
static int chi_jp_string(chi_jp *p)
{
    int t = chi_jp_new(p, CH_JSON_STRING, ++p->pos);
    if (t < 0) return -1;
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->doc->tok[t].end = (uint32_t)p->pos++;
            return t;
        }
        if (c < 0x20) return chi_jp_fail(p, "control character in a string");
        if (c == '\\') {
            unsigned u, lo;
            if (p->pos + 1 >= p->len) break;
            c = (unsigned char)p->s[p->pos + 1];
            if (c != 'u') {
                if (!strchr("\"\\/bfnrt", c) || c == 0) return chi_jp_fail(p, "bad escape");
                p->pos += 2;
                continue;
            }
            if (p->pos + 6 > p->len || chi_jp_hex4(p->s + p->pos + 2, &u) < 0) return chi_jp_fail(p, "bad \\u escape");
            p->pos += 6;
            if (u >= 0xDC00 && u <= 0xDFFF) return chi_jp_fail(p, "lone low surrogate");
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (p->pos + 6 > p->len || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
                    chi_jp_hex4(p->s + p->pos + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                    return chi_jp_fail(p, "lone high surrogate");
                p->pos += 6;
            }
            continue;
        }
        if (c >= 0x80) {
            size_t n = chi_utf8_len((const unsigned char *)p->s + p->pos, p->len - p->pos);
            if (!n) return chi_jp_fail(p, "invalid UTF-8");
            p->pos += n;
            continue;
        }
        p->pos++;
    }
    return chi_jp_fail(p, "unterminated string");
}

static int chi_jp_digits(chi_jp *p)
{
    size_t start = p->pos;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    return p->pos > start ? 0 : -1;
}

static int chi_jp_number(chi_jp *p)
{
    int t = chi_jp_new(p, CH_JSON_NUMBER, p->pos);
    if (t < 0) return -1;
    if (p->s[p->pos] == '-') p->pos++;
    if (p->pos < p->len && p->s[p->pos] == '0')
        p->pos++; /* no leading zeros */
    else if (chi_jp_digits(p) < 0)
        return chi_jp_fail(p, "bad number");
    if (p->pos < p->len && p->s[p->pos] == '.') {
        p->pos++;
        if (chi_jp_digits(p) < 0) return chi_jp_fail(p, "bad number");
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (chi_jp_digits(p) < 0) return chi_jp_fail(p, "bad number");
    }
    p->doc->tok[t].end = (uint32_t)p->pos;
    return t;
}

static int chi_jp_value(chi_jp *p);

/* An object or an array, from its opening bracket. */
static int chi_jp_container(chi_jp *p, int is_object)
{
    char close = is_object ? '}' : ']';
    int t = chi_jp_new(p, is_object ? CH_JSON_OBJECT : CH_JSON_ARRAY, p->pos);
    if (t < 0) return -1;
    if (++p->depth > p->max_depth) return chi_jp_fail(p, "nested too deep");
    p->pos++;
    chi_jp_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
    } else {
        for (;;) {
            if (is_object) {
                chi_jp_ws(p);
                int key;
                if (p->pos >= p->len || p->s[p->pos] != '"') return chi_jp_fail(p, "expected a key");
                if ((key = chi_jp_string(p)) < 0) return -1;
                p->doc->tok[key].next = (uint32_t)key + 1; /* its value follows */
                chi_jp_ws(p);
                if (p->pos >= p->len || p->s[p->pos] != ':') return chi_jp_fail(p, "expected ':'");
                p->pos++;
            }
            if (chi_jp_value(p) < 0) return -1;
            p->doc->tok[t].count++;
            chi_jp_ws(p);
            if (p->pos < p->len && p->s[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->pos < p->len && p->s[p->pos] == close) {
                p->pos++;
                break;
            }
            return chi_jp_fail(p, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    p->depth--;
    p->doc->tok[t].end = (uint32_t)p->pos;
    return t;
}

static int chi_jp_literal(chi_jp *p, const char *word, ch_jtype type)
{
    size_t n = strlen(word);
    int t;
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return chi_jp_fail(p, "unexpected character");
    t = chi_jp_new(p, type, p->pos);
    if (t < 0) return -1;
    p->pos += n;
    p->doc->tok[t].end = (uint32_t)p->pos;
    return t;
}

static int chi_jp_value(chi_jp *p)
{
    int t;
    chi_jp_ws(p);
    if (p->pos >= p->len) return chi_jp_fail(p, "unexpected end");
    switch (p->s[p->pos]) {
    case '{': t = chi_jp_container(p, 1); break;
    case '[': t = chi_jp_container(p, 0); break;
    case '"': t = chi_jp_string(p); break;
    case 't': t = chi_jp_literal(p, "true", CH_JSON_TRUE); break;
    case 'f': t = chi_jp_literal(p, "false", CH_JSON_FALSE); break;
    case 'n': t = chi_jp_literal(p, "null", CH_JSON_NULL); break;
    default:
        if (p->s[p->pos] == '-' || (p->s[p->pos] >= '0' && p->s[p->pos] <= '9'))
            t = chi_jp_number(p);
        else
            return chi_jp_fail(p, "unexpected character");
    }
    if (t >= 0) p->doc->tok[t].next = (uint32_t)p->doc->ntok;
    return t;
}

CHOPIN_API int ch_json_parse(ch_jdoc *doc, const char *src, size_t len, ch_jtok *tok, int max_tok, int max_depth)
{
    chi_jp p;
    memset(doc, 0, sizeof *doc);
    doc->src = src;
    doc->len = len;
    doc->tok = tok;
    p.doc = doc;
    p.s = src;
    p.pos = 0;
    p.len = len;
    p.max_tok = max_tok;
    p.depth = 0;
    p.max_depth = max_depth > 0 ? max_depth : 32;
    if (len > 0xFFFFFFF0u) return chi_jp_fail(&p, "document too large");
    if (chi_jp_value(&p) < 0) return -1;
    chi_jp_ws(&p);
    if (p.pos != len) return chi_jp_fail(&p, "trailing characters");
    return doc->ntok;
}

static int chi_jt_ok(const ch_jdoc *d, int t) { return d && !d->err && t >= 0 && t < d->ntok; }

CHOPIN_API ch_jtype ch_json_type(const ch_jdoc *d, int t) { return chi_jt_ok(d, t) ? d->tok[t].type : CH_JSON_NONE; }

/* Unescapes a string token into out. The token was validated by the parser. */
CHOPIN_API long ch_json_get_str(const ch_jdoc *d, int t, char *out, size_t cap)
{
    const char *s, *end;
    size_t n = 0;
    if (cap) out[0] = 0;
    if (ch_json_type(d, t) != CH_JSON_STRING) return CH_BAD;
    s = d->src + d->tok[t].start;
    end = d->src + d->tok[t].end;
    while (s < end) {
        char enc[4];
        size_t k = 1;
        unsigned u;
        if (*s != '\\') {
            enc[0] = *s++;
        } else {
            char e = s[1];
            s += 2;
            switch (e) {
            case 'b': enc[0] = '\b'; break;
            case 'f': enc[0] = '\f'; break;
            case 'n': enc[0] = '\n'; break;
            case 'r': enc[0] = '\r'; break;
            case 't': enc[0] = '\t'; break;
            case 'u':
                chi_jp_hex4(s, &u);
                s += 4;
                if (u >= 0xD800 && u <= 0xDBFF) { /* a pair, checked by the parser */
                    unsigned lo;
                    chi_jp_hex4(s + 2, &lo);
                    s += 6;
                    u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                }
                /* UTF-8 encoding of the code point */
                if (u < 0x80) {
                    enc[0] = (char)u;
                } else if (u < 0x800) {
                    enc[0] = (char)(0xC0 | (u >> 6));
                    enc[1] = (char)(0x80 | (u & 0x3F));
                    k = 2;
                } else if (u < 0x10000) {
                    enc[0] = (char)(0xE0 | (u >> 12));
                    enc[1] = (char)(0x80 | ((u >> 6) & 0x3F));
                    enc[2] = (char)(0x80 | (u & 0x3F));
                    k = 3;
                } else {
                    enc[0] = (char)(0xF0 | (u >> 18));
                    enc[1] = (char)(0x80 | ((u >> 12) & 0x3F));
                    enc[2] = (char)(0x80 | ((u >> 6) & 0x3F));
                    enc[3] = (char)(0x80 | (u & 0x3F));
                    k = 4;
                }
                break;
            default: enc[0] = e; break; /* " \ / */
            }
        }
        if (n + k >= cap) {
            if (cap) out[n] = 0;
            return CH_TOO_LONG;
        }
        memcpy(out + n, enc, k);
        n += k;
    }
    if (!cap) return CH_TOO_LONG; /* no room even for the terminator */
    out[n] = 0;
    return (long)n;
}

/* Does string token t spell `key`? Escaped keys are unescaped first. */
static int chi_jt_key_is(const ch_jdoc *d, int t, const char *key)
{
    const ch_jtok *k = &d->tok[t];
    size_t n = strlen(key), len = k->end - k->start;
    char tmp[256];
    long m;
    if (!memchr(d->src + k->start, '\\', len)) return len == n && memcmp(d->src + k->start, key, n) == 0;
    m = ch_json_get_str(d, t, tmp, sizeof tmp);
    return m >= 0 && (size_t)m == n && memcmp(tmp, key, n) == 0;
}

CHOPIN_API int ch_json_find(const ch_jdoc *d, int obj, const char *key)
{
    uint32_t i, t;
    if (ch_json_type(d, obj) != CH_JSON_OBJECT) return -1;
    t = (uint32_t)obj + 1;
    for (i = 0; i < d->tok[obj].count; i++) {
        uint32_t value = t + 1;
        if (chi_jt_key_is(d, (int)t, key)) return (int)value;
        t = d->tok[value].next;
    }
    return -1;
}

CHOPIN_API int ch_json_at(const ch_jdoc *d, int arr, int index)
{
    uint32_t i, t;
    if (ch_json_type(d, arr) != CH_JSON_ARRAY || index < 0 || (uint32_t)index >= d->tok[arr].count) return -1;
    t = (uint32_t)arr + 1;
    for (i = 0; i < (uint32_t)index; i++) t = d->tok[t].next;
    return (int)t;
}

CHOPIN_API int ch_json_path(const ch_jdoc *d, int t, const char *path)
{
    char seg[256];
    while (*path && t >= 0) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof seg) return -1;
        memcpy(seg, path, n);
        seg[n] = 0;
        if (ch_json_type(d, t) == CH_JSON_ARRAY) {
            long idx;
            if (chi_parse_int(seg, 0, 0x7FFFFFFF, &idx) < 0) return -1;
            t = ch_json_at(d, t, (int)idx);
        } else {
            t = ch_json_find(d, t, seg);
        }
        path += n + (dot ? 1 : 0);
    }
    return t;
}

CHOPIN_API int ch_json_get_int(const ch_jdoc *d, int t, long long *out)
{
    const char *s, *end;
    int neg;
    unsigned long long v = 0, limit;
    if (ch_json_type(d, t) != CH_JSON_NUMBER) return -1;
    s = d->src + d->tok[t].start;
    end = d->src + d->tok[t].end;
    neg = *s == '-';
    s += neg;
    limit = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9') return -1; /* a fraction or exponent */
        if (v > (limit - (unsigned)(*s - '0')) / 10) return -1;
        v = v * 10 + (unsigned)(*s - '0');
    }
    *out = neg ? (v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v) : (long long)v;
    return 0;
}

CHOPIN_API int ch_json_get_double(const ch_jdoc *d, int t, double *out)
{
    char tmp[512];
    size_t n, i;
    const char *point = localeconv()->decimal_point;
    if (ch_json_type(d, t) != CH_JSON_NUMBER) return -1;
    n = d->tok[t].end - d->tok[t].start;
    if (n >= sizeof tmp) return -1;
    memcpy(tmp, d->src + d->tok[t].start, n);
    tmp[n] = 0;
    /* strtod reads the locale's decimal point; JSON's is always '.' */
    if (point && point[0] != '.')
        for (i = 0; i < n; i++)
            if (tmp[i] == '.') tmp[i] = point[0];
    *out = strtod(tmp, NULL);
    return 0;
}

CHOPIN_API int ch_json_get_bool(const ch_jdoc *d, int t, int *out)
{
    ch_jtype ty = ch_json_type(d, t);
    if (ty != CH_JSON_TRUE && ty != CH_JSON_FALSE) return -1;
    *out = ty == CH_JSON_TRUE;
    return 0;
}

/* >>parser ------------------------------------------------------------------
   chi_parse_head is a stateless function over the bytes received so far, in
   the manner of picohttpparser: it returns the length of a complete request
   head, 0 when more bytes are needed, or -status for a request that must be
   refused (400, 413, 414, 417, 431, 501, 505). Because it keeps no state, a
   request split at any byte boundary parses exactly as one read in one piece;
   the connection code only calls it again when a new line has arrived.
   Everything it reports is a slice of the buffer: nothing is copied.

   It is strict where leniency lets two parsers disagree about where a message
   ends (request smuggling): CRLF line ends only, no whitespace before a colon,
   no obs-fold, one Host, one Content-Length value, and Transfer-Encoding only
   as a lone "chunked" without Content-Length. */

typedef struct chi_limits {
    size_t max_header, max_target, max_body;
} chi_limits;

enum { CHI_BODY_NONE, CHI_BODY_LENGTH, CHI_BODY_CHUNKED };

/* What the head says about framing and the connection. */
typedef struct chi_head {
    int body_kind;
    uint64_t content_length;
    int keep_alive;
    int expect_continue;
} chi_head;

static ch_method chi_method_of(const char *m, size_t n)
{
    switch (n) {
    case 3:
        if (memcmp(m, "GET", 3) == 0) return CH_GET;
        if (memcmp(m, "PUT", 3) == 0) return CH_PUT;
        break;
    case 4:
        if (memcmp(m, "HEAD", 4) == 0) return CH_HEAD;
        if (memcmp(m, "POST", 4) == 0) return CH_POST;
        break;
    case 5:
        if (memcmp(m, "PATCH", 5) == 0) return CH_PATCH;
        if (memcmp(m, "TRACE", 5) == 0) return CH_TRACE;
        break;
    case 6:
        if (memcmp(m, "DELETE", 6) == 0) return CH_DELETE;
        break;
    case 7:
        if (memcmp(m, "OPTIONS", 7) == 0) return CH_OPTIONS;
        if (memcmp(m, "CONNECT", 7) == 0) return CH_CONNECT;
        break;
    }
    return CH_OTHER;
}

/* The common header names as a generated switch: on the length, then on the
   first letter, then one comparison. Header names are tokens, so OR-ing 0x20
   into each byte lower-cases letters and cannot turn any other token byte
   into a letter or '-': the comparison is exact. */
static int chi_is_name(const char *s, const char *lower, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if ((s[i] | 0x20) != lower[i]) return 0;
    return 1;
}

/* id if name (of len bytes, as the case label says) is `lower`, else -1 */
static int chi_name_id(const char *name, const char *lower, size_t len, ch_hdr id)
{
    return chi_is_name(name, lower, len) ? (int)id : -1;
}

static int chi_header_id(const char *name, size_t len)
{
    switch (len) {
    case 4: return chi_name_id(name, "host", len, CH_H_HOST);
    case 5: return chi_name_id(name, "range", len, CH_H_RANGE);
    case 6:
        switch (name[0] | 0x20) {
        case 'a': return chi_name_id(name, "accept", len, CH_H_ACCEPT);
        case 'c': return chi_name_id(name, "cookie", len, CH_H_COOKIE);
        case 'e': return chi_name_id(name, "expect", len, CH_H_EXPECT);
        case 'o': return chi_name_id(name, "origin", len, CH_H_ORIGIN);
        }
        break;
    case 7:
        switch (name[0] | 0x20) {
        case 'r': return chi_name_id(name, "referer", len, CH_H_REFERER);
        case 'u': return chi_name_id(name, "upgrade", len, CH_H_UPGRADE);
        }
        break;
    case 9: return chi_name_id(name, "x-real-ip", len, CH_H_X_REAL_IP);
    case 10:
        switch (name[0] | 0x20) {
        case 'c': return chi_name_id(name, "connection", len, CH_H_CONNECTION);
        case 'u': return chi_name_id(name, "user-agent", len, CH_H_USER_AGENT);
        }
        break;
    case 12:
        switch (name[0] | 0x20) {
        case 'c': return chi_name_id(name, "content-type", len, CH_H_CONTENT_TYPE);
        case 'x': return chi_name_id(name, "x-request-id", len, CH_H_X_REQUEST_ID);
        }
        break;
    case 13:
        switch (name[0] | 0x20) {
        case 'a': return chi_name_id(name, "authorization", len, CH_H_AUTHORIZATION);
        case 'c': return chi_name_id(name, "cache-control", len, CH_H_CACHE_CONTROL);
        case 'i': return chi_name_id(name, "if-none-match", len, CH_H_IF_NONE_MATCH);
        }
        break;
    case 14: return chi_name_id(name, "content-length", len, CH_H_CONTENT_LENGTH);
    case 15:
        switch (name[0] | 0x20) {
        case 'a': return (name[7] | 0x20) == 'e' ? chi_name_id(name, "accept-encoding", len, CH_H_ACCEPT_ENCODING)
                                                 : chi_name_id(name, "accept-language", len, CH_H_ACCEPT_LANGUAGE);
        case 'x': return chi_name_id(name, "x-forwarded-for", len, CH_H_X_FORWARDED_FOR);
        }
        break;
    case 17:
        switch (name[0] | 0x20) {
        case 't': return chi_name_id(name, "transfer-encoding", len, CH_H_TRANSFER_ENCODING);
        case 'i': return chi_name_id(name, "if-modified-since", len, CH_H_IF_MODIFIED_SINCE);
        case 'x': return chi_name_id(name, "x-forwarded-proto", len, CH_H_X_FORWARDED_PROTO);
        }
        break;
    }
    return -1;
}

/* Content-Length: 1*DIGIT, or a list of identical values ("5, 5"), which
   RFC 9112 6.3 allows us to read as one. Returns 0 and the value, -1 when
   invalid. A value too large for 64 bits is returned as UINT64_MAX, which
   the caller refuses with 413 like any other oversized body. */
static int chi_parse_length(const char *v, size_t n, uint64_t *out)
{
    size_t i = 0;
    int have = 0;
    uint64_t first = 0;
    for (;;) {
        uint64_t x = 0;
        size_t start = i;
        while (i < n && v[i] >= '0' && v[i] <= '9') {
            unsigned d = (unsigned)(v[i] - '0');
            x = (x > (UINT64_MAX - d) / 10) ? UINT64_MAX : x * 10 + d;
            i++;
        }
        if (i == start) return -1;
        if (have && x != first) return -1;
        first = x;
        have = 1;
        while (i < n && (v[i] == ' ' || v[i] == '\t')) i++;
        if (i == n) break;
        if (v[i] != ',') return -1;
        i++;
        while (i < n && (v[i] == ' ' || v[i] == '\t')) i++;
    }
    *out = first;
    return 0;
}

/* Calls fn for every element of a comma-separated list (RFC 9110 5.6.1),
   with the surrounding whitespace removed. Empty elements are skipped. */
static void chi_each_token(const char *v, size_t n, void (*fn)(const char *, size_t, void *), void *ctx)
{
    size_t i = 0;
    while (i < n) {
        size_t s, e;
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        s = i;
        while (i < n && v[i] != ',') i++;
        e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
        if (e > s) fn(v + s, e - s, ctx);
    }
}

typedef struct chi_conn_tokens {
    int close, keep_alive;
} chi_conn_tokens;

static void chi_conn_token(const char *t, size_t n, void *ctx)
{
    chi_conn_tokens *ct = (chi_conn_tokens *)ctx;
    if (n == 5 && chi_ieq(t, "close", 5)) ct->close = 1;
    if (n == 10 && chi_ieq(t, "keep-alive", 10)) ct->keep_alive = 1;
}

typedef struct chi_te_tokens {
    int count, chunked;
} chi_te_tokens;

static void chi_te_token(const char *t, size_t n, void *ctx)
{
    chi_te_tokens *te = (chi_te_tokens *)ctx;
    te->count++;
    if (n == 7 && chi_ieq(t, "chunked", 7)) te->chunked++;
}

/* Splits the request-target into path and query (q: the first '?', or
   NULL). Origin-form ("/a?b") is the usual case; absolute-form
   ("http://host/a") must be accepted by a server (RFC 9112 3.2.2); "*" only
   goes with OPTIONS. Returns 0 or -400. */
static int chi_split_target(ch_req *req, const char *q)
{
    const char *t = req->target.ptr, *end = t + req->target.len, *auth;
    if (t[0] == '*') {
        if (req->target.len != 1 || req->method != CH_OPTIONS) return -400;
        q = NULL;
    } else if (t[0] != '/') {
        /* absolute-form: skip "http://authority"; the path starts after it */
        if (req->target.len >= 7 && chi_ieq(t, "http://", 7))
            t += 7;
        else if (req->target.len >= 8 && chi_ieq(t, "https://", 8))
            t += 8;
        else
            return -400;
        auth = t;
        while (t < end && *t != '/' && *t != '?') {
            if (!chi_is((unsigned char)*t, CHI_HOST)) return -400;
            t++;
        }
        if (t == auth) return -400;
        if (t == end || *t == '?') { /* "http://h" and "http://h?x" mean the path "/" */
            req->path = chi_str("/", 1);
            req->query = q ? chi_str(q + 1, (size_t)(end - q - 1)) : chi_str(end, 0);
            return 0;
        }
    }
    req->path = chi_str(t, (size_t)((q ? q : end) - t));
    req->query = q ? chi_str(q + 1, (size_t)(end - q - 1)) : chi_str(end, 0);
    return 0;
}

/* Used when the bytes (or the max_header window) ran out: a head that does
   not fit in the window is 431. */
static long chi_need_more(size_t len, const chi_limits *lim)
{
    return len > lim->max_header ? -431 : 0;
}

/* The version is exactly "HTTP/" DIGIT "." DIGIT. Checks the bytes present
   so far: 1 complete and valid, 0 valid prefix, -400 malformed, -505 a
   version we do not speak. */
static int chi_parse_version(const char *p, const char *end, int *minor)
{
    static const char shape[] = "HTTP/#.#\r\n";
    size_t i, have = (size_t)(end - p);
    for (i = 0; i < 10 && i < have; i++) {
        if (shape[i] == '#') {
            if (p[i] < '0' || p[i] > '9') return -400;
        } else if (p[i] != shape[i]) {
            return -400;
        }
    }
    if (have < 10) return 0;
    if (p[5] != '1') return -505;
    /* 1.x with x > 1 is answered as 1.1 (RFC 9110 2.5) */
    *minor = p[7] == '0' ? 0 : 1;
    return 1;
}

static long chi_parse_head(const char *buf, size_t len, const chi_limits *lim, ch_req *req, chi_head *h)
{
    /* Only the first max_header bytes are looked at: a head must fit in
       them, final CRLF included. So the answer never depends on how the
       bytes were split: a prefix gives "need more", or the same answer. */
    const char *p = buf, *end = buf + (len > lim->max_header ? lim->max_header : len), *s, *q = NULL;
    int host_count = 0, cl_seen = 0, te_seen = 0, r, id;
    uint64_t cl = 0;
    chi_conn_tokens conn = {0, 0};
    chi_te_tokens te = {0, 0};

    req->header_count = 0;
    memset(req->common, 0, sizeof req->common);
    h->expect_continue = 0;

    /* RFC 9112 2.2: empty lines before the request-line are ignored */
    while (end - p >= 2 && p[0] == '\r' && p[1] == '\n') p += 2;
    if (p == end || (end - p == 1 && *p == '\r')) return chi_need_more(len, lim);

    /* method SP ("GET " is common enough for a fast path) */
    s = p;
    if (end - p >= 4 && memcmp(p, "GET ", 4) == 0) {
        p += 3;
        req->method = CH_GET;
    } else {
        const char *stop = end - p > CHI_MAX_METHOD_LEN ? p + CHI_MAX_METHOD_LEN + 1 : end;
        while (p < stop && chi_is((unsigned char)*p, CHI_TOKEN)) p++;
        if (p - s > CHI_MAX_METHOD_LEN) return -501;
        if (p == end) return chi_need_more(len, lim);
        if (*p != ' ' || p == s) return -400;
        req->method = chi_method_of(s, (size_t)(p - s));
    }
    req->method_name = chi_str(s, (size_t)(p - s));
    p++;

    /* request-target SP, in one pass: '%' must start a %XX escape, and the
       first '?' starts the query */
    s = p;
    for (;;) {
        p = chi_skip_class(p, end, CHI_PATH);
        if (p == end || (size_t)(p - s) > lim->max_target) break;
        if (*p == '?') {
            if (!q) q = p;
            p++;
        } else if (*p == '%') {
            if (end - p < 3) { /* an escape cut by the end of the bytes so far */
                if (end - p == 2 && !chi_is((unsigned char)p[1], CHI_HEX)) return -400;
                return chi_need_more(len, lim);
            }
            if (!chi_is((unsigned char)p[1], CHI_HEX) || !chi_is((unsigned char)p[2], CHI_HEX)) return -400;
            p += 3;
        } else {
            break;
        }
    }
    if ((size_t)(p - s) > lim->max_target) return -414;
    if (p == end) return chi_need_more(len, lim);
    if (*p != ' ' || p == s) return -400;
    req->target = chi_str(s, (size_t)(p - s));
    p++;

    /* HTTP-version CRLF */
    if (end - p >= 10 && memcmp(p, "HTTP/1.1\r\n", 10) == 0) {
        req->version_minor = 1;
    } else {
        r = chi_parse_version(p, end, &req->version_minor);
        if (r < 0) return r;
        if (r == 0) return chi_need_more(len, lim);
    }
    p += 10;
    r = chi_split_target(req, q);
    if (r < 0) return r;

    /* field lines, up to the empty line */
    for (;;) {
        const char *name, *value, *vend;
        size_t nlen, vlen;
        if (p == end) return chi_need_more(len, lim);
        if (*p == '\r') {
            if (p + 1 == end) return chi_need_more(len, lim);
            if (p[1] != '\n') return -400;
            p += 2;
            break;
        }
        /* a line that starts with whitespace is obs-fold (RFC 9112 5.2) */
        if (*p == ' ' || *p == '\t') return -400;
        name = p;
        p = chi_skip_class(p, end, CHI_TOKEN);
        if (p == end) return chi_need_more(len, lim);
        if (*p != ':' || p == name) return -400; /* includes space before ':' */
        nlen = (size_t)(p - name);
        id = chi_header_id(name, nlen);
        p++;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        value = p;
        /* a Host value is checked as it is scanned: only host bytes, then
           optional whitespace, may come before the CR */
        if (id == CH_H_HOST) {
            p = chi_skip_class(p, end, CHI_HOST);
            while (p < end && (*p == ' ' || *p == '\t')) p++;
        } else {
            p = chi_skip_value(p, end);
        }
        if (p == end) return chi_need_more(len, lim);
        /* CR must end the line: a bare CR, a lone LF, NUL or any other
           control byte in a value is refused */
        if (*p != '\r') return -400;
        if (p + 1 == end) return chi_need_more(len, lim);
        if (p[1] != '\n') return -400;
        vend = p;
        while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t')) vend--;
        vlen = (size_t)(vend - value);
        p += 2;

        if (req->header_count == CHOPIN_MAX_HEADERS) return -431;
        req->headers[req->header_count].name = chi_str(name, nlen);
        req->headers[req->header_count].value = chi_str(value, vlen);
        req->header_count++;
        if (id < 0) continue;
        if (!req->common[id]) req->common[id] = (unsigned char)req->header_count;

        /* the few fields that decide framing and the connection's fate */
        switch (id) {
        case CH_H_HOST:
            host_count++; /* its bytes were checked above */
            break;
        case CH_H_EXPECT:
            if (vlen == 12 && chi_ieq(value, "100-continue", 12))
                h->expect_continue = 1;
            else
                return -417;
            break;
        case CH_H_CONNECTION:
            chi_each_token(value, vlen, chi_conn_token, &conn);
            break;
        case CH_H_CONTENT_LENGTH: {
            uint64_t v;
            if (chi_parse_length(value, vlen, &v) < 0) return -400;
            if (cl_seen && v != cl) return -400;
            cl = v;
            cl_seen = 1;
            break;
        }
        case CH_H_TRANSFER_ENCODING:
            te_seen = 1;
            chi_each_token(value, vlen, chi_te_token, &te);
            break;
        default:
            break;
        }
    }

    /* RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one in 1.0 */
    if (host_count > 1 || (host_count == 0 && req->version_minor == 1)) return -400;
    h->body_kind = CHI_BODY_NONE;
    h->content_length = 0;
    if (te_seen) {
        /* chunked must be the only coding; TE with CL, or in HTTP/1.0,
           is a framing error (RFC 9112 6.1, 6.3) */
        if (te.count != 1 || te.chunked != 1 || cl_seen || req->version_minor == 0) return -400;
        h->body_kind = CHI_BODY_CHUNKED;
    } else if (cl_seen) {
        if (cl > lim->max_body) return -413;
        h->content_length = cl;
        if (cl > 0) h->body_kind = CHI_BODY_LENGTH;
    }
    h->keep_alive = req->version_minor == 1 ? !conn.close : (conn.keep_alive && !conn.close);
    return (long)(p - buf);
}

/* >>chunked -----------------------------------------------------------------
   The chunked decoder is a resumable state machine over the buffer. It
   decodes in place: chunk data is moved down over the chunk-size lines, so
   the body ends up contiguous right after the head (the handler sees one
   slice) and no second buffer is needed. `src` is how far the input has been
   read, `dst` how far decoded data has been written; dst <= src always. Both
   are offsets from the start of the request, so the state survives the
   partial request being moved to another buffer. */

enum {
    CHI_CK_SIZE_FIRST, CHI_CK_SIZE, CHI_CK_EXT_WS, CHI_CK_EXT, CHI_CK_SIZE_LF,
    CHI_CK_DATA, CHI_CK_DATA_CR, CHI_CK_DATA_LF,
    CHI_CK_TRAILER_START, CHI_CK_TRAILER_NAME, CHI_CK_TRAILER_VALUE,
    CHI_CK_TRAILER_LF, CHI_CK_END_LF, CHI_CK_DONE
};

#define CHI_CK_MAX_LINE 4096 /* longest chunk-size line, extensions included */

typedef struct chi_chunked {
    int state;
    size_t src, dst;
    uint64_t size;       /* size of the current chunk, then bytes left in it */
    uint64_t total;      /* decoded bytes so far */
    size_t line;         /* length of the current size/extension line */
    size_t trailer;      /* bytes of trailer section so far */
} chi_chunked;

static void chi_chunked_init(chi_chunked *ck, size_t body_start)
{
    memset(ck, 0, sizeof *ck);
    ck->src = ck->dst = body_start;
}

/* Returns 1 when the last chunk and trailers are in, 0 when more bytes are
   needed, or -400 / -413 / -431. */
static int chi_chunked_decode(chi_chunked *ck, char *buf, size_t len, uint64_t max_body, size_t max_trailer)
{
    CHOPIN_ASSERT(ck->dst <= ck->src); /* decoding only ever moves data down */
    while (ck->src < len) {
        unsigned char c = (unsigned char)buf[ck->src];
        switch (ck->state) {
        case CHI_CK_SIZE_FIRST:
        case CHI_CK_SIZE: {
            int d = chi_hexval(c);
            if (d >= 0) {
                if (ck->size > (UINT64_MAX >> 4)) return -400; /* overflow */
                ck->size = ck->size * 16 + (unsigned)d;
                ck->state = CHI_CK_SIZE;
            } else if (ck->state == CHI_CK_SIZE_FIRST) {
                return -400;
            } else if (c == '\r') {
                ck->state = CHI_CK_SIZE_LF;
            } else if (c == ';' || c == ' ' || c == '\t') {
                ck->state = c == ';' ? CHI_CK_EXT : CHI_CK_EXT_WS;
            } else {
                return -400;
            }
            break;
        }
        case CHI_CK_EXT_WS: /* BWS before ';' */
            if (c == ';')
                ck->state = CHI_CK_EXT;
            else if (c != ' ' && c != '\t')
                return -400;
            break;
        case CHI_CK_EXT: /* chunk-ext: no control bytes but HTAB */
            if (c == '\r')
                ck->state = CHI_CK_SIZE_LF;
            else if (!chi_is(c, CHI_VALUE))
                return -400;
            break;
        case CHI_CK_SIZE_LF:
            if (c != '\n') return -400;
            if (ck->size > max_body - ck->total) return -413;
            ck->line = 0;
            ck->state = ck->size ? CHI_CK_DATA : CHI_CK_TRAILER_START;
            break;
        case CHI_CK_DATA: {
            size_t n = len - ck->src;
            if ((uint64_t)n > ck->size) n = (size_t)ck->size;
            if (ck->dst != ck->src) memmove(buf + ck->dst, buf + ck->src, n);
            ck->dst += n;
            ck->src += n;
            ck->size -= n;
            ck->total += n;
            if (ck->size == 0) ck->state = CHI_CK_DATA_CR;
            continue; /* src already advanced */
        }
        case CHI_CK_DATA_CR:
            if (c != '\r') return -400;
            ck->state = CHI_CK_DATA_LF;
            break;
        case CHI_CK_DATA_LF:
            if (c != '\n') return -400;
            ck->state = CHI_CK_SIZE_FIRST;
            break;
        case CHI_CK_TRAILER_START:
            if (c == '\r') {
                ck->state = CHI_CK_END_LF;
            } else if (chi_is(c, CHI_TOKEN)) {
                ck->state = CHI_CK_TRAILER_NAME;
            } else {
                return -400;
            }
            break;
        case CHI_CK_TRAILER_NAME:
            if (c == ':')
                ck->state = CHI_CK_TRAILER_VALUE;
            else if (!chi_is(c, CHI_TOKEN))
                return -400;
            break;
        case CHI_CK_TRAILER_VALUE:
            if (c == '\r')
                ck->state = CHI_CK_TRAILER_LF;
            else if (!chi_is(c, CHI_VALUE))
                return -400;
            break;
        case CHI_CK_TRAILER_LF:
            if (c != '\n') return -400;
            ck->state = CHI_CK_TRAILER_START;
            break;
        case CHI_CK_END_LF:
            if (c != '\n') return -400;
            ck->src++;
            ck->state = CHI_CK_DONE;
            return 1;
        default:
            return 1;
        }
        ck->src++;
        if (ck->state <= CHI_CK_SIZE_LF && ++ck->line > CHI_CK_MAX_LINE) return -400;
        if (ck->state >= CHI_CK_TRAILER_START && ++ck->trailer > max_trailer) return -431;
    }
    return ck->state == CHI_CK_DONE;
}

/* >>responses ---------------------------------------------------------------
   A response is laid out as
       status line | Server | Date | Content-Type | Content-Length |
       the handler's headers | Connection (when needed) | CRLF | body
   and written straight into the worker's output buffer. The common errors are
   pre-built byte arrays: status line, Content-Type and Content-Length in one
   literal, and a small JSON body (tests/unit.c checks each length). */

static const char *chi_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

typedef struct chi_prebuilt {
    int status;
    const char *head; /* status line, Content-Type, Content-Length */
    const char *body;
} chi_prebuilt;

#define CHI_JSON_CT "Content-Type: application/json\r\n"
static const chi_prebuilt chi_errors[] = {
    {400, "HTTP/1.1 400 Bad Request\r\n" CHI_JSON_CT "Content-Length: 24\r\n", "{\"detail\":\"Bad Request\"}"},
    {401, "HTTP/1.1 401 Unauthorized\r\n" CHI_JSON_CT "Content-Length: 36\r\n", "{\"detail\":\"Authentication required\"}"},
    {403, "HTTP/1.1 403 Forbidden\r\n" CHI_JSON_CT "Content-Length: 30\r\n", "{\"detail\":\"Permission denied\"}"},
    {404, "HTTP/1.1 404 Not Found\r\n" CHI_JSON_CT "Content-Length: 22\r\n", "{\"detail\":\"Not Found\"}"},
    {405, "HTTP/1.1 405 Method Not Allowed\r\n" CHI_JSON_CT "Content-Length: 31\r\n", "{\"detail\":\"Method Not Allowed\"}"},
    {408, "HTTP/1.1 408 Request Timeout\r\n" CHI_JSON_CT "Content-Length: 28\r\n", "{\"detail\":\"Request Timeout\"}"},
    {413, "HTTP/1.1 413 Content Too Large\r\n" CHI_JSON_CT "Content-Length: 30\r\n", "{\"detail\":\"Content Too Large\"}"},
    {414, "HTTP/1.1 414 URI Too Long\r\n" CHI_JSON_CT "Content-Length: 25\r\n", "{\"detail\":\"URI Too Long\"}"},
    {417, "HTTP/1.1 417 Expectation Failed\r\n" CHI_JSON_CT "Content-Length: 31\r\n", "{\"detail\":\"Expectation Failed\"}"},
    {429, "HTTP/1.1 429 Too Many Requests\r\n" CHI_JSON_CT "Content-Length: 30\r\n", "{\"detail\":\"Too Many Requests\"}"},
    {431, "HTTP/1.1 431 Request Header Fields Too Large\r\n" CHI_JSON_CT "Content-Length: 44\r\n", "{\"detail\":\"Request Header Fields Too Large\"}"},
    {500, "HTTP/1.1 500 Internal Server Error\r\n" CHI_JSON_CT "Content-Length: 34\r\n", "{\"detail\":\"Internal Server Error\"}"},
    {501, "HTTP/1.1 501 Not Implemented\r\n" CHI_JSON_CT "Content-Length: 28\r\n", "{\"detail\":\"Not Implemented\"}"},
    {503, "HTTP/1.1 503 Service Unavailable\r\n" CHI_JSON_CT "Content-Length: 32\r\n", "{\"detail\":\"Service Unavailable\"}"},
    {505, "HTTP/1.1 505 HTTP Version Not Supported\r\n" CHI_JSON_CT "Content-Length: 39\r\n", "{\"detail\":\"HTTP Version Not Supported\"}"},
};

static const chi_prebuilt *chi_prebuilt_for(int status)
{
    size_t i;
    for (i = 0; i < sizeof chi_errors / sizeof chi_errors[0]; i++)
        if (chi_errors[i].status == status) return &chi_errors[i];
    return NULL;
}

/* The part every response shares, kept per worker so the Date can be
   patched in place once a second: "Server: chopin\r\nDate: ...\r\n". */
#define CHI_SERVER_LINE "Server: " CHOPIN_SERVER_NAME "\r\n"
#define CHI_COMMON_LEN (sizeof(CHI_SERVER_LINE) - 1 + 6 + CHI_DATE_LEN + 2)

/* Writes "HTTP/1.1 NNN Reason\r\n"; `out` needs 64 bytes. */
static size_t chi_status_line(int status, char *out)
{
    const char *reason = chi_reason(status);
    size_t rl = strlen(reason);
    memcpy(out, "HTTP/1.1 ", 9);
    out[9] = (char)('0' + status / 100);
    out[10] = (char)('0' + status / 10 % 10);
    out[11] = (char)('0' + status % 10);
    out[12] = ' ';
    memcpy(out + 13, reason, rl);
    memcpy(out + 13 + rl, "\r\n", 2);
    return 15 + rl;
}

/* >>routes ------------------------------------------------------------------
   FastRoutes are a flat array of exact paths checked before anything else.
   A static one keeps its whole response as bytes, built at start-up; each
   worker keeps its own copy and patches the Date into it once a second, so
   answering is one memcpy. A dynamic one calls the user's function to write
   the JSON body for every request.

   Router routes live in a segment tree: one node per path segment, with
   static children, one ":param" child and one "*wildcard" child. Matching
   tries static, then parameter, then wildcard, backing up on a dead end, so
   "/users/me" beats "/users/:id" beats "/users/ *rest". A node keeps a
   handler per method; a node without one for the method asked gives 405. */

typedef struct chi_fast {
    const char *path;
    size_t path_len;
    const char *ctype;    /* Content-Type value */
    const char *body;     /* static body, or NULL for a JSON callback */
    size_t body_len;
    ch_json_fn fn;
    void *user;
} chi_fast;

typedef struct chi_route {
    ch_handler handler;
    void *user;
    ch_group *group;                /* its middleware, or NULL */
} chi_route;

typedef struct chi_mw {
    ch_middleware fn;
    void *user;
} chi_mw;

typedef struct chi_after {
    ch_after_fn fn;
    void *user;
} chi_after;

struct ch_group {
    ch_app *app;
    ch_group *parent;
    char prefix[256];               /* the whole prefix, parents' included */
    chi_mw *mw;
    int nmw;
    ch_group *next;                 /* every group of the app, for freeing */
};

typedef struct chi_node {
    char *seg;                      /* static segment text (children only) */
    size_t seg_len;
    struct chi_node **kids;         /* static children */
    int nkids;
    struct chi_node *param;         /* ":name" child */
    char *param_name;
    struct chi_node *wild;          /* "*name" child: matches the rest */
    char *wild_name;
    chi_route routes[CH_METHOD_COUNT];
    unsigned methods;               /* bit per method that has a handler */
    unsigned fast_methods;          /* GET|HEAD when a FastRoute owns it */
} chi_node;

static chi_node *chi_node_new(void)
{
    chi_node *n = (chi_node *)CHOPIN_MALLOC(sizeof *n);
    if (n) memset(n, 0, sizeof *n);
    return n;
}

static void chi_node_free(chi_node *n)
{
    int i;
    if (!n) return;
    for (i = 0; i < n->nkids; i++) chi_node_free(n->kids[i]);
    CHOPIN_FREE(n->kids);
    chi_node_free(n->param);
    chi_node_free(n->wild);
    CHOPIN_FREE(n->seg);
    CHOPIN_FREE(n->param_name);
    CHOPIN_FREE(n->wild_name);
    CHOPIN_FREE(n);
}

static char *chi_strndup(const char *s, size_t n)
{
    char *d = (char *)CHOPIN_MALLOC(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* Finds or makes the node for a pattern. Returns NULL and sets *err. */
static chi_node *chi_node_insert(chi_node *root, const char *pattern, const char **err)
{
    const char *p = pattern;
    chi_node *n = root;
    if (*p != '/') {
        *err = "a route pattern must start with '/'";
        return NULL;
    }
    p++;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len && (p[0] == ':' || p[0] == '*')) {
            char **name = p[0] == ':' ? &n->param_name : &n->wild_name;
            chi_node **kid = p[0] == ':' ? &n->param : &n->wild;
            if (len == 1) {
                *err = "a route parameter needs a name";
                return NULL;
            }
            if (p[0] == '*' && e) {
                *err = "a wildcard must be the last segment";
                return NULL;
            }
            if (*name && (strlen(*name) != len - 1 || memcmp(*name, p + 1, len - 1) != 0)) {
                *err = "two routes name the same parameter differently";
                return NULL;
            }
            if (!*kid) {
                *kid = chi_node_new();
                *name = chi_strndup(p + 1, len - 1);
                if (!*kid || !*name) {
                    *err = "out of memory";
                    return NULL;
                }
            }
            n = *kid;
        } else {
            int i;
            chi_node *next = NULL, **kids;
            for (i = 0; i < n->nkids; i++)
                if (n->kids[i]->seg_len == len && memcmp(n->kids[i]->seg, p, len) == 0) next = n->kids[i];
            if (!next) {
                kids = (chi_node **)CHOPIN_REALLOC(n->kids, sizeof *kids * (size_t)(n->nkids + 1));
                if (!kids) {
                    *err = "out of memory";
                    return NULL;
                }
                n->kids = kids;
                next = chi_node_new();
                if (!next || !(next->seg = chi_strndup(p, len))) {
                    CHOPIN_FREE(next);
                    *err = "out of memory";
                    return NULL;
                }
                next->seg_len = len;
                n->kids[n->nkids++] = next;
            }
            n = next;
        }
        if (!e) return n;
        p = e + 1;
    }
}

/* Matches path (without the leading '/') below n. Parameters found on the
   way are pushed on req->params and popped again on a dead end. */
static chi_node *chi_node_match(chi_node *n, const char *p, const char *end, ch_req *req)
{
    const char *e = (const char *)memchr(p, '/', (size_t)(end - p));
    size_t len = e ? (size_t)(e - p) : (size_t)(end - p);
    chi_node *found;
    int i;
    for (i = 0; i < n->nkids; i++) {
        chi_node *k = n->kids[i];
        if (k->seg_len == len && memcmp(k->seg, p, len) == 0) {
            found = e ? chi_node_match(k, e + 1, end, req) : k;
            if (found && (found->methods | found->fast_methods)) return found;
        }
    }
    if (n->param && len > 0 && req->param_count < CHOPIN_MAX_PARAMS) {
        ch_param *pa = &req->params[req->param_count++];
        pa->name = chi_str(n->param_name, strlen(n->param_name));
        pa->value = chi_str(p, len);
        found = e ? chi_node_match(n->param, e + 1, end, req) : n->param;
        if (found && (found->methods | found->fast_methods)) return found;
        req->param_count--;
    }
    if (n->wild && req->param_count < CHOPIN_MAX_PARAMS) {
        ch_param *pa = &req->params[req->param_count++];
        pa->name = chi_str(n->wild_name, strlen(n->wild_name));
        pa->value = chi_str(p, (size_t)(end - p));
        if (n->wild->methods) return n->wild;
        req->param_count--;
    }
    return NULL;
}

/* "GET, HEAD, POST": the Allow header value for a node. */
static size_t chi_allow_list(unsigned methods, char *out)
{
    static const char *names[CH_METHOD_COUNT] = {"GET", "HEAD", "POST", "PUT", "DELETE",
                                                 "PATCH", "OPTIONS", "CONNECT", "TRACE"};
    size_t n = 0;
    int m;
    if (methods & (1u << CH_GET)) methods |= 1u << CH_HEAD;
    methods |= 1u << CH_OPTIONS;
    for (m = 0; m < CH_METHOD_COUNT; m++) {
        if (!(methods & (1u << m))) continue;
        if (n) n = (size_t)(chi_put(out + n, ", ", 2) - out);
        n = (size_t)(chi_put(out + n, names[m], strlen(names[m])) - out);
    }
    return n;
}

/* >>app ---------------------------------------------------------------------
   The application holds what is shared read-only by every worker once the
   server runs: the routes, the limits, the resolved configuration. */

typedef struct chi_worker chi_worker;

struct ch_app {
    chi_fast *fast;
    int nfast;
    chi_node *root;
    chi_mw *mw;              /* global middleware */
    int nmw;
    chi_after *after;        /* after-hooks */
    int nafter;
    ch_group *groups;
    int reg_failed;          /* a route could not be added: ch_listen fails */
    char err[256];
    ch_config cfg;           /* resolved by ch_listen */
    char host[256];
    chi_limits lim;
    int listen_fds[1024];
    int nlisten;
    int listening;
    int stop_fd;             /* eventfd written by ch_stop */
    chi_worker *workers;
};

static void chi_set_error(ch_app *app, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(app->err, sizeof app->err, fmt, ap);
    va_end(ap);
}

static int chi_reg_error(ch_app *app, const char *what, const char *pattern)
{
    if (!app->reg_failed) chi_set_error(app, "route %s: %s", pattern, what);
    app->reg_failed = 1;
    return -1;
}

CHOPIN_API ch_app *ch_app_new(void)
{
    ch_app *app = (ch_app *)CHOPIN_MALLOC(sizeof *app);
    if (!app) return NULL;
    memset(app, 0, sizeof *app);
    app->root = chi_node_new();
    app->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!app->root || app->stop_fd < 0) {
        ch_app_free(app);
        return NULL;
    }
    return app;
}

CHOPIN_API void ch_app_free(ch_app *app)
{
    int i;
    if (!app) return;
    for (i = 0; i < app->nlisten; i++) close(app->listen_fds[i]);
    if (app->stop_fd > 0) close(app->stop_fd);
    chi_node_free(app->root);
    CHOPIN_FREE(app->fast);
    CHOPIN_FREE(app->mw);
    CHOPIN_FREE(app->after);
    while (app->groups) {
        ch_group *g = app->groups;
        app->groups = g->next;
        CHOPIN_FREE(g->mw);
        CHOPIN_FREE(g);
    }
    CHOPIN_FREE(app);
}

CHOPIN_API const char *ch_error(const ch_app *app) { return app ? app->err : "out of memory"; }

static int chi_add_fast(ch_app *app, const char *path, const char *ctype, const char *body, ch_json_fn fn,
                        void *user)
{
    chi_fast *f;
    chi_node *n;
    const char *err = NULL;
    int i;
    if (!path || path[0] != '/') return chi_reg_error(app, "a FastRoute path must start with '/'", path ? path : "(null)");
    if (strchr(path, '?') || strchr(path, ':') || strchr(path, '*'))
        return chi_reg_error(app, "a FastRoute path is exact: no query, parameter or wildcard", path);
    for (i = 0; i < app->nfast; i++)
        if (strcmp(app->fast[i].path, path) == 0) return chi_reg_error(app, "FastRoute added twice", path);
    n = chi_node_insert(app->root, path, &err);
    if (!n) return chi_reg_error(app, err, path);
    if (n->methods & ((1u << CH_GET) | (1u << CH_HEAD)))
        return chi_reg_error(app, "a router GET route already has this path", path);
    f = (chi_fast *)CHOPIN_REALLOC(app->fast, sizeof *f * (size_t)(app->nfast + 1));
    if (!f) return chi_reg_error(app, "out of memory", path);
    app->fast = f;
    f = &app->fast[app->nfast++];
    f->path = path;
    f->path_len = strlen(path);
    f->ctype = ctype;
    f->body = body;
    f->body_len = body ? strlen(body) : 0;
    f->fn = fn;
    f->user = user;
    n->fast_methods = (1u << CH_GET) | (1u << CH_HEAD);
    return 0;
}

CHOPIN_API int ch_fast_text(ch_app *app, const char *path, const char *body)
{
    return body ? chi_add_fast(app, path, "text/plain", body, NULL, NULL)
                : chi_reg_error(app, "no body", path ? path : "(null)");
}

CHOPIN_API int ch_fast_json(ch_app *app, const char *path, const char *json)
{
    return json ? chi_add_fast(app, path, "application/json", json, NULL, NULL)
                : chi_reg_error(app, "no body", path ? path : "(null)");
}

CHOPIN_API int ch_fast_json_fn(ch_app *app, const char *path, ch_json_fn fn, void *user)
{
    return fn ? chi_add_fast(app, path, "application/json", NULL, fn, user)
              : chi_reg_error(app, "no function", path ? path : "(null)");
}

static int chi_add_route(ch_app *app, ch_group *g, ch_method method, const char *pattern, ch_handler h, void *user)
{
    chi_node *n;
    const char *err = NULL;
    if (!pattern) return chi_reg_error(app, "no pattern", "(null)");
    if ((int)method < 0 || method >= CH_METHOD_COUNT) return chi_reg_error(app, "unknown method", pattern);
    if (!h) return chi_reg_error(app, "no handler", pattern);
    n = chi_node_insert(app->root, pattern, &err);
    if (!n) return chi_reg_error(app, err, pattern);
    if (n->routes[method].handler) return chi_reg_error(app, "added twice for the same method", pattern);
    if ((method == CH_GET || method == CH_HEAD) && n->fast_methods)
        return chi_reg_error(app, "a FastRoute already has this path", pattern);
    n->routes[method].handler = h;
    n->routes[method].user = user;
    n->routes[method].group = g;
    n->methods |= 1u << method;
    return 0;
}

CHOPIN_API int ch_route(ch_app *app, ch_method method, const char *pattern, ch_handler h, void *user)
{
    return chi_add_route(app, NULL, method, pattern, h, user);
}

CHOPIN_API int ch_any(ch_app *app, const char *pattern, ch_handler h, void *user)
{
    int m;
    for (m = 0; m < CH_METHOD_COUNT; m++)
        if (ch_route(app, (ch_method)m, pattern, h, user) < 0) return -1;
    return 0;
}

/* Grows an array of n items of `size` bytes by one; NULL when out of memory. */
static void *chi_grow(void *arr, int n, size_t size)
{
    return CHOPIN_REALLOC(arr, size * (size_t)(n + 1));
}

CHOPIN_API int ch_use(ch_app *app, ch_middleware mw, void *user)
{
    chi_mw *a = (chi_mw *)chi_grow(app->mw, app->nmw, sizeof *a);
    if (!mw || !a) return chi_reg_error(app, mw ? "out of memory" : "no function", "(middleware)");
    app->mw = a;
    a[app->nmw].fn = mw;
    a[app->nmw++].user = user;
    return 0;
}

CHOPIN_API int ch_after(ch_app *app, ch_after_fn fn, void *user)
{
    chi_after *a = (chi_after *)chi_grow(app->after, app->nafter, sizeof *a);
    if (!fn || !a) return chi_reg_error(app, fn ? "out of memory" : "no function", "(after-hook)");
    app->after = a;
    a[app->nafter].fn = fn;
    a[app->nafter++].user = user;
    return 0;
}

static ch_group *chi_group_make(ch_app *app, ch_group *parent, const char *prefix)
{
    ch_group *g;
    size_t have = parent ? strlen(parent->prefix) : 0, add;
    if (!prefix || (prefix[0] && prefix[0] != '/')) {
        chi_reg_error(app, "a group prefix must be empty or start with '/'", prefix ? prefix : "(null)");
        return NULL;
    }
    add = strlen(prefix);
    while (add && prefix[add - 1] == '/') add--; /* "/api/" + "/x" must not give "//x" */
    if (have + add >= sizeof g->prefix) {
        chi_reg_error(app, "group prefix too long", prefix);
        return NULL;
    }
    g = (ch_group *)CHOPIN_MALLOC(sizeof *g);
    if (!g) {
        chi_reg_error(app, "out of memory", prefix);
        return NULL;
    }
    memset(g, 0, sizeof *g);
    g->app = app;
    g->parent = parent;
    if (parent) memcpy(g->prefix, parent->prefix, have);
    memcpy(g->prefix + have, prefix, add);
    g->next = app->groups;
    app->groups = g;
    return g;
}

CHOPIN_API ch_group *ch_group_new(ch_app *app, const char *prefix) { return chi_group_make(app, NULL, prefix); }

CHOPIN_API ch_group *ch_group_sub(ch_group *parent, const char *prefix)
{
    return parent ? chi_group_make(parent->app, parent, prefix) : NULL;
}

CHOPIN_API int ch_group_use(ch_group *g, ch_middleware mw, void *user)
{
    chi_mw *a;
    if (!g) return -1;
    a = (chi_mw *)chi_grow(g->mw, g->nmw, sizeof *a);
    if (!mw || !a) return chi_reg_error(g->app, mw ? "out of memory" : "no function", g->prefix);
    g->mw = a;
    a[g->nmw].fn = mw;
    a[g->nmw++].user = user;
    return 0;
}

CHOPIN_API int ch_group_route(ch_group *g, ch_method method, const char *pattern, ch_handler h, void *user)
{
    char full[512];
    size_t plen, len;
    if (!g) return -1;
    if (!pattern || pattern[0] != '/') return chi_reg_error(g->app, "a route pattern must start with '/'", pattern ? pattern : "(null)");
    plen = strlen(g->prefix);
    len = (plen && pattern[1] == 0) ? 0 : strlen(pattern); /* "/api" + "/" is "/api" */
    if (plen + len >= sizeof full) return chi_reg_error(g->app, "pattern too long", pattern);
    memcpy(full, g->prefix, plen);
    memcpy(full + plen, pattern, len);
    full[plen + len] = 0;
    return chi_add_route(g->app, g, method, full, h, user);
}

CHOPIN_API int ch_get(ch_app *app, const char *p, ch_handler h, void *u) { return ch_route(app, CH_GET, p, h, u); }
CHOPIN_API int ch_post(ch_app *app, const char *p, ch_handler h, void *u) { return ch_route(app, CH_POST, p, h, u); }
CHOPIN_API int ch_put(ch_app *app, const char *p, ch_handler h, void *u) { return ch_route(app, CH_PUT, p, h, u); }
CHOPIN_API int ch_delete(ch_app *app, const char *p, ch_handler h, void *u) { return ch_route(app, CH_DELETE, p, h, u); }
CHOPIN_API int ch_patch(ch_app *app, const char *p, ch_handler h, void *u) { return ch_route(app, CH_PATCH, p, h, u); }

/* >>request -----------------------------------------------------------------
   Lookups on a parsed request. Nothing here runs unless a handler asks:
   query strings and cookies are scanned and decoded on demand. */

/* The client's address, kept per connection; req->conn points at it. */
typedef struct chi_peer {
    unsigned char addr[16];  /* 4 bytes for IPv4, 16 for IPv6 */
    unsigned char family;    /* AF_INET, AF_INET6, or 0 if unknown */
} chi_peer;

CHOPIN_API ch_str ch_req_common(const ch_req *req, ch_hdr which)
{
    if ((int)which < 0 || which >= CH_H_COUNT || !req->common[which]) return chi_str(NULL, 0);
    return req->headers[req->common[which] - 1].value;
}

CHOPIN_API ch_str ch_req_header(const ch_req *req, const char *name)
{
    size_t n = strlen(name);
    int i, id = chi_header_id(name, n);
    if (id >= 0) return ch_req_common(req, (ch_hdr)id);
    for (i = 0; i < req->header_count; i++) {
        const ch_header *h = &req->headers[i];
        size_t k;
        if (h->name.len != n) continue;
        for (k = 0; k < n && chi_lower(h->name.ptr[k]) == chi_lower(name[k]); k++) {}
        if (k == n) return h->value;
    }
    return chi_str(NULL, 0);
}

/* Percent-decoding (RFC 3986 2.1). Returns the decoded length, CH_BAD for
   a '%' not followed by two hex digits, CH_TOO_LONG when out is too small
   (out always gets a NUL terminator when cap > 0). */
CHOPIN_API long ch_url_decode(const char *in, size_t len, char *out, size_t cap, int plus_is_space)
{
    size_t i, n = 0;
    long rc = 0;
    for (i = 0; i < len; i++) {
        char c = in[i];
        if (c == '%') {
            int hi, lo;
            rc = CH_BAD;
            if (i + 2 >= len) break;
            hi = chi_hexval((unsigned char)in[i + 1]);
            lo = chi_hexval((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0) break;
            c = (char)(hi * 16 + lo);
            rc = 0;
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (n + 1 >= cap) {
            rc = CH_TOO_LONG;
            break;
        }
        out[n++] = c;
    }
    if (cap) out[n] = 0; /* terminated even when the value is refused */
    return rc ? rc : (long)n;
}

CHOPIN_API int ch_form_next(ch_str *rest, ch_str *key, ch_str *value)
{
    while (rest->len) {
        const char *p = rest->ptr, *amp = (const char *)memchr(p, '&', rest->len), *eq;
        size_t n = amp ? (size_t)(amp - p) : rest->len;
        rest->ptr += amp ? n + 1 : n;
        rest->len -= amp ? n + 1 : n;
        if (n == 0) continue; /* "a=1&&b=2" */
        eq = (const char *)memchr(p, '=', n);
        *key = chi_str(p, eq ? (size_t)(eq - p) : n);
        *value = eq ? chi_str(eq + 1, (size_t)(p + n - eq - 1)) : chi_str(p + n, 0);
        return 1;
    }
    return 0;
}

/* Does the encoded `raw` decode to exactly `name`? */
static int chi_decoded_equals(ch_str raw, const char *name, int plus_is_space)
{
    char tmp[256];
    long n = ch_url_decode(raw.ptr, raw.len, tmp, sizeof tmp, plus_is_space);
    return n >= 0 && (size_t)n == strlen(name) && memcmp(tmp, name, (size_t)n) == 0;
}

CHOPIN_API long ch_req_query(const ch_req *req, const char *name, char *out, size_t cap)
{
    ch_str rest = req->query, k, v;
    while (ch_form_next(&rest, &k, &v))
        if (chi_decoded_equals(k, name, 1)) return ch_url_decode(v.ptr, v.len, out, cap, 1);
    return CH_ABSENT;
}

/* Cookie: a=1; b="two" (RFC 6265 4.2.1); a quoted value loses its quotes. */
CHOPIN_API long ch_req_cookie(const ch_req *req, const char *name, char *out, size_t cap)
{
    ch_str all = ch_req_common(req, CH_H_COOKIE);
    const char *p = all.ptr, *end = all.ptr + all.len;
    size_t nlen = strlen(name);
    while (p && p < end) {
        const char *semi = (const char *)memchr(p, ';', (size_t)(end - p)), *stop = semi ? semi : end, *eq;
        while (p < stop && (*p == ' ' || *p == '\t')) p++;
        eq = (const char *)memchr(p, '=', (size_t)(stop - p));
        if (eq && (size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0) {
            const char *v = eq + 1, *ve = stop;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            if (ve - v >= 2 && v[0] == '"' && ve[-1] == '"') {
                v++;
                ve--;
            }
            return ch_url_decode(v, (size_t)(ve - v), out, cap, 0);
        }
        p = semi ? semi + 1 : end;
    }
    return CH_ABSENT;
}

CHOPIN_API size_t ch_req_remote_addr(const ch_req *req, char *out, size_t cap)
{
    const chi_peer *c = (const chi_peer *)req->conn;
    if (!cap) return 0;
    out[0] = 0;
    if (!c || !c->family || !inet_ntop(c->family, c->addr, out, (socklen_t)cap)) return 0;
    return strlen(out);
}

CHOPIN_API ch_str ch_req_param(const ch_req *req, const char *name)
{
    int i;
    for (i = 0; i < req->param_count; i++)
        if (ch_str_eq(req->params[i].name, name)) return req->params[i].value;
    return chi_str(NULL, 0);
}

/* >>response API ------------------------------------------------------------
   A handler fills the worker's ch_res; when it returns, chi_res_finish lays
   the response out in the output buffer. Header names and values are
   checked: a CR, LF or other control byte is refused, never written, and the
   framing headers (Content-Length, Transfer-Encoding, Connection, Date,
   Server) belong to the server. */

#define CHI_MAX_FINISHERS 4

struct ch_res {
    chi_worker *w;
    int status;
    chi_buf ctype;           /* Content-Type value; empty: none */
    chi_buf headers;         /* "Name: value\r\n" lines from the handler */
    const char *body;        /* by reference, copied at finish */
    size_t body_len;
    int body_is_json;        /* the body is the worker's JSON writer output */
    int nfinish;
    ch_finish_fn finish[CHI_MAX_FINISHERS];
    void *finish_user[CHI_MAX_FINISHERS];
    int64_t start_ns, end_ns; /* read only when after-hooks want them */
    int64_t timing_ns;        /* set by ch_mw_timing */
    size_t bytes;             /* bytes this response took in the output */
};

static int64_t chi_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static ch_json *chi_worker_json(chi_worker *w);

static void chi_res_reset(ch_res *res)
{
    res->status = 200;
    res->ctype.len = 0;
    res->headers.len = 0;
    res->body = NULL;
    res->body_len = 0;
    res->body_is_json = 0;
    res->nfinish = 0;
}

CHOPIN_API int ch_res_on_finish(ch_res *res, ch_finish_fn fn, void *user)
{
    if (!fn || res->nfinish == CHI_MAX_FINISHERS) return -1;
    res->finish[res->nfinish] = fn;
    res->finish_user[res->nfinish++] = user;
    return 0;
}

CHOPIN_API int ch_res_status_code(const ch_res *res) { return res->status; }
CHOPIN_API size_t ch_res_bytes(const ch_res *res) { return res->bytes; }
CHOPIN_API double ch_res_seconds(const ch_res *res) { return (double)(res->end_ns - res->start_ns) / 1e9; }

CHOPIN_API void ch_res_status(ch_res *res, int status) { res->status = status; }

static int chi_res_set_ctype(ch_res *res, const char *v, size_t n)
{
    res->ctype.len = 0;
    return chi_buf_append(&res->ctype, v, n);
}

/* Appends "name: value\r\n" as it is: for bytes already known to be valid. */
static int chi_res_put_header(ch_res *res, const char *name, size_t nlen, const char *value, size_t vlen)
{
    char *p;
    if (chi_buf_reserve(&res->headers, nlen + vlen + 4) < 0) return -1;
    p = res->headers.ptr + res->headers.len;
    p = chi_put(p, name, nlen);
    p = chi_put(p, ": ", 2);
    p = chi_put(p, value, vlen);
    p = chi_put(p, "\r\n", 2);
    res->headers.len = (size_t)(p - res->headers.ptr);
    return 0;
}

CHOPIN_API int ch_res_headern(ch_res *res, const char *name, size_t nlen, const char *value, size_t vlen)
{
    size_t i;
    if (nlen == 0) return -1;
    for (i = 0; i < nlen; i++)
        if (!chi_is((unsigned char)name[i], CHI_TOKEN)) return -1;
    for (i = 0; i < vlen; i++)
        if (!chi_is((unsigned char)value[i], CHI_VALUE)) return -1;
    if ((nlen == 14 && chi_ieq(name, "content-length", 14)) || (nlen == 17 && chi_ieq(name, "transfer-encoding", 17)) ||
        (nlen == 10 && chi_ieq(name, "connection", 10)) || (nlen == 4 && chi_ieq(name, "date", 4)) ||
        (nlen == 6 && chi_ieq(name, "server", 6)))
        return -1;
    if (nlen == 12 && chi_ieq(name, "content-type", 12)) return chi_res_set_ctype(res, value, vlen);
    return chi_res_put_header(res, name, nlen, value, vlen);
}

CHOPIN_API int ch_res_header(ch_res *res, const char *name, const char *value)
{
    return ch_res_headern(res, name, strlen(name), value, strlen(value));
}

CHOPIN_API void ch_res_send(ch_res *res, int status, const char *content_type, const void *body, size_t len)
{
    res->status = status;
    if (content_type) chi_res_set_ctype(res, content_type, strlen(content_type));
    res->body = (const char *)body;
    res->body_len = len;
    res->body_is_json = 0;
}

CHOPIN_API void ch_res_text(ch_res *res, int status, const char *text)
{
    ch_res_send(res, status, "text/plain; charset=utf-8", text, strlen(text));
}

CHOPIN_API int ch_res_body(ch_res *res, const char *content_type, const void *body, size_t len)
{
    ch_json *j = chi_worker_json(res->w);
    ch_json_reset(j);
    chi_json_raw(j, (const char *)body, len);
    if (content_type) chi_res_set_ctype(res, content_type, strlen(content_type));
    res->body_is_json = 1; /* the writer's buffer holds the copy */
    return j->failed ? -1 : 0;
}

CHOPIN_API ch_json *ch_res_json(ch_res *res, int status)
{
    ch_json *j = chi_worker_json(res->w);
    ch_json_reset(j);
    res->status = status;
    chi_res_set_ctype(res, "application/json", 16);
    res->body_is_json = 1;
    return j;
}

CHOPIN_API int ch_res_printf(ch_res *res, int status, const char *content_type, const char *fmt, ...)
{
    ch_json *j = chi_worker_json(res->w);
    va_list ap;
    int n;
    ch_json_reset(j);
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || chi_json_reserve(j, (size_t)n + 1) < 0) return -1;
    va_start(ap, fmt);
    vsnprintf(j->buf, (size_t)n + 1, fmt, ap);
    va_end(ap);
    j->len = (size_t)n;
    res->status = status;
    if (content_type) chi_res_set_ctype(res, content_type, strlen(content_type));
    res->body_is_json = 1;
    return 0;
}

CHOPIN_API int ch_res_redirect(ch_res *res, int status, const char *location)
{
    if (ch_res_header(res, "Location", location) < 0) {
        ch_res_error(res, 500); /* a Location with CR or LF is never sent */
        return -1;
    }
    res->status = status;
    res->body = NULL;
    res->body_len = 0;
    res->body_is_json = 0;
    return 0;
}

CHOPIN_API void ch_res_error(ch_res *res, int status)
{
    const chi_prebuilt *pb = chi_prebuilt_for(status);
    res->status = status;
    chi_res_set_ctype(res, "application/json", 16);
    res->body_is_json = 0;
    if (pb) {
        res->body = pb->body;
        res->body_len = strlen(pb->body);
    } else {
        ch_json *j = ch_res_json(res, status);
        ch_json_object_begin(j);
        ch_json_key(j, "detail");
        ch_json_str(j, chi_reason(status));
        ch_json_object_end(j);
    }
}

/* >>poller ------------------------------------------------------------------
   The only code that knows it runs on epoll. The rest of the server sees:
   create, add, modify, delete, wait; a ticker that fires once a second; and
   a waker another thread can poke. A kqueue backend implements the same
   functions with EVFILT_READ/WRITE, EVFILT_TIMER and EVFILT_USER. Events
   carry a 64-bit tag: a connection's fd, or one of the CHI_TAG_* values. */

#define CHI_EV_READ 1u
#define CHI_EV_WRITE 2u
#define CHI_EV_ERROR 4u
#define CHI_TAG_LISTEN ((uint64_t)1 << 40)
#define CHI_TAG_TICK (CHI_TAG_LISTEN + 1)
#define CHI_TAG_WAKE (CHI_TAG_LISTEN + 2)
#define CHI_MAX_EVENTS 256

typedef struct chi_event {
    uint64_t tag;
    unsigned flags;
} chi_event;

static int chi_poll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

static uint32_t chi_epoll_mask(unsigned ev)
{
    return ((ev & CHI_EV_READ) ? EPOLLIN : 0u) | ((ev & CHI_EV_WRITE) ? EPOLLOUT : 0u);
}

static int chi_poll_ctl(int ep, int op, int fd, unsigned ev, uint64_t tag, int exclusive)
{
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    e.events = chi_epoll_mask(ev);
#ifdef EPOLLEXCLUSIVE
    /* a listener shared by several workers wakes one of them, not all */
    if (exclusive) e.events |= EPOLLEXCLUSIVE;
#else
    (void)exclusive;
#endif
    e.data.u64 = tag;
    return epoll_ctl(ep, op, fd, &e);
}

static int chi_poll_add(int ep, int fd, unsigned ev, uint64_t tag, int exclusive)
{
    return chi_poll_ctl(ep, EPOLL_CTL_ADD, fd, ev, tag, exclusive);
}
static int chi_poll_mod(int ep, int fd, unsigned ev, uint64_t tag) { return chi_poll_ctl(ep, EPOLL_CTL_MOD, fd, ev, tag, 0); }
static int chi_poll_del(int ep, int fd) { return chi_poll_ctl(ep, EPOLL_CTL_DEL, fd, 0, 0, 0); }

static int chi_poll_wait(int ep, chi_event *out, int max, int timeout_ms)
{
    struct epoll_event ev[CHI_MAX_EVENTS];
    int n, i;
    if (max > CHI_MAX_EVENTS) max = CHI_MAX_EVENTS;
    n = epoll_wait(ep, ev, max, timeout_ms);
    for (i = 0; i < n; i++) {
        out[i].tag = ev[i].data.u64;
        out[i].flags = ((ev[i].events & EPOLLIN) ? CHI_EV_READ : 0u) | ((ev[i].events & EPOLLOUT) ? CHI_EV_WRITE : 0u) |
                       ((ev[i].events & (EPOLLERR | EPOLLHUP)) ? CHI_EV_ERROR : 0u);
    }
    return n < 0 ? (errno == EINTR ? 0 : -1) : n;
}

/* A timerfd that fires every second: it drives the Date cache and timeouts. */
static int chi_ticker_open(int ep)
{
    struct itimerspec its;
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0) return -1;
    memset(&its, 0, sizeof its);
    its.it_interval.tv_sec = 1;
    its.it_value.tv_sec = 1;
    if (timerfd_settime(fd, 0, &its, NULL) < 0 || chi_poll_add(ep, fd, CHI_EV_READ, CHI_TAG_TICK, 0) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads a timerfd or eventfd counter so it stops being readable. */
static void chi_drain_counter(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
}

static int chi_waker_open(int ep)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return -1;
    if (chi_poll_add(ep, fd, CHI_EV_READ, CHI_TAG_WAKE, 0) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void chi_wake(int fd)
{
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r;
}

/* >>worker state ------------------------------------------------------------
   A worker owns everything its connections touch. Connections sit in a table
   indexed by file descriptor, and in one of three timeout queues, each kept
   in order of last activity: touching a connection moves it to the tail (at
   most once per second), so expiring is popping from the head. Idle
   connections keep no buffers: input is read into the worker's scratch
   buffer and only the bytes of an unfinished request are copied aside. */

/* The timeout queues: what a connection is waiting for decides its queue,
   and each queue has its own timeout. */
enum {
    CHI_Q_IDLE,   /* a new request (idle_timeout) */
    CHI_Q_HEAD,   /* the rest of a request head (header_timeout) */
    CHI_Q_BODY,   /* more of a request body (body_timeout) */
    CHI_Q_WRITE,  /* the client to take our answer (write_timeout) */
    CHI_Q_LINGER, /* the client to close after our last answer */
    CHI_Q_COUNT,
    CHI_Q_NONE = CHI_Q_COUNT
};

enum {
    CHI_F_CLOSING = 1,       /* close once the output is written */
    CHI_F_LINGER_AFTER = 2,  /* ... and drain the input before closing */
    CHI_F_LINGER = 4,        /* write side shut, draining the input */
    CHI_F_PEER_EOF = 8,      /* the client will send nothing more */
    CHI_F_BACKLOG = 16       /* input left unprocessed: output over the limit */
};

typedef struct chi_conn {
    int fd;
    unsigned flags;
    unsigned events;         /* interest registered with the poller */
    int queue;
    int64_t last_active;     /* worker clock, seconds */
    struct chi_conn *prev, *next;
    chi_buf in;              /* an unfinished request (and what follows it) */
    chi_buf out;             /* response bytes the socket has not taken */
    size_t out_off;
    size_t scanned;          /* bytes of an unfinished head already parsed */
    size_t want;             /* bytes the unfinished request needs in all */
    size_t drained;          /* bytes thrown away while lingering */
    int continue_sent;
    int chunk_active;
    chi_chunked chunk;
    chi_peer peer;
} chi_conn;

typedef struct chi_fast_copy {
    size_t off, len, head_len;
} chi_fast_copy;

struct chi_worker {
    ch_app *app;
    int id;
    int ep, tick_fd, wake_fd;
    int listen_fd, listen_shared, accepting;
    int64_t accept_pause_until;
    pthread_t thread;
    int started;
    chi_conn **conns;        /* indexed by fd */
    size_t conns_cap;
    chi_conn *free_conns;
    int nconns;
    chi_conn *qhead[CHI_Q_COUNT], *qtail[CHI_Q_COUNT];
    int timeouts[CHI_Q_COUNT];
    int64_t now;             /* CLOCK_MONOTONIC seconds, read once a tick */
    int stopping;
    int64_t stop_deadline;
    char *scratch;           /* CHOPIN_READ_SIZE bytes */
    chi_buf out;             /* responses of the current read batch */
    char common[CHI_COMMON_LEN]; /* "Server: ...\r\nDate: ...\r\n" */
    chi_buf fast_bytes;      /* each FastRoute's response (or prefix) */
    chi_fast_copy *fast;
    ch_json json;
    ch_req req;
    ch_res res;
    chi_buf log;             /* access log lines not yet written */
    int log_fd;
};

static ch_json *chi_worker_json(chi_worker *w) { return &w->json; }

/* Writes the buffered access log. A log that cannot take it (a full pipe)
   loses those lines rather than stall the worker. */
static void chi_log_flush(chi_worker *w)
{
    size_t off = 0;
    while (off < w->log.len) {
        ssize_t r = write(w->log_fd, w->log.ptr + off, w->log.len - off);
        if (r <= 0 && errno != EINTR) break;
        if (r > 0) off += (size_t)r;
    }
    w->log.len = 0;
}

/* The Date is patched into the shared prefix and into every FastRoute copy,
   all of which start with "HTTP/1.1 200 OK\r\n" + common. */
#define CHI_OK_LINE "HTTP/1.1 200 OK\r\n"
#define CHI_DATE_AT (sizeof(CHI_SERVER_LINE) - 1 + 6)

static void chi_refresh_date(chi_worker *w)
{
    struct timespec ts;
    int i;
    clock_gettime(CLOCK_REALTIME, &ts);
    chi_format_date((int64_t)ts.tv_sec, w->common + CHI_DATE_AT);
    for (i = 0; i < w->app->nfast; i++)
        memcpy(w->fast_bytes.ptr + w->fast[i].off + sizeof(CHI_OK_LINE) - 1 + CHI_DATE_AT,
               w->common + CHI_DATE_AT, CHI_DATE_LEN);
}

static void chi_read_clock(chi_worker *w)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    w->now = (int64_t)ts.tv_sec;
}

/* Timeout queues: intrusive doubly linked lists. */
static void chi_q_unlink(chi_worker *w, chi_conn *c)
{
    if (c->queue == CHI_Q_NONE) return;
    if (c->prev) c->prev->next = c->next; else w->qhead[c->queue] = c->next;
    if (c->next) c->next->prev = c->prev; else w->qtail[c->queue] = c->prev;
    c->prev = c->next = NULL;
    c->queue = CHI_Q_NONE;
}

static void chi_q_append(chi_worker *w, chi_conn *c, int q)
{
    CHOPIN_ASSERT(q >= 0 && q < CHI_Q_COUNT && c->queue == CHI_Q_NONE);
    c->queue = q;
    c->last_active = w->now;
    c->next = NULL;
    c->prev = w->qtail[q];
    if (c->prev) c->prev->next = c; else w->qhead[q] = c;
    w->qtail[q] = c;
}

/* Called on progress: keeps the queue ordered by last activity. */
static void chi_touch(chi_worker *w, chi_conn *c)
{
    if (c->last_active != w->now && c->queue != CHI_Q_NONE) {
        int q = c->queue;
        chi_q_unlink(w, c);
        chi_q_append(w, c, q);
    }
}

static void chi_q_set(chi_worker *w, chi_conn *c, int q)
{
    if (c->queue == q) return;
    chi_q_unlink(w, c);
    chi_q_append(w, c, q);
}

/* >>responses, assembled ------------------------------------------------- */

static const char *chi_connection_line(int keep_alive, int minor, size_t *len)
{
    if (!keep_alive) {
        *len = 19;
        return "Connection: close\r\n";
    }
    if (minor == 0) {
        *len = 24;
        return "Connection: keep-alive\r\n";
    }
    *len = 0;
    return "";
}

/* The general layout; every argument may be empty. Returns -1 when out of memory. */
static int chi_write_response(chi_worker *w, int status, const char *ctype, size_t ctype_len, const char *extra,
                              size_t extra_len, const char *body, size_t body_len, int send_body, int keep_alive,
                              int minor)
{
    char *p;
    size_t conn_len;
    const char *conn = chi_connection_line(keep_alive, minor, &conn_len);
    int has_length = status >= 200 && status != 204 && status != 304;
    if (chi_buf_reserve(&w->out, 64 + CHI_COMMON_LEN + 16 + ctype_len + 40 + extra_len + conn_len + 2 + body_len) < 0)
        return -1;
    p = w->out.ptr + w->out.len;
    p += chi_status_line(status, p);
    p = chi_put(p, w->common, CHI_COMMON_LEN);
    if (ctype_len) {
        p = chi_put(p, "Content-Type: ", 14);
        p = chi_put(p, ctype, ctype_len);
        p = chi_put(p, "\r\n", 2);
    }
    if (has_length) {
        p = chi_put(p, "Content-Length: ", 16);
        p += chi_utoa(body_len, p);
        p = chi_put(p, "\r\n", 2);
    }
    p = chi_put(p, extra, extra_len);
    p = chi_put(p, conn, conn_len);
    p = chi_put(p, "\r\n", 2);
    if (send_body && has_length) p = chi_put(p, body, body_len);
    w->out.len = (size_t)(p - w->out.ptr);
    return 0;
}

/* A pre-built error: its status line, type and length are one literal. */
static void chi_write_error(chi_worker *w, int status, const char *extra, size_t extra_len, int send_body,
                            int keep_alive, int minor)
{
    const chi_prebuilt *pb = chi_prebuilt_for(status);
    size_t hl, bl, conn_len;
    const char *conn;
    char *p;
    if (!pb) pb = chi_prebuilt_for(500);
    hl = strlen(pb->head);
    bl = strlen(pb->body);
    conn = chi_connection_line(keep_alive, minor, &conn_len);
    if (chi_buf_reserve(&w->out, hl + CHI_COMMON_LEN + extra_len + conn_len + 2 + bl) < 0) return;
    p = w->out.ptr + w->out.len;
    p = chi_put(p, pb->head, hl);
    p = chi_put(p, w->common, CHI_COMMON_LEN);
    p = chi_put(p, extra, extra_len);
    p = chi_put(p, conn, conn_len);
    p = chi_put(p, "\r\n", 2);
    if (send_body) p = chi_put(p, pb->body, bl);
    w->out.len = (size_t)(p - w->out.ptr);
}

/* Builds this worker's copy of every FastRoute: a static route's whole
   response, a dynamic route's header up to the Content-Length value. */
static int chi_build_fast(chi_worker *w)
{
    int i;
    ch_app *app = w->app;
    w->fast = (chi_fast_copy *)CHOPIN_MALLOC(sizeof *w->fast * (size_t)(app->nfast ? app->nfast : 1));
    if (!w->fast) return -1;
    for (i = 0; i < app->nfast; i++) {
        const chi_fast *f = &app->fast[i];
        chi_buf *b = &w->fast_bytes;
        char num[24];
        w->fast[i].off = b->len;
        if (chi_buf_append(b, CHI_OK_LINE, sizeof(CHI_OK_LINE) - 1) < 0 || chi_buf_append(b, w->common, CHI_COMMON_LEN) < 0 ||
            chi_buf_append(b, "Content-Type: ", 14) < 0 || chi_buf_append(b, f->ctype, strlen(f->ctype)) < 0 ||
            chi_buf_append(b, "\r\nContent-Length: ", 18) < 0)
            return -1;
        if (f->body) {
            if (chi_buf_append(b, num, chi_utoa(f->body_len, num)) < 0 || chi_buf_append(b, "\r\n\r\n", 4) < 0) return -1;
            w->fast[i].head_len = b->len - w->fast[i].off;
            if (chi_buf_append(b, f->body, f->body_len) < 0) return -1;
        } else {
            w->fast[i].head_len = b->len - w->fast[i].off;
        }
        w->fast[i].len = b->len - w->fast[i].off;
    }
    return 0;
}

static void chi_fast_respond(chi_worker *w, int i, int send_body, int keep_alive, int minor)
{
    const chi_fast *f = &w->app->fast[i];
    const chi_fast_copy *fc = &w->fast[i];
    const char *bytes = w->fast_bytes.ptr + fc->off;
    const char *body = f->body;
    size_t body_len = f->body_len;
    if (f->fn) {
        ch_json_reset(&w->json);
        f->fn(&w->json, f->user);
        if (w->json.failed || w->json.depth != 0) {
            chi_write_error(w, 500, "", 0, send_body, keep_alive, minor);
            return;
        }
        body = w->json.buf;
        body_len = w->json.len;
    }
    /* the common case, HTTP/1.1 keep-alive: copy the pre-built bytes */
    if (keep_alive && minor == 1) {
        if (!f->fn) {
            chi_buf_append(&w->out, bytes, send_body ? fc->len : fc->head_len);
        } else if (chi_buf_reserve(&w->out, fc->len + 24 + body_len) == 0) {
            char *p = chi_put(w->out.ptr + w->out.len, bytes, fc->len);
            p += chi_utoa(body_len, p);
            p = chi_put(p, "\r\n\r\n", 4);
            if (send_body) p = chi_put(p, body, body_len);
            w->out.len = (size_t)(p - w->out.ptr);
        }
        return;
    }
    chi_write_response(w, 200, f->ctype, strlen(f->ctype), "", 0, body, body_len, send_body, keep_alive, minor);
}

static void chi_res_finish(chi_worker *w, ch_req *req, int keep_alive)
{
    ch_res *res = &w->res;
    const char *body;
    size_t body_len;
    int status, i;
    for (i = 0; i < res->nfinish; i++) res->finish[i](req, res, res->finish_user[i]);
    body = res->body_is_json ? w->json.buf : res->body;
    body_len = res->body_is_json ? w->json.len : res->body_len;
    status = res->status;
    if (status < 200 || status > 599 || (res->body_is_json && (w->json.failed || w->json.depth != 0))) {
        chi_write_error(w, 500, "", 0, req->method != CH_HEAD, keep_alive, req->version_minor);
        return;
    }
    if (chi_write_response(w, status, res->ctype.ptr, res->ctype.len, res->headers.ptr, res->headers.len, body,
                           body_len, req->method != CH_HEAD, keep_alive, req->version_minor) < 0)
        chi_write_error(w, 500, "", 0, req->method != CH_HEAD, 0, req->version_minor);
}

/* >>dispatch ----------------------------------------------------------------
   FastRoutes first (GET and HEAD only, no middleware). Everything else goes
   through the app's middleware, the router (404, 405 and OPTIONS are
   answered here), the route's group middleware, then the handler; the
   response is written when the chain ends. After-hooks see both kinds. */

static int chi_run_group_mw(ch_group *g, ch_req *req, ch_res *res)
{
    int i;
    if (g->parent && chi_run_group_mw(g->parent, req, res) == CH_DONE) return CH_DONE;
    for (i = 0; i < g->nmw; i++)
        if (g->mw[i].fn(req, res, g->mw[i].user) == CH_DONE) return CH_DONE;
    return CH_NEXT;
}

/* Fills w->res for a routed request. */
static void chi_route_request(chi_worker *w, ch_req *req)
{
    ch_app *app = w->app;
    ch_res *res = &w->res;
    chi_node *node;
    const chi_route *route;
    int i, m;
    for (i = 0; i < app->nmw; i++)
        if (app->mw[i].fn(req, res, app->mw[i].user) == CH_DONE) return;
    if (req->method == CH_OTHER) {
        ch_res_error(res, 501);
        return;
    }
    if (req->path.len == 1 && req->path.ptr[0] == '*') { /* OPTIONS * */
        res->status = 200;
        return;
    }
    req->param_count = 0;
    node = chi_node_match(app->root, req->path.ptr + 1, req->path.ptr + req->path.len, req);
    if (!node) {
        ch_res_error(res, 404);
        return;
    }
    m = req->method;
    if (!node->routes[m].handler && m == CH_HEAD && node->routes[CH_GET].handler) m = CH_GET;
    if (!node->routes[m].handler) {
        char allow[96];
        size_t n = chi_allow_list(node->methods | node->fast_methods, allow);
        if (m == CH_OPTIONS)
            res->status = 200;
        else
            ch_res_error(res, 405);
        chi_res_put_header(res, "Allow", 5, allow, n);
        return;
    }
    route = &node->routes[m];
    if (route->group && chi_run_group_mw(route->group, req, res) == CH_DONE) return;
    req->user = route->user;
    route->handler(req, res);
}

static void chi_run_after(chi_worker *w, const ch_req *req, size_t out_before)
{
    ch_app *app = w->app;
    int i;
    w->res.bytes = w->out.len - out_before;
    w->res.end_ns = chi_now_ns();
    for (i = 0; i < app->nafter; i++) app->after[i].fn(req, &w->res, app->after[i].user);
}

static void chi_dispatch(chi_worker *w, ch_req *req, int keep_alive)
{
    ch_app *app = w->app;
    size_t out_before = w->out.len;
    int i;
    if (req->method == CH_GET || req->method == CH_HEAD) {
        for (i = 0; i < app->nfast; i++) {
            const chi_fast *f = &app->fast[i];
            if (f->path_len == req->path.len && memcmp(f->path, req->path.ptr, f->path_len) == 0) {
                if (app->nafter) w->res.start_ns = chi_now_ns();
                chi_fast_respond(w, i, req->method != CH_HEAD, keep_alive, req->version_minor);
                if (app->nafter) {
                    w->res.status = 200;
                    chi_run_after(w, req, out_before);
                }
                return;
            }
        }
    }
    chi_res_reset(&w->res);
    if (app->nafter) w->res.start_ns = chi_now_ns();
    chi_route_request(w, req);
    chi_res_finish(w, req, keep_alive);
    if (app->nafter) chi_run_after(w, req, out_before);
}

/* >>middleware --------------------------------------------------------------
   The three that ship with chopin.h. Each is an ordinary middleware or
   after-hook, written with the public API only: read them as examples. */

#ifndef CHOPIN_NO_AUTH
/* Compares without stopping at the first difference, so the time taken
   does not tell an attacker how much of a guess was right. */
static int chi_same_secret(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char diff = (unsigned char)(alen != blen);
    size_t i;
    for (i = 0; i < alen && i < blen; i++) diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

static int chi_auth_fail(ch_res *res, int status, const char *challenge)
{
    ch_res_error(res, status);
    if (challenge) ch_res_header(res, "WWW-Authenticate", challenge);
    return CH_DONE;
}

CHOPIN_API int ch_mw_bearer(ch_req *req, ch_res *res, void *user)
{
    const ch_bearer *cfg = (const ch_bearer *)user;
    ch_str auth = ch_req_common(req, CH_H_AUTHORIZATION);
    const char *tok;
    size_t len;
    if (!cfg || auth.len < 7 || !chi_ieq(auth.ptr, "bearer ", 7)) return chi_auth_fail(res, 401, "Bearer");
    tok = auth.ptr + 7;
    len = auth.len - 7;
    while (len && *tok == ' ') {
        tok++;
        len--;
    }
    if (len == 0) return chi_auth_fail(res, 401, "Bearer");
    if (cfg->verify) {
        int verdict = cfg->verify(tok, len, req, cfg->user);
        if (verdict == 0) return CH_NEXT;
        if (verdict == 403) return chi_auth_fail(res, 403, NULL);
        return chi_auth_fail(res, 401, "Bearer error=\"invalid_token\"");
    }
    if (cfg->token && chi_same_secret(tok, len, cfg->token, strlen(cfg->token))) return CH_NEXT;
    return chi_auth_fail(res, 401, "Bearer error=\"invalid_token\"");
}
#endif

#ifndef CHOPIN_NO_TIMING
static void chi_timing_finish(ch_req *req, ch_res *res, void *user)
{
    char v[48], *p;
    int64_t us = (chi_now_ns() - res->timing_ns) / 1000;
    (void)req;
    (void)user;
    if (us < 0) us = 0;
    p = chi_put(v, "app;dur=", 8);
    p += chi_utoa((uint64_t)(us / 1000), p);
    *p++ = '.';
    *p++ = (char)('0' + us % 1000 / 100);
    *p++ = (char)('0' + us % 100 / 10);
    *p++ = (char)('0' + us % 10);
    chi_res_put_header(res, "Server-Timing", 13, v, (size_t)(p - v)); /* our own bytes: no check */
}

CHOPIN_API int ch_mw_timing(ch_req *req, ch_res *res, void *user)
{
    (void)req;
    (void)user;
    res->timing_ns = chi_now_ns();
    ch_res_on_finish(res, chi_timing_finish, NULL);
    return CH_NEXT;
}
#endif

#ifndef CHOPIN_NO_ACCESS_LOG
#define CHI_LOG_FLUSH (32 * 1024)

CHOPIN_API void ch_access_log(const ch_req *req, const ch_res *res, void *user)
{
    chi_worker *w = res->w;
    char *p;
    int64_t us = (res->end_ns - res->start_ns) / 1000;
    w->log_fd = user ? *(const int *)user : 1;
    if (chi_buf_reserve(&w->log, 64 + CHI_DATE_LEN + req->method_name.len + req->target.len + 64) < 0) return;
    p = w->log.ptr + w->log.len;
    p += ch_req_remote_addr(req, p, 46);
    p = chi_put(p, " [", 2);
    p = chi_put(p, w->common + CHI_DATE_AT, CHI_DATE_LEN);
    p = chi_put(p, "] \"", 3);
    p = chi_put(p, req->method_name.ptr, req->method_name.len);
    *p++ = ' ';
    p = chi_put(p, req->target.ptr, req->target.len); /* no space, quote or CTL: the parser saw to it */
    p = chi_put(p, req->version_minor ? " HTTP/1.1\" " : " HTTP/1.0\" ", 11);
    p += chi_utoa((uint64_t)res->status, p);
    *p++ = ' ';
    p += chi_utoa(res->bytes, p);
    *p++ = ' ';
    p += chi_utoa((uint64_t)(us < 0 ? 0 : us), p);
    p = chi_put(p, "us\n", 3);
    w->log.len = (size_t)(p - w->log.ptr);
    if (w->log.len >= CHI_LOG_FLUSH) chi_log_flush(w);
}
#endif

/* >>connection --------------------------------------------------------------
   The state machine of one connection:
     readable  -> read (into scratch, or after the unfinished request kept
                  in c->in) -> answer every complete request -> keep the
                  unfinished rest -> write all answers in one send()
     writable  -> send what the socket did not take before
     closing   -> after the last byte: close, or shut the write side and
                  drain the input for a while ("lingering close"), so the
                  client reads our answer rather than a reset. */

static void chi_close(chi_worker *w, chi_conn *c)
{
    CHOPIN_ASSERT(w->conns[c->fd] == c);
    chi_q_unlink(w, c);
    close(c->fd); /* also removes it from the epoll set */
    w->conns[c->fd] = NULL;
    chi_buf_free(&c->in);
    chi_buf_free(&c->out);
    c->next = w->free_conns;
    w->free_conns = c;
    w->nconns--;
}

static ssize_t chi_send(int fd, const char *p, size_t n)
{
    ssize_t r;
    do {
        r = send(fd, p, n, MSG_NOSIGNAL); /* a dead peer is an error, not SIGPIPE */
    } while (r < 0 && errno == EINTR);
    return r;
}

static ssize_t chi_recv(int fd, char *p, size_t n)
{
    ssize_t r;
    do {
        r = read(fd, p, n);
    } while (r < 0 && errno == EINTR);
    return r;
}

static size_t chi_pending(const chi_conn *c) { return c->out.len - c->out_off; }

/* A refused request: the error goes out, then the connection closes. */
static void chi_reject(chi_worker *w, chi_conn *c, int status, int minor)
{
    chi_write_error(w, status, "", 0, 1, 0, minor);
    c->flags |= CHI_F_CLOSING | CHI_F_LINGER_AFTER;
}

static void chi_maybe_continue(chi_worker *w, chi_conn *c, const ch_req *req, const chi_head *h)
{
    if (h->expect_continue && req->version_minor == 1 && !c->continue_sent) {
        chi_buf_append(&w->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        c->continue_sent = 1;
    }
}

/* Answers every complete request in buf[0, len). Returns the bytes used; the
   rest is the start of an unfinished request. */
static size_t chi_process(chi_worker *w, chi_conn *c, char *buf, size_t len)
{
    const chi_limits *lim = &w->app->lim;
    ch_req *req = &w->req;
    size_t off = 0;
    c->want = 0;
    while (off < len) {
        char *p = buf + off;
        size_t n = len - off, total;
        chi_head h;
        long hl;
        int keep_alive;
        if (w->out.len + chi_pending(c) > CHOPIN_MAX_PENDING) {
            c->flags |= CHI_F_BACKLOG; /* resumed once the output drains */
            break;
        }
        /* an unfinished head is parsed again only once a new line came in */
        if (c->scanned && n > c->scanned && n <= lim->max_target &&
            !memchr(p + c->scanned, '\n', n - c->scanned))
            break;
        hl = chi_parse_head(p, n, lim, req, &h);
        if (hl == 0) {
            c->scanned = n;
            break;
        }
        c->scanned = 0;
        if (hl < 0) {
            chi_reject(w, c, (int)-hl, 1);
            return len;
        }
        if (h.body_kind == CHI_BODY_NONE) {
            req->body = p + hl;
            req->body_len = 0;
            total = (size_t)hl;
        } else if (h.body_kind == CHI_BODY_LENGTH) {
            if (n - (size_t)hl < h.content_length) {
                c->want = (size_t)hl + (size_t)h.content_length;
                chi_maybe_continue(w, c, req, &h);
                break;
            }
            req->body = p + hl;
            req->body_len = (size_t)h.content_length;
            total = (size_t)hl + req->body_len;
        } else {
            int r;
            if (!c->chunk_active) {
                chi_chunked_init(&c->chunk, (size_t)hl);
                c->chunk_active = 1;
            }
            r = chi_chunked_decode(&c->chunk, p, n, lim->max_body, lim->max_header);
            if (r < 0) {
                chi_reject(w, c, -r, 1);
                return len;
            }
            if (r == 0) {
                chi_maybe_continue(w, c, req, &h);
                break;
            }
            c->chunk_active = 0;
            req->body = p + hl;
            req->body_len = c->chunk.dst - (size_t)hl;
            total = c->chunk.src;
        }
        c->continue_sent = 0;
        keep_alive = h.keep_alive && !w->stopping;
        req->conn = &c->peer;
        req->ctx = NULL;
        chi_dispatch(w, req, keep_alive);
        off += total;
        if (!keep_alive) {
            /* what follows a closing request is never answered */
            c->flags |= CHI_F_CLOSING | (off < len ? CHI_F_LINGER_AFTER : 0);
            return len;
        }
    }
    return off;
}

/* Keeps buf[used, len) in c->in for the next read. */
static int chi_keep_rest(chi_conn *c, const char *buf, size_t len, size_t used, int from_scratch)
{
    size_t rest = len - used;
    if (c->flags & CHI_F_CLOSING) rest = 0;
    if (rest == 0) {
        chi_buf_free(&c->in); /* idle connections hold no input buffer */
        c->scanned = 0;
        c->chunk_active = 0;
        return 0;
    }
    if (from_scratch) {
        c->in.len = 0;
        if (chi_buf_reserve(&c->in, rest) < 0) return -1;
        memcpy(c->in.ptr, buf + used, rest);
    } else if (used) {
        memmove(c->in.ptr, c->in.ptr + used, rest);
    }
    c->in.len = rest;
    return 0;
}

static void chi_after_io(chi_worker *w, chi_conn *c);

/* Sends the batch of answers in w->out: one send() per read batch. When the
   socket took all of it and requests were held back (CHI_F_BACKLOG), they
   are answered at once: no write event will come to resume them. */
static void chi_flush(chi_worker *w, chi_conn *c)
{
    for (;;) {
        if (w->out.len) {
            size_t sent = 0;
            if (chi_pending(c) == 0) {
                ssize_t r = chi_send(c->fd, w->out.ptr, w->out.len);
                if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                    w->out.len = 0;
                    chi_close(w, c);
                    return;
                }
                sent = r < 0 ? 0 : (size_t)r;
            CHOPIN_ASSERT(sent <= w->out.len);
                if (c->out.len) { /* all of the earlier output had gone */
                    c->out.len = 0;
                    c->out_off = 0;
                }
            }
            if (sent < w->out.len && chi_buf_append(&c->out, w->out.ptr + sent, w->out.len - sent) < 0) {
                w->out.len = 0;
                chi_close(w, c);
                return;
            }
            w->out.len = 0;
            if (w->out.cap > CHI_OUT_KEEP) chi_buf_free(&w->out); /* a huge answer does not stay */
        }
        if (!(c->flags & CHI_F_BACKLOG) || chi_pending(c) != 0) break;
        c->flags &= ~(unsigned)CHI_F_BACKLOG;
        if (chi_keep_rest(c, c->in.ptr, c->in.len, chi_process(w, c, c->in.ptr, c->in.len), 0) < 0) {
            w->out.len = 0;
            chi_close(w, c);
            return;
        }
    }
    chi_after_io(w, c);
}

/* Reads an unfinished request further, or a new batch into scratch. */
static void chi_on_readable(chi_worker *w, chi_conn *c)
{
    int from_scratch = c->in.len == 0;
    char *buf;
    size_t len;
    ssize_t n;
    if (c->flags & CHI_F_LINGER) {
        n = chi_recv(c->fd, w->scratch, CHOPIN_READ_SIZE);
        if (n <= 0 && (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))) {
            chi_close(w, c);
        } else if (n > 0 && (c->drained += (size_t)n) > CHI_LINGER_MAX) {
            chi_close(w, c);
        }
        return;
    }
    if (from_scratch) {
        n = chi_recv(c->fd, w->scratch, CHOPIN_READ_SIZE);
    } else {
        /* the buffer grows (doubling) as a body arrives: a declared
           Content-Length reserves nothing the client has not sent */
        if (c->in.cap - c->in.len < 4096 && chi_buf_reserve(&c->in, c->in.cap ? c->in.cap : 4096) < 0) {
            chi_close(w, c);
            return;
        }
        n = chi_recv(c->fd, c->in.ptr + c->in.len, c->in.cap - c->in.len);
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) chi_close(w, c);
        return;
    }
    if (n == 0) {
        /* the client is done sending; an unfinished request is dropped, and
           answers already made still go out (a half-closed client) */
        c->flags |= CHI_F_PEER_EOF | CHI_F_CLOSING;
        chi_buf_free(&c->in);
        chi_after_io(w, c);
        return;
    }
    /* a request head must be whole within header_timeout of its first
       byte: bytes dribbled into an unfinished head are not progress, so a
       slowloris client is cut off; body bytes are progress */
    if (from_scratch || c->want || c->chunk_active) chi_touch(w, c);
    if (from_scratch) {
        buf = w->scratch;
        len = (size_t)n;
    } else {
        c->in.len += (size_t)n;
        buf = c->in.ptr;
        len = c->in.len;
    }
    if (chi_keep_rest(c, buf, len, chi_process(w, c, buf, len), from_scratch) < 0) {
        w->out.len = 0;
        chi_close(w, c);
        return;
    }
    chi_flush(w, c);
}

static void chi_on_writable(chi_worker *w, chi_conn *c)
{
    ssize_t r = chi_send(c->fd, c->out.ptr + c->out_off, chi_pending(c));
    if (r < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) chi_close(w, c);
        return;
    }
    chi_touch(w, c);
    c->out_off += (size_t)r;
    if (chi_pending(c) == 0) {
        chi_buf_free(&c->out);
        c->out_off = 0;
        chi_flush(w, c); /* answers the requests held back, if any */
        return;
    }
    chi_after_io(w, c);
}

/* After every read or write: close if done, else register the interest the
   connection now has and put it in the right timeout queue. */
static void chi_after_io(chi_worker *w, chi_conn *c)
{
    unsigned ev = 0;
    int q;
    if (chi_pending(c) == 0 && (c->flags & CHI_F_CLOSING) && !(c->flags & CHI_F_LINGER)) {
        if (!(c->flags & CHI_F_LINGER_AFTER) || (c->flags & CHI_F_PEER_EOF) || shutdown(c->fd, SHUT_WR) < 0) {
            chi_close(w, c);
            return;
        }
        c->flags |= CHI_F_LINGER;
    }
    if (chi_pending(c)) ev |= CHI_EV_WRITE;
    if ((c->flags & CHI_F_LINGER) ||
        (!(c->flags & (CHI_F_CLOSING | CHI_F_BACKLOG)) && chi_pending(c) < CHOPIN_MAX_PENDING))
        ev |= CHI_EV_READ;
    if (ev != c->events) {
        if (chi_poll_mod(w->ep, c->fd, ev, (uint64_t)c->fd) < 0) {
            chi_close(w, c);
            return;
        }
        c->events = ev;
    }
    if (c->flags & CHI_F_LINGER)
        q = CHI_Q_LINGER;
    else if (chi_pending(c))
        q = CHI_Q_WRITE;
    else if (c->in.len)
        q = (c->want || c->chunk_active) ? CHI_Q_BODY : CHI_Q_HEAD;
    else
        q = CHI_Q_IDLE;
    if (q == CHI_Q_IDLE && w->stopping) {
        chi_close(w, c);
        return;
    }
    chi_q_set(w, c, q);
}

/* A timeout: a stalled request gets 408; anything else just closes. */
static void chi_expire(chi_worker *w, chi_conn *c)
{
    if ((c->queue == CHI_Q_HEAD || c->queue == CHI_Q_BODY) && chi_pending(c) == 0) {
        chi_write_error(w, 408, "", 0, 1, 0, 1);
        c->flags |= CHI_F_CLOSING | CHI_F_LINGER_AFTER;
        chi_buf_free(&c->in);
        chi_flush(w, c);
        if (w->conns[c->fd] == c && c->queue != CHI_Q_LINGER) chi_close(w, c); /* could not even send */
        return;
    }
    chi_close(w, c);
}

static void chi_expire_all(chi_worker *w)
{
    int q;
    for (q = 0; q < CHI_Q_COUNT; q++) {
        chi_conn *c;
        while ((c = w->qhead[q]) && c->last_active + w->timeouts[q] <= w->now) chi_expire(w, c);
    }
}

/* >>accept --------------------------------------------------------------- */

static void chi_pause_accept(chi_worker *w)
{
    if (!w->accepting) return;
    chi_poll_del(w->ep, w->listen_fd);
    w->accepting = 0;
}

static void chi_resume_accept(chi_worker *w)
{
    if (w->accepting || w->stopping || w->listen_fd < 0 || w->now < w->accept_pause_until ||
        w->nconns >= w->app->cfg.max_connections)
        return;
    if (chi_poll_add(w->ep, w->listen_fd, CHI_EV_READ, CHI_TAG_LISTEN, w->listen_shared) == 0) w->accepting = 1;
}

static void chi_conn_set_peer(chi_conn *c, const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6) {
        memcpy(c->peer.addr, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
        c->peer.family = AF_INET6;
    } else if (ss->ss_family == AF_INET) {
        memcpy(c->peer.addr, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        c->peer.family = AF_INET;
    }
}

static int chi_conn_open(chi_worker *w, int fd, const struct sockaddr_storage *peer)
{
    chi_conn *c;
    int one = 1;
    if ((size_t)fd >= w->conns_cap) {
        size_t cap = w->conns_cap ? w->conns_cap : 1024;
        chi_conn **t;
        while (cap <= (size_t)fd) cap *= 2;
        t = (chi_conn **)CHOPIN_REALLOC(w->conns, sizeof *t * cap);
        if (!t) return -1;
        memset(t + w->conns_cap, 0, sizeof *t * (cap - w->conns_cap));
        w->conns = t;
        w->conns_cap = cap;
    }
    c = w->free_conns;
    if (c)
        w->free_conns = c->next;
    else if (!(c = (chi_conn *)CHOPIN_MALLOC(sizeof *c)))
        return -1;
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->events = CHI_EV_READ;
    c->queue = CHI_Q_NONE;
    chi_conn_set_peer(c, peer);
    if (chi_poll_add(w->ep, fd, CHI_EV_READ, (uint64_t)fd, 0) < 0) {
        c->next = w->free_conns;
        w->free_conns = c;
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    w->conns[fd] = c;
    w->nconns++;
    chi_q_append(w, c, CHI_Q_IDLE);
    return 0;
}

static void chi_on_accept(chi_worker *w)
{
    int i;
    for (i = 0; i < 64; i++) {
        int fd;
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        if (w->nconns >= w->app->cfg.max_connections) {
            chi_pause_accept(w); /* new clients wait in the backlog */
            return;
        }
        peer.ss_family = AF_UNSPEC;
        fd = accept4(w->listen_fd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* out of descriptors: stop asking for a second instead of
                   spinning on a listener that stays readable */
                w->accept_pause_until = w->now + 1;
                chi_pause_accept(w);
            }
            return;
        }
        if (chi_conn_open(w, fd, &peer) < 0) close(fd);
    }
}

/* >>worker loop ---------------------------------------------------------- */

static void chi_begin_shutdown(chi_worker *w)
{
    chi_conn *c;
    if (w->stopping) return;
    w->stopping = 1;
    w->stop_deadline = w->now + w->app->cfg.shutdown_timeout;
    chi_pause_accept(w);
    while ((c = w->qhead[CHI_Q_IDLE])) chi_close(w, c);
    while ((c = w->qhead[CHI_Q_LINGER])) chi_close(w, c);
}

/* The tick is handled in two halves around the I/O of its batch: the clock
   first, so that bytes which came while the worker was late (descheduled,
   stopped, busy in a handler) count as progress at the current time; the
   timeouts last, so that a connection whose data is already waiting is
   served rather than expired. */
static void chi_tick_clock(chi_worker *w)
{
    chi_drain_counter(w->tick_fd);
    chi_read_clock(w);
    chi_refresh_date(w);
}

static void chi_tick_expire(chi_worker *w)
{
    if (w->log.len) chi_log_flush(w);
    chi_expire_all(w);
    chi_resume_accept(w);
}

static void chi_on_conn_event(chi_worker *w, int fd, unsigned flags)
{
    chi_conn *c = (size_t)fd < w->conns_cap ? w->conns[fd] : NULL;
    if (!c) return;
    if ((flags & (CHI_EV_READ | CHI_EV_ERROR)) && (c->events & CHI_EV_READ)) {
        chi_on_readable(w, c);
        if (w->conns[fd] != c) return; /* closed */
    }
    if ((flags & (CHI_EV_WRITE | CHI_EV_ERROR)) && (c->events & CHI_EV_WRITE)) chi_on_writable(w, c);
}

static void chi_worker_cleanup(chi_worker *w)
{
    size_t i;
    chi_conn *c;
    for (i = 0; i < w->conns_cap; i++)
        if (w->conns[i]) chi_close(w, w->conns[i]);
    while ((c = w->free_conns)) {
        w->free_conns = c->next;
        CHOPIN_FREE(c);
    }
    CHOPIN_FREE(w->conns);
    w->conns = NULL;
    w->conns_cap = 0;
    if (w->tick_fd >= 0) close(w->tick_fd);
    if (w->wake_fd >= 0) close(w->wake_fd);
    if (w->ep >= 0) close(w->ep);
    w->tick_fd = w->wake_fd = w->ep = -1;
    CHOPIN_FREE(w->scratch);
    w->scratch = NULL;
    chi_buf_free(&w->out);
    chi_buf_free(&w->fast_bytes);
    CHOPIN_FREE(w->fast);
    w->fast = NULL;
    ch_json_free(&w->json);
    chi_buf_free(&w->res.ctype);
    chi_buf_free(&w->res.headers);
    if (w->log.len) chi_log_flush(w);
    chi_buf_free(&w->log);
}

static int chi_worker_init(chi_worker *w, ch_app *app, int id, int listen_fd, int shared)
{
    memset(w, 0, sizeof *w);
    w->app = app;
    w->id = id;
    w->listen_fd = listen_fd;
    w->listen_shared = shared;
    w->tick_fd = w->wake_fd = -1;
    w->res.w = w;
    w->timeouts[CHI_Q_IDLE] = app->cfg.idle_timeout;
    w->timeouts[CHI_Q_HEAD] = app->cfg.header_timeout;
    w->timeouts[CHI_Q_BODY] = app->cfg.body_timeout;
    w->timeouts[CHI_Q_WRITE] = app->cfg.write_timeout;
    w->timeouts[CHI_Q_LINGER] = CHI_LINGER_TIMEOUT;
    memcpy(w->common, CHI_SERVER_LINE "Date: ", CHI_DATE_AT);
    memcpy(w->common + CHI_DATE_AT + CHI_DATE_LEN, "\r\n", 2);
    w->ep = chi_poll_create();
    w->scratch = (char *)CHOPIN_MALLOC(CHOPIN_READ_SIZE);
    if (w->ep < 0 || !w->scratch || (w->tick_fd = chi_ticker_open(w->ep)) < 0 ||
        (w->wake_fd = chi_waker_open(w->ep)) < 0 || chi_build_fast(w) < 0)
        return -1;
    chi_read_clock(w);
    chi_refresh_date(w);
    chi_resume_accept(w);
    return w->accepting ? 0 : -1;
}

static void *chi_worker_main(void *arg)
{
    chi_worker *w = (chi_worker *)arg;
    chi_event ev[CHI_MAX_EVENTS];
    while (!w->stopping || (w->nconns > 0 && w->now < w->stop_deadline)) {
        int n = chi_poll_wait(w->ep, ev, CHI_MAX_EVENTS, -1), i, tick = 0;
        if (n < 0) break;
        for (i = 0; i < n; i++)
            if (ev[i].tag == CHI_TAG_TICK) tick = 1;
        if (tick) chi_tick_clock(w);
        for (i = 0; i < n; i++) {
            uint64_t tag = ev[i].tag;
            if (tag == CHI_TAG_LISTEN) {
                if (w->accepting) chi_on_accept(w);
            } else if (tag == CHI_TAG_TICK) {
                /* after this batch's I/O, below */
            } else if (tag == CHI_TAG_WAKE) {
                chi_drain_counter(w->wake_fd);
                chi_begin_shutdown(w);
            } else {
                chi_on_conn_event(w, (int)tag, ev[i].flags);
            }
        }
        if (tick) chi_tick_expire(w);
        /* below max_connections again: accept at once, not on the next tick */
        if (!w->accepting) chi_resume_accept(w);
    }
    return NULL;
}

/* >>config ------------------------------------------------------------------
   The zero config is resolved here, in one place: explicit fields, then the
   environment, then defaults. A value that cannot be used is an error with
   a message, never silently replaced. */

static int chi_parse_bool(const char *s, int *out)
{
    static const char *yes[] = {"true", "1", "yes", "on"}, *no[] = {"false", "0", "no", "off"};
    size_t i, n = strlen(s);
    for (i = 0; i < 4; i++) {
        if (n == strlen(yes[i]) && chi_ieq(s, yes[i], n)) {
            *out = CH_YES;
            return 0;
        }
        if (n == strlen(no[i]) && chi_ieq(s, no[i], n)) {
            *out = CH_NO;
            return 0;
        }
    }
    return -1;
}

static int chi_usable_cpus(void)
{
    cpu_set_t set;
    long n;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Precedence, for every field: a non-zero value set in code wins; the
   environment fills only what the program left at zero; the default fills
   the rest. So a program that sets cfg.host = "127.0.0.1" stays private even
   when it inherits HOST=0.0.0.0 (common in containers). Each step below
   reads one variable for one field that is still zero. */
static int chi_env_port(ch_app *app, ch_config *c)
{
    const char *v = getenv("PORT");
    long n;
    if (c->port != 0 || !v) return 0;
    if (chi_parse_int(v, 0, 65535, &n) < 0) {
        chi_set_error(app, "invalid PORT '%s': expected a number from 0 to 65535", v);
        return -1;
    }
    c->port = n ? (int)n : CH_PORT_ANY;
    return 0;
}

static int chi_env_host(ch_app *app, ch_config *c)
{
    const char *v = getenv("HOST");
    if (c->host || !v) return 0;
    if (!*v || strlen(v) >= sizeof app->host) {
        chi_set_error(app, "invalid HOST '%s': expected an address such as 0.0.0.0 or ::1", v);
        return -1;
    }
    c->host = v;
    return 0;
}

static int chi_env_mode(ch_app *app, ch_config *c)
{
    const char *v = getenv("SERVER_MODE");
    if (c->mode != CH_MODE_DEFAULT || !v) return 0;
    if (strlen(v) == 11 && chi_ieq(v, "performance", 11))
        c->mode = CH_MODE_PERFORMANCE;
    else if (strlen(v) == 8 && chi_ieq(v, "standard", 8))
        c->mode = CH_MODE_STANDARD;
    else {
        chi_set_error(app, "invalid SERVER_MODE '%s': expected performance or standard", v);
        return -1;
    }
    return 0;
}

static int chi_env_workers(ch_app *app, ch_config *c)
{
    const char *v = getenv("CHOPIN_WORKERS");
    long n;
    if (c->workers != 0 || !v) return 0;
    if (chi_parse_int(v, 1, 1024, &n) < 0) {
        chi_set_error(app, "invalid CHOPIN_WORKERS '%s': expected a number from 1 to 1024", v);
        return -1;
    }
    c->workers = (int)n;
    return 0;
}

static int chi_env_reuseport(ch_app *app, ch_config *c)
{
    const char *v = getenv("REUSEPORT");
    if (c->reuseport != 0 || !v) return 0;
    if (chi_parse_bool(v, &c->reuseport) < 0) {
        chi_set_error(app, "invalid REUSEPORT '%s': expected true or false", v);
        return -1;
    }
    return 0;
}

static int chi_resolve_config(ch_app *app, const ch_config *in)
{
    ch_config c;
    if (in)
        c = *in;
    else
        memset(&c, 0, sizeof c);
    if (!c.ignore_env && (chi_env_port(app, &c) < 0 || chi_env_host(app, &c) < 0 || chi_env_mode(app, &c) < 0 ||
                          chi_env_workers(app, &c) < 0 || chi_env_reuseport(app, &c) < 0))
        return -1;
    if (c.port < CH_PORT_ANY || c.port > 65535 || c.workers < 0 || c.workers > 1024) {
        chi_set_error(app, "invalid ch_config: port or workers out of range");
        return -1;
    }
    if (c.mode == CH_MODE_DEFAULT) c.mode = CH_MODE_PERFORMANCE;
    if (c.mode == CH_MODE_STANDARD && c.workers > 1) {
        chi_set_error(app, "standard mode runs one event loop: CHOPIN_WORKERS must be 1 or unset");
        return -1;
    }
    if (c.workers == 0) c.workers = c.mode == CH_MODE_STANDARD ? 1 : chi_usable_cpus();
    if (c.workers > 1024) c.workers = 1024;
    if (c.reuseport == 0) c.reuseport = c.mode == CH_MODE_STANDARD ? CH_NO : CH_YES;
    if (c.port == 0) c.port = CHI_DEFAULT_PORT;
    snprintf(app->host, sizeof app->host, "%s", c.host ? c.host : CHI_DEFAULT_HOST);
    c.host = app->host;
    c.max_header_size = chi_defz(c.max_header_size, CHI_DEFAULT_MAX_HEADER);
    c.max_target_size = chi_defz(c.max_target_size, CHI_DEFAULT_MAX_TARGET);
    c.max_body_size = chi_defz(c.max_body_size, CHI_DEFAULT_MAX_BODY);
    c.max_connections = chi_def(c.max_connections, CHI_DEFAULT_MAX_CONNS);
    c.idle_timeout = chi_def(c.idle_timeout, CHI_DEFAULT_IDLE_TIMEOUT);
    c.header_timeout = chi_def(c.header_timeout, CHI_DEFAULT_HEADER_TIMEOUT);
    c.body_timeout = chi_def(c.body_timeout, CHI_DEFAULT_BODY_TIMEOUT);
    c.write_timeout = chi_def(c.write_timeout, CHI_DEFAULT_WRITE_TIMEOUT);
    c.shutdown_timeout = chi_def(c.shutdown_timeout, CHI_DEFAULT_SHUTDOWN_TIMEOUT);
    c.backlog = chi_def(c.backlog, CHI_DEFAULT_BACKLOG);
    app->cfg = c;
    app->lim.max_header = c.max_header_size;
    app->lim.max_target = c.max_target_size;
    app->lim.max_body = c.max_body_size;
    return 0;
}

/* >>listen ------------------------------------------------------------------
   Sockets are bound before any worker starts, so a port in use or a bad
   address is reported by ch_listen's return value. */

static void chi_addr_text(const ch_app *app, char *out, size_t n)
{
    if (strchr(app->host, ':'))
        snprintf(out, n, "[%s]:%d", app->host, app->cfg.port);
    else
        snprintf(out, n, "%s:%d", app->host, app->cfg.port);
}

static int chi_listen_error(ch_app *app, const char *why)
{
    char addr[300];
    int i;
    chi_addr_text(app, addr, sizeof addr);
    chi_set_error(app, "cannot listen on %s: %s", addr, why);
    for (i = 0; i < app->nlisten; i++) close(app->listen_fds[i]);
    app->nlisten = 0;
    return -1;
}

static int chi_open_listener(const struct addrinfo *ai, int reuseport, int backlog, int do_listen)
{
    int one = 1, fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || (do_listen && listen(fd, backlog) < 0)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int chi_bind_all(ch_app *app)
{
    struct addrinfo hints, *ai = NULL;
    char port[16];
    int i, n, rc, reuse = app->cfg.reuseport == CH_YES;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof port, "%d", app->cfg.port == CH_PORT_ANY ? 0 : app->cfg.port);
    rc = getaddrinfo(app->host, port, &hints, &ai);
    if (rc != 0) return chi_listen_error(app, gai_strerror(rc));
    n = reuse ? app->cfg.workers : 1;
    /* SO_REUSEPORT would let us join another server already on this port;
       a plain bind first finds out whether the port is free */
    if (reuse && app->cfg.port != CH_PORT_ANY) {
        int probe = chi_open_listener(ai, 0, 0, 0);
        if (probe < 0) {
            freeaddrinfo(ai);
            return chi_listen_error(app, strerror(errno));
        }
        close(probe);
    }
    for (i = 0; i < n; i++) {
        int fd = chi_open_listener(ai, reuse, app->cfg.backlog, 1);
        if (fd < 0) {
            freeaddrinfo(ai);
            return chi_listen_error(app, strerror(errno));
        }
        app->listen_fds[app->nlisten++] = fd;
        if (i == 0 && app->cfg.port == CH_PORT_ANY) {
            /* the kernel chose a port: the other listeners take the same */
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
                freeaddrinfo(ai);
                return chi_listen_error(app, strerror(errno));
            }
            app->cfg.port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                           : ((struct sockaddr_in *)&ss)->sin_port);
            if (ai->ai_family == AF_INET6)
                ((struct sockaddr_in6 *)ai->ai_addr)->sin6_port = htons((uint16_t)app->cfg.port);
            else
                ((struct sockaddr_in *)ai->ai_addr)->sin_port = htons((uint16_t)app->cfg.port);
        }
    }
    freeaddrinfo(ai);
    return 0;
}

CHOPIN_API int ch_listen(ch_app *app, const ch_config *cfg)
{
    struct rlimit rl;
    if (!app) return -1;
    if (app->reg_failed) return -1; /* the registration error is in app->err */
    if (app->listening) {
        chi_set_error(app, "ch_listen called twice");
        return -1;
    }
    if (chi_resolve_config(app, cfg) < 0) return -1;
    /* a server wants as many descriptors as the hard limit allows */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (chi_bind_all(app) < 0) return -1;
    app->listening = 1;
    app->err[0] = 0;
    return 0;
}

CHOPIN_API const ch_config *ch_config_used(const ch_app *app) { return app->listening ? &app->cfg : NULL; }

CHOPIN_API void ch_stop(ch_app *app)
{
    if (app && app->stop_fd >= 0) chi_wake(app->stop_fd);
}

/* >>run ---------------------------------------------------------------------
   The calling thread starts the workers and then only waits: for SIGINT or
   SIGTERM (blocked and read through a signalfd, so no global handler state is
   needed) or for ch_stop. It then wakes every worker, which stops accepting,
   closes idle connections, finishes the requests in flight and returns. */

static void chi_wait_for_stop(ch_app *app, int sig_fd)
{
    int ep = chi_poll_create();
    chi_event ev[2];
    if (ep < 0) return;
    chi_poll_add(ep, app->stop_fd, CHI_EV_READ, 0, 0);
    if (sig_fd >= 0) chi_poll_add(ep, sig_fd, CHI_EV_READ, 1, 0);
    while (chi_poll_wait(ep, ev, 2, -1) == 0) {}
    chi_drain_counter(app->stop_fd);
    close(ep);
}

CHOPIN_API int ch_serve(ch_app *app)
{
    sigset_t sigs, old;
    int i, started = 0, sig_fd = -1, rc = 0, nw;
    if (!app || !app->listening) {
        if (app) chi_set_error(app, "ch_serve needs a successful ch_listen first");
        return -1;
    }
    nw = app->cfg.workers;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    if (!app->cfg.no_signals) {
        /* blocked before the workers start, so they inherit the mask */
        pthread_sigmask(SIG_BLOCK, &sigs, &old);
        sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    }
    app->workers = (chi_worker *)CHOPIN_MALLOC(sizeof(chi_worker) * (size_t)nw);
    if (!app->workers) {
        chi_set_error(app, "out of memory");
        rc = -1;
    }
    for (i = 0; rc == 0 && i < nw; i++) {
        int shared = app->nlisten == 1 && nw > 1;
        chi_worker *w = &app->workers[i];
        if (chi_worker_init(w, app, i, app->listen_fds[app->nlisten == 1 ? 0 : i], shared) < 0 ||
            pthread_create(&w->thread, NULL, chi_worker_main, w) != 0) {
            chi_worker_cleanup(w);
            chi_set_error(app, "cannot start worker: %s", strerror(errno));
            rc = -1;
            break;
        }
        started++;
    }
    if (rc == 0) chi_wait_for_stop(app, sig_fd);
    for (i = 0; i < started; i++) chi_wake(app->workers[i].wake_fd);
    for (i = 0; i < started; i++) {
        pthread_join(app->workers[i].thread, NULL);
        chi_worker_cleanup(&app->workers[i]);
    }
    CHOPIN_FREE(app->workers);
    app->workers = NULL;
    for (i = 0; i < app->nlisten; i++) close(app->listen_fds[i]);
    app->nlisten = 0;
    app->listening = 0;
    if (sig_fd >= 0) close(sig_fd);
    if (!app->cfg.no_signals) {
        /* a signal that stopped us has been read; restore the caller's mask */
        struct timespec zero = {0, 0};
        while (sigtimedwait(&sigs, NULL, &zero) > 0) {}
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    return rc;
}

CHOPIN_API int ch_run(ch_app *app, const ch_config *cfg)
{
    if (ch_listen(app, cfg) < 0) return -1;
    return ch_serve(app);
}

#endif /* CHOPIN_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
This software is available under 2 licenses -- choose whichever you prefer.
------------------------------------------------------------------------------
ALTERNATIVE A - MIT License
Copyright (c) 2026 the chopin.h authors
Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
ALTERNATIVE B - Public Domain (www.unlicense.org)
This is free and unencumbered software released into the public domain.
Anyone is free to copy, modify, publish, use, compile, sell, or distribute this
software, either in source code form or as a compiled binary, for any purpose,
commercial or non-commercial, and by any means.
In jurisdictions that recognize copyright laws, the author or authors of this
software dedicate any and all copyright interest in the software to the public
domain. We make this dedication for the benefit of the public at large and to
the detriment of our heirs and successors. We intend this dedication to be an
overt act of relinquishment in perpetuity of all present and future rights to
this software under copyright law.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN
ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
------------------------------------------------------------------------------
*/
