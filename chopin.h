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

   VERSION 0.2.0 (CHOPIN_VERSION_MAJOR/MINOR/PATCH, CHOPIN_VERSION_STRING)
     next   an io_uring backend (CHOPIN_USE_IO_URING: multishot receives
            into provided buffers, sends queued on the ring from chunks the
            worker owns, one io_uring_enter per loop pass, epoll when the
            kernel refuses io_uring);
            batteries: a logger, CORS, rate limiting, trusted proxies,
            metrics, request ids, cookies, decoded parameters; after-hooks
            see refused requests; stricter chunk extensions and Host, the
            characters browsers send in targets accepted; X-Forwarded-For
            read over all its lines, X-Real-IP only when sent once; metrics
            counters never read torn on 32-bit CPUs with lock-free 64-bit
            atomics; Set-Cookie Domain checked as a host name; the
            batteries' usual request cheaper (the rate limiter's buckets
            in integer nanoseconds, kept per connection; CORS lines and
            the request id line built once and copied whole);
            fewer instructions per request (a worker's memo of the field
            lines a client repeats, Host first; pre-built 200 JSON heads;
            short JSON strings inline; the router's single-way walk kept in
            one call; Server-Timing sharing the metrics' clock reads);
            a header line the framework adds that finds no memory, and
            access log lines the log refuses, are logged, not dropped; a
            refused request's version in the access log is its own;
            stricter: whitespace before a chunk line's CRLF, an empty Host,
            a route pattern naming a parameter twice or with '//' refused;
            426 names Upgrade in Connection; SSE data sent as given (a
            trailing line end is an empty last line); /metrics typed
            "text/plain; version=0.0.4"; HOST may be a bracketed IPv6
            address; at most 32 CORS and rate limit registrations (their
            per-worker state in place);
            a stream route's request without a body is an empty stream
            (on_end runs, status 0), and a refused ch_req_body_stream
            presets a 500, never an empty 200; a streamed body's answer
            keeps the middleware's lines (CORS, X-Request-Id) and finishers
     0.2.0  the header in three layers (core, OS seam, server); kqueue and
            poll backends beside epoll; embedding in the caller's loop
            (ch_poll); values set in code beat the environment; request
            header and parameter storage outside ch_req (no layout option
            can differ between files); 100 header lines by default
     0.1.0  the server core, the framework layer (router, groups,
            middleware, JSON in and out), benchmarks and hardening

   WHAT IT IS
   A shared-nothing, thread-per-core server. Each worker thread owns its own
   listening socket (SO_REUSEPORT), its own event loop (epoll on Linux,
   kqueue on macOS and the BSDs, poll(2) elsewhere), its own connections and
   buffers: nothing is locked on the request path. Requests are parsed in
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
   Answering later: a handler may take its response (ch_res_defer) and
   return; the response is finished later on the same worker, from a timer
   (ch_timer_start), a function handed over from any thread (ch_defer_post,
   ch_worker_post: a lock-free queue per worker) or after blocking work on a
   small off-loop pool (ch_defer_offload). It may stream (chunked, with
   backpressure) or send server-sent events (ch_sse_*). Requests pipelined
   behind it wait; responses leave in request order.
   WebSocket (RFC 6455, strict; SHA-1 and base64 written here): a route
   upgrades after its middleware (ch_ws_route, ch_ws_upgrade); whole
   messages to a callback, sends that never block (a bounded queue per
   connection, a drain callback), automatic pings, and publish/subscribe
   across workers (ch_ws_publish frames a message once and hands it to each
   worker's queue). CHOPIN_NO_WEBSOCKET compiles it out.

   THREE WAYS TO RUN
     ch_run(app, cfg)       listen, then serve until SIGINT/SIGTERM or ch_stop;
                            SIGUSR2 (or ch_restart) hands the sockets to a new
                            copy of the executable and drains (see DEPLOYING)
     ch_listen + ch_serve   the same in two steps (ch_listen reports a port in
                            use; ch_config_used tells the port PORT=0 chose)
     ch_listen + ch_poll    embedded in the caller's own loop (a game engine,
                            a GUI, a daemon): each ch_poll(app, ms) call runs
                            what is ready and returns within ms; ch_poll_fd
                            gives a descriptor to watch (one loop, no signals)

   PLATFORMS AND BACKENDS
   Chosen by platform, or forced with one of these (every file that has the
   implementation; a wrong one fails to compile, never silently):
       CHOPIN_USE_EPOLL     Linux (the default there)
       CHOPIN_USE_KQUEUE    macOS, FreeBSD, OpenBSD, NetBSD, DragonFly (the
                            default there)
       CHOPIN_USE_POLL      plain POSIX poll(2): any other Unix (the default
                            there), and a fallback that works everywhere
       CHOPIN_USE_IO_URING  Linux: io_uring (raw system calls, no liburing;
                            5.19 or later for receives into provided
                            buffers, 6.1 for a worker's own deferred ring).
                            Answers are copied and sent by the ring (up to
                            128 KiB queued per connection; a close waits
                            for its queue, at most 2 s without progress).
                            Where io_uring_setup is refused (ENOSYS, EPERM
                            from a seccomp policy or kernel.io_uring_disabled)
                            the process serves with epoll and logs one warning
                            (CH_LOGITEM_IO_URING_REFUSED); ch_backend() says
                            which one runs
   macOS's SO_REUSEPORT does not balance connections between sockets, so
   there (and on OpenBSD and NetBSD) REUSEPORT defaults to false and the
   workers share one listener. Only Linux is tested by running: epoll and
   poll natively, kqueue through a kqueue-over-epoll emulation in tests/
   (see README.md, "Platforms").

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
       PID_FILE=path                   none; written (whole, then renamed)
                                        once serving, removed at exit if it
                                        still holds our pid (cfg.pid_file)
       LISTEN_FDS=n LISTEN_PID=pid     socket activation (systemd's protocol,
       LISTEN_FDNAMES=a:b               sd_listen_fds(3)): serve on inherited
                                        sockets 3..3+n-1 instead of binding
                                        HOST:PORT; unset once read
       CHOPIN_READY_FD=fd              set by a restarting server for its
                                        successor (the readiness pipe)
       CHOPIN_LOG=warn                 off|error|warn|info|debug: what the
                                        logger passes on (ch_config.log_level)
       CHOPIN_TRUST_PROXY=             proxy addresses/networks whose
                                        X-Forwarded-For, X-Real-IP and PROXY
                                        header are believed (ch_config.
                                        trust_proxy), e.g. "127.0.0.1,10.0.0.0/8"
   An invalid value makes ch_listen() fail with a message from ch_error().

   DEPLOYING (README.md, "Deploying"; the files in deploy/)
   Socket activation: one inherited socket is shared by the workers; sockets
   on one address (a SO_REUSEPORT group) are dealt out one per worker; on
   several addresses, every worker serves each. Each must be a listening TCP
   socket, of HOST's family when HOST is a numeric address; a mismatch
   (LISTEN_PID of another process, a UDP or unix socket, one not listening, a
   missing descriptor) fails ch_listen with the reason. No bind probe.
   Signals under ch_serve: SIGINT, SIGTERM stop gracefully; SIGUSR2 restarts
   (ch_restart does the same from code): the executable at the path it was
   started from (so a new build installed there is picked up), with the same
   arguments (/proc/self/cmdline on Linux, else set cfg.argv) and
   environment, gets the listening sockets by LISTEN_FDS and a pipe; once it
   serves (PID_FILE written, a byte on the pipe) this process stops
   accepting, answers what is in flight with Connection: close, gives idle
   keep-alive connections 1-2 s, and exits; a successor that fails or is not
   ready within 30 s is killed and this one goes on serving (stderr says
   why). ch_health(app, "/health"): 200 "ok" while serving, 503 "draining"
   once stopping, for a load balancer's checks. ch_poll (embedded): no
   signals, no restart; activation and PID_FILE work.

   COMPILE-TIME OPTIONS (define before including). Every file that includes
   chopin.h must agree on CHOPIN_STATIC and CHOPIN_API; the others matter
   only where CHOPIN_IMPLEMENTATION is defined (no public struct depends on
   them, so two files cannot disagree on a layout).
       CHOPIN_STATIC                   make every function static
       CHOPIN_API                      linkage of the API (default: extern)
       CHOPIN_MALLOC(n)                allocator; define MALLOC, REALLOC and
       CHOPIN_REALLOC(p, n)            FREE together or none of them
       CHOPIN_FREE(p)                  (default: malloc, realloc, free)
       CHOPIN_ASSERT(c)                default: assert(c)
       CHOPIN_USE_EPOLL, CHOPIN_USE_KQUEUE, CHOPIN_USE_POLL,
       CHOPIN_USE_IO_URING             see above
       CHOPIN_IO_URING_POLL_ONLY  io_uring: connections are read after a
                               poll, as with epoll, not received into the
                               ring's provided buffers (for comparison)
       CHOPIN_MAX_HEADERS      100     request header lines kept per request
                                       (1-254); more: 431
       CHOPIN_MAX_PARAMS       8       route parameters per request
       CHOPIN_READ_SIZE        65536   bytes a worker reads per read() call
       CHOPIN_MAX_PENDING      1048576 unsent response bytes after which a
                                       connection stops being read
       CHOPIN_SERVER_NAME      "chopin"  value of the Server header
       CHOPIN_NO_AUTH          compile out the bearer-token middleware
       CHOPIN_NO_ACCESS_LOG    compile out the access log after-hook
       CHOPIN_NO_TIMING        compile out the Server-Timing middleware
       CHOPIN_NO_RESTART       compile out the SIGUSR2 / ch_restart hand-over
                               (no fork or exec in the library)
       CHOPIN_NO_STATIC        compile out static files (ch_static,
                               ch_res_file, ch_res_file_fd)
       CHOPIN_NO_MULTIPART     compile out the multipart/form-data parser
       CHOPIN_NO_OPENAT2       open static files with one openat(O_NOFOLLOW)
                               per segment even where openat2 exists
       CHOPIN_NO_FILE_CACHE    compile out the per-worker open-file cache
                               of ch_static (on by default; per mount:
                               ch_static_opts.file_cache = CH_NO)
       CHOPIN_FILE_CACHE_SLOTS 64      files each worker keeps open for a
                                       second (descriptor + stat)
       CHOPIN_NO_CORS          compile out ch_use_cors
       CHOPIN_NO_RATELIMIT     compile out ch_use_ratelimit (and its lock)
       CHOPIN_NO_METRICS       compile out ch_metrics_route (the counters
                               then count nothing)
       CHOPIN_NO_PROXY         compile out trusted proxies: X-Forwarded-For,
                               X-Real-IP, the PROXY header (trust_proxy is
                               then an error)
       CHOPIN_NO_REQUEST_ID    compile out ch_mw_request_id
       CHOPIN_NO_SSE           compile out server-sent events (ch_sse_*)
       CHOPIN_STREAM_BUFFER    262144  queued bytes of a stream over which
                                       ch_defer_write says "wait for the
                                       drain callback" (4x: the stream is cut)
       CHOPIN_NO_WEBSOCKET     compile out WebSocket (and SHA-1, base64)
       CHOPIN_NO_RAW_SYSCALLS  read, send and epoll_wait through the C
                               library even on Linux x86-64 / arm64 (where
                               they are otherwise issued directly, without
                               glibc's thread-cancellation bookkeeping)
       CHOPIN_CORE_ONLY        compile only layer 1, the core (parser, JSON,
                               router...): no system call, no server; for
                               tests, fuzzing and reuse

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
       shutdown_timeout     10 s  grace period for in-flight requests, deferred
                                  responses and streams (then a stream ends
                                  with its last chunk, an unfinished deferred
                                  response gets 503)
       max_deferred    max_connections  deferred responses and streams per
                                  worker; over it: 503
       offload_threads       2    threads of the off-loop pool (started on
                                  the first ch_defer_offload)

   LOGGING, PROXIES (ch_config fields; 0 / NULL means the default shown)
       log            stderr      a ch_log_fn(level, item, message, user);
                                  by default one line on stderr
       log_level      warn        what is passed on (CH_LOG_OFF..DEBUG)
       trust_proxy    none        see CHOPIN_TRUST_PROXY
       proxy_protocol no          CH_YES: connections from trusted proxies
                                  start with a PROXY v1/v2 header
   The logger lets at most 20 lines a second through per worker, then one
   line saying how many it left out.

   BATTERIES
   ch_use_cors (CORS), ch_use_ratelimit (token buckets, 429), ch_metrics_route
   (Prometheus text), ch_mw_request_id (X-Request-Id), trusted proxies
   (ch_req_client_addr), ch_res_error_msg, ch_res_cookie, ch_res_length
   (HEAD), ch_req_param_decoded and the integer getters. Content-Type has
   one rule: a type set with ch_res_header is kept by every body call.

   READING THIS FILE
   The implementation is three layers; each uses only what is above it. Each
   section starts with a banner you can search for (">>parser") and a few
   lines on what it does and why. docs/TOUR.md is a guided reading.
     >>api           the public declarations (this is all a user needs)
   Layer 1, the core: plain C over bytes, no system call
     >>core          C library includes, allocator and assert hooks, limits
     >>utilities     byte buffer, itoa, the Date format, character classes
     >>json          the JSON writer
     >>json reader   the JSON tokenizer
     >>parser        request line and headers (RFC 9112), stateless
     >>chunked       the in-place chunked decoder
     >>responses     reason phrases and the one writer of every response head
     >>routes        FastRoute records and the router's segment tree
     >>request       header, parameter, query and cookie lookups
     >>addresses     IP literals, trusted networks, X-Forwarded-For, the
                     PROXY protocol header (v1, v2)
     >>buckets       token buckets in a bounded LRU table (rate limiting)
     >>cookies       the Set-Cookie builder; integer getters
     >>timers        the timer min-heap (a worker's timers, no clock)
     >>queue         the lock-free queue that hands work to a worker
     >>sha1          SHA-1, for the WebSocket handshake only
     >>base64        base64 encoding and strict decoding
     >>websocket frames  RFC 6455 over bytes: handshake checks, the frame
                     parser, UTF-8 validation, close codes, the frame writer
     >>mime          Content-Type by file extension
     >>paths         dot segments and file paths that cannot leave a root
     >>ranges        ETag, Last-Modified, conditional requests, Range
     >>multipart     the streaming multipart/form-data parser
   Layer 2, the OS seam: all that asks the kernel
     >>os            backend choice, clock, sockets, listen, accept, threads
     >>os epoll      the poll set, waker, ticker and signals on Linux
     >>os kqueue     ... on macOS and the BSDs
     >>os poll       ... with plain poll(2)
     >>os io_uring   ... with io_uring on Linux (epoll where it is refused)
   Layer 3, the server
     >>structs       every private server type: app, group, response,
                     connection, later response, pool, worker
     >>app           building the application: routes, groups, middleware
     >>response API  what handlers call to answer
     >>worker state  the Date cache and the timeout queues
     >>logger        the log callback or stderr, levels, rate-limited
     >>counters      per-worker metrics counters, per-worker middleware state
     >>client        the client's address behind trusted proxies
     >>answers       writing heads and bodies into the worker's output
     >>dispatch      from a parsed request to bytes: FastRoutes, middleware,
                     router, handler, after-hooks
     >>middleware    bearer auth, Server-Timing, access log
     >>request id    X-Request-Id kept or made
     >>cors          CORS (the Fetch standard), preflights before auth
     >>ratelimit     429 with Retry-After and X-RateLimit-*, per worker or exact
     >>metrics       the Prometheus text route, summed over the workers
     >>batteries     their set-up at ch_listen and freeing
     >>static        files as responses: ch_static, ch_res_file
     >>uploads       streamed request bodies; 100-continue after middleware
     >>connection    read, answer every request, write once, close
     >>later         deferred responses, streams, posts, the settle pass
     >>sse           server-sent events
     >>offload       the off-loop pool of blocking threads
     >>websocket     WebSocket connections: upgrade, frames in and out,
                     closing, keep-alive, publish/subscribe across workers
     >>accept        new connections, pausing at the limits
     >>worker loop   one pass: wait, I/O, tick
     >>config        ch_config + environment + defaults, resolved once
     >>listen        binding (or inheriting: socket activation) before any
                     worker starts
     >>restart       SIGUSR2 / ch_restart: hand-over to a new process,
                     readiness, PID file, the health route
     >>run           threads, signals, graceful stop
     >>embed         ch_poll: the server inside the caller's loop

   NOT YET
   WebSocket extensions (permessage-deflate needs zlib), HTTP/2, TLS (put a
   proxy in front); for files: multipart byteranges (several ranges get the
   whole file), a per-worker open-file cache, file bodies of deferred
   responses, pausing a streamed request body from another thread.

   LICENSE
   MIT or public domain, your choice: see the end of the file.
*/
#ifndef CHOPIN_H
#define CHOPIN_H

/* The implementation needs GNU/POSIX declarations (accept4, sched_getaffinity);
   they must be requested before the first system header is seen. */
#if defined(CHOPIN_IMPLEMENTATION) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif

#include <stddef.h>
#include <stdint.h>

#define CHOPIN_VERSION_MAJOR 0
#define CHOPIN_VERSION_MINOR 2
#define CHOPIN_VERSION_PATCH 0
#define CHOPIN_VERSION_STRING "0.2.0"

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

/* The logger (sokol style): every runtime failure is one item of this enum
   with a level, passed to ch_config.log, or by default written as one line
   on stderr for warnings and errors, at most CHI_LOG_PER_SECOND lines a
   second per worker (a flood of bad input cannot flood the log; a line
   says how many were left out). $CHOPIN_LOG=off|error|warn|info|debug. */
typedef enum ch_log_level {
    CH_LOG_DEFAULT = 0,     /* ch_config.log_level: $CHOPIN_LOG, else warn */
    CH_LOG_OFF, CH_LOG_ERROR, CH_LOG_WARN, CH_LOG_INFO, CH_LOG_DEBUG
} ch_log_level;

typedef enum ch_log_item {
    CH_LOGITEM_NONE,
    CH_LOGITEM_OUT_OF_MEMORY,    /* error: an answer could not be built (the
                                    connection is closed, never left short),
                                    or a header line the framework adds
                                    (Allow, CORS, X-Request-Id...) left out */
    CH_LOGITEM_JSON_UNFINISHED,  /* error: a handler left JSON containers open: 500 */
    CH_LOGITEM_JSON_MISUSE,      /* error: the JSON writer was misused (a value
                                    without a key, two top-level values): 500 */
    CH_LOGITEM_BAD_STATUS,       /* error: a handler's status is not 200-599: 500 */
    CH_LOGITEM_REQUEST_REFUSED,  /* info: the parser refused a request (4xx, 5xx) */
    CH_LOGITEM_TIMEOUT,          /* debug: a connection timed out */
    CH_LOGITEM_BAD_PROXY_HEADER, /* warn: a trusted proxy sent no valid PROXY header */
    CH_LOGITEM_SUPPRESSED,       /* warn: lines left out by the rate limit, or
                                    access log lines its descriptor refused */
    CH_LOGITEM_WORKER_FAILED,    /* error: a worker's event loop failed; it stopped */
    CH_LOGITEM_IO_URING_REFUSED, /* warn: CHOPIN_USE_IO_URING, but the kernel or a
                                    seccomp policy refused io_uring: epoll serves */
    CH_LOGITEM_BODY_STREAM_REFUSED, /* error: ch_req_body_stream outside a
                                    ch_route_stream handler, or without on_end:
                                    500 unless the handler answers itself */
    CH_LOGITEM_COUNT
} ch_log_item;

typedef void (*ch_log_fn)(ch_log_level level, ch_log_item item, const char *message, void *user);

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
                                SIGTERM nor restart on SIGUSR2; call
                                ch_stop() / ch_restart() instead */
    ch_log_fn log;           /* NULL: one line on stderr (warnings, errors) */
    void *log_user;
    ch_log_level log_level;  /* CH_LOG_DEFAULT: $CHOPIN_LOG, else CH_LOG_WARN */
    const char *trust_proxy; /* NULL: $CHOPIN_TRUST_PROXY, else none. Proxy
                                addresses or networks, "127.0.0.1, 10.0.0.0/8,
                                ::1": only from these are X-Forwarded-For,
                                X-Real-IP and the PROXY header believed */
    int proxy_protocol;      /* CH_YES: a connection from a trusted proxy starts
                                with a PROXY v1 or v2 header (HAProxy) */
    int max_deferred;        /* 0: max_connections; deferred responses and
                                streams per worker, over it: 503 */
    int offload_threads;     /* 0: 2; threads of the off-loop pool */
    const char *pid_file;    /* NULL: $PID_FILE, else none. Written (whole,
                                then renamed) once serving; removed at exit
                                if it still names this process */
    char **argv;             /* main's argv, NULL-terminated, for ch_restart
                                (NULL: /proc/self/cmdline on Linux) */
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
    int version_minor;       /* 1 for HTTP/1.1, 0 for HTTP/1.0; in an after-hook's
                                refused request, -1 when the version was not
                                read or was not 1.x (a 505) */
    int header_count;
    ch_header *headers;      /* header_count lines, in the worker's storage
                                (CHOPIN_MAX_HEADERS of them at most) */
    unsigned char common[CH_H_COUNT]; /* 1 + index in headers of the first
                                         line with that name, 0 if none */
    const char *body;        /* decoded body (chunked is already decoded) */
    size_t body_len;
    int param_count;
    ch_param *params;        /* param_count route parameters */
    void *user;              /* the pointer given when the route was added */
    void *ctx;               /* free for middleware to pass data to the handler;
                                NULL at the start of every request */
    const void *conn;        /* internal: the connection's peer address */
    void *worker;            /* internal: the worker serving it */
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
   segment "*name" is a wildcard that takes the rest of the path. Values are
   raw (still percent-encoded) slices of the path, but never hold a "." or
   ".." segment, raw or encoded (%2e), with '/' or '\' (raw or encoded) as
   separators: such a path does not match the route (404 unless another
   route matches), so joining a value to a directory cannot climb out.
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
    const char *cookie;      /* non-NULL: without an Authorization header, the
                                token may come from this cookie */
    const char *query;       /* ... or from this query parameter (EventSource
                                and WebSocket clients cannot set headers) */
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
/* Zero-downtime restart (what SIGUSR2 does under ch_serve): starts a new
   copy of the executable (the file at the path this one was started from,
   so a new build installed there is picked up) with the same arguments and
   environment, and passes it the listening sockets (LISTEN_FDS). Once the
   new process serves, this one stops accepting, closes its idle
   connections, finishes the requests in flight, and ch_serve returns 0. A
   new process that fails or is not ready within 30 s is killed and this one
   goes on serving (the reason goes to stderr). Returns 0 when the restart
   has begun, -1 (see ch_error) when it cannot: not under ch_serve (ch_poll
   has no restart), or the executable is unknown. Any thread. */
CHOPIN_API int ch_restart(ch_app *app);
/* A health route for a load balancer: "ok" with 200 while serving, 503
   "draining" once the server stops (a restart or a stop), so the balancer
   takes the process out before it leaves. ch_health(app, "/health") adds
   it as a GET route; the handler can also be routed like any other. */
CHOPIN_API int ch_health(ch_app *app, const char *path);
CHOPIN_API void ch_health_handler(ch_req *req, ch_res *res);

/* Embedding: the server inside the caller's own loop (a game engine, a GUI,
   a daemon that owns its main loop). After ch_listen, call ch_poll again and
   again from one thread: it runs what is ready and returns within
   timeout_ms (0: do not wait). It serves with one event loop on the calling
   thread (standard mode: cfg.workers must be 0 or 1) and installs no signal
   handling, nor changes the thread's signal mask: a file body's sendfile
   (which has no MSG_NOSIGNAL) blocks SIGPIPE around each call instead,
   where ch_serve's workers block it once at their start; a caller that
   blocks SIGPIPE on its thread itself makes that one call cheaper. Returns
   0 while serving, 1 once the server has stopped (after
   ch_stop and the graceful drain; the app can then be freed), -1 on an error
   (see ch_error). ch_poll_fd, after ch_listen, sets the server up as the
   first ch_poll would and gives a descriptor that becomes readable when
   ch_poll has work, to put in the caller's own poll/select/epoll set; it is
   -1 with the poll backend (call ch_poll on a timer there) or on an error. */
CHOPIN_API int ch_poll(ch_app *app, int timeout_ms);
CHOPIN_API int ch_poll_fd(ch_app *app);
/* The event backend this build uses: "epoll", "kqueue" or "poll". */
CHOPIN_API const char *ch_backend(void);

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

/* Files, uploads and forms (>>mime, >>paths, >>ranges, >>multipart, >>static,
   >>uploads). The parts can be compiled out: CHOPIN_NO_STATIC (ch_static,
   ch_res_file*), CHOPIN_NO_MULTIPART (the multipart parser).

   MIME types: ch_mime_type("a/b.css") or ch_mime_type("css") gives the
   Content-Type of an extension from a built-in table ("text/css;
   charset=utf-8"), "application/octet-stream" when unknown. ch_mime_set
   adds or replaces an extension for one app's file answers. */
CHOPIN_API const char *ch_mime_type(const char *path_or_ext);
CHOPIN_API int ch_mime_set(ch_app *app, const char *ext, const char *type);

#ifndef CHOPIN_NO_STATIC
/* Static files. ch_static(app, "/static", "./public", NULL) serves GET and
   HEAD /static/<path> from the directory: the body leaves through sendfile
   (never read into memory), with Content-Type by extension, a strong ETag
   (inode, size, modification time), Last-Modified, 304 for If-None-Match /
   If-Modified-Since (RFC 9110 13.2.2 order; If-Match and
   If-Unmodified-Since give 412; the dates in any of the three HTTP-date
   forms), one Range answered 206 (suffix and open ranges too; If-Range
   honoured with a strong validator: the ETag, or the Last-Modified date
   once it is a second before the response's Date, RFC 9110 8.8.2.2; an
   unsatisfiable one 416; several ranges are answered with the whole file,
   200, not multipart/byteranges, as RFC 9110 14.2 allows, or 416 when none
   of them is satisfiable; an invalid Range is ignored; on HEAD, Range is
   ignored: it is defined for GET only), Accept-Ranges: bytes. A file named
   with a trailing slash ("a.txt/") is 404: it is not a directory. With
   precompressed siblings (name.br, name.gz) and an Accept-Encoding that
   takes them, the sibling goes out with Content-Encoding; either way such a
   file's answers carry Vary: Accept-Encoding.
   Safety: the path is percent-decoded and cleaned; "..", NUL, control bytes,
   a backslash, an encoded '/' get 400; a name starting with '.' gets 404
   unless dotfiles is CH_YES; the file is opened beneath the root without
   following any symlink (openat2 RESOLVE_BENEATH where the kernel has it,
   else one openat(O_NOFOLLOW) per segment): 403. A directory serves its
   index file; there is no directory listing.
   Open-file cache (file_cache, on by default; CHOPIN_NO_FILE_CACHE compiles
   it out): each worker keeps up to CHOPIN_FILE_CACHE_SLOTS (64) files it
   opened for a mount, descriptor and stat (nginx's open_file_cache with
   open_file_cache_valid 1s). A cached file is used as it is within the
   second it was last checked (the worker's clock, advanced once a tick),
   then checked again with one fstatat that does not follow a symlink: a
   file changed, removed or replaced by a symlink is seen within about a
   second, and until then the old inode is served, never a file outside
   the root. The absence of a .br/.gz sibling is remembered the same way
   (a new sibling shows within a second). The descriptors close when the
   worker stops. */
typedef struct ch_static_opts {
    const char *index;          /* NULL: "index.html"; "": none (404) */
    const char *cache_control;  /* NULL: no Cache-Control header */
    int precompressed;          /* 0 or CH_YES: serve .br/.gz siblings; CH_NO: never */
    int dotfiles;               /* 0 or CH_NO: names starting with '.' get 404; CH_YES: served */
    int file_cache;             /* 0 or CH_YES: each worker keeps files it opened (see below); CH_NO: opens every time */
} ch_static_opts;
CHOPIN_API int ch_static(ch_app *app, const char *prefix, const char *root, const ch_static_opts *opts);
/* Answers with one file (by path, or an open descriptor that it takes over
   and closes), with the same validators, conditionals and ranges. A path
   given here is trusted: it is the application's, not the client's.
   Returns 0, or -1 with a 403/404 error answer already set. From any
   handler; on a deferred response too (ch_defer_res(d), then
   ch_defer_finish), where req may be NULL: ch_res_defer kept the request's
   If-* and Range headers for it. On another method than GET/HEAD, a
   matching If-None-Match is 412 and Range is ignored. */
CHOPIN_API int ch_res_file(ch_req *req, ch_res *res, const char *path);
CHOPIN_API int ch_res_file_fd(ch_req *req, ch_res *res, int fd, const char *name_for_type);
#endif
/* Upload files: ch_file_create makes a new file in dir (created if missing)
   under a generated name ("up-" + 16 hex digits, written to name, cap >= 20),
   exclusively, mode 0600, and returns its descriptor or -1: a client's file
   name is never used as a path. ch_file_create_named takes a name the
   application checked (no '/', '\\', control byte, or leading '.': -1) and
   creates or truncates it, never through a symlink. */
CHOPIN_API int ch_file_create(const char *dir, char *name, size_t cap);
CHOPIN_API int ch_file_create_named(const char *dir, const char *name);
CHOPIN_API int ch_file_write(int fd, const void *data, size_t len); /* all of it: 0, or -1 */
CHOPIN_API void ch_file_close(int fd);

/* Request bodies of any size. A route added with ch_route_stream has its
   handler called as soon as the head is in and the middleware let it
   through, with req->body NULL. The handler either answers at once (the
   body is then not read and the connection closes after the answer), or
   calls ch_req_body_stream: on_data then gets the body in pieces as they are
   read (chunked framing already removed); reading waits while it runs, so
   memory stays bounded whatever the size. It returns 0 to go on, or an HTTP
   status (4xx/5xx) to refuse the rest. on_end runs once: status 0 when the
   body is whole, the refusal's status (400 bad framing, 413 over max_body
   (0: 1 GiB), or on_data's) with res preset to that error, in both cases
   filling res as a handler would (res keeps the header lines and finishers
   the middleware and the handler gave it); or CH_BODY_ABORTED with req and res NULL
   when the client left or timed out: release the state only. A request
   without a body (Content-Length: 0, or no Content-Length nor
   Transfer-Encoding) is an empty stream: on_data never runs, and on_end
   runs once with status 0 as soon as the handler returns. ch_req_body_stream
   returns -1 only when misused (outside a ch_route_stream handler, or no
   on_end): it then logs CH_LOGITEM_BODY_STREAM_REFUSED and presets res to
   500, which an answer the handler makes instead replaces: never an empty
   200. Every other route reads its body whole, up to max_body_size.
   Expect: 100-continue is answered only once the route's middleware let the
   request in: a refusal (401 from auth, 404, 405) goes out instead and the
   body is never read. For a buffered route the middleware's verdict is
   kept, and only the handler runs when the body is in.
   Pausing: a consumer that finishes its work later (a disk or a queue that
   is busy) returns CH_BODY_PAUSE from on_data: those bytes were taken, and
   the server reads nothing more from that client (no timeout runs) until
   ch_body_resume(b), on the worker's thread (a timer, ch_worker_post), with
   the handle ch_req_body_handle(res) gave in the handler. The kernel's
   buffers fill and the client's sending stops: memory stays bounded.
   on_end waits for the resume too. A resume that comes first (inside
   on_data, before it returns CH_BODY_PAUSE) cancels that pause. A stale
   handle (the client left: on_end got CH_BODY_ABORTED) makes
   ch_body_resume a no-op returning -1. */
#define CH_BODY_ABORTED (-1)
#define CH_BODY_PAUSE 1
typedef int (*ch_body_fn)(ch_req *req, const char *data, size_t len, void *state);
typedef void (*ch_body_end_fn)(ch_req *req, ch_res *res, int status, void *state);
typedef struct ch_body {
    struct ch_worker *w;
    int fd;
    uint64_t serial;
} ch_body;
CHOPIN_API int ch_route_stream(ch_app *app, ch_method method, const char *pattern, ch_handler h, void *user,
                               uint64_t max_body);
CHOPIN_API int ch_req_body_stream(ch_res *res, ch_body_fn on_data, ch_body_end_fn on_end, void *state);
CHOPIN_API ch_body ch_req_body_handle(ch_res *res);
CHOPIN_API int ch_body_resume(ch_body b);

#ifndef CHOPIN_NO_MULTIPART
/* multipart/form-data (RFC 7578), streamed: feed the body in pieces of any
   size (the boundary may be split anywhere); part_begin gets each part's
   field name, file name and type (slices valid during the call only),
   part_data its bytes as they come, part_end its end. A callback that
   returns non-zero stops the parser. ch_multipart_feed returns 0 (more),
   1 (the final boundary was seen; the rest is ignored) or -1 with the reason
   in ch_multipart_error ("part headers too large", "too many parts", "part
   without a name", "malformed part header", ...); ch_multipart_finish
   says whether the final boundary came (-1: "missing final boundary").
   Limits: max_parts (0: 1000), max_header per part's header block (0: 8 KiB),
   max_total bytes fed (0: no limit). */
typedef struct ch_multipart ch_multipart;
typedef struct ch_part {
    ch_str name;             /* the field name */
    ch_str filename;         /* the client's file name (never a path to trust) */
    ch_str content_type;     /* {NULL, 0} when not sent */
    int has_filename;
    int index;               /* 0, 1, ... */
} ch_part;
typedef struct ch_multipart_limits {
    size_t max_parts, max_header;
    uint64_t max_total;
} ch_multipart_limits;
typedef struct ch_multipart_cb {
    int (*part_begin)(const ch_part *part, void *user);
    int (*part_data)(const char *data, size_t len, void *user);
    int (*part_end)(void *user);
    void *user;
} ch_multipart_cb;
/* The boundary parameter of a Content-Type "multipart/form-data; boundary=X":
   0 with the slice, or -1. */
CHOPIN_API int ch_multipart_boundary(ch_str content_type, ch_str *boundary);
CHOPIN_API ch_multipart *ch_multipart_new(const char *boundary, size_t len, const ch_multipart_limits *lim,
                                          const ch_multipart_cb *cb);
CHOPIN_API int ch_multipart_feed(ch_multipart *mp, const char *data, size_t len);
CHOPIN_API int ch_multipart_finish(ch_multipart *mp);
CHOPIN_API const char *ch_multipart_error(const ch_multipart *mp);
CHOPIN_API void ch_multipart_free(ch_multipart *mp);
#endif
/* application/x-www-form-urlencoded bodies: the next pair, decoded ('+' is
   a space) into key and value (NUL-terminated). Returns 1, 0 at the end, or
   CH_BAD / CH_TOO_LONG for a pair that does not decode or fit (the walk
   goes on past it). */
CHOPIN_API int ch_form_decode_next(ch_str *rest, char *key, size_t kcap, char *value, size_t vcap);

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

/* ---- Batteries: helpers, CORS, rate limiting, proxies, metrics ---- */

/* Route parameters and query values, decoded. ch_req_param_decoded gives
   the percent-decoded value in worker memory, valid until the handler
   returns ({NULL, 0} if absent). The integer getters return 0 and *out, or
   CH_ABSENT, or CH_BAD (not a decimal integer, or outside [lo, hi]). */
CHOPIN_API ch_str ch_req_param_decoded(ch_req *req, const char *name);
CHOPIN_API int ch_req_param_int(const ch_req *req, const char *name, long long lo, long long hi, long long *out);
CHOPIN_API int ch_req_query_int(const ch_req *req, const char *name, long long lo, long long hi, long long *out);
/* The client's address as text: the peer, or, when the peer is a trusted
   proxy (ch_config.trust_proxy), the client it names (PROXY header,
   X-Forwarded-For, X-Real-IP). The access log and the rate limiter use it. */
CHOPIN_API size_t ch_req_client_addr(const ch_req *req, char *out, size_t cap);

/* Content-Type, one rule for every call: a Content-Type set with
   ch_res_header is kept; a call that writes a body (ch_res_send, ch_res_text,
   ch_res_json, ch_res_body, ch_res_printf, ch_res_error, ch_res_error_msg)
   gives its own type only when none was set. */
/* {"detail":"<message>"}, the message JSON-escaped. */
CHOPIN_API void ch_res_error_msg(ch_res *res, int status, const char *message);
/* HEAD: the length of the body a GET would send, without building it; the
   answer to HEAD then says Content-Length: len. A HEAD answer with no body
   and no stated length has no Content-Length at all (not a false 0). */
CHOPIN_API void ch_res_length(ch_res *res, uint64_t len);
CHOPIN_API int ch_req_is_head(const ch_req *req);

/* Set-Cookie, validated: name a token, value cookie-octets (RFC 6265 4.1.1),
   no ';' or control byte in path or domain, SameSite=None only with Secure,
   the __Secure- and __Host- prefixes' rules. Returns 0, or -1 (nothing set). */
typedef enum ch_same_site { CH_SAMESITE_DEFAULT = 0, CH_SAMESITE_LAX, CH_SAMESITE_STRICT, CH_SAMESITE_NONE } ch_same_site;
typedef struct ch_cookie {
    const char *name, *value;
    const char *path, *domain;   /* NULL: not sent */
    long long max_age;           /* seconds; 0: not sent; < 0: Max-Age=0 (delete) */
    long long expires;           /* Unix time; 0: not sent */
    int secure, http_only;
    ch_same_site same_site;
} ch_cookie;
#define CH_COOKIE_MAX 4096
CHOPIN_API int ch_res_cookie(ch_res *res, const ch_cookie *cookie);
/* The same line's value without a response (for tests, or another server):
   returns its length, or -1; out gets a NUL. */
CHOPIN_API long ch_cookie_format(const ch_cookie *cookie, char *out, size_t cap);

/* Request id: keeps a client's X-Request-Id (1-64 token bytes) or makes one,
   sends it back, and gives it to the log (ch_res_request_id). */
#ifndef CHOPIN_NO_REQUEST_ID
CHOPIN_API int ch_mw_request_id(ch_req *req, ch_res *res, void *user);
#endif
CHOPIN_API ch_str ch_res_request_id(const ch_res *res);

#ifndef CHOPIN_NO_CORS
/* CORS (the Fetch standard). Allowed origins: a list, "*" for any, or a
   callback. A preflight (OPTIONS with Access-Control-Request-Method) from an
   allowed origin is answered 204 at once, before any later middleware (auth
   included); an allowed origin's other requests get
   Access-Control-Allow-Origin (and -Credentials, -Expose-Headers) and Vary:
   Origin; any other origin gets no CORS header at all. With credentials
   and "*" the origin is echoed (browsers refuse "*" with credentials). A
   request without Origin gets only Vary: Origin, so that no cache serves
   it to a CORS request. ch_use_cors registers it as app middleware (put it
   first); decisions are cached per worker. */
typedef struct ch_cors {
    const char *origins;         /* "https://a.example, https://b.example", or "*" */
    int (*allow)(const char *origin, size_t len, void *user); /* or this: 1 allow */
    void *allow_user;
    const char *methods;         /* NULL: "GET, HEAD, POST, PUT, PATCH, DELETE" */
    const char *headers;         /* NULL: "Authorization, Content-Type" */
    const char *expose;          /* NULL: none */
    int credentials;             /* Access-Control-Allow-Credentials: true */
    int max_age;                 /* seconds; 0: 600 */
} ch_cors;
CHOPIN_API int ch_use_cors(ch_app *app, const ch_cors *cors);
#endif

#ifndef CHOPIN_NO_RATELIMIT
/* Rate limiting: a token bucket per client key (the client's address, or
   key()), in a table of table_size keys that forgets the least recently
   used. A request takes a token; the bucket holds `burst` and refills at
   `rate` a second. Answers carry X-RateLimit-Limit (burst),
   X-RateLimit-Remaining (whole tokens left) and X-RateLimit-Reset (seconds
   until the bucket is full again); over the limit: 429 with Retry-After
   (whole seconds until a token, >= 1), Remaining 0 and a JSON body
   {"detail":"Too Many Requests","retry_after":N} (pre-built per worker).
   ACROSS WORKERS: by default each worker has its own table. The kernel
   spreads a client's connections over the workers (SO_REUSEPORT hashes
   each connection's addresses and ports), so a client with connections on
   k workers gets up to k * burst at once and k * rate a second sustained;
   one connection stays on one worker, so a single keep-alive connection
   sees the limit exactly. exact = 1 keeps one table for all workers behind
   a mutex: the limit is then exact whatever the workers, for a lock per
   limited request (tens of nanoseconds without contention). In both modes
   a table that is full forgets its least recently used key, and a client
   forgotten so starts again with a full bucket: size table_size above the
   number of clients active within burst / rate seconds. FastRoutes and
   `exempt` paths are never limited. With g NULL it applies to every routed
   request, else to the group's routes. */
typedef struct ch_ratelimit {
    double rate;                 /* tokens a second (> 0; above 1e9 counts as 1e9) */
    int burst;                   /* 0: rate, rounded up */
    int table_size;              /* keys kept; 0: 4096 */
    int exact;                   /* non-zero: one table for all workers */
    size_t (*key)(const ch_req *req, char *out, size_t cap, void *user); /* NULL: client address */
    void *key_user;
    const char *const *exempt;   /* NULL-terminated paths never limited */
} ch_ratelimit;
CHOPIN_API int ch_use_ratelimit(ch_app *app, ch_group *g, const ch_ratelimit *rl);
#endif

#ifndef CHOPIN_NO_METRICS
/* Metrics: per-worker counters (requests by status, bytes in and out, open
   connections, refused requests by status, timeouts, a request-duration
   histogram), kept on their own cache lines and summed when asked.
   ch_metrics_route serves them at GET path in the Prometheus text format
   (text/plain; version=0.0.4) and turns the counting on. */
CHOPIN_API int ch_metrics_route(ch_app *app, const char *path);
#endif

/* Answering later (see README.md, "Answering later" and "Streaming").
   A worker is one event-loop thread; everything below runs on the worker
   that owns the object unless it says "any thread". A handler (or a
   middleware) takes its response with ch_res_defer and returns; the
   connection stays open, later requests pipelined behind it wait, and the
   response is finished later on the same worker: from a timer, from a
   function handed over from another thread (ch_defer_post), or after
   blocking work on the off-loop pool (ch_defer_offload). A deferred
   response can also stream: a head, then body pieces with backpressure,
   then an end; server-sent events are a stream.
   A ch_defer is a handle by value (a worker and a generation-checked id):
   it stays usable until the user finishes or releases it, and using it
   after that, or after the client left, is defined: the call does nothing
   and says so (-1 or 0). Request data (ch_req) is gone once the handler
   returns: copy what the later answer needs. */
typedef struct ch_worker ch_worker;
typedef void (*ch_worker_fn)(ch_worker *w, void *user);

typedef struct ch_defer {
    ch_worker *w;            /* the worker that owns the response */
    uint64_t id;             /* 0: no response (over the cap: 503 was sent) */
} ch_defer;
typedef void (*ch_defer_fn)(ch_defer d, void *user);

/* Workers: start and stop hooks run on each worker's thread (before its
   first request, after its last); per-worker data needs no __thread. */
CHOPIN_API int ch_on_worker_start(ch_app *app, ch_worker_fn fn, void *user);
CHOPIN_API int ch_on_worker_stop(ch_app *app, ch_worker_fn fn, void *user);
CHOPIN_API ch_worker *ch_res_worker(const ch_res *res);
CHOPIN_API int ch_worker_index(const ch_worker *w);   /* 0 .. count-1 */
CHOPIN_API int ch_worker_count(const ch_worker *w);
CHOPIN_API ch_app *ch_worker_app(const ch_worker *w);
CHOPIN_API void *ch_worker_data(const ch_worker *w);
CHOPIN_API void ch_worker_set_data(ch_worker *w, void *data);
/* Worker i while the server runs (between the start hooks and ch_serve
   returning), or NULL. */
CHOPIN_API ch_worker *ch_app_worker(ch_app *app, int index);
/* Any thread: fn(w, user) runs on w's thread soon, in the order posted.
   Lock-free; a function posted while the worker stops still runs once.
   Returns 0, or -1 when out of memory. */
CHOPIN_API int ch_worker_post(ch_worker *w, ch_worker_fn fn, void *user);

/* Timers on the worker, millisecond resolution: fn runs after ms, then
   every repeat_ms (0: once). Returns a handle for ch_timer_stop, or 0 when
   out of memory. Timers still pending when the worker stops do not run. */
typedef uint64_t ch_timer;
CHOPIN_API ch_timer ch_timer_start(ch_worker *w, uint64_t ms, uint64_t repeat_ms, ch_worker_fn fn, void *user);
CHOPIN_API int ch_timer_stop(ch_worker *w, ch_timer t);  /* 0, or -1: not pending */

/* Deferred responses. ch_res_defer gives a handle; over the worker's cap
   (max_deferred) it gives id 0 and the client gets 503. Fill the response
   with ch_defer_res + the ch_res_* calls, then ch_defer_finish. */
CHOPIN_API ch_defer ch_res_defer(ch_res *res);
CHOPIN_API ch_res *ch_defer_res(ch_defer d);      /* a stale handle gets a scratch response */
CHOPIN_API int ch_defer_finish(ch_defer d);       /* 0 sent; -1 client gone or already finished */
CHOPIN_API void ch_defer_release(ch_defer d);     /* let go; unanswered: 500 */
CHOPIN_API int ch_defer_alive(ch_defer d);        /* 1 while the client waits and it is unfinished */
/* fn runs once on the worker when the response can no longer be sent: the
   client left, the deadline passed or the server stopped. Not after finish. */
CHOPIN_API int ch_defer_on_abort(ch_defer d, ch_defer_fn fn, void *user);
/* Any thread: fn(d, user) runs on d's worker (also when the client has gone:
   then ch_defer_alive says 0 and ch_defer_finish -1). 0, or -1 (no memory). */
CHOPIN_API int ch_defer_post(ch_defer d, ch_defer_fn fn, void *user);
CHOPIN_API ch_timer ch_defer_after(ch_defer d, uint64_t ms, ch_defer_fn fn, void *user);
/* After ms the client gets status (503 or 504) unless finished before; the
   abort callback runs. */
CHOPIN_API int ch_defer_deadline(ch_defer d, uint64_t ms, int status);
/* work(user) runs on a thread of the off-loop pool (ch_config
   offload_threads, default 2), then done(d, user) on d's worker. For
   blocking calls (a database, a device), not for CPU-heavy work. done
   always runs once, also when the client left or the server stops. */
CHOPIN_API int ch_defer_offload(ch_defer d, void (*work)(void *user), ch_defer_fn done, void *user);

/* Streaming. ch_defer_begin sends the head (status, Content-Type and
   headers as set on ch_defer_res); length -1 means unknown: chunked for
   HTTP/1.1, close-delimited for HTTP/1.0. Returns 0, 1 when no body will be
   sent (HEAD, 204, 304: just end), -1 gone. ch_defer_write queues a piece
   and returns 0, 1 when the queued output is over the bound (stop until
   the drain callback), -1 when the client is gone or the stream is over. A
   producer that ignores 1 until 4 times the bound is cut off. */
CHOPIN_API int ch_defer_begin(ch_defer d, int64_t length);
CHOPIN_API int ch_defer_write(ch_defer d, const void *data, size_t len);
CHOPIN_API int ch_defer_on_drain(ch_defer d, ch_defer_fn fn, void *user);
CHOPIN_API int ch_defer_end(ch_defer d);          /* ends the stream; as finish */
CHOPIN_API size_t ch_defer_queued(ch_defer d);    /* bytes not yet taken by the client */

#ifndef CHOPIN_NO_SSE
/* Server-sent events (text/event-stream). ch_sse_begin starts the stream,
   with a comment heartbeat every heartbeat_ms (0: none); ch_sse_event sends
   one event (event and id may be NULL; data is split into "data:" lines at
   CR, LF or CRLF); ch_sse_last_event_id reads the request's Last-Event-ID. */
CHOPIN_API int ch_sse_begin(ch_defer d, uint64_t heartbeat_ms);
CHOPIN_API int ch_sse_event(ch_defer d, const char *event, const char *id, const char *data, size_t len);
CHOPIN_API int ch_sse_retry(ch_defer d, uint64_t ms);
CHOPIN_API int ch_sse_comment(ch_defer d, const char *text);
CHOPIN_API ch_str ch_sse_last_event_id(const ch_req *req);
#endif


/* WebSocket (RFC 6455). A route becomes a WebSocket endpoint with
   ch_ws_route (GET; the app's middleware and the route's group middleware
   run first, so auth can refuse the upgrade), or a handler upgrades its own
   request with ch_ws_upgrade. The server checks the handshake (version 13
   only: 426 otherwise; 400 for a malformed one), answers 101, and from then
   on calls back, on the worker that owns the connection:
     on_open     once, with the request (its query, headers, cookies)
     on_message  each whole message, text (valid UTF-8) or binary;
                 fragments are joined up to max_message (over it: close 1009)
     on_drain    the output queue fell low again after a send returned 1
     on_close    once, last: the code (1005 none, 1006 the connection was
                 lost) and reason; the ch_ws is freed when it returns.
   Sends never block: a message is framed and queued. ch_ws_send returns 1
   when the queue is over CHOPIN_STREAM_BUFFER (wait for on_drain), -1 when
   the WebSocket is closing or gone; a client that takes nothing for
   write_timeout is cut, and so is one whose queue is already over 4x the
   bound when another message comes. Pings are answered for you; with
   ping_interval_ms set the server pings and cuts a client that does not
   pong within pong_timeout_ms. ch_ws_close starts the closing handshake
   (the client has 5 s to answer). On SIGTERM every WebSocket gets close
   1001 and the shutdown grace period to answer.
   Publish/subscribe: a connection subscribes to topics (on its worker);
   ch_ws_publish, from any thread, frames the message once and hands it to
   every worker through its queue; each worker queues it to its
   subscribers. No lock is taken on the send path.
   A ch_ws is valid from on_open until on_close returns, on its worker only;
   from another thread use ch_worker_post (ch_ws_worker) or publish.
   No extension is negotiated (permessage-deflate would need zlib). */
#ifndef CHOPIN_NO_WEBSOCKET
typedef struct ch_ws ch_ws;
typedef enum ch_ws_type { CH_WS_TEXT = 1, CH_WS_BINARY = 2 } ch_ws_type;

typedef struct ch_ws_opts {
    void (*on_open)(ch_ws *ws, ch_req *req);
    void (*on_message)(ch_ws *ws, ch_ws_type type, const char *data, size_t len);
    void (*on_drain)(ch_ws *ws);
    void (*on_close)(ch_ws *ws, int code, const char *reason, size_t len);
    const char *const *protocols; /* ch_ws_route: subprotocols, the server's
                                     preference first, NULL-terminated; the
                                     first one the client offers is chosen */
    size_t max_message;           /* 0: 1 MiB */
    int ping_interval_ms;         /* 0: no automatic ping */
    int pong_timeout_ms;          /* 0: ping_interval_ms */
    int idle_timeout_ms;          /* no frame from the client this long:
                                     close 1001; 0: no limit */
    void *user;                   /* each connection's ch_ws_user at first */
} ch_ws_opts;

/* opts must outlive the app (a static, or main's local). */
CHOPIN_API int ch_ws_route(ch_app *app, const char *pattern, const ch_ws_opts *opts);
/* From a handler: 0 when upgraded (return from the handler), -1 when
   refused (res holds the 400/426/503 answer). protocol: the subprotocol
   chosen among those the client offered (ch_ws_offered), or NULL. */
CHOPIN_API int ch_ws_upgrade(ch_req *req, ch_res *res, const ch_ws_opts *opts, const char *protocol);
CHOPIN_API int ch_ws_offered(const ch_req *req, const char *protocol);
CHOPIN_API int ch_ws_send(ch_ws *ws, ch_ws_type type, const void *data, size_t len); /* 0, 1 (full), -1 */
CHOPIN_API int ch_ws_send_text(ch_ws *ws, const char *text);
CHOPIN_API int ch_ws_ping(ch_ws *ws, const void *data, size_t len); /* at most 125 bytes */
/* code: 1000-1003, 1007-1014 or 3000-4999; reason: UTF-8, cut to 123 bytes. */
CHOPIN_API int ch_ws_close(ch_ws *ws, int code, const char *reason);
CHOPIN_API void *ch_ws_user(const ch_ws *ws);
CHOPIN_API void ch_ws_set_user(ch_ws *ws, void *user);
CHOPIN_API size_t ch_ws_queued(const ch_ws *ws);   /* bytes not yet taken by the client */
CHOPIN_API const char *ch_ws_protocol(const ch_ws *ws); /* chosen subprotocol, or "" */
CHOPIN_API ch_worker *ch_ws_worker(const ch_ws *ws);
CHOPIN_API ch_app *ch_ws_app(const ch_ws *ws);
/* Topics: names up to 255 bytes. ch_ws_topic gives the i-th topic this
   connection is in (in the order subscribed), or NULL. */
CHOPIN_API int ch_ws_subscribe(ch_ws *ws, const char *topic);
CHOPIN_API int ch_ws_unsubscribe(ch_ws *ws, const char *topic);
CHOPIN_API const char *ch_ws_topic(const ch_ws *ws, int i);
/* Any thread, once the server runs. Text must be valid UTF-8. Returns 0,
   or -1 (bad arguments, out of memory). */
CHOPIN_API int ch_ws_publish(ch_app *app, const char *topic, ch_ws_type type, const void *data, size_t len);
#endif

#ifdef __cplusplus
}
#endif
#endif /* CHOPIN_H */


/* ======================================================================== */
/*                            IMPLEMENTATION                                */
/* ======================================================================== */
#if defined(CHOPIN_IMPLEMENTATION) && !defined(CHOPIN_IMPLEMENTATION_DONE)
#define CHOPIN_IMPLEMENTATION_DONE

/* >>core ----------------------------------------------------------------------
   LAYER 1, THE CORE. From here to >>os everything is plain C over bytes: no
   system call, only the C library's memory, string and number functions, so
   the parser, the JSON code and the router can be read, tested and fuzzed on
   their own (CHOPIN_CORE_ONLY stops after this layer; tests/layers.sh builds
   it so and checks that no OS header was included). Everything below is
   private: `static`, with the prefix chi_. */

#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Compile-time sizes (see the doc block). Only this file's implementation
   uses them: no public struct is sized by them. */
#ifndef CHOPIN_MAX_HEADERS
#define CHOPIN_MAX_HEADERS 100
#endif
#if CHOPIN_MAX_HEADERS < 1 || CHOPIN_MAX_HEADERS > 254
#error "chopin.h: CHOPIN_MAX_HEADERS must be 1 to 254 (ch_req.common keeps 1 + an index in a byte)"
#endif
#ifndef CHOPIN_MAX_PARAMS
#define CHOPIN_MAX_PARAMS 8
#endif
#if CHOPIN_MAX_PARAMS < 1 || CHOPIN_MAX_PARAMS > 32
#error "chopin.h: CHOPIN_MAX_PARAMS must be 1 to 32"
#endif
#ifndef CHOPIN_READ_SIZE
#define CHOPIN_READ_SIZE 65536
#endif
#ifndef CHOPIN_MAX_PENDING
#define CHOPIN_MAX_PENDING ((size_t)1024 * 1024)
#endif
#ifndef CHOPIN_SERVER_NAME
#define CHOPIN_SERVER_NAME "chopin"
#endif
#ifndef CHOPIN_STREAM_BUFFER
#define CHOPIN_STREAM_BUFFER (256 * 1024)
#endif

/* Defaults for a zeroed ch_config, resolved in one place (>>config). */
#define CHI_DEFAULT_PORT 3000
#define CHI_DEFAULT_HOST "0.0.0.0"
#define CHI_DEFAULT_MAX_HEADER ((size_t)16 * 1024)
#define CHI_DEFAULT_MAX_TARGET ((size_t)8 * 1024)
#define CHI_DEFAULT_MAX_BODY ((size_t)8 * 1024 * 1024)
#define CHI_DEFAULT_MAX_CONNS 10000
#define CHI_DEFAULT_IDLE_TIMEOUT 60
#define CHI_DEFAULT_HEADER_TIMEOUT 20
#define CHI_DEFAULT_BODY_TIMEOUT 30
#define CHI_DEFAULT_WRITE_TIMEOUT 30
#define CHI_DEFAULT_SHUTDOWN_TIMEOUT 10
#define CHI_DEFAULT_BACKLOG 4096

/* Limits, named once. */
#define CHI_MAX_WORKERS 1024          /* CHOPIN_WORKERS; also the listener array */
#define CHI_MAX_LISTENERS CHI_MAX_WORKERS
#define CHI_ACCEPT_BATCH 64           /* accepts per listener wake-up */
#define CHI_LINGER_TIMEOUT 5          /* seconds a closing socket is drained */
#define CHI_LINGER_MAX ((size_t)256 * 1024) /* bytes drained before giving up */
#define CHI_MAX_METHOD_LEN 32         /* longer method tokens get 501 */
#define CHI_OUT_KEEP ((size_t)256 * 1024) /* the worker's output buffer shrinks back to this */
#define CHI_MAX_PREFIX 256            /* a group's whole prefix, parents' included */
#define CHI_MAX_PATTERN 512           /* a group's prefix + a route pattern */
#define CHI_MAX_HOST 256              /* HOST / cfg.host */
#define CHI_MAX_PATH 1024             /* PID_FILE, the executable's path */
#define CHI_DEFAULT_RESTART_TIMEOUT 30 /* seconds a successor has to be ready */
#define CHI_ERROR_LEN 256             /* ch_error's message */
#define CHI_MAX_FINISHERS 4           /* ch_res_on_finish calls per response */
#define CHI_MAX_SLOTS 32              /* CORS and rate limit registrations per app */
#define CHI_JSON_NUMBER_MAX 512       /* bytes of a number ch_json_get_double reads */
#define CHI_HELD_INPUT CHOPIN_READ_SIZE /* input held behind a later response: reading pauses */
#define CHI_STREAM_LOW (CHOPIN_STREAM_BUFFER / 4) /* a stream's queue this low: drain callback */
#define CHI_STREAM_CUT (4 * (size_t)CHOPIN_STREAM_BUFFER) /* a producer that ignores "wait": cut */
#define CHI_DEFAULT_OFFLOAD_THREADS 2

/* Keeps a function out of line. The answering-later code (>>later, >>sse,
   >>offload) is kept so: inlined, its helpers would use up the compiler's
   budget for a unit's growth, and the synchronous fast path (whose small
   helpers are then left out of line) would pay for code it never runs. */
#if defined(__GNUC__) || defined(__clang__)
#define CHI_OUTLINE __attribute__((noinline))
#else
#define CHI_OUTLINE
#endif

/* >>utilities ---------------------------------------------------------------
   A growable byte buffer, integer formatting, the Date header, and the
   character classes of RFC 9110/9112 as one lookup table. */

typedef struct chi_buf {
    char *ptr;
    size_t len, cap;
} chi_buf;

/* The slow half of chi_buf_reserve: the buffer grows (doubling). */
static int chi_buf_grow(chi_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;
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

/* Makes room for `extra` more bytes. Returns 0, or -1 when out of memory.
   The check that almost always succeeds is kept small enough to inline. */
static int chi_buf_reserve(chi_buf *b, size_t extra)
{
    return b->cap - b->len >= extra ? 0 : chi_buf_grow(b, extra);
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

/* How many decimal digits v has (1 to 20). */
static size_t chi_digit_count(uint64_t v)
{
    size_t n = 1;
    uint64_t ten_n = 10; /* 10^n; the n < 20 guard stops before it overflows */
    while (n < 20 && v >= ten_n) {
        n++;
        ten_n *= 10;
    }
    return n;
}

/* Unsigned integer to decimal, two digits per division, written from the
   last digit back straight into `out` (the length is counted first, so no
   second copy); `out` needs 20 bytes. Returns the number of digits. No
   printf on the hot path. */
static size_t chi_utoa(uint64_t v, char *out)
{
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    size_t n = chi_digit_count(v), i = n;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        i -= 2;
        memcpy(out + i, pairs + 2 * (size_t)r, 2);
    }
    if (v >= 10)
        memcpy(out, pairs + 2 * v, 2);
    else
        out[0] = (char)('0' + v);
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
     URI    bytes allowed in a request-target: RFC 3986's (without '#'),
            and " ^ ` { | } which browsers send unencoded (nginx and Node
            take them; none can end a request-target early)
     VALUE  field-value bytes: VCHAR, obs-text, SP, HTAB (RFC 9110 5.5)
     HEX    hexadecimal digits
     HOST   bytes of uri-host [":" port], IP literals included
     PATH   URI bytes that need no second look: all but '%' and '?'
     JSON   bytes a JSON string holds as they are: 0x20-0x7F but '"', '\\'
     REGNAME  HOST bytes but ':', '[' and ']': a reg-name or IPv4 address */
enum {
    CHI_TOKEN = 1, CHI_URI = 2, CHI_VALUE = 4, CHI_HEX = 8, CHI_HOST = 16, CHI_PATH = 32, CHI_JSON = 64,
    CHI_REGNAME = 128
};
static const unsigned char chi_cclass[256] = {
      0,   0,   0,   0,   0,   0,   0,   0,   0,   4,   0,   0,   0,   0,   0,   0,
      0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
     68, 247,  38,  69, 247, 215, 247, 247, 246, 246, 247, 247, 246, 247, 247, 102,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 118, 246,  68, 246,  68,  70,
    102, 255, 255, 255, 255, 255, 255, 247, 247, 247, 247, 247, 247, 247, 247, 247,
    247, 247, 247, 247, 247, 247, 247, 247, 247, 247, 247, 118,   4, 118, 103, 247,
    103, 255, 255, 255, 255, 255, 255, 247, 247, 247, 247, 247, 247, 247, 247, 247,
    247, 247, 247, 247, 247, 247, 247, 247, 247, 247, 247, 102, 103, 102, 247,  64,
      4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,
      4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,
      4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,
      4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,
      4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,
      4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,
      4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,
      4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,
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
/* Are the n bytes at a and b the same? A word at a time, inline (the
   values compared here, paths, segments, a Host, are short, and a call to
   memcmp costs more). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
static inline int chi_eq_short(const char *a, const char *b, size_t n)
{
    size_t i;
    uint32_t x, y;
    if (n >= 8) {
        for (i = 0; n - i > 8; i += 8)
            if (chi_load8(a + i) != chi_load8(b + i)) return 0;
        return chi_load8(a + (n - 8)) == chi_load8(b + (n - 8));
    }
    if (n >= 4) {
        memcpy(&x, a, 4);
        memcpy(&y, b, 4);
        if (x != y) return 0;
        memcpy(&x, a + (n - 4), 4);
        memcpy(&y, b + (n - 4), 4);
        return x == y;
    }
    for (i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static char chi_lower(char c)
{
    if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
    return c;
}

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

/* The slow path of chi_json_reserve: grow the buffer. Out of line, so the
   writer's small calls stay small. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
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

/* Called before every value and key: returns ',' when a comma is due
   before it, else 0 (the caller writes it with the value). A value in an
   object must follow its key. */
static char chi_json_comma(ch_json *j, int is_key)
{
    uint64_t bit;
    if (j->after_key) {
        j->after_key = 0;
        return 0;
    }
    if (j->depth == 0) {
        if (j->len) j->failed = 1; /* a second top-level value */
        return 0;
    }
    if (!is_key && !chi_json_in_array(j)) j->failed = 1;
    bit = (uint64_t)1 << (j->depth - 1);
    if (j->fresh & bit) {
        j->fresh &= ~bit;
        return 0;
    }
    return ',';
}

/* Writes the comma before a value if one is due. */
static void chi_json_sep(ch_json *j)
{
    if (chi_json_comma(j, 0)) chi_json_char(j, ',');
}

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

/* Does this word of eight string bytes hold one that needs a closer look:
   a control byte, a byte >= 0x80, '"' or '\\'? */
static uint64_t chi_json_word_special(uint64_t x)
{
    /* chi_has_below(x, 0x20) | chi_has_byte(x, '"') | chi_has_byte(x, '\\')
       | (x & CHI_HIGHS), in fewer steps: the three tests share their "& ~x"
       (x ^ '"' and x ^ '\\' keep x's high bits), and a borrow can only start
       at a byte that is special itself, so the answer is still exact */
    uint64_t q = x ^ (CHI_ONES * '"'), b = x ^ (CHI_ONES * '\\');
    return ((((x - CHI_ONES * 0x20) | (q - CHI_ONES) | (b - CHI_ONES)) & ~x) | x) & CHI_HIGHS;
}

/* 0 to 3 bytes: the first, middle and last byte are all of them. */
static inline int chi_json_plain3(char *o, const char *s, size_t n)
{
    size_t i = n >> 1;
    if (n == 0) return 1;
    if (!(chi_cclass[(unsigned char)s[0]] & chi_cclass[(unsigned char)s[i]] & chi_cclass[(unsigned char)s[n - 1]] &
          CHI_JSON))
        return 0;
    o[0] = s[0];
    o[i] = s[i];
    o[n - 1] = s[n - 1];
    return 1;
}

/* chi_json_plain's last step, for 1 to 7 bytes: two halves that may
   overlap (4 to 7), checked as one word, or three bytes by the table.
   Forced inline: both callers are on the JSON writer's hot path. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
static inline int chi_json_plain7(char *o, const char *s, size_t n)
{
    uint32_t a, b;
    if (n >= 4) {
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        if (chi_json_word_special((uint64_t)a | (uint64_t)b << 32)) return 0;
        memcpy(o, &a, 4);
        memcpy(o + n - 4, &b, 4);
        return 1;
    }
    return chi_json_plain3(o, s, n);
}

/* The usual string, with nothing to escape, checked and copied a word at a
   time: words of eight bytes, the last one overlapping the one before it
   (so a 13-byte string is two words, and no byte past the string is read);
   4 to 7 bytes as two overlapping halves checked as one word; 1 to 3 bytes
   by the table (chi_json_plain3). Writes to o and returns 1, or returns 0 when a byte
   needs escaping (the caller then starts again with the general loop, over
   whatever this wrote). */
static int chi_json_plain(char *o, const char *s, size_t n)
{
    size_t i;
    if (n >= 8) {
        for (i = 0; n - i > 8; i += 8) {
            uint64_t x = chi_load8(s + i);
            if (chi_json_word_special(x)) return 0;
            memcpy(o + i, &x, 8);
        }
        if (chi_json_word_special(chi_load8(s + n - 8))) return 0;
        memcpy(o + n - 8, s + n - 8, 8);
        return 1;
    }
    return chi_json_plain7(o, s, n);
}

/* Writes a quoted, escaped string, with the comma before it and the colon
   after it when `before` / `after` are not 0 (one writer call for a whole
   key or value). One capacity check covers the worst case; the usual
   string takes chi_json_plain's few words, the general loop copies words of
   eight bytes that need no escape whole and escapes the rest. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline)) /* kept out of the short strings' inline path */
#endif
static void chi_json_quoted(ch_json *j, char before, const char *str, size_t n, char after)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    char *o;
    /* worst case: every byte becomes \u00XX (6 bytes) or U+FFFD (6 bytes) */
    if (n > ((size_t)-1 - 4) / 6 || chi_json_reserve(j, n * 6 + 4) < 0) {
        j->failed = 1;
        return;
    }
    o = j->buf + j->len;
    if (before) *o++ = before;
    *o++ = '"';
    if (chi_json_plain(o, str, n)) {
        o += n;
        i = n;
    }
    while (i < n) {
        unsigned char c;
        while (n - i >= 8) {
            uint64_t x = chi_load8(str + i);
            /* a control byte, a byte >= 0x80, '"' or '\\' needs a closer look */
            if (chi_json_word_special(x)) break;
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
    if (after) *o++ = after;
    j->len = (size_t)(o - j->buf);
}

/* chi_json_plain for 1 to 16 bytes, straight-line: two words that may
   overlap (8 to 16 bytes), two halves (4 to 7), or three bytes (1 to 3). */
static inline int chi_json_plain16(char *o, const char *s, size_t n)
{
    uint64_t x, y;
    if (n >= 8) {
        x = chi_load8(s);
        y = chi_load8(s + n - 8);
        if (chi_json_word_special(x) | chi_json_word_special(y)) return 0;
        memcpy(o, &x, 8);
        memcpy(o + n - 8, &y, 8);
        return 1;
    }
    return chi_json_plain7(o, s, n);
}

/* The usual key or value, up to 16 bytes with nothing to escape, inline:
   one room check for the most it can write (20 bytes), no call. Returns 0
   when it is not that string: chi_json_quoted then writes it. */
static int chi_json_quoted_short(ch_json *j, char before, const char *str, size_t n, char after)
{
    char *o;
    if (n > 16 || j->cap - j->len < 20 || j->failed) return 0;
    o = j->buf + j->len;
    *o = before; /* a 0 is overwritten: there is room for it */
    o += before != 0;
    *o++ = '"';
    if (!chi_json_plain16(o, str, n)) return 0;
    o += n;
    *o++ = '"';
    *o = after;
    o += after != 0;
    j->len = (size_t)(o - j->buf);
    return 1;
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline)) /* the words' constants would cost the tiny path its registers */
#endif
static void chi_json_string_more(ch_json *j, char before, const char *str, size_t n, char after)
{
    if (!chi_json_quoted_short(j, before, str, n, after)) chi_json_quoted(j, before, str, n, after);
}

/* A key or value: up to 3 plain bytes ("id", "42") right here, the rest
   by the word-at-a-time path or the general writer. */
static void chi_json_string(ch_json *j, char before, const char *str, size_t n, char after)
{
    char *o;
    if (n <= 3 && j->cap - j->len >= 7 && !j->failed) {
        o = j->buf + j->len;
        *o = before; /* a 0 is overwritten: there is room for it */
        o += before != 0;
        *o++ = '"';
        if (chi_json_plain3(o, str, n)) {
            o += n;
            *o++ = '"';
            *o = after;
            o += after != 0;
            j->len = (size_t)(o - j->buf);
            return;
        }
    }
    chi_json_string_more(j, before, str, n, after);
}

CHOPIN_API void ch_json_keyn(ch_json *j, const char *key, size_t len)
{
    char before;
    if (j->depth == 0 || j->after_key || chi_json_in_array(j)) {
        j->failed = 1;
        return;
    }
    before = chi_json_comma(j, 1);
    j->after_key = 1; /* first: the string is then the last call (a jump) */
    chi_json_string(j, before, key, len, ':');
}

CHOPIN_API void ch_json_key(ch_json *j, const char *key) { ch_json_keyn(j, key, strlen(key)); }

CHOPIN_API void ch_json_strn(ch_json *j, const char *s, size_t len) { chi_json_string(j, chi_json_comma(j, 0), s, len, 0); }

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
    size_t n = chi_itoa((int64_t)v, tmp);
    chi_json_sep(j);
    chi_json_raw(j, tmp, n);
}

CHOPIN_API void ch_json_uint(ch_json *j, unsigned long long v)
{
    char tmp[24];
    size_t n = chi_utoa((uint64_t)v, tmp);
    chi_json_sep(j);
    chi_json_raw(j, tmp, n);
}

/* The shortest of %.15g, %.16g, %.17g that reads back as the same double:
   %.17g always round-trips, the shorter forms look like what people wrote.
   A locale that uses ',' as the decimal point is undone. */
CHOPIN_API void ch_json_double(ch_json *j, double v)
{
    char tmp[40];
    int prec, n = 0, i;
    if (isnan(v) || isinf(v)) {
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

/* Unescapes one character of a validated string at *s into enc (1 to 4
   UTF-8 bytes); returns how many. */
static size_t chi_jt_unescape(const char **sp, char enc[4])
{
    const char *s = *sp;
    size_t k = 1;
    unsigned u;
    if (*s != '\\') {
        enc[0] = *s;
        *sp = s + 1;
        return 1;
    }
    switch (s[1]) {
    case 'b': enc[0] = '\b'; break;
    case 'f': enc[0] = '\f'; break;
    case 'n': enc[0] = '\n'; break;
    case 'r': enc[0] = '\r'; break;
    case 't': enc[0] = '\t'; break;
    case 'u':
        chi_jp_hex4(s + 2, &u);
        s += 4;
        if (u >= 0xD800 && u <= 0xDBFF) { /* a pair, checked by the parser */
            unsigned lo;
            chi_jp_hex4(s + 4, &lo);
            s += 6;
            u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
        }
        if (u < 0x80) { /* the code point as UTF-8 */
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
    default: enc[0] = s[1]; break; /* " \ / */
    }
    *sp = s + 2;
    return k;
}

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
        size_t k = chi_jt_unescape(&s, enc);
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

/* Does string token t spell key[0, n)? Escapes are decoded on the fly, so a
   key of any length compares (no buffer, no silent "not found"). */
static int chi_jt_key_is(const ch_jdoc *d, int t, const char *key, size_t n)
{
    const ch_jtok *k = &d->tok[t];
    const char *s = d->src + k->start, *end = d->src + k->end;
    size_t len = k->end - k->start, at = 0;
    if (!memchr(s, '\\', len)) return len == n && memcmp(s, key, n) == 0;
    while (s < end) {
        char enc[4];
        size_t m = chi_jt_unescape(&s, enc);
        if (at + m > n || memcmp(key + at, enc, m) != 0) return 0;
        at += m;
    }
    return at == n;
}

static int chi_json_findn(const ch_jdoc *d, int obj, const char *key, size_t n)
{
    uint32_t i, t;
    if (ch_json_type(d, obj) != CH_JSON_OBJECT) return -1;
    t = (uint32_t)obj + 1;
    for (i = 0; i < d->tok[obj].count; i++) {
        uint32_t value = t + 1;
        if (chi_jt_key_is(d, (int)t, key, n)) return (int)value;
        t = d->tok[value].next;
    }
    return -1;
}

CHOPIN_API int ch_json_find(const ch_jdoc *d, int obj, const char *key) { return chi_json_findn(d, obj, key, strlen(key)); }

CHOPIN_API int ch_json_at(const ch_jdoc *d, int arr, int index)
{
    uint32_t i, t;
    if (ch_json_type(d, arr) != CH_JSON_ARRAY || index < 0 || (uint32_t)index >= d->tok[arr].count) return -1;
    t = (uint32_t)arr + 1;
    for (i = 0; i < (uint32_t)index; i++) t = d->tok[t].next;
    return (int)t;
}

/* An array index: digits only, below 2^31. */
static int chi_path_index(const char *s, size_t n)
{
    long v = 0;
    size_t i;
    if (n == 0) return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
        if (v > 0x7FFFFFFF) return -1;
    }
    return (int)v;
}

CHOPIN_API int ch_json_path(const ch_jdoc *d, int t, const char *path)
{
    while (*path && t >= 0) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (ch_json_type(d, t) == CH_JSON_ARRAY) {
            int idx = chi_path_index(path, n);
            t = idx < 0 ? -1 : ch_json_at(d, t, idx);
        } else {
            t = chi_json_findn(d, t, path, n);
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
    char tmp[CHI_JSON_NUMBER_MAX];
    size_t n, i;
    /* localeconv reads the process locale: safe while no thread calls
       setlocale, which a server has no reason to do once running */
    const char *point = localeconv()->decimal_point; /* NOLINT(concurrency-mt-unsafe) */
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
    uint32_t x, y;
    /* the same test a word at a time: eight bytes, the last word
       overlapping the one before; 4 to 7 bytes as two overlapping halves */
    if (n >= 8) {
        for (i = 0; n - i > 8; i += 8)
            if ((chi_load8(s + i) | CHI_ONES * 0x20) != chi_load8(lower + i)) return 0;
        return (chi_load8(s + (n - 8)) | CHI_ONES * 0x20) == chi_load8(lower + (n - 8));
    }
    if (n >= 4) {
        memcpy(&x, s, 4);
        memcpy(&y, lower, 4);
        if ((x | 0x20202020u) != y) return 0;
        memcpy(&x, s + (n - 4), 4);
        memcpy(&y, lower + (n - 4), 4);
        return (x | 0x20202020u) == y;
    }
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
    int count, chunked, last_chunked;
} chi_te_tokens;

static void chi_te_token(const char *t, size_t n, void *ctx)
{
    chi_te_tokens *te = (chi_te_tokens *)ctx;
    te->count++;
    te->last_chunked = n == 7 && chi_ieq(t, "chunked", 7);
    te->chunked += te->last_chunked;
}

/* uri-host [ ":" port ] (RFC 9112 3.2, RFC 3986 3.2.2): an IP literal in
   brackets (hex digits, ':' and '.'), or a reg-name / IPv4 address without
   ':' or brackets; then optionally ':' and digits. Skips it from p and
   returns where it stops (end, or the first byte that is not a host byte),
   or NULL when a host byte is out of place ("foo:1:2", "[zz]", "a]b"). One
   pass, the same one that scans a Host value. */
static const char *chi_skip_authority(const char *p, const char *end)
{
    if (p < end && *p == '[') {
        const char *open = p;
        for (p++; p < end && *p != ']'; p++)
            if (!chi_is((unsigned char)*p, CHI_HEX) && *p != ':' && *p != '.') return NULL;
        if (p == end) return end;
        if (p == open + 1) return NULL; /* "[]" */
        p++;
    } else {
        p = chi_skip_class(p, end, CHI_REGNAME);
    }
    if (p < end && *p == ':')
        for (p++; p < end && (unsigned char)(*p - '0') < 10; p++) {}
    return p < end && chi_is((unsigned char)*p, CHI_HOST) ? NULL : p;
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
        t = chi_skip_authority(t, end);
        if (!t || t == auth || (t < end && *t != '/' && *t != '?')) return -400;
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

/* chi_parse_head is a sequence of steps, each over the cursor *pp: a step
   returns 1 when its part is complete (and moves the cursor past it), 0 when
   the bytes ran out first, or -status when the part is malformed. */
/* A step's "not whole yet" (0) or refusal (-status) as chi_parse_head's answer. */
static long chi_step_end(int step, size_t len, const chi_limits *lim) { return step == 0 ? chi_need_more(len, lim) : step; }

/* What the field lines said about framing and the connection. */
typedef struct chi_fields {
    int host_count, cl_seen, te_seen;
    uint64_t cl;
    chi_conn_tokens conn;
    chi_te_tokens te;
} chi_fields;

/* method SP ("GET " is common enough for a fast path) */
static int chi_parse_method(const char **pp, const char *end, ch_req *req)
{
    const char *p = *pp, *s = p;
    if (end - p >= 4 && memcmp(p, "GET ", 4) == 0) {
        p += 3;
        req->method = CH_GET;
    } else {
        const char *stop = end - p > CHI_MAX_METHOD_LEN ? p + CHI_MAX_METHOD_LEN + 1 : end;
        while (p < stop && chi_is((unsigned char)*p, CHI_TOKEN)) p++;
        if (p - s > CHI_MAX_METHOD_LEN) return -501;
        if (p == end) return 0;
        if (*p != ' ' || p == s) return -400;
        req->method = chi_method_of(s, (size_t)(p - s));
    }
    req->method_name = chi_str(s, (size_t)(p - s));
    *pp = p + 1;
    return 1;
}

/* request-target SP, in one pass: '%' must start a %XX escape, and the
   first '?' starts the query (*q). */
static int chi_parse_target(const char **pp, const char *end, const chi_limits *lim, ch_req *req, const char **q)
{
    const char *p = *pp, *s = p;
    for (;;) {
        p = chi_skip_class(p, end, CHI_PATH);
        if (p == end || (size_t)(p - s) > lim->max_target) break;
        if (*p == '?') {
            if (!*q) *q = p;
            p++;
        } else if (*p == '%') {
            if (end - p < 3) { /* an escape cut by the end of the bytes so far */
                if (end - p == 2 && !chi_is((unsigned char)p[1], CHI_HEX)) return -400;
                return 0;
            }
            if (!chi_is((unsigned char)p[1], CHI_HEX) || !chi_is((unsigned char)p[2], CHI_HEX)) return -400;
            p += 3;
        } else {
            break;
        }
    }
    if ((size_t)(p - s) > lim->max_target) return -414;
    if (p == end) return 0;
    if (*p != ' ' || p == s) return -400;
    req->target = chi_str(s, (size_t)(p - s));
    *pp = p + 1;
    return 1;
}

/* HTTP-version CRLF */
static int chi_parse_version_line(const char **pp, const char *end, ch_req *req)
{
    if (end - *pp >= 10 && memcmp(*pp, "HTTP/1.1\r\n", 10) == 0) {
        req->version_minor = 1;
    } else {
        int r = chi_parse_version(*pp, end, &req->version_minor);
        if (r <= 0) return r;
    }
    *pp += 10;
    return 1;
}

/* The few fields that decide framing and the connection's fate. */
static int chi_note_field(int id, const char *value, size_t vlen, chi_head *h, chi_fields *f)
{
    switch (id) {
    case CH_H_HOST:
        f->host_count++; /* its bytes and shape were checked as they were scanned */
        break;
    case CH_H_EXPECT:
        if (vlen == 12 && chi_ieq(value, "100-continue", 12))
            h->expect_continue = 1;
        else
            return -417;
        break;
    case CH_H_CONNECTION:
        chi_each_token(value, vlen, chi_conn_token, &f->conn);
        break;
    case CH_H_CONTENT_LENGTH: {
        uint64_t v;
        if (chi_parse_length(value, vlen, &v) < 0) return -400;
        if (f->cl_seen && v != f->cl) return -400;
        f->cl = v;
        f->cl_seen = 1;
        break;
    }
    case CH_H_TRANSFER_ENCODING:
        f->te_seen = 1;
        chi_each_token(value, vlen, chi_te_token, &f->te);
        break;
    default:
        break;
    }
    return 1;
}

/* The last Host field line a worker found valid, whole ("Host: v\r\n"). A
   keep-alive client sends the same Host line on every request, so one
   comparison replaces the scans of its name and value: the parse of a field
   line depends on its bytes alone, and a line is stored only once it was
   scanned and accepted. Stateless otherwise: the memo changes no result,
   only what a repeated line costs (tests/unit.c and the parser fuzz target
   parse with and without it). */
#define CHI_HOST_MEMO_MAX 64
/* Other field lines a client repeats (Origin, User-Agent, Accept, ...) are
   kept the same way, one per slot chosen by three of their first bytes; a
   line shorter than CHI_MEMO_MIN is cheap to scan and never looked up. */
#define CHI_MEMO_SLOTS 8 /* a power of 2 */
#define CHI_MEMO_MIN 10
typedef struct chi_memo_line {
    unsigned char line_len; /* 0: nothing stored */
    unsigned char name_len, value_off, value_len;
    signed char id; /* chi_header_id of the name, -1: none */
    char line[CHI_HOST_MEMO_MAX];
} chi_memo_line;
typedef struct chi_parse_memo {
    unsigned char line_len; /* the Host line; 0: nothing stored */
    unsigned char value_off, value_len;
    char line[CHI_HOST_MEMO_MAX];
    chi_memo_line other[CHI_MEMO_SLOTS];
} chi_parse_memo;

/* The slot of a field line starting at p (at least CHI_MEMO_MIN bytes). */
static unsigned chi_memo_slot(const char *p)
{
    return ((unsigned)(unsigned char)p[0] + 2u * (unsigned char)p[2] + (unsigned char)p[8]) & (CHI_MEMO_SLOTS - 1);
}

/* Records an accepted field line as req's next header. */
static int chi_add_field(ch_req *req, chi_head *h, chi_fields *f, int id, const char *name, size_t nlen,
                         const char *value, size_t vlen)
{
    if (req->header_count == CHOPIN_MAX_HEADERS) return -431;
    req->headers[req->header_count].name = chi_str(name, nlen);
    req->headers[req->header_count].value = chi_str(value, vlen);
    req->header_count++;
    if (id < 0) return 1;
    if (!req->common[id]) req->common[id] = (unsigned char)req->header_count;
    return chi_note_field(id, value, vlen, h, f);
}

/* Keeps an accepted Host line [line, line_end) in the memo when it fits. */
static void chi_memo_host(chi_parse_memo *memo, const char *line, const char *line_end, const char *value, size_t vlen)
{
    size_t n = (size_t)(line_end - line);
    if (!memo || n > CHI_HOST_MEMO_MAX) return;
    memcpy(memo->line, line, n);
    memo->line_len = (unsigned char)n;
    memo->value_off = (unsigned char)(value - line);
    memo->value_len = (unsigned char)vlen;
}

/* Keeps another accepted field line in its slot when it fits. */
static void chi_memo_other(chi_parse_memo *memo, const char *line, const char *line_end, size_t nlen, int id,
                           const char *value, size_t vlen)
{
    size_t n = (size_t)(line_end - line);
    chi_memo_line *m;
    if (!memo || n > CHI_HOST_MEMO_MAX || n < CHI_MEMO_MIN) return;
    m = &memo->other[chi_memo_slot(line)];
    memcpy(m->line, line, n);
    m->line_len = (unsigned char)n;
    m->name_len = (unsigned char)nlen;
    m->value_off = (unsigned char)(value - line);
    m->value_len = (unsigned char)vlen;
    m->id = (signed char)id;
}

/* The field line at p if the memo holds it, byte for byte: its entry, or NULL. */
static const chi_memo_line *chi_memo_find(const chi_parse_memo *memo, const char *p, const char *end)
{
    const chi_memo_line *m;
    if (end - p < CHI_MEMO_MIN) return NULL;
    m = &memo->other[chi_memo_slot(p)];
    if (m->line_len && (size_t)(end - p) >= m->line_len && chi_eq_short(p, m->line, m->line_len)) return m;
    return NULL;
}

/* One field line, or the empty line that ends the head (returns 2). */
static int chi_parse_field(const char **pp, const char *end, ch_req *req, chi_head *h, chi_fields *f,
                           chi_parse_memo *memo)
{
    const char *p = *pp, *name, *value, *vend;
    size_t nlen, vlen;
    int id;
    if (p == end) return 0;
    if (*p == '\r') {
        if (p + 1 == end) return 0;
        if (p[1] != '\n') return -400;
        *pp = p + 2;
        return 2;
    }
    /* the Host line this worker accepted last, byte for byte */
    if (memo && memo->line_len && (size_t)(end - p) >= memo->line_len && chi_eq_short(p, memo->line, memo->line_len)) {
        *pp = p + memo->line_len;
        return chi_add_field(req, h, f, CH_H_HOST, p, 4, p + memo->value_off, memo->value_len);
    }
    /* another line this worker accepted lately, byte for byte */
    if (memo) {
        const chi_memo_line *m = chi_memo_find(memo, p, end);
        if (m) {
            *pp = p + m->line_len;
            return chi_add_field(req, h, f, m->id, p, m->name_len, p + m->value_off, m->value_len);
        }
    }
    /* a line that starts with whitespace is obs-fold (RFC 9112 5.2) */
    if (*p == ' ' || *p == '\t') return -400;
    name = p;
    p = chi_skip_class(p, end, CHI_TOKEN);
    if (p == end) return 0;
    if (*p != ':' || p == name) return -400; /* includes space before ':' */
    nlen = (size_t)(p - name);
    id = chi_header_id(name, nlen);
    p++;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    value = p;
    /* a Host value is checked as it is scanned: uri-host [":" port], then
       optional whitespace, may come before the CR */
    if (id == CH_H_HOST) {
        p = chi_skip_authority(p, end);
        /* no host at all ("Host:", "Host: :80"): an http URI's host is never
           empty (RFC 9110 4.2.1), so the target's authority is invalid */
        if (!p || (p < end && (p == value || *value == ':'))) return -400;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
    } else {
        p = chi_skip_value(p, end);
    }
    if (p == end) return 0;
    /* CR must end the line: a bare CR, a lone LF, NUL or any other control
       byte in a value is refused */
    if (*p != '\r') return -400;
    if (p + 1 == end) return 0;
    if (p[1] != '\n') return -400;
    vend = p;
    while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t')) vend--;
    vlen = (size_t)(vend - value);
    *pp = p + 2;
    if (id == CH_H_HOST)
        chi_memo_host(memo, name, p + 2, value, vlen);
    else
        chi_memo_other(memo, name, p + 2, nlen, id, value, vlen);
    return chi_add_field(req, h, f, id, name, nlen, value, vlen);
}

/* After the head: Host, then the body's framing and keep-alive. */
static long chi_decide_framing(const ch_req *req, const chi_limits *lim, const chi_fields *f, chi_head *h)
{
    /* RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one in 1.0 */
    if (f->host_count > 1 || (f->host_count == 0 && req->version_minor == 1)) return -400;
    h->body_kind = CHI_BODY_NONE;
    h->content_length = 0;
    if (f->te_seen) {
        /* chunked must be the last coding, and only once; TE with CL, or in
           HTTP/1.0, is a framing error (RFC 9112 6.1, 6.3). A coding before
           chunked ("gzip, chunked") is well framed but one we do not
           decode: 501 (RFC 9112 6.1). */
        if (!f->te.last_chunked || f->te.chunked != 1 || f->cl_seen || req->version_minor == 0) return -400;
        if (f->te.count != 1) return -501;
        h->body_kind = CHI_BODY_CHUNKED;
    } else if (f->cl_seen) {
        if (f->cl > lim->max_body) return -413;
        h->content_length = f->cl;
        if (f->cl > 0) h->body_kind = CHI_BODY_LENGTH;
    }
    h->keep_alive = req->version_minor == 1 ? !f->conn.close : (f->conn.keep_alive && !f->conn.close);
    return 1;
}

/* chi_parse_head with a worker's memo (NULL: none); the same answers. */
static long chi_parse_head_memo(const char *buf, size_t len, const chi_limits *lim, ch_req *req, chi_head *h,
                                chi_parse_memo *memo)
{
    /* Only the first max_header bytes are looked at: a head must fit in
       them, final CRLF included. So the answer never depends on how the
       bytes were split: a prefix gives "need more", or the same answer. */
    const char *p = buf, *end = buf + (len > lim->max_header ? lim->max_header : len), *q = NULL;
    chi_fields f;
    int step;
    long r;
    memset(&f, 0, sizeof f);
    req->header_count = 0;
    memset(req->common, 0, sizeof req->common);
    req->method_name = req->target = chi_str(NULL, 0); /* what a refusal's log line can show */
    h->expect_continue = 0;

    /* RFC 9112 2.2: empty lines before the request-line are ignored */
    while (end - p >= 2 && p[0] == '\r' && p[1] == '\n') p += 2;
    if (p == end || (end - p == 1 && *p == '\r')) return chi_need_more(len, lim);

    if ((step = chi_parse_method(&p, end, req)) <= 0) return chi_step_end(step, len, lim);
    if ((step = chi_parse_target(&p, end, lim, req, &q)) <= 0) return chi_step_end(step, len, lim);
    if ((step = chi_parse_version_line(&p, end, req)) <= 0) return chi_step_end(step, len, lim);
    if ((step = chi_split_target(req, q)) < 0) return step;
    while ((step = chi_parse_field(&p, end, req, h, &f, memo)) != 2)
        if (step <= 0) return chi_step_end(step, len, lim);
    r = chi_decide_framing(req, lim, &f, h);
    return r < 0 ? r : (long)(p - buf);
}

/* Without a memo: the parser's tests and fuzz targets (the server passes
   its worker's memo). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((unused))
#endif
static long chi_parse_head(const char *buf, size_t len, const chi_limits *lim, ch_req *req, chi_head *h)
{
    return chi_parse_head_memo(buf, len, lim, req, h, NULL);
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
    CHI_CK_SIZE_FIRST, CHI_CK_SIZE, CHI_CK_EXT_WS, CHI_CK_EXT_NAME_WS, CHI_CK_EXT_NAME,
    CHI_CK_EXT_AFTER_NAME, CHI_CK_EXT_VAL_WS, CHI_CK_EXT_VAL_TOKEN, CHI_CK_EXT_VAL_QUOTED,
    CHI_CK_EXT_VAL_ESCAPE, CHI_CK_EXT_BWS, CHI_CK_EXT_NAME_BWS, CHI_CK_SIZE_LF,
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

/* Chunk extensions, by RFC 9112 7.1.1:
       chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
       ext-name = token; ext-val = token / quoted-string
   One byte at a time after the size; returns 0 to go on or -400. Their
   meaning is ignored, but their shape is checked: "5;", "5;a b", "5;a=" and
   an unclosed quote are refused. BWS comes only before a ';' or an '=':
   whitespace before the CRLF ("5 \r\n", "5;a=b \r\n") is refused too, as
   the grammar says (and as a parser that reads it otherwise could be
   played against this one). */
static int chi_ck_ws(unsigned char c) { return c == ' ' || c == '\t'; }

static int chi_ck_ext_byte(chi_chunked *ck, unsigned char c)
{
    switch (ck->state) {
    case CHI_CK_EXT_WS: /* after the size or a complete extension */
        if (c == ';') ck->state = CHI_CK_EXT_NAME_WS;
        else if (c == '\r') ck->state = CHI_CK_SIZE_LF;
        else if (chi_ck_ws(c)) ck->state = CHI_CK_EXT_BWS;
        else return -400;
        return 0;
    case CHI_CK_EXT_BWS: /* whitespace there: only a ';' may follow it */
        if (c == ';') ck->state = CHI_CK_EXT_NAME_WS;
        else if (!chi_ck_ws(c)) return -400;
        return 0;
    case CHI_CK_EXT_NAME_BWS: /* whitespace after a name: an '=' or a ';' next */
        if (c == '=') ck->state = CHI_CK_EXT_VAL_WS;
        else if (c == ';') ck->state = CHI_CK_EXT_NAME_WS;
        else if (!chi_ck_ws(c)) return -400;
        return 0;
    case CHI_CK_EXT_NAME_WS: /* after ';': BWS, then a name */
        if (chi_is(c, CHI_TOKEN)) ck->state = CHI_CK_EXT_NAME;
        else if (!chi_ck_ws(c)) return -400;
        return 0;
    case CHI_CK_EXT_NAME:
        if (chi_is(c, CHI_TOKEN)) return 0;
        ck->state = CHI_CK_EXT_AFTER_NAME; /* and this byte is the one after the name */
        return chi_ck_ext_byte(ck, c);
    case CHI_CK_EXT_AFTER_NAME:
        if (c == '=') ck->state = CHI_CK_EXT_VAL_WS;
        else if (c == ';') ck->state = CHI_CK_EXT_NAME_WS;
        else if (c == '\r') ck->state = CHI_CK_SIZE_LF;
        else if (chi_ck_ws(c)) ck->state = CHI_CK_EXT_NAME_BWS;
        else return -400;
        return 0;
    case CHI_CK_EXT_VAL_WS: /* after '=': BWS, then a token or a quoted string */
        if (chi_is(c, CHI_TOKEN)) ck->state = CHI_CK_EXT_VAL_TOKEN;
        else if (c == '"') ck->state = CHI_CK_EXT_VAL_QUOTED;
        else if (!chi_ck_ws(c)) return -400;
        return 0;
    case CHI_CK_EXT_VAL_TOKEN:
        if (chi_is(c, CHI_TOKEN)) return 0;
        ck->state = CHI_CK_EXT_WS;
        return chi_ck_ext_byte(ck, c);
    case CHI_CK_EXT_VAL_QUOTED: /* qdtext: HTAB, SP, VCHAR but '"' and '\\', obs-text */
        if (c == '"') ck->state = CHI_CK_EXT_WS;
        else if (c == '\\') ck->state = CHI_CK_EXT_VAL_ESCAPE;
        else if (!chi_is(c, CHI_VALUE)) return -400;
        return 0;
    default: /* CHI_CK_EXT_VAL_ESCAPE: quoted-pair */
        if (!chi_is(c, CHI_VALUE)) return -400;
        ck->state = CHI_CK_EXT_VAL_QUOTED;
        return 0;
    }
}

/* The size line: hex digits, optional extensions, CRLF. One byte at a time;
   returns 0 to go on or -status. */
static int chi_ck_size_byte(chi_chunked *ck, unsigned char c, uint64_t max_body)
{
    int d;
    if (ck->state >= CHI_CK_EXT_WS && ck->state < CHI_CK_SIZE_LF) return chi_ck_ext_byte(ck, c);
    switch (ck->state) {
    case CHI_CK_SIZE_FIRST:
    case CHI_CK_SIZE:
        d = chi_hexval(c);
        if (d >= 0) {
            if (ck->size > (UINT64_MAX >> 4)) return -400; /* overflow */
            ck->size = ck->size * 16 + (unsigned)d;
            ck->state = CHI_CK_SIZE;
        } else if (ck->state != CHI_CK_SIZE_FIRST && c == '\r') {
            ck->state = CHI_CK_SIZE_LF;
        } else if (ck->state != CHI_CK_SIZE_FIRST && (c == ';' || c == ' ' || c == '\t')) {
            ck->state = c == ';' ? CHI_CK_EXT_NAME_WS : CHI_CK_EXT_BWS;
        } else {
            return -400; /* no digit first, or a byte a size line cannot hold */
        }
        return 0;
    default: /* CHI_CK_SIZE_LF */
        if (c != '\n') return -400;
        if (ck->size > max_body - ck->total) return -413;
        ck->line = 0;
        ck->state = ck->size ? CHI_CK_DATA : CHI_CK_TRAILER_START;
        return 0;
    }
}

/* Chunk data: moved down over the size lines already read. */
static void chi_ck_data(chi_chunked *ck, char *buf, size_t len)
{
    size_t n = len - ck->src;
    if ((uint64_t)n > ck->size) n = (size_t)ck->size;
    if (ck->dst != ck->src) memmove(buf + ck->dst, buf + ck->src, n);
    ck->dst += n;
    ck->src += n;
    ck->size -= n;
    ck->total += n;
    if (ck->size == 0) ck->state = CHI_CK_DATA_CR;
}

/* The CRLF after chunk data, the trailer section and the final CRLF.
   Returns 0 to go on, 1 at the end of the message, or -400. */
static int chi_ck_frame_byte(chi_chunked *ck, unsigned char c)
{
    switch (ck->state) {
    case CHI_CK_DATA_CR:
        if (c != '\r') return -400;
        ck->state = CHI_CK_DATA_LF;
        return 0;
    case CHI_CK_DATA_LF:
        if (c != '\n') return -400;
        ck->state = CHI_CK_SIZE_FIRST;
        return 0;
    case CHI_CK_TRAILER_START:
        if (c == '\r')
            ck->state = CHI_CK_END_LF;
        else if (chi_is(c, CHI_TOKEN))
            ck->state = CHI_CK_TRAILER_NAME;
        else
            return -400;
        return 0;
    case CHI_CK_TRAILER_NAME:
        if (c == ':')
            ck->state = CHI_CK_TRAILER_VALUE;
        else if (!chi_is(c, CHI_TOKEN))
            return -400;
        return 0;
    case CHI_CK_TRAILER_VALUE:
        if (c == '\r')
            ck->state = CHI_CK_TRAILER_LF;
        else if (!chi_is(c, CHI_VALUE))
            return -400;
        return 0;
    case CHI_CK_TRAILER_LF:
        if (c != '\n') return -400;
        ck->state = CHI_CK_TRAILER_START;
        return 0;
    default: /* CHI_CK_END_LF */
        if (c != '\n') return -400;
        ck->state = CHI_CK_DONE;
        return 1;
    }
}

/* Returns 1 when the last chunk and trailers are in, 0 when more bytes are
   needed, or -400 / -413 / -431. */
static int chi_chunked_decode(chi_chunked *ck, char *buf, size_t len, uint64_t max_body, size_t max_trailer)
{
    CHOPIN_ASSERT(ck->dst <= ck->src); /* decoding only ever moves data down */
    while (ck->src < len && ck->state != CHI_CK_DONE) {
        unsigned char c = (unsigned char)buf[ck->src];
        int r;
        if (ck->state == CHI_CK_DATA) {
            chi_ck_data(ck, buf, len);
            continue;
        }
        r = ck->state <= CHI_CK_SIZE_LF ? chi_ck_size_byte(ck, c, max_body) : chi_ck_frame_byte(ck, c);
        if (r < 0) return r;
        ck->src++;
        if (r == 1) return 1;
        if (ck->state <= CHI_CK_SIZE_LF && ++ck->line > CHI_CK_MAX_LINE) return -400;
        if (ck->state >= CHI_CK_TRAILER_START && ++ck->trailer > max_trailer) return -431;
    }
    return ck->state == CHI_CK_DONE;
}

/* >>responses ---------------------------------------------------------------
   One writer lays out every response head, in this order:
       status line | Server | Date | Content-Type | the handler's headers |
       Connection (when needed) | framing | CRLF
   Routed answers and errors are written by it per request; FastRoutes and
   100 Continue are written by it once, at start-up, and then copied. It is
   given the "Server: ...\r\nDate: ...\r\n" bytes rather than a clock, so it
   stays in the core. Error bodies, {"detail":"<reason phrase>"}, are made
   from the same reason table: one copy of each phrase, no counted lengths. */

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
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
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


/* The end of a Content-Length line and of the head: "N\r\n\r\n". Also used
   per request after a dynamic FastRoute's pre-built head. */
static char *chi_head_length_end(char *p, uint64_t length)
{
    p += chi_utoa(length, p);
    return chi_put(p, "\r\n\r\n", 4);
}

/* The lines every response shares, kept per worker so the Date can be
   patched in place once a second: "Server: chopin\r\nDate: <29 bytes>\r\n". */
#define CHI_SERVER_LINE "Server: " CHOPIN_SERVER_NAME "\r\n"
#define CHI_DATE_AT (sizeof(CHI_SERVER_LINE) - 1 + 6)
#define CHI_COMMON_LEN (CHI_DATE_AT + CHI_DATE_LEN + 2)
#define CHI_OK_LINE_LEN 17 /* "HTTP/1.1 200 OK\r\n" */
#define CHI_OK_LEAD_LEN (CHI_OK_LINE_LEN + CHI_COMMON_LEN)
#define CHI_JSON_TYPE_LINE "Content-Type: application/json\r\n"
#define CHI_OK_JSON_LEAD_LEN (CHI_OK_LEAD_LEN + sizeof(CHI_JSON_TYPE_LINE) - 1)
#define CHI_OK_JSON_OPEN_LEN (CHI_OK_JSON_LEAD_LEN + 16) /* + "Content-Length: " */

static void chi_common_init(char common[CHI_COMMON_LEN])
{
    memcpy(common, CHI_SERVER_LINE "Date: ", CHI_DATE_AT);
    memset(common + CHI_DATE_AT, ' ', CHI_DATE_LEN);
    memcpy(common + CHI_DATE_AT + CHI_DATE_LEN, "\r\n", 2);
}

/* How the body is framed (RFC 9112 6). */
enum {
    CHI_FRAME_LENGTH,      /* Content-Length: length */
    CHI_FRAME_LENGTH_OPEN, /* "Content-Length: " and stop: the caller writes the
                              digits per request (dynamic FastRoutes) */
    CHI_FRAME_NONE,        /* 1xx, 204, 304: no framing header */
    CHI_FRAME_CHUNKED,     /* Transfer-Encoding: chunked (a stream) */
    CHI_FRAME_LEAD         /* nothing after the status line and common lines:
                              the "lead" a worker keeps for its 200s */
};

typedef struct chi_head_spec {
    int status;
    int keep_alive, minor;     /* decide the Connection line */
    const char *common;        /* "Server: ...\r\nDate: ...\r\n", or NULL */
    size_t common_len;
    const char *lead;          /* status line + common lines, written by this
                                  writer once per worker (CHI_FRAME_LEAD) and
                                  copied whole per answer; NULL: write them */
    size_t lead_len;
    int lead_has_ctype;        /* the lead ends with the Content-Type line */
    const char *ctype;         /* Content-Type value; ctype_len 0: none */
    size_t ctype_len;
    const char *extra;         /* "Name: value\r\n" lines, as they are */
    size_t extra_len;
    int framing;
    uint64_t length;           /* with CHI_FRAME_LENGTH */
} chi_head_spec;

/* Statuses that never have a body nor Content-Length (RFC 9110 8.6). */
static int chi_status_has_body(int status) { return status >= 200 && status != 204 && status != 304; }

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

/* An upper bound on what chi_head_put writes for spec. */
static size_t chi_head_size(const chi_head_spec *h)
{
    return 64 + h->common_len + 16 + h->ctype_len + 2 + h->extra_len + 24 + 16 + 20 + 4;
}

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

/* The one head writer: p has chi_head_size(h) bytes of room. Returns the
   end of what it wrote. The status line and the common lines come from
   h->lead when the worker keeps them pre-built for this status (the usual
   200: one copy instead of the reason lookup and four pieces). */
static char *chi_head_put(char *p, const chi_head_spec *h)
{
    size_t conn_len;
    const char *conn = chi_connection_line(h->keep_alive, h->minor, &conn_len);
    if (h->lead) {
        p = chi_put(p, h->lead, h->lead_len);
    } else {
        p += chi_status_line(h->status, p);
        p = chi_put(p, h->common, h->common_len);
        if (h->framing == CHI_FRAME_LEAD && !h->ctype_len) return p;
    }
    if (h->ctype_len && !h->lead_has_ctype) {
        p = chi_put(p, "Content-Type: ", 14);
        p = chi_put(p, h->ctype, h->ctype_len);
        p = chi_put(p, "\r\n", 2);
        if (h->framing == CHI_FRAME_LEAD) return p; /* a lead with its type */
    }
    p = chi_put(p, h->extra, h->extra_len);
    p = chi_put(p, conn, conn_len);
    if (h->framing == CHI_FRAME_NONE || !chi_status_has_body(h->status)) return chi_put(p, "\r\n", 2);
    if (h->framing == CHI_FRAME_CHUNKED) return chi_put(p, "Transfer-Encoding: chunked\r\n\r\n", 30);
    p = chi_put(p, "Content-Length: ", 16);
    if (h->framing == CHI_FRAME_LENGTH_OPEN) return p;
    return chi_head_length_end(p, h->length);
}

/* {"detail":"..."}: the body of every error the server or ch_res_error
   writes: the reason phrase, but for the two that tell a client what to do.
   `out` needs CHI_ERROR_BODY_MAX bytes. */
#define CHI_ERROR_BODY_MAX 64
static const char *chi_error_detail(int status)
{
    if (status == 401) return "Authentication required";
    if (status == 403) return "Permission denied";
    return chi_reason(status);
}

static size_t chi_error_body(int status, char *out)
{
    const char *reason = chi_error_detail(status);
    char *p = chi_put(out, "{\"detail\":\"", 11);
    p = chi_put(p, reason, strlen(reason)); /* no phrase needs JSON escaping */
    p = chi_put(p, "\"}", 2);
    return (size_t)(p - out);
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
    uint64_t stream_max;            /* ch_route_stream: its body limit; 0: buffered */
    ch_handler stream_handler;      /* ch_route_stream: the application's handler
                                       (handler is then chi_stream_empty) */
} chi_route;

typedef struct chi_node {
    char *seg;                      /* static segment text (children only) */
    size_t seg_len;
    struct chi_node **kids;         /* static children */
    int nkids;
    unsigned *index;                /* kids by segment hash: 1 + kid, 0 empty */
    unsigned index_mask;            /* slots - 1 (a power of two) */
    unsigned index_shift;           /* 32 - log2(slots): a hash's top bits */
    uint32_t index_seed;            /* the multiplier that spreads these kids */
    struct chi_node *param;         /* ":name" child */
    char *param_name;
    size_t param_name_len;
    struct chi_node *wild;          /* "*name" child: matches the rest */
    char *wild_name;
    size_t wild_name_len;
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
    CHOPIN_FREE(n->index);
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

/* A node's static children are found by a small open-addressing table
   keyed by the segment's length and its first and last bytes: one probe,
   however many siblings there are (an API has dozens at /api/v1). The three
   are mixed by one multiplication and the table takes the product's top
   bits; the multiplier is chosen per node, when routes are added, so that
   no two children share a slot (chi_node_index). */
static uint32_t chi_seg_hash(const char *p, size_t len, uint32_t seed)
{
    uint32_t x = len ? (uint32_t)len | (uint32_t)(unsigned char)p[0] << 8 | (uint32_t)(unsigned char)p[len - 1] << 16 : 0u;
    return x * seed;
}

/* The static child named p[0, len), or NULL (the caller checked that n has
   an index). */
static chi_node *chi_node_kid(const chi_node *n, const char *p, size_t len)
{
    unsigned h;
    for (h = chi_seg_hash(p, len, n->index_seed) >> n->index_shift; n->index[h]; h = (h + 1) & n->index_mask) {
        chi_node *k = n->kids[n->index[h] - 1];
        if (k->seg_len == len && chi_eq_short(k->seg, p, len)) return k;
    }
    return NULL;
}

/* Fills index (size slots, top `shift` bits) with n's kids under seed.
   Returns 1 when every kid got its own slot, 0 when some had to move on to
   the next free one (still correct, one probe more). */
static int chi_node_fill(const chi_node *n, unsigned *index, unsigned size, unsigned shift, uint32_t seed)
{
    int i, clean = 1;
    memset(index, 0, sizeof *index * size);
    for (i = 0; i < n->nkids; i++) {
        unsigned h = chi_seg_hash(n->kids[i]->seg, n->kids[i]->seg_len, seed) >> shift;
        if (index[h]) clean = 0;
        while (index[h]) h = (h + 1) & (size - 1);
        index[h] = (unsigned)i + 1;
    }
    return clean;
}

/* Rebuilds n's table after a child was added: at least twice as many slots
   as children, and a multiplier (odd numbers from the golden ratio's,
   2654435761) under which no two kids collide, trying a few dozen before
   taking a table twice the size; past 8 slots per kid a collision is kept.
   Returns 0 or -1. */
static int chi_node_index(chi_node *n)
{
    unsigned size = 4, shift = 30, *index = NULL;
    uint32_t seed = 2654435761u;
    int tries;
    while (size < 2u * (unsigned)n->nkids) {
        size *= 2;
        shift--;
    }
    for (;;) {
        unsigned *grown = (unsigned *)CHOPIN_REALLOC(index, sizeof *index * size);
        if (!grown) {
            CHOPIN_FREE(index);
            return -1;
        }
        index = grown;
        for (tries = 0, seed = 2654435761u; tries < 64; tries++, seed += 2)
            if (chi_node_fill(n, index, size, shift, seed)) break;
        if (tries < 64 || size >= 8u * (unsigned)n->nkids) break; /* kids that share length and ends always collide */
        size *= 2;
        shift--;
    }
    if (tries == 64) chi_node_fill(n, index, size, shift, seed); /* the last seed, with collisions */
    CHOPIN_FREE(n->index);
    n->index = index;
    n->index_mask = size - 1;
    n->index_shift = shift;
    n->index_seed = seed;
    return 0;
}

/* Does pattern[0, upto) name a parameter or wildcard `name` (n bytes)? */
static int chi_pattern_names(const char *pattern, const char *upto, const char *name, size_t n)
{
    const char *p;
    for (p = pattern; p + n + 2 <= upto; p++)
        if (p[0] == '/' && (p[1] == ':' || p[1] == '*') && memcmp(p + 2, name, n) == 0 &&
            (p + n + 2 == upto || p[n + 2] == '/'))
            return 1;
    return 0;
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
        if (!len && e) {
            *err = "a route pattern has an empty segment ('//')";
            return NULL;
        }
        if (len && (p[0] == ':' || p[0] == '*')) {
            char **name = p[0] == ':' ? &n->param_name : &n->wild_name;
            size_t *name_len = p[0] == ':' ? &n->param_name_len : &n->wild_name_len;
            chi_node **kid = p[0] == ':' ? &n->param : &n->wild;
            if (len == 1) {
                *err = "a route parameter needs a name";
                return NULL;
            }
            if (p[0] == '*' && e) {
                *err = "a wildcard must be the last segment";
                return NULL;
            }
            if (chi_pattern_names(pattern, p - 1, p + 1, len - 1)) {
                *err = "a route names the same parameter twice";
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
                *name_len = len - 1;
            }
            n = *kid;
        } else {
            chi_node *next = n->index ? chi_node_kid(n, p, len) : NULL, **kids;
            if (!next) {
                kids = (chi_node **)CHOPIN_REALLOC(n->kids, sizeof(chi_node *) * (size_t)(n->nkids + 1));
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
                if (chi_node_index(n) < 0) {
                    *err = "out of memory";
                    return NULL;
                }
            }
            n = next;
        }
        if (!e) return n;
        p = e + 1;
    }
}

static int chi_dot_segment(const char *p, size_t len); /* >>paths */

/* A parameter or wildcard value may not hold a "." or ".." segment (raw or
   percent-encoded): such a path does not match the route, so a handler
   that joins a parameter to a directory never sees one. Values without a
   '.' or a '%' (most of them) are cleared by one short scan. */
static inline int chi_param_ok(const char *p, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++)
        if (p[i] == '.' || p[i] == '%') return !chi_dot_segment(p, len);
    return 1;
}

/* The next '/' from p, or NULL, inline (a call to memchr costs more than
   a short segment): a word at a time where the lowest flagged byte is the
   first '/' (little-endian, with the count of trailing zero bits), then a
   byte at a time. */
static const char *chi_find_slash(const char *p, const char *end)
{
#if (defined(__GNUC__) || defined(__clang__)) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (end - p >= 8) {
        uint64_t m = chi_has_byte(chi_load8(p), '/');
        if (m) return p + (__builtin_ctzll(m) >> 3);
        p += 8;
    }
#endif
    for (; p < end; p++)
        if (*p == '/') return p;
    return NULL;
}

/* Matches path (without the leading '/') below n. Parameters found on the
   way are pushed on req->params and popped again on a dead end. Where a
   node leaves one way on (only a static child, or only a parameter), the
   walk goes on in the same call: only a node with a choice to back up to
   costs a nested call. */
static chi_node *chi_node_match(chi_node *n, const char *p, const char *end, ch_req *req)
{
    int base = req->param_count; /* a dead end pops what this call pushed */
    const char *e;
    size_t len;
    chi_node *found, *k;
    for (;;) {
        e = chi_find_slash(p, end);
        len = e ? (size_t)(e - p) : (size_t)(end - p);
        k = n->index ? chi_node_kid(n, p, len) : NULL;
        if (n->wild || (k && n->param)) break; /* a choice: the general way */
        if (k) { /* the static child, nothing else */
            if (!e) {
                if (k->methods | k->fast_methods) return k;
                break; /* no parameter, no wildcard here: the dead end below */
            }
            n = k;
        } else if (n->param && len > 0 && req->param_count < CHOPIN_MAX_PARAMS && chi_param_ok(p, len)) {
            ch_param *pa = &req->params[req->param_count++];
            pa->name = chi_str(n->param_name, n->param_name_len);
            pa->value = chi_str(p, len);
            if (!e) {
                if (n->param->methods | n->param->fast_methods) return n->param;
                req->param_count = base;
                return NULL;
            }
            n = n->param;
        } else {
            req->param_count = base;
            return NULL;
        }
        p = e + 1;
    }
    if (k) {
        found = e ? chi_node_match(k, e + 1, end, req) : k;
        if (found && (found->methods | found->fast_methods)) return found;
    }
    if (n->param && len > 0 && req->param_count < CHOPIN_MAX_PARAMS && chi_param_ok(p, len)) {
        ch_param *pa = &req->params[req->param_count++];
        pa->name = chi_str(n->param_name, n->param_name_len);
        pa->value = chi_str(p, len);
        found = e ? chi_node_match(n->param, e + 1, end, req) : n->param;
        if (found && (found->methods | found->fast_methods)) return found;
        req->param_count--;
    }
    if (n->wild && req->param_count < CHOPIN_MAX_PARAMS && chi_param_ok(p, (size_t)(end - p))) {
        ch_param *pa = &req->params[req->param_count++];
        pa->name = chi_str(n->wild_name, n->wild_name_len);
        pa->value = chi_str(p, (size_t)(end - p));
        if (n->wild->methods) return n->wild;
        req->param_count--;
    }
    req->param_count = base;
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

/* >>request -----------------------------------------------------------------
   Lookups on a parsed request. Nothing here runs unless a handler asks:
   query strings and cookies are scanned and decoded on demand. */

/* The client's address, kept per connection; req->conn points at it. The
   OS seam fills it from a socket address and turns it into text. */
typedef struct chi_peer {
    unsigned char addr[16];  /* 4 bytes for IPv4, 16 for IPv6 */
    unsigned char family;    /* 4, 6, or 0 if unknown */
} chi_peer;

/* Where a request's header lines and route parameters are kept: ch_req
   points into it (one per worker), so no public struct is sized by
   CHOPIN_MAX_HEADERS or CHOPIN_MAX_PARAMS. */
typedef struct chi_req_store {
    ch_header headers[CHOPIN_MAX_HEADERS];
    ch_param params[CHOPIN_MAX_PARAMS];
} chi_req_store;

static void chi_req_bind(ch_req *req, chi_req_store *st)
{
    memset(req, 0, sizeof *req);
    req->headers = st->headers;
    req->params = st->params;
}

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

/* Decodes the byte at in[*i] ('%XX', '+' as a space when asked, or itself)
   into *c and moves *i past it. Returns 0, or -1 for a bad escape. */
static int chi_url_byte(const char *in, size_t len, size_t *i, int plus_is_space, char *c)
{
    *c = in[*i];
    if (*c == '%') {
        int hi, lo;
        if (*i + 2 >= len) return -1;
        hi = chi_hexval((unsigned char)in[*i + 1]);
        lo = chi_hexval((unsigned char)in[*i + 2]);
        if (hi < 0 || lo < 0) return -1;
        *c = (char)(hi * 16 + lo);
        *i += 2;
    } else if (*c == '+' && plus_is_space) {
        *c = ' ';
    }
    (*i)++;
    return 0;
}

/* Percent-decoding (RFC 3986 2.1). Returns the decoded length, CH_BAD for
   a '%' not followed by two hex digits, CH_TOO_LONG when out is too small
   (out always gets a NUL terminator when cap > 0). */
CHOPIN_API long ch_url_decode(const char *in, size_t len, char *out, size_t cap, int plus_is_space)
{
    size_t i = 0, n = 0;
    long rc = 0;
    while (i < len) {
        char c;
        if (chi_url_byte(in, len, &i, plus_is_space, &c) < 0) {
            rc = CH_BAD;
            break;
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

/* Does the encoded `raw` decode to exactly `name`? Decoded on the fly: a
   key of any length compares, and a bad escape never matches. */
static int chi_decoded_equals(ch_str raw, const char *name, int plus_is_space)
{
    size_t i = 0, n = 0, len = strlen(name);
    while (i < raw.len) {
        char c;
        if (chi_url_byte(raw.ptr, raw.len, &i, plus_is_space, &c) < 0 || n >= len || name[n] != c) return 0;
        n++;
    }
    return n == len;
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


CHOPIN_API ch_str ch_req_param(const ch_req *req, const char *name)
{
    int i;
    for (i = 0; i < req->param_count; i++)
        if (ch_str_eq(req->params[i].name, name)) return req->params[i].value;
    return chi_str(NULL, 0);
}

/* >>addresses ---------------------------------------------------------------
   Client addresses behind a proxy. chi_ip_parse reads an IPv4 or IPv6
   literal into a chi_peer; a trusted-proxy list ("10.0.0.1, 10.0.0.0/8,
   ::1") becomes networks that a peer is matched against. X-Forwarded-For is
   read from the right: each hop appends the address it saw, so the first
   address (from the right) that is not one of our proxies is the client;
   anything further left was written by the client and proves nothing. The
   PROXY protocol header (HAProxy, v1 text and v2 binary) states the client
   address at the start of a connection; chi_proxy_parse reads it, stateless
   like the request parser: complete, need more, or malformed. */

#define CHI_MAX_TRUSTED 16    /* networks in ch_config.trust_proxy */

typedef struct chi_net {
    chi_peer addr;
    int bits;                 /* prefix length */
} chi_net;

#if !defined(CHOPIN_NO_CORS) || !defined(CHOPIN_NO_RATELIMIT)
/* The hash of the CORS cache and the rate table. */
static uint32_t chi_hash(const char *s, size_t n)
{
    /* eight bytes a step, each mixed in by a multiply and a shift (the
       finalizer of MurmurHash3's 64-bit variant); in-process use only, so
       the byte order does not matter */
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n, x;
    while (n >= 8) {
        memcpy(&x, s, 8);
        h = (h ^ x) * 0xff51afd7ed558ccdull;
        h ^= h >> 33;
        s += 8;
        n -= 8;
    }
    /* the last 0-7 bytes a byte at a time: a memcpy of a varying length
       would be a call into the C library, dearer than the loop */
    x = 0;
    while (n) x = (x << 8) | (unsigned char)s[--n];
    h = (h ^ x) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return (uint32_t)h;
}

/* Equal bytes? Eight at a time, inline: the keys compared here are short
   (an origin, a client address), where a call to memcmp costs more than
   the comparison itself. */
static int chi_same_bytes(const char *a, const char *b, size_t n)
{
    uint64_t x, y;
    size_t i;
    if (n < 8) {
        for (i = 0; i < n; i++)
            if (a[i] != b[i]) return 0;
        return 1;
    }
    /* the first eight, then eights on, the last eight overlapping those
       before when n is not a multiple of eight: no byte-by-byte tail; up
       to 24 bytes (an origin, a client address) in straight-line code */
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    if (x != y) return 0;
    if (n > 16) {
        memcpy(&x, a + 8, 8);
        memcpy(&y, b + 8, 8);
        if (x != y) return 0;
    }
    for (i = 16; i + 8 < n; i += 8) {
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y) return 0;
    }
    memcpy(&x, a + n - 8, 8);
    memcpy(&y, b + n - 8, 8);
    return x == y;
}

#endif

#if !defined(CHOPIN_NO_PROXY) || !defined(CHOPIN_NO_RATELIMIT)
/* An IPv4 address mapped into IPv6 (::ffff:a.b.c.d) compares as IPv4. */
static chi_peer chi_peer_plain(const chi_peer *p)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    chi_peer r = *p;
    if (p->family == 6 && memcmp(p->addr, mapped, 12) == 0) {
        memset(&r, 0, sizeof r);
        memcpy(r.addr, p->addr + 12, 4);
        r.family = 4;
    }
    return r;
}
#endif

#ifndef CHOPIN_NO_PROXY

static int chi_ipv4_parse(const char *s, size_t n, unsigned char out[4])
{
    size_t i = 0;
    int part;
    for (part = 0; part < 4; part++) {
        unsigned v = 0;
        size_t start;
        if (part && (i >= n || s[i++] != '.')) return -1;
        start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 3) v = v * 10 + (unsigned)(s[i++] - '0');
        if (i == start || v > 255 || (i - start > 1 && s[start] == '0')) return -1;
        out[part] = (unsigned char)v;
    }
    return i == n ? 0 : -1;
}

/* IPv6 text (RFC 4291 2.2): groups of 1-4 hex digits, one "::" for a run of
   zero groups, an IPv4 tail allowed. */
static int chi_ipv6_parse(const char *s, size_t n, unsigned char out[16])
{
    unsigned char g[16];
    size_t i = 0;
    int ng = 0, gap = -1;
    if (n >= 2 && s[0] == ':' && s[1] == ':') {
        gap = 0;
        i = 2;
    } else if (n && s[0] == ':') {
        return -1;
    }
    while (i < n && ng < 8) {
        size_t start = i, k;
        unsigned v = 0;
        for (k = i; k < n && chi_hexval((unsigned char)s[k]) >= 0 && k - i < 4; k++) {}
        if (k < n && s[k] == '.') { /* an IPv4 tail */
            if (ng > 6 || chi_ipv4_parse(s + i, n - i, g + (size_t)ng * 2) < 0) return -1;
            ng += 2;
            i = n;
            break;
        }
        while (i < n && chi_hexval((unsigned char)s[i]) >= 0 && i - start < 4)
            v = v * 16 + (unsigned)chi_hexval((unsigned char)s[i++]);
        if (i == start) return -1;
        g[(size_t)ng * 2] = (unsigned char)(v >> 8);
        g[(size_t)ng * 2 + 1] = (unsigned char)v;
        ng++;
        if (i == n) break;
        if (s[i] != ':') return -1;
        i++;
        if (i < n && s[i] == ':') {
            if (gap >= 0) return -1;
            gap = ng;
            i++;
        } else if (i == n) {
            return -1; /* a trailing single ':' */
        }
    }
    if (i != n || (gap < 0 && ng != 8) || (gap >= 0 && ng > 7)) return -1;
    memset(out, 0, 16);
    if (gap < 0) {
        memcpy(out, g, 16);
    } else {
        memcpy(out, g, (size_t)gap * 2);
        memcpy(out + 16 - (size_t)(ng - gap) * 2, g + (size_t)gap * 2, (size_t)(ng - gap) * 2);
    }
    return 0;
}

/* An IPv4 or IPv6 literal (an IPv6 one may be in brackets). 0 or -1. */
static int chi_ip_parse(const char *s, size_t n, chi_peer *out)
{
    memset(out, 0, sizeof *out);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        s++;
        n -= 2;
    }
    if (memchr(s, ':', n)) {
        if (chi_ipv6_parse(s, n, out->addr) < 0) return -1;
        out->family = 6;
        return 0;
    }
    if (chi_ipv4_parse(s, n, out->addr) < 0) return -1;
    out->family = 4;
    return 0;
}

static int chi_net_match(const chi_net *net, const chi_peer *peer)
{
    chi_peer p = chi_peer_plain(peer);
    int whole = net->bits / 8, rest = net->bits % 8;
    if (p.family != net->addr.family) return 0;
    if (memcmp(p.addr, net->addr.addr, (size_t)whole) != 0) return 0;
    return rest == 0 || ((p.addr[whole] ^ net->addr.addr[whole]) & (0xff00 >> rest) & 0xff) == 0;
}

static int chi_nets_match(const chi_net *nets, int n, const chi_peer *peer)
{
    int i;
    for (i = 0; i < n; i++)
        if (chi_net_match(&nets[i], peer)) return 1;
    return 0;
}

/* "a, b/24, c" into nets; returns how many, or -1 with the bad item. */
static int chi_nets_parse(const char *list, chi_net *nets, int max, const char **bad)
{
    const char *p = list;
    int n = 0;
    while (*p) {
        const char *s, *e, *slash;
        long bits;
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        s = p;
        while (*p && *p != ',' && *p != ' ') p++;
        e = p;
        *bad = s;
        if (n == max) return -1;
        slash = (const char *)memchr(s, '/', (size_t)(e - s));
        if (chi_ip_parse(s, (size_t)((slash ? slash : e) - s), &nets[n].addr) < 0) return -1;
        nets[n].addr = chi_peer_plain(&nets[n].addr);
        bits = nets[n].addr.family == 4 ? 32 : 128;
        if (slash) {
            long v = 0;
            const char *d = slash + 1;
            if (d == e || e - d > 3) return -1;
            for (; d < e; d++) {
                if (*d < '0' || *d > '9') return -1;
                v = v * 10 + (*d - '0');
            }
            if (v > bits) return -1;
            bits = v;
        }
        nets[n++].bits = (int)bits;
    }
    return n;
}

/* X-Forwarded-For, one field line read from the right, continuing a walk
   that may have begun on a later line (RFC 9110 5.3: several lines are one
   comma-separated list, in order). *found says whether an address was
   seen, *out holds the last one read. Returns 1 when the client is decided
   (an address that is not a trusted proxy, or a hop we cannot read: then
   the nearest readable one stands), 0 to go on to the line before. Empty
   list elements are skipped (RFC 9110 5.6.1). */
static int chi_xff_step(ch_str xff, const chi_net *nets, int nnets, chi_peer *out, int *found)
{
    const char *end = xff.ptr + xff.len;
    while (end > xff.ptr) {
        const char *s = end, *e;
        chi_peer p;
        while (s > xff.ptr && s[-1] != ',') s--;
        e = end;
        end = s > xff.ptr ? s - 1 : s;
        while (s < e && (*s == ' ' || *s == '\t')) s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        if (s == e) continue; /* "a, , b" */
        if (chi_ip_parse(s, (size_t)(e - s), &p) < 0) return 1; /* a hop we cannot read */
        *out = p;
        *found = 1;
        if (!chi_nets_match(nets, nnets, &p)) return 1;
    }
    return 0;
}

/* X-Forwarded-For over every such line of a request, the last line first:
   the right-most address that is not a trusted proxy (or the left-most
   when all are). Returns 0 with *out, or -1 if none parses. */
static int chi_xff_client_lines(const ch_header *h, int count, const chi_net *nets, int nnets, chi_peer *out)
{
    int i, found = 0;
    for (i = count - 1; i >= 0; i--)
        if (chi_header_id(h[i].name.ptr, h[i].name.len) == CH_H_X_FORWARDED_FOR &&
            chi_xff_step(h[i].value, nets, nnets, out, &found))
            break;
    return found ? 0 : -1;
}

/* X-Real-IP names one address; sent more than once it names none. */
static int chi_real_ip_client(const ch_header *h, int count, chi_peer *out)
{
    int i, lines = 0, at = -1;
    for (i = 0; i < count; i++)
        if (chi_header_id(h[i].name.ptr, h[i].name.len) == CH_H_X_REAL_IP) {
            lines++;
            at = i;
        }
    if (lines != 1) return -1;
    return chi_ip_parse(h[at].value.ptr, h[at].value.len, out);
}

/* PROXY protocol (haproxy.org/download/2.9/doc/proxy-protocol.txt).
   v1: "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n", at most 107 bytes.
   v2: a 12-byte signature, version/command, family, a 16-bit length, then
   the addresses. Returns the header's length (with *out the source address,
   family 0 for LOCAL / UNKNOWN), 0 when more bytes are needed, or -1. */
#define CHI_PROXY_V1_MAX 107
static const char chi_proxy_v2_sig[12] = {'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n'};

/* One space-separated v1 field starting at *p; returns its end. */
static const char *chi_proxy_field(const char *p, const char *end)
{
    while (p < end && *p != ' ' && *p != '\r') p++;
    return p;
}

static long chi_proxy_v1(const char *buf, size_t len, chi_peer *out)
{
    const char *end, *p, *f[4], *fe[4];
    const char *lf = (const char *)memchr(buf, '\n', len < CHI_PROXY_V1_MAX ? len : CHI_PROXY_V1_MAX);
    chi_peer dst;
    int i;
    if (!lf) return len < CHI_PROXY_V1_MAX ? 0 : -1;
    if (lf == buf || lf[-1] != '\r') return -1;
    end = lf - 1;
    p = buf + 6;
    memset(out, 0, sizeof *out);
    if (end - p >= 7 && memcmp(p, "UNKNOWN", 7) == 0 && (end - p == 7 || p[7] == ' '))
        return (long)(lf + 1 - buf); /* rest ignored */
    if (end - p < 5 || (memcmp(p, "TCP4 ", 5) != 0 && memcmp(p, "TCP6 ", 5) != 0)) return -1;
    p += 5;
    for (i = 0; i < 4; i++) { /* source, destination, source port, destination port */
        f[i] = p;
        fe[i] = chi_proxy_field(p, end);
        if (fe[i] == f[i]) return -1;
        p = fe[i];
        if (i < 3) {
            if (p == end || *p != ' ') return -1;
            p++;
        }
    }
    if (p != end) return -1;
    if (chi_ip_parse(f[0], (size_t)(fe[0] - f[0]), out) < 0 || chi_ip_parse(f[1], (size_t)(fe[1] - f[1]), &dst) < 0)
        return -1;
    if (out->family != (buf[9] == '4' ? 4 : 6) || dst.family != out->family) return -1;
    for (i = 2; i < 4; i++) {
        long port;
        const char *d;
        if (fe[i] - f[i] > 5 || (fe[i] - f[i] > 1 && f[i][0] == '0')) return -1;
        for (port = 0, d = f[i]; d < fe[i]; d++) {
            if (*d < '0' || *d > '9') return -1;
            port = port * 10 + (*d - '0');
        }
        if (port > 65535) return -1;
    }
    return (long)(lf + 1 - buf);
}

static long chi_proxy_v2(const unsigned char *b, size_t len, chi_peer *out)
{
    size_t total;
    memset(out, 0, sizeof *out);
    if (len < 16) return 0;
    if ((b[12] >> 4) != 2 || (b[12] & 0x0f) > 1) return -1; /* version 2; LOCAL or PROXY */
    total = 16 + ((size_t)b[14] << 8 | b[15]);
    if (len < total) return 0;
    if ((b[12] & 0x0f) == 0) return (long)total; /* LOCAL: the proxy's own check */
    switch (b[13] >> 4) {
    case 1: /* AF_INET: src, dst, ports */
        if (total < 16 + 12) return -1;
        out->family = 4;
        memcpy(out->addr, b + 16, 4);
        break;
    case 2: /* AF_INET6 */
        if (total < 16 + 36) return -1;
        out->family = 6;
        memcpy(out->addr, b + 16, 16);
        break;
    case 3: /* AF_UNIX: two 108-byte paths; no address to use */
        if (total < 16 + 216) return -1;
        break;
    case 0: /* AF_UNSPEC: the address block is ignored */
        break;
    default:
        return -1;
    }
    if ((b[13] & 0x0f) > 2) return -1; /* UNSPEC, STREAM or DGRAM */
    return (long)total;
}

static long chi_proxy_parse(const char *buf, size_t len, chi_peer *out)
{
    size_t n = len < 12 ? len : 12;
    if (memcmp(buf, chi_proxy_v2_sig, n) == 0) return len < 12 ? 0 : chi_proxy_v2((const unsigned char *)buf, len, out);
    n = len < 6 ? len : 6;
    if (memcmp(buf, "PROXY ", n) == 0) return len < 6 ? 0 : chi_proxy_v1(buf, len, out);
    return -1;
}

#endif /* CHOPIN_NO_PROXY */

#ifndef CHOPIN_NO_RATELIMIT
/* >>buckets -----------------------------------------------------------------
   The rate limiter's memory: a token bucket per key, in a table of at most
   `cap` keys that forgets the least recently used one when full. Chained
   hashing (an index array of heads, a next index per entry) and an LRU
   list through the entries, all indices into one array allocated once:
   no allocation per request. Time is passed in (nanoseconds), so the
   table is plain data: unit-tested without a clock.
   Each bucket is kept as one time, in integer nanoseconds: when it will be
   full again (`full_at`; the "theoretical arrival time" of GCRA, the same
   bucket written another way). A token is `interval` ns of it, so a
   bucket holds burst * interval ns; a take moves full_at one interval
   later, and is allowed while full_at stays within burst * interval of
   now. Tokens left = (burst_ns - (full_at - now)) / interval. A full
   bucket (full_at <= now) is a compare and a store, no division. */

#define CHI_RL_KEY_MAX 64
#define CHI_RL_MAX_NS ((int64_t)1 << 61) /* burst * interval at most (some 73 years) */

typedef struct chi_bucket {
    char key[CHI_RL_KEY_MAX];
    unsigned char keylen;
    uint32_t hash;
    uint32_t gen;             /* bumped when the entry takes a new key (a
                                 connection's cached index checks it) */
    int prev, next, hnext;    /* LRU list (most recent at the head), chain */
    int64_t full_at;          /* ns: when the bucket is full again; <= now: full */
} chi_bucket;

typedef struct chi_buckets {
    chi_bucket *e;
    int *heads;               /* nheads chain heads, -1 for none */
    int cap, used, nheads;
    int lru_head, lru_tail;
    int64_t interval_ns;      /* one token: 1e9 / rate, at least 1 */
    int64_t burst_ns;         /* burst tokens: burst * interval_ns */
} chi_buckets;

/* What a take says: allowed or not, what is left, and the waits. */
typedef struct chi_take {
    int allowed;
    long remaining;           /* whole tokens left */
    long retry_after;         /* seconds until one token (>= 1), when refused */
    long reset;               /* seconds until the bucket is full again */
} chi_take;

/* One token's time for a rate (tokens a second): 1e9 / rate ns, rounded,
   at least 1 (a rate above 1e9 a second acts as 1e9). */
static int64_t chi_rate_interval(double rate)
{
    double ns = 1e9 / rate + 0.5;
    if (!(ns >= 1.0)) return 1;
    return ns > (double)CHI_RL_MAX_NS ? CHI_RL_MAX_NS : (int64_t)ns;
}

/* Whole seconds, rounded up, of a non-negative time in ns. */
static long chi_ceil_sec_ns(int64_t ns) { return (long)((ns + 999999999) / 1000000000); }

/* -1 when burst * interval does not fit (a burst of ~2^61 ns). */
static int chi_buckets_init(chi_buckets *t, int cap, double rate, double burst)
{
    int i;
    int64_t interval = chi_rate_interval(rate);
    memset(t, 0, sizeof *t);
    if (!(burst >= 1.0) || burst > (double)CHI_RL_MAX_NS / (double)interval) return -1;
    t->nheads = 1;
    while (t->nheads < cap) t->nheads *= 2;
    t->e = (chi_bucket *)CHOPIN_MALLOC(sizeof *t->e * (size_t)cap);
    t->heads = (int *)CHOPIN_MALLOC(sizeof *t->heads * (size_t)t->nheads);
    if (!t->e || !t->heads) {
        CHOPIN_FREE(t->e);
        CHOPIN_FREE(t->heads);
        t->e = NULL;
        t->heads = NULL;
        return -1;
    }
    memset(t->e, 0, sizeof *t->e * (size_t)cap);
    for (i = 0; i < t->nheads; i++) t->heads[i] = -1;
    t->cap = cap;
    t->lru_head = t->lru_tail = -1;
    t->interval_ns = interval;
    t->burst_ns = (int64_t)burst * interval;
    return 0;
}

static void chi_buckets_free(chi_buckets *t)
{
    CHOPIN_FREE(t->e);
    CHOPIN_FREE(t->heads);
    t->e = NULL;
    t->heads = NULL;
}

static void chi_lru_unlink(chi_buckets *t, int i)
{
    chi_bucket *b = &t->e[i];
    if (b->prev >= 0) t->e[b->prev].next = b->next; else t->lru_head = b->next;
    if (b->next >= 0) t->e[b->next].prev = b->prev; else t->lru_tail = b->prev;
}

static void chi_lru_push_front(chi_buckets *t, int i)
{
    chi_bucket *b = &t->e[i];
    b->prev = -1;
    b->next = t->lru_head;
    if (t->lru_head >= 0) t->e[t->lru_head].prev = i; else t->lru_tail = i;
    t->lru_head = i;
}

/* Entry i was just used: it becomes the most recent. */
static void chi_lru_touch(chi_buckets *t, int i)
{
    if (i == t->lru_head) return;
    chi_lru_unlink(t, i);
    chi_lru_push_front(t, i);
}

static void chi_chain_remove(chi_buckets *t, int i)
{
    int *pp = &t->heads[t->e[i].hash & (uint32_t)(t->nheads - 1)];
    while (*pp != i) pp = &t->e[*pp].hnext;
    *pp = t->e[i].hnext;
}

/* The entry for key: found, or new (a full bucket), evicting the least
   recently used entry when the table is full. Moves it to the LRU head. */
static chi_bucket *chi_buckets_get(chi_buckets *t, const char *key, size_t n, int64_t now_ns)
{
    uint32_t h;
    int i, *head;
    if (n > CHI_RL_KEY_MAX) n = CHI_RL_KEY_MAX;
    /* the most recent client again (a keep-alive connection's next
       request, the common case): found without a hash or a search */
    i = t->lru_head;
    if (i >= 0 && t->e[i].keylen == n && chi_same_bytes(t->e[i].key, key, n)) return &t->e[i];
    h = chi_hash(key, n);
    head = &t->heads[h & (uint32_t)(t->nheads - 1)];
    for (i = *head; i >= 0; i = t->e[i].hnext)
        if (t->e[i].hash == h && t->e[i].keylen == n && chi_same_bytes(t->e[i].key, key, n)) break;
    if (i < 0) {
        if (t->used < t->cap) {
            i = t->used++;
        } else {
            i = t->lru_tail; /* forget the least recently used */
            chi_lru_unlink(t, i);
            chi_chain_remove(t, i);
        }
        memcpy(t->e[i].key, key, n);
        t->e[i].keylen = (unsigned char)n;
        t->e[i].hash = h;
        t->e[i].gen++;
        t->e[i].full_at = now_ns;
        t->e[i].hnext = *head;
        *head = i;
        chi_lru_push_front(t, i);
    } else {
        chi_lru_touch(t, i);
    }
    return &t->e[i];
}

/* Takes one token from bucket b at time now_ns. */
static chi_take chi_bucket_take(const chi_buckets *t, chi_bucket *b, int64_t now_ns)
{
    chi_take r;
    int64_t at = b->full_at > now_ns ? b->full_at : now_ns, after = at + t->interval_ns;
    r.allowed = after - now_ns <= t->burst_ns;
    if (r.allowed) b->full_at = at = after;
    r.remaining = (long)((t->burst_ns - (at - now_ns)) / t->interval_ns);
    /* refused: a token is back once `after` is within the burst of then */
    r.retry_after = r.allowed ? 0 : chi_ceil_sec_ns(after - t->burst_ns - now_ns);
    if (!r.allowed && r.retry_after < 1) r.retry_after = 1;
    r.reset = chi_ceil_sec_ns(at - now_ns);
    return r;
}

#endif /* CHOPIN_NO_RATELIMIT */

/* >>cookies -----------------------------------------------------------------
   The Set-Cookie value (RFC 6265 4.1), built and checked in one place. */

static int chi_cookie_octet(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c <= 0x2B) || (c >= 0x2D && c <= 0x3A) || (c >= 0x3C && c <= 0x5B) ||
           (c >= 0x5D && c <= 0x7E);
}

static int chi_cookie_value_ok(const char *v)
{
    size_t n = strlen(v), i;
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') { /* a quoted value keeps its quotes */
        v++;
        n -= 2;
    }
    for (i = 0; i < n; i++)
        if (!chi_cookie_octet((unsigned char)v[i])) return 0;
    return 1;
}

/* path-value and Domain: any CHAR but CTLs and ';' */
static int chi_cookie_attr_ok(const char *v)
{
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 || (unsigned char)*v >= 0x7f || *v == ';') return 0;
    return 1;
}

/* Domain (RFC 6265 4.1.2.3, a subdomain of RFC 1034 as RFC 1123 relaxed
   it): labels of letters, digits and '-', joined by single dots; one
   leading dot is allowed (and ignored by browsers). */
static int chi_cookie_domain_ok(const char *v)
{
    size_t label = 0;
    if (*v == '.') v++;
    if (!*v) return 0;
    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;
        int alnum = ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9');
        if (c == '.') {
            if (label == 0 || v[-1] == '-') return 0; /* an empty label, or one ending in '-' */
            label = 0;
        } else if (alnum || (c == '-' && label > 0)) {
            if (++label > 63) return 0;
        } else {
            return 0;
        }
    }
    return label > 0 && v[-1] != '-';
}

/* Appends s to out at *n if it fits; returns -1 when it does not. */
static int chi_cat(char *out, size_t cap, size_t *n, const char *s, size_t len)
{
    if (*n + len >= cap) return -1;
    memcpy(out + *n, s, len);
    *n += len;
    return 0;
}

static int chi_cat_str(char *out, size_t cap, size_t *n, const char *s) { return chi_cat(out, cap, n, s, strlen(s)); }

static int chi_cat_num(char *out, size_t cap, size_t *n, long long v)
{
    char d[24];
    return chi_cat(out, cap, n, d, chi_itoa(v, d));
}

CHOPIN_API long ch_cookie_format(const ch_cookie *c, char *out, size_t cap)
{
    size_t n = 0, i;
    int rc = 0;
    if (cap) out[0] = 0;
    if (!c || !c->name || !*c->name || !c->value || !cap) return -1;
    for (i = 0; c->name[i]; i++)
        if (!chi_is((unsigned char)c->name[i], CHI_TOKEN)) return -1;
    if (!chi_cookie_value_ok(c->value)) return -1;
    if ((c->path && !chi_cookie_attr_ok(c->path)) || (c->domain && !chi_cookie_domain_ok(c->domain))) return -1;
    if (c->same_site == CH_SAMESITE_NONE && !c->secure) return -1; /* browsers drop it */
    if ((strncmp(c->name, "__Secure-", 9) == 0 || strncmp(c->name, "__Host-", 7) == 0) && !c->secure) return -1;
    if (strncmp(c->name, "__Host-", 7) == 0 && (c->domain || !c->path || strcmp(c->path, "/") != 0)) return -1;
    if (c->expires < 0) return -1;
    rc |= chi_cat_str(out, cap, &n, c->name);
    rc |= chi_cat(out, cap, &n, "=", 1);
    rc |= chi_cat_str(out, cap, &n, c->value);
    if (c->max_age) {
        rc |= chi_cat(out, cap, &n, "; Max-Age=", 10);
        rc |= chi_cat_num(out, cap, &n, c->max_age < 0 ? 0 : c->max_age);
    }
    if (c->expires) {
        char date[CHI_DATE_LEN];
        chi_format_date((int64_t)c->expires, date);
        rc |= chi_cat(out, cap, &n, "; Expires=", 10);
        rc |= chi_cat(out, cap, &n, date, CHI_DATE_LEN);
    }
    if (c->path) rc |= chi_cat(out, cap, &n, "; Path=", 7) | chi_cat_str(out, cap, &n, c->path);
    if (c->domain) rc |= chi_cat(out, cap, &n, "; Domain=", 9) | chi_cat_str(out, cap, &n, c->domain);
    if (c->secure) rc |= chi_cat(out, cap, &n, "; Secure", 8);
    if (c->http_only) rc |= chi_cat(out, cap, &n, "; HttpOnly", 10);
    if (c->same_site == CH_SAMESITE_LAX) rc |= chi_cat(out, cap, &n, "; SameSite=Lax", 14);
    if (c->same_site == CH_SAMESITE_STRICT) rc |= chi_cat(out, cap, &n, "; SameSite=Strict", 17);
    if (c->same_site == CH_SAMESITE_NONE) rc |= chi_cat(out, cap, &n, "; SameSite=None", 15);
    if (rc) {
        out[0] = 0;
        return -1;
    }
    out[n] = 0;
    return (long)n;
}

/* A decimal integer in [lo, hi] from n bytes: optional '-', digits. */
static int chi_parse_ll(const char *s, size_t n, long long lo, long long hi, long long *out)
{
    size_t i = 0;
    int neg = 0;
    unsigned long long v = 0, limit;
    if (n && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == n) return CH_BAD;
    limit = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return CH_BAD;
        if (v > (limit - (unsigned)(s[i] - '0')) / 10) return CH_BAD;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    {
        long long x = neg ? (v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v) : (long long)v;
        if (x < lo || x > hi) return CH_BAD;
        *out = x;
    }
    return 0;
}

CHOPIN_API int ch_req_param_int(const ch_req *req, const char *name, long long lo, long long hi, long long *out)
{
    ch_str s = ch_req_param(req, name);
    char buf[32];
    long n;
    if (!s.ptr) return CH_ABSENT;
    n = ch_url_decode(s.ptr, s.len, buf, sizeof buf, 0);
    return n < 0 ? CH_BAD : chi_parse_ll(buf, (size_t)n, lo, hi, out);
}

CHOPIN_API int ch_req_query_int(const ch_req *req, const char *name, long long lo, long long hi, long long *out)
{
    char buf[32];
    long n = ch_req_query(req, name, buf, sizeof buf);
    if (n == CH_ABSENT) return CH_ABSENT;
    return n < 0 ? CH_BAD : chi_parse_ll(buf, (size_t)n, lo, hi, out);
}
/* >>timers ------------------------------------------------------------------
   A worker's timers: a binary min-heap ordered by due time (milliseconds),
   then by the order they were armed. Each timer sits in a slot that keeps its
   place in the heap, so stopping one is O(log n) without a search, and a
   handle (ch_timer: generation << 32 | slot + 1) names one arming of one
   slot: a stale handle is recognised, never stops another timer. Adding,
   stopping and running are O(log n); 100,000 pending cost 100,000 slots and
   heap entries, nothing per pass. The clock is the caller's: this is plain
   data, tested on its own (tests/async_unit.c). */

#define CHI_TNONE 0xFFFFFFFFu

typedef struct chi_tslot {
    int64_t due;             /* ms, on the caller's clock */
    uint64_t seq;            /* arming order: equal due times run in it */
    uint64_t repeat;         /* ms; 0: once */
    ch_worker_fn fn;
    void *user;
    uint32_t gen;            /* bumped when the slot is freed */
    uint32_t heap;           /* its index in the heap; CHI_TNONE when free */
    uint32_t next_free;
    ch_defer_fn dfn;         /* instead of fn: a deferred response's timer */
    uint64_t did;            /* ... and its handle's id (the worker is the caller's) */
} chi_tslot;

typedef struct chi_timers {
    chi_tslot *slot;
    uint32_t nslot, slot_cap;
    uint32_t *heap;          /* slot indices */
    uint32_t n, heap_cap;
    uint32_t free_head;      /* CHI_TNONE: none */
    uint64_t seq;
} chi_timers;

static void chi_timers_init(chi_timers *t)
{
    memset(t, 0, sizeof *t);
    t->free_head = CHI_TNONE;
}

static void chi_timers_free(chi_timers *t)
{
    CHOPIN_FREE(t->slot);
    CHOPIN_FREE(t->heap);
    chi_timers_init(t);
}

static int chi_t_before(const chi_timers *t, uint32_t a, uint32_t b)
{
    const chi_tslot *x = &t->slot[a], *y = &t->slot[b];
    return x->due < y->due || (x->due == y->due && x->seq < y->seq);
}

static void chi_t_place(chi_timers *t, uint32_t i, uint32_t s)
{
    t->heap[i] = s;
    t->slot[s].heap = i;
}

static void chi_t_up(chi_timers *t, uint32_t i)
{
    uint32_t s = t->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!chi_t_before(t, s, t->heap[parent])) break;
        chi_t_place(t, i, t->heap[parent]);
        i = parent;
    }
    chi_t_place(t, i, s);
}

static void chi_t_down(chi_timers *t, uint32_t i)
{
    uint32_t s = t->heap[i];
    for (;;) {
        uint32_t kid = 2 * i + 1;
        if (kid >= t->n) break;
        if (kid + 1 < t->n && chi_t_before(t, t->heap[kid + 1], t->heap[kid])) kid++;
        if (!chi_t_before(t, t->heap[kid], s)) break;
        chi_t_place(t, i, t->heap[kid]);
        i = kid;
    }
    chi_t_place(t, i, s);
}

/* Takes slot s out of the heap (it stays allocated). */
static void chi_t_remove(chi_timers *t, uint32_t s)
{
    uint32_t i = t->slot[s].heap, last = t->heap[--t->n];
    t->slot[s].heap = CHI_TNONE;
    if (i == t->n) return;
    chi_t_place(t, i, last);
    chi_t_down(t, i);
    chi_t_up(t, t->slot[last].heap);
}

static void chi_t_insert(chi_timers *t, uint32_t s)
{
    t->slot[s].seq = t->seq++;
    chi_t_place(t, t->n++, s);
    chi_t_up(t, t->n - 1);
}

static void chi_t_release(chi_timers *t, uint32_t s)
{
    t->slot[s].gen++;
    t->slot[s].fn = NULL;
    t->slot[s].dfn = NULL;
    t->slot[s].next_free = t->free_head;
    t->free_head = s;
}

/* A free slot with room for it in the heap; CHI_TNONE when out of memory. */
static uint32_t chi_t_alloc(chi_timers *t)
{
    uint32_t s;
    if (t->free_head != CHI_TNONE) {
        s = t->free_head;
        t->free_head = t->slot[s].next_free;
        return s;
    }
    if (t->nslot == t->slot_cap) {
        uint32_t cap = t->slot_cap ? t->slot_cap * 2 : 64;
        chi_tslot *ns;
        uint32_t *nh;
        if (cap >= CHI_TNONE / 2) return CHI_TNONE;
        ns = (chi_tslot *)CHOPIN_REALLOC(t->slot, sizeof *ns * cap);
        if (!ns) return CHI_TNONE;
        t->slot = ns;
        nh = (uint32_t *)CHOPIN_REALLOC(t->heap, sizeof *nh * cap);
        if (!nh) return CHI_TNONE;
        t->heap = nh;
        t->slot_cap = t->heap_cap = cap;
    }
    s = t->nslot++;
    t->slot[s].gen = 1;
    return s;
}

/* Arms fn at now + delay (then every repeat ms, 0: once). Returns a handle,
   or 0 when out of memory. */
static uint64_t chi_timers_add(chi_timers *t, int64_t now, uint64_t delay, uint64_t repeat, ch_worker_fn fn, void *user)
{
    uint32_t s;
    chi_tslot *ts;
    if (!fn || (s = chi_t_alloc(t)) == CHI_TNONE) return 0;
    ts = &t->slot[s];
    ts->due = now + (int64_t)(delay > ((uint64_t)1 << 40) ? ((uint64_t)1 << 40) : delay);
    ts->repeat = repeat > ((uint64_t)1 << 40) ? ((uint64_t)1 << 40) : repeat;
    ts->fn = fn;
    ts->user = user;
    ts->dfn = NULL;
    chi_t_insert(t, s);
    return ((uint64_t)ts->gen << 32) | (uint64_t)(s + 1);
}

/* The slot a handle names while it is pending, or CHI_TNONE. */
static uint32_t chi_t_find(const chi_timers *t, uint64_t id)
{
    uint32_t s = (uint32_t)(id & 0xFFFFFFFFu) - 1u;
    if (id == 0 || s >= t->nslot || t->slot[s].gen != (uint32_t)(id >> 32) || t->slot[s].heap == CHI_TNONE)
        return CHI_TNONE;
    return s;
}

/* Makes a pending timer call dfn(handle did of worker w, user) instead. */
static void chi_timers_for_defer(chi_timers *t, uint64_t id, ch_defer_fn dfn, uint64_t did)
{
    uint32_t s = chi_t_find(t, id);
    if (s == CHI_TNONE) return;
    t->slot[s].dfn = dfn;
    t->slot[s].did = did;
}

static int chi_timers_cancel(chi_timers *t, uint64_t id)
{
    uint32_t s = chi_t_find(t, id);
    if (s == CHI_TNONE) return -1;
    chi_t_remove(t, s);
    chi_t_release(t, s);
    return 0;
}

/* Milliseconds until the first timer is due (0 if it is), or -1: none. */
static int64_t chi_timers_wait(const chi_timers *t, int64_t now)
{
    int64_t d;
    if (t->n == 0) return -1;
    d = t->slot[t->heap[0]].due - now;
    return d < 0 ? 0 : d;
}

/* Runs every timer due at `now` that was armed before this call: one armed
   by a callback waits for the next call, so a callback that re-arms at 0 ms
   cannot keep this loop going. A repeating timer is re-armed before its
   callback runs (which may stop it); a one-shot one is freed first (its
   handle is stale inside the callback). Returns how many ran. */
static int chi_timers_run(chi_timers *t, int64_t now, ch_worker *w)
{
    uint64_t before = t->seq;
    int ran = 0;
    while (t->n) {
        uint32_t s = t->heap[0];
        chi_tslot *ts = &t->slot[s];
        ch_worker_fn fn;
        ch_defer_fn dfn;
        ch_defer d;
        void *user;
        if (ts->due > now || ts->seq >= before) break;
        fn = ts->fn;
        dfn = ts->dfn;
        d.w = w;
        d.id = ts->did;
        user = ts->user;
        if (ts->repeat) {
            ts->due += (int64_t)ts->repeat;
            if (ts->due <= now) ts->due = now + (int64_t)ts->repeat; /* late: no burst of catch-ups */
            ts->seq = t->seq++;
            chi_t_down(t, 0);
        } else {
            chi_t_remove(t, s);
            chi_t_release(t, s);
        }
        if (dfn)
            dfn(d, user);
        else
            fn(w, user);
        ran++;
    }
    return ran;
}

/* >>queue -------------------------------------------------------------------
   The hand-off from any thread to a worker: a lock-free stack of nodes that
   producers push with one compare-and-swap and the worker takes whole with
   one exchange, then reverses into arrival order. Only the push that finds
   the stack empty needs to wake the worker: later ones ride on that wake,
   which the worker takes before it takes the stack. Atomics are the
   compiler's (__atomic, gcc and clang): no lock, no system call. */

typedef struct chi_qnode {
    struct chi_qnode *next;
    ch_worker_fn wfn;        /* a plain post, or */
    ch_defer_fn dfn;         /* one for a deferred response */
    ch_defer d;
    void *user;
    void *extra;             /* the off-loop pool's job */
} chi_qnode;

typedef struct chi_mpsc {
    chi_qnode *head;
} chi_mpsc;

/* A compiler without the __atomic builtins (tcc) gets the same queue
   without atomics: the server then takes a lock around push and take
   (CHI_ATOMICS 0, see >>later), and the flags below are plain ints (a
   wake-up, a system call, follows every store that matters). */
#if defined(__GNUC__) || defined(__clang__)
#define CHI_ATOMICS 1
static int chi_load_int(int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void chi_store_int(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
#else
#define CHI_ATOMICS 0
static int chi_load_int(int *p) { return *(volatile int *)p; }
static void chi_store_int(int *p, int v) { *(volatile int *)p = v; }
#endif

/* Any thread. Returns 1 when the queue was empty (the caller wakes the
   consumer), else 0. */
static int chi_mpsc_push(chi_mpsc *q, chi_qnode *n)
{
#if CHI_ATOMICS
    chi_qnode *old = __atomic_load_n(&q->head, __ATOMIC_RELAXED);
    do {
        n->next = old;
    } while (!__atomic_compare_exchange_n(&q->head, &old, n, 1, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
#else
    chi_qnode *old = q->head;
    n->next = old;
    q->head = n;
#endif
    return old == NULL;
}

/* The consumer: everything pushed so far, oldest first. */
static chi_qnode *chi_mpsc_take(chi_mpsc *q)
{
#if CHI_ATOMICS
    chi_qnode *n = __atomic_exchange_n(&q->head, (chi_qnode *)NULL, __ATOMIC_ACQUIRE), *fifo = NULL;
#else
    chi_qnode *n = q->head, *fifo = NULL;
    q->head = NULL;
#endif
    while (n) {
        chi_qnode *next = n->next;
        n->next = fifo;
        fifo = n;
        n = next;
    }
    return fifo;
}

#ifndef CHOPIN_NO_WEBSOCKET
/* The WebSocket pieces of the core are also built alone (unit tests,
   fuzzing, CHOPIN_CORE_ONLY), where nothing in the server calls them: no
   warning for that. */
#if defined(__GNUC__) || defined(__clang__)
#define CHI_WS_FN static __attribute__((unused))
#else
#define CHI_WS_FN static
#endif

/* >>sha1 --------------------------------------------------------------------
   SHA-1 (RFC 3174), only for the WebSocket handshake: Sec-WebSocket-Accept
   is base64(SHA-1(key + a fixed GUID)). SHA-1 is broken for signatures, but
   the handshake only uses it to prove the server read the key. Blocks of 64
   bytes are compressed as they fill; the last one carries the bit length. */

typedef struct chi_sha1 {
    uint32_t h[5];
    uint64_t bytes;              /* message length so far */
    unsigned char block[64];
    size_t fill;                 /* bytes waiting in block */
} chi_sha1;

static uint32_t chi_rol32(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }

static void chi_sha1_compress(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f, k, t;
    size_t i;
    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (i = 16; i < 80; i++) w[i] = chi_rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    for (i = 0; i < 80; i++) {
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999u;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1u;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDCu;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6u;
        }
        t = chi_rol32(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = chi_rol32(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

CHI_WS_FN void chi_sha1_init(chi_sha1 *s)
{
    s->h[0] = 0x67452301u;
    s->h[1] = 0xEFCDAB89u;
    s->h[2] = 0x98BADCFEu;
    s->h[3] = 0x10325476u;
    s->h[4] = 0xC3D2E1F0u;
    s->bytes = 0;
    s->fill = 0;
}

CHI_WS_FN void chi_sha1_update(chi_sha1 *s, const void *data, size_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    s->bytes += n;
    while (n) {
        size_t k = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->block + s->fill, p, k);
        s->fill += k;
        p += k;
        n -= k;
        if (s->fill == 64) {
            chi_sha1_compress(s->h, s->block);
            s->fill = 0;
        }
    }
}

/* Pads with 0x80, zeros and the length in bits (big-endian), then gives the
   20-byte digest. */
CHI_WS_FN void chi_sha1_final(chi_sha1 *s, unsigned char out[20])
{
    uint64_t bits = s->bytes * 8;
    int i;
    s->block[s->fill++] = 0x80;
    if (s->fill > 56) {
        memset(s->block + s->fill, 0, 64 - s->fill);
        chi_sha1_compress(s->h, s->block);
        s->fill = 0;
    }
    memset(s->block + s->fill, 0, 56 - s->fill);
    for (i = 0; i < 8; i++) s->block[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
    chi_sha1_compress(s->h, s->block);
    for (i = 0; i < 20; i++) out[i] = (unsigned char)(s->h[i / 4] >> (24 - 8 * (i % 4)));
}

/* >>base64 ------------------------------------------------------------------
   Base64 with padding (RFC 4648 section 4): encoding for Sec-WebSocket-Accept,
   strict decoding to check that a Sec-WebSocket-Key is 16 bytes. The decoder
   takes only the canonical form: padding where due, unused bits zero. */

static const char chi_b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Writes 4 * ceil(n / 3) characters (no NUL); returns that length. */
CHI_WS_FN size_t chi_base64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t i, o = 0;
    for (i = 0; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = chi_b64_alphabet[v >> 18];
        out[o++] = chi_b64_alphabet[(v >> 12) & 63];
        out[o++] = chi_b64_alphabet[(v >> 6) & 63];
        out[o++] = chi_b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = chi_b64_alphabet[v >> 18];
        out[o++] = chi_b64_alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = chi_b64_alphabet[v >> 18];
        out[o++] = chi_b64_alphabet[(v >> 12) & 63];
        out[o++] = chi_b64_alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    return o;
}

static int chi_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes in[0, n) into out (cap bytes). Returns the decoded length, or -1
   for anything but canonical padded base64 or when out is too small. */
CHI_WS_FN long chi_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    size_t i, o = 0;
    if (n % 4) return -1;
    for (i = 0; i < n; i += 4) {
        int v[4], k, pad = 0;
        uint32_t x;
        for (k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + (size_t)k];
            if (c == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad) return -1; /* "A=A=": data after padding */
            v[k] = chi_b64_value(c);
            if (v[k] < 0) return -1;
        }
        x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        if ((pad == 1 && (x & 0xFF)) || (pad == 2 && (x & 0xFFFF))) return -1; /* bits left over */
        if (cap - o < (size_t)(3 - pad)) return -1;
        out[o++] = (unsigned char)(x >> 16);
        if (pad < 2) out[o++] = (unsigned char)(x >> 8);
        if (pad < 1) out[o++] = (unsigned char)x;
    }
    return (long)o;
}

/* >>websocket frames ----------------------------------------------------------
   RFC 6455 over bytes: the opening handshake's checks and its accept key, an
   incremental frame parser, an incremental UTF-8 validator, close codes and
   the server's frame writer. The server (>>websocket) does the I/O.

   The parser is fed whatever the socket gave and returns one event at a
   time: a piece of message payload (unmasked in place, in the caller's
   buffer: no copy), the end of a message, a whole control frame (ping, pong,
   close: at most 125 bytes, kept in the parser since they may arrive split),
   or an error with the close code to answer it. It refuses, as soon as the
   offending byte arrives:
     1002  unmasked client frames, reserved bits (no extension is ever
           negotiated), unknown opcodes, control frames fragmented or over
           125 bytes, a continuation with no message or a new message inside
           one, a length not in its shortest form or with the top bit set, a
           close frame with a 1-byte payload or a code that may not be sent
     1007  text (or a close reason) that is not UTF-8: checked piece by
           piece across frames, so it fails on the first bad byte
     1009  a message that would grow over the limit: refused from the frame
           head, before its payload is read. */

enum {
    CHI_WS_CONT = 0x0,
    CHI_WS_TEXT = 0x1,
    CHI_WS_BINARY = 0x2,
    CHI_WS_CLOSE = 0x8,
    CHI_WS_PING = 0x9,
    CHI_WS_PONG = 0xA
};

/* Close codes (RFC 6455 7.4.1) the server uses. */
#define CHI_WS_NORMAL 1000
#define CHI_WS_GOING_AWAY 1001
#define CHI_WS_PROTOCOL_ERROR 1002
#define CHI_WS_NO_STATUS 1005      /* a close frame without a code: never sent */
#define CHI_WS_INVALID_DATA 1007
#define CHI_WS_TOO_BIG 1009
#define CHI_WS_INTERNAL 1011
#define CHI_WS_MAX_CONTROL 125     /* control frame payload */
#define CHI_WS_MAX_HEAD 14         /* 2 + 8 (length) + 4 (mask) */
#define CHI_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define CHI_WS_ACCEPT_LEN 28       /* base64 of a 20-byte digest */

/* -- UTF-8, incrementally -- */

/* Where a validator stands between two pieces: the continuation bytes still
   due and the range the next one must fall in (narrower than 80..BF right
   after E0, ED, F0 and F4: overlongs, surrogates, above U+10FFFF). */
typedef struct chi_utf8 {
    unsigned char need;
    unsigned char lo, hi;
} chi_utf8;

CHI_WS_FN void chi_utf8_init(chi_utf8 *u)
{
    u->need = 0;
    u->lo = 0x80;
    u->hi = 0xBF;
}

/* The first byte of a sequence: sets what must follow; -1 if it cannot
   start one (RFC 3629 section 4). */
static int chi_utf8_lead(chi_utf8 *u, unsigned c)
{
    u->lo = 0x80;
    u->hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) u->need = 1;
    else if (c >= 0xE0 && c <= 0xEF) u->need = 2;
    else if (c >= 0xF0 && c <= 0xF4) u->need = 3;
    else return -1;
    if (c == 0xE0) u->lo = 0xA0;      /* overlong */
    else if (c == 0xED) u->hi = 0x9F; /* UTF-16 surrogates */
    else if (c == 0xF0) u->lo = 0x90; /* overlong */
    else if (c == 0xF4) u->hi = 0x8F; /* above U+10FFFF */
    return 0;
}

/* Feeds n more bytes. Returns 0 while everything so far can begin valid
   UTF-8, -1 from the first byte that cannot. Runs of ASCII go 8 bytes at a
   time. */
CHI_WS_FN int chi_utf8_feed(chi_utf8 *u, const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (u->need) {
            if (c < u->lo || c > u->hi) return -1;
            u->need--;
            u->lo = 0x80;
            u->hi = 0xBF;
            i++;
        } else if (c < 0x80) {
            i++;
            while (n - i >= 8 && !(chi_load8((const char *)p + i) & 0x8080808080808080ull)) i += 8;
        } else {
            if (chi_utf8_lead(u, c) < 0) return -1;
            i++;
        }
    }
    return 0;
}

/* A whole text ends here: no sequence may be left open. */
CHI_WS_FN int chi_utf8_done(const chi_utf8 *u) { return u->need == 0; }

/* -- close codes -- */

/* May this code appear in a close frame (RFC 6455 7.4.1, 7.4.2 and the IANA
   registry)? 1004-1006 and 1015 are reserved, 1016-2999 unassigned; 3000-4999
   belong to libraries and applications. */
CHI_WS_FN int chi_ws_close_code_ok(int code)
{
    if (code >= 3000 && code <= 4999) return 1;
    return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006;
}

/* A close frame's payload: the code (big-endian) and the reason, cut to fit
   125 bytes at a character boundary. Returns the payload length. */
CHI_WS_FN size_t chi_ws_close_payload(unsigned char out[CHI_WS_MAX_CONTROL], int code, const char *reason, size_t len)
{
    if (len > CHI_WS_MAX_CONTROL - 2) {
        len = CHI_WS_MAX_CONTROL - 2;
        while (len > 0 && ((unsigned char)reason[len] & 0xC0) == 0x80) len--; /* not mid-character */
    }
    out[0] = (unsigned char)(code >> 8);
    out[1] = (unsigned char)code;
    if (len) memcpy(out + 2, reason, len);
    return 2 + len;
}

/* -- the frame writer -- */

/* The head of a server frame (never masked, RFC 6455 5.1) into out (up to
   10 bytes), length in its shortest form. Returns the head's length. */
CHI_WS_FN size_t chi_ws_head_put(unsigned char *out, unsigned opcode, int fin, uint64_t len)
{
    int i;
    out[0] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0F));
    if (len < 126) {
        out[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        return 4;
    }
    out[1] = 127;
    for (i = 0; i < 8; i++) out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
    return 10;
}

/* A whole frame (head and payload) appended to b: how a message is framed
   once and then queued to many connections. Returns 0 or -1 (memory). */
CHI_WS_FN int chi_ws_frame_append(chi_buf *b, unsigned opcode, const void *data, size_t len)
{
    unsigned char head[10];
    size_t hl = chi_ws_head_put(head, opcode, 1, len);
    if (chi_buf_reserve(b, hl + len) < 0) return -1;
    chi_buf_append(b, head, hl);
    chi_buf_append(b, data, len);
    return 0;
}

/* -- the parser -- */

enum {
    CHI_WS_EV_NONE,    /* every byte given was used: feed more */
    CHI_WS_EV_DATA,    /* data, len: a piece of the current message */
    CHI_WS_EV_MESSAGE, /* the current message is whole (opcode: text or binary) */
    CHI_WS_EV_PING,    /* data, len: the ping's payload (answer with a pong) */
    CHI_WS_EV_PONG,
    CHI_WS_EV_CLOSE,   /* code (CHI_WS_NO_STATUS when none), data, len: the reason */
    CHI_WS_EV_ERROR    /* code: close the connection with it */
};

typedef struct chi_ws_event {
    int kind;
    int opcode;          /* DATA and MESSAGE: CHI_WS_TEXT or CHI_WS_BINARY */
    unsigned char *data;
    size_t len;
    int code;
} chi_ws_event;

enum { CHI_WSP_HEAD, CHI_WSP_PAYLOAD, CHI_WSP_END };

typedef struct chi_ws_parser {
    uint64_t max_message;   /* a message over it: 1009 */
    int state;
    unsigned char head[CHI_WS_MAX_HEAD];
    unsigned head_len;      /* head bytes received */
    unsigned head_need;     /* the head's length (2 until its second byte) */
    unsigned opcode;
    int fin;
    uint64_t left;          /* payload bytes of this frame not yet received */
    unsigned char mask[4];
    unsigned mask_at;       /* payload offset mod 4 */
    int msg;                /* opcode of the message in progress, 0: none */
    uint64_t msg_len;       /* its bytes so far, frame heads' lengths summed */
    chi_utf8 utf8;          /* its text so far */
    unsigned char ctl[CHI_WS_MAX_CONTROL];
    unsigned ctl_len;
    int failed;             /* the close code of an error already reported */
} chi_ws_parser;

CHI_WS_FN void chi_ws_parser_init(chi_ws_parser *ps, uint64_t max_message)
{
    memset(ps, 0, sizeof *ps);
    ps->max_message = max_message;
    ps->head_need = 2;
    chi_utf8_init(&ps->utf8);
}

static int chi_ws_is_control(unsigned opcode) { return (opcode & 0x8) != 0; }

/* XORs the payload with the client's key in place, 8 bytes at a time where
   it can; *at is the payload offset mod 4, kept across calls. */
static void chi_ws_unmask(unsigned char *p, size_t n, const unsigned char mask[4], unsigned *at)
{
    size_t i = 0;
    unsigned a = *at;
    if (n >= 16) {
        unsigned char m8[8];
        uint64_t m, w;
        int k;
        for (k = 0; k < 8; k++) m8[k] = mask[(a + (unsigned)k) & 3];
        memcpy(&m, m8, 8);
        for (; n - i >= 8; i += 8) { /* 8 is a multiple of 4: the phase holds */
            memcpy(&w, p + i, 8);
            w ^= m;
            memcpy(p + i, &w, 8);
        }
    }
    for (; i < n; i++) p[i] ^= mask[(a + i) & 3];
    *at = (unsigned)((a + n) & 3);
}

static int chi_ws_parse_fail(chi_ws_parser *ps, chi_ws_event *ev, int code)
{
    ps->failed = code;
    ev->kind = CHI_WS_EV_ERROR;
    ev->code = code;
    return code;
}

/* The first two bytes decide most things (RFC 6455 5.2, 5.4, 5.5): checked
   before the rest of the head arrives. Returns 0 or a close code; sets how
   long the head is. */
static int chi_ws_check_start(chi_ws_parser *ps)
{
    unsigned b0 = ps->head[0], b1 = ps->head[1], op = b0 & 0x0F, len7 = b1 & 0x7F;
    if (b0 & 0x70) return CHI_WS_PROTOCOL_ERROR; /* RSV1-3: no extension negotiated */
    if (op != CHI_WS_CONT && op != CHI_WS_TEXT && op != CHI_WS_BINARY && op != CHI_WS_CLOSE && op != CHI_WS_PING &&
        op != CHI_WS_PONG)
        return CHI_WS_PROTOCOL_ERROR;
    if (!(b1 & 0x80)) return CHI_WS_PROTOCOL_ERROR; /* clients must mask (5.1) */
    if (chi_ws_is_control(op)) {
        if (!(b0 & 0x80) || len7 > CHI_WS_MAX_CONTROL) return CHI_WS_PROTOCOL_ERROR;
    } else if (op == CHI_WS_CONT) {
        if (!ps->msg) return CHI_WS_PROTOCOL_ERROR; /* nothing to continue */
    } else if (ps->msg) {
        return CHI_WS_PROTOCOL_ERROR; /* a new message inside a fragmented one */
    }
    ps->head_need = 2 + (len7 == 126 ? 2u : len7 == 127 ? 8u : 0u) + 4;
    return 0;
}

/* The whole head is in: the length (shortest form, top bit clear), the
   message limit, the mask. Returns 0 or a close code. */
static int chi_ws_begin_frame(chi_ws_parser *ps)
{
    const unsigned char *h = ps->head;
    unsigned len7 = h[1] & 0x7F, at = 2, i;
    uint64_t len = len7;
    ps->opcode = h[0] & 0x0F;
    ps->fin = (h[0] & 0x80) != 0;
    if (len7 == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
        if (len < 126) return CHI_WS_PROTOCOL_ERROR;
        at = 4;
    } else if (len7 == 127) {
        for (len = 0, i = 0; i < 8; i++) len = len << 8 | h[2 + i];
        if (len >> 63 || len <= 0xFFFF) return CHI_WS_PROTOCOL_ERROR;
        at = 10;
    }
    memcpy(ps->mask, h + at, 4);
    ps->mask_at = 0;
    ps->left = len;
    if (chi_ws_is_control(ps->opcode)) {
        ps->ctl_len = 0;
        return 0;
    }
    if (ps->opcode != CHI_WS_CONT) {
        ps->msg = (int)ps->opcode;
        ps->msg_len = 0;
        chi_utf8_init(&ps->utf8);
    }
    if (len > ps->max_message - ps->msg_len) return CHI_WS_TOO_BIG;
    ps->msg_len += len;
    return 0;
}

/* A control frame is whole: its event. A close frame's code and reason are
   checked here (5.5.1, 7.4). */
static void chi_ws_control_event(chi_ws_parser *ps, chi_ws_event *ev)
{
    ev->data = ps->ctl;
    ev->len = ps->ctl_len;
    if (ps->opcode == CHI_WS_PING) {
        ev->kind = CHI_WS_EV_PING;
    } else if (ps->opcode == CHI_WS_PONG) {
        ev->kind = CHI_WS_EV_PONG;
    } else if (ps->ctl_len == 0) {
        ev->kind = CHI_WS_EV_CLOSE;
        ev->code = CHI_WS_NO_STATUS;
    } else {
        chi_utf8 u;
        int code = ps->ctl_len >= 2 ? ps->ctl[0] << 8 | ps->ctl[1] : 0;
        chi_utf8_init(&u);
        if (ps->ctl_len == 1 || !chi_ws_close_code_ok(code)) {
            chi_ws_parse_fail(ps, ev, CHI_WS_PROTOCOL_ERROR);
            return;
        }
        if (chi_utf8_feed(&u, ps->ctl + 2, ps->ctl_len - 2) < 0 || !chi_utf8_done(&u)) {
            chi_ws_parse_fail(ps, ev, CHI_WS_INVALID_DATA);
            return;
        }
        ev->kind = CHI_WS_EV_CLOSE;
        ev->code = code;
        ev->data = ps->ctl + 2;
        ev->len = ps->ctl_len - 2;
    }
}

/* Collects head bytes from p; returns how many it took, and 0 or a close
   code in *err. */
static size_t chi_ws_read_head(chi_ws_parser *ps, const unsigned char *p, size_t n, int *err)
{
    size_t used = 0;
    *err = 0;
    while (ps->head_len < ps->head_need && used < n) {
        ps->head[ps->head_len++] = p[used++];
        if (ps->head_len == 2 && (*err = chi_ws_check_start(ps)) != 0) return used;
    }
    if (ps->head_len == ps->head_need && ps->head_len > 2) {
        *err = chi_ws_begin_frame(ps);
        if (!*err) ps->state = CHI_WSP_PAYLOAD;
    }
    return used;
}

/* Unmasks the payload bytes in p[0, k) and reports them. */
static void chi_ws_read_payload(chi_ws_parser *ps, unsigned char *p, size_t k, chi_ws_event *ev)
{
    chi_ws_unmask(p, k, ps->mask, &ps->mask_at);
    ps->left -= k;
    if (ps->left == 0) ps->state = CHI_WSP_END;
    if (chi_ws_is_control(ps->opcode)) {
        memcpy(ps->ctl + ps->ctl_len, p, k);
        ps->ctl_len += (unsigned)k;
        return;
    }
    if (ps->msg == CHI_WS_TEXT && chi_utf8_feed(&ps->utf8, p, k) < 0) {
        chi_ws_parse_fail(ps, ev, CHI_WS_INVALID_DATA);
        return;
    }
    ev->kind = CHI_WS_EV_DATA;
    ev->opcode = ps->msg;
    ev->data = p;
    ev->len = k;
}

/* A frame's payload is all in: what it completes, if anything. */
static void chi_ws_end_frame(chi_ws_parser *ps, chi_ws_event *ev)
{
    ps->state = CHI_WSP_HEAD;
    ps->head_len = 0;
    ps->head_need = 2;
    if (chi_ws_is_control(ps->opcode)) {
        chi_ws_control_event(ps, ev);
        return;
    }
    if (!ps->fin) return;
    if (ps->msg == CHI_WS_TEXT && !chi_utf8_done(&ps->utf8)) {
        chi_ws_parse_fail(ps, ev, CHI_WS_INVALID_DATA);
        return;
    }
    ev->kind = CHI_WS_EV_MESSAGE;
    ev->opcode = ps->msg;
    ps->msg = 0;
}

/* Reads from p[0, n) until one event. Returns the bytes used; the caller
   calls again with the rest until the event is CHI_WS_EV_NONE (all used)
   or CHI_WS_EV_ERROR (stop reading: nothing more is accepted). Payload
   bytes are unmasked in place. */
CHI_WS_FN size_t chi_ws_parse(chi_ws_parser *ps, unsigned char *p, size_t n, chi_ws_event *ev)
{
    size_t used = 0;
    memset(ev, 0, sizeof *ev);
    if (ps->failed) {
        ev->kind = CHI_WS_EV_ERROR;
        ev->code = ps->failed;
        return 0;
    }
    for (;;) {
        if (ps->state == CHI_WSP_HEAD) {
            int err;
            used += chi_ws_read_head(ps, p + used, n - used, &err);
            if (err) {
                chi_ws_parse_fail(ps, ev, err);
                return used;
            }
            if (ps->state == CHI_WSP_HEAD) return used; /* head incomplete, all used */
            if (ps->left == 0) ps->state = CHI_WSP_END;
        }
        if (ps->state == CHI_WSP_PAYLOAD) {
            size_t k = n - used;
            if (k == 0) return used;
            if (k > ps->left) k = (size_t)ps->left;
            chi_ws_read_payload(ps, p + used, k, ev);
            used += k;
            if (ev->kind != CHI_WS_EV_NONE) return used;
        }
        if (ps->state == CHI_WSP_END) {
            chi_ws_end_frame(ps, ev);
            if (ev->kind != CHI_WS_EV_NONE) return used;
        }
    }
}

/* -- the opening handshake (RFC 6455 4.2) -- */

/* The next element of a comma-separated list (RFC 9110 5.6.1), spaces
   trimmed, empty elements skipped. Returns 1, or 0 at the end. */
CHI_WS_FN int chi_list_next(ch_str *rest, ch_str *item)
{
    while (rest->len) {
        const char *p = rest->ptr, *comma = (const char *)memchr(p, ',', rest->len);
        size_t n = comma ? (size_t)(comma - p) : rest->len;
        rest->ptr += comma ? n + 1 : n;
        rest->len -= comma ? n + 1 : n;
        while (n && (*p == ' ' || *p == '\t')) p++, n--;
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
        if (n) {
            *item = chi_str(p, n);
            return 1;
        }
    }
    return 0;
}

/* Does the list hold this token (any case)? `lower` is lower-case. */
CHI_WS_FN int chi_list_has(ch_str list, const char *lower)
{
    size_t n = strlen(lower);
    ch_str item;
    while (chi_list_next(&list, &item))
        if (item.len == n && chi_ieq(item.ptr, lower, n)) return 1;
    return 0;
}

/* How many header lines have this name (lower-case)? */
static int chi_header_count(const ch_req *req, const char *lower)
{
    size_t n = strlen(lower);
    int i, count = 0;
    for (i = 0; i < req->header_count; i++)
        if (req->headers[i].name.len == n && chi_ieq(req->headers[i].name.ptr, lower, n)) count++;
    return count;
}

/* Is this request a WebSocket opening handshake we accept (4.2.1)? Returns
   0 with the key in *key, 426 when it does not ask for WebSocket or asks for
   a version other than 13 (answer with Sec-WebSocket-Version: 13), or 400
   when it asks but is malformed (not GET over HTTP/1.1, no Connection:
   upgrade, a key that is not 16 bytes in base64, a repeated key). */
CHI_WS_FN int chi_ws_check_request(const ch_req *req, ch_str *key)
{
    ch_str version = ch_req_header(req, "sec-websocket-version");
    ch_str k = ch_req_header(req, "sec-websocket-key");
    unsigned char raw[18];
    if (!chi_list_has(ch_req_common(req, CH_H_UPGRADE), "websocket")) return 426;
    if (req->method != CH_GET || req->version_minor < 1) return 400;
    if (!chi_list_has(ch_req_common(req, CH_H_CONNECTION), "upgrade")) return 400;
    if (chi_header_count(req, "sec-websocket-version") != 1 || !ch_str_eq(version, "13")) return 426;
    if (chi_header_count(req, "sec-websocket-key") != 1) return 400;
    if (chi_base64_decode(k.ptr, k.len, raw, sizeof raw) != 16) return 400;
    *key = k;
    return 0;
}

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)), 28 bytes. */
CHI_WS_FN void chi_ws_accept(ch_str key, char out[CHI_WS_ACCEPT_LEN])
{
    chi_sha1 s;
    unsigned char digest[20];
    chi_sha1_init(&s);
    chi_sha1_update(&s, key.ptr, key.len);
    chi_sha1_update(&s, CHI_WS_GUID, sizeof CHI_WS_GUID - 1);
    chi_sha1_final(&s, digest);
    chi_base64_encode(digest, sizeof digest, out);
}
#endif /* CHOPIN_NO_WEBSOCKET */

/* >>mime ----------------------------------------------------------------------
   Content-Type by file extension: a sorted table of the common types, looked
   up by binary search on the lower-cased extension. An application can add
   or replace entries for itself (ch_mime_set); those are looked at first by
   its static files. Text types carry "; charset=utf-8". */

typedef struct chi_mime {
    const char *ext;
    const char *type;
} chi_mime;

static const chi_mime chi_mime_table[] = {
    {"7z", "application/x-7z-compressed"},
    {"aac", "audio/aac"},
    {"apng", "image/apng"},
    {"avif", "image/avif"},
    {"bin", "application/octet-stream"},
    {"bmp", "image/bmp"},
    {"br", "application/x-brotli"},
    {"css", "text/css; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"eot", "application/vnd.ms-fontobject"},
    {"flac", "audio/flac"},
    {"gif", "image/gif"},
    {"gz", "application/gzip"},
    {"htm", "text/html; charset=utf-8"},
    {"html", "text/html; charset=utf-8"},
    {"ico", "image/x-icon"},
    {"ics", "text/calendar; charset=utf-8"},
    {"jpeg", "image/jpeg"},
    {"jpg", "image/jpeg"},
    {"js", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"jsonld", "application/ld+json"},
    {"m4a", "audio/mp4"},
    {"map", "application/json"},
    {"md", "text/markdown; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
    {"mpeg", "video/mpeg"},
    {"oga", "audio/ogg"},
    {"ogg", "audio/ogg"},
    {"ogv", "video/ogg"},
    {"otf", "font/otf"},
    {"pdf", "application/pdf"},
    {"png", "image/png"},
    {"rss", "application/rss+xml"},
    {"svg", "image/svg+xml"},
    {"tar", "application/x-tar"},
    {"tif", "image/tiff"},
    {"tiff", "image/tiff"},
    {"ttf", "font/ttf"},
    {"txt", "text/plain; charset=utf-8"},
    {"wasm", "application/wasm"},
    {"wav", "audio/wav"},
    {"weba", "audio/webm"},
    {"webm", "video/webm"},
    {"webmanifest", "application/manifest+json"},
    {"webp", "image/webp"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"xhtml", "application/xhtml+xml"},
    {"xml", "application/xml"},
    {"yaml", "application/yaml"},
    {"yml", "application/yaml"},
    {"zip", "application/zip"},
};

#define CHI_MIME_DEFAULT "application/octet-stream"
#define CHI_MIME_EXT_MAX 16 /* longer extensions are never in a table */

/* The extension of a path or a bare extension, lower-cased into out
   (CHI_MIME_EXT_MAX + 1 bytes): "a/b.TXT" -> "txt", ".js" -> "js",
   "css" -> "css". Returns 0, or -1 when there is none or it is too long. */
static int chi_mime_ext(const char *path, size_t len, char *out)
{
    size_t i = len, n;
    while (i > 0 && path[i - 1] != '.' && path[i - 1] != '/') i--;
    if (i > 0 && path[i - 1] == '/') return -1; /* a name without a dot */
    /* i == 0: no dot at all, the whole thing is the extension ("css") */
    n = len - i;
    if (n == 0 || n > CHI_MIME_EXT_MAX) return -1;
    for (len = 0; len < n; len++) out[len] = chi_lower(path[i + len]);
    out[n] = 0;
    return 0;
}

static const char *chi_mime_builtin(const char *ext)
{
    size_t lo = 0, hi = sizeof chi_mime_table / sizeof chi_mime_table[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ext, chi_mime_table[mid].ext);
        if (c == 0) return chi_mime_table[mid].type;
        if (c < 0) hi = mid; else lo = mid + 1;
    }
    return NULL;
}

CHOPIN_API const char *ch_mime_type(const char *path_or_ext)
{
    char ext[CHI_MIME_EXT_MAX + 1];
    const char *t;
    if (!path_or_ext || chi_mime_ext(path_or_ext, strlen(path_or_ext), ext) < 0) return CHI_MIME_DEFAULT;
    t = chi_mime_builtin(ext);
    return t ? t : CHI_MIME_DEFAULT;
}

/* >>paths ---------------------------------------------------------------------
   From a URL path to a file path that can only name something under a root.
   Two guards, both here so they can be tested and fuzzed without a disk:
   - chi_dot_segment: does a route parameter or wildcard hold a "." or ".."
     segment, raw or percent-encoded, with '/' or '\' (raw or encoded) as
     separators? The router refuses such a match (RFC 3986 5.2.4 would
     resolve them; refusing means a naive handler never sees one).
   - chi_path_clean: percent-decodes a wildcard into "a/b/c": empty and "."
     segments dropped; "..", NUL, a control byte, a backslash, an encoded
     '/' or a bad escape refused (400); a segment that starts with '.'
     (a dotfile) refused with 404 unless allowed. The file itself is then
     opened segment by segment without following a symlink out of the root
     (>>os: chi_os_open_beneath). */

/* One decoded byte of a path, and how many input bytes it took. */
static int chi_path_byte(const char *p, size_t left, unsigned char *c)
{
    if (p[0] == '%' && left >= 3 && chi_hexval((unsigned char)p[1]) >= 0 && chi_hexval((unsigned char)p[2]) >= 0) {
        *c = (unsigned char)(chi_hexval((unsigned char)p[1]) * 16 + chi_hexval((unsigned char)p[2]));
        return 3;
    }
    *c = (unsigned char)p[0];
    return 1;
}

static int chi_dot_segment(const char *p, size_t len)
{
    size_t i = 0;
    int dots = 0, other = 0;
    while (i <= len) {
        unsigned char c = '/';
        int step = 1;
        if (i < len) step = chi_path_byte(p + i, len - i, &c);
        if (c == '/' || c == '\\') {
            if (!other && (dots == 1 || dots == 2)) return 1;
            dots = other = 0;
        } else if (c == '.') {
            dots++;
        } else {
            other = 1;
        }
        i += (size_t)step;
    }
    return 0;
}

#ifndef CHOPIN_NO_STATIC
#define CHI_PATH_MAX 4096 /* a cleaned file path, NUL included */

static long chi_path_clean(const char *in, size_t len, char *out, size_t cap, int allow_dotfiles)
{
    size_t i = 0, n = 0, seg = 0; /* seg: where the current segment starts in out */
    int dotfile = 0;
    if (cap == 0) return -400;
    while (i <= len) {
        unsigned char c;
        if (i == len || in[i] == '/') {
            size_t sl = n - seg;
            if (sl == 1 && out[seg] == '.') n = seg; /* "." */
            else if (sl == 2 && out[seg] == '.' && out[seg + 1] == '.') return -400;
            else if (sl > 0 && out[seg] == '.') dotfile = 1;
            if (n > seg) {
                if (n + 1 >= cap) return -400;
                out[n++] = '/';
            }
            seg = n;
            i++;
            continue;
        }
        if (in[i] == '%') {
            int hi = i + 2 < len ? chi_hexval((unsigned char)in[i + 1]) : -1;
            int lo = i + 2 < len ? chi_hexval((unsigned char)in[i + 2]) : -1;
            if (hi < 0 || lo < 0) return -400;
            c = (unsigned char)(hi * 16 + lo);
            if (c == '/') return -400; /* an encoded separator names nothing */
            i += 3;
        } else {
            c = (unsigned char)in[i++];
        }
        if (c < 0x20 || c == 0x7f || c == '\\') return -400;
        if (n + 1 >= cap) return -400;
        out[n++] = (char)c;
    }
    if (n > 0 && out[n - 1] == '/') n--;
    out[n] = 0;
    if (dotfile && !allow_dotfiles) return -404;
    return (long)n;
}

#endif /* CHOPIN_NO_STATIC */

#ifndef CHOPIN_NO_STATIC
/* >>ranges --------------------------------------------------------------------
   What a request for a file asks beyond the file: validators (a strong ETag
   from inode, size and modification time; Last-Modified), the conditional
   headers of RFC 9110 13 in their order of precedence, and one Range. */

/* "<inode>-<size>-<mtime ns>" in hex, quoted; out needs 64 bytes. */
#define CHI_ETAG_MAX 64
static size_t chi_etag_format(uint64_t ino, uint64_t size, int64_t mtime_ns, char *out)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v[3];
    size_t n = 0;
    int k;
    v[0] = ino;
    v[1] = size;
    v[2] = (uint64_t)mtime_ns;
    out[n++] = '"';
    for (k = 0; k < 3; k++) {
        int shift = 60;
        while (shift > 0 && ((v[k] >> shift) & 15) == 0) shift -= 4;
        for (; shift >= 0; shift -= 4) out[n++] = hex[(v[k] >> shift) & 15];
        out[n++] = k < 2 ? '-' : '"';
    }
    return n;
}

/* Does the If-None-Match / If-Match list hold etag? "*" matches any.
   Weak comparison ignores a "W/" prefix (If-None-Match); strong comparison
   never matches a weak tag (If-Match, If-Range). */
static int chi_etag_match(ch_str list, const char *etag, size_t elen, int weak)
{
    const char *p = list.ptr, *end;
    if (!p) return 0;
    end = p + list.len;
    while (p < end) {
        const char *s;
        int is_weak = 0;
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) p++;
        if (p == end) break;
        if (*p == '*') return 1;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/') {
            is_weak = 1;
            p += 2;
        }
        if (p == end || *p != '"') return 0; /* malformed: no match */
        s = p++;
        while (p < end && *p != '"') p++;
        if (p == end) return 0;
        p++;
        if ((size_t)(p - s) == elen && memcmp(s, etag, elen) == 0 && (weak || !is_weak)) return 1;
    }
    return 0;
}

/* Two digits at s, or -1. */
static int chi_date_2d(const char *s)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') return -1;
    return (s[0] - '0') * 10 + (s[1] - '0');
}

/* "Nov" at s: 1..12, or -1. */
static int chi_date_month(const char *s)
{
    static const char mon[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    int m;
    for (m = 0; m < 12; m++)
        if (memcmp(s, mon + 3 * (size_t)m, 3) == 0) return m + 1;
    return -1;
}

/* "08:49:37" at s into seconds of the day, or -1. */
static int64_t chi_date_clock(const char *s)
{
    int hh = chi_date_2d(s), mm = chi_date_2d(s + 3), ss = chi_date_2d(s + 6);
    if (s[2] != ':' || s[5] != ':' || hh < 0 || mm < 0 || ss < 0 || hh > 23 || mm > 59 || ss > 60) return -1;
    return (int64_t)hh * 3600 + (int64_t)mm * 60 + ss;
}

/* Seconds since the epoch of a civil date (days from civil, the inverse of
   chi_format_date's method), or -1 for a day out of range. */
static int chi_date_join(int64_t y, int64_t m, int64_t d, int64_t clock, int64_t *out)
{
    int64_t era, yoe, doy, doe;
    if (m < 1 || d < 1 || d > 31 || clock < 0) return -1;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    *out = (era * 146097 + doe - 719468) * 86400 + clock;
    return 0;
}

/* An HTTP-date (RFC 9110 5.6.7) to seconds since the epoch. A recipient
   must accept all three forms:
     IMF-fixdate  "Sun, 06 Nov 1994 08:49:37 GMT"
     RFC 850      "Sunday, 06-Nov-94 08:49:37 GMT" (a two-digit year is
                  taken as 1970-2069: the core has no clock to do better)
     asctime      "Sun Nov  6 08:49:37 1994"
   Anything else gives -1, and the header that held it is ignored. */
static int chi_http_date(const char *s, size_t n, int64_t *out)
{
    const char *c = (const char *)memchr(s, ',', n < 10 ? n : 10);
    int d, m, y, y2;
    if (c && c - s == 3 && n == CHI_DATE_LEN) { /* IMF-fixdate */
        d = chi_date_2d(s + 5);
        m = chi_date_month(s + 8);
        y = chi_date_2d(s + 12);
        y2 = chi_date_2d(s + 14);
        if (s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || memcmp(s + 25, " GMT", 4) != 0 || d < 0 ||
            y < 0 || y2 < 0)
            return -1;
        return chi_date_join(y * 100 + y2, m, d, chi_date_clock(s + 17), out);
    }
    if (c && c - s >= 6) { /* RFC 850: the weekday's full name, then 24 bytes */
        const char *p = c + 1;
        if ((size_t)(p - s) + 23 != n || p[0] != ' ' || p[3] != '-' || p[7] != '-' || p[10] != ' ' ||
            memcmp(p + 19, " GMT", 4) != 0)
            return -1;
        d = chi_date_2d(p + 1);
        m = chi_date_month(p + 4);
        y = chi_date_2d(p + 8);
        if (d < 0 || y < 0) return -1;
        return chi_date_join(y < 70 ? 2000 + y : 1900 + y, m, d, chi_date_clock(p + 11), out);
    }
    if (!c && n == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' && s[19] == ' ') { /* asctime */
        d = s[8] == ' ' ? ((s[9] >= '1' && s[9] <= '9') ? s[9] - '0' : -1) : chi_date_2d(s + 8);
        m = chi_date_month(s + 4);
        y = chi_date_2d(s + 20);
        y2 = chi_date_2d(s + 22);
        if (d < 0 || y < 0 || y2 < 0) return -1;
        return chi_date_join(y * 100 + y2, m, d, chi_date_clock(s + 11), out);
    }
    return -1;
}

/* RFC 9110 13.2.2, for a representation with these validators: 412
   (If-Match, else If-Unmodified-Since, fails), 304 (If-None-Match matches,
   else, without If-None-Match, not modified since If-Modified-Since), or 0
   to go on. `get_or_head` is 0 for any other method: a matching
   If-None-Match is then 412 and If-Modified-Since is ignored (13.1.2,
   13.1.3). Any header may be {NULL, 0}. */
static int chi_preconditions(ch_str if_match, ch_str if_unmodified, ch_str if_none, ch_str if_modified,
                             const char *etag, size_t elen, int64_t mtime, int get_or_head)
{
    int64_t t;
    if (if_match.ptr) {
        if (!chi_etag_match(if_match, etag, elen, 0)) return 412;
    } else if (if_unmodified.ptr && chi_http_date(if_unmodified.ptr, if_unmodified.len, &t) == 0 && mtime > t) {
        return 412;
    }
    if (if_none.ptr) return chi_etag_match(if_none, etag, elen, 1) ? (get_or_head ? 304 : 412) : 0;
    if (get_or_head && if_modified.ptr && chi_http_date(if_modified.ptr, if_modified.len, &t) == 0 && mtime <= t)
        return 304;
    return 0;
}

/* If-Range (RFC 9110 13.1.5): the range applies only when the validator
   is this representation's strong ETag (a weak W/ one never matches), or
   its exact Last-Modified date while that date is strong: at least one
   second before `date`, the response's own Date (8.8.2.2; within the same
   second the file may change again under the same date, which makes it
   weak). `date` is -1 when unknown: a date then never matches. */
static int chi_if_range_ok(ch_str v, const char *etag, size_t elen, int64_t mtime, int64_t date)
{
    int64_t t;
    if (!v.ptr) return 1;
    /* an entity-tag opens with '"' or "W/"; a date may open with 'W' ("Wed") */
    if (v.len && (v.ptr[0] == '"' || (v.len >= 2 && v.ptr[0] == 'W' && v.ptr[1] == '/')))
        return v.len == elen && memcmp(v.ptr, etag, elen) == 0;
    return chi_http_date(v.ptr, v.len, &t) == 0 && t == mtime && date >= 0 && mtime < date;
}

/* A decimal number; one past 18 digits stays at 10^18, beyond any file
   (a last-byte-pos past the end is clamped, a first-byte-pos is 416). */
static int chi_range_num(const char **pp, const char *end, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    int n = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        v = ++n > 18 ? (uint64_t)1000000000000000000u : v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (n == 0) return -1;
    *pp = p;
    *out = v;
    return 0;
}

/* One range-spec of a Range header, from *pp up to the next ',' or the end
   (RFC 9110 14.1.1): -1 when invalid (bad syntax, or a last-byte-pos before
   its first-byte-pos), 0 when valid but not satisfiable over `size` bytes
   (a first-byte-pos at or past the end, a suffix of 0, an empty file), 1
   with [*first, *last] clamped to the file. */
static int chi_range_spec(const char **pp, const char *end, uint64_t size, uint64_t *first, uint64_t *last)
{
    const char *p = *pp;
    uint64_t a = 0, b = 0;
    int suffix = 0, open = 0;
    if (p < end && *p == '-') {
        p++;
        suffix = 1;
        if (chi_range_num(&p, end, &b) < 0) return -1;
    } else {
        if (chi_range_num(&p, end, &a) < 0 || p == end || *p++ != '-') return -1;
        if (p < end && *p >= '0' && *p <= '9') {
            if (chi_range_num(&p, end, &b) < 0 || b < a) return -1;
        } else {
            open = 1;
        }
    }
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    if (p < end && *p != ',') return -1;
    *pp = p;
    if (suffix) {
        if (b == 0 || size == 0) return 0;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return 1;
    }
    if (a >= size) return 0;
    *first = a;
    *last = (open || b >= size) ? size - 1 : b;
    return 1;
}

/* Range (RFC 9110 14.1.2) over `size` bytes. Returns 1 with one satisfiable
   range [*first, *last]; 416 when the ranges-specifier is valid but none of
   its ranges is satisfiable (14.2, 15.5.17: one range or several alike);
   0 when the header is ignored and the whole representation is sent:
   absent, another unit, invalid (any range in it malformed, or backwards
   like 5-2), or several ranges of which one at least is satisfiable
   (answered with the whole file, not multipart). Empty list elements are
   skipped (5.6.1). */
static int chi_range_parse(ch_str v, uint64_t size, uint64_t *first, uint64_t *last)
{
    const char *p = v.ptr, *end;
    uint64_t a = 0, b = 0;
    int nspecs = 0, satisfiable = 0;
    if (!p || v.len < 6 || !chi_ieq(p, "bytes=", 6)) return 0;
    end = p + v.len;
    p += 6;
    for (;;) {
        int r;
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) p++;
        if (p == end) break;
        r = chi_range_spec(&p, end, size, &a, &b);
        if (r < 0) return 0;
        if (r == 1 && satisfiable++ == 0) {
            *first = a;
            *last = b;
        }
        nspecs++;
    }
    if (nspecs == 0) return 0;
    if (satisfiable == 0) return 416;
    return nspecs == 1 ? 1 : 0;
}

/* Does Accept-Encoding allow `coding` ("gzip", "br")? Listed with q > 0, or
   covered by "*" with q > 0 and not listed. */
static int chi_accepts_coding(ch_str ae, const char *coding)
{
    const char *p = ae.ptr, *end;
    size_t cl = strlen(coding);
    int star = 0;
    if (!p) return 0;
    end = p + ae.len;
    while (p < end) {
        const char *name, *ne, *item_end = (const char *)memchr(p, ',', (size_t)(end - p));
        int zero = 0;
        if (!item_end) item_end = end;
        while (p < item_end && (*p == ' ' || *p == '\t')) p++;
        name = p;
        while (p < item_end && *p != ';' && *p != ' ' && *p != '\t') p++;
        ne = p;
        /* q=0, q=0.0, q=0.00, q=0.000: refused */
        while (p < item_end) {
            const char *q = (const char *)memchr(p, ';', (size_t)(item_end - p));
            if (!q) break;
            p = q + 1;
            while (p < item_end && (*p == ' ' || *p == '\t')) p++;
            if (item_end - p >= 3 && (p[0] | 0x20) == 'q' && p[1] == '=' && p[2] == '0') {
                const char *z = p + 3;
                zero = 1;
                if (z < item_end && *z == '.')
                    for (z++; z < item_end && *z != ' ' && *z != '\t' && *z != ';'; z++)
                        if (*z != '0') zero = 0;
            }
        }
        if ((size_t)(ne - name) == cl && chi_ieq(name, coding, cl)) return !zero;
        if (ne - name == 1 && name[0] == '*') star = zero ? -1 : 1;
        p = item_end + 1;
    }
    return star == 1;
}

#endif /* CHOPIN_NO_STATIC */

#ifndef CHOPIN_NO_MULTIPART
/* >>multipart -----------------------------------------------------------------
   A streaming multipart/form-data parser (RFC 7578, RFC 2046 5.1). Bytes
   are fed as they arrive, in pieces of any size; the boundary may be split
   anywhere. The body is scanned for the delimiter "\r\n--boundary": bytes
   that cannot start it go to the application at once, in runs; bytes that
   might are held only while they still match, so the parser keeps nothing
   but the delimiter's length of state and one part's header block. Because
   the delimiter starts with CR LF and a boundary holds no CR, a failed
   partial match can only restart at the current byte: no backtracking.
   The first delimiter may start the body without the CR LF (RFC 2046). */

enum {
    CHI_MP_PREAMBLE, CHI_MP_AFTER_DELIM, CHI_MP_DASH2, CHI_MP_PAD, CHI_MP_PAD_LF,
    CHI_MP_HEADERS, CHI_MP_BODY, CHI_MP_EPILOGUE, CHI_MP_FAILED
};

#define CHI_MP_DEFAULT_PARTS 1000
#define CHI_MP_DEFAULT_HEADER ((size_t)8 * 1024)
#define CHI_MP_BOUNDARY_MAX 70

struct ch_multipart {
    char delim[4 + CHI_MP_BOUNDARY_MAX]; /* "\r\n--" boundary */
    size_t dlen;
    size_t match;            /* bytes of delim matched so far */
    int state;
    char *hbuf;              /* the current part's header block */
    size_t hlen;
    ch_multipart_limits lim;
    ch_multipart_cb cb;
    size_t parts;
    uint64_t total;
    const char *err;
};

static int chi_mp_bchar(unsigned char c)
{
    /* RFC 2046 5.1.1 bchars: DIGIT / ALPHA / "'()+_,-./:=? " */
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c && strchr("'()+_,-./:=? ", c));
}

CHOPIN_API ch_multipart *ch_multipart_new(const char *boundary, size_t len, const ch_multipart_limits *lim,
                                          const ch_multipart_cb *cb)
{
    ch_multipart *mp;
    size_t i;
    if (!boundary || len == 0 || len > CHI_MP_BOUNDARY_MAX || boundary[len - 1] == ' ' || !cb) return NULL;
    for (i = 0; i < len; i++)
        if (!chi_mp_bchar((unsigned char)boundary[i])) return NULL;
    mp = (ch_multipart *)CHOPIN_MALLOC(sizeof *mp);
    if (!mp) return NULL;
    memset(mp, 0, sizeof *mp);
    if (lim) mp->lim = *lim;
    if (!mp->lim.max_parts) mp->lim.max_parts = CHI_MP_DEFAULT_PARTS;
    if (!mp->lim.max_header) mp->lim.max_header = CHI_MP_DEFAULT_HEADER;
    mp->cb = *cb;
    mp->hbuf = (char *)CHOPIN_MALLOC(mp->lim.max_header + 1);
    if (!mp->hbuf) {
        CHOPIN_FREE(mp);
        return NULL;
    }
    memcpy(mp->delim, "\r\n--", 4);
    memcpy(mp->delim + 4, boundary, len);
    mp->dlen = 4 + len;
    mp->match = 2; /* the first delimiter needs no CR LF before it */
    mp->state = CHI_MP_PREAMBLE;
    return mp;
}

CHOPIN_API void ch_multipart_free(ch_multipart *mp)
{
    if (!mp) return;
    CHOPIN_FREE(mp->hbuf);
    CHOPIN_FREE(mp);
}

CHOPIN_API const char *ch_multipart_error(const ch_multipart *mp) { return mp->err ? mp->err : ""; }

static int chi_mp_fail(ch_multipart *mp, const char *why)
{
    mp->err = why;
    mp->state = CHI_MP_FAILED;
    return -1;
}

/* Body bytes for the application; a non-zero answer stops the parser. */
static int chi_mp_emit(ch_multipart *mp, const char *p, size_t n)
{
    if (n && mp->cb.part_data && mp->cb.part_data(p, n, mp->cb.user) != 0)
        return chi_mp_fail(mp, "stopped by the application");
    return 0;
}

/* A quoted-string or token parameter value, unescaped in place. */
static char *chi_mp_param_value(char *p, char *end, ch_str *out)
{
    if (p < end && *p == '"') {
        char *w = ++p, *s = p;
        while (p < end && *p != '"') {
            if (*p == '\\' && p + 1 < end) p++;
            *w++ = *p++;
        }
        if (p == end) return NULL;
        *out = chi_str(s, (size_t)(w - s));
        return p + 1;
    } else {
        char *s = p;
        while (p < end && *p != ';' && *p != ' ' && *p != '\t') p++;
        *out = chi_str(s, (size_t)(p - s));
        return p;
    }
}

/* Content-Disposition: form-data; name="field"; filename="a.txt" */
static int chi_mp_disposition(char *p, char *end, ch_part *part, int *has_name)
{
    char *s = p;
    while (p < end && *p != ';' && *p != ' ' && *p != '\t') p++;
    if (p - s != 9 || !chi_ieq(s, "form-data", 9)) return -1;
    for (;;) {
        char *name;
        size_t nl;
        ch_str v;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        if (p == end) return 0;
        if (*p++ != ';') return -1;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        name = p;
        while (p < end && *p != '=' && *p != ';' && *p != ' ' && *p != '\t') p++;
        nl = (size_t)(p - name);
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        if (p == end || *p != '=') return -1;
        p++;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        if (!(p = chi_mp_param_value(p, end, &v))) return -1;
        if (nl == 4 && chi_ieq(name, "name", 4)) {
            part->name = v;
            *has_name = 1;
        } else if (nl == 8 && chi_ieq(name, "filename", 8)) {
            part->filename = v;
            part->has_filename = 1;
        }
    }
}

/* The header block is whole (it ends with an empty line): find the part's
   name, file name and type, then tell the application. */
static int chi_mp_headers_done(ch_multipart *mp)
{
    char *p = mp->hbuf, *end = mp->hbuf + mp->hlen - 2; /* without the final CRLF */
    ch_part part;
    int has_name = 0, disposition = 0;
    memset(&part, 0, sizeof part);
    while (p < end) {
        char *eol = (char *)memchr(p, '\r', (size_t)(end - p)), *colon, *v, *ve;
        if (!eol || eol + 1 >= mp->hbuf + mp->hlen || eol[1] != '\n') return chi_mp_fail(mp, "malformed part header");
        colon = (char *)memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon == p) return chi_mp_fail(mp, "malformed part header");
        for (v = p; v < colon; v++)
            if (!chi_is((unsigned char)*v, CHI_TOKEN)) return chi_mp_fail(mp, "malformed part header");
        for (v = colon + 1; v < eol; v++)
            if (!chi_is((unsigned char)*v, CHI_VALUE)) return chi_mp_fail(mp, "malformed part header");
        v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t')) v++;
        ve = eol;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        if (colon - p == 19 && chi_ieq(p, "content-disposition", 19)) {
            if (disposition++ || chi_mp_disposition(v, ve, &part, &has_name) < 0)
                return chi_mp_fail(mp, "malformed Content-Disposition");
        } else if (colon - p == 12 && chi_ieq(p, "content-type", 12)) {
            part.content_type = chi_str(v, (size_t)(ve - v));
        }
        p = eol + 2;
    }
    if (!has_name) return chi_mp_fail(mp, "part without a name");
    if (mp->parts >= mp->lim.max_parts) return chi_mp_fail(mp, "too many parts");
    part.index = (int)mp->parts++;
    if (mp->cb.part_begin && mp->cb.part_begin(&part, mp->cb.user) != 0)
        return chi_mp_fail(mp, "stopped by the application");
    mp->state = CHI_MP_BODY;
    mp->match = 0;
    return 0;
}

static int chi_mp_header_byte(ch_multipart *mp, char c)
{
    if (mp->hlen >= mp->lim.max_header) return chi_mp_fail(mp, "part headers too large");
    mp->hbuf[mp->hlen++] = c;
    if (c != '\n') return 0;
    if (mp->hlen == 1 || mp->hbuf[mp->hlen - 2] != '\r') return chi_mp_fail(mp, "malformed part header");
    if (mp->hlen == 2 || (mp->hlen >= 4 && mp->hbuf[mp->hlen - 3] == '\n')) return chi_mp_headers_done(mp);
    return 0;
}

/* After a whole delimiter: "--" ends the body; else optional padding, then
   CR LF, then the next part's headers. */
static int chi_mp_after_delim(ch_multipart *mp, char c)
{
    switch (mp->state) {
    case CHI_MP_AFTER_DELIM:
        if (c == '-') mp->state = CHI_MP_DASH2;
        else if (c == '\r') mp->state = CHI_MP_PAD_LF;
        else if (c == ' ' || c == '\t') mp->state = CHI_MP_PAD;
        else return chi_mp_fail(mp, "malformed boundary line");
        return 0;
    case CHI_MP_DASH2:
        if (c != '-') return chi_mp_fail(mp, "malformed boundary line");
        mp->state = CHI_MP_EPILOGUE;
        return 1;
    case CHI_MP_PAD:
        if (c == '\r') mp->state = CHI_MP_PAD_LF;
        else if (c != ' ' && c != '\t') return chi_mp_fail(mp, "malformed boundary line");
        return 0;
    default: /* CHI_MP_PAD_LF */
        if (c != '\n') return chi_mp_fail(mp, "malformed boundary line");
        mp->state = CHI_MP_HEADERS;
        mp->hlen = 0;
        return 0;
    }
}

/* The delimiter is whole: the part (if any) ends. */
static int chi_mp_delimiter(ch_multipart *mp)
{
    if (mp->state == CHI_MP_BODY && mp->cb.part_end && mp->cb.part_end(mp->cb.user) != 0)
        return chi_mp_fail(mp, "stopped by the application");
    mp->state = CHI_MP_AFTER_DELIM;
    mp->match = 0;
    return 0;
}

/* Preamble and body: scan for the delimiter. Returns the bytes used. */
static long chi_mp_scan(ch_multipart *mp, const char *p, size_t n)
{
    int body = mp->state == CHI_MP_BODY;
    size_t i = 0;
    while (i < n) {
        if (mp->match == 0) {
            /* nothing held: everything before the next CR is data */
            const char *cr = (const char *)memchr(p + i, '\r', n - i);
            size_t run = cr ? (size_t)(cr - (p + i)) : n - i;
            if (body && chi_mp_emit(mp, p + i, run) < 0) return -1;
            i += run;
            if (!cr) break;
        }
        if (p[i] == mp->delim[mp->match]) {
            i++;
            if (++mp->match == mp->dlen) {
                if (chi_mp_delimiter(mp) < 0) return -1;
                return (long)i;
            }
            continue;
        }
        /* mismatch: what was held was data after all; this byte starts anew */
        if (body && chi_mp_emit(mp, mp->delim, mp->match) < 0) return -1;
        mp->match = 0;
        if (p[i] != '\r') {
            if (body && chi_mp_emit(mp, p + i, 1) < 0) return -1;
            i++;
        }
    }
    return (long)i;
}

CHOPIN_API int ch_multipart_feed(ch_multipart *mp, const char *data, size_t len)
{
    size_t i = 0;
    if (mp->state == CHI_MP_FAILED) return -1;
    if (mp->state == CHI_MP_EPILOGUE) return 1;
    mp->total += len;
    if (mp->lim.max_total && mp->total > mp->lim.max_total) return chi_mp_fail(mp, "multipart body too large");
    while (i < len) {
        if (mp->state == CHI_MP_PREAMBLE || mp->state == CHI_MP_BODY) {
            long used = chi_mp_scan(mp, data + i, len - i);
            if (used < 0) return -1;
            i += (size_t)used;
        } else if (mp->state == CHI_MP_HEADERS) {
            if (chi_mp_header_byte(mp, data[i++]) < 0) return -1;
        } else {
            int r = chi_mp_after_delim(mp, data[i++]);
            if (r < 0) return -1;
            if (r == 1) return 1; /* the epilogue is ignored */
        }
    }
    return 0;
}

CHOPIN_API int ch_multipart_finish(ch_multipart *mp)
{
    if (mp->state == CHI_MP_EPILOGUE) return 0;
    if (mp->state != CHI_MP_FAILED) chi_mp_fail(mp, "missing final boundary");
    return -1;
}

/* multipart/form-data; boundary=XYZ (or boundary="XYZ") */
CHOPIN_API int ch_multipart_boundary(ch_str content_type, ch_str *boundary)
{
    const char *p = content_type.ptr, *end;
    if (!p || content_type.len < 19 || !chi_ieq(p, "multipart/form-data", 19)) return -1;
    end = p + content_type.len;
    p += 19;
    while (p < end) {
        const char *name;
        while (p < end && (*p == ' ' || *p == '\t' || *p == ';')) p++;
        name = p;
        while (p < end && *p != '=' && *p != ';') p++;
        if (p == end || *p != '=') return -1;
        if (p - name == 8 && chi_ieq(name, "boundary", 8)) {
            const char *s = ++p;
            if (p < end && *p == '"') {
                s = ++p;
                while (p < end && *p != '"') p++;
                if (p == end) return -1;
            } else {
                while (p < end && *p != ';' && *p != ' ' && *p != '\t') p++;
            }
            if (p == s || p - s > CHI_MP_BOUNDARY_MAX) return -1;
            *boundary = chi_str(s, (size_t)(p - s));
            return 0;
        }
        while (p < end && *p != ';') p++;
    }
    return -1;
}
#endif /* CHOPIN_NO_MULTIPART */

/* application/x-www-form-urlencoded: the next pair, percent-decoded ('+' is
   a space) into key and value buffers. Returns 1, 0 at the end, or CH_BAD /
   CH_TOO_LONG for a pair that does not decode or fit (the walk goes on past
   it on the next call). */
CHOPIN_API int ch_form_decode_next(ch_str *rest, char *key, size_t kcap, char *value, size_t vcap)
{
    ch_str k, v;
    long a, b;
    if (!ch_form_next(rest, &k, &v)) return 0;
    a = ch_url_decode(k.ptr, k.len, key, kcap, 1);
    b = ch_url_decode(v.ptr, v.len, value, vcap, 1);
    if (a == CH_BAD || b == CH_BAD) return CH_BAD;
    if (a < 0 || b < 0) return CH_TOO_LONG;
    return 1;
}

#ifndef CHOPIN_CORE_ONLY
/* >>os ------------------------------------------------------------------------
   LAYER 2, THE OS SEAM. Everything the server asks of the kernel is here and
   nowhere else: the clock, sockets (listen, accept, options, send, receive,
   close), threads, the CPU count and the descriptor limit, inherited
   listeners, starting a successor (fork, exec) and the PID file; and, in one block
   per backend, the poll set, the waker, the ticker and the stop signals. The
   backend is chosen by platform or forced with CHOPIN_USE_EPOLL,
   CHOPIN_USE_KQUEUE or CHOPIN_USE_POLL; above this section nothing knows
   which one runs.

   The I/O boundary speaks in results, not in errno: a receive or send
   returns bytes, CHI_IO_EOF, CHI_IO_AGAIN or CHI_IO_ERROR, and the server
   reacts in one place per result (>>connection: chi_conn_received,
   chi_conn_sent). A readiness backend calls those after recv/send; a
   completion backend (io_uring: "these bytes arrived", "that send finished")
   would call the same functions from its completions. */

#if (defined(CHOPIN_USE_EPOLL) + defined(CHOPIN_USE_KQUEUE) + defined(CHOPIN_USE_POLL) + defined(CHOPIN_USE_IO_URING)) > 1
#error "chopin.h: define at most one of CHOPIN_USE_EPOLL, CHOPIN_USE_KQUEUE, CHOPIN_USE_POLL, CHOPIN_USE_IO_URING"
#endif
#if defined(CHOPIN_USE_IO_URING) && !defined(__linux__)
#error "chopin.h: CHOPIN_USE_IO_URING is Linux only"
#endif
#if defined(CHOPIN_USE_IO_URING)
#define CHI_OS_IO_URING 1 /* with the epoll block beside it: the fallback */
#elif defined(CHOPIN_USE_EPOLL)
#define CHI_OS_EPOLL 1
#elif defined(CHOPIN_USE_KQUEUE)
#define CHI_OS_KQUEUE 1
#elif defined(CHOPIN_USE_POLL)
#define CHI_OS_POLL 1
#elif defined(__linux__)
#define CHI_OS_EPOLL 1
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__) || defined(__DragonFly__)
#define CHI_OS_KQUEUE 1
#else
#define CHI_OS_POLL 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <limits.h>
#if defined(__linux__)
#include <sched.h>
#endif

/* Where SO_REUSEPORT spreads connections over the sockets that share a port
   (Linux, FreeBSD's SO_REUSEPORT_LB, DragonFly), each worker has its own
   listener. Elsewhere (macOS, OpenBSD, NetBSD) the last socket bound gets
   every connection, so the workers share one listener instead. */
#if defined(__linux__) || defined(__DragonFly__) || defined(SO_REUSEPORT_LB)
#define CHI_REUSEPORT_BALANCES 1
#else
#define CHI_REUSEPORT_BALANCES 0
#endif
#if defined(SO_REUSEPORT_LB)
#define CHI_SO_REUSEPORT SO_REUSEPORT_LB
#elif defined(SO_REUSEPORT)
#define CHI_SO_REUSEPORT SO_REUSEPORT
#endif

/* A write to a dead peer must be an error, not SIGPIPE: per call where the
   flag exists, per socket (SO_NOSIGPIPE) on macOS. */
#if defined(MSG_NOSIGNAL)
#define CHI_SEND_FLAGS MSG_NOSIGNAL
#else
#define CHI_SEND_FLAGS 0
#endif

/* Results of the I/O calls (a count of bytes is >= 0). */
#define CHI_IO_EOF 0
#define CHI_IO_AGAIN (-1)   /* would block: wait for the poller */
#define CHI_IO_ERROR (-2)   /* the connection is dead */
#define CHI_IO_NOFD (-3)    /* accept: out of descriptors or memory */

/* Event flags and tags, the same for every backend. A tag is a
   connection's descriptor or one of the CHI_TAG_* values; every tag fits in
   32 bits, so it fits a kqueue udata even on 32-bit systems. */
#define CHI_EV_READ 1u
#define CHI_EV_WRITE 2u
#define CHI_EV_ERROR 4u     /* error or hang-up: the next read or write tells */
#define CHI_TAG_BASE ((uint64_t)1 << 31)
#define CHI_TAG_TICK (CHI_TAG_BASE + 1)
#define CHI_TAG_WAKE (CHI_TAG_BASE + 2)
#define CHI_TAG_SIGNAL (CHI_TAG_BASE + 3)
#define CHI_TAG_STOP (CHI_TAG_BASE + 4)
#define CHI_TAG_RESTART (CHI_TAG_BASE + 5) /* ch_restart pokes the app */
#define CHI_TAG_READY (CHI_TAG_BASE + 6)   /* a successor's readiness pipe */
#define CHI_TAG_LISTEN (CHI_TAG_BASE + 16) /* + k: a worker's listener k */
#define CHI_MAX_EVENTS 256

typedef struct chi_event {
    uint64_t tag;
    unsigned flags;
} chi_event;

static int64_t chi_os_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t chi_os_wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* errno as text, thread-safe (strerror may share one buffer between
   threads). GNU's strerror_r returns the text, POSIX's fills buf. */
static const char *chi_os_errno_text(int e, char *buf, size_t n)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(e, buf, n);
#else
    return strerror_r(e, buf, n) == 0 ? buf : "unknown error";
#endif
}

/* The last error's text (errno), in buf. */
static const char *chi_os_error_text(char *buf, size_t n) { return chi_os_errno_text(errno, buf, n); }

#if defined(CHI_OS_IO_URING)
static int chi_ur_usable(void); /* >>os io_uring */
#endif

CHOPIN_API const char *ch_backend(void)
{
#if defined(CHI_OS_IO_URING)
    return chi_ur_usable() ? "io_uring" : "epoll";
#elif defined(CHI_OS_EPOLL)
    return "epoll";
#elif defined(CHI_OS_KQUEUE)
    return "kqueue";
#else
    return "poll";
#endif
}

static int chi_os_would_block(void) { return errno == EAGAIN || errno == EWOULDBLOCK; }

/* Raw system calls for the hot path (receive, send, the poller's wait).
   On a thread, glibc wraps each blocking call in cancellation bookkeeping
   (switch async cancellation on, make the call, switch it off): about 50
   instructions per call, 150 per keep-alive request, for a feature chopin.h
   never uses (it stops its workers by message, never by pthread_cancel). On
   Linux x86-64 and arm64 the call is made directly with the architecture's
   syscall instruction; elsewhere (tcc too: its assembler cannot place six
   register operands), or with CHOPIN_NO_RAW_SYSCALLS, through the C library
   as before. chi_sys6 returns the kernel's answer: a result >= 0, or -errno
   (the C library's wrapper would set errno and return -1). */
#if defined(__linux__) && !defined(CHOPIN_NO_RAW_SYSCALLS) && (defined(__x86_64__) || defined(__aarch64__)) && \
    !defined(__TINYC__)
#include <sys/syscall.h>
#define CHI_RAW_SYSCALLS 1
#if defined(__x86_64__)
/* x86-64: number in rax, arguments in rdi, rsi, rdx, r10, r8, r9; the
   instruction itself overwrites rcx and r11. The last three arguments are
   moved in by the asm text, so no register variable is needed. */
static long chi_sys6(long nr, long a, long b, long c, long d, long e, long f)
{
    long r;
    __asm__ volatile("mov %5, %%r10\n\tmov %6, %%r8\n\tmov %7, %%r9\n\tsyscall"
                     : "=a"(r)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(d), "r"(e), "r"(f)
                     : "rcx", "r8", "r9", "r10", "r11", "memory");
    return r;
}
#else
/* arm64: number in x8, arguments in x0..x5, the result in x0 (GCC's
   explicit register variables are the documented way to pin them). */
static long chi_sys6(long nr, long a, long b, long c, long d, long e, long f)
{
    register long x8 __asm__("x8") = nr;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc #0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
}
#endif
/* A raw call's answer in the C library's terms: -1 with errno set. */
static long chi_sys_result(long r)
{
    if (r >= 0) return r;
    errno = (int)-r;
    return -1;
}
static long chi_sys_read(int fd, char *p, size_t n)
{
    return chi_sys_result(chi_sys6(SYS_read, fd, (long)p, (long)n, 0, 0, 0));
}
static long chi_sys_send(int fd, const char *p, size_t n, int flags)
{
    /* send() is sendto() without an address, on both architectures */
    return chi_sys_result(chi_sys6(SYS_sendto, fd, (long)p, (long)n, flags, 0, 0));
}
#else
static long chi_sys_read(int fd, char *p, size_t n) { return (long)read(fd, p, n); }
static long chi_sys_send(int fd, const char *p, size_t n, int flags) { return (long)send(fd, p, n, flags); }
#endif

static long chi_os_recv(int fd, char *p, size_t n)
{
    long r;
    do {
        r = chi_sys_read(fd, p, n);
    } while (r < 0 && errno == EINTR);
    if (r >= 0) return r;
    return chi_os_would_block() ? CHI_IO_AGAIN : CHI_IO_ERROR;
}

static long chi_os_send_flags(int fd, const char *p, size_t n, int flags)
{
    long r;
    do {
        r = chi_sys_send(fd, p, n, flags);
    } while (r < 0 && errno == EINTR);
    if (r >= 0) return r;
    return chi_os_would_block() ? CHI_IO_AGAIN : CHI_IO_ERROR;
}

static long chi_os_send(int fd, const char *p, size_t n) { return chi_os_send_flags(fd, p, n, CHI_SEND_FLAGS); }

/* The same, telling the kernel that more follows at once (a head before its
   sendfile body): with MSG_MORE the two leave in one segment rather than
   the head alone. Where there is no MSG_MORE, a plain send. */
static long chi_os_send_more(int fd, const char *p, size_t n)
{
#if defined(MSG_MORE)
    return chi_os_send_flags(fd, p, n, CHI_SEND_FLAGS | MSG_MORE);
#else
    return chi_os_send(fd, p, n);
#endif
}

static void chi_os_close(int fd) { close(fd); }

static int chi_os_shutdown_write(int fd) { return shutdown(fd, SHUT_WR); }

/* Writes all of p (a log): returns 0, or -1 when the descriptor will not take
   it now (a full pipe: the caller drops the lines rather than stall). */
static int chi_os_write_all(int fd, const char *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t r = write(fd, p + off, n - off);
        if (r <= 0 && errno != EINTR) return -1;
        if (r > 0) off += (size_t)r;
    }
    return 0;
}

static int chi_os_set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL, 0);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* The self-pipe, for the backends that have no event of their own to wake a
   loop (poll; kqueue without EVFILT_USER): both ends non-blocking and
   close-on-exec; a wake writes one byte (a full pipe already holds a wake),
   a drain reads them all. Inline, so a backend that does not use them
   (epoll, io_uring, kqueue with EVFILT_USER) draws no unused warning. */
static inline int chi_selfpipe_open(int fds[2])
{
    if (pipe(fds) < 0) return -1;
    if (chi_os_set_nonblock_cloexec(fds[0]) < 0 || chi_os_set_nonblock_cloexec(fds[1]) < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        errno = e;
        return -1;
    }
    return 0;
}

static inline void chi_selfpipe_poke(int wr)
{
    char one = 1;
    ssize_t r = write(wr, &one, 1); /* EAGAIN: the pipe is full, a wake is pending anyway */
    (void)r;
}

static inline void chi_selfpipe_drain(int rd)
{
    char buf[64];
    while (read(rd, buf, sizeof buf) > 0) {}
}

static void chi_os_peer_from(chi_peer *peer, const struct sockaddr_storage *ss)
{
    peer->family = 0;
    if (ss->ss_family == AF_INET6) {
        memcpy(peer->addr, &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr, 16);
        peer->family = 6;
    } else if (ss->ss_family == AF_INET) {
        memcpy(peer->addr, &((const struct sockaddr_in *)(const void *)ss)->sin_addr, 4);
        peer->family = 4;
    }
}

/* The peer as text ("127.0.0.1", "::1"); returns its length. */
static size_t chi_os_peer_text(const chi_peer *peer, char *out, size_t cap)
{
    if (!cap) return 0;
    out[0] = 0;
    if (!peer || !peer->family ||
        !inet_ntop(peer->family == 6 ? AF_INET6 : AF_INET, peer->addr, out, (socklen_t)cap))
        return 0;
    return strlen(out);
}

/* A new connection, non-blocking and close-on-exec, with its options set.
   Returns its descriptor or a CHI_IO_* result. accept4 does it in one call
   where it exists; plain POSIX (and the poll backend, to test that path on
   Linux) takes accept + fcntl. */
static int chi_os_accept(int lfd, chi_peer *peer)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd, one = 1;
    memset(&ss, 0, sizeof ss);
    for (;;) {
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC) && !defined(CHI_OS_POLL)
        fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
        fd = accept(lfd, (struct sockaddr *)&ss, &len);
        if (fd >= 0 && chi_os_set_nonblock_cloexec(fd) < 0) {
            close(fd);
            return CHI_IO_ERROR;
        }
#endif
        if (fd >= 0) break;
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) return CHI_IO_NOFD;
        return chi_os_would_block() ? CHI_IO_AGAIN : CHI_IO_ERROR;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    chi_os_peer_from(peer, &ss);
    return fd;
}

static int chi_os_cpu_count(void)
{
    long n;
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* A server wants as many descriptors as the hard limit allows. */
static void chi_os_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

typedef pthread_t chi_thread;
static int chi_os_thread_start(chi_thread *t, void *(*fn)(void *), void *arg) { return pthread_create(t, NULL, fn, arg) == 0 ? 0 : -1; }
static void chi_os_thread_join(chi_thread t) { pthread_join(t, NULL); }

/* A lock and a condition, for the off-loop pool's job queue (its threads
   block anyway; the request path takes no lock). */
typedef pthread_mutex_t chi_mutex;
typedef pthread_cond_t chi_cond;
static int chi_os_mutex_init(chi_mutex *m) { return pthread_mutex_init(m, NULL) == 0 ? 0 : -1; }
static void chi_os_mutex_destroy(chi_mutex *m) { pthread_mutex_destroy(m); }
static void chi_os_lock(chi_mutex *m) { pthread_mutex_lock(m); }
static void chi_os_unlock(chi_mutex *m) { pthread_mutex_unlock(m); }
static int chi_os_cond_init(chi_cond *c) { return pthread_cond_init(c, NULL) == 0 ? 0 : -1; }
static void chi_os_cond_destroy(chi_cond *c) { pthread_cond_destroy(c); }
static void chi_os_cond_wait(chi_cond *c, chi_mutex *m) { pthread_cond_wait(c, m); }
static void chi_os_cond_signal(chi_cond *c) { pthread_cond_signal(c); }
static void chi_os_cond_broadcast(chi_cond *c) { pthread_cond_broadcast(c); }

/* Listening sockets. */
typedef struct chi_listen_req {
    const char *host;
    int port;                /* 0: any free port (then set to the one chosen) */
    int count;               /* sockets to open: one per worker, or one */
    int reuseport;           /* set SO_REUSEPORT on each */
    int backlog;
} chi_listen_req;

static int chi_os_open_listener(const struct addrinfo *ai, int reuseport, int backlog, int do_listen)
{
    int one = 1, fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (chi_os_set_nonblock_cloexec(fd) < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
#ifdef CHI_SO_REUSEPORT
        (reuseport && setsockopt(fd, SOL_SOCKET, CHI_SO_REUSEPORT, &one, sizeof one) < 0) ||
#endif
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || (do_listen && listen(fd, backlog) < 0)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
#ifndef CHI_SO_REUSEPORT
    (void)reuseport;
#endif
    return fd;
}

/* The port the kernel chose for fd, written into ai for the next sockets. */
static int chi_os_take_port(int fd, struct addrinfo *ai, int *port)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) return -1;
    if (ss.ss_family == AF_INET6) {
        *port = ntohs(((struct sockaddr_in6 *)(void *)&ss)->sin6_port);
        ((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_port = htons((uint16_t)*port);
    } else {
        *port = ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
        ((struct sockaddr_in *)(void *)ai->ai_addr)->sin_port = htons((uint16_t)*port);
    }
    return 0;
}

static int chi_os_listen_fail(struct addrinfo *ai, const int *fds, int opened, char *err, size_t errcap)
{
    char buf[128];
    (void)snprintf(err, errcap, "%s", chi_os_errno_text(errno, buf, sizeof buf));
    while (opened-- > 0) close(fds[opened]);
    freeaddrinfo(ai);
    return -1;
}

/* Opens r->count listeners into fds. Returns 0, or -1 with the reason in
   err (the sockets opened so far are closed). SO_REUSEPORT would let us
   join another server already on the port, so a plain bind first checks
   that the port is free. */
static int chi_os_listen(chi_listen_req *r, int *fds, char *err, size_t errcap)
{
    struct addrinfo hints, *ai = NULL;
    char port[16];
    int i, rc;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    (void)snprintf(port, sizeof port, "%d", r->port);
    rc = getaddrinfo(r->host, port, &hints, &ai);
    if (rc != 0) {
        (void)snprintf(err, errcap, "%s", gai_strerror(rc));
        return -1;
    }
    if (r->reuseport && r->port != 0) {
        int probe = chi_os_open_listener(ai, 0, 0, 0);
        if (probe < 0) return chi_os_listen_fail(ai, fds, 0, err, errcap);
        close(probe);
    }
    for (i = 0; i < r->count; i++) {
        fds[i] = chi_os_open_listener(ai, r->reuseport, r->backlog, 1);
        if (fds[i] < 0) return chi_os_listen_fail(ai, fds, i, err, errcap);
        if (i == 0 && r->port == 0 && chi_os_take_port(fds[0], ai, &r->port) < 0)
            return chi_os_listen_fail(ai, fds, 1, err, errcap);
    }
    freeaddrinfo(ai);
    return 0;
}

/* Operations: inherited listeners, the hand-over to a new copy of the
   executable, the PID file. The server (>>listen, >>run) decides; these
   only ask the kernel. */

#if !defined(__GLIBC__) && !defined(CHOPIN_NO_RESTART)
#if defined(__cplusplus)
extern "C" {
#endif
extern char **environ; /* glibc declares it under _GNU_SOURCE */
#if defined(__cplusplus)
}
#endif
#endif

static long chi_os_pid(void) { return (long)getpid(); }

/* A listener's own address (for grouping the inherited ones and for
   ch_config_used). Returns 0, or -1. */
static int chi_os_sockname(int fd, chi_peer *addr, int *port)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) return -1;
    chi_os_peer_from(addr, &ss);
    if (ss.ss_family == AF_INET6)
        *port = ntohs(((struct sockaddr_in6 *)(void *)&ss)->sin6_port);
    else
        *port = ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
    return addr->family ? 0 : -1;
}

/* 4 or 6 for a numeric address, 0 for a name. */
static int chi_os_host_family(const char *host)
{
    unsigned char buf[16];
    if (inet_pton(AF_INET, host, buf) == 1) return 4;
    if (inet_pton(AF_INET6, host, buf) == 1) return 6;
    return 0;
}

/* Checks that inherited descriptor fd is a listening TCP/IP socket, and
   makes it non-blocking and close-on-exec (systemd passes blocking ones).
   Returns NULL, or what is wrong with it. */
static const char *chi_os_check_listener(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss, len;
    int type = 0, listening = 1;
    if (fcntl(fd, F_GETFD) < 0) return "is not open";
    len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        return errno == ENOTSOCK ? "is not a socket (or was not passed)" : "cannot be inspected (getsockopt failed)";
    memset(&ss, 0, sizeof ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) return "has no address (getsockname failed)";
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
        return ss.ss_family == AF_UNIX ? "is a unix socket: the address family must be IPv4 or IPv6 (TCP)"
                                       : "has an address family other than IPv4 or IPv6";
    if (type != SOCK_STREAM) return "is not a stream (TCP) socket: UDP or another type";
#ifdef SO_ACCEPTCONN
    len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0) listening = 1;
#endif
    if (!listening) return "is a TCP socket that is not listening (listen() was never called)";
    if (chi_os_set_nonblock_cloexec(fd) < 0) return "cannot be made non-blocking";
    return NULL;
}

/* Tells the process that started us (CHOPIN_READY_FD) that we serve. */
static void chi_os_notify_ready(int fd)
{
    ssize_t r = write(fd, "1", 1);
    (void)r;
    close(fd);
}

/* An inherited descriptor of our own (CHOPIN_READY_FD): kept only if open,
   and closed on exec so no later child inherits it. */
static int chi_os_adopt_fd(int fd) { return fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ? -1 : 0; }

#ifndef CHOPIN_NO_RESTART
/* The readiness pipe between a process and the successor it starts: the
   read end non-blocking, both ends close-on-exec (the child gets its end
   by dup2, which clears the flag on the copy). */
static int chi_os_pipe(int fds[2])
{
    if (pipe(fds) < 0) return -1;
    if (chi_os_set_nonblock_cloexec(fds[0]) < 0 || fcntl(fds[1], F_SETFD, FD_CLOEXEC) < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    return 0;
}

/* The successor reads a byte: 1, the writer closed without one: 0, nothing
   yet: -1. */
static int chi_os_read_ready(int fd)
{
    char b;
    ssize_t r;
    do {
        r = read(fd, &b, 1);
    } while (r < 0 && errno == EINTR);
    return r > 0 ? 1 : r == 0 ? 0 : -1;
}

/* The path of the running executable, taken at start so that a restart
   runs the file installed there now (a new build: a binary upgrade).
   Linux: /proc/self/exe; elsewhere argv[0], made absolute through the
   working directory or PATH. Returns 0, or -1. */
static int chi_os_self_exe(const char *argv0, char *out, size_t cap)
{
#if defined(__linux__)
    ssize_t n = readlink("/proc/self/exe", out, cap - 1);
    if (n > 0 && (size_t)n < cap - 1) {
        out[n] = 0;
        return 0;
    }
#endif
    if (!argv0 || !*argv0) return -1;
    if (strchr(argv0, '/')) {
        char abs[PATH_MAX];
        if (!realpath(argv0, abs) || strlen(abs) >= cap) return -1;
        memcpy(out, abs, strlen(abs) + 1);
        return 0;
    } else {
        const char *path = getenv("PATH"), *p;
        for (p = path; p && *p;) {
            const char *end = strchr(p, ':');
            size_t dl = end ? (size_t)(end - p) : strlen(p);
            if (dl + 1 + strlen(argv0) < cap) {
                memcpy(out, p, dl);
                out[dl] = '/';
                memcpy(out + dl + 1, argv0, strlen(argv0) + 1);
                if (access(out, X_OK) == 0) return 0;
            }
            p = end ? end + 1 : p + dl;
        }
    }
    return -1;
}

/* The arguments the process was started with, on Linux without help from
   main: /proc/self/cmdline, NUL-separated, into a block the caller frees.
   Returns its length, or 0 (unknown). */
static size_t chi_os_read_cmdline(char **block)
{
    size_t len = 0;
#if defined(__linux__)
    size_t cap = 4096;
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    char *b = NULL;
    if (fd < 0) return 0;
    for (;;) {
        ssize_t r;
        char *nb = (char *)CHOPIN_REALLOC(b, cap + 1);
        if (!nb) break;
        b = nb;
        r = read(fd, b + len, cap - len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
        if (len == cap) cap *= 2;
    }
    close(fd);
    if (b) b[len] = 0;
    *block = b;
    if (!b) len = 0;
#else
    *block = NULL;
#endif
    return len;
}

/* What a child needs to become the successor, prepared before the fork so
   the child calls only async-signal-safe functions: the listeners to put at
   3, 4, ... (and the readiness pipe's end right after them), the argument
   and environment arrays, and room in the environment for LISTEN_PID. */
typedef struct chi_spawn {
    const char *exe;
    char *const *argv;
    char *const *envp;
    const int *fds;
    int nfds;
    int ready_fd;            /* goes to descriptor 3 + nfds */
    char *pid_digits;        /* inside envp's "LISTEN_PID=", 20 bytes */
    const int *unblock;      /* the signals the server blocked: the new */
    int nunblock;            /* program starts with them deliverable */
} chi_spawn;

static void chi_os_child_exec(const chi_spawn *s)
{
    int k, moved[CHI_MAX_LISTENERS + 1], n = s->nfds + 1, base = 3 + s->nfds + 1;
    long pid = (long)getpid();
    char tmp[24];
    int t = 0, d = 0;
    sigset_t set;
    /* first out of the way of 3.., then into place (dup2 clears FD_CLOEXEC) */
    for (k = 0; k < n; k++) {
        moved[k] = fcntl(k < s->nfds ? s->fds[k] : s->ready_fd, F_DUPFD_CLOEXEC, base);
        if (moved[k] < 0) _exit(127);
    }
    for (k = 0; k < n; k++)
        if (dup2(moved[k], 3 + k) < 0) _exit(127);
    do {
        tmp[t++] = (char)('0' + pid % 10);
        pid /= 10;
    } while (pid > 0);
    while (t > 0) s->pid_digits[d++] = tmp[--t];
    s->pid_digits[d] = 0;
    sigemptyset(&set);
    for (k = 0; k < s->nunblock; k++) sigaddset(&set, s->unblock[k]);
    sigprocmask(SIG_UNBLOCK, &set, NULL); /* NOLINT(concurrency-mt-unsafe): the child has one thread */
    execve(s->exe, s->argv, s->envp);
    _exit(127);
}

/* Starts the successor. Returns its pid, or -1 (errno says why). */
static long chi_os_spawn(const chi_spawn *s)
{
    pid_t pid = fork();
    if (pid == 0) chi_os_child_exec(s);
    return pid < 0 ? -1 : (long)pid;
}

/* The process's environment, for a copy with some variables replaced. */
static char **chi_os_environ(void) { return environ; }

/* A successor that failed: its end told in words. It has grace_ms to exit
   by itself (it closed its end of the pipe: it is leaving), then it is
   killed; either way it is waited for, so no zombie is left. */
static void chi_os_reap(long pid, int grace_ms, char *why, size_t cap)
{
    int st = 0, waited = 0;
    pid_t r;
    for (;;) {
        r = waitpid((pid_t)pid, &st, WNOHANG);
        if (r != 0 || waited >= grace_ms) break;
        {
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
        waited += 10;
    }
    if (r == 0) {
        kill((pid_t)pid, SIGKILL);
        do {
            r = waitpid((pid_t)pid, &st, 0);
        } while (r < 0 && errno == EINTR);
    }
    if (r < 0) {
        char e[64];
        (void)snprintf(why, cap, "gone (%s)", chi_os_error_text(e, sizeof e));
    }
    else if (WIFEXITED(st))
        (void)snprintf(why, cap, "exited with status %d%s", WEXITSTATUS(st),
                 WEXITSTATUS(st) == 127 ? " (could it be executed?)" : "");
    else if (WIFSIGNALED(st))
        (void)snprintf(why, cap, "was killed by signal %d", WTERMSIG(st));
    else
        (void)snprintf(why, cap, "ended");
}

#endif /* CHOPIN_NO_RESTART */

/* PID_FILE: written whole under a temporary name, then renamed over the
   old one, so a reader never sees half a number. */
static int chi_os_write_pidfile(const char *path, long pid)
{
    char tmp[CHI_MAX_PATH + 32], text[32];
    int fd, n, ok;
    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, pid) >= (int)sizeof tmp) return -1;
    n = snprintf(text, sizeof text, "%ld\n", pid);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    ok = chi_os_write_all(fd, text, (size_t)n) == 0;
    if (close(fd) < 0) ok = 0;
    if (!ok || rename(tmp, path) < 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}


/* Files (>>static, >>uploads): open under a root without leaving it, stat,
   send to a socket without copying, create an upload. A path given to
   chi_os_open_beneath is already clean (>>paths: no "." or "..", no empty
   segment); on top of that no symlink is followed, so nothing outside the
   root can be reached, whatever the tree holds. openat2 with
   RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS does it in one call (Linux 5.6);
   elsewhere, or where it is refused (ENOSYS, a seccomp filter's EPERM), the
   path is walked one openat(O_NOFOLLOW) per segment. Files are opened
   O_NONBLOCK so a FIFO planted in the tree cannot stall the worker. */
#if defined(__linux__)
#include <sys/sendfile.h>
#include <sys/syscall.h>
#endif
#include <sys/stat.h>

#define CHI_FILE_NOTFOUND (-404)
#define CHI_FILE_FORBIDDEN (-403)
#define CHI_FILE_FAILED (-500)

typedef struct chi_file_info {
    uint64_t size, ino, dev;
    int64_t mtime_ns;
    int64_t mtime;           /* seconds */
    int is_reg, is_dir;
} chi_file_info;

static int chi_os_file_errno(void)
{
    if (errno == ENOENT || errno == ENOTDIR || errno == ENAMETOOLONG) return CHI_FILE_NOTFOUND;
    if (errno == ELOOP || errno == EXDEV || errno == EACCES || errno == EPERM) return CHI_FILE_FORBIDDEN;
    return CHI_FILE_FAILED;
}

static int chi_os_open_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return chi_os_file_errno();
    return fd;
}

#if defined(__linux__) && defined(SYS_openat2)
#define CHI_HAVE_OPENAT2 1
typedef struct chi_open_how {
    uint64_t flags, mode, resolve;
} chi_open_how;
#define CHI_RESOLVE_NO_MAGICLINKS 0x02
#define CHI_RESOLVE_NO_SYMLINKS 0x04
#define CHI_RESOLVE_BENEATH 0x08
#endif

#ifndef CHOPIN_NO_STATIC
/* One openat per segment, none following a symlink. */
static int chi_os_open_walk(int root, const char *rel)
{
    char seg[CHI_PATH_MAX];
    size_t len = strlen(rel), i = 0;
    int cur = root;
    if (len >= sizeof seg) return CHI_FILE_NOTFOUND;
    if (len == 0) {
        int fd = openat(root, ".", O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) return chi_os_file_errno();
        return fd;
    }
    memcpy(seg, rel, len + 1);
    for (;;) {
        char *slash = strchr(seg + i, '/');
        int fd, last = slash == NULL;
        if (slash) *slash = 0;
        fd = openat(cur, seg + i, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | (last ? 0 : O_DIRECTORY));
        if (fd < 0) {
            int r = chi_os_file_errno();
            if (cur != root) close(cur);
            return r;
        }
        if (cur != root) close(cur);
        cur = fd;
        if (last) return cur;
        i = (size_t)(slash - seg) + 1;
    }
}

/* Opens root/rel for reading, never outside root. Returns a descriptor or
   CHI_FILE_NOTFOUND / CHI_FILE_FORBIDDEN (a symlink) / CHI_FILE_FAILED. */
static int chi_os_open_beneath(int root, const char *rel)
{
#if defined(CHI_HAVE_OPENAT2) && !defined(CHOPIN_NO_OPENAT2)
    chi_open_how how;
    long fd;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    how.resolve = CHI_RESOLVE_BENEATH | CHI_RESOLVE_NO_SYMLINKS | CHI_RESOLVE_NO_MAGICLINKS;
    do {
        fd = syscall(SYS_openat2, root, *rel ? rel : ".", &how, sizeof how);
    } while (fd < 0 && (errno == EINTR || errno == EAGAIN));
    if (fd >= 0) return (int)fd;
    if (errno != ENOSYS && errno != EPERM && errno != EINVAL && errno != E2BIG) return chi_os_file_errno();
#endif
    return chi_os_open_walk(root, rel);
}

static int chi_os_file_info(const struct stat *st, chi_file_info *fi)
{
    fi->size = (uint64_t)st->st_size;
    fi->ino = (uint64_t)st->st_ino;
    fi->dev = (uint64_t)st->st_dev;
#if defined(__APPLE__)
    fi->mtime = (int64_t)st->st_mtimespec.tv_sec;
    fi->mtime_ns = fi->mtime * 1000000000 + (int64_t)st->st_mtimespec.tv_nsec;
#else
    fi->mtime = (int64_t)st->st_mtim.tv_sec;
    fi->mtime_ns = fi->mtime * 1000000000 + (int64_t)st->st_mtim.tv_nsec;
#endif
    fi->is_reg = S_ISREG(st->st_mode);
    fi->is_dir = S_ISDIR(st->st_mode);
    return 0;
}

static int chi_os_file_stat(int fd, chi_file_info *fi)
{
    struct stat st;
    if (fstat(fd, &st) < 0) return -1;
    return chi_os_file_info(&st, fi);
}

#ifndef CHOPIN_NO_FILE_CACHE
/* The file at rel beneath root as it is now, a final symlink not followed
   (lstat): what a cached descriptor is checked against (>>static). rel is
   clean (>>paths). Returns 0 or -1. */
static int chi_os_stat_beneath(int root, const char *rel, chi_file_info *fi)
{
    struct stat st;
    if (fstatat(root, rel, &st, AT_SYMLINK_NOFOLLOW) < 0) return -1;
    return chi_os_file_info(&st, fi);
}
#endif

#endif /* CHOPIN_NO_STATIC */

/* Blocks SIGPIPE on the calling thread for good: a worker thread calls it
   once at its start, so its sendfile calls need no guard (see below). A
   SIGPIPE raised on it then stays pending, never delivered, and goes with
   the thread. Returns 0, or -1 (the guard stays on). */
static int chi_os_block_sigpipe(void)
{
#if defined(__linux__)
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    return pthread_sigmask(SIG_BLOCK, &pipe_set, NULL) == 0 ? 0 : -1;
#else
    return 0; /* the bounce path sends with MSG_NOSIGNAL / SO_NOSIGPIPE */
#endif
}

/* Up to n bytes of fd from *off to the socket, without copying them through
   user space where the kernel can (sendfile); *off moves by what was sent.
   `pipe_blocked`: the thread blocks SIGPIPE already (chi_os_block_sigpipe).
   Returns bytes, CHI_IO_AGAIN, or CHI_IO_ERROR (also when the file ended
   early: the length promised can no longer be kept). */
static long chi_os_sendfile(int sock, int fd, uint64_t *off, size_t n, char *bounce, size_t bounce_cap,
                            int pipe_blocked)
{
#if defined(__linux__)
    /* sendfile has no MSG_NOSIGNAL: a peer that left would raise SIGPIPE
       and end the process. On a thread that does not block it for good
       (ch_poll's caller's: its mask is the caller's own), it is blocked
       around the call, and one that came is taken back before the mask is
       restored: two more system calls, three after a reset. */
    off_t o = (off_t)*off;
    ssize_t r;
    sigset_t pipe_set, old;
    int e;
    (void)bounce;
    (void)bounce_cap;
    if (n > 0x7ffff000) n = 0x7ffff000;
    if (pipe_blocked) {
        do {
            r = sendfile(sock, fd, &o, n);
        } while (r < 0 && errno == EINTR);
        if (r > 0) {
            *off = (uint64_t)o;
            return (long)r;
        }
        if (r == 0) return CHI_IO_ERROR;
        return chi_os_would_block() ? CHI_IO_AGAIN : CHI_IO_ERROR;
    }
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    do {
        r = sendfile(sock, fd, &o, n);
    } while (r < 0 && errno == EINTR);
    e = errno;
    if (!sigismember(&old, SIGPIPE)) {
        /* raised even by a call that sent part and then met the reset */
        sigset_t pending;
        struct timespec zero = {0, 0};
        if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE))
            while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {}
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    errno = e;
    if (r > 0) {
        *off = (uint64_t)o;
        return (long)r;
    }
    if (r == 0) return CHI_IO_ERROR;
    return chi_os_would_block() ? CHI_IO_AGAIN : CHI_IO_ERROR;
#else
    /* a bounce buffer: pread then send; the unsent rest is read again */
    ssize_t got, r;
    (void)pipe_blocked;
    if (n > bounce_cap) n = bounce_cap;
    do {
        got = pread(fd, bounce, n, (off_t)*off);
    } while (got < 0 && errno == EINTR);
    if (got <= 0) return CHI_IO_ERROR;
    do {
        r = send(sock, bounce, (size_t)got, CHI_SEND_FLAGS);
    } while (r < 0 && errno == EINTR);
    if (r >= 0) {
        *off += (uint64_t)r;
        return (long)r;
    }
    return chi_os_would_block() ? CHI_IO_AGAIN : CHI_IO_ERROR;
#endif
}

/* A new file in dir with a generated name ("up-" + 16 hex digits), created
   exclusively, mode 0600: a client's file name is never used. */
static int chi_os_create_unique(int dirfd, char *name, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t x = (uint64_t)chi_os_now_ns() ^ ((uint64_t)(uintptr_t)name << 16) ^ ((uint64_t)(unsigned)getpid() << 40);
    int attempt;
    if (cap < 20) return CHI_FILE_FAILED;
    for (attempt = 0; attempt < 16; attempt++) {
        int k, fd;
        x ^= (uint64_t)chi_os_now_ns() + (uint64_t)attempt * (uint64_t)0x9E3779B97F4A7C15ULL;
        x ^= x >> 33;
        x *= (uint64_t)0xff51afd7ed558ccdULL;
        x ^= x >> 33;
        memcpy(name, "up-", 3);
        for (k = 0; k < 16; k++) name[3 + k] = hex[(x >> (60 - 4 * k)) & 15];
        name[19] = 0;
        fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) return fd;
        if (errno != EEXIST) return chi_os_file_errno();
    }
    return CHI_FILE_FAILED;
}

/* A file named by the application in dir (the name already checked),
   created or truncated, never through a symlink. */
static int chi_os_create_named(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return chi_os_file_errno();
    return fd;
}

/* Writes all of p to a file. Returns 0 or -1. */
static int chi_os_file_write(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Removes PID_FILE if it still names pid (a successor may have taken it). */
static void chi_os_remove_pidfile(const char *path, long pid)
{
    char text[32];
    long got = 0;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return;
    text[n] = 0;
    got = strtol(text, NULL, 10);
    if (got == pid) unlink(path);
}

/* One line on stderr: what a restart did, when no one else is told. */
static void chi_os_log_line(const char *line)
{
    size_t n = strlen(line);
    if (chi_os_write_all(2, line, n) == 0) chi_os_write_all(2, "\n", 1);
}
#ifndef CHOPIN_NO_STATIC
static int chi_os_open_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return chi_os_file_errno();
    return fd;
}

#endif /* CHOPIN_NO_STATIC */

static int chi_os_mkdir(const char *path) { return (mkdir(path, 0755) == 0 || errno == EEXIST) ? 0 : -1; }

#if defined(CHI_OS_IO_URING)
/* Under CHOPIN_USE_IO_URING the epoll block below is the fallback: its seam
   names get an epoll prefix here, and >>os io_uring defines the real ones,
   which use the ring or call these. */
#define chi_poller chi_epoll_poller
#define chi_poller_open chi_epoll_poller_open
#define chi_poller_close chi_epoll_poller_close
#define chi_poller_add chi_epoll_poller_add
#define chi_poller_mod chi_epoll_poller_mod
#define chi_poller_del chi_epoll_poller_del
#define chi_poller_forget chi_epoll_poller_forget
#define chi_poller_wait chi_epoll_poller_wait
#define chi_poller_fd chi_epoll_poller_fd
#define chi_waker chi_epoll_waker
#define chi_waker_open chi_epoll_waker_open
#define chi_waker_wake chi_epoll_waker_wake
#define chi_waker_drain chi_epoll_waker_drain
#define chi_waker_close chi_epoll_waker_close
#define chi_ticker chi_epoll_ticker
#define chi_ticker_open chi_epoll_ticker_open
#define chi_ticker_drain chi_epoll_ticker_drain
#define chi_ticker_close chi_epoll_ticker_close
#define chi_signals chi_epoll_signals
#define chi_signals_open chi_epoll_signals_open
#define chi_signals_read chi_epoll_signals_read
#define chi_signals_close chi_epoll_signals_close
#endif
#if defined(CHI_OS_EPOLL) || defined(CHI_OS_IO_URING)
/* >>os epoll ------------------------------------------------------------------
   Linux. Every source of events is a descriptor in the epoll set: sockets,
   an eventfd for the waker, a timerfd for the ticker and a signalfd for the
   stop signals (blocked in the mask, so they queue there instead of running
   a handler). Level-triggered throughout: a connection with input left is
   reported again, which keeps the server's bookkeeping simple. */
#if defined(__TINYC__)
/* glibc packs struct epoll_event on x86-64 with __attribute__, which its
   headers hide from compilers that do not claim to be GCC; tcc does
   understand it, and without it every event tag would come back shifted. */
#undef __attribute__
#endif
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

/* Each object below has an `open` flag, so closing one that is zeroed, or
   whose open failed, does nothing (and never closes descriptor 0). */
typedef struct chi_poller {
    int fd, open;
} chi_poller;

static int chi_poller_open(chi_poller *p)
{
    p->fd = epoll_create1(EPOLL_CLOEXEC);
    p->open = p->fd >= 0;
    return p->open ? 0 : -1;
}

static void chi_poller_close(chi_poller *p)
{
    if (p->open) close(p->fd);
    p->open = 0;
}

static int chi_poller_ctl(chi_poller *p, int op, int fd, unsigned ev, uint64_t tag, int exclusive)
{
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    e.events = ((ev & CHI_EV_READ) ? (uint32_t)EPOLLIN : 0u) | ((ev & CHI_EV_WRITE) ? (uint32_t)EPOLLOUT : 0u);
#ifdef EPOLLEXCLUSIVE
    /* a listener shared by several workers wakes one of them, not all */
    if (exclusive) e.events |= (uint32_t)EPOLLEXCLUSIVE;
#else
    (void)exclusive;
#endif
    e.data.u64 = tag;
    return epoll_ctl(p->fd, op, fd, &e);
}

static int chi_poller_add(chi_poller *p, int fd, unsigned ev, uint64_t tag, int exclusive)
{
    return chi_poller_ctl(p, EPOLL_CTL_ADD, fd, ev, tag, exclusive);
}

static int chi_poller_mod(chi_poller *p, int fd, unsigned old_ev, unsigned ev, uint64_t tag)
{
    (void)old_ev;
    return chi_poller_ctl(p, EPOLL_CTL_MOD, fd, ev, tag, 0);
}

static int chi_poller_del(chi_poller *p, int fd, unsigned old_ev)
{
    (void)old_ev;
    return chi_poller_ctl(p, EPOLL_CTL_DEL, fd, 0, 0, 0);
}

static void chi_poller_forget(chi_poller *p, int fd)
{
    (void)p; /* closing the descriptor takes it out of the set */
    (void)fd;
}

/* epoll_wait without glibc's cancellation bookkeeping (see chi_sys6):
   arm64 has only epoll_pwait, which with no signal mask is the same call. */
static int chi_epoll_wait(int fd, struct epoll_event *ev, int max, int timeout_ms)
{
#if defined(CHI_RAW_SYSCALLS) && defined(SYS_epoll_wait)
    return (int)chi_sys_result(chi_sys6(SYS_epoll_wait, fd, (long)ev, max, timeout_ms, 0, 0));
#elif defined(CHI_RAW_SYSCALLS)
    return (int)chi_sys_result(chi_sys6(SYS_epoll_pwait, fd, (long)ev, max, timeout_ms, 0, 8));
#else
    return epoll_wait(fd, ev, max, timeout_ms);
#endif
}

static int chi_poller_wait(chi_poller *p, chi_event *out, int max, int timeout_ms)
{
    struct epoll_event ev[CHI_MAX_EVENTS];
    int n, i;
    if (max > CHI_MAX_EVENTS) max = CHI_MAX_EVENTS;
    n = chi_epoll_wait(p->fd, ev, max, timeout_ms);
    for (i = 0; i < n; i++) {
        uint32_t e = ev[i].events;
        out[i].tag = ev[i].data.u64;
        out[i].flags = ((e & EPOLLIN) ? CHI_EV_READ : 0u) | ((e & EPOLLOUT) ? CHI_EV_WRITE : 0u) |
                       ((e & (EPOLLERR | EPOLLHUP)) ? CHI_EV_ERROR : 0u);
    }
    return n < 0 ? (errno == EINTR ? 0 : -1) : n;
}

static int chi_poller_fd(const chi_poller *p) { return p->open ? p->fd : -1; }

/* Reads a timerfd or eventfd counter so it stops being readable. */
static void chi_drain_counter(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
}

typedef struct chi_waker {
    int fd, open;
} chi_waker;

static int chi_waker_open(chi_waker *wk, chi_poller *p, uint64_t tag)
{
    wk->open = 0;
    wk->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wk->fd < 0) return -1;
    if (chi_poller_add(p, wk->fd, CHI_EV_READ, tag, 0) < 0) {
        close(wk->fd);
        return -1;
    }
    wk->open = 1;
    return 0;
}

static void chi_waker_wake(chi_waker *wk)
{
    uint64_t one = 1;
    ssize_t r = write(wk->fd, &one, sizeof one);
    (void)r;
}

static void chi_waker_drain(chi_waker *wk) { chi_drain_counter(wk->fd); }

static void chi_waker_close(chi_waker *wk)
{
    if (wk->open) close(wk->fd);
    wk->open = 0;
}

typedef struct chi_ticker {
    int fd, open;
} chi_ticker;

static int chi_ticker_open(chi_ticker *t, chi_poller *p, int ms, uint64_t tag)
{
    struct itimerspec its;
    t->open = 0;
    t->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (t->fd < 0) return -1;
    memset(&its, 0, sizeof its);
    its.it_interval.tv_sec = ms / 1000;
    its.it_interval.tv_nsec = (long)(ms % 1000) * 1000000;
    its.it_value = its.it_interval;
    if (timerfd_settime(t->fd, 0, &its, NULL) < 0 || chi_poller_add(p, t->fd, CHI_EV_READ, tag, 0) < 0) {
        close(t->fd);
        return -1;
    }
    t->open = 1;
    return 0;
}

static void chi_ticker_drain(chi_ticker *t) { chi_drain_counter(t->fd); }

static void chi_ticker_close(chi_ticker *t)
{
    if (t->open) close(t->fd);
    t->open = 0;
}

typedef struct chi_signals {
    int fd, open;
    sigset_t set, old;
} chi_signals;

static int chi_signals_open(chi_signals *s, chi_poller *p, const int *signos, int n, uint64_t tag)
{
    int i;
    sigemptyset(&s->set);
    for (i = 0; i < n; i++) sigaddset(&s->set, signos[i]);
    /* blocked before any worker starts, so every thread inherits the mask */
    pthread_sigmask(SIG_BLOCK, &s->set, &s->old);
    s->open = 0;
    s->fd = signalfd(-1, &s->set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s->fd < 0 || chi_poller_add(p, s->fd, CHI_EV_READ, tag, 0) < 0) {
        if (s->fd >= 0) close(s->fd);
        pthread_sigmask(SIG_SETMASK, &s->old, NULL);
        return -1;
    }
    s->open = 1;
    return 0;
}

static int chi_signals_read(chi_signals *s)
{
    struct signalfd_siginfo si;
    if (read(s->fd, &si, sizeof si) != (ssize_t)sizeof si) return 0;
    return (int)si.ssi_signo;
}

static void chi_signals_close(chi_signals *s)
{
    struct timespec zero = {0, 0};
    if (!s->open) return;
    close(s->fd);
    s->open = 0;
    /* a signal that stopped us has been read; drop any other, restore the mask */
    while (sigtimedwait(&s->set, NULL, &zero) > 0) {}
    pthread_sigmask(SIG_SETMASK, &s->old, NULL);
}
#endif /* CHI_OS_EPOLL */
#if defined(CHI_OS_IO_URING)
#undef chi_poller
#undef chi_poller_open
#undef chi_poller_close
#undef chi_poller_add
#undef chi_poller_mod
#undef chi_poller_del
#undef chi_poller_forget
#undef chi_poller_wait
#undef chi_poller_fd
#undef chi_waker
#undef chi_waker_open
#undef chi_waker_wake
#undef chi_waker_drain
#undef chi_waker_close
#undef chi_ticker
#undef chi_ticker_open
#undef chi_ticker_drain
#undef chi_ticker_close
#undef chi_signals
#undef chi_signals_open
#undef chi_signals_read
#undef chi_signals_close
#endif

#if defined(CHI_OS_IO_URING)
/* >>os io_uring ---------------------------------------------------------------
   Linux, CHOPIN_USE_IO_URING: the same readiness contract as epoll, driven
   through an io_uring instead of an epoll set, so that one io_uring_enter
   per loop pass both hands the kernel every change of interest made during
   the pass and waits for the next events (epoll pays an epoll_wait per pass
   and an epoll_ctl per change).
   - Raw system calls (io_uring_setup, io_uring_enter) and the ring layout of
     the kernel's <linux/io_uring.h>; no liburing.
   - Interest in a descriptor is a one-shot IORING_OP_POLL_ADD, armed again
     just before the next wait while the interest lasts. A one-shot poll
     checks readiness when it is armed, so a socket with bytes left is
     reported again on the next pass: level-triggered, as the seam wants.
     Every arming carries a generation in its user_data: a poll that was
     cancelled (interest changed, descriptor forgotten) and still completes
     is recognised as stale and dropped.
   - A pending poll holds a reference to its socket, so closing the
     descriptor alone would not close the connection: chi_poller_forget
     cancels it (the cancel goes with the next enter).
   - A worker's connections receive by a multishot IORING_OP_RECV into a
     ring of provided buffers (CHI_EV_DATA, chi_poller_data), and send by
     IORING_OP_SEND from chunks the worker owns (chi_poller_send copies and
     queues; one send per socket in the kernel at a time; shutdown and close
     wait for the queue): no read or send call per request, one
     io_uring_enter per pass (a send that nothing waits on is quiet: it
     posts no completion when it takes all its bytes, so it does not end
     the wait it was submitted with; see chi_ur_quiet_ok).
   - A worker's ring is registered with its thread (IORING_REGISTER_RING_FDS):
     the enters name it by index, without a descriptor lookup.
   - The waker is an eventfd with an IORING_OP_READ on it (the read is the
     drain; the owner re-arms it); the ticker an IORING_OP_TIMEOUT re-armed
     on each tick; the stop signals a signalfd polled like a socket.
   - Refused (no io_uring in the kernel, kernel.io_uring_disabled, a seccomp
     filter, missing features): the poller is the epoll one, chosen when it
     opens; p->refused keeps the errno for the one log line (>>listen).
   Embedded (ch_poll_fd): the ring's descriptor is readable when a
   completion waits; ch_poll submits what its pass queued before it returns
   (chi_poller_flush), so a caller that sleeps on the descriptor misses
   nothing. */
#if !defined(__GNUC__) && !defined(__clang__)
#error "chopin.h: CHOPIN_USE_IO_URING needs GCC or clang (the ring is shared memory with the kernel: __atomic builtins)"
#endif
#include <linux/io_uring.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/syscall.h>

/* what a completion's user_data names (low 3 bits; pointers are 8-aligned) */
#define CHI_UR_IGNORE 0u  /* a cancel's own completion */
#define CHI_UR_FD 1u      /* a poll: generation << 35 | fd << 3 */
#define CHI_UR_WAKER 2u   /* the waker's read: its address */
#define CHI_UR_TICKER 3u  /* the ticker's timeout: its address */
#define CHI_UR_RECV 4u    /* a connection's multishot receive: generation << 35 | fd << 3 */
#define CHI_UR_SEND 5u    /* a connection's send: fd << 3 (its descriptor stays open until it ends) */
#define CHI_UR_GEN_MASK 0x1fffffffu
#define CHI_UR_SQ 1024u   /* submission entries; the queue is flushed when full */
#define CHI_UR_CQ 16384u  /* completion entries; more wait in the kernel (NODROP) */
#define CHI_UR_NBUF 256u  /* provided receive buffers per worker (a power of 2) */
#define CHI_UR_BUF 4096u  /* bytes each */
#define CHI_EV_DATA 8u    /* io_uring only: bytes (or EOF, an error) received for the tag:
                             the server takes them with chi_poller_data */
#define CHI_UR_CHUNK 4096u      /* a pooled output chunk, header included */
#define CHI_UR_SPARE 64u        /* free chunks a worker keeps */
#define CHI_UR_SENDQ (128u * 1024u) /* bytes queued per connection before a send says "would block" */
#define CHI_UR_ORPHAN_TICKS 2u  /* ticks without progress after which a closed descriptor's queue is dropped */

/* Output queued on the ring: a connection's chunks in order. One send per
   socket is in the kernel at a time (two could overtake each other), for
   the first chunk's bytes [off, sub); bytes are appended behind sub even
   while it is in flight (the kernel reads only that range). */
typedef struct chi_ur_chunk {
    struct chi_ur_chunk *next;
    uint32_t off, len, cap;    /* sent; written; room for bytes after the header */
    uint32_t more;             /* MSG_MORE: a file body follows */
} chi_ur_chunk;

#define CHI_UR_S_SHUT 1u      /* shutdown(SHUT_WR) once the queue drains */
#define CHI_UR_S_CLOSE 2u     /* the server closed it: close(2) once the queue drains */
#define CHI_UR_S_ERR 4u       /* a send failed: every later one fails too */
#define CHI_UR_S_SLOW 8u      /* the last send was short: the next one waits in the kernel */
#define CHI_UR_S_FAST 16u     /* the send in the kernel is a quiet one (p->fast) */

typedef struct chi_ur_orphan {
    int fd;
} chi_ur_orphan;

typedef struct chi_ur_quiet {
    int fd;
    unsigned pos;              /* its submission entry's index + 1: done once the kernel's head passed it */
} chi_ur_quiet;

typedef struct chi_ur_fd {
    uint32_t tag;              /* (every tag fits in 32 bits) */
    uint32_t gen;              /* of the registration (its receive carries it) */
    uint32_t pgen;             /* of the poll armed now */
    unsigned char ev;          /* interest: CHI_EV_READ | CHI_EV_WRITE */
    unsigned char armed;       /* the mask of the poll in the kernel, 0: none */
    unsigned char reg;         /* registered */
    unsigned char dirty;       /* in the list looked at before the next wait */
    unsigned char rstate;      /* the receive: CHI_UR_R_IDLE, _ARMED, _CANCELLING */
    unsigned char sending;     /* a send of its queue's first chunk is in the kernel */
    unsigned char sflags;      /* CHI_UR_S_* */
    uint32_t q;                /* its output queue: p->qs[q - 1]; 0: none (an idle connection) */
} chi_ur_fd;                   /* 24 bytes, one per descriptor number */

/* A connection's output queue, while it has one. */
typedef struct chi_ur_queue {
    chi_ur_chunk *out;         /* the chunks, first to last */
    uint32_t queued;           /* bytes in them */
    uint32_t stamp;            /* the tick of the last progress */
    uint32_t next_free;        /* a free slot: the next free one + 1 */
    uint32_t issued;           /* bytes the send in the kernel was given */
    uint32_t quiet;            /* that send's chi_ur_quiet pos, when it is quiet */
} chi_ur_queue;

#define CHI_UR_R_IDLE 0
#define CHI_UR_R_ARMED 1
#define CHI_UR_R_CANCELLING 2      /* until its last completion: none armed beside it */

typedef struct chi_ur_data {
    long res;                  /* bytes, CHI_IO_EOF or CHI_IO_ERROR */
    int bid;                   /* its buffer, -1: none */
} chi_ur_data;

typedef struct chi_poller {
    int uring;                 /* 1: the ring; 0: the epoll poller below */
    int refused;               /* why the ring was refused (errno), 0 if it was not */
    chi_epoll_poller ep;
    int fd, open;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    void *ring_map, *sqe_map;
    size_t ring_len, sqe_len;
    unsigned tail;             /* ours; published to the kernel at each enter */
    unsigned features, skip;   /* skip: IOSQE_CQE_SKIP_SUCCESS where the kernel has it */
    chi_ur_fd *fds;
    size_t nfds;
    int *dirty;
    size_t ndirty, dirty_cap;
    /* receive mode (a worker's poller, chi_poller_receive): connections
       (tags below CHI_TAG_BASE) that want to read get a multishot receive
       into the provided buffers instead of a poll */
    int recv, enabled, deferred;
    struct io_uring_buf *br;   /* the buffer ring (shared with the kernel) */
    char *bufs;
    unsigned br_tail;
    chi_ur_data data[CHI_MAX_EVENTS]; /* one per CHI_EV_DATA event of the last wait, in order */
    int data_head, data_n;
    /* sends (chi_poller_send): spare chunks; descriptors the server closed
       whose queue still drains; ticks seen (their deadline) */
    chi_ur_chunk *spare;
    unsigned nspare, ticks, nsending, nout; /* nout: descriptors with a queue */
    chi_ur_queue *qs;          /* the queues, taken and given back (free list qfree) */
    uint32_t nq, qcap, qfree;
    chi_ur_orphan *orphans;
    size_t norphans, orphan_cap;
    size_t reaped;             /* completions the last reap took */
    /* the enter's descriptor: the ring's, or its index among the thread's
       registered rings (IORING_ENTER_REGISTERED_RING in enter_flags) */
    int enter_fd;
    unsigned enter_flags;
    chi_ur_quiet *fast;        /* quiet sends issued, not yet known done */
    size_t nfast, fast_cap;
    int finishing;             /* chi_poller_finish: every send has a completion */
} chi_poller;

typedef struct chi_waker {
    chi_epoll_waker ep;
    chi_poller *p;
    uint64_t tag, value;       /* value: what the ring's read writes */
    int fd, open, armed;
} chi_waker;

typedef struct chi_ticker {
    chi_epoll_ticker ep;
    chi_poller *p;
    uint64_t tag;
    struct __kernel_timespec ts;
    int open, armed;
} chi_ticker;

static long chi_ur_setup(unsigned entries, struct io_uring_params *prm)
{
    return syscall(__NR_io_uring_setup, entries, prm);
}

static long chi_ur_enter(int fd, unsigned submit, unsigned min_complete, unsigned flags, void *arg, size_t argsz)
{
    return syscall(__NR_io_uring_enter, fd, submit, min_complete, flags, arg, argsz);
}

/* The features the backend relies on: completions never dropped, and a
   wait with a timeout in one enter (Linux 5.11). */
#define CHI_UR_NEEDS (IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG | IORING_FEAT_SINGLE_MMAP)

/* How completions reach a worker's thread (measured, bench/uring.sh): by
   default the kernel interrupts the running thread to post each one; a ring
   only its own thread submits to (a threaded worker's) takes DEFER_TASKRUN
   (Linux 6.1): the work is done in the thread's next enter, in one batch; or,
   where that is refused, COOP_TASKRUN (5.19): no interrupt. The ring is
   created disabled, and the first submission enables it on the thread that
   makes it (the worker's, not the thread that set the worker up). The
   app's own ring (the main thread's, or the embedded worker's whose caller
   sleeps on its descriptor in poll(2)) keeps the default, which posts
   completions at once and so wakes such a caller. */
#define CHI_UR_COOP (IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG)
#define CHI_UR_OWNED (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED)

/* Sets the ring up; returns 0, or the errno that refused it. */
static int chi_ur_open(chi_poller *p, int owned)
{
    struct io_uring_params prm;
    long fd = -1;
    int e, i;
    static const unsigned tries[3] = {CHI_UR_OWNED, CHI_UR_COOP, 0};
    for (i = owned ? 0 : 2; i < 3; i++) {
        memset(&prm, 0, sizeof prm);
        prm.flags = IORING_SETUP_CQSIZE | tries[i];
        prm.cq_entries = CHI_UR_CQ;
        fd = chi_ur_setup(CHI_UR_SQ, &prm);
        if (fd >= 0 || errno != EINVAL) break;
    }
    if (fd < 0) return errno ? errno : ENOSYS;
    p->enabled = !(prm.flags & IORING_SETUP_R_DISABLED);
    p->deferred = (prm.flags & IORING_SETUP_DEFER_TASKRUN) != 0;
    p->fd = p->enter_fd = (int)fd;
    if ((prm.features & CHI_UR_NEEDS) != CHI_UR_NEEDS) {
        close(p->fd);
        return EOPNOTSUPP;
    }
    p->features = prm.features;
    p->ring_len = prm.sq_off.array + prm.sq_entries * sizeof(unsigned);
    if (prm.cq_off.cqes + prm.cq_entries * sizeof(struct io_uring_cqe) > p->ring_len)
        p->ring_len = prm.cq_off.cqes + prm.cq_entries * sizeof(struct io_uring_cqe);
    p->sqe_len = prm.sq_entries * sizeof(struct io_uring_sqe);
    p->ring_map = mmap(NULL, p->ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, p->fd, (off_t)IORING_OFF_SQ_RING);
    p->sqe_map = p->ring_map == MAP_FAILED ? MAP_FAILED :
                 mmap(NULL, p->sqe_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, p->fd, (off_t)IORING_OFF_SQES);
    if (p->sqe_map == MAP_FAILED) {
        e = errno;
        if (p->ring_map != MAP_FAILED) munmap(p->ring_map, p->ring_len);
        close(p->fd);
        return e;
    }
    {
        char *r = (char *)p->ring_map;
        p->sq_head = (unsigned *)(void *)(r + prm.sq_off.head);
        p->sq_tail = (unsigned *)(void *)(r + prm.sq_off.tail);
        p->sq_mask = (unsigned *)(void *)(r + prm.sq_off.ring_mask);
        p->sq_array = (unsigned *)(void *)(r + prm.sq_off.array);
        p->cq_head = (unsigned *)(void *)(r + prm.cq_off.head);
        p->cq_tail = (unsigned *)(void *)(r + prm.cq_off.tail);
        p->cq_mask = (unsigned *)(void *)(r + prm.cq_off.ring_mask);
        p->cqes = (struct io_uring_cqe *)(void *)(r + prm.cq_off.cqes);
    }
    p->sqes = (struct io_uring_sqe *)p->sqe_map;
    p->tail = *p->sq_tail;
    p->skip = (prm.features & IORING_FEAT_CQE_SKIP) ? (unsigned)IOSQE_CQE_SKIP_SUCCESS : 0u;
    return 0;
}

/* Would a poller open on the ring now? (ch_backend asks the kernel the same
   question the pollers ask, so its answer is the truth, with no state.) */
static int chi_ur_usable(void)
{
    chi_poller p;
    memset(&p, 0, sizeof p);
    if (chi_ur_open(&p, 0) != 0) return 0;
    munmap(p.sqe_map, p.sqe_len);
    munmap(p.ring_map, p.ring_len);
    close(p.fd);
    return 1;
}

static int chi_ur_poller_open(chi_poller *p, int owned)
{
    int e;
    memset(p, 0, sizeof *p);
    e = chi_ur_open(p, owned);
    if (e == 0) {
        p->uring = p->open = 1;
        return 0;
    }
    p->refused = e;
    return chi_epoll_poller_open(&p->ep);
}

static int chi_poller_open(chi_poller *p) { return chi_ur_poller_open(p, 0); }

/* A poller that one thread alone will wait on and change (a threaded
   worker's): it may be set up on another thread, but the first wait fixes
   the thread. */
static int chi_poller_open_owned(chi_poller *p) { return chi_ur_poller_open(p, 1); }

static void chi_ur_sends_free(chi_poller *p);

static void chi_poller_close(chi_poller *p)
{
    if (!p->uring) {
        chi_epoll_poller_close(&p->ep);
        return;
    }
    if (!p->open) return;
    chi_ur_sends_free(p);
    munmap(p->sqe_map, p->sqe_len);
    munmap(p->ring_map, p->ring_len);
    close(p->fd); /* the buffer ring is unregistered with the ring */
    if (p->br) munmap((void *)p->br, CHI_UR_NBUF * sizeof(struct io_uring_buf));
    CHOPIN_FREE(p->bufs);
    p->br = NULL;
    p->bufs = NULL;
    CHOPIN_FREE(p->fds);
    CHOPIN_FREE(p->dirty);
    p->fds = NULL;
    p->dirty = NULL;
    p->nfds = p->ndirty = p->dirty_cap = 0;
    p->open = 0;
}

/* A ring one thread alone enters (an owned one, enabled on that thread)
   is registered with the thread (Linux 5.18): each enter then names it by
   its index and the kernel skips looking its descriptor up. The
   registration is the thread's: it ends with the thread, or in
   chi_poller_finish on that thread. Refused (an older kernel): the
   descriptor, as before. */
static void chi_ur_register_ring(chi_poller *p)
{
    struct io_uring_rsrc_update up;
    memset(&up, 0, sizeof up);
    up.offset = (unsigned)-1; /* any free slot */
    up.data = (uint64_t)(unsigned)p->fd;
    if (syscall(__NR_io_uring_register, p->fd, IORING_REGISTER_RING_FDS, &up, 1) != 1) return;
    p->enter_fd = (int)up.offset;
    p->enter_flags = IORING_ENTER_REGISTERED_RING;
}

static void chi_ur_unregister_ring(chi_poller *p)
{
    struct io_uring_rsrc_update up;
    if (!p->enter_flags) return;
    memset(&up, 0, sizeof up);
    up.offset = (unsigned)p->enter_fd;
    (void)syscall(__NR_io_uring_register, p->fd, IORING_UNREGISTER_RING_FDS, &up, 1);
    p->enter_fd = p->fd;
    p->enter_flags = 0;
}

/* Hands the kernel what was queued and, with GETEVENTS, waits. Returns the
   enter's result (-1 with errno on failure). */
static long chi_ur_submit(chi_poller *p, unsigned min_complete, unsigned flags, void *arg, size_t argsz)
{
    unsigned pending;
    long r;
    if (!p->enabled) { /* the thread that submits first is the ring's one submitter */
        if (syscall(__NR_io_uring_register, p->fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0) return -1;
        p->enabled = 1;
        chi_ur_register_ring(p);
    }
    __atomic_store_n(p->sq_tail, p->tail, __ATOMIC_RELEASE);
    pending = p->tail - __atomic_load_n(p->sq_head, __ATOMIC_ACQUIRE);
    if (pending == 0 && !(flags & IORING_ENTER_GETEVENTS)) return 0;
    do {
        r = chi_ur_enter(p->enter_fd, pending, min_complete, flags | p->enter_flags, arg, argsz);
    } while (r < 0 && errno == EINTR && !(flags & IORING_ENTER_GETEVENTS));
    return r;
}

/* A zeroed submission entry, or NULL when the queue is full and cannot be
   emptied. */
static struct io_uring_sqe *chi_ur_sqe(chi_poller *p)
{
    struct io_uring_sqe *s;
    unsigned idx;
    if (p->tail - __atomic_load_n(p->sq_head, __ATOMIC_ACQUIRE) >= *p->sq_mask + 1) {
        if (chi_ur_submit(p, 0, 0, NULL, 0) < 0) return NULL;
        if (p->tail - __atomic_load_n(p->sq_head, __ATOMIC_ACQUIRE) >= *p->sq_mask + 1) return NULL;
    }
    idx = p->tail & *p->sq_mask;
    s = &p->sqes[idx];
    memset(s, 0, sizeof *s);
    p->sq_array[idx] = idx;
    p->tail++;
    return s;
}

static uint32_t chi_ur_poll_mask(unsigned ev)
{
    uint32_t m = ((ev & CHI_EV_READ) ? (uint32_t)POLLIN : 0u) | ((ev & CHI_EV_WRITE) ? (uint32_t)POLLOUT : 0u);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    m = (m << 16) | (m >> 16); /* the kernel swaps the halves back */
#endif
    return m;
}

static uint64_t chi_ur_fd_data(int fd, uint32_t gen)
{
    return ((uint64_t)(gen & CHI_UR_GEN_MASK) << 35) | ((uint64_t)(unsigned)fd << 3) | CHI_UR_FD;
}

static int chi_ur_arm_poll(chi_poller *p, int fd, chi_ur_fd *e, unsigned ev)
{
    struct io_uring_sqe *s = chi_ur_sqe(p);
    if (!s) return -1;
    s->opcode = IORING_OP_POLL_ADD;
    s->fd = fd;
    s->poll32_events = chi_ur_poll_mask(ev);
    s->user_data = chi_ur_fd_data(fd, e->pgen);
    e->armed = (unsigned char)ev;
    return 0;
}

static uint64_t chi_ur_recv_data(int fd, uint32_t gen)
{
    return ((uint64_t)(gen & CHI_UR_GEN_MASK) << 35) | ((uint64_t)(unsigned)fd << 3) | CHI_UR_RECV;
}

/* Is fd's reading done by a receive (not a poll)? */
static int chi_ur_receives(const chi_poller *p, const chi_ur_fd *e) { return p->recv && e->tag < CHI_TAG_BASE; }

/* The interest that a poll serves: all of it, or only writing. */
static unsigned chi_ur_poll_ev(const chi_poller *p, const chi_ur_fd *e)
{
    unsigned ev = chi_ur_receives(p, e) ? (unsigned)e->ev & CHI_EV_WRITE : (unsigned)e->ev;
    return e->q ? ev & ~CHI_EV_WRITE : ev; /* writable: said when its queued sends drain */
}

static int chi_ur_arm_recv(chi_poller *p, int fd, chi_ur_fd *e)
{
    struct io_uring_sqe *s = chi_ur_sqe(p);
    if (!s) return -1;
    s->opcode = IORING_OP_RECV;
    s->fd = fd;
    s->ioprio = IORING_RECV_MULTISHOT;
    s->flags = IOSQE_BUFFER_SELECT;
    s->buf_group = 0;
    s->user_data = chi_ur_recv_data(fd, e->gen);
    e->rstate = CHI_UR_R_ARMED;
    return 0;
}

static int chi_ur_cancel_recv(chi_poller *p, int fd, chi_ur_fd *e)
{
    struct io_uring_sqe *s;
    if (e->rstate != CHI_UR_R_ARMED) return 0;
    s = chi_ur_sqe(p);
    if (!s) return -1;
    s->opcode = IORING_OP_ASYNC_CANCEL;
    s->addr = chi_ur_recv_data(fd, e->gen);
    s->flags = (unsigned char)p->skip;
    s->user_data = CHI_UR_IGNORE;
    e->rstate = CHI_UR_R_CANCELLING;
    return 0;
}

/* Cancels fd's pending poll: a later completion of it is stale. */
static int chi_ur_cancel_poll(chi_poller *p, int fd, chi_ur_fd *e)
{
    struct io_uring_sqe *s;
    if (!e->armed) return 0;
    s = chi_ur_sqe(p);
    if (!s) return -1;
    s->opcode = IORING_OP_POLL_REMOVE;
    s->addr = chi_ur_fd_data(fd, e->pgen);
    s->flags = (unsigned char)p->skip;
    s->user_data = CHI_UR_IGNORE;
    e->pgen = (e->pgen + 1) & CHI_UR_GEN_MASK;
    e->armed = 0;
    return 0;
}

/* fd's entry, the table grown to hold it. */
static chi_ur_fd *chi_ur_entry(chi_poller *p, int fd)
{
    if (fd < 0) return NULL;
    if ((size_t)fd >= p->nfds) {
        size_t n = p->nfds ? p->nfds : 256;
        chi_ur_fd *t;
        while (n <= (size_t)fd) n *= 2;
        t = (chi_ur_fd *)CHOPIN_REALLOC(p->fds, n * sizeof *t);
        if (!t) return NULL;
        memset(t + p->nfds, 0, (n - p->nfds) * sizeof *t);
        p->fds = t;
        p->nfds = n;
    }
    return &p->fds[fd];
}

/* Marks fd to be looked at before the next wait (armed, re-armed, or its
   poll changed). */
static int chi_ur_mark(chi_poller *p, int fd, chi_ur_fd *e)
{
    if (e->dirty) return 0;
    if (p->ndirty == p->dirty_cap) {
        size_t n = p->dirty_cap ? p->dirty_cap * 2 : 256;
        int *t = (int *)CHOPIN_REALLOC(p->dirty, n * sizeof *t);
        if (!t) return -1;
        p->dirty = t;
        p->dirty_cap = n;
    }
    p->dirty[p->ndirty++] = fd;
    e->dirty = 1;
    return 0;
}

static int chi_poller_add(chi_poller *p, int fd, unsigned ev, uint64_t tag, int exclusive)
{
    chi_ur_fd *e;
    if (!p->uring) return chi_epoll_poller_add(&p->ep, fd, ev, tag, exclusive);
    /* no EPOLLEXCLUSIVE for a shared listener: every worker is woken, the
       ones that find no connection get EAGAIN */
    (void)exclusive;
    e = chi_ur_entry(p, fd);
    if (!e) {
        errno = ENOMEM;
        return -1;
    }
    if (e->reg) {
        errno = EEXIST;
        return -1;
    }
    e->reg = 1;
    e->tag = (uint32_t)tag;
    e->ev = (unsigned char)ev;
    return ev ? chi_ur_mark(p, fd, e) : 0;
}

static int chi_poller_mod(chi_poller *p, int fd, unsigned old_ev, unsigned ev, uint64_t tag)
{
    chi_ur_fd *e;
    if (!p->uring) return chi_epoll_poller_mod(&p->ep, fd, old_ev, ev, tag);
    if (fd < 0 || (size_t)fd >= p->nfds || !p->fds[fd].reg) {
        errno = ENOENT;
        return -1;
    }
    e = &p->fds[fd];
    e->tag = (uint32_t)tag;
    e->ev = (unsigned char)ev;
    return chi_ur_mark(p, fd, e); /* the poll (or receive) follows before the next wait */
}

static int chi_poller_del(chi_poller *p, int fd, unsigned old_ev)
{
    chi_ur_fd *e;
    if (!p->uring) return chi_epoll_poller_del(&p->ep, fd, old_ev);
    if (fd < 0 || (size_t)fd >= p->nfds || !p->fds[fd].reg) {
        errno = ENOENT;
        return -1;
    }
    e = &p->fds[fd];
    e->reg = 0;
    e->ev = 0;
    if (chi_ur_cancel_recv(p, fd, e) < 0) return -1;
    /* what the old registration's receive still brings is stale */
    e->gen = (e->gen + 1) & CHI_UR_GEN_MASK;
    e->rstate = CHI_UR_R_IDLE;
    return chi_ur_cancel_poll(p, fd, e);
}

static void chi_poller_forget(chi_poller *p, int fd)
{
    if (!p->uring) {
        chi_epoll_poller_forget(&p->ep, fd);
        return;
    }
    if (fd >= 0 && (size_t)fd < p->nfds && p->fds[fd].reg) (void)chi_poller_del(p, fd, 0);
}

/* Sends. The server's send on a connection copies the bytes into chunks
   the worker owns and queues them (the whole pass's output for a socket
   leaves in one IORING_OP_SEND, submitted with the next wait); it reports
   them sent, as a socket with a bigger buffer would. Past CHI_UR_SENDQ
   queued bytes it takes part or says CHI_IO_AGAIN, and "writable" is
   reported when the queue drains. A send that fails (the client reset)
   comes back as CHI_EV_DATA with CHI_IO_ERROR, which closes the connection.
   shutdown and close wait for the queue: the descriptor stays open (so its
   number is not reused under a queued send) until the last byte is sent,
   or CHI_UR_ORPHAN_TICKS after the server closed it. */
static char *chi_ur_bytes(chi_ur_chunk *k) { return (char *)(void *)(k + 1); }

static chi_ur_chunk *chi_ur_chunk_new(chi_poller *p, size_t want)
{
    const size_t std = CHI_UR_CHUNK - sizeof(chi_ur_chunk);
    size_t cap = want <= std ? std : want;
    chi_ur_chunk *k = NULL;
    if (cap == std && p->spare) {
        k = p->spare;
        p->spare = k->next;
        p->nspare--;
    } else {
        k = (chi_ur_chunk *)CHOPIN_MALLOC(sizeof *k + cap);
        if (!k) return NULL;
    }
    k->next = NULL;
    k->off = k->len = k->more = 0;
    k->cap = (uint32_t)cap;
    return k;
}

static void chi_ur_chunk_free(chi_poller *p, chi_ur_chunk *k)
{
    if (k->cap == CHI_UR_CHUNK - sizeof(chi_ur_chunk) && p->nspare < CHI_UR_SPARE) {
        k->next = p->spare;
        p->spare = k;
        p->nspare++;
        return;
    }
    CHOPIN_FREE(k);
}

static chi_ur_queue *chi_ur_q(const chi_poller *p, const chi_ur_fd *e) { return &p->qs[e->q - 1]; }

/* A queue for e (which has none); NULL when out of memory. */
static chi_ur_queue *chi_ur_q_take(chi_poller *p, chi_ur_fd *e)
{
    chi_ur_queue *q;
    uint32_t i;
    if (p->qfree) {
        i = p->qfree - 1;
        p->qfree = p->qs[i].next_free;
    } else {
        if (p->nq == p->qcap) {
            uint32_t n = p->qcap ? p->qcap * 2 : 64;
            chi_ur_queue *t = (chi_ur_queue *)CHOPIN_REALLOC(p->qs, (size_t)n * sizeof *t);
            if (!t) return NULL;
            p->qs = t;
            p->qcap = n;
        }
        i = p->nq++;
    }
    q = &p->qs[i];
    q->out = NULL;
    q->queued = q->next_free = 0;
    q->stamp = p->ticks;
    e->q = i + 1;
    p->nout++;
    return q;
}

/* e's queue (empty or not) goes: its chunks are freed. */
static void chi_ur_out_free(chi_poller *p, chi_ur_fd *e)
{
    chi_ur_queue *q;
    if (!e->q) return;
    q = chi_ur_q(p, e);
    while (q->out) {
        chi_ur_chunk *k = q->out;
        q->out = k->next;
        chi_ur_chunk_free(p, k);
    }
    q->next_free = p->qfree;
    p->qfree = e->q;
    e->q = 0;
    p->nout--;
}

static uint64_t chi_ur_send_data(int fd) { return ((uint64_t)(unsigned)fd << 3) | CHI_UR_SEND; }

/* Quiet sends. A send's completion would end the wait of the enter that
   submits it (the kernel counts every completion), so a pass that only
   answered would take two enters. On a deferred ring, a send that nothing
   waits on (the queue's last chunk, so nothing is left to send after it;
   no shutdown or close behind it, no interest in writing, no file after
   it) is made quiet: MSG_DONTWAIT (the kernel never parks it:
   it ends inside the enter that submits it), MSG_WAITALL (a short send is
   a failure, reported with the bytes it took) and IOSQE_CQE_SKIP_SUCCESS
   (a whole send posts nothing). So once that enter returned, a quiet send
   without a completion took all its bytes: chi_ur_reap says so when it has
   taken every completion there is. A short one is followed by one that
   waits in the kernel for room (CHI_UR_S_SLOW), until a send takes all its
   bytes again. */
static int chi_ur_quiet_ok(const chi_poller *p, const chi_ur_fd *e, const chi_ur_chunk *k)
{
    return p->deferred && p->skip && !p->finishing && !k->next && !k->more && !(e->ev & CHI_EV_WRITE) &&
           !(e->sflags & (CHI_UR_S_SLOW | CHI_UR_S_SHUT | CHI_UR_S_CLOSE));
}

/* The first chunk's unsent bytes go to the kernel (before the next wait). */
static int chi_ur_issue_send(chi_poller *p, int fd, chi_ur_fd *e)
{
    chi_ur_queue *q = chi_ur_q(p, e);
    chi_ur_chunk *k = q->out;
    struct io_uring_sqe *s;
    int quiet = chi_ur_quiet_ok(p, e, k);
    if (quiet && p->nfast == p->fast_cap) {
        size_t n = p->fast_cap ? p->fast_cap * 2 : 64;
        chi_ur_quiet *t = (chi_ur_quiet *)CHOPIN_REALLOC(p->fast, n * sizeof *t);
        if (t) {
            p->fast = t;
            p->fast_cap = n;
        } else {
            quiet = 0;
        }
    }
    s = chi_ur_sqe(p);
    if (!s) return -1;
    s->opcode = IORING_OP_SEND;
    s->fd = fd;
    s->addr = (uint64_t)(uintptr_t)(chi_ur_bytes(k) + k->off);
    s->len = k->len - k->off;
    s->msg_flags = (uint32_t)(MSG_NOSIGNAL | (k->more ? MSG_MORE : 0) | (quiet ? MSG_DONTWAIT | MSG_WAITALL : 0));
    s->user_data = chi_ur_send_data(fd);
    q->issued = s->len;
    if (quiet) {
        s->flags = (unsigned char)p->skip;
        p->fast[p->nfast].fd = fd;
        p->fast[p->nfast++].pos = q->quiet = p->tail;
        e->sflags |= CHI_UR_S_FAST;
    }
    e->sending = 1;
    p->nsending++;
    return 0;
}

/* The server is done with fd and closed it (its queue had drained, or ran
   out of time): the entry is clean for the next descriptor of that number. */
static void chi_ur_close_now(chi_poller *p, int fd, chi_ur_fd *e)
{
    size_t i;
    chi_ur_out_free(p, e);
    e->sflags = 0;
    for (i = 0; i < p->norphans; i++)
        if (p->orphans[i].fd == fd) {
            p->orphans[i] = p->orphans[--p->norphans];
            break;
        }
    close(fd);
}

static long chi_ur_send(chi_poller *p, int fd, const char *b, size_t n, int more)
{
    chi_ur_fd *e = chi_ur_entry(p, fd);
    chi_ur_queue *q;
    chi_ur_chunk *t;
    size_t take, k;
    if (!e || (e->sflags & CHI_UR_S_ERR)) return CHI_IO_ERROR;
    if (n == 0) return 0;
    q = e->q ? chi_ur_q(p, e) : chi_ur_q_take(p, e);
    if (!q) return CHI_IO_ERROR;
    if (q->queued >= CHI_UR_SENDQ) return CHI_IO_AGAIN;
    take = n < CHI_UR_SENDQ - q->queued ? n : CHI_UR_SENDQ - q->queued;
    for (t = q->out; t && t->next; t = t->next) {}
    for (k = 0; k < take;) {
        size_t room = t ? t->cap - t->len : 0, m;
        if (room == 0) {
            chi_ur_chunk *nk = chi_ur_chunk_new(p, take - k);
            if (!nk) break;
            if (t)
                t->next = nk;
            else
                q->out = nk;
            t = nk;
            room = t->cap;
        }
        m = take - k < room ? take - k : room;
        memcpy(chi_ur_bytes(t) + t->len, b + k, m);
        t->len += (uint32_t)m;
        t->more = (uint32_t)more;
        k += m;
    }
    if (k == 0) { /* out of memory */
        if (!q->out) chi_ur_out_free(p, e);
        return CHI_IO_ERROR;
    }
    q->queued += (uint32_t)k;
    if (!e->sending && chi_ur_mark(p, fd, e) < 0) return CHI_IO_ERROR;
    return (long)k;
}

static long chi_poller_send(chi_poller *p, int fd, const char *b, size_t n)
{
    if (!p->uring) return chi_os_send(fd, b, n);
    return chi_ur_send(p, fd, b, n, 0);
}

/* The same before a file body (MSG_MORE). */
static long chi_poller_send_more(chi_poller *p, int fd, const char *b, size_t n)
{
    if (!p->uring) return chi_os_send_more(fd, b, n);
    return chi_ur_send(p, fd, b, n, 1);
}

/* Are bytes of fd still queued? (sendfile waits for them: they go first) */
static int chi_poller_sending(const chi_poller *p, int fd)
{
    return p->uring && fd >= 0 && (size_t)fd < p->nfds && p->fds[fd].q != 0;
}

static int chi_poller_shutdown_write(chi_poller *p, int fd)
{
    if (chi_poller_sending(p, fd)) {
        p->fds[fd].sflags |= CHI_UR_S_SHUT;
        return 0;
    }
    return chi_os_shutdown_write(fd);
}

/* The server closes fd (registered or not): with bytes still queued the
   close waits for them, as close(2) lets a socket's buffer drain. */
static void chi_poller_close_fd(chi_poller *p, int fd)
{
    chi_ur_fd *e;
    chi_poller_forget(p, fd);
    if (!p->uring || fd < 0 || (size_t)fd >= p->nfds) {
        close(fd);
        return;
    }
    e = &p->fds[fd];
    if (e->q) {
        if (p->norphans == p->orphan_cap) {
            size_t n = p->orphan_cap ? p->orphan_cap * 2 : 64;
            chi_ur_orphan *t = (chi_ur_orphan *)CHOPIN_REALLOC(p->orphans, n * sizeof *t);
            if (!t) { /* no room to remember it: the bytes go when the send ends */
                e->sflags |= CHI_UR_S_CLOSE;
                return;
            }
            p->orphans = t;
            p->orphan_cap = n;
        }
        p->orphans[p->norphans++].fd = fd;
        e->sflags |= CHI_UR_S_CLOSE;
        return;
    }
    chi_ur_close_now(p, fd, e);
}

/* On each tick: a closed descriptor whose queue made no progress for
   CHI_UR_ORPHAN_TICKS ticks (a client that stopped reading; the server
   closed it for that, most likely) has its send cancelled; the failed send
   closes it. One that keeps reading keeps its bytes coming. */
static void chi_ur_sweep(chi_poller *p)
{
    size_t i;
    p->ticks++;
    for (i = 0; i < p->norphans; i++) {
        const chi_ur_orphan *o = &p->orphans[i];
        const chi_ur_fd *e = &p->fds[o->fd];
        struct io_uring_sqe *s;
        if (!e->q || !e->sending || p->ticks - chi_ur_q(p, e)->stamp < CHI_UR_ORPHAN_TICKS || !(s = chi_ur_sqe(p)))
            continue;
        s->opcode = IORING_OP_ASYNC_CANCEL;
        s->addr = chi_ur_send_data(o->fd);
        s->flags = (unsigned char)p->skip;
        s->user_data = CHI_UR_IGNORE;
    }
}

/* A send's completion: the next bytes go (what the kernel did not take,
   what was queued meanwhile), or the queue drained (writable; the shutdown
   or close that waited), or it failed. */
static int chi_ur_sent(chi_poller *p, const struct io_uring_cqe *cqe, chi_event *out)
{
    int fd = (int)((cqe->user_data >> 3) & 0xffffffffu);
    chi_ur_fd *e = (size_t)fd < p->nfds ? &p->fds[fd] : NULL;
    chi_ur_queue *q;
    chi_ur_chunk *k;
    if (!e || !e->sending || !e->q) return 0;
    e->sending = 0;
    e->sflags &= (unsigned char)~CHI_UR_S_FAST;
    p->nsending--;
    q = chi_ur_q(p, e);
    k = q->out;
    if (cqe->res < 0 && cqe->res != -EINTR && cqe->res != -EAGAIN) {
        chi_ur_out_free(p, e);
        if (e->sflags & CHI_UR_S_CLOSE) {
            chi_ur_close_now(p, fd, e);
            return 0;
        }
        e->sflags |= CHI_UR_S_ERR;
        if (!e->reg) return 0;
        p->data[p->data_n].bid = -1;
        p->data[p->data_n++].res = CHI_IO_ERROR;
        out->tag = e->tag;
        out->flags = CHI_EV_DATA;
        return 1;
    }
    if (cqe->res > 0) {
        k->off += (uint32_t)cqe->res;
        q->queued -= (uint32_t)cqe->res;
        q->stamp = p->ticks;
    }
    if (cqe->res >= 0 && (uint32_t)cqe->res >= q->issued)
        e->sflags &= (unsigned char)~CHI_UR_S_SLOW;
    else /* short, or EAGAIN: the socket's buffer is full */
        e->sflags |= CHI_UR_S_SLOW;
    if (k->off == k->len) {
        q->out = k->next;
        chi_ur_chunk_free(p, k);
    }
    if (q->out) {
        (void)chi_ur_mark(p, fd, e); /* the rest goes before the next wait */
        return 0;
    }
    chi_ur_out_free(p, e); /* drained: the queue's slot goes back */
    if (e->sflags & CHI_UR_S_CLOSE) {
        chi_ur_close_now(p, fd, e);
        return 0;
    }
    if (e->sflags & CHI_UR_S_SHUT) {
        e->sflags &= (unsigned char)~CHI_UR_S_SHUT;
        (void)shutdown(fd, SHUT_WR);
    }
    if (!e->reg || !(e->ev & CHI_EV_WRITE)) return 0;
    (void)chi_ur_mark(p, fd, e); /* a poll for writing may follow (a file body) */
    out->tag = e->tag;
    out->flags = CHI_EV_WRITE;
    return 1;
}

/* The ring is going: the descriptors the server closed whose bytes were
   still queued are closed now, and the chunks freed (the sends left were
   cancelled when their thread exited, or chi_poller_finish saw them end). */
static void chi_ur_sends_free(chi_poller *p)
{
    size_t fd;
    for (fd = 0; fd < p->nfds; fd++) {
        chi_ur_fd *e = &p->fds[fd];
        if (e->sflags & CHI_UR_S_CLOSE) close((int)fd);
        chi_ur_out_free(p, e);
        e->sflags = 0;
    }
    while (p->spare) {
        chi_ur_chunk *k = p->spare;
        p->spare = k->next;
        CHOPIN_FREE(k);
    }
    CHOPIN_FREE(p->orphans);
    CHOPIN_FREE(p->qs);
    CHOPIN_FREE(p->fast);
    p->fast = NULL;
    p->nfast = p->fast_cap = 0;
    p->orphans = NULL;
    p->qs = NULL;
    p->nq = p->qcap = p->qfree = 0;
    p->nspare = 0;
    p->norphans = p->orphan_cap = 0;
}

/* Before a wait: every descriptor whose interest changed or whose poll
   fired gets the poll its interest asks for now. */
static int chi_ur_prepare(chi_poller *p)
{
    size_t i;
    for (i = 0; i < p->ndirty; i++) {
        int fd = p->dirty[i];
        chi_ur_fd *e = &p->fds[fd];
        unsigned pev;
        e->dirty = 0;
        if (e->q && !e->sending && chi_ur_issue_send(p, fd, e) < 0) return -1;
        if (!e->reg) continue;
        /* a poll that asks for more than the interest now may stay: what it
           reports is masked with the interest when it completes */
        pev = chi_ur_poll_ev(p, e);
        if (e->armed && (pev & ~(unsigned)e->armed) && chi_ur_cancel_poll(p, fd, e) < 0) return -1;
        if (!e->armed && pev && chi_ur_arm_poll(p, fd, e, pev) < 0) return -1;
        if (!chi_ur_receives(p, e)) continue;
        if ((e->ev & CHI_EV_READ) && e->rstate == CHI_UR_R_IDLE && chi_ur_arm_recv(p, fd, e) < 0) return -1;
        if (!(e->ev & CHI_EV_READ) && chi_ur_cancel_recv(p, fd, e) < 0) return -1;
    }
    p->ndirty = 0;
    return 0;
}

/* A provided buffer goes back to the kernel. */
static void chi_ur_recycle(chi_poller *p, unsigned bid)
{
    struct io_uring_buf *b = &p->br[p->br_tail & (CHI_UR_NBUF - 1)];
    b->addr = (uint64_t)(uintptr_t)(p->bufs + (size_t)bid * CHI_UR_BUF);
    b->len = CHI_UR_BUF;
    b->bid = (uint16_t)bid;
    p->br_tail++;
    /* the ring's tail lies in the first entry's reserved field */
    __atomic_store_n(&p->br[0].resv, (uint16_t)p->br_tail, __ATOMIC_RELEASE);
}

/* A receive's completion: bytes (in a provided buffer), the end, an error,
   or the receive ended (cancelled, out of buffers: armed again before the
   next wait while the interest lasts). Bytes are never dropped while the
   registration lives, even after the interest in reading went away. */
static int chi_ur_received(chi_poller *p, const struct io_uring_cqe *cqe, chi_event *out)
{
    uint64_t ud = cqe->user_data;
    int fd = (int)((ud >> 3) & 0xffffffffu), bid = -1;
    uint32_t gen = (uint32_t)(ud >> 35) & CHI_UR_GEN_MASK;
    chi_ur_fd *e = (size_t)fd < p->nfds ? &p->fds[fd] : NULL;
    chi_ur_data *d;
    if (cqe->flags & IORING_CQE_F_BUFFER) bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    if (!e || !e->reg || e->gen != gen) { /* stale: the connection is gone */
        if (bid >= 0) chi_ur_recycle(p, (unsigned)bid);
        return 0;
    }
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        e->rstate = CHI_UR_R_IDLE;
        (void)chi_ur_mark(p, fd, e);
    }
    if (cqe->res == -ECANCELED || cqe->res == -ENOBUFS || (cqe->res > 0 && bid < 0)) {
        if (bid >= 0) chi_ur_recycle(p, (unsigned)bid);
        return 0;
    }
    d = &p->data[p->data_n++];
    d->bid = bid;
    d->res = cqe->res > 0 ? (long)cqe->res : cqe->res == 0 ? CHI_IO_EOF : CHI_IO_ERROR;
    out->tag = e->tag;
    out->flags = CHI_EV_DATA;
    return 1;
}

/* One completion as an event; returns 1 if it is one to report. */
static int chi_ur_event(chi_poller *p, const struct io_uring_cqe *cqe, chi_event *out)
{
    uint64_t ud = cqe->user_data;
    unsigned kind = (unsigned)(ud & 7u);
    if (kind == CHI_UR_FD) {
        int fd = (int)((ud >> 3) & 0xffffffffu);
        uint32_t gen = (uint32_t)(ud >> 35) & CHI_UR_GEN_MASK;
        chi_ur_fd *e = (size_t)fd < p->nfds ? &p->fds[fd] : NULL;
        unsigned fl = 0;
        if (!e || !e->reg || !e->armed || e->pgen != gen) return 0; /* stale */
        e->armed = 0;
        if (e->ev) (void)chi_ur_mark(p, fd, e); /* level-triggered: armed again before the next wait */
        if (cqe->res < 0) {
            fl = CHI_EV_ERROR;
        } else {
            uint32_t m = (uint32_t)cqe->res;
            fl = ((m & (uint32_t)POLLIN) ? CHI_EV_READ : 0u) | ((m & (uint32_t)POLLOUT) ? CHI_EV_WRITE : 0u) |
                 ((m & (uint32_t)(POLLERR | POLLHUP)) ? CHI_EV_ERROR : 0u);
        }
        /* reading is the receive's: a hang-up goes to the writer, which
           meets it (a read here would race with the receive) */
        if (chi_ur_receives(p, e)) fl = (fl & CHI_EV_ERROR) ? CHI_EV_WRITE : fl & CHI_EV_WRITE;
        fl &= (unsigned)e->ev | CHI_EV_ERROR;
        if (!fl || !e->ev) return 0;
        out->tag = e->tag;
        out->flags = fl;
        return 1;
    }
    if (kind == CHI_UR_RECV) return chi_ur_received(p, cqe, out);
    if (kind == CHI_UR_SEND) return chi_ur_sent(p, cqe, out);
    if (kind == CHI_UR_WAKER) {
        chi_waker *wk = (chi_waker *)(uintptr_t)(ud & ~(uint64_t)7);
        wk->armed = 0;
        if (cqe->res == -ECANCELED || !wk->open) return 0;
        out->tag = wk->tag;
        out->flags = CHI_EV_READ;
        return 1;
    }
    if (kind == CHI_UR_TICKER) {
        chi_ticker *t = (chi_ticker *)(uintptr_t)(ud & ~(uint64_t)7);
        t->armed = 0;
        chi_ur_sweep(p);
        if (cqe->res == -ECANCELED || !t->open) return 0;
        out->tag = t->tag;
        out->flags = CHI_EV_READ;
        return 1;
    }
    return 0;
}

/* The quiet sends that the kernel took (its head passed their entries)
   and that posted no failure (every completion was taken) took all their
   bytes: as if each had posted its completion. */
static int chi_ur_quiet_done(chi_poller *p, chi_event *out, int max)
{
    unsigned head = __atomic_load_n(p->sq_head, __ATOMIC_ACQUIRE);
    size_t i = 0;
    int n = 0;
    while (i < p->nfast && n < max) {
        chi_ur_quiet w = p->fast[i];
        chi_ur_fd *e = &p->fds[w.fd];
        struct io_uring_cqe c;
        if ((int)(head - w.pos) < 0) { /* not submitted yet */
            i++;
            continue;
        }
        p->fast[i] = p->fast[--p->nfast];
        /* it failed (its completion came), or that was an older send */
        if (!e->sending || !(e->sflags & CHI_UR_S_FAST) || chi_ur_q(p, e)->quiet != w.pos) continue;
        memset(&c, 0, sizeof c);
        c.user_data = chi_ur_send_data(w.fd);
        c.res = (int32_t)chi_ur_q(p, e)->issued;
        n += chi_ur_sent(p, &c, &out[n]);
        /* bytes queued behind it since (a pass ran before this reap): they
           go now, with the next enter, whether or not a prepare follows */
        if (e->q && !e->sending && chi_ur_q(p, e)->out) (void)chi_ur_issue_send(p, w.fd, e);
    }
    return n;
}

/* Takes up to max completions as events; the rest stay for the next wait. */
static int chi_ur_reap(chi_poller *p, chi_event *out, int max)
{
    unsigned head = *p->cq_head, tail = __atomic_load_n(p->cq_tail, __ATOMIC_ACQUIRE);
    int n = 0;
    while (head != tail && n < max) {
        n += chi_ur_event(p, &p->cqes[head & *p->cq_mask], &out[n]);
        head++;
    }
    p->reaped = head - *p->cq_head;
    __atomic_store_n(p->cq_head, head, __ATOMIC_RELEASE);
    if (p->nfast && head == tail) n += chi_ur_quiet_done(p, out + n, max - n);
    return n;
}

static int chi_ur_cq_ready(const chi_poller *p)
{
    return *p->cq_head != __atomic_load_n(p->cq_tail, __ATOMIC_ACQUIRE);
}

/* The bytes of the next CHI_EV_DATA event (in the order of the events):
   a count with *data pointing at them, or CHI_IO_EOF / CHI_IO_ERROR. Each
   is followed by one chi_poller_data_done, once the bytes are copied. */
static long chi_poller_data(chi_poller *p, const char **data)
{
    const chi_ur_data *d = &p->data[p->data_head];
    if (p->data_head >= p->data_n) return CHI_IO_ERROR; /* (never: one item per event) */
    *data = d->bid >= 0 ? p->bufs + (size_t)d->bid * CHI_UR_BUF : NULL;
    return d->res;
}

static void chi_poller_data_done(chi_poller *p)
{
    if (p->data_head >= p->data_n) return;
    if (p->data[p->data_head].bid >= 0) chi_ur_recycle(p, (unsigned)p->data[p->data_head].bid);
    p->data_head++;
}

/* A worker's poller receives for its connections (a multishot receive
   into CHI_UR_NBUF provided buffers of CHI_UR_BUF bytes, shared by all its
   connections: an idle one holds none). Returns 0, or -1 where the kernel
   has no buffer rings (Linux < 5.19): the poller then stays with polls. */
static int chi_poller_receive(chi_poller *p)
{
    struct io_uring_buf_reg reg;
    size_t len = CHI_UR_NBUF * sizeof(struct io_uring_buf);
    unsigned i;
    void *m;
#if defined(CHOPIN_IO_URING_POLL_ONLY)
    return -1;
#endif
    if (!p->uring || p->recv) return p->recv ? 0 : -1;
    m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return -1;
    p->br = (struct io_uring_buf *)m;
    p->bufs = (char *)CHOPIN_MALLOC((size_t)CHI_UR_NBUF * CHI_UR_BUF);
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)m;
    reg.ring_entries = CHI_UR_NBUF;
    reg.bgid = 0;
    if (!p->bufs || syscall(__NR_io_uring_register, p->fd, IORING_REGISTER_PBUF_RING, &reg, 1) < 0) {
        munmap(m, len);
        CHOPIN_FREE(p->bufs);
        p->br = NULL;
        p->bufs = NULL;
        return -1;
    }
    for (i = 0; i < CHI_UR_NBUF; i++) chi_ur_recycle(p, i);
    p->recv = 1;
    return 0;
}

/* One enter: what the pass queued goes in, and (unless completions are
   already waiting, or timeout_ms is 0) it waits for at least one. Quiet
   sends post nothing when they take all their bytes, so they do not end
   the wait; a completion that is no event (a send that was not quiet, a
   cancelled receive) does: then the wait is made again (once). */
static int chi_poller_wait(chi_poller *p, chi_event *out, int max, int timeout_ms)
{
    struct io_uring_getevents_arg arg;
    struct __kernel_timespec ts;
    long r;
    int n, again;
    if (!p->uring) return chi_epoll_poller_wait(&p->ep, out, max, timeout_ms);
    if (max > CHI_MAX_EVENTS) max = CHI_MAX_EVENTS;
    while (p->data_head < p->data_n) chi_poller_data_done(p); /* (all taken, normally) */
    p->data_head = p->data_n = 0;
    memset(&arg, 0, sizeof arg);
    if (timeout_ms > 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
        arg.ts = (uint64_t)(uintptr_t)&ts;
    }
    for (again = 0;; again++) {
        if (chi_ur_prepare(p) < 0) return -1;
        n = chi_ur_reap(p, out, max);
        if (n > 0 || timeout_ms == 0 || chi_ur_cq_ready(p)) {
            /* a deferred ring posts completions only in an enter that asks
               for them: asked for here too, without waiting, or a pass that
               never sleeps (connections left to settle) would see none */
            r = chi_ur_submit(p, 0, p->deferred ? IORING_ENTER_GETEVENTS : 0u, NULL, 0);
        } else if (timeout_ms < 0) {
            r = chi_ur_submit(p, 1, IORING_ENTER_GETEVENTS, NULL, 0);
        } else {
            r = chi_ur_submit(p, 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
        }
        if (r < 0 && errno != EINTR && errno != ETIME && errno != EAGAIN && errno != EBUSY) return -1;
        /* whatever completed while the pass ran, or during the wait */
        n += chi_ur_reap(p, out + n, max - n);
        if (n > 0 || !p->reaped || timeout_ms == 0 || again) return n;
    }
}

/* Submits what a pass queued without waiting (an embedding caller sleeps
   on the ring's descriptor next, and a poll that was never submitted would
   never wake it). */
static void chi_poller_flush(chi_poller *p)
{
    if (!p->uring) return;
    if (chi_ur_prepare(p) == 0) (void)chi_ur_submit(p, 0, 0, NULL, 0);
}

/* On the loop's own thread, when it stops: the sends still queued (a
   graceful stop's last answers, a Connection: close) get up to a second to
   go out, since the ring's requests end with the thread that made them. */
static void chi_poller_finish(chi_poller *p)
{
    chi_event ev[CHI_MAX_EVENTS];
    struct io_uring_getevents_arg arg;
    struct __kernel_timespec ts;
    int64_t until = chi_os_now_ns() + 1000000000;
    if (!p->uring || !p->open) return;
    p->finishing = 1;
    memset(&arg, 0, sizeof arg);
    ts.tv_sec = 0;
    ts.tv_nsec = 10000000;
    arg.ts = (uint64_t)(uintptr_t)&ts;
    while (p->nout && chi_os_now_ns() < until) {
        if (chi_ur_prepare(p) < 0) break;
        if (chi_ur_submit(p, 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg) < 0 && errno != ETIME &&
            errno != EINTR && errno != EAGAIN && errno != EBUSY)
            break;
        (void)chi_ur_reap(p, ev, CHI_MAX_EVENTS); /* nobody listens any more */
        while (p->data_head < p->data_n) chi_poller_data_done(p);
        p->data_head = p->data_n = 0;
    }
    chi_ur_unregister_ring(p); /* on its thread, which may live on */
}

static int chi_poller_fd(const chi_poller *p)
{
    if (!p->uring) return chi_epoll_poller_fd(&p->ep);
    return p->open ? p->fd : -1;
}

static int chi_ur_arm_waker(chi_waker *wk)
{
    struct io_uring_sqe *s = chi_ur_sqe(wk->p);
    if (!s) return -1;
    s->opcode = IORING_OP_READ;
    s->fd = wk->fd;
    s->addr = (uint64_t)(uintptr_t)&wk->value;
    s->len = sizeof wk->value;
    s->off = (uint64_t)-1; /* no position: an eventfd */
    s->user_data = (uint64_t)(uintptr_t)wk | CHI_UR_WAKER;
    wk->armed = 1;
    return 0;
}

static int chi_waker_open(chi_waker *wk, chi_poller *p, uint64_t tag)
{
    memset(wk, 0, sizeof *wk);
    if (!p->uring) return chi_epoll_waker_open(&wk->ep, &p->ep, tag);
    wk->p = p;
    wk->tag = tag;
    wk->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wk->fd < 0) return -1;
    wk->open = 1;
    if (chi_ur_arm_waker(wk) < 0) {
        close(wk->fd);
        wk->open = 0;
        return -1;
    }
    return 0;
}

static void chi_waker_wake(chi_waker *wk)
{
    uint64_t one = 1;
    ssize_t r;
    if (!wk->p) {
        chi_epoll_waker_wake(&wk->ep);
        return;
    }
    r = write(wk->fd, &one, sizeof one);
    (void)r;
}

/* The ring's read took the count it saw; wakes that came after it would
   complete the next read at once (a wake reported after its drain), so the
   counter is emptied as epoll's drain does before the next read is armed. */
static void chi_waker_drain(chi_waker *wk)
{
    if (!wk->p) {
        chi_epoll_waker_drain(&wk->ep);
        return;
    }
    if (wk->open && !wk->armed) {
        chi_drain_counter(wk->fd);
        (void)chi_ur_arm_waker(wk);
    }
}

/* A read still pending is cancelled when the ring closes; it writes nothing. */
static void chi_waker_close(chi_waker *wk)
{
    if (!wk->p) {
        chi_epoll_waker_close(&wk->ep);
        return;
    }
    if (wk->open) close(wk->fd);
    wk->open = 0;
}

static int chi_ur_arm_ticker(chi_ticker *t)
{
    struct io_uring_sqe *s = chi_ur_sqe(t->p);
    if (!s) return -1;
    s->opcode = IORING_OP_TIMEOUT;
    s->fd = -1;
    s->addr = (uint64_t)(uintptr_t)&t->ts;
    s->len = 1;
    s->off = 0; /* no completion count: a pure timer */
    s->user_data = (uint64_t)(uintptr_t)t | CHI_UR_TICKER;
    t->armed = 1;
    return 0;
}

static int chi_ticker_open(chi_ticker *t, chi_poller *p, int ms, uint64_t tag)
{
    memset(t, 0, sizeof *t);
    if (!p->uring) return chi_epoll_ticker_open(&t->ep, &p->ep, ms, tag);
    t->p = p;
    t->tag = tag;
    t->ts.tv_sec = ms / 1000;
    t->ts.tv_nsec = (long long)(ms % 1000) * 1000000;
    t->open = 1;
    if (chi_ur_arm_ticker(t) < 0) {
        t->open = 0;
        return -1;
    }
    return 0;
}

static void chi_ticker_drain(chi_ticker *t)
{
    if (!t->p) {
        chi_epoll_ticker_drain(&t->ep);
        return;
    }
    if (t->open && !t->armed) (void)chi_ur_arm_ticker(t);
}

static void chi_ticker_close(chi_ticker *t)
{
    if (!t->p) {
        chi_epoll_ticker_close(&t->ep);
        return;
    }
    t->open = 0; /* its timeout is cancelled with the ring; one that fires first is dropped */
}

/* The signals: a signalfd, polled through the ring like a socket. */
typedef struct chi_signals {
    chi_epoll_signals ep;
    chi_poller *p;
    int fd, open;
    sigset_t set, old;
} chi_signals;

static int chi_signals_open(chi_signals *s, chi_poller *p, const int *signos, int n, uint64_t tag)
{
    int i;
    memset(s, 0, sizeof *s);
    if (!p->uring) return chi_epoll_signals_open(&s->ep, &p->ep, signos, n, tag);
    s->p = p;
    sigemptyset(&s->set);
    for (i = 0; i < n; i++) sigaddset(&s->set, signos[i]);
    pthread_sigmask(SIG_BLOCK, &s->set, &s->old);
    s->fd = signalfd(-1, &s->set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s->fd < 0 || chi_poller_add(p, s->fd, CHI_EV_READ, tag, 0) < 0) {
        if (s->fd >= 0) close(s->fd);
        pthread_sigmask(SIG_SETMASK, &s->old, NULL);
        return -1;
    }
    s->open = 1;
    return 0;
}

static int chi_signals_read(chi_signals *s)
{
    struct signalfd_siginfo si;
    if (!s->p) return chi_epoll_signals_read(&s->ep);
    if (read(s->fd, &si, sizeof si) != (ssize_t)sizeof si) return 0;
    return (int)si.ssi_signo;
}

static void chi_signals_close(chi_signals *s)
{
    struct timespec zero = {0, 0};
    if (!s->p) {
        chi_epoll_signals_close(&s->ep);
        return;
    }
    if (!s->open) return;
    chi_poller_forget(s->p, s->fd);
    close(s->fd);
    s->open = 0;
    while (sigtimedwait(&s->set, NULL, &zero) > 0) {}
    pthread_sigmask(SIG_SETMASK, &s->old, NULL);
}
#endif /* CHI_OS_IO_URING */

#if defined(CHI_OS_KQUEUE)
/* >>os kqueue -----------------------------------------------------------------
   kqueue backend: macOS, FreeBSD, OpenBSD, NetBSD, DragonFly.
   What differs from epoll, and why:
   - Interest is kept per (fd, filter): reading and writing are two notes,
     EVFILT_READ and EVFILT_WRITE, added and deleted one by one. That is why
     chi_poller_mod and chi_poller_del are told what was registered before. A
     peer that left shows as EV_EOF on a note and becomes CHI_EV_ERROR: the next
     read or write tells whether it was a clean close or a reset.
   - On FreeBSD and macOS every change to a note replaces its udata (on NetBSD
     and OpenBSD only EV_ADD does), so every change here passes the tag again.
   - The ticker and the waker need no descriptor of their own: EVFILT_TIMER fires
     every `ms` and counts missed expirations itself, and EVFILT_USER is an event
     that another thread triggers with NOTE_TRIGGER. Systems without EVFILT_USER
     (older NetBSD and OpenBSD) get a nonblocking self-pipe instead.
   - Signals: EVFILT_SIGNAL records each attempt to deliver a signal, even a
     blocked one, and leaves the signal pending. We block SIGINT/SIGTERM so they
     neither kill the process nor interrupt a worker, and take a pending one back
     with sigpending() + sigwait() (macOS has no sigtimedwait).
   - No EPOLLEXCLUSIVE, and SO_REUSEPORT on macOS and the BSDs lets several
     sockets bind one port without spreading connections among them (FreeBSD's
     SO_REUSEPORT_LB does): there the workers share one listener, each kqueue
     wakes for a new connection, and the losers' accept() says EAGAIN.
   - kqueue() has no portable close-on-exec flag (kqueuex, kqueue1 are not
     everywhere), so fcntl sets it. */
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>

#define CHI_KQ_MAX_SIGNALS 8

/* udata is a void * (intptr_t on NetBSD before 10): a tag fits in 32 bits */
#define CHI_KQ_UDATA(tag) ((void *)(uintptr_t)(tag))

typedef struct chi_poller {
    int kq;
    int open; /* so closing a zeroed or failed poller does nothing */
} chi_poller;

static int chi_poller_open(chi_poller *p)
{
    p->open = 0;
    p->kq = kqueue();
    if (p->kq < 0) return -1;
    if (fcntl(p->kq, F_SETFD, FD_CLOEXEC) < 0) {
        int e = errno;
        close(p->kq);
        p->kq = -1;
        errno = e;
        return -1;
    }
    p->open = 1;
    return 0;
}

static void chi_poller_close(chi_poller *p)
{
    if (p->open) close(p->kq); /* drops every note on it */
    p->open = 0;
    p->kq = -1;
}

/* Applies a change list. With no room for events, kevent fails with errno on
   the first change it cannot apply. */
static int chi_kq_apply(int kq, const struct kevent *ch, int n)
{
    if (n == 0) return 0;
    return kevent(kq, ch, n, NULL, 0, NULL) < 0 ? -1 : 0;
}

/* Adds the filters in ev (again, so a kept one takes the tag), deletes the ones
   that were in old_ev and are not in ev. */
static int chi_kq_interest(chi_poller *p, int fd, unsigned old_ev, unsigned ev, uint64_t tag)
{
    struct kevent ch[2];
    int n = 0;
    /* EV_SET may evaluate its first argument more than once: no n++ inside */
    if ((ev | old_ev) & CHI_EV_READ) {
        EV_SET(&ch[n], (uintptr_t)fd, EVFILT_READ, (ev & CHI_EV_READ) ? EV_ADD : EV_DELETE, 0, 0, CHI_KQ_UDATA(tag));
        n++;
    }
    if ((ev | old_ev) & CHI_EV_WRITE) {
        EV_SET(&ch[n], (uintptr_t)fd, EVFILT_WRITE, (ev & CHI_EV_WRITE) ? EV_ADD : EV_DELETE, 0, 0, CHI_KQ_UDATA(tag));
        n++;
    }
    return chi_kq_apply(p->kq, ch, n);
}

static int chi_poller_add(chi_poller *p, int fd, unsigned ev, uint64_t tag, int exclusive)
{
    (void)exclusive; /* no wake-one flag in kqueue: every poller sharing the listener wakes */
    return chi_kq_interest(p, fd, 0, ev, tag);
}

static int chi_poller_mod(chi_poller *p, int fd, unsigned old_ev, unsigned ev, uint64_t tag)
{
    return chi_kq_interest(p, fd, old_ev, ev, tag);
}

static int chi_poller_del(chi_poller *p, int fd, unsigned old_ev)
{
    return chi_kq_interest(p, fd, old_ev, 0, 0);
}

static void chi_poller_forget(chi_poller *p, int fd)
{
    (void)p; /* close() removes the fd's notes */
    (void)fd;
}

static int chi_poller_wait(chi_poller *p, chi_event *out, int max, int timeout_ms)
{
    struct kevent ev[CHI_MAX_EVENTS];
    struct timespec ts, *tsp = NULL;
    int n, i;
    if (max > CHI_MAX_EVENTS) max = CHI_MAX_EVENTS;
    if (max <= 0) return 0;
    if (timeout_ms >= 0) {
        ts.tv_sec = (time_t)(timeout_ms / 1000);
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }
    n = kevent(p->kq, NULL, 0, ev, max, tsp);
    if (n < 0) return errno == EINTR ? 0 : -1;
    for (i = 0; i < n; i++) {
        /* the ticker, the waker and signals read as "readable", as their fds do on epoll */
        unsigned f = ev[i].filter == EVFILT_WRITE ? CHI_EV_WRITE : CHI_EV_READ;
        if (ev[i].flags & (EV_EOF | EV_ERROR)) f |= CHI_EV_ERROR;
        out[i].tag = (uint64_t)(uintptr_t)ev[i].udata;
        out[i].flags = f;
    }
    return n;
}

static int chi_poller_fd(const chi_poller *p) { return p->open ? p->kq : -1; }

#ifdef EVFILT_USER
typedef struct chi_waker {
    int kq;
    uint64_t tag; /* also the note's ident: tags are unique on a poller */
} chi_waker;

static int chi_waker_open(chi_waker *wk, chi_poller *p, uint64_t tag)
{
    struct kevent ch;
    wk->kq = p->kq;
    wk->tag = tag;
    EV_SET(&ch, (uintptr_t)tag, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, CHI_KQ_UDATA(tag));
    return chi_kq_apply(wk->kq, &ch, 1);
}

static void chi_waker_wake(chi_waker *wk)
{
    struct kevent ch; /* kevent on another thread's kqueue is safe, and never blocks with no event list */
    EV_SET(&ch, (uintptr_t)wk->tag, EVFILT_USER, 0, NOTE_TRIGGER, 0, CHI_KQ_UDATA(wk->tag));
    (void)chi_kq_apply(wk->kq, &ch, 1);
}

static void chi_waker_drain(chi_waker *wk) { (void)wk; /* EV_CLEAR reset it when it was reported */ }

static void chi_waker_close(chi_waker *wk)
{
    struct kevent ch;
    EV_SET(&ch, (uintptr_t)wk->tag, EVFILT_USER, EV_DELETE, 0, 0, CHI_KQ_UDATA(wk->tag));
    (void)chi_kq_apply(wk->kq, &ch, 1);
}
#else
typedef struct chi_waker {
    int rd, wr; /* a self-pipe, both ends nonblocking */
    int open;   /* so closing a zeroed or failed waker closes nothing */
} chi_waker;

static int chi_waker_open(chi_waker *wk, chi_poller *p, uint64_t tag)
{
    struct kevent ch;
    int fds[2];
    wk->rd = wk->wr = -1;
    wk->open = 0;
    if (chi_selfpipe_open(fds) < 0) return -1;
    EV_SET(&ch, (uintptr_t)fds[0], EVFILT_READ, EV_ADD, 0, 0, CHI_KQ_UDATA(tag));
    if (chi_kq_apply(p->kq, &ch, 1) < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        errno = e;
        return -1;
    }
    wk->rd = fds[0];
    wk->wr = fds[1];
    wk->open = 1;
    return 0;
}

static void chi_waker_wake(chi_waker *wk) { chi_selfpipe_poke(wk->wr); }

static void chi_waker_drain(chi_waker *wk) { chi_selfpipe_drain(wk->rd); }

static void chi_waker_close(chi_waker *wk)
{
    if (wk->open) {
        close(wk->rd); /* drops its note */
        close(wk->wr);
    }
    wk->rd = wk->wr = -1;
    wk->open = 0;
}
#endif

typedef struct chi_ticker {
    int kq;
    uint64_t tag; /* also the timer's ident */
} chi_ticker;

static int chi_ticker_open(chi_ticker *t, chi_poller *p, int ms, uint64_t tag)
{
    struct kevent ch;
    t->kq = p->kq;
    t->tag = tag;
    /* data is the period; milliseconds are the default unit on every kqueue */
    EV_SET(&ch, (uintptr_t)tag, EVFILT_TIMER, EV_ADD, 0, ms, CHI_KQ_UDATA(tag));
    return chi_kq_apply(t->kq, &ch, 1);
}

static void chi_ticker_drain(chi_ticker *t) { (void)t; /* a timer note resets when reported */ }

static void chi_ticker_close(chi_ticker *t)
{
    struct kevent ch;
    EV_SET(&ch, (uintptr_t)t->tag, EVFILT_TIMER, EV_DELETE, 0, 0, CHI_KQ_UDATA(t->tag));
    (void)chi_kq_apply(t->kq, &ch, 1);
}

typedef struct chi_signals {
    int kq;
    int n, blocked;
    int signos[CHI_KQ_MAX_SIGNALS];
    sigset_t set, old; /* ours, and the mask to restore */
} chi_signals;

static int chi_signals_open(chi_signals *s, chi_poller *p, const int *signos, int n, uint64_t tag)
{
    struct kevent ch[CHI_KQ_MAX_SIGNALS];
    int i, rc;
    s->kq = p->kq;
    s->n = s->blocked = 0;
    if (n < 0 || n > CHI_KQ_MAX_SIGNALS) {
        errno = EINVAL;
        return -1;
    }
    sigemptyset(&s->set);
    for (i = 0; i < n; i++) {
        if (sigaddset(&s->set, signos[i]) < 0) return -1;
        s->signos[i] = signos[i];
        EV_SET(&ch[i], (uintptr_t)signos[i], EVFILT_SIGNAL, EV_ADD, 0, 0, CHI_KQ_UDATA(tag));
    }
    /* notes first, then the mask: a signal in between is recorded, not lost */
    if (chi_kq_apply(s->kq, ch, n) < 0) return -1;
    s->n = n;
    rc = pthread_sigmask(SIG_BLOCK, &s->set, &s->old);
    if (rc != 0) {
        for (i = 0; i < n; i++) EV_SET(&ch[i], (uintptr_t)signos[i], EVFILT_SIGNAL, EV_DELETE, 0, 0, CHI_KQ_UDATA(tag));
        (void)chi_kq_apply(s->kq, ch, n);
        s->n = 0;
        errno = rc;
        return -1;
    }
    s->blocked = 1;
    return 0;
}

/* kqueue left the signal pending: take one of ours back, without blocking. */
static int chi_signals_read(chi_signals *s)
{
    sigset_t pending, one;
    int i, sig = 0;
    if (sigpending(&pending) < 0) return 0;
    for (i = 0; i < s->n; i++) {
        if (sigismember(&pending, s->signos[i]) != 1) continue;
        sigemptyset(&one);
        sigaddset(&one, s->signos[i]);
        if (sigwait(&one, &sig) == 0) return sig; /* pending, so it returns at once */
    }
    return 0;
}

static void chi_signals_close(chi_signals *s)
{
    struct kevent ch[CHI_KQ_MAX_SIGNALS];
    int i;
    for (i = 0; i < s->n; i++) EV_SET(&ch[i], (uintptr_t)s->signos[i], EVFILT_SIGNAL, EV_DELETE, 0, 0, NULL);
    (void)chi_kq_apply(s->kq, ch, s->n);
    if (s->blocked) {
        while (chi_signals_read(s) != 0) {} /* pending ones would fire once unblocked */
        pthread_sigmask(SIG_SETMASK, &s->old, NULL);
    }
    s->n = s->blocked = 0;
}
#endif /* CHI_OS_KQUEUE */

#if defined(CHI_OS_POLL)
/* >>os poll -------------------------------------------------------------------
   poll backend: the plain POSIX fallback, for systems with neither epoll nor
   kqueue (illumos and Solaris, AIX, Haiku, Cygwin, ...), or CHOPIN_USE_POLL.
   What differs, and why:
   - poll(2) gets the whole array of watched fds on every wait and the kernel
     scans it, so a wait costs O(n) in registered fds, not O(ready ones). Fine
     for hundreds of connections; epoll and kqueue are there for many more.
   - The poller keeps that array itself: a struct pollfd and a tag per slot,
     plus an fd -> slot index; removing a slot moves the last one into it. A
     quiet fd (ev 0) is parked under a negative fd number, which poll skips, so
     a hang-up on it is not reported on every wait.
   - POSIX has no timer or event descriptors: the waker is a nonblocking
     self-pipe, and the ticker is only a deadline the poller remembers
     (CLOCK_MONOTONIC): wait shortens its timeout to meet it and reports a tick.
   - Nor a signal descriptor: a helper thread blocks in sigwait() and writes each
     signal number into a pipe the poller watches. No handler, no global. It
     sees signals sent to the process (kill), as a server's stop signals are,
     not ones sent to another thread (raise, pthread_kill).
   - No wake-one flag: every poller watching a shared listener wakes for a new
     connection and the losers' accept() says EAGAIN. No descriptor to embed. */
#include <poll.h>

#define CHI_PL_MAX_SIGNALS 8

typedef struct chi_poller {
    struct pollfd *fds; /* fds[i].fd < 0: registered but quiet, as ~fd */
    uint64_t *tags;
    int n, cap;
    int *slot; /* fd -> its index in fds + 1; 0: not registered */
    int nslot;
    int scan;           /* where the next wait starts looking: more than max ready take turns */
    int tick_ms;        /* 0: no ticker */
    uint64_t tick_tag;
    long long tick_next; /* CLOCK_MONOTONIC, in ms */
} chi_poller;

static long long chi_pl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int chi_poller_open(chi_poller *p)
{
    memset(p, 0, sizeof *p);
    return 0;
}

static void chi_poller_close(chi_poller *p)
{
    CHOPIN_FREE(p->fds);
    CHOPIN_FREE(p->tags);
    CHOPIN_FREE(p->slot);
    memset(p, 0, sizeof *p);
}

static short chi_pl_mask(unsigned ev)
{
    return (short)(((ev & CHI_EV_READ) ? POLLIN : 0) | ((ev & CHI_EV_WRITE) ? POLLOUT : 0));
}

static int chi_pl_find(const chi_poller *p, int fd)
{
    return fd >= 0 && fd < p->nslot ? p->slot[fd] - 1 : -1;
}

/* Room for one more slot and for fd in the index. */
static int chi_pl_grow(chi_poller *p, int fd)
{
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 16;
        struct pollfd *fds = (struct pollfd *)CHOPIN_REALLOC(p->fds, sizeof *fds * (size_t)cap);
        uint64_t *tags;
        if (!fds) return -1;
        p->fds = fds;
        tags = (uint64_t *)CHOPIN_REALLOC(p->tags, sizeof *tags * (size_t)cap);
        if (!tags) return -1;
        p->tags = tags;
        p->cap = cap;
    }
    if (fd >= p->nslot) {
        int len = fd + 1 > p->nslot * 2 ? fd + 1 : p->nslot * 2;
        int *slot = (int *)CHOPIN_REALLOC(p->slot, sizeof *slot * (size_t)len);
        if (!slot) return -1;
        memset(slot + p->nslot, 0, sizeof *slot * (size_t)(len - p->nslot));
        p->slot = slot;
        p->nslot = len;
    }
    return 0;
}

static int chi_poller_add(chi_poller *p, int fd, unsigned ev, uint64_t tag, int exclusive)
{
    (void)exclusive; /* poll cannot wake just one poller */
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (chi_pl_find(p, fd) >= 0) {
        errno = EEXIST;
        return -1;
    }
    if (chi_pl_grow(p, fd) < 0) {
        errno = ENOMEM;
        return -1;
    }
    p->fds[p->n].fd = ev ? fd : ~fd;
    p->fds[p->n].events = chi_pl_mask(ev);
    p->fds[p->n].revents = 0;
    p->tags[p->n] = tag;
    p->slot[fd] = ++p->n;
    return 0;
}

static int chi_poller_mod(chi_poller *p, int fd, unsigned old_ev, unsigned ev, uint64_t tag)
{
    int i = chi_pl_find(p, fd);
    (void)old_ev;
    if (i < 0) {
        errno = ENOENT;
        return -1;
    }
    p->fds[i].fd = ev ? fd : ~fd;
    p->fds[i].events = chi_pl_mask(ev);
    p->fds[i].revents = 0;
    p->tags[i] = tag;
    return 0;
}

static int chi_poller_del(chi_poller *p, int fd, unsigned old_ev)
{
    int i = chi_pl_find(p, fd), last;
    (void)old_ev;
    if (i < 0) {
        errno = ENOENT;
        return -1;
    }
    last = --p->n;
    if (i != last) { /* the last slot fills the hole */
        int moved = p->fds[last].fd < 0 ? ~p->fds[last].fd : p->fds[last].fd;
        p->fds[i] = p->fds[last];
        p->tags[i] = p->tags[last];
        p->slot[moved] = i + 1;
    }
    p->slot[fd] = 0;
    return 0;
}

static void chi_poller_forget(chi_poller *p, int fd)
{
    (void)chi_poller_del(p, fd, 0); /* poll would report a closed fd as POLLNVAL forever */
}

static int chi_poller_wait(chi_poller *p, chi_event *out, int max, int timeout_ms)
{
    int r, k = 0, j;
    if (max > CHI_MAX_EVENTS) max = CHI_MAX_EVENTS;
    if (max <= 0) return 0;
    if (p->tick_ms) {
        long long left = p->tick_next - chi_pl_now_ms();
        int t = left <= 0 ? 0 : left > p->tick_ms ? p->tick_ms : (int)left;
        if (timeout_ms < 0 || t < timeout_ms) timeout_ms = t;
    }
    r = poll(p->fds, (nfds_t)p->n, timeout_ms);
    if (r < 0) return errno == EINTR ? 0 : -1;
    if (p->tick_ms) {
        long long now = chi_pl_now_ms();
        if (now >= p->tick_next) {
            out[k].tag = p->tick_tag;
            out[k++].flags = CHI_EV_READ;
            p->tick_next += p->tick_ms;
            if (p->tick_next <= now) p->tick_next = now + p->tick_ms; /* fell behind: skip, as timerfd counts */
        }
    }
    for (j = 0; r > 0 && j < p->n; j++) {
        int i = (p->scan + j) % p->n;
        short re = p->fds[i].revents;
        unsigned f = 0;
        if (!re) continue;
        if (k == max) { /* full: the next wait starts here */
            p->scan = i;
            return k;
        }
        if (re & POLLIN) f |= CHI_EV_READ;
        if (re & POLLOUT) f |= CHI_EV_WRITE;
        if (re & (POLLERR | POLLHUP | POLLNVAL)) f |= CHI_EV_ERROR;
        out[k].tag = p->tags[i];
        out[k++].flags = f;
        r--;
    }
    return k;
}

static int chi_poller_fd(const chi_poller *p)
{
    (void)p; /* nothing to embed: the array lives in this process */
    return -1;
}

/* A pipe with both ends nonblocking and close-on-exec (pipe2 is not in older POSIX). */
typedef struct chi_waker {
    int rd, wr;
    chi_poller *p;
} chi_waker;

static int chi_waker_open(chi_waker *wk, chi_poller *p, uint64_t tag)
{
    int fds[2];
    wk->rd = wk->wr = -1;
    wk->p = NULL;
    if (chi_selfpipe_open(fds) < 0) return -1;
    if (chi_poller_add(p, fds[0], CHI_EV_READ, tag, 0) < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        errno = e;
        return -1;
    }
    wk->rd = fds[0];
    wk->wr = fds[1];
    wk->p = p;
    return 0;
}

static void chi_waker_wake(chi_waker *wk) { chi_selfpipe_poke(wk->wr); }

static void chi_waker_drain(chi_waker *wk) { chi_selfpipe_drain(wk->rd); }

static void chi_waker_close(chi_waker *wk)
{
    if (wk->p) { /* set by a successful open only: a zeroed waker closes nothing */
        chi_poller_forget(wk->p, wk->rd);
        close(wk->rd);
        close(wk->wr);
    }
    wk->rd = wk->wr = -1;
    wk->p = NULL;
}

typedef struct chi_ticker {
    chi_poller *p;
} chi_ticker;

static int chi_ticker_open(chi_ticker *t, chi_poller *p, int ms, uint64_t tag)
{
    t->p = NULL;
    if (ms <= 0 || p->tick_ms) { /* one ticker per poller: it is a field of the poller */
        errno = ms <= 0 ? EINVAL : EBUSY;
        return -1;
    }
    p->tick_ms = ms;
    p->tick_tag = tag;
    p->tick_next = chi_pl_now_ms() + ms;
    t->p = p;
    return 0;
}

static void chi_ticker_drain(chi_ticker *t) { (void)t; /* the wait that reported it moved the deadline on */ }

static void chi_ticker_close(chi_ticker *t)
{
    if (t->p) t->p->tick_ms = 0;
    t->p = NULL;
}

/* What the signal thread shares with chi_signals_close: on the heap, so the
   chi_signals itself may move after open. */
typedef struct chi_pl_sigctx {
    sigset_t set;
    int wr;
    int stop;
    pthread_mutex_t mu;
} chi_pl_sigctx;

typedef struct chi_signals {
    chi_poller *p;
    int rd, wr;
    int n;
    int signos[CHI_PL_MAX_SIGNALS];
    sigset_t set, old;
    int blocked, running;
    pthread_t thread;
    chi_pl_sigctx *ctx;
} chi_signals;

static void *chi_pl_sigthread(void *arg)
{
    chi_pl_sigctx *c = (chi_pl_sigctx *)arg;
    for (;;) {
        int sig = 0, stop;
        if (sigwait(&c->set, &sig) != 0) break;
        pthread_mutex_lock(&c->mu);
        stop = c->stop;
        pthread_mutex_unlock(&c->mu);
        if (stop) break;
        {
            unsigned char b = (unsigned char)sig;
            ssize_t r = write(c->wr, &b, 1); /* full (255 unread): one more changes nothing */
            (void)r;
        }
    }
    return NULL;
}

/* Takes back pending ones of our signals (sigtimedwait is not on macOS). */
static int chi_pl_sigtake(const chi_signals *s)
{
    sigset_t pending, one;
    int i, sig = 0;
    if (sigpending(&pending) < 0) return 0;
    for (i = 0; i < s->n; i++) {
        if (sigismember(&pending, s->signos[i]) != 1) continue;
        sigemptyset(&one);
        sigaddset(&one, s->signos[i]);
        if (sigwait(&one, &sig) == 0) return sig;
    }
    return 0;
}

static void chi_signals_close(chi_signals *s)
{
    if (s->running) {
        pthread_mutex_lock(&s->ctx->mu);
        s->ctx->stop = 1;
        pthread_mutex_unlock(&s->ctx->mu);
        pthread_kill(s->thread, s->signos[0]); /* ends its sigwait */
        pthread_join(s->thread, NULL);
        s->running = 0;
    }
    if (s->ctx) {
        pthread_mutex_destroy(&s->ctx->mu);
        CHOPIN_FREE(s->ctx);
        s->ctx = NULL;
    }
    if (s->p) chi_poller_forget(s->p, s->rd);
    if (s->n > 0) { /* past the checks of open: rd and wr are pipe ends or -1 */
        if (s->rd >= 0) close(s->rd);
        if (s->wr >= 0) close(s->wr);
    }
    s->rd = s->wr = -1;
    s->p = NULL;
    if (s->blocked) {
        while (chi_pl_sigtake(s) != 0) {} /* pending ones would fire once unblocked */
        pthread_sigmask(SIG_SETMASK, &s->old, NULL);
        s->blocked = 0;
    }
    s->n = 0;
}

static int chi_signals_open(chi_signals *s, chi_poller *p, const int *signos, int n, uint64_t tag)
{
    sigset_t all, mine;
    int fds[2], i, rc;
    memset(s, 0, sizeof *s);
    s->rd = s->wr = -1;
    if (n <= 0 || n > CHI_PL_MAX_SIGNALS) { /* the thread needs a signal to be stopped with */
        errno = EINVAL;
        return -1;
    }
    sigemptyset(&s->set);
    for (i = 0; i < n; i++) {
        if (sigaddset(&s->set, signos[i]) < 0) return -1;
        s->signos[i] = signos[i];
    }
    s->n = n;
    if ((rc = pthread_sigmask(SIG_BLOCK, &s->set, &s->old)) != 0) {
        errno = rc;
        return -1;
    }
    s->blocked = 1;
    if (chi_selfpipe_open(fds) < 0) goto fail;
    s->rd = fds[0];
    s->wr = fds[1];
    if (chi_poller_add(p, s->rd, CHI_EV_READ, tag, 0) < 0) goto fail;
    s->p = p;
    s->ctx = (chi_pl_sigctx *)CHOPIN_MALLOC(sizeof *s->ctx);
    if (!s->ctx) {
        errno = ENOMEM;
        goto fail;
    }
    s->ctx->set = s->set;
    s->ctx->wr = s->wr;
    s->ctx->stop = 0;
    pthread_mutex_init(&s->ctx->mu, NULL);
    /* the helper starts with every signal blocked, so it takes only the ones it sigwaits for */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &mine);
    rc = pthread_create(&s->thread, NULL, chi_pl_sigthread, s->ctx);
    pthread_sigmask(SIG_SETMASK, &mine, NULL);
    if (rc != 0) {
        errno = rc;
        goto fail;
    }
    s->running = 1;
    return 0;
fail:
    rc = errno;
    chi_signals_close(s);
    errno = rc;
    return -1;
}

static int chi_signals_read(chi_signals *s)
{
    unsigned char b;
    return read(s->rd, &b, 1) == 1 ? (int)b : 0;
}
#endif /* CHI_OS_POLL */

#if !defined(CHI_OS_IO_URING)
/* Sending on a connection goes through its worker's poller: a readiness
   backend sends at once and needs no poller; io_uring queues the bytes on
   its ring (>>os io_uring: chi_poller_send, and why shutdown and close
   wait for them). */
static inline long chi_poller_send(chi_poller *p, int fd, const char *b, size_t n)
{
    (void)p;
    return chi_os_send(fd, b, n);
}
static inline long chi_poller_send_more(chi_poller *p, int fd, const char *b, size_t n)
{
    (void)p;
    return chi_os_send_more(fd, b, n);
}
static inline int chi_poller_sending(const chi_poller *p, int fd)
{
    (void)p;
    (void)fd;
    return 0;
}
static inline int chi_poller_shutdown_write(chi_poller *p, int fd)
{
    (void)p;
    return chi_os_shutdown_write(fd);
}
static inline void chi_poller_close_fd(chi_poller *p, int fd)
{
    chi_poller_forget(p, fd);
    chi_os_close(fd);
}
static inline void chi_poller_finish(chi_poller *p) { (void)p; }
#endif

/* >>structs -------------------------------------------------------------------
   LAYER 3, THE SERVER. Its private types come first, all of them, so no
   function below uses a type defined further down:
     ch_group, chi_mw, chi_after   what the application registered
     ch_app                        shared read-only by the workers once running
     ch_res                        the response a handler fills (one per worker)
     chi_conn                      one client connection
     chi_later                     a response that outlives its handler
                                   (deferred, streaming, SSE)
     chi_pool                      the off-loop pool's threads and jobs
     chi_worker                    one thread's loop and everything it owns */

typedef struct ch_worker chi_worker;
typedef struct chi_later chi_later;
typedef struct chi_pool chi_pool;

typedef struct chi_hook {
    ch_worker_fn fn;
    void *user;
} chi_hook;
#define CHI_MAX_HOOKS 8               /* start hooks, stop hooks */
struct chi_mount;        /* >>static: a directory mounted by ch_static */
struct chi_mime_entry;   /* >>static: an application's own MIME type */
struct chi_stream;       /* >>uploads: a request body taken as a stream */
struct chi_passed;       /* >>uploads: the middleware's verdict before a body */
struct chi_fcache;       /* >>static: a worker's open files and their stat */

/* A new copy of the executable that a restart started and waits for. */
typedef struct chi_successor {
    long pid;                /* 0: none under way */
    int ready_rd;            /* the readiness pipe's read end */
    int64_t deadline_ns;     /* killed if not ready by then */
} chi_successor;

/* Something registration allocated that ch_app_free must free (the state
   of ch_use_cors, ch_use_ratelimit). */
typedef struct chi_owned {
    void *ptr;
    void (*free_fn)(void *ptr);
} chi_owned;

/* A worker's counters (>>counters), on cache lines of their own: each
   worker writes only its own, /metrics reads them all. */
#define CHI_STATUS_MIN 100
#define CHI_STATUS_SLOTS 500          /* statuses 100-599 */
#define CHI_HIST_BUCKETS 12
#define CHI_REFUSAL_KINDS 9           /* 400 408 413 414 417 431 501 505, other */
#define CHI_CACHE_LINE 64
typedef struct chi_metrics {
    uint64_t by_status[CHI_STATUS_SLOTS];
    uint64_t refused[CHI_REFUSAL_KINDS];
    uint64_t hist[CHI_HIST_BUCKETS + 1]; /* request durations; the last: +Inf */
    uint64_t dur_sum_ns;
    uint64_t bytes_in, bytes_out;
    uint64_t conns_opened, conns_closed;
    uint64_t timeouts;
} chi_metrics;
/* whole cache lines, so that worker i's last line is not worker i+1's first */
typedef char chi_metrics_fill_lines[sizeof(chi_metrics) % CHI_CACHE_LINE == 0 ? 1 : -1];

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
    char prefix[CHI_MAX_PREFIX];               /* the whole prefix, parents' included */
    chi_mw *mw;
    int nmw;
    ch_group *next;                 /* every group of the app, for freeing */
};


struct ch_app { /* fields ordered by size, so the struct has no padding */
    chi_fast *fast;
    chi_node *root;
    chi_mw *mw;              /* global middleware */
    chi_after *after;        /* after-hooks */
    ch_group *groups;
    chi_worker *workers;
    chi_owned *owned;        /* freed by ch_app_free */
    void *metrics_mem;       /* one chi_metrics per worker, cache-line aligned */
    chi_metrics *metrics;
    chi_pool *pool;          /* the off-loop pool, started on first use */
    struct chi_mount *mounts;
    struct chi_mime_entry *mime;
    uint64_t stream_max;     /* the largest of their limits */
    char *argv_block;        /* the arguments, NUL-separated */
    char **argv;             /* pointers into argv_block, NULL-terminated */
    chi_limits lim;
    chi_successor next;      /* a restart under way */
    chi_hook start_hooks[CHI_MAX_HOOKS], stop_hooks[CHI_MAX_HOOKS];
    ch_config cfg;           /* resolved by ch_listen */
    int nfast;
    int nmw;
    int nafter;
    int reg_failed;          /* a route could not be added: ch_listen fails */
    int nlisten;
    int listening;
    int ctl_open, stop_open;
    int embedded;            /* ch_poll runs workers[0] on the caller's thread */
    int nowned;
    int nslots;              /* per-worker middleware states (chi_worker.slots) */
    int timed;               /* dispatch reads the clock: after-hooks or metrics */
    int metrics_on;          /* ch_metrics_route was called */
    int nmetrics;
    int ntrusted;
    ch_log_level log_level;  /* resolved */
    int nworkers;            /* running: ch_app_worker answers */
    int nstart, nstop;
    int stop_flag;           /* atomic: ch_stop was called (the stop waker
                                also carries posts in embedded mode) */
    int nmime;
    int nstream;             /* routes added with ch_route_stream */
    int host_given;          /* HOST or cfg.host was set (not the default) */
    int inherited;           /* the listeners came by LISTEN_FDS */
    int ready_fd;            /* CHOPIN_READY_FD: told once serving; -1: none */
    int pid_written;
    int restart_open;
    int handover;            /* set before the workers are told to stop: a
                                successor serves (see chi_begin_shutdown) */
    chi_poller ctl;          /* the main thread's: stop requests, signals */
    chi_waker stop;          /* poked by ch_stop */
    chi_waker restart;       /* poked by ch_restart */
    chi_net trusted[CHI_MAX_TRUSTED]; /* ch_config.trust_proxy */
    int listen_fds[CHI_MAX_LISTENERS];
    int listen_group[CHI_MAX_LISTENERS]; /* listeners with one address share a group */
    char err[CHI_ERROR_LEN];
    char host[CHI_MAX_HOST];
    char fdnames[CHI_MAX_HOST]; /* LISTEN_FDNAMES, passed on to a successor */
    char pid_file[CHI_MAX_PATH];
    char exe[CHI_MAX_PATH];  /* what a restart runs; "": unknown */
};

#define CHI_RID_MAX 64

/* The response a handler fills; chi_res_finish lays it out in the output
   buffer when the handler returns. */
struct ch_res {
    chi_worker *w;
    ch_json *json;           /* the body writer: the worker's, or a deferred
                                response's own */
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
    int end_read;             /* end_ns already read for this answer (Server-Timing) */
    int64_t timing_ns;        /* set by ch_mw_timing */
    size_t bytes;             /* bytes this response took in the output */
    int file;                 /* the body is file_fd[file_off, +file_len) */
    int file_fd;
    uint64_t file_off, file_len;
    char err_body[CHI_ERROR_BODY_MAX]; /* ch_res_error's body */
    int ctype_explicit;       /* set by ch_res_header: body calls keep it */
    int has_length;           /* ch_res_length: a HEAD answer's Content-Length */
    uint64_t length;
    char rid[CHI_RID_MAX];    /* ch_mw_request_id's id */
    size_t rid_len;
    struct chi_later *later;  /* the deferred response this is; NULL: the worker's */
};

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
    CHI_F_BACKLOG = 16,      /* input left unprocessed: output over the limit */
    CHI_F_STALL = 32,        /* held behind a deferred response, input full */
    CHI_F_PAUSED = 1 << 20,  /* a streamed body's consumer paused (>>uploads) */
    CHI_F_DIRTY = 64,        /* in the worker's list of connections to settle */
    CHI_F_KILL = 128,        /* close when settled (a stream cut off) */
    CHI_F_FILE = 256,        /* a file body is being sent after c->out (>>static) */
    CHI_F_PROXY = 512        /* a PROXY header is due before the first request */
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
    chi_later *later;        /* the response in progress that holds the
                                requests behind it; NULL: none */
    int early_done;          /* chi_early ran for the current request */
    int file_fd;             /* a file body being sent (>>static) */
    uint64_t file_off, file_left;
    struct chi_stream *stream; /* a body being streamed (>>uploads) */
    struct chi_passed *passed; /* the middleware let this body in (>>uploads) */
    const void *rl_table;    /* the rate limiter's table ... (>>ratelimit) */
    int rl_bucket;           /* ... and this client's bucket in it, */
    uint32_t rl_gen;         /* ... still its while the generation holds */
} chi_conn;

/* A response that outlives its handler. The user holds it by a ch_defer
   (index + generation) until finish or release; the connection holds it
   while c is set. It is recycled (gen bumped) when both have let go. */
enum { CHI_L_FREE, CHI_L_WAITING, CHI_L_STREAM, CHI_L_DONE };
enum { CHI_LF_LENGTH, CHI_LF_CHUNKED, CHI_LF_CLOSE };
struct chi_later {
    uint32_t gen, index;
    int state;
    int user_holds;          /* until ch_defer_finish / _release / _end */
    chi_conn *c;             /* NULL once detached (sent, aborted, cut) */
    ch_res res;              /* what ch_defer_res fills */
    ch_json json;            /* its own body writer */
    int keep_alive, minor, head_only, no_body;
    int framing;             /* CHI_LF_*, once begun */
    uint64_t left;           /* CHI_LF_LENGTH: body bytes still owed */
    int sse;
    ch_defer_fn on_abort, on_drain;
    void *abort_user, *drain_user;
    int want_drain;          /* a write said "over the bound" */
    ch_timer deadline, heartbeat;
    int deadline_status;
    ch_method method;
    chi_buf line;            /* method name + target, for the after-hooks */
    size_t method_len;
    chi_buf ask;             /* the request's conditional and Range headers, for
                                a file answer made later (>>static) */
    uint32_t ask_len[6];     /* each one's length in `ask`, in CHI_ASK_* order;
                                UINT32_MAX: absent */
    chi_later *next_free;
#ifndef CHOPIN_NO_WEBSOCKET
    ch_ws *ws;               /* this response is a WebSocket (>>websocket) */
#endif
};

/* The off-loop pool: blocking threads shared by the workers, started on
   the first ch_defer_offload. Jobs wait in a locked FIFO (the pool's
   threads block anyway); results go back through the workers' queues. */
typedef struct chi_job {
    chi_qnode node;          /* posted back to the worker when done */
    void (*work)(void *user);
    struct chi_job *next;
} chi_job;

struct chi_pool {
    chi_mutex mu;
    chi_cond cv;
    chi_job *head, *tail;
    int stop;
    int nthreads, started;
    chi_thread *threads;
};

#ifndef CHOPIN_NO_WEBSOCKET
/* WebSocket (>>websocket): one connection, its topics, a worker's topics. */
typedef struct chi_ws_topic chi_ws_topic;
typedef struct chi_ws_sub {
    chi_ws_topic *topic;
    ch_ws *ws;
    struct chi_ws_sub *tprev, *tnext; /* the topic's subscribers */
    struct chi_ws_sub *wnext;         /* the connection's topics */
} chi_ws_sub;

struct chi_ws_topic {
    chi_ws_topic *next;      /* in its hash bucket */
    uint32_t hash;
    size_t len;
    chi_ws_sub *subs;
    char name[1];            /* len + 1 bytes, allocated with the topic */
};

typedef struct chi_ws_hub {  /* per worker */
    ch_ws *all;              /* every open WebSocket (for shutdown) */
    chi_ws_topic **buckets;
    size_t nbuckets, ntopics;
} chi_ws_hub;

struct ch_ws {
    chi_worker *w;
    chi_later *l;            /* the connection's hold; NULL once it is gone */
    const ch_ws_opts *opts;
    void *user;
    int state;               /* CHI_WSS_* */
    chi_ws_parser parser;
    chi_buf msg;             /* a fragmented message so far */
    int64_t last_rx_ms, ping_sent_ms;
    int awaiting_pong;
    ch_timer keepalive, close_wait, first_input;
    chi_ws_sub *subs;
    ch_ws *prev, *next;      /* the worker's list */
    char protocol[64];
};
#endif

/* A worker's copy of one FastRoute's response: off into fast_bytes, the
   whole length, and the head's (a dynamic one ends at "Content-Length: "). */
typedef struct chi_fast_copy {
    size_t off, len, head_len;
} chi_fast_copy;

struct ch_worker {
    ch_app *app;
    int id;
    chi_poller own_poller;   /* its own, unless it runs in the caller's loop */
    chi_poller *poller;      /* &own_poller, or the app's (embedded) */
    chi_ticker ticker;
    chi_waker waker;         /* wakes the worker to stop (threaded only) */
    int ticker_open, waker_open;
    int nlisten;             /* the listeners this worker accepts on */
    int listen_fd[CHI_MAX_LISTENERS];
    unsigned char listen_shared[CHI_MAX_LISTENERS]; /* another worker has it too */
    int accepting;
    int64_t accept_pause_until;
    chi_thread thread;
    int started;
    int sigpipe_blocked;     /* its thread blocks SIGPIPE for good (>>run) */
    struct chi_fcache *fcache; /* open files of ch_static mounts (>>static) */
    uint64_t stream_serial;  /* the last streamed body's number (>>uploads) */
    chi_conn **conns;        /* indexed by fd */
    size_t conns_cap;
    chi_conn *free_conns;
    int nconns;
    chi_conn *qhead[CHI_Q_COUNT], *qtail[CHI_Q_COUNT];
    int timeouts[CHI_Q_COUNT];
    int64_t now;             /* CLOCK_MONOTONIC seconds, read once a tick */
    int stopping;
    int64_t stop_deadline;
    int64_t idle_close_at;   /* a hand-over's stop: idle connections close then */
    char *scratch;           /* CHOPIN_READ_SIZE bytes */
    chi_buf out;             /* responses of the current read batch */
    char common[CHI_COMMON_LEN]; /* "Server: ...\r\nDate: ...\r\n" */
    char ok_lead[CHI_OK_LEAD_LEN]; /* "HTTP/1.1 200 OK\r\n" + common (>>answers) */
    char ok_json[CHI_OK_JSON_OPEN_LEN]; /* ok_lead + "Content-Type: application/json\r\n" (the
                                          JSON lead) + "Content-Length: " (HTTP/1.1 keep-alive) */
    chi_parse_memo parse_memo; /* the last valid Host value (>>parser) */
    chi_buf fast_bytes;      /* each FastRoute's response (or prefix) */
    chi_fast_copy *fast;
    uint64_t fast_lens;      /* bit n: a FastRoute path of n bytes (63: 63 or more) */
    ch_json json;
    ch_req req;
    chi_req_store req_store; /* req's header lines and parameters */
    ch_res res;
    chi_buf log;             /* access log lines not yet written */
    int log_fd;
    int log_lines, log_dropped; /* the logger's rate limit: this second's lines */
    unsigned decoded_mask;   /* which parameters are decoded (reset per request) */
    int64_t log_second;      /* ... and which second that is */
    chi_metrics *metrics;    /* &app->metrics[id] when counting, else NULL */
    void *slots[CHI_MAX_SLOTS]; /* middleware state per worker (app->nslots):
                                   in place, so a read is one load */
    chi_buf decoded;         /* ch_req_param_decoded's values, per request */
    size_t decoded_at[CHOPIN_MAX_PARAMS], decoded_len[CHOPIN_MAX_PARAMS];
    uint64_t rid_next;       /* request ids: a count after ... */
    size_t rid_prefix_len, rid_last_len; /* ... "<start second>-<worker>-" */
    char rid_line[64];       /* "X-Request-Id: <the last id made>\r\n" (>>request id) */
    int hooks_started;       /* the start hooks ran (so the stop hooks will) */
    int out_failed;          /* an answer could not be written: out of memory */
    /* answering later (>>later): nothing here is touched by a request
       that does not use it */
    chi_conn *cur;           /* the connection whose requests are being
                                answered: its output goes to w->out */
    int deferring;           /* ch_res_defer was called in this dispatch */
    int keep_alive;          /* the request being dispatched keeps the connection */
    chi_later **laters;      /* by index; each allocation is kept for reuse */
    chi_later *free_laters;
    uint32_t nlaters, laters_cap;
    int live;                /* deferred responses and streams with a client */
    int stop_flag;           /* atomic: the waker means "stop" */
    int *dirty;              /* fds of connections to settle after this pass */
    size_t ndirty, dirty_cap;
    chi_timers timers;
    int64_t now_ms;          /* read per pass while timers are pending */
    chi_mpsc inbox;          /* posts from any thread */
#if !CHI_ATOMICS
    chi_mutex inbox_mu;      /* no atomics: the queue takes a lock */
#endif
    chi_waker *wake;         /* what a post pokes: own waker, or the app's */
    void *data;              /* ch_worker_set_data */
    ch_res sink;             /* what a stale handle's ch_defer_res gets */
    ch_json sink_json;
    chi_buf sse_buf;         /* an event being framed */
    struct chi_stream *stream_offer; /* while a stream route's handler runs */
#ifndef CHOPIN_NO_WEBSOCKET
    chi_ws_hub ws_hub;       /* its WebSockets and their topics (>>websocket) */
#endif
};

/* Implemented in >>later, called from >>connection and the loop. */
enum { CHI_WHY_DONE, CHI_WHY_ABORT, CHI_WHY_GONE };
static void chi_later_detach(chi_worker *w, chi_later *l, int why);
static void chi_hold_input(chi_worker *w, chi_conn *c, long n);
static void chi_held_io(chi_worker *w, chi_conn *c);
static void chi_mark_dirty(chi_worker *w, chi_conn *c);
static chi_pool *chi_pool_new(void); /* >>offload */
#ifndef CHOPIN_NO_WEBSOCKET
/* Implemented in >>websocket. */
static void chi_ws_received(chi_worker *w, chi_conn *c, long n);
static void chi_ws_begin_shutdown(chi_worker *w);
static void chi_ws_cleanup(chi_worker *w);
#endif

/* >>app ---------------------------------------------------------------------
   Building the application: what is added here is shared read-only by every
   worker once the server runs. A registration error is kept and reported by
   ch_listen, so the calls may go unchecked. */

static void chi_set_error(ch_app *app, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(app->err, sizeof app->err, fmt, ap); /* a longer message is cut: it is only read */
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
    app->pool = chi_pool_new();
    if (app->root && app->pool && chi_poller_open(&app->ctl) == 0) {
        app->ctl_open = 1;
        app->stop_open = chi_waker_open(&app->stop, &app->ctl, CHI_TAG_STOP) == 0;
        app->restart_open = chi_waker_open(&app->restart, &app->ctl, CHI_TAG_RESTART) == 0;
    }
    app->ready_fd = -1;
    if (!app->stop_open || !app->restart_open) {
        ch_app_free(app);
        return NULL;
    }
    return app;
}

static void chi_files_free(ch_app *app); /* >>static */
static void chi_file_release(chi_worker *w, int fd); /* >>static: a file body's descriptor */

/* What registration allocated; ch_app_free (>>run) calls it last. */
static void chi_app_free_routes(ch_app *app)
{
    chi_files_free(app);
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
    app->timed = 1; /* after-hooks are told the duration */
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
    char full[CHI_MAX_PATTERN];
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

/* >>response API ------------------------------------------------------------
   A handler fills the worker's ch_res; when it returns, chi_res_finish lays
   the response out in the output buffer. Header names and values are
   checked: a CR, LF or other control byte is refused, never written, and the
   framing headers (Content-Length, Transfer-Encoding, Connection, Date,
   Server) belong to the server. */

/* The client's address: the one request call that needs the OS. */
CHOPIN_API size_t ch_req_remote_addr(const ch_req *req, char *out, size_t cap)
{
    return chi_os_peer_text((const chi_peer *)req->conn, out, cap);
}


static void chi_res_reset(ch_res *res)
{
    res->status = 200;
    res->ctype.len = 0;
    res->headers.len = 0;
    res->body = NULL;
    res->body_len = 0;
    res->body_is_json = 0;
    res->nfinish = 0;
    if (res->file) chi_file_release(res->w, res->file_fd); /* never taken: let it go */
    res->file = 0;
    res->ctype_explicit = 0;
    res->has_length = 0;
    res->rid_len = 0;
    res->end_read = 0;
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

/* A body call's own type: only when ch_res_header set none (the one rule). */
static void chi_res_default_ctype(ch_res *res, const char *v, size_t n)
{
    if (!res->ctype_explicit) chi_res_set_ctype(res, v, n);
}

/* Appends "name: value\r\n" as it is: for bytes already known to be valid. */
static inline int chi_res_put_header(ch_res *res, const char *name, size_t nlen, const char *value, size_t vlen)
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
        /* cppcheck-suppress arrayIndexOutOfBounds ; cppcheck 2.10 takes ch_res_header(res, "Upgrade", ..)
           in >>websocket for a 6-byte name with nlen 7 (a false positive: i < nlen = strlen(name)) */
        if (!chi_is((unsigned char)name[i], CHI_TOKEN)) return -1;
    for (i = 0; i < vlen; i++)
        if (!chi_is((unsigned char)value[i], CHI_VALUE)) return -1;
    if ((nlen == 14 && chi_ieq(name, "content-length", 14)) || (nlen == 17 && chi_ieq(name, "transfer-encoding", 17)) ||
        (nlen == 10 && chi_ieq(name, "connection", 10)) || (nlen == 4 && chi_ieq(name, "date", 4)) ||
        (nlen == 6 && chi_ieq(name, "server", 6)))
        return -1;
    if (nlen == 12 && chi_ieq(name, "content-type", 12)) {
        res->ctype_explicit = 1;
        return chi_res_set_ctype(res, value, vlen);
    }
    return chi_res_put_header(res, name, nlen, value, vlen);
}

CHOPIN_API int ch_res_header(ch_res *res, const char *name, const char *value)
{
    return ch_res_headern(res, name, strlen(name), value, strlen(value));
}

CHOPIN_API void ch_res_send(ch_res *res, int status, const char *content_type, const void *body, size_t len)
{
    res->status = status;
    if (content_type) chi_res_default_ctype(res, content_type, strlen(content_type));
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
    ch_json *j = res->json;
    ch_json_reset(j);
    chi_json_raw(j, (const char *)body, len);
    if (content_type) chi_res_default_ctype(res, content_type, strlen(content_type));
    res->body_is_json = 1; /* the writer's buffer holds the copy */
    return j->failed ? -1 : 0;
}

CHOPIN_API ch_json *ch_res_json(ch_res *res, int status)
{
    ch_json *j = res->json;
    ch_json_reset(j);
    res->status = status;
    chi_res_default_ctype(res, "application/json", 16);
    res->body_is_json = 1;
    return j;
}

CHOPIN_API int ch_res_printf(ch_res *res, int status, const char *content_type, const char *fmt, ...)
{
    ch_json *j = res->json;
    va_list ap;
    int n;
    ch_json_reset(j);
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || chi_json_reserve(j, (size_t)n + 1) < 0) return -1;
    va_start(ap, fmt);
    (void)vsnprintf(j->buf, (size_t)n + 1, fmt, ap); /* n + 1 bytes were measured above */
    va_end(ap);
    j->len = (size_t)n;
    res->status = status;
    if (content_type) chi_res_default_ctype(res, content_type, strlen(content_type));
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
    res->status = status;
    chi_res_default_ctype(res, "application/json", 16);
    res->body_is_json = 0;
    res->body = res->err_body;
    res->body_len = chi_error_body(status, res->err_body);
}

CHOPIN_API void ch_res_error_msg(ch_res *res, int status, const char *message)
{
    ch_json *j = ch_res_json(res, status);
    ch_json_object_begin(j);
    ch_json_key(j, "detail");
    ch_json_str(j, message ? message : chi_error_detail(status));
    ch_json_object_end(j);
}

CHOPIN_API void ch_res_length(ch_res *res, uint64_t len)
{
    res->has_length = 1;
    res->length = len;
}

CHOPIN_API int ch_req_is_head(const ch_req *req) { return req->method == CH_HEAD; }

CHOPIN_API int ch_res_cookie(ch_res *res, const ch_cookie *cookie)
{
    char line[CH_COOKIE_MAX];
    long n = ch_cookie_format(cookie, line, sizeof line);
    return n < 0 ? -1 : chi_res_put_header(res, "Set-Cookie", 10, line, (size_t)n);
}

CHOPIN_API ch_str ch_res_request_id(const ch_res *res) { return chi_str(res->rid, res->rid_len); }

/* Decoded into the worker's buffer, which the next request reuses: each
   parameter once per request, at an offset kept per parameter, in room
   reserved on the first call (decoding never grows a value), so values of
   one request stay valid together. The parser has checked every %-escape
   of the target, so decoding succeeds. */
CHOPIN_API ch_str ch_req_param_decoded(ch_req *req, const char *name)
{
    chi_worker *w = (chi_worker *)req->worker;
    int i;
    if (!w) return chi_str(NULL, 0);
    for (i = 0; i < req->param_count && !ch_str_eq(req->params[i].name, name); i++) {}
    if (i == req->param_count) return chi_str(NULL, 0);
    if (!(w->decoded_mask & (1u << i))) {
        const ch_str *raw = &req->params[i].value;
        long n;
        if (w->decoded_mask == 0) {
            w->decoded.len = 0;
            if (chi_buf_reserve(&w->decoded, req->path.len + CHOPIN_MAX_PARAMS) < 0) return chi_str(NULL, 0);
        }
        n = ch_url_decode(raw->ptr, raw->len, w->decoded.ptr + w->decoded.len, raw->len + 1, 0);
        if (n < 0) return chi_str(NULL, 0);
        w->decoded_at[i] = w->decoded.len;
        w->decoded_len[i] = (size_t)n;
        w->decoded.len += (size_t)n + 1;
        w->decoded_mask |= 1u << i;
    }
    return chi_str(w->decoded.ptr + w->decoded_at[i], w->decoded_len[i]);
}

/* >>worker state ------------------------------------------------------------
   A worker owns everything its connections touch. Connections sit in a table
   indexed by file descriptor, and in one of the timeout queues, each kept in
   order of last activity: touching a connection moves it to the tail (at
   most once per second), so expiring is popping from the head. Idle
   connections keep no buffers: input is read into the worker's scratch
   buffer and only the bytes of an unfinished request are copied aside. */

/* The Date is patched into the shared prefix and into every FastRoute copy,
   each of which starts with "HTTP/1.1 200 OK\r\n" + common. */

static void chi_refresh_date(chi_worker *w)
{
    int i;
    chi_format_date(chi_os_wall_seconds(), w->common + CHI_DATE_AT);
    memcpy(w->ok_lead + CHI_OK_LINE_LEN + CHI_DATE_AT, w->common + CHI_DATE_AT, CHI_DATE_LEN);
    memcpy(w->ok_json + CHI_OK_LINE_LEN + CHI_DATE_AT, w->common + CHI_DATE_AT, CHI_DATE_LEN);
    for (i = 0; w->fast && i < w->app->nfast; i++)
        memcpy(w->fast_bytes.ptr + w->fast[i].off + CHI_OK_LINE_LEN + CHI_DATE_AT, w->common + CHI_DATE_AT,
               CHI_DATE_LEN);
}

static void chi_read_clock(chi_worker *w) { w->now = chi_os_now_ns() / 1000000000; }

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

/* >>logger --------------------------------------------------------------------
   Every runtime failure goes through chi_log: a level, an item of
   ch_log_item, and a message. With ch_config.log set, that function gets
   it; otherwise one line goes to stderr ("chopin: error: ..."). Either
   way at most CHI_LOG_PER_SECOND lines a second per worker are let
   through, and the next line that gets through says how many were not, so
   a flood of bad requests cannot turn into a flood of log lines. */

#define CHI_LOG_PER_SECOND 20
#define CHI_LOG_LINE 512

static const char *chi_level_name(ch_log_level level)
{
    switch (level) {
    case CH_LOG_ERROR: return "error";
    case CH_LOG_WARN: return "warn";
    case CH_LOG_INFO: return "info";
    default: return "debug";
    }
}

static void chi_log_emit(const ch_app *app, ch_log_level level, ch_log_item item, const char *msg)
{
    char line[CHI_LOG_LINE + 32];
    int n;
    if (app->cfg.log) {
        app->cfg.log(level, item, msg, app->cfg.log_user);
        return;
    }
    n = snprintf(line, sizeof line, "chopin: %s: %s\n", chi_level_name(level), msg);
    if (n > 0) chi_os_write_all(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* Is a line at this level let through now? Counts it if so. */
static int chi_log_admit(chi_worker *w, ch_log_level level)
{
    if (level > w->app->log_level || w->app->log_level == CH_LOG_OFF) return 0;
    if (w->log_second != w->now) {
        int dropped = w->log_dropped;
        w->log_second = w->now;
        w->log_lines = 0;
        w->log_dropped = 0;
        if (dropped) {
            char msg[64];
            (void)snprintf(msg, sizeof msg, "%d log lines left out (more than %d a second)", dropped,
                           CHI_LOG_PER_SECOND);
            chi_log_emit(w->app, CH_LOG_WARN, CH_LOGITEM_SUPPRESSED, msg);
        }
    }
    if (w->log_lines >= CHI_LOG_PER_SECOND) {
        w->log_dropped++;
        return 0;
    }
    w->log_lines++;
    return 1;
}

static void chi_log(chi_worker *w, ch_log_level level, ch_log_item item, const char *fmt, ...)
{
    char msg[CHI_LOG_LINE];
    va_list ap;
    if (!chi_log_admit(w, level)) return;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap); /* a longer message is cut */
    va_end(ap);
    chi_log_emit(w->app, level, item, msg);
}

/* A header line the framework adds to an answer (Allow, Vary, CORS, the
   rate limit's, X-Request-Id, SSE's Cache-Control) that finds no memory:
   the answer goes without it, and the logger says so. */
CHI_OUTLINE static void chi_line_lost(chi_worker *w, const char *name)
{
    chi_log(w, CH_LOG_ERROR, CH_LOGITEM_OUT_OF_MEMORY, "out of memory: an answer goes without its %s line", name);
}

static void chi_res_add_line(ch_res *res, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (chi_res_put_header(res, name, nlen, value, vlen) < 0) chi_line_lost(res->w, name);
}

/* Writes the buffered access log. A log that cannot take it (a full
   non-blocking pipe, a closed descriptor) loses those lines rather than
   stall the worker, and the logger says how many bytes. */
static void chi_log_flush(chi_worker *w)
{
    if (chi_os_write_all(w->log_fd, w->log.ptr, w->log.len) < 0)
        chi_log(w, CH_LOG_WARN, CH_LOGITEM_SUPPRESSED, "the access log could not take %lu bytes: left out",
                (unsigned long)w->log.len);
    w->log.len = 0;
}

/* >>counters ------------------------------------------------------------------
   What /metrics reports (>>metrics), counted where it happens. Each worker
   writes only its own chi_metrics; a reader on another worker sums them
   all. The stores and loads are "relaxed" atomics wherever the compiler
   says 64-bit atomics are lock-free (__GCC_ATOMIC_LLONG_LOCK_FREE == 2, gcc
   and clang): on a 64-bit CPU a plain load and store; on 32-bit x86 (i586
   and later) an 8-byte FPU/SSE move, on ARMv7 ldrexd/strexd. The compiler
   may neither tear nor cache them, so a reader never sees a count torn
   mid-update (tests/batteries_unit.c checks it, also built -m32). The
   counters are 8-byte aligned (their block is cache-line aligned), which
   those moves need. Elsewhere (no GNU C, or a CPU without lock-free 64-bit
   atomics, where __atomic would need libatomic) they are volatile accesses
   and a read may be torn.
   Also here: the slots where middleware keeps per-worker state. */

#if (defined(__GNUC__) || defined(__clang__)) && defined(__GCC_ATOMIC_LLONG_LOCK_FREE) && \
    __GCC_ATOMIC_LLONG_LOCK_FREE == 2
#define CHI_STAT_ATOMIC 1     /* tests check which way was compiled */
static void chi_stat_add(uint64_t *c, uint64_t n)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}
#ifndef CHOPIN_NO_METRICS
static uint64_t chi_stat_read(const uint64_t *c) { return __atomic_load_n(c, __ATOMIC_RELAXED); }
#endif
#else
#define CHI_STAT_ATOMIC 0
static void chi_stat_add(uint64_t *c, uint64_t n) { *(volatile uint64_t *)c += n; }
#ifndef CHOPIN_NO_METRICS
static uint64_t chi_stat_read(const uint64_t *c) { return *(const volatile uint64_t *)c; }
#endif
#endif

/* Upper bounds of the duration histogram, in nanoseconds and as text. */
static const int64_t chi_hist_ns[CHI_HIST_BUCKETS] = {100000, 250000, 500000, 1000000, 2500000, 5000000,
                                                       10000000, 25000000, 50000000, 100000000, 500000000,
                                                       1000000000};
static const char *const chi_hist_le[CHI_HIST_BUCKETS] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                                                          "0.01", "0.025", "0.05", "0.1", "0.5", "1"};
static const int chi_refusal_status[CHI_REFUSAL_KINDS - 1] = {400, 408, 413, 414, 417, 431, 501, 505};

static void chi_count_request(chi_worker *w, int status, size_t bytes, int64_t ns)
{
    chi_metrics *m = w->metrics;
    unsigned slot = (unsigned)status - CHI_STATUS_MIN; /* below the range: wraps, so one compare */
    int b = 0;
    if (!m) return;
    if (slot < CHI_STATUS_SLOTS) chi_stat_add(&m->by_status[slot], 1);
    chi_stat_add(&m->bytes_out, bytes);
    ns = ns < 0 ? 0 : ns;
    while (b < CHI_HIST_BUCKETS && ns > chi_hist_ns[b]) b++; /* most answers: the first bound */
    chi_stat_add(&m->hist[b], 1);
    chi_stat_add(&m->dur_sum_ns, (uint64_t)ns);
}

static void chi_count_refusal(chi_worker *w, int status)
{
    int k = 0;
    if (!w->metrics) return;
    while (k < CHI_REFUSAL_KINDS - 1 && chi_refusal_status[k] != status) k++;
    chi_stat_add(&w->metrics->refused[k], 1);
}

static void chi_count(chi_worker *w, size_t field_offset, uint64_t n)
{
    if (w->metrics) chi_stat_add((uint64_t *)(void *)((char *)w->metrics + field_offset), n);
}
#define CHI_COUNT(w, field, n) chi_count((w), offsetof(chi_metrics, field), (n))

/* The state a middleware keeps per worker (a CORS cache, a rate table)
   starts with this header, so the worker can free it at the end. */
typedef struct chi_slot {
    void (*free_fn)(void *state);
} chi_slot;

#if !defined(CHOPIN_NO_CORS) || !defined(CHOPIN_NO_RATELIMIT)
/* The worker's state for slot i, or NULL if none yet. */
static void *chi_slot_get(chi_worker *w, int i) { return w->slots[i]; }

/* Installs state for slot i (state starts with a chi_slot). */
static void chi_slot_set(chi_worker *w, int i, void *state) { w->slots[i] = state; }

/* A new slot for a registration; -1 (and the app's error) past CHI_MAX_SLOTS. */
static int chi_slot_new(ch_app *app, const char *what)
{
    if (app->nslots >= CHI_MAX_SLOTS) {
        chi_reg_error(app, "too many CORS and rate limit registrations", what);
        return -1;
    }
    return app->nslots++;
}
#endif

static void chi_slots_free(chi_worker *w)
{
    int i;
    for (i = 0; i < w->app->nslots; i++)
        if (w->slots[i]) ((chi_slot *)w->slots[i])->free_fn(w->slots[i]);
    memset(w->slots, 0, sizeof w->slots);
}

/* >>client --------------------------------------------------------------------
   Who the client is. The peer address, unless the peer is one of the
   trusted proxies (ch_config.trust_proxy): then the client X-Forwarded-For
   names (all its lines as one list, read from the right, skipping our own
   proxies), else X-Real-IP (when sent exactly once), else the peer. A
   PROXY header (>>connection) has already replaced the peer with the
   address it states. */

#ifndef CHOPIN_NO_PROXY
/* The client a trusted proxy names, else the proxy itself. Out of line:
   most servers trust no proxy, and their callers stay small. */
static chi_peer chi_client_behind_proxy(const ch_req *req, const chi_peer *peer)
{
    const chi_worker *w = (const chi_worker *)req->worker;
    chi_peer out;
    /* the first-line look-ups are array reads: the walks run only when
       the request has such a line */
    if (!chi_nets_match(w->app->trusted, w->app->ntrusted, peer)) return *peer;
    if (ch_req_common(req, CH_H_X_FORWARDED_FOR).ptr &&
        chi_xff_client_lines(req->headers, req->header_count, w->app->trusted, w->app->ntrusted, &out) == 0)
        return out;
    if (ch_req_common(req, CH_H_X_REAL_IP).ptr && chi_real_ip_client(req->headers, req->header_count, &out) == 0)
        return out;
    return *peer;
}
#endif

static inline chi_peer chi_client_peer(const ch_req *req)
{
    const chi_worker *w = (const chi_worker *)req->worker;
    const chi_peer *peer = (const chi_peer *)req->conn;
    chi_peer out;
    if (!peer) {
        memset(&out, 0, sizeof out);
        return out;
    }
#ifndef CHOPIN_NO_PROXY
    if (w && w->app->ntrusted) return chi_client_behind_proxy(req, peer);
#else
    (void)w;
#endif
    return *peer;
}

CHOPIN_API size_t ch_req_client_addr(const ch_req *req, char *out, size_t cap)
{
    chi_peer p = chi_client_peer(req);
    return chi_os_peer_text(&p, out, cap);
}

/* >>answers -------------------------------------------------------------------
   Writing answers into the worker's output buffer (w->out), which leaves in
   one send per read batch. Every head comes from the core's one writer,
   chi_head_put, with this worker's "Server/Date" lines: per request for
   routed answers and errors, once at start-up for FastRoutes, whose bytes
   are then copied (the Date patched in once a second). */

static chi_head_spec chi_spec(const chi_worker *w, int status, int keep_alive, int minor)
{
    chi_head_spec h;
    memset(&h, 0, sizeof h);
    h.status = status;
    h.keep_alive = keep_alive;
    h.minor = minor;
    h.common = w->common;
    h.common_len = CHI_COMMON_LEN;
    h.framing = CHI_FRAME_LENGTH;
    if (status == 200 && w->ok_lead[0]) { /* built by chi_worker_init (a test's hand-made worker may lack it) */
        h.lead = w->ok_lead;
        h.lead_len = sizeof w->ok_lead;
    }
    return h;
}

/* Lays out the worker's leads for 200 answers with the one head writer,
   once at start-up (the Date is patched in with the others): the status
   and common lines; and for the usual routed answer (ch_res_json) the
   same with the JSON Content-Type line, then, as a dynamic FastRoute's
   head, "Content-Length: " for HTTP/1.1 keep-alive. */
static void chi_build_ok_lead(chi_worker *w)
{
    chi_head_spec h;
    char tmp[CHI_OK_JSON_OPEN_LEN + 256]; /* chi_head_size's room, more than the lead */
    memset(&h, 0, sizeof h);
    h.status = 200;
    h.keep_alive = 1;
    h.minor = 1;
    h.common = w->common;
    h.common_len = CHI_COMMON_LEN;
    h.framing = CHI_FRAME_LEAD;
    chi_head_put(tmp, &h);
    memcpy(w->ok_lead, tmp, sizeof w->ok_lead);
    h.ctype = "application/json";
    h.ctype_len = 16;
    h.framing = CHI_FRAME_LENGTH_OPEN;
    chi_head_put(tmp, &h);
    memcpy(w->ok_json, tmp, sizeof w->ok_json);
}

/* Is the type JSON's, as ch_res_json sets it? */
static int chi_is_json_type(const chi_buf *ctype)
{
    return ctype->len == 16 && chi_eq_short(ctype->ptr, "application/json", 16);
}

/* The JSON lead in place of the plain one when the type is JSON's. */
static void chi_spec_json_lead(const chi_worker *w, const ch_res *res, chi_head_spec *h)
{
    if (h->lead == w->ok_lead && chi_is_json_type(&res->ctype)) {
        h->lead = w->ok_json;
        h->lead_len = CHI_OK_JSON_LEAD_LEN;
        h->lead_has_ctype = 1;
    }
}

/* The usual routed answer: 200, JSON, HTTP/1.1 keep-alive, GET. The
   worker's pre-built head (chi_build_ok_lead), the length, the body: what a
   dynamic FastRoute writes; with the handler's header lines (`extra`) in
   their place, after the Content-Type line, as the one head writer lays
   them out. -1: out of memory. */
static int chi_write_ok_json(chi_worker *w, const char *extra, size_t extra_len, const char *body, size_t n)
{
    char *p;
    if (chi_buf_reserve(&w->out, CHI_OK_JSON_OPEN_LEN + extra_len + 24 + n) < 0) {
        w->out_failed = 1;
        return -1;
    }
    p = w->out.ptr + w->out.len;
    memcpy(p, w->ok_json, CHI_OK_JSON_LEAD_LEN);
    p = chi_put(p + CHI_OK_JSON_LEAD_LEN, extra, extra_len);
    memcpy(p, w->ok_json + CHI_OK_JSON_LEAD_LEN, CHI_OK_JSON_OPEN_LEN - CHI_OK_JSON_LEAD_LEN);
    p += CHI_OK_JSON_OPEN_LEN - CHI_OK_JSON_LEAD_LEN;
    p = chi_head_length_end(p, n);
    if (n >= 8 && n <= 16) { /* the usual small body: two words, no call */
        uint64_t a = chi_load8(body), b = chi_load8(body + n - 8);
        memcpy(p, &a, 8);
        memcpy(p + n - 8, &b, 8);
        p += n;
    } else {
        p = chi_put(p, body, n);
    }
    w->out.len = (size_t)(p - w->out.ptr);
    return 0;
}

/* A head and, unless HEAD or a status without one, the body. Returns -1
   when out of memory. */
static int chi_write_response(chi_worker *w, const chi_head_spec *h, const char *body, size_t body_len, int send_body)
{
    char *p;
    if (chi_buf_reserve(&w->out, chi_head_size(h) + body_len) < 0) {
        w->out_failed = 1; /* the connection closes rather than skip an answer */
        return -1;
    }
    p = chi_head_put(w->out.ptr + w->out.len, h);
    if (send_body && chi_status_has_body(h->status)) p = chi_put(p, body, body_len);
    w->out.len = (size_t)(p - w->out.ptr);
    return 0;
}

/* An error answer: {"detail":"<reason>"} as JSON, with `extra` headers. */
static void chi_write_error(chi_worker *w, int status, const char *extra, size_t extra_len, int send_body,
                            int keep_alive, int minor)
{
    char body[CHI_ERROR_BODY_MAX];
    chi_head_spec h = chi_spec(w, status, keep_alive, minor);
    h.ctype = "application/json";
    h.ctype_len = 16;
    h.extra = extra;
    h.extra_len = extra_len;
    h.length = chi_error_body(status, body);
    chi_write_response(w, &h, body, (size_t)h.length, send_body);
}

/* After a batch is written: a buffer that grew past the high-water mark
   for one huge answer (a 50 MB body, a huge JSON document) is given back
   rather than kept for the worker's lifetime (issue 9, bug 6). */
static void chi_release_big(chi_worker *w)
{
    if (w->out.cap > CHI_OUT_KEEP) chi_buf_free(&w->out);
    if (w->json.cap > CHI_OUT_KEEP) ch_json_free(&w->json);
    if (w->res.headers.cap > CHI_OUT_KEEP) chi_buf_free(&w->res.headers);
    if (w->decoded.cap > CHI_OUT_KEEP) chi_buf_free(&w->decoded);
}

/* "HTTP/1.1 100 Continue": the client may send the body now. */
static void chi_write_continue(chi_worker *w)
{
    chi_head_spec h;
    memset(&h, 0, sizeof h);
    h.status = 100;
    h.keep_alive = 1;
    h.minor = 1;
    h.framing = CHI_FRAME_NONE;
    chi_write_response(w, &h, NULL, 0, 0);
}

/* Builds this worker's copy of every FastRoute for HTTP/1.1 keep-alive: a
   static route's whole response, a dynamic route's head up to the
   Content-Length value. */
static int chi_build_fast(chi_worker *w)
{
    int i;
    ch_app *app = w->app;
    w->fast = (chi_fast_copy *)CHOPIN_MALLOC(sizeof *w->fast * (size_t)(app->nfast ? app->nfast : 1));
    if (!w->fast) return -1;
    for (i = 0; i < app->nfast; i++) {
        const chi_fast *f = &app->fast[i];
        chi_buf *b = &w->fast_bytes;
        w->fast_lens |= (uint64_t)1 << (f->path_len < 63 ? f->path_len : 63);
        chi_head_spec h = chi_spec(w, 200, 1, 1);
        h.ctype = f->ctype;
        h.ctype_len = strlen(f->ctype);
        h.framing = f->body ? CHI_FRAME_LENGTH : CHI_FRAME_LENGTH_OPEN;
        h.length = f->body_len;
        if (chi_buf_reserve(b, chi_head_size(&h) + f->body_len) < 0) return -1;
        w->fast[i].off = b->len;
        b->len = (size_t)(chi_head_put(b->ptr + b->len, &h) - b->ptr);
        w->fast[i].head_len = b->len - w->fast[i].off;
        if (f->body) b->len = (size_t)(chi_put(b->ptr + b->len, f->body, f->body_len) - b->ptr);
        w->fast[i].len = b->len - w->fast[i].off;
    }
    return 0;
}

/* A JSON body the writer could not finish is a 500, and the log says why
   (issue 9, bug 7). */
static void chi_json_complaint(chi_worker *w, const ch_json *j, const char *method, const char *path)
{
    if (j->failed)
        chi_log(w, CH_LOG_ERROR, CH_LOGITEM_JSON_MISUSE,
                "%s %s: the JSON writer was misused (a value without its key, a key inside an array, a second "
                "top-level value, an end without its begin) or ran out of memory: 500", method, path);
    else
        chi_log(w, CH_LOG_ERROR, CH_LOGITEM_JSON_UNFINISHED, "%s %s: the handler left %d JSON container%s open: 500",
                method, path, j->depth, j->depth == 1 ? "" : "s");
}

static void chi_fast_respond(chi_worker *w, int i, int send_body, int keep_alive, int minor)
{
    const chi_fast *f = &w->app->fast[i];
    const chi_fast_copy *fc = &w->fast[i];
    const char *bytes = w->fast_bytes.ptr + fc->off;
    const char *body = f->body;
    size_t body_len = f->body_len;
    chi_head_spec h;
    if (f->fn) {
        ch_json_reset(&w->json);
        f->fn(&w->json, f->user);
        if (w->json.failed || w->json.depth != 0) {
            chi_json_complaint(w, &w->json, "GET", f->path);
            chi_write_error(w, 500, "", 0, send_body, keep_alive, minor);
            return;
        }
        body = w->json.buf;
        body_len = w->json.len;
    }
    /* the common case, HTTP/1.1 keep-alive: copy the pre-built bytes */
    if (keep_alive && minor == 1) {
        if (!f->fn) {
            size_t n = send_body ? fc->len : fc->head_len; /* reserve + put: both inline, whatever gcc's budget */
            if (chi_buf_reserve(&w->out, n) == 0)
                w->out.len = (size_t)(chi_put(w->out.ptr + w->out.len, bytes, n) - w->out.ptr);
            else
                w->out_failed = 1;
        } else if (chi_buf_reserve(&w->out, fc->len + 24 + body_len) == 0) {
            char *p = chi_put(w->out.ptr + w->out.len, bytes, fc->len);
            p = chi_head_length_end(p, body_len);
            if (send_body) p = chi_put(p, body, body_len);
            w->out.len = (size_t)(p - w->out.ptr);
        } else {
            w->out_failed = 1;
        }
        return;
    }
    h = chi_spec(w, 200, keep_alive, minor);
    h.ctype = f->ctype;
    h.ctype_len = strlen(f->ctype);
    h.length = body_len;
    chi_write_response(w, &h, body, body_len, send_body);
}

static void chi_res_drop_file(ch_res *res)
{
    if (res->file) chi_file_release(res->w, res->file_fd);
    res->file = 0;
}

/* A file answer: the head only; >>connection sends the file after it.
   Out of line, so chi_res_finish stays as cheap as it was. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline, cold))
#endif
static void chi_res_finish_file(chi_worker *w, ch_res *res, ch_req *req, int keep_alive, int send_body)
{
    chi_head_spec h = chi_spec(w, res->status, keep_alive, req->version_minor);
    h.ctype = res->ctype.ptr;
    h.ctype_len = res->ctype.len;
    h.extra = res->headers.ptr;
    h.extra_len = res->headers.len;
    h.length = res->file_len;
    if (chi_write_response(w, &h, NULL, 0, 0) < 0) {
        chi_res_drop_file(res);
        chi_write_error(w, 500, "", 0, send_body, 0, req->version_minor);
    } else if (!send_body || !chi_status_has_body(res->status) || res->file_len == 0) {
        chi_res_drop_file(res);
    }
}

/* Says in the log why a filled response cannot be sent (it becomes a 500). */
static void chi_res_invalid(chi_worker *w, const ch_req *req, const ch_res *res)
{
    char path[128], method[CHI_MAX_METHOD_LEN + 1];
    (void)snprintf(path, sizeof path, "%.*s", (int)(req->path.len < 100 ? req->path.len : 100), req->path.ptr);
    (void)snprintf(method, sizeof method, "%.*s", (int)req->method_name.len, req->method_name.ptr);
    if (res->status < 200 || res->status > 599)
        chi_log(w, CH_LOG_ERROR, CH_LOGITEM_BAD_STATUS, "%s %s: status %d is not 200-599: 500", method, path,
                res->status);
    else
        chi_json_complaint(w, res->json, method, path);
}

/* No room for an answer: a 500 and a close. */
static void chi_res_write_failed(chi_worker *w, const ch_req *req, uint64_t length)
{
    chi_log(w, CH_LOG_ERROR, CH_LOGITEM_OUT_OF_MEMORY, "out of memory for a %lu-byte answer: a 500 and a close",
            (unsigned long)length);
    chi_write_error(w, 500, "", 0, req->method != CH_HEAD, 0, req->version_minor);
}

/* Lays out a response a handler filled (the worker's, or a deferred one's). */
static void chi_res_write(chi_worker *w, ch_res *res, ch_req *req, int keep_alive)
{
    int i, send_body = req->method != CH_HEAD;
    const ch_json *j = res->json;
    chi_head_spec h;
    for (i = 0; i < res->nfinish; i++) res->finish[i](req, res, res->finish_user[i]);
    if (res->status < 200 || res->status > 599 || (res->body_is_json && (j->failed || j->depth != 0))) {
        chi_res_drop_file(res);
        chi_res_invalid(w, req, res);
        chi_write_error(w, 500, "", 0, send_body, keep_alive, req->version_minor);
        return;
    }
    if (res->file) {
        chi_res_finish_file(w, res, req, keep_alive, send_body);
        return;
    }
    if (res->status == 200 && keep_alive && send_body && req->version_minor == 1 && w->ok_json[0] &&
        chi_is_json_type(&res->ctype)) {
        size_t n = res->body_is_json ? j->len : res->body_len;
        if (chi_write_ok_json(w, res->headers.ptr, res->headers.len, res->body_is_json ? j->buf : res->body, n) == 0)
            return;
        chi_res_write_failed(w, req, n);
        return;
    }
    h = chi_spec(w, res->status, keep_alive, req->version_minor);
    h.ctype = res->ctype.ptr;
    h.ctype_len = res->ctype.len;
    h.extra = res->headers.ptr;
    h.extra_len = res->headers.len;
    chi_spec_json_lead(w, res, &h);
    h.length = res->body_is_json ? j->len : res->body_len;
    /* HEAD: the length the handler stated (ch_res_length), else the body's;
       neither: no Content-Length (a HEAD handler that skips the body must
       not claim the body is empty) */
    if (!send_body) {
        if (res->has_length)
            h.length = res->length;
        else if (h.length == 0)
            h.framing = CHI_FRAME_NONE;
    }
    if (chi_write_response(w, &h, res->body_is_json ? j->buf : res->body, send_body ? (size_t)h.length : 0,
                           send_body) < 0)
        chi_res_write_failed(w, req, h.length);
}

static void chi_res_finish(chi_worker *w, ch_req *req, int keep_alive) { chi_res_write(w, &w->res, req, keep_alive); }

/* >>dispatch ----------------------------------------------------------------
   FastRoutes first (GET and HEAD only, no middleware). Everything else goes
   through the app's middleware, the router (404, 405 and OPTIONS are
   answered here), the route's group middleware, then the handler; the
   response is written when the chain ends. After-hooks see both kinds. */

static inline int chi_run_group_mw(ch_group *g, ch_req *req, ch_res *res)
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
    m = (int)req->method;
    if (!node->routes[m].handler && m == CH_HEAD && node->routes[CH_GET].handler) m = CH_GET;
    if (!node->routes[m].handler) {
        char allow[96];
        size_t n = chi_allow_list(node->methods | node->fast_methods, allow);
        if (m == CH_OPTIONS)
            res->status = 200;
        else
            ch_res_error(res, 405);
        chi_res_add_line(res, "Allow", 5, allow, n);
        return;
    }
    route = &node->routes[m];
    if (route->group && chi_run_group_mw(route->group, req, res) == CH_DONE) return;
    req->user = route->user;
    route->handler(req, res);
}

/* The after-hooks themselves, out of line: with metrics alone there are
   none, and the caller below then keeps fewer registers. */
CHI_OUTLINE static void chi_after_hooks(chi_worker *w, const ch_req *req)
{
    ch_app *app = w->app;
    int i;
    for (i = 0; i < app->nafter; i++) app->after[i].fn(req, &w->res, app->after[i].user);
}

/* inline where dispatch calls it: a call costs the batteries' case more
   than the two instructions the fast path pays for the caller's registers */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
static inline void chi_run_after(chi_worker *w, const ch_req *req, size_t out_before)
{
    w->res.bytes = w->out.len - out_before + (w->res.file ? (size_t)w->res.file_len : 0);
    if (w->res.end_read) /* read a moment ago by Server-Timing */
        w->res.end_read = 0;
    else
        w->res.end_ns = chi_os_now_ns();
    chi_count_request(w, w->res.status, w->res.bytes, w->res.end_ns - w->res.start_ns);
    if (w->app->nafter) chi_after_hooks(w, req);
}

static void chi_dispatch(chi_worker *w, ch_req *req, int keep_alive)
{
    ch_app *app = w->app;
    size_t out_before = w->out.len;
    int i;
    /* a path of a length no FastRoute has skips the scan (the routed case) */
    if ((req->method == CH_GET || req->method == CH_HEAD) &&
        ((w->fast_lens >> (req->path.len < 63 ? req->path.len : 63)) & 1)) {
        for (i = 0; i < app->nfast; i++) {
            const chi_fast *f = &app->fast[i];
            if (f->path_len == req->path.len && chi_eq_short(f->path, req->path.ptr, f->path_len)) {
                if (app->timed) w->res.start_ns = chi_os_now_ns();
                chi_fast_respond(w, i, req->method != CH_HEAD, keep_alive, req->version_minor);
                if (app->timed) {
                    w->res.status = 200;
                    w->res.rid_len = 0;
                    w->res.end_read = 0;
                    chi_run_after(w, req, out_before);
                }
                return;
            }
        }
    }
    chi_res_reset(&w->res);
    w->decoded_mask = 0;
    if (app->timed) w->res.start_ns = chi_os_now_ns();
    w->keep_alive = keep_alive;
    chi_route_request(w, req);
    if (w->deferring) { /* answered later (>>later), after-hooks then */
        w->deferring = 0;
        return;
    }
    chi_res_finish(w, req, keep_alive);
    if (app->timed) chi_run_after(w, req, out_before);
}

/* A request the parser refused (or one that timed out) is seen by the
   after-hooks too, so the access log has the lines an operator looks for
   (issue 9, bug 2): with its method and target when they were read, "-"
   when not. Called just after the error answer went into w->out. */
static void chi_dispatch_refusal(chi_worker *w, ch_req *req, const void *peer, int status, size_t out_before)
{
    chi_count_refusal(w, status);
    chi_log(w, CH_LOG_INFO, CH_LOGITEM_REQUEST_REFUSED, "refused a request: %d %s", status, chi_reason(status));
    if (!w->app->timed) return;
    if (!req->method_name.len) {
        req->method_name = chi_str("-", 1);
        req->method = CH_OTHER;
    }
    if (!req->target.len) req->target = chi_str("-", 1);
    req->path = req->target;
    req->query = chi_str(NULL, 0);
    req->conn = peer;
    req->ctx = NULL;
    chi_res_reset(&w->res);
    w->res.status = status;
    w->res.start_ns = chi_os_now_ns();
    chi_run_after(w, req, out_before);
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

/* The token from the cookie or query parameter the route named, decoded
   into buf; its length, or -1. */
static long chi_bearer_elsewhere(const ch_bearer *cfg, const ch_req *req, char *buf, size_t cap)
{
    long n = -1;
    if (cfg->cookie) n = ch_req_cookie(req, cfg->cookie, buf, cap);
    if (n <= 0 && cfg->query) n = ch_req_query(req, cfg->query, buf, cap);
    return n > 0 ? n : -1;
}

/* The token against the configured one, or the verify function's verdict. */
static int chi_bearer_check(const ch_bearer *cfg, const char *tok, size_t len, ch_req *req, ch_res *res)
{
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

CHOPIN_API int ch_mw_bearer(ch_req *req, ch_res *res, void *user)
{
    const ch_bearer *cfg = (const ch_bearer *)user;
    ch_str auth = ch_req_common(req, CH_H_AUTHORIZATION);
    const char *tok;
    size_t len;
    if (cfg && !auth.ptr && (cfg->cookie || cfg->query)) {
        char buf[512];
        long n = chi_bearer_elsewhere(cfg, req, buf, sizeof buf);
        return chi_bearer_check(cfg, buf, n < 0 ? 0 : (size_t)n, req, res);
    }
    if (!cfg || auth.len < 7 || !chi_ieq(auth.ptr, "bearer ", 7)) return chi_auth_fail(res, 401, "Bearer");
    tok = auth.ptr + 7;
    len = auth.len - 7;
    while (len && *tok == ' ') {
        tok++;
        len--;
    }
    return chi_bearer_check(cfg, tok, len, req, res);
}
#endif

#ifndef CHOPIN_NO_TIMING
/* "Server-Timing: app;dur=<ms>.<3 digits>\r\n", written straight into the
   response's header lines (our own bytes: no check, no second copy). */
static void chi_timing_put(ch_res *res, int64_t now)
{
    char *p;
    int64_t us = (now - res->timing_ns) / 1000;
    if (us < 0) us = 0;
    if (chi_buf_reserve(&res->headers, 64) < 0) return;
    p = chi_put(res->headers.ptr + res->headers.len, "Server-Timing: app;dur=", 23);
    p += chi_utoa((uint64_t)(us / 1000), p);
    *p++ = '.';
    *p++ = (char)('0' + us % 1000 / 100);
    *p++ = (char)('0' + us % 100 / 10);
    *p++ = (char)('0' + us % 10);
    p = chi_put(p, "\r\n", 2);
    res->headers.len = (size_t)(p - res->headers.ptr);
}

static void chi_timing_finish(ch_req *req, ch_res *res, void *user)
{
    (void)req;
    (void)user;
    chi_timing_put(res, chi_os_now_ns());
}

/* An app that reads the clock anyway (metrics, after-hooks) times from
   dispatch's read, and its after-hooks take this read as the end: one read
   at each end. */
static void chi_timing_finish_timed(ch_req *req, ch_res *res, void *user)
{
    (void)req;
    (void)user;
    res->end_ns = chi_os_now_ns();
    res->end_read = 1;
    chi_timing_put(res, res->end_ns);
}

CHOPIN_API int ch_mw_timing(ch_req *req, ch_res *res, void *user)
{
    (void)req;
    (void)user;
    if (res->w->app->timed) {
        res->timing_ns = res->start_ns;
        ch_res_on_finish(res, chi_timing_finish_timed, NULL);
    } else {
        res->timing_ns = chi_os_now_ns();
        ch_res_on_finish(res, chi_timing_finish, NULL);
    }
    return CH_NEXT;
}
#endif

#ifndef CHOPIN_NO_ACCESS_LOG
#define CHI_LOG_FLUSH ((size_t)32 * 1024)

CHOPIN_API void ch_access_log(const ch_req *req, const ch_res *res, void *user)
{
    chi_worker *w = res->w;
    char *p;
    int64_t us = (res->end_ns - res->start_ns) / 1000;
    size_t i;
    w->log_fd = user ? *(const int *)user : 1;
    if (chi_buf_reserve(&w->log, 64 + CHI_DATE_LEN + req->method_name.len + req->target.len * 3 + 64 + CHI_RID_MAX) < 0) {
        chi_log(w, CH_LOG_WARN, CH_LOGITEM_SUPPRESSED, "out of memory: an access log line left out");
        return;
    }
    p = w->log.ptr + w->log.len;
    p += ch_req_client_addr(req, p, 46);
    p = chi_put(p, " [", 2);
    p = chi_put(p, w->common + CHI_DATE_AT, CHI_DATE_LEN);
    p = chi_put(p, "] \"", 3);
    p = chi_put(p, req->method_name.ptr, req->method_name.len);
    *p++ = ' ';
    /* no space or CTL: the parser saw to it; a '"' (browsers send it) is
       written %22 so the quoted field stays one field */
    for (i = 0; i < req->target.len; i++) {
        if (req->target.ptr[i] == '"')
            p = chi_put(p, "%22", 3);
        else
            *p++ = req->target.ptr[i];
    }
    if (req->version_minor < 0) /* a refused head's unread or unknown version */
        p = chi_put(p, " -\" ", 4);
    else
        p = chi_put(p, req->version_minor ? " HTTP/1.1\" " : " HTTP/1.0\" ", 11);
    p += chi_utoa((uint64_t)res->status, p);
    *p++ = ' ';
    p += chi_utoa(res->bytes, p);
    *p++ = ' ';
    p += chi_utoa((uint64_t)(us < 0 ? 0 : us), p);
    p = chi_put(p, "us", 2);
    if (res->rid_len) {
        *p++ = ' ';
        p = chi_put(p, res->rid, res->rid_len);
    }
    *p++ = '\n';
    w->log.len = (size_t)(p - w->log.ptr);
    if (w->log.len >= CHI_LOG_FLUSH) chi_log_flush(w);
}
#endif

#ifndef CHOPIN_NO_REQUEST_ID
/* >>request id ----------------------------------------------------------------
   X-Request-Id: a client's (or a proxy's) id is kept when it is 1-64 token
   bytes, else one is made: this worker's start second, its number and a
   counter, in hex ("65f1a2b3-0-2a"), unique per process run. It goes back
   in the answer and into the access log line.
   The worker keeps its last id as a whole header line (w->rid_line,
   "X-Request-Id: <id>\r\n"), the count turned in place like an odometer:
   the usual request turns its last digit and copies the line whole. */

#define CHI_RID_AT 14         /* the id's offset in w->rid_line */

static int chi_rid_valid(ch_str v)
{
    size_t i;
    if (v.len == 0 || v.len > CHI_RID_MAX) return 0;
    for (i = 0; i < v.len; i++)
        if (!chi_is((unsigned char)v.ptr[i], CHI_TOKEN)) return 0;
    return 1;
}

static size_t chi_hex(uint64_t v, char *out)
{
    char tmp[16];
    size_t n = 0, i;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    for (i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

/* The next id, made from the last one: its hex count turned like an
   odometer (a carry moves left), with no conversion per request; a count
   that gains a digit (ff to 100) is written anew. The line's "\r\n"
   follows the id. */
static void chi_rid_make(chi_worker *w)
{
    char *id = w->rid_line + CHI_RID_AT;
    char *first = id + w->rid_prefix_len, *d = id + w->rid_last_len;
    if (!w->rid_prefix_len) { /* "<start second>-<worker>-" and a count of 0, once */
        memcpy(w->rid_line, "X-Request-Id: ", CHI_RID_AT);
        d = id;
        d += chi_hex((uint64_t)chi_os_wall_seconds() & 0xffffffffu, d);
        *d++ = '-';
        d += chi_hex((uint64_t)w->id, d);
        *d++ = '-';
        w->rid_prefix_len = (size_t)(d - id);
        first = d;
        *d++ = '0';
        w->rid_last_len = (size_t)(d - id);
        chi_put(d, "\r\n", 2);
    }
    w->rid_next++;
    while (d > first) {
        d--;
        if (*d == '9') {
            *d = 'a';
            return;
        }
        if (*d != 'f') {
            (*d)++;
            return;
        }
        *d = '0';
    }
    w->rid_last_len = w->rid_prefix_len + chi_hex(w->rid_next, first);
    chi_put(id + w->rid_last_len, "\r\n", 2);
}

/* The id into res->rid and the line into the header lines: whole
   fixed-size copies (a few wide moves, no call), of which the id's and
   the line's lengths count. Room for the line is there. */
static void chi_rid_put(chi_worker *w, ch_res *res)
{
    if (CHI_RID_AT + w->rid_last_len + 2 <= 32) { /* the first million ids or so */
        memcpy(res->rid, w->rid_line + CHI_RID_AT, 32 - CHI_RID_AT);
        memcpy(res->headers.ptr + res->headers.len, w->rid_line, 32);
    } else {
        memcpy(res->rid, w->rid_line + CHI_RID_AT, sizeof w->rid_line - CHI_RID_AT);
        memcpy(res->headers.ptr + res->headers.len, w->rid_line, sizeof w->rid_line);
    }
    res->rid_len = w->rid_last_len;
    res->headers.len += CHI_RID_AT + w->rid_last_len + 2;
}

/* A client's id, the first id, a carry, no room for the line. */
CHI_OUTLINE static int chi_rid_slow(ch_req *req, ch_res *res)
{
    chi_worker *w = res->w;
    ch_str v = ch_req_common(req, CH_H_X_REQUEST_ID);
    if (chi_rid_valid(v)) {
        memcpy(res->rid, v.ptr, v.len);
        res->rid_len = v.len;
        chi_res_add_line(res, "X-Request-Id", 12, res->rid, res->rid_len); /* token bytes: no check needed */
        return CH_NEXT;
    }
    if (chi_buf_reserve(&res->headers, sizeof w->rid_line) < 0) {
        chi_line_lost(w, "X-Request-Id");
        return CH_NEXT;
    }
    chi_rid_make(w);
    chi_rid_put(w, res);
    return CH_NEXT;
}

/* A last digit that carries (one id in 16): into the digit before it,
   here; a longer carry, or a count that gains a digit, the whole way. */
CHI_OUTLINE static int chi_rid_carry(chi_worker *w, ch_res *res, char *d)
{
    if (w->rid_last_len - w->rid_prefix_len < 2 || d[-1] == 'f') {
        chi_rid_make(w);
    } else {
        d[0] = '0';
        if (d[-1] == '9')
            d[-1] = 'a';
        else
            ++d[-1];
        w->rid_next++;
    }
    chi_rid_put(w, res);
    return CH_NEXT;
}

/* The usual request (no id of its own, a last digit that does not
   carry): the digit turned, the line copied; the rest is a tail call. */
CHOPIN_API int ch_mw_request_id(ch_req *req, ch_res *res, void *user)
{
    chi_worker *w = res->w;
    char *d = w->rid_line + CHI_RID_AT + w->rid_last_len - 1;
    (void)user;
    if (req->common[CH_H_X_REQUEST_ID] || !w->rid_prefix_len || /* the client sent one */
        res->headers.cap - res->headers.len < sizeof w->rid_line)
        return chi_rid_slow(req, res);
    if (*d == 'f') return chi_rid_carry(w, res, d); /* one id in 16 */
    if (*d == '9')
        *d = 'a';
    else
        ++*d;
    w->rid_next++;
    chi_rid_put(w, res);
    return CH_NEXT;
}
#endif

#if !defined(CHOPIN_NO_CORS) || !defined(CHOPIN_NO_RATELIMIT)
/* What ch_app_free frees for a registration; -1 when out of memory. */
static int chi_app_own(ch_app *app, void *ptr, void (*free_fn)(void *))
{
    chi_owned *o = (chi_owned *)chi_grow(app->owned, app->nowned, sizeof *o);
    if (!o) return -1;
    app->owned = o;
    o[app->nowned].ptr = ptr;
    o[app->nowned++].free_fn = free_fn;
    return 0;
}

#endif

#ifndef CHOPIN_NO_CORS
/* Appends whole header lines ("Name: value\r\n"...) as they are. */
static int chi_res_put_lines(ch_res *res, const char *lines, size_t n)
{
    return chi_buf_append(&res->headers, lines, n);
}

/* A header value given at registration: no CR, LF or other control byte. */
static int chi_value_ok(const char *v)
{
    for (; *v; v++)
        if (!chi_is((unsigned char)*v, CHI_VALUE)) return 0;
    return 1;
}

/* >>cors ------------------------------------------------------------------------
   CORS by the Fetch standard. The headers a preflight answer carries
   (methods, headers, max-age) are built once at registration; an origin's
   verdict (in the list, or by the callback) is cached per worker in a small
   direct-mapped table, with the header lines an allowed origin's answers
   carry (Access-Control-Allow-Origin, Vary, Credentials) built once: the
   origin of the worker's last request again (a page's requests, often on
   one connection) costs one compare and one fixed-size copy. A
   disallowed origin gets no CORS header at all, and the request goes on
   as if CORS were not there (the browser then refuses to show the answer
   to the page). A request without Origin gets no CORS header either, but
   Vary: Origin, so that a cache never serves it to a CORS request. */

#define CHI_CORS_CACHE 64
#define CHI_CORS_ORIGIN_MAX 128
#define CHI_CORS_LINES 224        /* 29 + an origin (< 128) + 16 + 40, rounded up */

typedef struct chi_cors {
    ch_cors cfg;
    int slot, any;
    char *origins;            /* a copy of cfg.origins */
    char *preflight;          /* "Access-Control-Allow-Methods: ...\r\n..." */
    size_t preflight_len;
} chi_cors;

typedef struct chi_cors_entry {
    uint32_t hash;
    unsigned char used;
    unsigned char len;        /* the origin's */
    unsigned char allowed;
    unsigned char lines_len;
    char origin[CHI_CORS_ORIGIN_MAX];
    char lines[CHI_CORS_LINES]; /* what an allowed origin's answers carry */
} chi_cors_entry;

typedef struct chi_cors_cache {
    chi_slot hdr;
    chi_cors_entry *last;     /* the last origin's entry, tried first */
    chi_cors_entry e[CHI_CORS_CACHE];
} chi_cors_cache;

static void chi_cors_free(void *p)
{
    chi_cors *c = (chi_cors *)p;
    CHOPIN_FREE(c->origins);
    CHOPIN_FREE(c->preflight);
    CHOPIN_FREE(c);
}

/* Is origin in the comma-separated list? (exact, as the Fetch standard
   compares serialized origins) */
static int chi_cors_listed(const char *list, const char *o, size_t n)
{
    const char *p = list;
    while (*p) {
        const char *s, *e;
        while (*p == ' ' || *p == ',') p++;
        s = p;
        while (*p && *p != ',' && *p != ' ') p++;
        e = p;
        if ((size_t)(e - s) == n && n && memcmp(s, o, n) == 0) return 1;
    }
    return 0;
}

static int chi_cors_decide(const chi_cors *c, const char *o, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) /* echoed back when allowed: only field-value bytes */
        if (!chi_is((unsigned char)o[i], CHI_VALUE)) return 0;
    if (c->any) return 1;
    if (c->cfg.allow) return c->cfg.allow(o, n, c->cfg.allow_user) != 0;
    return c->origins && chi_cors_listed(c->origins, o, n);
}

/* Access-Control-Allow-Origin (and Vary, Credentials) for an allowed
   origin, at p (room for CHI_CORS_LINES bytes); returns the end. */
static char *chi_cors_origin_lines(const chi_cors *c, char *p, ch_str o)
{
    static const char acao[] = "Access-Control-Allow-Origin: ", vary[] = "\r\nVary: Origin\r\n",
                      cred[] = "Access-Control-Allow-Credentials: true\r\n";
    if (c->any && !c->cfg.credentials) return chi_put(p, "Access-Control-Allow-Origin: *\r\n", 32);
    p = chi_put(p, acao, sizeof acao - 1);
    p = chi_put(p, o.ptr, o.len);
    p = chi_put(p, vary, sizeof vary - 1);
    if (c->cfg.credentials) p = chi_put(p, cred, sizeof cred - 1);
    return p;
}

static void chi_cache_free(void *p) { CHOPIN_FREE(p); }

/* This worker's entry for origin (shorter than CHI_CORS_ORIGIN_MAX),
   decided and built when it is not there; NULL when out of memory. */
CHI_OUTLINE static chi_cors_entry *chi_cors_entry_for(chi_worker *w, const chi_cors *c, ch_str o)
{
    chi_cors_cache *cache = (chi_cors_cache *)chi_slot_get(w, c->slot);
    uint32_t h;
    chi_cors_entry *e;
    if (!cache) {
        cache = (chi_cors_cache *)CHOPIN_MALLOC(sizeof *cache);
        if (!cache) return NULL;
        memset(cache, 0, sizeof *cache);
        cache->hdr.free_fn = chi_cache_free;
        chi_slot_set(w, c->slot, cache);
    }
    h = chi_hash(o.ptr, o.len);
    e = &cache->e[h % CHI_CORS_CACHE];
    cache->last = e;
    if (!e->used || e->len != o.len || e->hash != h || !chi_same_bytes(e->origin, o.ptr, o.len)) {
        e->used = 1;
        e->allowed = (unsigned char)chi_cors_decide(c, o.ptr, o.len);
        e->hash = h;
        e->len = (unsigned char)o.len;
        memcpy(e->origin, o.ptr, o.len);
        e->lines_len = e->allowed ? (unsigned char)(chi_cors_origin_lines(c, e->lines, o) - e->lines) : 0;
    }
    return e;
}

/* The rest of an allowed origin's request: a preflight is answered here,
   before any auth middleware; anything else gets the exposed headers. */
CHI_OUTLINE static int chi_cors_rest(const chi_cors *c, ch_req *req, ch_res *res)
{
    if (req->method == CH_OPTIONS && ch_req_header(req, "access-control-request-method").ptr) {
        if (chi_buf_append(&res->headers, c->preflight, c->preflight_len) < 0) {
            chi_line_lost(res->w, "Access-Control-Allow-Methods");
            return CH_NEXT;
        }
        res->status = 204;
        return CH_DONE;
    }
    if (c->cfg.expose) chi_res_add_line(res, "Access-Control-Expose-Headers", 29, c->cfg.expose, strlen(c->cfg.expose));
    return CH_NEXT;
}

/* Puts an entry's lines: whole fixed-size copies (a few wide moves, no
   call), of which lines_len bytes count. Room for CHI_CORS_LINES is there. */
static void chi_cors_put_entry(ch_res *res, const chi_cors_entry *e)
{
    char *p = res->headers.ptr + res->headers.len;
    if (e->lines_len <= 64)
        memcpy(p, e->lines, 64);
    else if (e->lines_len <= 128)
        memcpy(p, e->lines, 128);
    else
        memcpy(p, e->lines, CHI_CORS_LINES);
    res->headers.len += e->lines_len;
}

/* Everything but an allowed origin seen last on this worker: no Origin,
   a new or long origin, no cache yet (or no memory for one), no room. */
CHI_OUTLINE static int chi_cors_slow(const chi_cors *c, ch_req *req, ch_res *res, ch_str o)
{
    const chi_cors_entry *e;
    if (!o.ptr) { /* not a cross-origin request: no CORS header, but caches
                     must not hand this answer to one (Fetch, "CORS protocol
                     and HTTP caches": it lacks the grant a CORS request gets) */
        if (chi_res_put_lines(res, "Vary: Origin\r\n", 14) < 0) chi_line_lost(res->w, "Vary");
        return CH_NEXT;
    }
    e = o.len < CHI_CORS_ORIGIN_MAX ? chi_cors_entry_for(res->w, c, o) : NULL;
    if (e ? !e->allowed : !chi_cors_decide(c, o.ptr, o.len)) return CH_NEXT;
    if (chi_buf_reserve(&res->headers, CHI_CORS_LINES + o.len) < 0) {
        chi_line_lost(res->w, "Access-Control-Allow-Origin"); /* the browser refuses the answer: closed, not open */
        return CH_NEXT;
    }
    if (e)
        chi_cors_put_entry(res, e);
    else /* no cache entry for it (a very long origin, or out of memory): written now */
        res->headers.len = (size_t)(chi_cors_origin_lines(c, res->headers.ptr + res->headers.len, o) - res->headers.ptr);
    return chi_cors_rest(c, req, res);
}

/* The usual request: its origin is the worker's last one; every other
   case is a tail call, so this stays a few instructions. */
static int chi_mw_cors(ch_req *req, ch_res *res, void *user)
{
    const chi_cors *c = (const chi_cors *)user;
    ch_str o = ch_req_common(req, CH_H_ORIGIN);
    const chi_cors_cache *cache = (const chi_cors_cache *)chi_slot_get(res->w, c->slot);
    const chi_cors_entry *e = cache ? cache->last : NULL;
    if (!o.ptr || !e || e->len != o.len || !chi_same_bytes(e->origin, o.ptr, o.len) ||
        res->headers.cap - res->headers.len < CHI_CORS_LINES)
        return chi_cors_slow(c, req, res, o);
    if (!e->allowed) return CH_NEXT;
    chi_cors_put_entry(res, e);
    if (req->method == CH_OPTIONS || c->cfg.expose) return chi_cors_rest(c, req, res);
    return CH_NEXT;
}

static char *chi_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = (char *)CHOPIN_MALLOC(n);
    if (d) memcpy(d, s, n);
    return d;
}

CHOPIN_API int ch_use_cors(ch_app *app, const ch_cors *cfg)
{
    chi_cors *c;
    char buf[1024];
    int n;
    const char *methods, *headers;
    if (!app || !cfg || (!cfg->origins && !cfg->allow)) return app ? chi_reg_error(app, "no origins", "(cors)") : -1;
    methods = cfg->methods ? cfg->methods : "GET, HEAD, POST, PUT, PATCH, DELETE";
    headers = cfg->headers ? cfg->headers : "Authorization, Content-Type";
    if (!chi_value_ok(methods) || !chi_value_ok(headers) || (cfg->expose && !chi_value_ok(cfg->expose)))
        return chi_reg_error(app, "a CR, LF or control byte in a CORS header", "(cors)");
    n = snprintf(buf, sizeof buf, "Access-Control-Allow-Methods: %s\r\nAccess-Control-Allow-Headers: %s\r\n"
                 "Access-Control-Max-Age: %d\r\n", methods, headers, cfg->max_age > 0 ? cfg->max_age : 600);
    if (n < 0 || (size_t)n >= sizeof buf) return chi_reg_error(app, "CORS methods or headers too long", "(cors)");
    c = (chi_cors *)CHOPIN_MALLOC(sizeof *c);
    if (!c) return chi_reg_error(app, "out of memory", "(cors)");
    memset(c, 0, sizeof *c);
    c->cfg = *cfg;
    c->any = cfg->origins && strcmp(cfg->origins, "*") == 0;
    c->origins = cfg->origins ? chi_strdup(cfg->origins) : NULL;
    c->preflight = chi_strdup(buf);
    c->preflight_len = (size_t)n;
    if ((c->slot = chi_slot_new(app, "(cors)")) < 0) {
        chi_cors_free(c);
        return -1;
    }
    if ((cfg->origins && !c->origins) || !c->preflight || chi_app_own(app, c, chi_cors_free) < 0) {
        chi_cors_free(c);
        return chi_reg_error(app, "out of memory", "(cors)");
    }
    return ch_use(app, chi_mw_cors, c);
}
#endif

#ifndef CHOPIN_NO_RATELIMIT
/* >>ratelimit -------------------------------------------------------------------
   A token bucket per client (>>buckets holds them). Per worker by default:
   each worker has its own table, with no lock and no shared cache line,
   so a client is limited per worker it reaches (see ch_ratelimit in >>api
   for what that means across workers). In exact mode one table serves all
   workers behind a mutex. The 429 bodies are built once per worker and
   Retry-After value and kept.
   The fast path, a request that finds its bucket full (the usual case
   under the limit): the connection remembers its client's bucket (index
   and generation: a keep-alive connection's client does not change), the
   take is a compare and a store, and the three header lines are copied
   as built at registration. Anything else goes the whole way, out of line. */

#define CHI_RL_DEFAULT_TABLE 4096
#define CHI_RL_BODIES 64      /* Retry-After values whose 429 body is kept */
#define CHI_RL_BODY_MAX 80
#define CHI_RL_USUAL_SHORT 96 /* usual lines that fit are copied as 96 bytes */

typedef struct chi_rl {
    ch_ratelimit cfg;
    int slot;
    double burst;
    int64_t interval_ns;      /* one token, as the tables have it */
    char lines[80];           /* "X-RateLimit-Limit: N\r\nX-RateLimit-Remaining: " */
    size_t lines_len;
    /* the three lines most answers carry, a client under its limit whose
       bucket was full: built once, at registration */
    char usual[160];          /* lines (< 80) + two numbers (<= 20) + 23 */
    size_t usual_len;
    int exact;
    int cacheable;            /* the key is the peer's: a connection may keep its bucket */
    chi_mutex lock;
    chi_buckets shared;       /* exact mode */
} chi_rl;

typedef struct chi_rl_worker {
    chi_slot hdr;
    chi_buckets t;            /* per-worker mode */
    unsigned char body_len[CHI_RL_BODIES + 1];
    char body[CHI_RL_BODIES + 1][CHI_RL_BODY_MAX];
} chi_rl_worker;

static void chi_rl_free(void *p)
{
    chi_rl *rl = (chi_rl *)p;
    if (rl->exact) {
        chi_os_mutex_destroy(&rl->lock);
        chi_buckets_free(&rl->shared);
    }
    CHOPIN_FREE(rl);
}

static void chi_rl_worker_free(void *p)
{
    chi_rl_worker *s = (chi_rl_worker *)p;
    chi_buckets_free(&s->t);
    CHOPIN_FREE(s);
}

static chi_rl_worker *chi_rl_state(chi_worker *w, const chi_rl *rl)
{
    chi_rl_worker *s = (chi_rl_worker *)chi_slot_get(w, rl->slot);
    if (s) return s;
    s = (chi_rl_worker *)CHOPIN_MALLOC(sizeof *s);
    if (!s) return NULL;
    memset(s, 0, sizeof *s);
    s->hdr.free_fn = chi_rl_worker_free;
    if (!rl->exact && chi_buckets_init(&s->t, rl->cfg.table_size, rl->cfg.rate, rl->burst) < 0) {
        chi_rl_worker_free(s);
        return NULL;
    }
    chi_slot_set(w, rl->slot, s);
    return s;
}

/* The client's key: the key callback's, or the client address's bytes. */
static size_t chi_rl_key(const chi_rl *rl, const ch_req *req, char *out)
{
    chi_peer p;
    if (rl->cfg.key) {
        size_t n = rl->cfg.key(req, out, CHI_RL_KEY_MAX, rl->cfg.key_user);
        return n > CHI_RL_KEY_MAX ? CHI_RL_KEY_MAX : n;
    }
    p = chi_client_peer(req);
    p = chi_peer_plain(&p);
    out[0] = (char)p.family;
    memcpy(out + 1, p.addr, 16);
    return 17;
}

/* burst 0: a second's worth of tokens, rounded up (a rate past 2^52 is
   a whole number already). */
static double chi_rl_default_burst(double rate)
{
    double whole;
    if (rate >= 4503599627370496.0) return rate;
    whole = (double)(int64_t)rate;
    return whole < rate ? whole + 1.0 : whole;
}

static int chi_rl_exempt(const chi_rl *rl, const ch_req *req)
{
    const char *const *e;
    for (e = rl->cfg.exempt; e && *e; e++)
        if (ch_str_eq(req->path, *e)) return 1;
    return 0;
}

/* The connection this request came on, when its client is its peer (no
   key callback, no trusted proxy that could speak for several clients):
   the one whose bucket it may keep. */
static chi_conn *chi_rl_conn(const chi_rl *rl, const chi_worker *w, const ch_req *req)
{
    chi_conn *c = w->cur;
    if (!rl->cacheable || w->app->ntrusted || !c || req->conn != (const void *)&c->peer) return NULL;
    return c;
}

/* The 429 body for a Retry-After of n seconds, built once per worker. */
static ch_str chi_rl_body(chi_rl_worker *s, long n, char *tmp)
{
    char *b = n <= CHI_RL_BODIES ? s->body[n] : tmp;
    int len;
    if (n <= CHI_RL_BODIES && s->body_len[n]) return chi_str(b, s->body_len[n]);
    len = snprintf(b, CHI_RL_BODY_MAX, "{\"detail\":\"Too Many Requests\",\"retry_after\":%ld}", n);
    if (n <= CHI_RL_BODIES) s->body_len[n] = (unsigned char)len;
    return chi_str(b, (size_t)len);
}

static void chi_rl_num_header(ch_res *res, const char *name, size_t nlen, long v)
{
    char d[24];
    chi_res_add_line(res, name, nlen, d, chi_itoa(v, d));
}

/* "X-RateLimit-Limit: N\r\nX-RateLimit-Remaining: R\r\nX-RateLimit-Reset: S\r\n"
   at p (room for lines_len + 64 bytes); returns the end. */
static char *chi_rl_lines(const chi_rl *rl, char *p, long remaining, long reset)
{
    static const char reset_name[] = "\r\nX-RateLimit-Reset: ";
    p = chi_put(p, rl->lines, rl->lines_len);
    p += chi_itoa(remaining, p);
    p = chi_put(p, reset_name, sizeof reset_name - 1);
    p += chi_itoa(reset, p);
    return chi_put(p, "\r\n", 2);
}

/* The connection's bucket, still its client's and full: a token taken,
   the usual lines put (whole fixed-size copies, a few wide moves, no call,
   of which usual_len bytes count). 0 when that is not the case. No call,
   so the middleware that inlines it keeps no registers. */
static inline int chi_rl_take_cached(const chi_rl *rl, chi_rl_worker *s, const ch_req *req, ch_res *res, int64_t now)
{
    const chi_conn *c = res->w->cur;
    chi_bucket *b;
    char *p;
    if (!s || !c || c->rl_table != (const void *)&s->t || req->conn != (const void *)&c->peer ||
        res->headers.cap - res->headers.len < sizeof rl->usual)
        return 0;
    b = &s->t.e[c->rl_bucket];
    if (b->gen != c->rl_gen || b->full_at > now) return 0;
    b->full_at = now + s->t.interval_ns;
    chi_lru_touch(&s->t, c->rl_bucket);
    p = res->headers.ptr + res->headers.len;
    if (rl->usual_len <= CHI_RL_USUAL_SHORT)
        memcpy(p, rl->usual, CHI_RL_USUAL_SHORT);
    else
        memcpy(p, rl->usual, sizeof rl->usual);
    res->headers.len += rl->usual_len;
    return 1;
}

/* The whole way: the key, the table (locked in exact mode), any take. */
CHI_OUTLINE static int chi_rl_full(chi_rl *rl, chi_rl_worker *s, ch_req *req, ch_res *res, int64_t now)
{
    chi_buckets *t = rl->exact ? &rl->shared : &s->t;
    chi_conn *c = rl->exact ? NULL : chi_rl_conn(rl, res->w, req);
    chi_bucket *b;
    chi_take tk;
    if (c && c->rl_table == (const void *)t && t->e[c->rl_bucket].gen == c->rl_gen) {
        /* the connection's bucket, still its client's (a busy client,
           whose bucket is not full): no key to build or look up */
        b = &t->e[c->rl_bucket];
        chi_lru_touch(t, c->rl_bucket);
        tk = chi_bucket_take(t, b, now);
    } else {
        char key[CHI_RL_KEY_MAX];
        size_t klen = chi_rl_key(rl, req, key);
        if (rl->exact) chi_os_lock(&rl->lock);
        b = chi_buckets_get(t, key, klen, now);
        tk = chi_bucket_take(t, b, now);
        if (rl->exact) chi_os_unlock(&rl->lock);
    }
    if (c) { /* this connection's next requests find it */
        c->rl_table = t;
        c->rl_bucket = (int)(b - t->e);
        c->rl_gen = b->gen;
    }
    if (chi_buf_reserve(&res->headers, rl->lines_len + 64) == 0)
        res->headers.len = (size_t)(chi_rl_lines(rl, res->headers.ptr + res->headers.len, tk.remaining, tk.reset) -
                                    res->headers.ptr);
    else
        chi_line_lost(res->w, "X-RateLimit-Limit");
    if (tk.allowed) return CH_NEXT;
    {
        char tmp[CHI_RL_BODY_MAX];
        ch_str body = chi_rl_body(s, tk.retry_after, tmp);
        chi_rl_num_header(res, "Retry-After", 11, tk.retry_after);
        ch_res_send(res, 429, "application/json", body.ptr, body.len);
        if (body.ptr == tmp) ch_res_body(res, "application/json", body.ptr, body.len); /* copied: tmp is ours */
    }
    return CH_DONE;
}

/* Any request the fast path below leaves: no clock read yet, no bucket
   kept by the connection, one that is not full. */
CHI_OUTLINE static int chi_rl_slow(chi_rl *rl, ch_req *req, ch_res *res)
{
    chi_worker *w = res->w;
    chi_rl_worker *s = (chi_rl_worker *)chi_slot_get(w, rl->slot);
    int64_t now;
    now = w->app->timed ? res->start_ns : chi_os_now_ns(); /* read at dispatch, when it was */
    if (chi_rl_take_cached(rl, s, req, res, now)) return CH_NEXT;
    if (!s && !(s = chi_rl_state(w, rl))) return CH_NEXT; /* out of memory: let it through rather than refuse everyone */
    return chi_rl_full(rl, s, req, res, now);
}

/* The usual request: the clock read at dispatch (metrics or an access
   log), the connection's bucket full; anything else is a tail call. */
static int chi_mw_ratelimit(ch_req *req, ch_res *res, void *user)
{
    chi_rl *rl = (chi_rl *)user;
    chi_worker *w = res->w;
    if (w->app->timed &&
        chi_rl_take_cached(rl, (chi_rl_worker *)chi_slot_get(w, rl->slot), req, res, res->start_ns))
        return CH_NEXT;
    return chi_rl_slow(rl, req, res);
}

/* The same with exempt paths, which are looked at first. */
static int chi_mw_ratelimit_exempt(ch_req *req, ch_res *res, void *user)
{
    if (chi_rl_exempt((const chi_rl *)user, req)) return CH_NEXT;
    return chi_mw_ratelimit(req, res, user);
}

CHOPIN_API int ch_use_ratelimit(ch_app *app, ch_group *g, const ch_ratelimit *cfg)
{
    chi_rl *rl;
    chi_buckets probe;
    ch_middleware mw;
    if (!app) return -1;
    if (!cfg || !(cfg->rate > 0) || cfg->burst < 0 || cfg->table_size < 0)
        return chi_reg_error(app, "rate must be > 0, burst and table_size >= 0", "(ratelimit)");
    rl = (chi_rl *)CHOPIN_MALLOC(sizeof *rl);
    if (!rl) return chi_reg_error(app, "out of memory", "(ratelimit)");
    memset(rl, 0, sizeof *rl);
    rl->cfg = *cfg;
    if (!rl->cfg.table_size) rl->cfg.table_size = CHI_RL_DEFAULT_TABLE;
    rl->interval_ns = chi_rate_interval(cfg->rate);
    rl->burst = cfg->burst ? (double)cfg->burst : chi_rl_default_burst(cfg->rate);
    rl->lines_len = (size_t)snprintf(rl->lines, sizeof rl->lines, "X-RateLimit-Limit: %.0f\r\nX-RateLimit-Remaining: ",
                                     rl->burst);
    /* a table of one key tells whether burst * interval fits */
    if (rl->lines_len >= sizeof rl->lines || chi_buckets_init(&probe, 1, cfg->rate, rl->burst) < 0) {
        CHOPIN_FREE(rl);
        return chi_reg_error(app, "rate or burst too large", "(ratelimit)");
    }
    chi_buckets_free(&probe);
    /* a take from a full bucket leaves burst - 1 tokens, refilled in one interval */
    rl->usual_len = (size_t)(chi_rl_lines(rl, rl->usual, (long)(rl->burst - 1.0), chi_ceil_sec_ns(rl->interval_ns)) -
                             rl->usual);
    rl->cacheable = !cfg->key;
    if ((rl->slot = chi_slot_new(app, "(ratelimit)")) < 0) {
        CHOPIN_FREE(rl);
        return -1;
    }
    if (cfg->exact) {
        if (chi_buckets_init(&rl->shared, rl->cfg.table_size, cfg->rate, rl->burst) < 0) {
            CHOPIN_FREE(rl);
            return chi_reg_error(app, "out of memory", "(ratelimit)");
        }
        if (chi_os_mutex_init(&rl->lock) < 0) {
            chi_buckets_free(&rl->shared);
            CHOPIN_FREE(rl);
            return chi_reg_error(app, "cannot make a mutex", "(ratelimit)");
        }
        rl->exact = 1;
    }
    if (chi_app_own(app, rl, chi_rl_free) < 0) {
        chi_rl_free(rl);
        return chi_reg_error(app, "out of memory", "(ratelimit)");
    }
    mw = cfg->exempt ? chi_mw_ratelimit_exempt : chi_mw_ratelimit;
    return g ? ch_group_use(g, mw, rl) : ch_use(app, mw, rl);
}
#endif

#ifndef CHOPIN_NO_METRICS
/* >>metrics ---------------------------------------------------------------------
   The Prometheus text exposition format (version 0.0.4), summed over every
   worker's counters (>>counters) at the moment of the request. */

static void chi_prom(ch_json *j, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0) chi_json_raw(j, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void chi_metrics_sum(const ch_app *app, chi_metrics *sum)
{
    const uint64_t *src;
    uint64_t *dst = (uint64_t *)(void *)sum;
    size_t k, words = sizeof *sum / sizeof(uint64_t);
    int i;
    memset(sum, 0, sizeof *sum);
    for (i = 0; i < app->nmetrics; i++) {
        src = (const uint64_t *)(const void *)&app->metrics[i];
        for (k = 0; k < words; k++) dst[k] += chi_stat_read(&src[k]);
    }
}

static void chi_metrics_handler(ch_req *req, ch_res *res)
{
    chi_metrics m;
    ch_json *j = res->json;
    uint64_t cum = 0, count = 0;
    int i;
    (void)req;
    chi_metrics_sum(res->w->app, &m);
    ch_json_reset(j);
    chi_prom(j, "# HELP chopin_requests_total Requests answered, by status code.\n"
                "# TYPE chopin_requests_total counter\n");
    for (i = 0; i < CHI_STATUS_SLOTS; i++)
        if (m.by_status[i] || i + CHI_STATUS_MIN == 200)
            chi_prom(j, "chopin_requests_total{code=\"%d\"} %llu\n", i + CHI_STATUS_MIN,
                     (unsigned long long)m.by_status[i]);
    chi_prom(j, "# HELP chopin_request_duration_seconds Time from dispatch to the answer in the output.\n"
                "# TYPE chopin_request_duration_seconds histogram\n");
    for (i = 0; i <= CHI_HIST_BUCKETS; i++) count += m.hist[i];
    for (i = 0; i < CHI_HIST_BUCKETS; i++) {
        cum += m.hist[i];
        chi_prom(j, "chopin_request_duration_seconds_bucket{le=\"%s\"} %llu\n", chi_hist_le[i], (unsigned long long)cum);
    }
    chi_prom(j, "chopin_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)count);
    chi_prom(j, "chopin_request_duration_seconds_sum %.9f\n", (double)m.dur_sum_ns / 1e9);
    chi_prom(j, "chopin_request_duration_seconds_count %llu\n", (unsigned long long)count);
    /* the counters are read one after another while workers run: a
       connection opened and closed between the two reads must not make
       the gauge wrap round to 2^64 - 1 */
    chi_prom(j, "# HELP chopin_connections_open Connections open now.\n# TYPE chopin_connections_open gauge\n"
                "chopin_connections_open %llu\n",
             (unsigned long long)(m.conns_opened > m.conns_closed ? m.conns_opened - m.conns_closed : 0));
    chi_prom(j, "# HELP chopin_connections_total Connections accepted.\n# TYPE chopin_connections_total counter\n"
                "chopin_connections_total %llu\n", (unsigned long long)m.conns_opened);
    chi_prom(j, "# HELP chopin_received_bytes_total Bytes read from clients.\n"
                "# TYPE chopin_received_bytes_total counter\nchopin_received_bytes_total %llu\n",
             (unsigned long long)m.bytes_in);
    chi_prom(j, "# HELP chopin_sent_bytes_total Bytes of answers (heads and bodies).\n"
                "# TYPE chopin_sent_bytes_total counter\nchopin_sent_bytes_total %llu\n",
             (unsigned long long)m.bytes_out);
    chi_prom(j, "# HELP chopin_refused_requests_total Requests the parser refused, by status.\n"
                "# TYPE chopin_refused_requests_total counter\n");
    for (i = 0; i < CHI_REFUSAL_KINDS; i++)
        if (m.refused[i])
            chi_prom(j, i < CHI_REFUSAL_KINDS - 1 ? "chopin_refused_requests_total{code=\"%d\"} %llu\n"
                                                  : "chopin_refused_requests_total{code=\"other\"} %llu\n",
                     i < CHI_REFUSAL_KINDS - 1 ? chi_refusal_status[i] : 0, (unsigned long long)m.refused[i]);
    chi_prom(j, "# HELP chopin_timeouts_total Connections closed by a timeout.\n# TYPE chopin_timeouts_total counter\n"
                "chopin_timeouts_total %llu\n", (unsigned long long)m.timeouts);
    res->status = 200;
    /* the exposition format's type as issue 9 names it; the text is ASCII
       (names, numbers, status codes), so no charset is needed */
    chi_res_default_ctype(res, "text/plain; version=0.0.4", 25);
    res->body_is_json = 1;
}

CHOPIN_API int ch_metrics_route(ch_app *app, const char *path)
{
    if (!app) return -1;
    app->metrics_on = 1;
    app->timed = 1;
    return ch_get(app, path ? path : "/metrics", chi_metrics_handler, NULL);
}
#endif

/* >>batteries -------------------------------------------------------------------
   What the parts above need once the configuration is known (ch_listen):
   the log level, the trusted proxies, one cache-line aligned chi_metrics
   per worker; and what ch_app_free gives back. */

static int chi_batteries_prepare(ch_app *app)
{
    const char *bad = "";
    app->log_level = app->cfg.log_level;
#ifdef CHOPIN_NO_PROXY
    if (app->cfg.trust_proxy) {
        chi_set_error(app, "trust_proxy: this build has CHOPIN_NO_PROXY");
        return -1;
    }
    (void)bad;
#else
    if (app->cfg.trust_proxy) {
        app->ntrusted = chi_nets_parse(app->cfg.trust_proxy, app->trusted, CHI_MAX_TRUSTED, &bad);
        if (app->ntrusted < 0) {
            app->ntrusted = 0;
            chi_set_error(app, "invalid trust_proxy near '%.40s': expected addresses or networks (10.0.0.0/8), "
                          "at most %d", bad, CHI_MAX_TRUSTED);
            return -1;
        }
    }
#endif
    if (app->metrics_on && !app->metrics) {
        size_t size = sizeof(chi_metrics) * (size_t)app->cfg.workers + CHI_CACHE_LINE;
        app->metrics_mem = CHOPIN_MALLOC(size);
        if (!app->metrics_mem) {
            chi_set_error(app, "out of memory");
            return -1;
        }
        memset(app->metrics_mem, 0, size);
        /* each worker's counters on cache lines of their own */
        app->metrics = (chi_metrics *)(void *)((char *)app->metrics_mem +
                                               (CHI_CACHE_LINE - (uintptr_t)app->metrics_mem % CHI_CACHE_LINE) %
                                                   CHI_CACHE_LINE);
        app->nmetrics = app->cfg.workers;
    }
    return 0;
}

static void chi_batteries_free(ch_app *app)
{
    int i;
    for (i = 0; i < app->nowned; i++) app->owned[i].free_fn(app->owned[i].ptr);
    CHOPIN_FREE(app->owned);
    app->owned = NULL;
    app->nowned = 0;
    CHOPIN_FREE(app->metrics_mem);
    app->metrics_mem = NULL;
    app->metrics = NULL;
}

/* >>static ------------------------------------------------------------------
   Files as responses. ch_static mounts a directory under a URL prefix as a
   GET/HEAD route with a wildcard; ch_res_file answers one request with one
   file. Either way the handler only opens and stats: the response carries
   the open descriptor, its head is written like any other, and the body
   leaves through sendfile from >>connection, resumed on writability, never
   read into memory (HEAD closes the file after the head). The path is
   cleaned (>>paths) and opened beneath the root without following a
   symlink (>>os); validators, preconditions and Range come from >>ranges. */

/* Rare paths stay out of line, so the request loop they hang from
   (chi_process, chi_res_finish) keeps its registers: `make cost` measures it. */
#if defined(__GNUC__) || defined(__clang__)
#define CHI_COLD __attribute__((noinline))
#else
#define CHI_COLD
#endif

#define CHI_DEFAULT_STREAM_MAX ((uint64_t)1 << 30) /* ch_route_stream's max_body 0 */
#define CHI_SENDFILE_CHUNK ((size_t)1024 * 1024)  /* per writable event: fair to the others */
#define CHI_STATIC_PARAM "chi_path"                 /* the mount's wildcard */

struct chi_mount {
    int root_fd;
    char index[64];
    char cache_control[128];
    int precompressed, dotfiles, file_cache;
    struct chi_mount *next;
};

struct chi_mime_entry {
    char ext[CHI_MIME_EXT_MAX + 1];
    const char *type;
};

CHOPIN_API int ch_mime_set(ch_app *app, const char *ext, const char *type)
{
    char e[CHI_MIME_EXT_MAX + 1];
    struct chi_mime_entry *m;
    int i;
    if (!ext || !type || chi_mime_ext(ext, strlen(ext), e) < 0) return chi_reg_error(app, "bad extension", "(mime)");
    for (i = 0; i < app->nmime; i++)
        if (strcmp(app->mime[i].ext, e) == 0) {
            app->mime[i].type = type;
            return 0;
        }
    m = (struct chi_mime_entry *)chi_grow(app->mime, app->nmime, sizeof *m);
    if (!m) return chi_reg_error(app, "out of memory", "(mime)");
    app->mime = m;
    memcpy(m[app->nmime].ext, e, sizeof e);
    m[app->nmime++].type = type;
    return 0;
}

#ifndef CHOPIN_NO_STATIC
/* The app's own entries first, then the built-in table. */
static const char *chi_app_mime(const ch_app *app, const char *name)
{
    char e[CHI_MIME_EXT_MAX + 1];
    int i;
    if (chi_mime_ext(name, strlen(name), e) == 0)
        for (i = 0; i < app->nmime; i++)
            if (strcmp(app->mime[i].ext, e) == 0) return app->mime[i].type;
    return ch_mime_type(name);
}

#endif /* CHOPIN_NO_STATIC */

static void chi_files_free(ch_app *app)
{
    while (app->mounts) {
        struct chi_mount *m = app->mounts;
        app->mounts = m->next;
        chi_os_close(m->root_fd);
        CHOPIN_FREE(m);
    }
    CHOPIN_FREE(app->mime);
    app->mime = NULL;
    app->nmime = 0;
}

/* The open-file cache: a worker's table of CHOPIN_FILE_CACHE_SLOTS entries,
   one per hash of (mount, path), each a file opened beneath the mount's
   root with its stat, or the memory that a .br/.gz sibling is absent.
   Entries are checked by the worker's clock second (w->now, read once a
   tick, so no clock read per use): within the second of its last check an
   entry is used as it is; in a later second a file's entry is checked
   against the path's current stat (fstatat, a final symlink not followed)
   and kept if unchanged, and an absence is looked up again. This is safe
   because the descriptor was opened beneath the root without following
   symlinks: a file swapped for a symlink within that second can only serve
   the old inode, never what the link names. Its descriptor is lent to the
   answers that send it (refs), so it closes only once none uses it: an
   entry in use is not replaced, the new file is then opened uncached. */
#ifndef CHOPIN_FILE_CACHE_SLOTS
#define CHOPIN_FILE_CACHE_SLOTS 64
#endif
#define CHI_FCACHE_PATH 112 /* longer paths are not cached */
#if !defined(CHOPIN_NO_STATIC) && !defined(CHOPIN_NO_FILE_CACHE)
#define CHI_FILE_CACHE 1
#else
#define CHI_FILE_CACHE 0
#endif

enum { CHI_FC_EMPTY, CHI_FC_FILE, CHI_FC_ABSENT };

typedef struct chi_fcache_ent {
    const void *mount;
    int state;               /* CHI_FC_* */
    int fd;                  /* CHI_FC_FILE: the descriptor */
    int refs;                /* answers sending it now */
    int64_t checked_s;       /* the worker's second (w->now) of the last check */
    chi_file_info fi;
    size_t len;
    char path[CHI_FCACHE_PATH];
} chi_fcache_ent;

struct chi_fcache {
    chi_fcache_ent e[CHOPIN_FILE_CACHE_SLOTS];
};

/* A file body's descriptor is done with: a cached one goes back to its
   entry, any other closes. */
static void chi_file_release(chi_worker *w, int fd)
{
#if CHI_FILE_CACHE
    if (w && w->fcache) {
        int i;
        for (i = 0; i < CHOPIN_FILE_CACHE_SLOTS; i++) {
            chi_fcache_ent *e = &w->fcache->e[i];
            if (e->state == CHI_FC_FILE && e->fd == fd) {
                e->refs--;
                return;
            }
        }
    }
#else
    (void)w;
#endif
    chi_os_close(fd);
}

#if CHI_FILE_CACHE
static void chi_fcache_clear(chi_fcache_ent *e)
{
    if (e->state == CHI_FC_FILE) chi_os_close(e->fd);
    e->state = CHI_FC_EMPTY;
}

/* The worker stops: every descriptor closes (its connections are gone). */
static void chi_fcache_free(chi_worker *w)
{
    int i;
    if (!w->fcache) return;
    for (i = 0; i < CHOPIN_FILE_CACHE_SLOTS; i++) chi_fcache_clear(&w->fcache->e[i]);
    CHOPIN_FREE(w->fcache);
    w->fcache = NULL;
}

static chi_fcache_ent *chi_fcache_slot(chi_worker *w, const void *mount, const char *rel, size_t n)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)mount;
    size_t i;
    if (!w->fcache) {
        w->fcache = (struct chi_fcache *)CHOPIN_MALLOC(sizeof *w->fcache);
        if (!w->fcache) return NULL;
        memset(w->fcache, 0, sizeof *w->fcache);
    }
    for (i = 0; i < n; i++) h = (h ^ (unsigned char)rel[i]) * 1099511628211ULL;
    return &w->fcache->e[h % CHOPIN_FILE_CACHE_SLOTS];
}

static int chi_same_file(const chi_file_info *a, const chi_file_info *b)
{
    return a->ino == b->ino && a->dev == b->dev && a->size == b->size && a->mtime_ns == b->mtime_ns && b->is_reg;
}
#else
static void chi_fcache_free(chi_worker *w) { (void)w; }
#endif

#ifndef CHOPIN_NO_STATIC
/* Opens rel (n bytes, clean) beneath the mount's root and stats it, through
   the worker's cache unless the mount opted out. `sibling`: a .br/.gz
   whose absence may be remembered. Returns the descriptor (release it with
   chi_file_release) or CHI_FILE_NOTFOUND / CHI_FILE_FORBIDDEN. */
static int chi_mount_open(chi_worker *w, const struct chi_mount *m, const char *rel, size_t n, chi_file_info *fi,
                          int sibling)
{
    int fd;
#if CHI_FILE_CACHE
    chi_fcache_ent *e = NULL;
    if (m->file_cache != CH_NO && n > 0 && n < CHI_FCACHE_PATH && (e = chi_fcache_slot(w, m, rel, n))) {
        if (e->state != CHI_FC_EMPTY && e->mount == m && e->len == n && memcmp(e->path, rel, n) == 0) {
            chi_file_info cur;
            int fresh = e->checked_s == w->now;
            if (e->state == CHI_FC_ABSENT && fresh) return CHI_FILE_NOTFOUND;
            if (e->state == CHI_FC_FILE &&
                (fresh || (chi_os_stat_beneath(m->root_fd, rel, &cur) == 0 && chi_same_file(&e->fi, &cur)))) {
                e->checked_s = w->now;
                e->refs++;
                *fi = e->fi;
                return e->fd;
            }
        }
    }
#endif
    fd = chi_os_open_beneath(m->root_fd, rel);
    if (fd >= 0 && chi_os_file_stat(fd, fi) < 0) {
        chi_os_close(fd);
        fd = CHI_FILE_NOTFOUND;
    }
#if CHI_FILE_CACHE
    if (e && (e->state != CHI_FC_FILE || e->refs == 0)) {
        chi_fcache_clear(e);
        if (fd >= 0 && fi->is_reg) {
            e->state = CHI_FC_FILE;
            e->fd = fd;
            e->refs = 1;
            e->fi = *fi;
        } else if (fd == CHI_FILE_NOTFOUND && sibling) {
            e->state = CHI_FC_ABSENT;
        }
        if (e->state != CHI_FC_EMPTY) {
            e->mount = m;
            e->checked_s = w->now;
            e->len = n;
            memcpy(e->path, rel, n);
        }
    }
#else
    (void)w;
    (void)n;
    (void)sibling;
#endif
    return fd;
}

CHI_COLD static void chi_file_header(ch_res *res, const char *name, size_t nlen, const char *v, size_t vlen)
{
    ch_res_headern(res, name, nlen, v, vlen); /* checked, though ours: keeps chi_res_put_header's callers few */
}

/* The body of the answer is fd[first, first + len): its head goes out like
   any other, then >>connection sends the bytes. */
static void chi_res_set_file(ch_res *res, int fd, uint64_t first, uint64_t len)
{
    res->file = 1;
    res->file_fd = fd;
    res->file_off = first;
    res->file_len = len;
    res->body = NULL;
    res->body_len = 0;
    res->body_is_json = 0;
}

/* The Date this worker's responses carry now, in seconds (the one
   chi_refresh_date wrote), or -1 before the first. */
static int64_t chi_response_date(const chi_worker *w)
{
    int64_t t;
    return chi_http_date(w->common + CHI_DATE_AT, CHI_DATE_LEN, &t) == 0 ? t : -1;
}

/* What a request asks of a file beyond the file: its preconditions and
   Range. Taken from the request, or, for a response answered later (whose
   request is gone), from the copy ch_res_defer kept in the chi_later. */
enum { CHI_ASK_IF_MATCH, CHI_ASK_IF_UNMODIFIED, CHI_ASK_IF_NONE, CHI_ASK_IF_MODIFIED, CHI_ASK_IF_RANGE, CHI_ASK_RANGE,
       CHI_ASK_COUNT };
typedef struct chi_file_ask {
    ch_str v[CHI_ASK_COUNT];
    ch_method method;
} chi_file_ask;

static void chi_ask_from_req(const ch_req *req, chi_file_ask *a)
{
    a->v[CHI_ASK_IF_MATCH] = ch_req_header(req, "If-Match");
    a->v[CHI_ASK_IF_UNMODIFIED] = ch_req_header(req, "If-Unmodified-Since");
    a->v[CHI_ASK_IF_NONE] = ch_req_common(req, CH_H_IF_NONE_MATCH);
    a->v[CHI_ASK_IF_MODIFIED] = ch_req_common(req, CH_H_IF_MODIFIED_SINCE);
    a->v[CHI_ASK_IF_RANGE] = ch_req_header(req, "If-Range");
    a->v[CHI_ASK_RANGE] = ch_req_common(req, CH_H_RANGE);
    a->method = req->method;
}

/* ch_res_defer: keeps the ask in the later, the request's bytes being
   about to go. Returns 0, or -1 out of memory. */
static int chi_ask_keep(chi_later *l, const ch_req *req)
{
    chi_file_ask a;
    int k;
    chi_ask_from_req(req, &a);
    l->ask.len = 0;
    for (k = 0; k < CHI_ASK_COUNT; k++) {
        l->ask_len[k] = a.v[k].ptr ? (uint32_t)a.v[k].len : UINT32_MAX;
        if (a.v[k].ptr && chi_buf_append(&l->ask, a.v[k].ptr, a.v[k].len) < 0) return -1;
    }
    return 0;
}

static void chi_ask_from_later(const chi_later *l, chi_file_ask *a)
{
    size_t at = 0;
    int k;
    for (k = 0; k < CHI_ASK_COUNT; k++) {
        if (l->ask_len[k] == UINT32_MAX) {
            a->v[k] = chi_str(NULL, 0);
            continue;
        }
        a->v[k] = chi_str(l->ask.ptr + at, l->ask_len[k]);
        at += l->ask_len[k];
    }
    a->method = l->method;
}

/* The ask for a file answer on res: from req when the handler has it, else
   from res's later; -1 when there is neither. */
static int chi_file_ask_for(const ch_req *req, const ch_res *res, chi_file_ask *a)
{
    if (req) {
        chi_ask_from_req(req, a);
        return 0;
    }
    if (!res->later) return -1;
    chi_ask_from_later(res->later, a);
    return 0;
}

/* Answers with the open regular file fd (taken over: closed when sent or
   refused). `name` gives the Content-Type; `encoding` a Content-Encoding
   ("gzip", "br") or NULL. */
static void chi_serve_file(const chi_file_ask *ask, ch_res *res, int fd, const chi_file_info *fi, const char *name,
                           const char *encoding, int vary)
{
    chi_worker *w = res->w;
    char etag[CHI_ETAG_MAX], date[CHI_DATE_LEN], crange[80], *p;
    size_t elen = chi_etag_format(fi->ino, fi->size, fi->mtime_ns, etag);
    uint64_t first = 0, last = 0;
    int cond, range = 0;
    chi_format_date(fi->mtime, date);
    if (!res->ctype.len) {
        const char *t = chi_app_mime(w->app, name);
        chi_res_set_ctype(res, t, strlen(t));
    }
    chi_file_header(res, "ETag", 4, etag, elen);
    chi_file_header(res, "Last-Modified", 13, date, CHI_DATE_LEN);
    if (vary) chi_file_header(res, "Vary", 4, "Accept-Encoding", 15);
    cond = chi_preconditions(ask->v[CHI_ASK_IF_MATCH], ask->v[CHI_ASK_IF_UNMODIFIED], ask->v[CHI_ASK_IF_NONE],
                             ask->v[CHI_ASK_IF_MODIFIED], etag, elen, fi->mtime,
                             ask->method == CH_GET || ask->method == CH_HEAD);
    if (cond == 304) {
        chi_file_release(res->w, fd);
        res->ctype.len = 0;
        res->status = 304;
        return;
    }
    if (cond == 412) {
        chi_file_release(res->w, fd);
        ch_res_error(res, 412);
        return;
    }
    if (encoding) chi_file_header(res, "Content-Encoding", 16, encoding, strlen(encoding));
    chi_file_header(res, "Accept-Ranges", 13, "bytes", 5);
    /* Range is defined for GET only (RFC 9110 14.2): HEAD and the rest
       ignore it and describe the whole file */
    if (ask->method == CH_GET &&
        chi_if_range_ok(ask->v[CHI_ASK_IF_RANGE], etag, elen, fi->mtime, chi_response_date(w)))
        range = chi_range_parse(ask->v[CHI_ASK_RANGE], fi->size, &first, &last);
    if (range == 416) {
        p = chi_put(crange, "bytes */", 8);
        p += chi_utoa(fi->size, p);
        chi_file_release(res->w, fd);
        ch_res_error(res, 416);
        chi_file_header(res, "Content-Range", 13, crange, (size_t)(p - crange));
        return;
    }
    if (range == 1) {
        p = chi_put(crange, "bytes ", 6);
        p += chi_utoa(first, p);
        *p++ = '-';
        p += chi_utoa(last, p);
        *p++ = '/';
        p += chi_utoa(fi->size, p);
        chi_file_header(res, "Content-Range", 13, crange, (size_t)(p - crange));
        res->status = 206;
        chi_res_set_file(res, fd, first, last - first + 1);
        return;
    }
    res->status = 200;
    chi_res_set_file(res, fd, 0, fi->size);
}

static int chi_file_refuse(ch_res *res, int fd, int status)
{
    if (fd >= 0) chi_file_release(res->w, fd);
    ch_res_error(res, status);
    return -1;
}

CHOPIN_API int ch_res_file_fd(ch_req *req, ch_res *res, int fd, const char *name)
{
    chi_file_info fi;
    chi_file_ask ask;
    if (!res) {
        if (fd >= 0) chi_os_close(fd);
        return -1;
    }
    if (chi_file_ask_for(req, res, &ask) < 0) return chi_file_refuse(res, fd, 500); /* no request to answer */
    if (fd < 0) return chi_file_refuse(res, -1, 404);
    if (chi_os_file_stat(fd, &fi) < 0 || !fi.is_reg) return chi_file_refuse(res, fd, 404);
    chi_serve_file(&ask, res, fd, &fi, name ? name : "", NULL, 0);
    return 0;
}

CHOPIN_API int ch_res_file(ch_req *req, ch_res *res, const char *path)
{
    int fd;
    if (!res) return -1;
    fd = path ? chi_os_open_file(path) : CHI_FILE_NOTFOUND;
    if (fd < 0) return chi_file_refuse(res, -1, fd == CHI_FILE_FORBIDDEN ? 403 : 404);
    return ch_res_file_fd(req, res, fd, path);
}

/* name.br or name.gz beside the file, when the client takes it. */
static int chi_sibling(chi_worker *w, const struct chi_mount *m, const char *rel, size_t n, const char *suffix,
                       chi_file_info *fi)
{
    char sib[CHI_PATH_MAX];
    size_t sl = strlen(suffix);
    int fd;
    if (n + sl + 1 > sizeof sib) return -1;
    memcpy(sib, rel, n);
    memcpy(sib + n, suffix, sl + 1);
    fd = chi_mount_open(w, m, sib, n + sl, fi, 1);
    if (fd < 0) return -1;
    if (!fi->is_reg) {
        chi_file_release(w, fd);
        return -1;
    }
    return fd;
}

static void chi_static_handler(ch_req *req, ch_res *res)
{
    const struct chi_mount *m = (const struct chi_mount *)req->user;
    ch_str want = ch_req_param(req, CHI_STATIC_PARAM);
    char rel[CHI_PATH_MAX];
    chi_file_info fi;
    chi_file_ask ask;
    long n = chi_path_clean(want.ptr ? want.ptr : "", want.len, rel, sizeof rel - 80, m->dotfiles == CH_YES);
    /* "a.txt/" names a directory (RFC 3986 3.3): a file is not one, 404 */
    int dir_only = want.len > 0 && want.ptr[want.len - 1] == '/';
    int fd, vary = 0;
    const char *enc = NULL;
    if (n < 0) {
        ch_res_error(res, (int)-n);
        return;
    }
    fd = chi_mount_open(res->w, m, rel, (size_t)n, &fi, 0);
    if (fd < 0) {
        chi_file_refuse(res, -1, fd == CHI_FILE_FORBIDDEN ? 403 : 404);
        return;
    }
    if (fi.is_dir) {
        chi_file_release(res->w, fd);
        dir_only = 0; /* it is one: its index answers */
        if (!m->index[0]) {
            ch_res_error(res, 404);
            return;
        }
        if (n) rel[n++] = '/';
        memcpy(rel + n, m->index, strlen(m->index) + 1);
        n += (long)strlen(m->index);
        fd = chi_mount_open(res->w, m, rel, (size_t)n, &fi, 0);
        if (fd < 0) {
            chi_file_refuse(res, -1, 404);
            return;
        }
    }
    if (!fi.is_reg || dir_only) {
        chi_file_refuse(res, fd, 404);
        return;
    }
    if (m->precompressed != CH_NO) {
        static const char *const codings[2] = {"br", "gzip"};
        static const char *const suffixes[2] = {".br", ".gz"};
        ch_str ae = ch_req_common(req, CH_H_ACCEPT_ENCODING);
        int k;
        for (k = 0; k < 2; k++) {
            chi_file_info si;
            int sfd = chi_sibling(res->w, m, rel, (size_t)n, suffixes[k], &si);
            if (sfd < 0) continue;
            vary = 1; /* the answer depends on Accept-Encoding */
            if (!enc && chi_accepts_coding(ae, codings[k])) {
                chi_file_release(res->w, fd);
                fd = sfd;
                fi = si;
                enc = codings[k];
            } else {
                chi_file_release(res->w, sfd);
            }
        }
    }
    if (m->cache_control[0]) chi_file_header(res, "Cache-Control", 13, m->cache_control, strlen(m->cache_control));
    chi_ask_from_req(req, &ask);
    chi_serve_file(&ask, res, fd, &fi, rel, enc, vary);
}

CHOPIN_API int ch_static(ch_app *app, const char *prefix, const char *root, const ch_static_opts *opts)
{
    char pattern[CHI_MAX_PATTERN];
    struct chi_mount *m;
    size_t plen;
    const char *index = opts && opts->index ? opts->index : "index.html";
    const char *cc = opts && opts->cache_control ? opts->cache_control : "";
    if (!prefix || !root || (prefix[0] && prefix[0] != '/')) return chi_reg_error(app, "bad prefix or root", "(static)");
    plen = strlen(prefix);
    while (plen && prefix[plen - 1] == '/') plen--;
    if (plen + sizeof "/*" CHI_STATIC_PARAM > sizeof pattern || strlen(index) >= sizeof m->index ||
        strchr(index, '/') || strlen(cc) >= sizeof m->cache_control)
        return chi_reg_error(app, "prefix, index or cache_control too long", prefix);
    m = (struct chi_mount *)CHOPIN_MALLOC(sizeof *m);
    if (!m) return chi_reg_error(app, "out of memory", prefix);
    memset(m, 0, sizeof *m);
    m->root_fd = chi_os_open_dir(root);
    if (m->root_fd < 0) {
        CHOPIN_FREE(m);
        if (!app->reg_failed) chi_set_error(app, "static %s: cannot open %s", prefix, root);
        app->reg_failed = 1;
        return -1;
    }
    memcpy(m->index, index, strlen(index) + 1);
    memcpy(m->cache_control, cc, strlen(cc) + 1);
    m->precompressed = opts ? opts->precompressed : 0;
    m->dotfiles = opts ? opts->dotfiles : 0;
    m->file_cache = opts ? opts->file_cache : 0;
    m->next = app->mounts;
    app->mounts = m;
    memcpy(pattern, prefix, plen);
    memcpy(pattern + plen, "/*" CHI_STATIC_PARAM, sizeof "/*" CHI_STATIC_PARAM);
    if (ch_route(app, CH_GET, pattern, chi_static_handler, m) < 0) return -1;
    return ch_route(app, CH_HEAD, pattern, chi_static_handler, m);
}

#endif /* CHOPIN_NO_STATIC */

CHOPIN_API int ch_file_create(const char *dir, char *name, size_t cap)
{
    int dfd, fd;
    if (!dir || !name || chi_os_mkdir(dir) < 0) return -1;
    dfd = chi_os_open_dir(dir);
    if (dfd < 0) return -1;
    fd = chi_os_create_unique(dfd, name, cap);
    chi_os_close(dfd);
    return fd < 0 ? -1 : fd;
}

CHOPIN_API int ch_file_create_named(const char *dir, const char *name)
{
    int dfd, fd;
    size_t i, n = name ? strlen(name) : 0;
    if (!dir || n == 0 || n > 255 || name[0] == '.' || chi_os_mkdir(dir) < 0) return -1;
    for (i = 0; i < n; i++)
        if (name[i] == '/' || name[i] == '\\' || (unsigned char)name[i] < 0x20 || name[i] == 0x7f) return -1;
    dfd = chi_os_open_dir(dir);
    if (dfd < 0) return -1;
    fd = chi_os_create_named(dfd, name);
    chi_os_close(dfd);
    return fd < 0 ? -1 : fd;
}

CHOPIN_API int ch_file_write(int fd, const void *data, size_t len) { return chi_os_file_write(fd, (const char *)data, len); }
CHOPIN_API void ch_file_close(int fd) { if (fd >= 0) chi_os_close(fd); }

/* >>uploads -------------------------------------------------------------------
   Request bodies as streams, and Expect: 100-continue decided by the
   route's middleware. When a request with a body has its head in,
   chi_early looks at the route before any body byte is waited for:
   - the middleware (the app's, then the route group's) runs first; a
     refusal (a 401 from auth, a 404, a 405) is answered at once and the
     connection closes, so a client that sent Expect: 100-continue never
     sends the body;
   - a route added with ch_route_stream has its handler called now; it
     takes the body with ch_req_body_stream, whose callback then gets each
     piece as it is read (Content-Length or chunked, decoded), after the
     head kept in the connection's input. The callback runs before the next
     read, so reading waits while it works and memory stays at one read
     buffer, whatever the size; the route's own limit applies, not
     max_body_size. At the end, on_end fills the response;
   - any other route reads its body whole (max_body_size) as before, with
     100 Continue sent once the middleware let the request through. The
     verdict is kept (chi_passed: what the middleware put in the response,
     its finishers, req->ctx), and when the body is in, the route's handler
     runs on it without the middleware running again: a rate limiter
     counts the request once, a request id stays the same. */

enum { CHI_EARLY_NONE, CHI_EARLY_ANSWERED, CHI_EARLY_STREAM };

/* What the middleware left for a buffered route whose body is still to
   come: the response so far (its header buffers change hands), and the
   context it set. The worker's response serves other connections
   meanwhile. */
struct chi_passed {
    ch_res res;
    void *ctx;
};


struct chi_stream {
    ch_body_fn on_data;
    ch_body_end_fn on_end;
    void *state;
    void *user, *ctx;
    size_t head_len;
    int body_kind;
    uint64_t left;           /* Content-Length bytes still to come */
    uint64_t max_body;
    chi_chunked ck;
    int keep_alive, taken;
    int complete;            /* the whole body was handed over */
    int resumed;             /* ch_body_resume ran: the settle pass pumps */
    int resume_early;        /* ... before the pause it answers: no pause */
    uint64_t serial;         /* what a ch_body names (w->stream_serial) */
    ch_req req;              /* the request as parsed, its slices into the */
    chi_req_store store;     /* head that was at `base` (now c->in's start) */
    uintptr_t base;
};

static size_t chi_process(chi_worker *w, chi_conn *c, char *buf, size_t len);
static int chi_keep_rest(chi_conn *c, const char *buf, size_t len, size_t used, int from_scratch);
static void chi_stream_empty(ch_req *req, ch_res *res);

/* The route's handler is chi_stream_empty, which only a request without a
   body reaches (chi_early takes every other one, calling stream_handler):
   chi_dispatch stays as it is, and the fast path pays nothing for it. */
CHOPIN_API int ch_route_stream(ch_app *app, ch_method method, const char *pattern, ch_handler h, void *user,
                               uint64_t max_body)
{
    chi_node *n;
    const char *err = NULL;
    if (!h) return chi_reg_error(app, "no handler", pattern ? pattern : "(null)");
    if (chi_add_route(app, NULL, method, pattern, chi_stream_empty, user) < 0) return -1;
    n = chi_node_insert(app->root, pattern, &err); /* finds the node just made */
    if (!n) return chi_reg_error(app, err, pattern);
    n->routes[method].stream_handler = h;
    n->routes[method].stream_max = max_body ? max_body : CHI_DEFAULT_STREAM_MAX;
    if (n->routes[method].stream_max > app->stream_max) app->stream_max = n->routes[method].stream_max;
    app->nstream++;
    return 0;
}

/* A refusal presets a 500, so a handler that ignores the -1 never sends
   an empty 200; one that answers itself replaces it. */
CHI_COLD static int chi_body_stream_refused(ch_res *res, const char *why)
{
    chi_log(res->w, CH_LOG_ERROR, CH_LOGITEM_BODY_STREAM_REFUSED, "ch_req_body_stream: %s: 500", why);
    ch_res_error(res, 500);
    return -1;
}

CHOPIN_API int ch_req_body_stream(ch_res *res, ch_body_fn on_data, ch_body_end_fn on_end, void *state)
{
    struct chi_stream *s = res->w->stream_offer;
    if (!s) return chi_body_stream_refused(res, "not in a ch_route_stream handler");
    if (!on_end) return chi_body_stream_refused(res, "no on_end");
    s->on_data = on_data;
    s->on_end = on_end;
    s->state = state;
    s->taken = 1;
    return 0;
}

CHOPIN_API ch_body ch_req_body_handle(ch_res *res)
{
    ch_body b;
    chi_worker *w = res ? res->w : NULL;
    struct chi_stream *s = w ? w->stream_offer : NULL;
    memset(&b, 0, sizeof b);
    if (!s || !w->cur) return b; /* only from a ch_route_stream handler */
    b.w = w;
    b.fd = w->cur->fd;
    b.serial = s->serial;
    return b;
}

static void chi_mark_dirty(chi_worker *w, chi_conn *c); /* >>later */

/* Reading goes on: the settle pass hands over what is held (chi_settle),
   never inside this call. */
CHOPIN_API int ch_body_resume(ch_body b)
{
    chi_worker *w = b.w;
    chi_conn *c;
    if (!w || b.fd < 0 || (size_t)b.fd >= w->conns_cap || !(c = w->conns[b.fd]) || !c->stream ||
        c->stream->serial != b.serial)
        return -1;
    if (!(c->flags & CHI_F_PAUSED)) { /* from inside on_data, before its CH_BODY_PAUSE */
        c->stream->resume_early = 1;
        return 0;
    }
    c->flags &= ~(unsigned)CHI_F_PAUSED;
    c->stream->resumed = 1;
    chi_mark_dirty(w, c);
    return 0;
}

/* The route of req without running anything, or NULL. */
static const chi_route *chi_route_peek(chi_worker *w, ch_req *req)
{
    chi_node *node;
    if (req->method == CH_OTHER) return NULL;
    req->param_count = 0;
    node = chi_node_match(w->app->root, req->path.ptr + 1, req->path.ptr + req->path.len, req);
    return node && node->routes[req->method].handler ? &node->routes[req->method] : NULL;
}

/* A stream route's request without a body (Content-Length: 0, or no
   framing) never went through chi_early: chi_dispatch, having run the
   middleware, calls this in the route's place. The application's handler
   runs as chi_early would run it, and a body it takes is an empty stream:
   on_data never runs, on_end runs once, now, with status 0 and res as the
   handler left it. The route is matched again to find the handler (the
   params come out the same; cold: only bodyless requests to stream routes
   come here). */
CHI_COLD static void chi_stream_empty(ch_req *req, ch_res *res)
{
    chi_worker *w = res->w;
    const chi_route *route = NULL;
    chi_node *node;
    struct chi_stream s;
    int m = (int)req->method;
    req->param_count = 0;
    node = chi_node_match(w->app->root, req->path.ptr + 1, req->path.ptr + req->path.len, req);
    if (node && !node->routes[m].stream_handler && m == CH_HEAD) m = CH_GET; /* as chi_dispatch */
    if (node && node->routes[m].stream_handler) route = &node->routes[m];
    if (!route) { /* a middleware moved req->path to another route's */
        ch_res_error(res, 500);
        return;
    }
    memset(&s, 0, sizeof s);
    s.serial = ++w->stream_serial;
    w->stream_offer = &s;
    route->stream_handler(req, res);
    w->stream_offer = NULL;
    if (s.taken) s.on_end(req, res, 0, s.state);
}

/* chi_run_group_mw's walk, for the early check: a second caller of that
   one would cost its inlining on every routed request. */
CHI_COLD static int chi_early_group_mw(ch_group *g, ch_req *req, ch_res *res)
{
    int i;
    if (g->parent && chi_early_group_mw(g->parent, req, res) == CH_DONE) return CH_DONE;
    for (i = 0; i < g->nmw; i++)
        if (g->mw[i].fn(req, res, g->mw[i].user) == CH_DONE) return CH_DONE;
    return CH_NEXT;
}

/* The middleware chain and the route, as chi_route_request runs them, but
   without the handler. Returns CH_DONE with w->res filled when the request
   is answered before its body (a refusal, 404, 405, 501). */
CHI_COLD static int chi_early_route(chi_worker *w, ch_req *req, const chi_route **route)
{
    ch_app *app = w->app;
    ch_res *res = &w->res;
    int i;
    for (i = 0; i < app->nmw; i++)
        if (app->mw[i].fn(req, res, app->mw[i].user) == CH_DONE) return CH_DONE;
    if (req->method == CH_OTHER) {
        ch_res_error(res, 501);
        return CH_DONE;
    }
    *route = chi_route_peek(w, req);
    if (!*route) {
        chi_node *node = chi_node_match(app->root, req->path.ptr + 1, req->path.ptr + req->path.len, req);
        char allow[96];
        if (!node) {
            ch_res_error(res, 404);
        } else {
            size_t n = chi_allow_list(node->methods | node->fast_methods, allow);
            if (req->method == CH_OPTIONS) res->status = 200; else ch_res_error(res, 405);
            ch_res_headern(res, "Allow", 5, allow, n);
        }
        return CH_DONE;
    }
    if ((*route)->group && chi_early_group_mw((*route)->group, req, res) == CH_DONE) return CH_DONE;
    req->user = (*route)->user;
    return CH_NEXT;
}

/* Lays out w->res for >>uploads. The call goes through a pointer the
   compiler cannot see through (a local volatile), so chi_res_write keeps
   the two direct callers it is inlined into on the request path. */
CHI_COLD static void chi_upload_finish(chi_worker *w, ch_req *req, int keep_alive)
{
    void (*volatile write_fn)(chi_worker *, ch_res *, ch_req *, int) = chi_res_write;
    write_fn(w, &w->res, req, keep_alive);
}

/* An answer before the body: the body is never read, so the connection
   closes after it. */
static int chi_early_answer(chi_worker *w, chi_conn *c, ch_req *req, size_t out_before, int status)
{
    if (status) {
        chi_res_reset(&w->res);
        ch_res_error(&w->res, status);
    }
    chi_upload_finish(w, req, 0);
    if (w->app->nafter) chi_run_after(w, req, out_before);
    c->flags |= CHI_F_CLOSING | CHI_F_LINGER_AFTER;
    return CHI_EARLY_ANSWERED;
}

/* Keeps the middleware's verdict on c (see struct chi_passed): w->res's
   header buffers move into it, w->res gets empty ones. */
CHI_COLD static int chi_keep_verdict(chi_worker *w, chi_conn *c, const ch_req *req)
{
    struct chi_passed *v = (struct chi_passed *)CHOPIN_MALLOC(sizeof *v);
    if (!v) return -1;
    v->res = w->res;
    v->ctx = req->ctx;
    memset(&w->res.ctype, 0, sizeof w->res.ctype);
    memset(&w->res.headers, 0, sizeof w->res.headers);
    w->res.file = 0;
    c->passed = v;
    return 0;
}

CHI_COLD static void chi_passed_free(chi_conn *c)
{
    if (!c->passed) return;
    chi_buf_free(&c->passed->res.ctype);
    chi_buf_free(&c->passed->res.headers);
    CHOPIN_FREE(c->passed);
    c->passed = NULL;
}

/* w->res becomes the response c->passed kept (its buffers and w->res's
   trade places), req->ctx the context; c->passed is freed. */
CHI_COLD static void chi_passed_restore(chi_worker *w, chi_conn *c, ch_req *req)
{
    struct chi_passed *v = c->passed;
    ch_res *res = &w->res;
    chi_buf ct, hd;
    chi_res_reset(res);
    ct = res->ctype;
    hd = res->headers;
    *res = v->res;
    v->res.ctype = ct;
    v->res.headers = hd;
    req->ctx = v->ctx;
    chi_passed_free(c);
}

/* chi_dispatch for a body the middleware let in before it came: the
   response starts as the middleware left it, and only the handler runs. */
CHI_COLD static void chi_dispatch_passed(chi_worker *w, chi_conn *c, ch_req *req, int keep_alive)
{
    ch_res *res = &w->res;
    const chi_route *route;
    size_t out_before = w->out.len;
    chi_passed_restore(w, c, req);
    w->decoded_mask = 0;
    w->keep_alive = keep_alive;
    route = chi_route_peek(w, req); /* the params again: the head may have moved */
    if (route) {
        req->user = route->user;
        route->handler(req, res);
    } else {
        ch_res_error(res, 404);
    }
    if (w->deferring) {
        w->deferring = 0;
        return;
    }
    chi_res_finish(w, req, keep_alive);
    if (w->app->timed) chi_run_after(w, req, out_before);
}

/* The head of a request with a body is in (hl bytes of the `have` so far):
   see the >>uploads notes. Runs once per request (c->early_done). */
CHI_COLD static int chi_early(chi_worker *w, chi_conn *c, ch_req *req, const chi_head *h, const char *head, size_t hl,
                              size_t have)
{
    ch_app *app = w->app;
    const chi_route *route = NULL;
    struct chi_stream *s;
    size_t out_before = w->out.len;
    int expect = h->expect_continue && req->version_minor == 1;
    int complete = h->body_kind == CHI_BODY_LENGTH && have - hl >= h->content_length;
    c->early_done = 1;
    req->conn = &c->peer;
    req->ctx = NULL;
    if (app->nstream) {
        route = chi_route_peek(w, req);
        if (!route || !route->stream_max) {
            if (h->body_kind == CHI_BODY_LENGTH && h->content_length > app->lim.max_body)
                return chi_early_answer(w, c, req, out_before, 413);
            route = NULL;
        }
    }
    if (!route && (!expect || complete)) return CHI_EARLY_NONE;
    chi_res_reset(&w->res);
    if (app->timed) w->res.start_ns = chi_os_now_ns();
    if (chi_early_route(w, req, &route) == CH_DONE) return chi_early_answer(w, c, req, out_before, 0);
    if (!route->stream_max) { /* buffered: the middleware let it in */
        if (chi_keep_verdict(w, c, req) < 0) return chi_early_answer(w, c, req, out_before, 503);
        chi_write_continue(w);
        c->continue_sent = 1;
        return CHI_EARLY_NONE;
    }
    if (h->body_kind == CHI_BODY_LENGTH && h->content_length > route->stream_max)
        return chi_early_answer(w, c, req, out_before, 413);
    s = (struct chi_stream *)CHOPIN_MALLOC(sizeof *s);
    if (!s) return chi_early_answer(w, c, req, out_before, 503);
    memset(s, 0, sizeof *s);
    s->user = route->user;
    s->head_len = hl;
    s->body_kind = h->body_kind;
    s->left = h->content_length;
    s->max_body = route->stream_max;
    s->keep_alive = h->keep_alive;
    s->serial = ++w->stream_serial;
    chi_chunked_init(&s->ck, hl);
    w->stream_offer = s;
    route->stream_handler(req, &w->res);
    w->stream_offer = NULL;
    if (!s->taken) { /* the handler answered at once */
        CHOPIN_FREE(s);
        return chi_early_answer(w, c, req, out_before, 0);
    }
    if (chi_keep_verdict(w, c, req) < 0) { /* for on_end: the middleware's lines, finishers */
        s->on_end(NULL, NULL, CH_BODY_ABORTED, s->state);
        CHOPIN_FREE(s);
        return chi_early_answer(w, c, req, out_before, 503);
    }
    s->ctx = req->ctx;
    s->req = *req;
    s->store = w->req_store;
    s->base = (uintptr_t)head;
    c->stream = s;
    if (expect && !complete) {
        chi_write_continue(w);
        c->continue_sent = 1;
    }
    return CHI_EARLY_STREAM;
}

/* Moves a slice that pointed into the head at `from` to the same place in
   the head's copy at `to` (only addresses are compared, nothing is read). */
static void chi_slice_move(ch_str *v, uintptr_t from, size_t len, uintptr_t to)
{
    uintptr_t at = (uintptr_t)v->ptr;
    if (v->ptr && at >= from && at <= from + len) v->ptr = (const char *)(to + (at - from));
}

/* The request again, as chi_early saw it, its slices moved to the head
   kept at the start of c->in: the worker's ch_req served other
   connections in between. (Copied, not parsed again: a second caller of
   chi_parse_head would cost its inlining in chi_process.) */
static ch_req *chi_stream_req(chi_worker *w, chi_conn *c)
{
    struct chi_stream *s = c->stream;
    ch_req *req = &w->req;
    uintptr_t from = s->base, to = (uintptr_t)c->in.ptr;
    size_t len = s->head_len;
    int i;
    w->req_store = s->store;
    *req = s->req;
    req->headers = w->req_store.headers;
    req->params = w->req_store.params;
    chi_slice_move(&req->method_name, from, len, to);
    chi_slice_move(&req->target, from, len, to);
    chi_slice_move(&req->path, from, len, to);
    chi_slice_move(&req->query, from, len, to);
    for (i = 0; i < req->header_count; i++) {
        chi_slice_move(&req->headers[i].name, from, len, to);
        chi_slice_move(&req->headers[i].value, from, len, to);
    }
    for (i = 0; i < req->param_count; i++) chi_slice_move(&req->params[i].value, from, len, to);
    req->ctx = s->ctx;
    req->conn = &c->peer;
    req->body = NULL;
    req->body_len = 0;
    return req;
}

static void chi_stream_free(chi_conn *c)
{
    CHOPIN_FREE(c->stream);
    c->stream = NULL;
    c->flags &= ~(unsigned)CHI_F_PAUSED;
}

/* The client left, or a timeout closes the connection: on_end learns it. */
CHI_COLD static void chi_stream_abort(chi_conn *c)
{
    struct chi_stream *s = c->stream;
    if (!s) return;
    s->on_end(NULL, NULL, CH_BODY_ABORTED, s->state);
    chi_stream_free(c);
}

/* The body is whole (status 0) or refused (a 4xx, from the framing, the
   limit or on_data): on_end fills the answer, which starts as the
   middleware and the handler left it (their header lines, finishers; a
   body they set is dropped: it may have pointed at memory gone since); a
   refused body closes the connection. */
static void chi_stream_end(chi_worker *w, chi_conn *c, int status)
{
    struct chi_stream *s = c->stream;
    size_t out_before = w->out.len;
    ch_req *req = chi_stream_req(w, c);
    int keep_alive = status == 0 && s->keep_alive && !w->stopping;
    if (c->passed) {
        chi_passed_restore(w, c, req);
        req->ctx = s->ctx; /* as on_data left it */
        w->res.body = NULL;
        w->res.body_len = 0;
        w->res.body_is_json = 0;
        if (w->res.file) chi_file_release(w, w->res.file_fd);
        w->res.file = 0;
    } else {
        chi_res_reset(&w->res);
        if (w->app->timed) w->res.start_ns = chi_os_now_ns();
    }
    if (status) ch_res_error(&w->res, status);
    s->on_end(req, &w->res, status, s->state);
    chi_upload_finish(w, req, keep_alive);
    if (w->app->nafter) chi_run_after(w, req, out_before);
    chi_stream_free(c);
    c->continue_sent = 0;
    if (!keep_alive) c->flags |= CHI_F_CLOSING | CHI_F_LINGER_AFTER;
}

/* Hands body bytes to on_data; returns 0, or the status it refused with. */
static int chi_stream_feed(chi_worker *w, chi_conn *c, const char *p, size_t n)
{
    struct chi_stream *s = c->stream;
    ch_req *req;
    int r;
    if (n == 0 || !s->on_data) return 0;
    req = chi_stream_req(w, c);
    r = s->on_data(req, p, n, s->state);
    s->ctx = req->ctx;
    if (r == 0) return 0;
    if (r == CH_BODY_PAUSE) {
        if (!s->resume_early) c->flags |= CHI_F_PAUSED; /* chi_after_io stops reading */
        s->resume_early = 0;
        return 0;
    }
    return (r >= 400 && r <= 599) ? r : 400;
}

/* What arrived after the head goes to on_data; the head stays in c->in.
   When the body ends, the answer is written and the requests pipelined
   after it are answered. A paused consumer (CHI_F_PAUSED) gets nothing
   more, not even its on_end, until it resumes. */
CHI_COLD static int chi_stream_pump(chi_worker *w, chi_conn *c)
{
    while (c->stream) {
        struct chi_stream *s = c->stream;
        size_t hl = s->head_len, used, rest;
        int status = 0, done = 0;
        s->resumed = 0;
        if (c->flags & CHI_F_PAUSED) return 0;
        if (s->complete) {
            done = 1;
            used = hl;
        } else if (s->body_kind == CHI_BODY_LENGTH) {
            size_t take = c->in.len - hl;
            if ((uint64_t)take > s->left) take = (size_t)s->left;
            status = chi_stream_feed(w, c, c->in.ptr + hl, take);
            s->left -= take;
            used = hl + take;
            done = s->left == 0;
        } else {
            int r = chi_chunked_decode(&s->ck, c->in.ptr, c->in.len, s->max_body, w->app->lim.max_header);
            if (r < 0) status = -r;
            else status = chi_stream_feed(w, c, c->in.ptr + hl, s->ck.dst - hl);
            used = s->ck.src;
            done = r == 1;
            s->ck.src = s->ck.dst = hl;
        }
        if (status) {
            chi_stream_end(w, c, status);
            c->in.len = 0;
            return 0;
        }
        rest = c->in.len - used; /* not yet decoded, or the next requests */
        memmove(c->in.ptr + hl, c->in.ptr + used, rest);
        c->in.len = hl + rest;
        if (done) s->complete = 1;
        if (!done || (c->flags & CHI_F_PAUSED)) return 0;
        chi_stream_end(w, c, 0);
        memmove(c->in.ptr, c->in.ptr + hl, rest);
        c->in.len = rest;
        if (c->flags & CHI_F_CLOSING) {
            c->in.len = 0;
            return 0;
        }
        if (chi_keep_rest(c, c->in.ptr, c->in.len, chi_process(w, c, c->in.ptr, c->in.len), 0) < 0) return -1;
    }
    return 0;
}

/* A file body taken from the response just written: it goes out after the
   head, before anything else on this connection. */
/* The file body of res (the worker's, or a later one's just written) goes
   to c: it leaves after c's output, before anything else. */
CHI_COLD static int chi_conn_file(chi_conn *c, ch_res *res)
{
    if (!res->file) return 0;
    res->file = 0;
    c->file_fd = res->file_fd;
    c->file_off = res->file_off;
    c->file_left = res->file_len;
    c->flags |= CHI_F_FILE;
    return 1;
}

CHI_COLD static int chi_take_file(chi_worker *w, chi_conn *c) { return chi_conn_file(c, &w->res); }

/* Sends some of the file body; the writable event brings the rest. */
CHI_COLD static int chi_send_file(chi_worker *w, chi_conn *c)
{
    size_t n = c->file_left > CHI_SENDFILE_CHUNK ? CHI_SENDFILE_CHUNK : (size_t)c->file_left;
    long r;
    if (chi_poller_sending(w->poller, c->fd)) return 0; /* its queued head goes first (io_uring) */
    r = chi_os_sendfile(c->fd, c->file_fd, &c->file_off, n, w->scratch, CHOPIN_READ_SIZE, w->sigpipe_blocked);
    if (r == CHI_IO_AGAIN) return 0;
    if (r < 0) return -1; /* the client left, or the file shrank */
    chi_touch(w, c);
    c->file_left -= (uint64_t)r;
    if (c->file_left == 0) {
        chi_file_release(w, c->file_fd);
        c->flags &= ~(unsigned)CHI_F_FILE;
    }
    return 0;
}

CHI_COLD static void chi_file_drop(chi_worker *w, chi_conn *c)
{
    if (c->flags & CHI_F_FILE) chi_file_release(w, c->file_fd);
    c->flags &= ~(unsigned)CHI_F_FILE;
    c->file_left = 0;
}

/* >>connection --------------------------------------------------------------
   The state machine of one connection:
     received  -> bytes arrived (into scratch, or after the unfinished
                  request kept in c->in) -> answer every complete request ->
                  keep the unfinished rest -> write all answers in one send
     writable  -> send what the socket did not take before
     closing   -> after the last byte: close, or shut the write side and
                  drain the input for a while ("lingering close"), so the
                  client reads our answer rather than a reset.
   The entry points take I/O results (bytes, CHI_IO_EOF, CHI_IO_AGAIN,
   CHI_IO_ERROR), not readiness: chi_on_readable and chi_on_writable do the
   readiness backends' recv and send, and call chi_conn_received and
   chi_conn_sent with what happened. */

static void chi_close(chi_worker *w, chi_conn *c)
{
    CHOPIN_ASSERT(w->conns[c->fd] == c);
    CHI_COUNT(w, conns_closed, 1);
    if (c->later) chi_later_detach(w, c->later, CHI_WHY_GONE); /* the client left */
    chi_q_unlink(w, c);
    chi_poller_close_fd(w->poller, c->fd);
    w->conns[c->fd] = NULL;
    if (c->stream) chi_stream_abort(c);
    if (c->passed) chi_passed_free(c);
    if (c->flags & CHI_F_FILE) chi_file_drop(w, c);
    chi_buf_free(&c->in);
    chi_buf_free(&c->out);
    c->next = w->free_conns;
    w->free_conns = c;
    w->nconns--;
}

/* Bytes not yet sent from c->out; a file body after them (>>static) is
   told by CHI_F_FILE. */
static size_t chi_pending(const chi_conn *c) { return c->out.len - c->out_off; }
static size_t chi_out_pending(const chi_conn *c) { return chi_pending(c); }

/* A refused request: the error goes out, then the connection closes. The
   after-hooks see it (>>dispatch). */
/* The version a refused head named, for the after-hooks (the access log):
   1.0 or 1.1 when the parser got past it, else -1 (not read, or not 1.x). */
static int chi_refused_minor(const ch_req *req, const char *p, size_t n)
{
    const char *v;
    if (!req->target.ptr) return -1;
    v = req->target.ptr + req->target.len + 1;
    if (v < p || v + 10 > p + n || memcmp(v, "HTTP/1.", 7) != 0 || v[7] < '0' || v[7] > '9') return -1;
    return v[7] == '0' ? 0 : 1;
}

static void chi_reject(chi_worker *w, chi_conn *c, int status, int minor)
{
    size_t before = w->out.len;
    chi_write_error(w, status, "", 0, 1, 0, minor);
    c->flags |= CHI_F_CLOSING | CHI_F_LINGER_AFTER;
    chi_dispatch_refusal(w, &w->req, &c->peer, status, before);
}

/* A head the parser refused (out of line: the loop that calls it is hot). */
CHI_OUTLINE static void chi_reject_head(chi_worker *w, chi_conn *c, int status, const char *p, size_t n)
{
    w->req.version_minor = chi_refused_minor(&w->req, p, n); /* not an earlier request's */
    chi_reject(w, c, status, 1);
}

static void chi_maybe_continue(chi_worker *w, chi_conn *c, const ch_req *req, const chi_head *h)
{
    /* normally chi_early has sent it, once the middleware let the request in */
    if (h->expect_continue && req->version_minor == 1 && !c->continue_sent && !c->early_done) {
        chi_write_continue(w);
        c->continue_sent = 1;
    }
}

/* The body of the request whose head (hl bytes) starts p[0, n). Returns 1
   with req->body set and *total the request's whole length, 0 when more
   bytes are needed (c->want or the chunked state say how far), or -status. */
static int chi_request_body(chi_worker *w, chi_conn *c, char *p, size_t n, size_t hl, const chi_head *h, size_t *total)
{
    ch_req *req = &w->req;
    int r;
    switch (h->body_kind) {
    case CHI_BODY_NONE:
        req->body = p + hl;
        req->body_len = 0;
        *total = hl;
        return 1;
    case CHI_BODY_LENGTH:
        if (n - hl < h->content_length) {
            c->want = hl + (size_t)h->content_length;
            return 0;
        }
        req->body = p + hl;
        req->body_len = (size_t)h->content_length;
        *total = hl + req->body_len;
        return 1;
    default: /* chunked, decoded in place */
        if (!c->chunk_active) {
            chi_chunked_init(&c->chunk, hl);
            c->chunk_active = 1;
        }
        r = chi_chunked_decode(&c->chunk, p, n, w->app->lim.max_body, w->app->lim.max_header);
        if (r <= 0) return r;
        c->chunk_active = 0;
        req->body = p + hl;
        req->body_len = c->chunk.dst - hl;
        *total = c->chunk.src;
        return 1;
    }
}

#ifndef CHOPIN_NO_PROXY
/* The PROXY header a trusted proxy sends first (ch_config.proxy_protocol):
   its source address becomes the peer. Returns its length, or 0 when more
   bytes are needed; a malformed one closes the connection. */
static size_t chi_proxy_header(chi_worker *w, chi_conn *c, const char *buf, size_t len)
{
    chi_peer peer;
    long n = chi_proxy_parse(buf, len, &peer);
    if (n == 0) return 0;
    c->flags &= ~(unsigned)CHI_F_PROXY;
    if (n < 0) {
        chi_log(w, CH_LOG_WARN, CH_LOGITEM_BAD_PROXY_HEADER, "a trusted proxy's connection did not start with a valid "
                "PROXY header: closed");
        c->flags |= CHI_F_CLOSING;
        return len;
    }
    if (peer.family) c->peer = peer; /* LOCAL / UNKNOWN keep the proxy's own */
    return (size_t)n;
}
#endif

/* Answers every complete request in buf[0, len). Returns the bytes used; the
   rest is the start of an unfinished request. */
static size_t chi_process(chi_worker *w, chi_conn *c, char *buf, size_t len)
{
    const chi_limits *lim = &w->app->lim;
    ch_req *req = &w->req;
    size_t off = 0;
    chi_limits stream_lim;
    c->want = 0;
    if (w->app->nstream) { /* a stream route's body may be larger: chi_early checks */
        stream_lim = *lim;
        if (w->app->stream_max > stream_lim.max_body) stream_lim.max_body = (size_t)w->app->stream_max;
        lim = &stream_lim;
    }
#ifndef CHOPIN_NO_PROXY
    if ((c->flags & CHI_F_PROXY) && (off = chi_proxy_header(w, c, buf, len)) == 0) return 0;
#endif
    if (c->flags & CHI_F_CLOSING) return len;
    while (off < len) {
        char *p = buf + off;
        size_t n = len - off, total = 0;
        chi_head h;
        long hl;
        int keep_alive, r;
        if (w->out.len + chi_pending(c) > CHOPIN_MAX_PENDING || (c->flags & CHI_F_FILE)) {
            c->flags |= CHI_F_BACKLOG; /* resumed once the output drains */
            break;
        }
        /* an unfinished head is parsed again only once a new line came in */
        if (c->scanned && n > c->scanned && n <= lim->max_target && !memchr(p + c->scanned, '\n', n - c->scanned))
            break;
        hl = chi_parse_head_memo(p, n, lim, req, &h, &w->parse_memo);
        if (hl == 0) {
            c->scanned = n;
            break;
        }
        c->scanned = 0;
        if (hl < 0) {
            chi_reject_head(w, c, (int)-hl, p, n);
            return len;
        }
        if (h.body_kind != CHI_BODY_NONE && !c->early_done && (w->app->nstream || h.expect_continue)) {
            /* route and middleware decide before the body (>>uploads) */
            r = chi_early(w, c, req, &h, p, (size_t)hl, n);
            if (r == CHI_EARLY_ANSWERED) return len;
            if (r == CHI_EARLY_STREAM) return off; /* its head stays in c->in */
        }
        r = chi_request_body(w, c, p, n, (size_t)hl, &h, &total);
        if (r < 0) {
            chi_reject(w, c, -r, 1);
            return len;
        }
        if (r == 0) {
            chi_maybe_continue(w, c, req, &h);
            break;
        }
        c->continue_sent = 0;
        c->early_done = 0;
        w->out_failed = 0; /* whatever an earlier, deferred answer left */
        keep_alive = h.keep_alive && !w->stopping;
        req->conn = &c->peer;
        req->ctx = NULL;
        if (c->passed) /* the middleware ran before the body (>>uploads) */
            chi_dispatch_passed(w, c, req, keep_alive);
        else
            chi_dispatch(w, req, keep_alive);
        r = w->res.file ? chi_take_file(w, c) : 0;
        off += total;
        if (w->out_failed) { /* an answer is missing: close rather than skip it */
            w->out_failed = 0;
            chi_log(w, CH_LOG_ERROR, CH_LOGITEM_OUT_OF_MEMORY, "out of memory for an answer: closing the connection");
            c->flags |= CHI_F_CLOSING;
            return len;
        }
        if (!keep_alive) {
            /* what follows a closing request is never answered */
            c->flags |= CHI_F_CLOSING | (off < len ? CHI_F_LINGER_AFTER : 0);
            return len;
        }
        if (c->later) break; /* answered later: what follows waits for it */
        if (r && off < len) { /* the file goes before any later answer */
            c->flags |= CHI_F_BACKLOG;
            break;
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
        if (c->in.ptr) chi_buf_free(&c->in); /* idle connections hold no input buffer (none: no call) */
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

/* After every read or write: close if done, else register the interest the
   connection now has and put it in the right timeout queue. */
static void chi_after_io(chi_worker *w, chi_conn *c)
{
    unsigned ev = 0;
    int q;
    if (c->later) { /* answered later: >>later decides */
        chi_held_io(w, c);
        return;
    }
    /* the usual end of a keep-alive exchange: all sent, nothing kept,
       reading and idle already; what follows would change nothing */
    if (!(c->flags & (CHI_F_CLOSING | CHI_F_LINGER | CHI_F_FILE | CHI_F_BACKLOG | CHI_F_PAUSED)) && chi_pending(c) == 0 &&
        c->in.len == 0 && c->events == CHI_EV_READ && c->queue == CHI_Q_IDLE && !w->stopping)
        return;
    if (chi_pending(c) == 0 && (c->flags & CHI_F_CLOSING) && !(c->flags & (CHI_F_LINGER | CHI_F_FILE))) {
        if (!(c->flags & CHI_F_LINGER_AFTER) || (c->flags & CHI_F_PEER_EOF) || chi_poller_shutdown_write(w->poller, c->fd) < 0) {
            chi_close(w, c);
            return;
        }
        c->flags |= CHI_F_LINGER;
    }
    if (chi_pending(c) || (c->flags & CHI_F_FILE)) ev |= CHI_EV_WRITE;
    if ((c->flags & CHI_F_LINGER) ||
        (!(c->flags & (CHI_F_CLOSING | CHI_F_BACKLOG | CHI_F_PAUSED)) && chi_pending(c) < CHOPIN_MAX_PENDING))
        ev |= CHI_EV_READ;
    if (ev != c->events) {
        if (chi_poller_mod(w->poller, c->fd, c->events, ev, (uint64_t)c->fd) < 0) {
            chi_close(w, c);
            return;
        }
        c->events = ev;
    }
    if (c->flags & CHI_F_LINGER)
        q = CHI_Q_LINGER;
    else if (chi_pending(c) || (c->flags & CHI_F_FILE))
        q = CHI_Q_WRITE;
    else if (c->in.len)
        q = (c->flags & CHI_F_PAUSED) ? CHI_Q_NONE /* the consumer's wait, not the client's */
            : (c->want || c->chunk_active || c->stream) ? CHI_Q_BODY : CHI_Q_HEAD;
    else
        q = CHI_Q_IDLE;
    if (q == CHI_Q_IDLE && w->stopping && !w->idle_close_at) { /* (a hand-over's grace: kept) */
        chi_close(w, c);
        return;
    }
    if (q == CHI_Q_NONE)
        chi_q_unlink(w, c);
    else
        chi_q_set(w, c, q);
}

/* Drops the batch being written and the connection with it. */
static void chi_drop(chi_worker *w, chi_conn *c)
{
    w->out.len = 0;
    chi_close(w, c);
}

/* Sends the batch of answers in w->out: one send per read batch. What the
   socket does not take waits in c->out. When it took everything and
   requests were held back (CHI_F_BACKLOG), they are answered at once: no
   write event will come to resume them. */
static void chi_flush(chi_worker *w, chi_conn *c)
{
    size_t used;
    int rc;
    for (;;) {
        if (w->out.len) {
            size_t sent = 0;
            if (chi_out_pending(c) == 0) {
                /* a file body follows at once: the head waits for it (MSG_MORE) */
                long r = (c->flags & CHI_F_FILE) ? chi_poller_send_more(w->poller, c->fd, w->out.ptr, w->out.len)
                                                 : chi_poller_send(w->poller, c->fd, w->out.ptr, w->out.len);
                if (r == CHI_IO_ERROR) {
                    chi_drop(w, c);
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
                chi_drop(w, c);
                return;
            }
            w->out.len = 0;
            chi_release_big(w); /* a huge answer does not stay */
        }
        if ((c->flags & CHI_F_FILE) && chi_out_pending(c) == 0 && chi_send_file(w, c) < 0) {
            chi_drop(w, c);
            return;
        }
        if (!(c->flags & CHI_F_BACKLOG) || chi_pending(c) != 0 || (c->flags & CHI_F_FILE)) break;
        c->flags &= ~(unsigned)CHI_F_BACKLOG;
        w->cur = c;
        used = chi_process(w, c, c->in.ptr, c->in.len);
        rc = chi_keep_rest(c, c->in.ptr, c->in.len, used, 0);
        if (rc == 0 && c->stream) rc = chi_stream_pump(w, c);
        w->cur = NULL;
        if (rc < 0) {
            chi_drop(w, c);
            return;
        }
    }
    chi_after_io(w, c);
}

/* A lingering connection: what arrives is thrown away until the client
   closes, or sends too much. */
static void chi_linger_received(chi_worker *w, chi_conn *c, long n)
{
    if (n == CHI_IO_AGAIN) return;
    if (n <= 0 || (c->drained += (size_t)n) > CHI_LINGER_MAX) chi_close(w, c);
}

/* Where the next bytes go: the worker's scratch buffer when no request is
   unfinished (idle connections own no buffer), else after the unfinished
   request in c->in, which grows by doubling as a body arrives: a declared
   Content-Length reserves nothing the client has not sent. */
static int chi_conn_rbuf(chi_worker *w, chi_conn *c, char **buf, size_t *cap)
{
    if (c->in.len == 0 || (c->flags & CHI_F_LINGER)) {
        *buf = w->scratch;
        *cap = CHOPIN_READ_SIZE;
        return 0;
    }
    if (c->in.cap - c->in.len < 4096 && chi_buf_reserve(&c->in, c->in.cap ? c->in.cap : 4096) < 0) return -1;
    *buf = c->in.ptr + c->in.len;
    *cap = c->in.cap - c->in.len;
    return 0;
}

/* n bytes arrived in the buffer chi_conn_rbuf gave, or an I/O result. */
static void chi_conn_received(chi_worker *w, chi_conn *c, long n)
{
    int from_scratch = c->in.len == 0;
    char *buf;
    size_t len, used;
    int rc;
    if (c->flags & CHI_F_LINGER) {
        chi_linger_received(w, c, n);
        return;
    }
    if (n == CHI_IO_AGAIN) return;
    if (n == CHI_IO_ERROR) {
        chi_close(w, c);
        return;
    }
    if (n == CHI_IO_EOF) {
        if (c->later) { /* it left while we answer later */
            chi_close(w, c);
            return;
        }
        /* the client is done sending; an unfinished request is dropped, and
           answers already made still go out (a half-closed client) */
        c->flags |= CHI_F_PEER_EOF | CHI_F_CLOSING;
        if (c->stream) chi_stream_abort(c);
        chi_buf_free(&c->in);
        chi_after_io(w, c);
        return;
    }
    /* a request head must be whole within header_timeout of its first
       byte: bytes dribbled into an unfinished head are not progress, so a
       slowloris client is cut off; body bytes are progress */
    if (c->later) {
#ifndef CHOPIN_NO_WEBSOCKET
        if (c->later->ws) { /* a WebSocket's frames, not held requests */
            chi_ws_received(w, c, n);
            return;
        }
#endif
        chi_hold_input(w, c, n);
        return;
    }
    if (from_scratch || c->want || c->chunk_active || c->stream) chi_touch(w, c);
    CHI_COUNT(w, bytes_in, (uint64_t)n);
    if (from_scratch) {
        buf = w->scratch;
        len = (size_t)n;
    } else {
        c->in.len += (size_t)n;
        buf = c->in.ptr;
        len = c->in.len;
    }
    /* a streamed body goes to its consumer; anything else is parsed */
    w->cur = c;
    if (c->stream) {
        rc = chi_stream_pump(w, c);
    } else {
        used = chi_process(w, c, buf, len);
        rc = chi_keep_rest(c, buf, len, used, from_scratch);
        if (rc == 0 && c->stream) rc = chi_stream_pump(w, c); /* a stream began in this batch */
    }
    w->cur = NULL;
    if (rc < 0) {
        chi_drop(w, c);
        return;
    }
    chi_flush(w, c);
}

/* The socket took n bytes of c->out, or an I/O result. */
static void chi_conn_sent(chi_worker *w, chi_conn *c, long n)
{
    if (n == CHI_IO_AGAIN) return;
    if (n < 0) {
        chi_close(w, c);
        return;
    }
    chi_touch(w, c);
    c->out_off += (size_t)n;
    if (chi_pending(c) == 0) {
        if (c->later) /* a stream refills it: keep the memory */
            c->out.len = 0;
        else
            chi_buf_free(&c->out);
        c->out_off = 0;
        chi_flush(w, c); /* answers the requests held back, if any */
        return;
    }
    chi_after_io(w, c);
}

/* Readiness: the socket has bytes (or an error, or EOF) for us. */
static void chi_on_readable(chi_worker *w, chi_conn *c)
{
    char *buf;
    size_t cap;
    if (chi_conn_rbuf(w, c, &buf, &cap) < 0) {
        chi_close(w, c);
        return;
    }
    chi_conn_received(w, c, chi_os_recv(c->fd, buf, cap));
}

#if defined(CHI_OS_IO_URING)
/* Completion: the ring received bytes for c (or its end, or an error):
   they go where a read would have put them (chi_conn_rbuf), in as many
   pieces as that buffer needs. c is NULL when the connection has gone. */
static void chi_on_received(chi_worker *w, chi_conn *c)
{
    const char *data = NULL;
    long n = chi_poller_data(w->poller, &data);
    if (c && n <= 0) chi_conn_received(w, c, n);
    while (c && n > 0) {
        char *buf;
        size_t cap, k;
        int fd = c->fd;
        if (chi_conn_rbuf(w, c, &buf, &cap) < 0) {
            chi_close(w, c);
            break;
        }
        k = (size_t)n < cap ? (size_t)n : cap;
        memcpy(buf, data, k);
        data += k;
        n -= (long)k;
        chi_conn_received(w, c, (long)k);
        if (w->conns[fd] != c) break; /* closed */
    }
    chi_poller_data_done(w->poller);
}
#endif

/* Readiness: the socket takes more of what it did not take before. */
static void chi_on_writable(chi_worker *w, chi_conn *c)
{
    if (chi_out_pending(c) == 0) { /* a file body: chi_flush sends the next piece */
        chi_flush(w, c);
        return;
    }
    chi_conn_sent(w, c, chi_poller_send(w->poller, c->fd, c->out.ptr + c->out_off, chi_out_pending(c)));
}

/* A timeout: a stalled request gets 408; anything else just closes. */
static void chi_expire(chi_worker *w, chi_conn *c)
{
    CHI_COUNT(w, timeouts, 1);
    chi_log(w, CH_LOG_DEBUG, CH_LOGITEM_TIMEOUT, "a connection timed out (waiting for %s)",
            c->queue == CHI_Q_IDLE ? "a request" : c->queue == CHI_Q_HEAD ? "a request head" :
            c->queue == CHI_Q_BODY ? "a request body" : c->queue == CHI_Q_WRITE ? "the client to read" : "a close");
    if ((c->queue == CHI_Q_HEAD || c->queue == CHI_Q_BODY) && chi_pending(c) == 0) {
        size_t before = w->out.len;
        chi_write_error(w, 408, "", 0, 1, 0, 1);
        /* nothing of an earlier request may show (its buffer may be gone) */
        w->req.method_name = w->req.target = chi_str(NULL, 0);
        w->req.version_minor = 1; /* as the 408 says, not an earlier request's */
        w->req.header_count = 0;
        memset(w->req.common, 0, sizeof w->req.common);
        chi_dispatch_refusal(w, &w->req, &c->peer, 408, before);
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

/* >>later -------------------------------------------------------------------
   Answering later. A handler that calls ch_res_defer hands its response to a
   chi_later and returns; the connection then holds every request pipelined
   behind it (chi_process stops at the request boundary, the bytes wait in
   c->in, reading pauses once CHI_HELD_INPUT of them are held) and reads on
   only to learn that the client left. The later response is written when
   the user finishes it, from a timer, a post or the off-loop pool, into the
   connection's own output queue (c->out; w->out only while that connection
   is the one being answered, so responses stay in request order). Nothing
   here closes a connection or calls the user back from inside a call the
   user made: a connection that needs work is marked "dirty" and settled by
   the worker loop after its events (chi_settle_all): it is written, the
   producer's drain callback runs, a cut-off stream is closed, and the
   requests held behind a finished response are answered.

   A chi_later is held twice: by the connection (l->c, until it is sent,
   aborted or the client leaves) and by the user (until finish, end or
   release). It is recycled when both have let go; its generation then
   changes, so an old ch_defer finds nothing and every call on it is a
   defined no-op.

   Body sources: a stream's bytes come from ch_defer_write (copied into
   c->out) and flow control is the drain callback, run when c->out falls
   to CHI_STREAM_LOW after a write said "over the bound". Another producer
   (a file with sendfile, a WebSocket) plugs in the same way: begin the
   response, push bytes or send directly when chi_pending(c) is 0, and set
   want_drain + on_drain to be called when the socket has taken the queue
   (see ASYNC_API.md). */

/* Appends bytes: chi_buf_append's twin, so that one keeps the callers it
   had and stays inlined in the fast path. */
static CHI_OUTLINE int chi_later_add(chi_buf *b, const void *p, size_t n)
{
    if (n == 0) return 0; /* (a body unlike chi_buf_append's, so no pass merges the two) */
    if (chi_buf_reserve(b, n) < 0) return -1;
    memcpy(b->ptr + b->len, p, n);
    b->len += n;
    return 0;
}

static CHI_OUTLINE ch_defer chi_later_handle(chi_worker *w, const chi_later *l)
{
    ch_defer d;
    d.w = w;
    d.id = ((uint64_t)l->gen << 32) | (uint64_t)(l->index + 1);
    return d;
}

/* The later a handle names, or NULL when it is stale. */
static CHI_OUTLINE chi_later *chi_later_get(ch_defer d)
{
    chi_worker *w = d.w;
    uint32_t i = (uint32_t)(d.id & 0xFFFFFFFFu) - 1u;
    chi_later *l;
    if (!w || !d.id || i >= w->nlaters) return NULL;
    l = w->laters[i];
    return l->state != CHI_L_FREE && l->gen == (uint32_t)(d.id >> 32) ? l : NULL;
}

static CHI_OUTLINE chi_later *chi_later_new(chi_worker *w)
{
    chi_later *l = w->free_laters;
    if (l) {
        w->free_laters = l->next_free;
    } else {
        if (w->nlaters == w->laters_cap) {
            uint32_t cap = w->laters_cap ? w->laters_cap * 2 : 64;
            chi_later **t = (chi_later **)CHOPIN_REALLOC(w->laters, sizeof(chi_later *) * cap);
            if (!t) return NULL;
            w->laters = t;
            w->laters_cap = cap;
        }
        l = (chi_later *)CHOPIN_MALLOC(sizeof *l);
        if (!l) return NULL;
        memset(l, 0, sizeof *l);
        l->index = w->nlaters;
        l->gen = 1;
        w->laters[w->nlaters++] = l;
    }
    l->state = CHI_L_WAITING;
    l->user_holds = 1;
    return l;
}

/* Both holders have let go: the slot is free for the next ch_res_defer. */
static CHI_OUTLINE void chi_later_maybe_free(chi_worker *w, chi_later *l)
{
    uint32_t gen = l->gen + 1;
    if (l->state == CHI_L_FREE || l->user_holds || l->c) return;
    chi_timers_cancel(&w->timers, l->deadline);
    chi_timers_cancel(&w->timers, l->heartbeat);
    /* its buffers stay for the next one (freed with the worker); the rest
       is set again by ch_res_defer */
    l->res.ctype.len = l->res.headers.len = l->line.len = 0;
    chi_res_drop_file(&l->res); /* a file answer never sent */
    ch_json_reset(&l->json);
    l->gen = gen ? gen : 1;
    l->state = CHI_L_FREE;
    l->on_abort = l->on_drain = NULL;
    l->want_drain = l->sse = 0;
    l->deadline = l->heartbeat = 0;
    l->next_free = w->free_laters;
    w->free_laters = l;
}

/* Queues c for chi_settle_all (once). */
static CHI_OUTLINE void chi_mark_dirty(chi_worker *w, chi_conn *c)
{
    if (c->flags & CHI_F_DIRTY) return;
    if (w->ndirty == w->dirty_cap) {
        size_t cap = w->dirty_cap ? w->dirty_cap * 2 : 64;
        int *t = (int *)CHOPIN_REALLOC(w->dirty, sizeof *t * cap);
        if (!t) return; /* out of memory: it is settled by its next event */
        w->dirty = t;
        w->dirty_cap = cap;
    }
    w->dirty[w->ndirty++] = c->fd;
    c->flags |= CHI_F_DIRTY;
}

/* The output a later response of c writes to, through w->out so that the
   same writers (chi_head_put, chi_write_error) serve every case:
     0  c is the connection being answered: its batch, w->out itself;
     2  nothing is queued for c and w->out is empty: w->out, sent at once
        by chi_out_return (no buffer of c's to allocate and free);
     1  else c->out, lent to w->out (saved keeps w->out). */
enum { CHI_OUT_BATCH, CHI_OUT_QUEUE, CHI_OUT_DIRECT };
static CHI_OUTLINE int chi_out_borrow(chi_worker *w, chi_conn *c, chi_buf *saved)
{
    if (c == w->cur) return CHI_OUT_BATCH;
    if (chi_pending(c) == 0 && w->out.len == 0) return CHI_OUT_DIRECT;
    if (c->out_off) { /* what was sent goes; the queue starts at 0 again */
        memmove(c->out.ptr, c->out.ptr + c->out_off, c->out.len - c->out_off);
        c->out.len -= c->out_off;
        c->out_off = 0;
    }
    *saved = w->out;
    w->out = c->out;
    return CHI_OUT_QUEUE;
}

/* Never closes nor calls the user: a failed send marks c to be cut off, and
   the settle pass does the rest (resume, interest, timeouts). */
static CHI_OUTLINE void chi_out_return(chi_worker *w, chi_conn *c, const chi_buf *saved, int how)
{
    if (how == CHI_OUT_BATCH) return;
    if (how == CHI_OUT_QUEUE) {
        c->out = w->out;
        w->out = *saved;
    } else if (w->out.len) {
        long r = chi_poller_send(w->poller, c->fd, w->out.ptr, w->out.len);
        size_t sent = r > 0 ? (size_t)r : 0;
        /* the rest waits in c->out; a dead peer or no memory: cut off */
        if (r == CHI_IO_ERROR || (sent < w->out.len && chi_later_add(&c->out, w->out.ptr + sent, w->out.len - sent) < 0))
            c->flags |= CHI_F_KILL;
        w->out.len = 0;
        if (w->out.cap > CHI_OUT_KEEP) chi_buf_free(&w->out);
    }
    chi_mark_dirty(w, c);
}

static CHI_OUTLINE size_t chi_later_queued(const chi_worker *w, const chi_conn *c)
{
    return chi_pending(c) + (c == w->cur ? w->out.len : 0);
}

/* The connection lets go: the response was sent (DONE), cannot be
   (ABORT: the deadline, a cut-off, the server stopping), or the client left
   (GONE: c is being closed). The abort callback runs here, never inside a
   call the user made. */
static CHI_OUTLINE void chi_later_detach(chi_worker *w, chi_later *l, int why)
{
    chi_conn *c = l->c;
    if (!c) return;
    l->c = NULL;
    c->later = NULL;
    c->flags &= ~(unsigned)CHI_F_STALL;
    w->live--;
    chi_timers_cancel(&w->timers, l->deadline);
    chi_timers_cancel(&w->timers, l->heartbeat);
    l->deadline = l->heartbeat = 0;
    l->want_drain = 0;
    if (why != CHI_WHY_GONE) chi_mark_dirty(w, c);
    if (why != CHI_WHY_DONE) {
        l->state = CHI_L_DONE;
        if (l->on_abort && l->user_holds) {
            ch_defer_fn fn = l->on_abort;
            l->on_abort = NULL;
            fn(chi_later_handle(w, l), l->abort_user);
        }
    }
    chi_later_maybe_free(w, l);
}

/* The request as finishers and after-hooks see it once its handler has
   returned: method, target and version (the rest of the bytes are gone). */
static CHI_OUTLINE void chi_later_req(chi_worker *w, const chi_later *l, ch_req *r)
{
    const char *t = l->line.ptr + l->method_len, *q;
    size_t tl = l->line.len - l->method_len;
    memset(r, 0, sizeof *r);
    r->method = l->method;
    r->method_name = chi_str(l->line.ptr, l->method_len);
    r->target = chi_str(t, tl);
    q = tl ? (const char *)memchr(t, '?', tl) : NULL;
    r->path = chi_str(t, q ? (size_t)(q - t) : tl);
    r->query = q ? chi_str(q + 1, tl - (size_t)(q - t) - 1) : chi_str(t + tl, 0);
    r->version_minor = l->minor;
    r->headers = w->req_store.headers;
    r->params = w->req_store.params;
    r->conn = l->c ? &l->c->peer : NULL;
}

static CHI_OUTLINE void chi_later_after_hooks(chi_worker *w, chi_later *l)
{
    ch_app *app = w->app;
    ch_req r;
    int i;
    if (!app->nafter) return;
    chi_later_req(w, l, &r);
    l->res.end_ns = chi_os_now_ns();
    for (i = 0; i < app->nafter; i++) app->after[i].fn(&r, &l->res, app->after[i].user);
}

CHOPIN_API ch_defer ch_res_defer(ch_res *res)
{
    chi_worker *w = res->w;
    chi_conn *c = w->cur;
    ch_req *req = &w->req;
    ch_defer none;
    chi_later *l;
    chi_buf ct, hd;
    none.w = w;
    none.id = 0;
    if (res != &w->res || !c) return none;                 /* not a handler's response */
    if (c->later) return chi_later_handle(w, c->later);    /* asked twice */
    if (w->deferring) return none;                         /* deferred and finished already */
    if (w->live >= w->app->cfg.max_deferred || !(l = chi_later_new(w))) {
        ch_res_error(res, 503);
        return none;
    }
    /* the response moves into the later: its header buffers change hands
       (the worker's response gets the later's empty ones) */
    ct = l->res.ctype;
    hd = l->res.headers;
    l->res = *res;
    l->res.later = l;
    res->ctype = ct;
    res->headers = hd;
    res->file = 0; /* a file answer made already moved too */
    l->res.json = &l->json;
    l->framing = CHI_LF_LENGTH;
    l->left = 0;
    l->no_body = 0;
    l->sse = 0;
    if (res->body == res->err_body) l->res.body = l->res.err_body;
    if (res->body_is_json) chi_json_raw(&l->json, w->json.buf, w->json.len);
    if (chi_later_add(&l->line, req->method_name.ptr, req->method_name.len) < 0 ||
        chi_later_add(&l->line, req->target.ptr, req->target.len) < 0) {
        l->user_holds = 0;
        chi_later_maybe_free(w, l);
        ch_res_error(res, 503);
        return none;
    }
#ifndef CHOPIN_NO_STATIC
    if (chi_ask_keep(l, req) < 0) { /* for ch_res_file(NULL, res, ...) later */
        l->user_holds = 0;
        chi_later_maybe_free(w, l);
        ch_res_error(res, 503);
        return none;
    }
#endif
    l->method_len = req->method_name.len;
    l->method = req->method;
    l->minor = req->version_minor;
    l->keep_alive = w->keep_alive;
    l->head_only = req->method == CH_HEAD;
    l->c = c;
    c->later = l;
    w->live++;
    w->deferring = 1;
    return chi_later_handle(w, l);
}

CHOPIN_API ch_res *ch_defer_res(ch_defer d)
{
    chi_later *l = chi_later_get(d);
    if (l) return &l->res;
    if (!d.w) return NULL;
    chi_res_reset(&d.w->sink); /* writes to it go nowhere */
    return &d.w->sink;
}

CHOPIN_API int ch_defer_alive(ch_defer d)
{
    chi_later *l = chi_later_get(d);
    return l && l->c && l->user_holds && !(l->c->flags & CHI_F_KILL);
}

CHOPIN_API int ch_defer_on_abort(ch_defer d, ch_defer_fn fn, void *user)
{
    chi_later *l = chi_later_get(d);
    if (!l || !l->user_holds) return -1;
    l->on_abort = fn;
    l->abort_user = user;
    return 0;
}

CHOPIN_API int ch_defer_on_drain(ch_defer d, ch_defer_fn fn, void *user)
{
    chi_later *l = chi_later_get(d);
    if (!l || !l->user_holds) return -1;
    l->on_drain = fn;
    l->drain_user = user;
    return 0;
}

CHOPIN_API size_t ch_defer_queued(ch_defer d)
{
    chi_later *l = chi_later_get(d);
    return l && l->c ? chi_later_queued(d.w, l->c) : 0;
}

/* Writes the whole response a waiting later holds. */
static CHI_OUTLINE void chi_later_send_whole(chi_worker *w, chi_later *l)
{
    chi_conn *c = l->c;
    chi_buf saved;
    ch_req r;
    int borrowed = chi_out_borrow(w, c, &saved);
    size_t before = w->out.len;
    int ka = l->keep_alive && !w->stopping;
    chi_later_req(w, l, &r);
    chi_res_write(w, &l->res, &r, ka);
    l->res.bytes = w->out.len - before + (l->res.file ? (size_t)l->res.file_len : 0);
    if (!ka) c->flags |= CHI_F_CLOSING;
#ifndef CHOPIN_NO_STATIC
    chi_conn_file(c, &l->res); /* a file body follows its head (>>static) */
#endif
    chi_out_return(w, c, &saved, borrowed);
    chi_later_after_hooks(w, l);
}

CHOPIN_API int ch_defer_end(ch_defer d);

CHOPIN_API int ch_defer_finish(ch_defer d)
{
    chi_later *l = chi_later_get(d);
    if (!l || !l->user_holds) return -1;
    if (l->state == CHI_L_STREAM) return ch_defer_end(d);
    l->user_holds = 0;
    if (!l->c || l->state != CHI_L_WAITING || (l->c->flags & CHI_F_KILL)) {
        chi_later_maybe_free(d.w, l);
        return -1;
    }
    chi_later_send_whole(d.w, l);
    chi_later_detach(d.w, l, CHI_WHY_DONE);
    return 0;
}

CHOPIN_API void ch_defer_release(ch_defer d)
{
    chi_later *l = chi_later_get(d);
    if (!l || !l->user_holds) return;
    if (l->state == CHI_L_STREAM) {
        ch_defer_end(d);
        return;
    }
    if (l->c && l->state == CHI_L_WAITING) {
        chi_res_reset(&l->res);
        ch_res_error(&l->res, 500); /* abandoned unanswered */
        ch_defer_finish(d);
        return;
    }
    l->user_holds = 0;
    chi_later_maybe_free(d.w, l);
}

/* An error status instead of the response (the deadline, shutdown); the
   user learns it through the abort callback. */
static CHI_OUTLINE void chi_later_refuse(chi_worker *w, chi_later *l, int status)
{
    chi_conn *c = l->c;
    chi_buf saved;
    int borrowed = chi_out_borrow(w, c, &saved);
    int ka = l->keep_alive && !w->stopping;
    chi_write_error(w, status, "", 0, !l->head_only, ka, l->minor);
    if (!ka) c->flags |= CHI_F_CLOSING;
    chi_out_return(w, c, &saved, borrowed);
    l->res.status = status;
    chi_later_detach(w, l, CHI_WHY_ABORT);
}

static CHI_OUTLINE void chi_later_deadline_fired(ch_worker *w, void *user)
{
    chi_later *l = (chi_later *)user;
    l->deadline = 0;
    if (l->c && l->state == CHI_L_WAITING) chi_later_refuse(w, l, l->deadline_status);
}

CHOPIN_API int ch_defer_deadline(ch_defer d, uint64_t ms, int status)
{
    chi_later *l = chi_later_get(d);
    if (!l || !l->c || l->state != CHI_L_WAITING || status < 400 || status > 599) return -1;
    chi_timers_cancel(&d.w->timers, l->deadline);
    l->deadline_status = status;
    l->deadline = ch_timer_start(d.w, ms, 0, chi_later_deadline_fired, l);
    return l->deadline ? 0 : -1;
}

/* Streaming: the head, with the framing the body needs. */
CHOPIN_API int ch_defer_begin(ch_defer d, int64_t length)
{
    chi_worker *w = d.w;
    chi_later *l = chi_later_get(d);
    chi_conn *c;
    chi_head_spec h;
    chi_buf saved;
    ch_req r;
    ch_res *res;
    int i, borrowed, ka;
    if (!l || !l->c || !l->user_holds || l->state != CHI_L_WAITING || (l->c->flags & CHI_F_KILL)) return -1;
    c = l->c;
    res = &l->res;
    chi_later_req(w, l, &r);
    for (i = 0; i < res->nfinish; i++) res->finish[i](&r, res, res->finish_user[i]);
    res->nfinish = 0;
    if (res->status < 200 || res->status > 599) res->status = 500;
    chi_timers_cancel(&w->timers, l->deadline);
    l->deadline = 0;
    ka = l->keep_alive && !w->stopping;
    l->no_body = l->head_only || !chi_status_has_body(res->status);
    h = chi_spec(w, res->status, ka, l->minor);
    h.ctype = res->ctype.ptr;
    h.ctype_len = res->ctype.len;
    h.extra = res->headers.ptr;
    h.extra_len = res->headers.len;
    if (length >= 0) {
        l->framing = CHI_LF_LENGTH;
        l->left = (uint64_t)length;
        h.length = (uint64_t)length;
    } else if (l->minor >= 1) {
        l->framing = CHI_LF_CHUNKED;
        h.framing = CHI_FRAME_CHUNKED;
    } else {
        l->framing = CHI_LF_CLOSE; /* HTTP/1.0: the body ends when we close */
        h.framing = CHI_FRAME_NONE;
        h.keep_alive = ka = 0;
    }
    borrowed = chi_out_borrow(w, c, &saved);
    if (chi_buf_reserve(&w->out, chi_head_size(&h)) == 0) {
        size_t before = w->out.len;
        w->out.len = (size_t)(chi_head_put(w->out.ptr + w->out.len, &h) - w->out.ptr);
        res->bytes = w->out.len - before;
    } else {
        c->flags |= CHI_F_KILL;
    }
    if (!ka) c->flags |= CHI_F_CLOSING;
    l->keep_alive = ka;
    chi_out_return(w, c, &saved, borrowed);
    if (c->flags & CHI_F_KILL) {
        chi_mark_dirty(w, c);
        return -1;
    }
    l->state = CHI_L_STREAM;
    return l->no_body ? 1 : 0;
}

/* Queues raw bytes of a stream (framing included): 0, 1 over the bound, -1 cut off. */
static CHI_OUTLINE int chi_later_push(chi_worker *w, chi_later *l, const char *pre, size_t pre_len, const void *data, size_t len,
                          const char *post, size_t post_len)
{
    chi_conn *c = l->c;
    size_t queued = chi_later_queued(w, c), n = pre_len + len + post_len;
    chi_buf saved;
    int borrowed, ok;
    if (queued > CHI_STREAM_CUT) {
        c->flags |= CHI_F_KILL; /* it did not wait for the drain callback */
        chi_mark_dirty(w, c);
        return -1;
    }
    borrowed = chi_out_borrow(w, c, &saved);
    ok = chi_buf_reserve(&w->out, n) == 0;
    if (ok) {
        char *p = chi_put(w->out.ptr + w->out.len, pre, pre_len);
        p = chi_put(p, (const char *)data, len);
        p = chi_put(p, post, post_len);
        w->out.len = (size_t)(p - w->out.ptr);
        l->res.bytes += n;
    }
    chi_out_return(w, c, &saved, borrowed);
    if (!ok) {
        c->flags |= CHI_F_KILL;
        chi_mark_dirty(w, c);
        return -1;
    }
    if (queued + n >= (size_t)CHOPIN_STREAM_BUFFER) {
        l->want_drain = 1;
        return 1;
    }
    return 0;
}

/* A stream the user may write to now, or NULL. */
static CHI_OUTLINE chi_later *chi_later_writable(ch_defer d)
{
    chi_later *l = chi_later_get(d);
    if (!l || !l->c || !l->user_holds || l->state != CHI_L_STREAM || (l->c->flags & CHI_F_KILL)) return NULL;
    return l;
}

/* One piece of body, framed. */
static CHI_OUTLINE int chi_later_piece(chi_worker *w, chi_later *l, const void *data, size_t len)
{
    char size[24];
    size_t sl = 0;
    if (l->no_body || len == 0) return 0;
    if (l->framing == CHI_LF_LENGTH) {
        if (len > l->left) { /* more than announced: the framing would break */
            l->c->flags |= CHI_F_KILL;
            chi_mark_dirty(w, l->c);
            return -1;
        }
        l->left -= len;
    }
    if (l->framing == CHI_LF_CHUNKED) {
        static const char hex[] = "0123456789abcdef";
        char tmp[16];
        size_t k = 0, v = len;
        while (v) {
            tmp[k++] = hex[v & 15];
            v >>= 4;
        }
        while (k) size[sl++] = tmp[--k];
        size[sl++] = '\r';
        size[sl++] = '\n';
        return chi_later_push(w, l, size, sl, data, len, "\r\n", 2);
    }
    return chi_later_push(w, l, NULL, 0, data, len, NULL, 0);
}

CHOPIN_API int ch_defer_write(ch_defer d, const void *data, size_t len)
{
    chi_later *l = chi_later_writable(d);
    if (!l) return -1;
    return chi_later_piece(d.w, l, data, len);
}

/* The end of a stream's body: the last chunk, or a close for HTTP/1.0. */
static CHI_OUTLINE int chi_later_close_body(chi_worker *w, chi_later *l)
{
    chi_conn *c = l->c;
    if (l->no_body) return 0;
    if (l->framing == CHI_LF_CHUNKED) return chi_later_push(w, l, "0\r\n\r\n", 5, NULL, 0, NULL, 0) < 0 ? -1 : 0;
    if (l->framing == CHI_LF_CLOSE) {
        c->flags |= CHI_F_CLOSING;
        return 0;
    }
    if (l->left) { /* fewer bytes than announced: only a close can tell */
        c->flags |= CHI_F_KILL;
        chi_mark_dirty(w, c);
        return -1;
    }
    return 0;
}

CHOPIN_API int ch_defer_end(ch_defer d)
{
    chi_later *l = chi_later_get(d);
    int rc;
    if (!l || !l->user_holds) return -1;
    if (l->state == CHI_L_WAITING) return ch_defer_finish(d);
    l->user_holds = 0;
    if (!l->c || l->state != CHI_L_STREAM || (l->c->flags & CHI_F_KILL)) {
        chi_later_maybe_free(d.w, l);
        return -1;
    }
    rc = chi_later_close_body(d.w, l);
    if (!l->keep_alive) l->c->flags |= CHI_F_CLOSING;
    chi_later_after_hooks(d.w, l);
    chi_later_detach(d.w, l, CHI_WHY_DONE);
    return rc;
}

static CHI_OUTLINE void chi_no_timer(ch_worker *w, void *user)
{
    (void)w;
    (void)user;
}

/* A timer whose callback takes the handle: the heap slot carries it. */
CHOPIN_API ch_timer ch_defer_after(ch_defer d, uint64_t ms, ch_defer_fn fn, void *user)
{
    ch_timer id;
    if (!d.w || !fn) return 0;
    id = ch_timer_start(d.w, ms, 0, chi_no_timer, user);
    chi_timers_for_defer(&d.w->timers, id, fn, d.id);
    return id;
}

/* Posts: any thread. */
static CHI_OUTLINE int chi_post_node(chi_worker *w, chi_qnode *n)
{
    int was_empty;
#if CHI_ATOMICS
    was_empty = chi_mpsc_push(&w->inbox, n);
#else
    chi_os_lock(&w->inbox_mu);
    was_empty = chi_mpsc_push(&w->inbox, n);
    chi_os_unlock(&w->inbox_mu);
#endif
    if (was_empty) chi_waker_wake(w->wake);
    return 0;
}

CHOPIN_API int ch_defer_post(ch_defer d, ch_defer_fn fn, void *user)
{
    chi_qnode *n;
    if (!d.w || !fn || !(n = (chi_qnode *)CHOPIN_MALLOC(sizeof *n))) return -1;
    memset(n, 0, sizeof *n);
    n->dfn = fn;
    n->d = d;
    n->user = user;
    return chi_post_node(d.w, n);
}

CHOPIN_API int ch_worker_post(ch_worker *w, ch_worker_fn fn, void *user)
{
    chi_qnode *n;
    if (!w || !fn || !(n = (chi_qnode *)CHOPIN_MALLOC(sizeof *n))) return -1;
    memset(n, 0, sizeof *n);
    n->wfn = fn;
    n->user = user;
    return chi_post_node(w, n);
}

/* The worker: everything posted so far, oldest first. */
static CHI_OUTLINE void chi_run_inbox(chi_worker *w)
{
    chi_qnode *n;
#if CHI_ATOMICS
    n = chi_mpsc_take(&w->inbox);
#else
    chi_os_lock(&w->inbox_mu);
    n = chi_mpsc_take(&w->inbox);
    chi_os_unlock(&w->inbox_mu);
#endif
    while (n) {
        chi_qnode *next = n->next;
        if (n->wfn)
            n->wfn(w, n->user);
        else if (n->dfn)
            n->dfn(n->d, n->user);
        CHOPIN_FREE(n); /* a pool job's node is at its start: this frees the job */
        n = next;
    }
}

/* chi_after_io for a connection whose response is in progress: never
   closed here; read on (to see the client leave) until CHI_HELD_INPUT bytes
   are held; no timeout of ours unless output waits for the client
   (write_timeout); the drain callback is due once the queue is low. */
static CHI_OUTLINE void chi_held_io(chi_worker *w, chi_conn *c)
{
    unsigned ev = chi_pending(c) ? CHI_EV_WRITE : 0u;
    if (!(c->flags & CHI_F_STALL)) ev |= CHI_EV_READ;
    if (ev != c->events) {
        if (chi_poller_mod(w->poller, c->fd, c->events, ev, (uint64_t)c->fd) < 0) {
            chi_close(w, c);
            return;
        }
        c->events = ev;
    }
    if (c->later->want_drain && chi_pending(c) <= CHI_STREAM_LOW) chi_mark_dirty(w, c);
    if (chi_pending(c))
        chi_q_set(w, c, CHI_Q_WRITE);
    else
        chi_q_unlink(w, c);
}

/* Held input: bytes that came behind a later response wait in c->in. */
static CHI_OUTLINE void chi_hold_input(chi_worker *w, chi_conn *c, long n)
{
    if (c->in.len == 0) {
        if (chi_later_add(&c->in, w->scratch, (size_t)n) < 0) {
            chi_close(w, c);
            return;
        }
    } else {
        c->in.len += (size_t)n;
    }
    if (c->in.len >= CHI_HELD_INPUT) c->flags |= CHI_F_STALL;
    chi_after_io(w, c);
}

/* One dirty connection: cut off, drained, written, resumed. */
static CHI_OUTLINE void chi_settle(chi_worker *w, chi_conn *c)
{
    chi_later *l = c->later;
    c->flags &= ~(unsigned)CHI_F_DIRTY;
    if (c->flags & CHI_F_KILL) {
        chi_close(w, c);
        return;
    }
    if (l && l->want_drain && l->on_drain && chi_pending(c) <= CHI_STREAM_LOW) {
        l->want_drain = 0;
        l->on_drain(chi_later_handle(w, l), l->drain_user); /* may write, end, or mark c again */
        if (c->flags & CHI_F_KILL) {
            chi_close(w, c);
            return;
        }
    }
    if (c->stream && c->stream->resumed) { /* ch_body_resume (>>uploads) */
        int rc;
        w->cur = c;
        rc = chi_stream_pump(w, c);
        w->cur = NULL;
        if (rc < 0) {
            chi_drop(w, c);
            return;
        }
        chi_flush(w, c);
        return;
    }
    if (!c->later && c->in.len && !(c->flags & CHI_F_CLOSING)) {
        /* the requests held behind a finished response, answered now */
        size_t used;
        w->cur = c;
        used = chi_process(w, c, c->in.ptr, c->in.len);
        w->cur = NULL;
        if (chi_keep_rest(c, c->in.ptr, c->in.len, used, 0) < 0) {
            chi_drop(w, c);
            return;
        }
        chi_flush(w, c);
        return;
    }
    if (chi_pending(c)) {
        long r = chi_poller_send(w->poller, c->fd, c->out.ptr + c->out_off, chi_pending(c));
        if (r == CHI_IO_ERROR) {
            chi_close(w, c);
            return;
        }
        if (r > 0) {
            chi_conn_sent(w, c, r);
            return;
        }
    }
    chi_after_io(w, c);
}

/* Settles the connections marked so far; those marked meanwhile wait for the
   next pass (which then does not sleep), so a producer whose client takes
   everything at once cannot keep the worker from its other connections. */
static CHI_OUTLINE void chi_settle_all(chi_worker *w)
{
    size_t i, n = w->ndirty;
    if (n == 0) return;
    for (i = 0; i < n; i++) {
        int fd = w->dirty[i];
        chi_conn *c = (size_t)fd < w->conns_cap ? w->conns[fd] : NULL;
        if (c && (c->flags & CHI_F_DIRTY)) chi_settle(w, c);
    }
    memmove(w->dirty, w->dirty + n, sizeof *w->dirty * (w->ndirty - n));
    w->ndirty -= n;
}

/* The shutdown deadline: a stream ends with its last chunk, a response never
   finished gets 503; the user hears of it through the abort callback. */
static CHI_OUTLINE void chi_later_shutdown(chi_worker *w)
{
    uint32_t i;
    for (i = 0; i < w->nlaters; i++) {
        chi_later *l = w->laters[i];
        if (!l->c) continue;
        if (l->state == CHI_L_WAITING) {
            chi_later_refuse(w, l, 503);
        } else {
            if (!(l->c->flags & CHI_F_KILL)) chi_later_close_body(w, l);
            l->c->flags |= CHI_F_CLOSING;
            chi_later_detach(w, l, CHI_WHY_ABORT);
        }
    }
    chi_settle_all(w);
}

/* Timers and the worker, for handlers. */
static CHI_OUTLINE int64_t chi_now_ms(void) { return chi_os_now_ns() / 1000000; }

CHOPIN_API ch_timer ch_timer_start(ch_worker *w, uint64_t ms, uint64_t repeat_ms, ch_worker_fn fn, void *user)
{
    if (!w || !fn) return 0;
    w->now_ms = chi_now_ms();
    return chi_timers_add(&w->timers, w->now_ms, ms, repeat_ms, fn, user);
}

CHOPIN_API int ch_timer_stop(ch_worker *w, ch_timer t) { return w ? chi_timers_cancel(&w->timers, t) : -1; }

CHOPIN_API ch_worker *ch_res_worker(const ch_res *res) { return res ? res->w : NULL; }
CHOPIN_API int ch_worker_index(const ch_worker *w) { return w->id; }
CHOPIN_API int ch_worker_count(const ch_worker *w) { return w->app->embedded ? 1 : w->app->cfg.workers; }
CHOPIN_API ch_app *ch_worker_app(const ch_worker *w) { return w->app; }
CHOPIN_API void *ch_worker_data(const ch_worker *w) { return w->data; }
CHOPIN_API void ch_worker_set_data(ch_worker *w, void *data) { w->data = data; }

CHOPIN_API ch_worker *ch_app_worker(ch_app *app, int index)
{
    if (!app || index < 0 || index >= chi_load_int(&app->nworkers)) return NULL;
    return &app->workers[index];
}

static CHI_OUTLINE int chi_add_hook(chi_hook *hooks, int *n, ch_worker_fn fn, void *user)
{
    if (!fn || *n == CHI_MAX_HOOKS) return -1;
    hooks[*n].fn = fn;
    hooks[(*n)++].user = user;
    return 0;
}

CHOPIN_API int ch_on_worker_start(ch_app *app, ch_worker_fn fn, void *user)
{
    return chi_add_hook(app->start_hooks, &app->nstart, fn, user);
}

CHOPIN_API int ch_on_worker_stop(ch_app *app, ch_worker_fn fn, void *user)
{
    return chi_add_hook(app->stop_hooks, &app->nstop, fn, user);
}

static CHI_OUTLINE void chi_worker_hooks_start(chi_worker *w)
{
    int i;
    w->hooks_started = 1;
    for (i = 0; i < w->app->nstart; i++) w->app->start_hooks[i].fn(w, w->app->start_hooks[i].user);
}

/* The end of a worker's loop, on its thread: laters answered, posts run,
   stop hooks. */
static CHI_OUTLINE void chi_worker_wind_up(chi_worker *w)
{
    int i;
    chi_later_shutdown(w);
    chi_run_inbox(w);
    if (!w->hooks_started) return;
    w->hooks_started = 0;
    for (i = 0; i < w->app->nstop; i++) w->app->stop_hooks[i].fn(w, w->app->stop_hooks[i].user);
}

/* What a worker's cleanup frees of this section. */
static CHI_OUTLINE void chi_later_cleanup(chi_worker *w)
{
    uint32_t i;
    chi_run_inbox(w); /* posts that came after the loop ended still run once */
#if !CHI_ATOMICS
    chi_os_mutex_destroy(&w->inbox_mu);
#endif
    chi_timers_free(&w->timers);
    for (i = 0; i < w->nlaters; i++) {
        chi_later *l = w->laters[i];
        chi_buf_free(&l->res.ctype);
        chi_buf_free(&l->res.headers);
        chi_buf_free(&l->line);
        chi_buf_free(&l->ask);
        ch_json_free(&l->json);
        CHOPIN_FREE(l);
    }
    CHOPIN_FREE(w->laters);
    w->laters = NULL;
    w->nlaters = w->laters_cap = 0;
    w->free_laters = NULL;
    CHOPIN_FREE(w->dirty);
    w->dirty = NULL;
    w->ndirty = w->dirty_cap = 0;
    chi_buf_free(&w->sink.ctype);
    chi_buf_free(&w->sink.headers);
    ch_json_free(&w->sink_json);
    chi_buf_free(&w->sse_buf);
}

#ifndef CHOPIN_NO_SSE
/* >>sse ---------------------------------------------------------------------
   Server-sent events (WHATWG HTML, "Server-sent events"): a stream of
   text/event-stream. Each event is built in the worker's buffer and leaves
   as one piece (one chunk): "event:", "id:", one "data:" line per line of
   the data (split at CRLF, LF or CR, as the client's parser splits them),
   then a blank line. A field that would break the framing (a line end in
   an event name or id) is refused. Heartbeats are comment lines that keep
   proxies from closing an idle stream. */

static CHI_OUTLINE int chi_sse_field_ok(const char *s)
{
    for (; s && *s; s++)
        if (*s == '\r' || *s == '\n') return 0;
    return 1;
}

static CHI_OUTLINE int chi_sse_put(chi_buf *b, const char *a, size_t an, const char *v, size_t vn)
{
    if (chi_later_add(b, a, an) < 0 || chi_later_add(b, v, vn) < 0) return -1;
    return chi_later_add(b, "\n", 1);
}

/* "data: line\n" for every line of data. The client joins the lines with
   LF, so what it gets is the data as sent, line ends made LF: a trailing
   line end is an empty last line ("a\n" is "data: a", "data: "). */
static CHI_OUTLINE int chi_sse_data(chi_buf *b, const char *data, size_t len)
{
    size_t i = 0, start = 0;
    for (;;) {
        if (i == len || data[i] == '\r' || data[i] == '\n') {
            if (chi_sse_put(b, "data: ", 6, data + start, i - start) < 0) return -1;
            if (i == len) return 0;
            if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n') i++;
            start = ++i;
            continue;
        }
        i++;
    }
}

static CHI_OUTLINE int chi_sse_send(ch_defer d, chi_later *l)
{
    chi_buf *b = &d.w->sse_buf;
    int rc = chi_later_add(b, "\n", 1) < 0 ? -1 : chi_later_piece(d.w, l, b->ptr, b->len);
    b->len = 0;
    if (b->cap > (size_t)4 * CHOPIN_READ_SIZE) chi_buf_free(b); /* a huge event does not stay */
    return rc;
}

CHOPIN_API int ch_sse_event(ch_defer d, const char *event, const char *id, const char *data, size_t len)
{
    chi_later *l = chi_later_writable(d);
    chi_buf *b;
    if (!l || !chi_sse_field_ok(event) || !chi_sse_field_ok(id)) return -1;
    b = &d.w->sse_buf;
    b->len = 0;
    if ((event && chi_sse_put(b, "event: ", 7, event, strlen(event)) < 0) ||
        (id && chi_sse_put(b, "id: ", 4, id, strlen(id)) < 0) || chi_sse_data(b, data ? data : "", data ? len : 0) < 0) {
        b->len = 0;
        return -1;
    }
    return chi_sse_send(d, l);
}

CHOPIN_API int ch_sse_retry(ch_defer d, uint64_t ms)
{
    chi_later *l = chi_later_writable(d);
    char num[24];
    size_t n;
    if (!l) return -1;
    n = chi_utoa(ms, num);
    d.w->sse_buf.len = 0;
    if (chi_sse_put(&d.w->sse_buf, "retry: ", 7, num, n) < 0) return -1;
    return chi_sse_send(d, l);
}

CHOPIN_API int ch_sse_comment(ch_defer d, const char *text)
{
    chi_later *l = chi_later_writable(d);
    const char *s = text ? text : "";
    chi_buf *b;
    if (!l) return -1;
    b = &d.w->sse_buf;
    b->len = 0;
    for (;;) { /* one ": " line per line of text */
        size_t n = strcspn(s, "\r\n");
        if (chi_sse_put(b, ": ", 2, s, n) < 0) {
            b->len = 0;
            return -1;
        }
        s += n;
        if (*s == '\r' && s[1] == '\n') s++;
        if (!*s || !*++s) break;
    }
    return chi_sse_send(d, l);
}

static CHI_OUTLINE void chi_sse_heartbeat(ch_worker *w, void *user)
{
    chi_later *l = (chi_later *)user; /* the timer is stopped when l is detached */
    ch_sse_comment(chi_later_handle(w, l), "");
}

CHOPIN_API int ch_sse_begin(ch_defer d, uint64_t heartbeat_ms)
{
    chi_later *l = chi_later_get(d);
    int rc;
    if (!l || l->state != CHI_L_WAITING) return -1;
    chi_res_set_ctype(&l->res, "text/event-stream", 17);
    chi_res_add_line(&l->res, "Cache-Control", 13, "no-cache", 8);
    rc = ch_defer_begin(d, -1);
    if (rc == 0) {
        l->sse = 1;
        if (heartbeat_ms) l->heartbeat = ch_timer_start(d.w, heartbeat_ms, heartbeat_ms, chi_sse_heartbeat, l);
    }
    return rc;
}

CHOPIN_API ch_str ch_sse_last_event_id(const ch_req *req) { return ch_req_header(req, "Last-Event-ID"); }
#endif

/* >>offload -----------------------------------------------------------------
   The off-loop pool: a few blocking threads for work that would stall a
   worker (a database client, a device, a blocking HTTP call). A job waits in
   a locked FIFO (these threads block anyway; no worker ever takes the lock
   but to add a job); its result comes back through its worker's queue. Not
   for CPU-heavy work: that belongs on more workers. Jobs run in parallel
   and finish in any order. Started on the first job; stopped after the
   workers' loops end, when jobs not yet started are skipped (their done
   function still runs, with the handle gone). */

static CHI_OUTLINE void *chi_pool_main(void *arg)
{
    chi_pool *p = (chi_pool *)arg;
    chi_os_lock(&p->mu);
    for (;;) {
        chi_job *job;
        int skip;
        while (!p->head && !p->stop) chi_os_cond_wait(&p->cv, &p->mu);
        if (!p->head) break;
        job = p->head;
        p->head = job->next;
        if (!p->head) p->tail = NULL;
        skip = p->stop;
        chi_os_unlock(&p->mu);
        if (!skip) job->work(job->node.user);
        chi_post_node(job->node.d.w, &job->node);
        chi_os_lock(&p->mu);
    }
    chi_os_unlock(&p->mu);
    return NULL;
}

static CHI_OUTLINE chi_pool *chi_pool_new(void)
{
    chi_pool *p = (chi_pool *)CHOPIN_MALLOC(sizeof *p);
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    if (chi_os_mutex_init(&p->mu) < 0) {
        CHOPIN_FREE(p);
        return NULL;
    }
    if (chi_os_cond_init(&p->cv) < 0) {
        chi_os_mutex_destroy(&p->mu);
        CHOPIN_FREE(p);
        return NULL;
    }
    return p;
}

/* Under the lock: the threads, the first time. */
static CHI_OUTLINE int chi_pool_start(chi_pool *p, int n)
{
    int i;
    p->threads = (chi_thread *)CHOPIN_MALLOC(sizeof *p->threads * (size_t)n);
    if (!p->threads) return -1;
    for (i = 0; i < n; i++)
        if (chi_os_thread_start(&p->threads[i], chi_pool_main, p) < 0) break;
    p->nthreads = i;
    p->started = i > 0;
    return i > 0 ? 0 : -1;
}

/* Stops the threads once every job has gone back to its worker. */
static CHI_OUTLINE void chi_pool_stop(chi_pool *p)
{
    int i;
    if (!p) return;
    chi_os_lock(&p->mu);
    p->stop = 1;
    chi_os_cond_broadcast(&p->cv);
    chi_os_unlock(&p->mu);
    for (i = 0; i < p->nthreads; i++) chi_os_thread_join(p->threads[i]);
    CHOPIN_FREE(p->threads);
    p->threads = NULL;
    p->nthreads = p->started = 0;
    p->stop = 0;
}

static CHI_OUTLINE void chi_pool_free(chi_pool *p)
{
    if (!p) return;
    chi_pool_stop(p);
    chi_os_cond_destroy(&p->cv);
    chi_os_mutex_destroy(&p->mu);
    CHOPIN_FREE(p);
}

CHOPIN_API int ch_defer_offload(ch_defer d, void (*work)(void *user), ch_defer_fn done, void *user)
{
    chi_pool *p;
    chi_job *job;
    int rc = 0;
    if (!d.w || !work || !done || !(p = d.w->app->pool)) return -1;
    if (!(job = (chi_job *)CHOPIN_MALLOC(sizeof *job))) return -1;
    memset(job, 0, sizeof *job);
    job->node.dfn = done;
    job->node.d = d;
    job->node.user = user;
    job->work = work;
    chi_os_lock(&p->mu);
    if (!p->started) rc = chi_pool_start(p, d.w->app->cfg.offload_threads);
    if (rc == 0) {
        if (p->tail) p->tail->next = job; else p->head = job;
        p->tail = job;
        chi_os_cond_signal(&p->cv);
    }
    chi_os_unlock(&p->mu);
    if (rc < 0) CHOPIN_FREE(job);
    return rc;
}

#ifndef CHOPIN_NO_WEBSOCKET
/* >>websocket -----------------------------------------------------------------
   WebSocket connections on top of answering later (>>later). An upgrade
   takes the connection like a deferred response (ch_res_defer), writes the
   101 head itself, and keeps the chi_later as the connection's hold: frames
   go out through chi_later_push (so the output queue, its bound, the drain
   callback, write_timeout and the settle pass are the stream machinery's),
   and bytes coming in are handed here (chi_ws_received) instead of being
   held. The core's parser (>>websocket frames) unmasks them in place; a
   message that arrives whole in one read reaches on_message without a copy,
   fragments are joined in ws->msg.

   Closing: a close from the client is answered with the same code and the
   connection closes once that is written (the server closes TCP first,
   RFC 6455 7.1.1); a protocol error is answered with its close code
   (1002, 1007, 1009) the same way; ch_ws_close sends one and waits up to
   CHI_WS_CLOSE_WAIT_MS for the answer; the client leaving, a cut (queue
   over the bound, write_timeout, a missing pong) report 1006. on_close
   runs once, never inside a call the user made, and the ch_ws is freed
   when it returns.

   Publish/subscribe: each worker keeps its own topics (a hash table of
   subscriber lists: no lock). ch_ws_publish frames the message once, in
   one allocation with a reference count, and posts it to every worker
   (ch_worker_post: a lock-free queue and a wake); each worker copies the
   frame to its subscribers' queues and the last one frees it. */

enum { CHI_WSS_OPEN, CHI_WSS_CLOSING, CHI_WSS_DONE };
#define CHI_WS_DEFAULT_MAX_MESSAGE ((size_t)1024 * 1024)
#define CHI_WS_CLOSE_WAIT_MS 5000   /* our close: the client's answer */
#define CHI_WS_MAX_TOPIC 255
#define CHI_WS_MSG_KEEP ((size_t)64 * 1024) /* a reassembly buffer shrinks back to this */

static void chi_ws_end(ch_ws *ws, int code, const char *reason, size_t len);

/* -- the handshake -- */

/* Is protocol among the Sec-WebSocket-Protocol values (any line)? */
CHOPIN_API int ch_ws_offered(const ch_req *req, const char *protocol)
{
    size_t n = strlen(protocol);
    int i;
    for (i = 0; i < req->header_count; i++) {
        const ch_header *h = &req->headers[i];
        ch_str rest = h->value, item;
        if (h->name.len != 22 || !chi_ieq(h->name.ptr, "sec-websocket-protocol", 22)) continue;
        while (chi_list_next(&rest, &item))
            if (item.len == n && memcmp(item.ptr, protocol, n) == 0) return 1; /* case-sensitive (4.1) */
    }
    return 0;
}

static void chi_ws_refuse(ch_res *res, int status)
{
    ch_res_error(res, status);
    if (status == 426) { /* RFC 6455 4.4, RFC 9110 15.5.22 */
        ch_res_header(res, "Upgrade", "websocket");
        /* a sender of Upgrade names it in Connection too (RFC 9110 7.8);
           put as it is: ch_res_header keeps Connection for the head
           writer, whose own "close", if any, is a second line of the list */
        chi_res_add_line(res, "Connection", 10, "Upgrade", 7);
        ch_res_header(res, "Sec-WebSocket-Version", "13");
    }
}

/* The 101 head, through the one head writer, into the connection's output. */
static int chi_ws_write_head(chi_worker *w, chi_later *l, ch_str key, const char *protocol)
{
    ch_res *res = &l->res;
    char accept[CHI_WS_ACCEPT_LEN];
    chi_head_spec h;
    chi_buf saved;
    int borrowed, ok;
    chi_ws_accept(key, accept);
    res->status = 101;
    if (chi_res_put_header(res, "Upgrade", 7, "websocket", 9) < 0 ||
        chi_res_put_header(res, "Connection", 10, "Upgrade", 7) < 0 ||
        chi_res_put_header(res, "Sec-WebSocket-Accept", 20, accept, CHI_WS_ACCEPT_LEN) < 0 ||
        (protocol && chi_res_put_header(res, "Sec-WebSocket-Protocol", 22, protocol, strlen(protocol)) < 0))
        return -1;
    h = chi_spec(w, 101, 1, 1);
    h.framing = CHI_FRAME_NONE;
    h.extra = res->headers.ptr;
    h.extra_len = res->headers.len;
    borrowed = chi_out_borrow(w, l->c, &saved);
    ok = chi_buf_reserve(&w->out, chi_head_size(&h)) == 0;
    if (ok) {
        size_t before = w->out.len;
        w->out.len = (size_t)(chi_head_put(w->out.ptr + w->out.len, &h) - w->out.ptr);
        res->bytes = w->out.len - before;
    }
    chi_out_return(w, l->c, &saved, borrowed);
    return ok ? 0 : -1;
}

/* -- sending -- */

/* Queues raw frame bytes: 0, 1 (over the bound), -1 (gone or cut). */
static int chi_ws_push(ch_ws *ws, const void *pre, size_t pre_len, const void *data, size_t len)
{
    chi_later *l = ws->l;
    if (!l || !l->c || (l->c->flags & CHI_F_KILL)) return -1;
    return chi_later_push(ws->w, l, (const char *)pre, pre_len, data, len, NULL, 0);
}

static int chi_ws_frame(ch_ws *ws, unsigned opcode, const void *data, size_t len)
{
    unsigned char head[10];
    size_t hl = chi_ws_head_put(head, opcode, 1, len);
    return chi_ws_push(ws, head, hl, data, len);
}

CHOPIN_API int ch_ws_send(ch_ws *ws, ch_ws_type type, const void *data, size_t len)
{
    if (!ws || ws->state != CHI_WSS_OPEN || (type != CH_WS_TEXT && type != CH_WS_BINARY) || (len && !data))
        return -1;
    if (type == CH_WS_TEXT) { /* we may not send what we would refuse (8.1) */
        chi_utf8 u;
        chi_utf8_init(&u);
        if (chi_utf8_feed(&u, (const unsigned char *)data, len) < 0 || !chi_utf8_done(&u)) return -1;
    }
    return chi_ws_frame(ws, type == CH_WS_TEXT ? CHI_WS_TEXT : CHI_WS_BINARY, data, len);
}

CHOPIN_API int ch_ws_send_text(ch_ws *ws, const char *text) { return ch_ws_send(ws, CH_WS_TEXT, text, strlen(text)); }

CHOPIN_API int ch_ws_ping(ch_ws *ws, const void *data, size_t len)
{
    if (!ws || ws->state != CHI_WSS_OPEN || len > CHI_WS_MAX_CONTROL || (len && !data)) return -1;
    return chi_ws_frame(ws, CHI_WS_PING, data, len) < 0 ? -1 : 0;
}

static void chi_ws_send_close(ch_ws *ws, int code, const void *reason, size_t len)
{
    unsigned char p[CHI_WS_MAX_CONTROL];
    size_t n = code == CHI_WS_NO_STATUS ? 0 : chi_ws_close_payload(p, code, (const char *)reason, len);
    chi_ws_frame(ws, CHI_WS_CLOSE, p, n);
}

/* -- ending -- */

/* Our side is finished: nothing more is sent or read; the connection
   closes once its output is written (then lingers, so the client reads our
   close frame rather than a reset). */
static void chi_ws_finish(ch_ws *ws, int code, const char *reason, size_t len)
{
    chi_worker *w = ws->w;
    chi_later *l = ws->l;
    if (l) {
        chi_conn *c = l->c;
        ws->l = NULL;
        l->ws = NULL;
        l->user_holds = 0; /* no abort callback: we are the ones ending */
        if (c) {
            c->flags |= CHI_F_CLOSING | CHI_F_LINGER_AFTER;
            chi_buf_free(&c->in);
            chi_later_detach(w, l, CHI_WHY_DONE);
        } else {
            chi_later_maybe_free(w, l);
        }
    }
    chi_ws_end(ws, code, reason, len);
}

/* A protocol error (7.1.7): its close code goes out, then the connection
   closes. */
static void chi_ws_fail(ch_ws *ws, int code)
{
    if (ws->state == CHI_WSS_OPEN) chi_ws_send_close(ws, code, NULL, 0);
    chi_ws_finish(ws, code, "", 0);
}

/* Cut without a closing handshake (a dead or slow client): on_close gets
   1006 when the settle pass has closed the connection. */
static void chi_ws_cut(ch_ws *ws)
{
    chi_later *l = ws->l;
    if (!l || !l->c) return;
    l->c->flags |= CHI_F_KILL;
    chi_mark_dirty(ws->w, l->c);
}

static void chi_ws_close_expired(ch_worker *w, void *user)
{
    ch_ws *ws = (ch_ws *)user;
    (void)w;
    ws->close_wait = 0;
    chi_ws_cut(ws);
}

CHOPIN_API int ch_ws_close(ch_ws *ws, int code, const char *reason)
{
    if (!ws || ws->state != CHI_WSS_OPEN || !chi_ws_close_code_ok(code)) return -1;
    chi_ws_send_close(ws, code, reason, reason ? strlen(reason) : 0);
    ws->state = CHI_WSS_CLOSING;
    ws->close_wait = ch_timer_start(ws->w, CHI_WS_CLOSE_WAIT_MS, 0, chi_ws_close_expired, ws);
    return 0;
}

/* The client's close (5.5.1): answered with its code, unless we sent ours
   first; either way the handshake is complete. */
static void chi_ws_peer_closed(ch_ws *ws, int code, const unsigned char *reason, size_t len)
{
    if (ws->state == CHI_WSS_OPEN) chi_ws_send_close(ws, code, reason, len);
    chi_ws_finish(ws, code, (const char *)reason, len);
}

/* -- receiving -- */

static void chi_ws_deliver(ch_ws *ws, int opcode, const unsigned char *data, size_t len)
{
    if (ws->state != CHI_WSS_OPEN || !ws->opts->on_message) return;
    ws->opts->on_message(ws, opcode == CHI_WS_TEXT ? CH_WS_TEXT : CH_WS_BINARY, (const char *)data, len);
}

/* Everything in buf[0, len) (unmasked in place). A message whose only
   piece is in this buffer is delivered from it; one in pieces is joined in
   ws->msg. Returns 1 when the WebSocket ended here (ws is freed). */
static int chi_ws_feed(chi_worker *w, ch_ws *ws, unsigned char *buf, size_t len)
{
    const unsigned char *whole = NULL; /* the first piece, not copied yet */
    size_t whole_len = 0, off = 0;
    (void)w;
    for (;;) {
        chi_ws_event ev;
        off += chi_ws_parse(&ws->parser, buf + off, len - off, &ev);
        switch (ev.kind) {
        case CHI_WS_EV_NONE:
            if (whole && chi_buf_append(&ws->msg, whole, whole_len) < 0) {
                chi_ws_fail(ws, CHI_WS_INTERNAL);
                return 1;
            }
            return 0;
        case CHI_WS_EV_DATA:
            if (ws->state != CHI_WSS_OPEN) break; /* after our close: discarded */
            if (!whole && ws->msg.len == 0) {
                whole = ev.data;
                whole_len = ev.len;
            } else if ((whole && chi_buf_append(&ws->msg, whole, whole_len) < 0) ||
                       chi_buf_append(&ws->msg, ev.data, ev.len) < 0) {
                chi_ws_fail(ws, CHI_WS_INTERNAL);
                return 1;
            } else {
                whole = NULL;
            }
            break;
        case CHI_WS_EV_MESSAGE:
            if (whole) {
                chi_ws_deliver(ws, ev.opcode, whole, whole_len);
                whole = NULL;
            } else {
                chi_ws_deliver(ws, ev.opcode, (const unsigned char *)ws->msg.ptr, ws->msg.len);
                ws->msg.len = 0;
                if (ws->msg.cap > CHI_WS_MSG_KEEP) chi_buf_free(&ws->msg);
            }
            break;
        case CHI_WS_EV_PING:
            if (ws->state == CHI_WSS_OPEN) chi_ws_frame(ws, CHI_WS_PONG, ev.data, ev.len);
            break;
        case CHI_WS_EV_PONG:
            ws->awaiting_pong = 0;
            break;
        case CHI_WS_EV_CLOSE:
            chi_ws_peer_closed(ws, ev.code, ev.data, ev.len);
            return 1;
        default: /* CHI_WS_EV_ERROR */
            chi_ws_fail(ws, ev.code);
            return 1;
        }
    }
}

/* Bytes from the socket, in the buffer chi_conn_rbuf gave (the worker's
   scratch, or after what waits in c->in). Called by chi_conn_received for
   a connection that is a WebSocket. */
static void chi_ws_received(chi_worker *w, chi_conn *c, long n)
{
    ch_ws *ws = c->later->ws;
    unsigned char *buf;
    size_t len;
    if (c->in.len == 0) {
        buf = (unsigned char *)w->scratch;
        len = (size_t)n;
    } else {
        c->in.len += (size_t)n;
        buf = (unsigned char *)c->in.ptr;
        len = c->in.len;
    }
    ws->last_rx_ms = w->now_ms = chi_now_ms();
    if (!chi_ws_feed(w, ws, buf, len)) chi_buf_free(&c->in); /* the parser keeps what it needs */
    chi_after_io(w, c);
}

/* Bytes that came in the same read as the upgrade request wait in c->in:
   read once the handler has returned. */
static void chi_ws_first_input(ch_worker *w, void *user)
{
    ch_ws *ws = (ch_ws *)user;
    chi_conn *c = ws->l ? ws->l->c : NULL;
    ws->first_input = 0;
    if (!c || !c->in.len || (c->flags & CHI_F_KILL)) return;
    if (!chi_ws_feed(w, ws, (unsigned char *)c->in.ptr, c->in.len)) chi_buf_free(&c->in);
    chi_after_io(w, c);
}

/* -- keep-alive -- */

static void chi_ws_keepalive(ch_worker *w, void *user)
{
    ch_ws *ws = (ch_ws *)user;
    const ch_ws_opts *o = ws->opts;
    int64_t now = w->now_ms = chi_now_ms();
    int pong_timeout = o->pong_timeout_ms > 0 ? o->pong_timeout_ms : o->ping_interval_ms;
    if (ws->state != CHI_WSS_OPEN) return;
    if (o->idle_timeout_ms > 0 && now - ws->last_rx_ms >= o->idle_timeout_ms) {
        ch_ws_close(ws, CHI_WS_GOING_AWAY, "idle");
        return;
    }
    if (o->ping_interval_ms <= 0) return;
    if (ws->awaiting_pong) {
        if (now - ws->ping_sent_ms >= pong_timeout) chi_ws_cut(ws);
    } else if (now - ws->ping_sent_ms >= o->ping_interval_ms) {
        ws->awaiting_pong = 1;
        ws->ping_sent_ms = now;
        chi_ws_frame(ws, CHI_WS_PING, NULL, 0);
    }
}

/* The timer's period: a fraction of the shortest of the three times. */
static int chi_ws_keepalive_period(const ch_ws_opts *o)
{
    int t = 0, v[3], i;
    v[0] = o->ping_interval_ms;
    v[1] = o->pong_timeout_ms;
    v[2] = o->idle_timeout_ms;
    for (i = 0; i < 3; i++)
        if (v[i] > 0 && (t == 0 || v[i] < t)) t = v[i];
    t /= 4;
    return t < 10 ? 10 : t;
}

/* -- topics (per worker) -- */

static uint32_t chi_ws_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    size_t i;
    for (i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static chi_ws_topic *chi_ws_topic_find(chi_ws_hub *hub, const char *name, size_t len, uint32_t hash)
{
    chi_ws_topic *t;
    if (!hub->nbuckets) return NULL;
    for (t = hub->buckets[hash & (hub->nbuckets - 1)]; t; t = t->next)
        if (t->hash == hash && t->len == len && memcmp(t->name, name, len) == 0) return t;
    return NULL;
}

static int chi_ws_hub_grow(chi_ws_hub *hub)
{
    size_t n = hub->nbuckets ? hub->nbuckets * 2 : 16, i;
    chi_ws_topic **b = (chi_ws_topic **)CHOPIN_MALLOC(n * sizeof(chi_ws_topic *));
    if (!b) return -1;
    memset(b, 0, n * sizeof(chi_ws_topic *));
    for (i = 0; i < hub->nbuckets; i++) {
        chi_ws_topic *t = hub->buckets[i];
        while (t) {
            chi_ws_topic *next = t->next;
            t->next = b[t->hash & (n - 1)];
            b[t->hash & (n - 1)] = t;
            t = next;
        }
    }
    CHOPIN_FREE(hub->buckets);
    hub->buckets = b;
    hub->nbuckets = n;
    return 0;
}

static chi_ws_topic *chi_ws_topic_add(chi_ws_hub *hub, const char *name, size_t len, uint32_t hash)
{
    chi_ws_topic *t;
    if (hub->ntopics >= hub->nbuckets && chi_ws_hub_grow(hub) < 0) return NULL;
    t = (chi_ws_topic *)CHOPIN_MALLOC(sizeof *t + len);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->hash = hash;
    t->len = len;
    memcpy(t->name, name, len);
    t->name[len] = 0;
    t->next = hub->buckets[hash & (hub->nbuckets - 1)];
    hub->buckets[hash & (hub->nbuckets - 1)] = t;
    hub->ntopics++;
    return t;
}

static void chi_ws_topic_drop(chi_ws_hub *hub, chi_ws_topic *t)
{
    chi_ws_topic **p = &hub->buckets[t->hash & (hub->nbuckets - 1)];
    while (*p != t) p = &(*p)->next;
    *p = t->next;
    hub->ntopics--;
    CHOPIN_FREE(t);
}

CHOPIN_API int ch_ws_subscribe(ch_ws *ws, const char *topic)
{
    size_t len = topic ? strlen(topic) : 0;
    chi_ws_hub *hub;
    chi_ws_topic *t;
    chi_ws_sub *s, **tail;
    uint32_t hash;
    if (!ws || ws->state == CHI_WSS_DONE || len == 0 || len > CHI_WS_MAX_TOPIC) return -1;
    for (tail = &ws->subs; *tail; tail = &(*tail)->wnext)
        if ((*tail)->topic->len == len && memcmp((*tail)->topic->name, topic, len) == 0) return 0; /* already */
    hub = &ws->w->ws_hub;
    hash = chi_ws_hash(topic, len);
    t = chi_ws_topic_find(hub, topic, len, hash);
    if (!t && !(t = chi_ws_topic_add(hub, topic, len, hash))) return -1;
    s = (chi_ws_sub *)CHOPIN_MALLOC(sizeof *s);
    if (!s) {
        if (!t->subs) chi_ws_topic_drop(hub, t);
        return -1;
    }
    s->topic = t;
    s->ws = ws;
    s->tprev = NULL;
    s->tnext = t->subs;
    if (t->subs) t->subs->tprev = s;
    t->subs = s;
    s->wnext = NULL;
    *tail = s;
    return 0;
}

static void chi_ws_sub_unlink(chi_ws_hub *hub, chi_ws_sub *s)
{
    chi_ws_topic *t = s->topic;
    if (s->tprev) s->tprev->tnext = s->tnext;
    else t->subs = s->tnext;
    if (s->tnext) s->tnext->tprev = s->tprev;
    if (!t->subs) chi_ws_topic_drop(hub, t);
    CHOPIN_FREE(s);
}

CHOPIN_API int ch_ws_unsubscribe(ch_ws *ws, const char *topic)
{
    size_t len = topic ? strlen(topic) : 0;
    chi_ws_sub **p;
    if (!ws) return -1;
    for (p = &ws->subs; *p; p = &(*p)->wnext) {
        chi_ws_sub *s = *p;
        if (s->topic->len == len && memcmp(s->topic->name, topic, len) == 0) {
            *p = s->wnext;
            chi_ws_sub_unlink(&ws->w->ws_hub, s);
            return 0;
        }
    }
    return -1;
}

CHOPIN_API const char *ch_ws_topic(const ch_ws *ws, int i)
{
    const chi_ws_sub *s = ws ? ws->subs : NULL;
    while (s && i-- > 0) s = s->wnext;
    return s && i < 0 ? s->topic->name : NULL;
}

/* A published message: the frame, built once, shared by the workers. */
typedef struct chi_ws_pub {
    int refs;                /* workers that have not delivered it yet */
#if !CHI_ATOMICS
    chi_mutex mu;            /* no atomics (tcc): the count takes a lock */
#endif
    uint32_t hash;
    size_t topic_len, frame_len;
    char *topic;
    unsigned char *frame;
} chi_ws_pub;

/* One worker fewer holds p; the last one frees it. Returns what is left. */
static int chi_ws_pub_drop(chi_ws_pub *p)
{
    int left;
#if CHI_ATOMICS
    left = __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL);
#else
    chi_os_lock(&p->mu);
    left = --p->refs;
    chi_os_unlock(&p->mu);
#endif
    if (left == 0) {
#if !CHI_ATOMICS
        chi_os_mutex_destroy(&p->mu);
#endif
        CHOPIN_FREE(p);
    }
    return left;
}

/* On each worker: the frame to every subscriber of the topic here. */
static void chi_ws_pub_deliver(ch_worker *w, void *user)
{
    chi_ws_pub *p = (chi_ws_pub *)user;
    chi_ws_topic *t = chi_ws_topic_find(&w->ws_hub, p->topic, p->topic_len, p->hash);
    chi_ws_sub *s;
    for (s = t ? t->subs : NULL; s; s = s->tnext)
        if (s->ws->state == CHI_WSS_OPEN) chi_ws_push(s->ws, NULL, 0, p->frame, p->frame_len);
    chi_ws_pub_drop(p);
}

CHOPIN_API int ch_ws_publish(ch_app *app, const char *topic, ch_ws_type type, const void *data, size_t len)
{
    size_t tl = topic ? strlen(topic) : 0, hl;
    unsigned char head[10];
    chi_ws_pub *p;
    int n, i, posted = 0;
    if (!app || tl == 0 || tl > CHI_WS_MAX_TOPIC || (type != CH_WS_TEXT && type != CH_WS_BINARY) || (len && !data))
        return -1;
    if (type == CH_WS_TEXT) {
        chi_utf8 u;
        chi_utf8_init(&u);
        if (chi_utf8_feed(&u, (const unsigned char *)data, len) < 0 || !chi_utf8_done(&u)) return -1;
    }
    n = chi_load_int(&app->nworkers);
    if (n <= 0) return 0; /* not running: nobody is subscribed */
    hl = chi_ws_head_put(head, type == CH_WS_TEXT ? CHI_WS_TEXT : CHI_WS_BINARY, 1, len);
    p = (chi_ws_pub *)CHOPIN_MALLOC(sizeof *p + tl + 1 + hl + len);
    if (!p) return -1;
    p->refs = n;
#if !CHI_ATOMICS
    if (chi_os_mutex_init(&p->mu) < 0) {
        CHOPIN_FREE(p);
        return -1;
    }
#endif
    p->topic = (char *)(p + 1);
    p->topic_len = tl;
    p->hash = chi_ws_hash(topic, tl);
    memcpy(p->topic, topic, tl + 1);
    p->frame = (unsigned char *)p->topic + tl + 1;
    p->frame_len = hl + len;
    memcpy(p->frame, head, hl);
    if (len) memcpy(p->frame + hl, data, len);
    for (i = 0; i < n; i++) {
        ch_worker *w = ch_app_worker(app, i);
        if (w && ch_worker_post(w, chi_ws_pub_deliver, p) == 0) {
            posted++;
        } else if (chi_ws_pub_drop(p) == 0) {
            return -1;
        }
    }
    return posted ? 0 : -1;
}

/* -- the connection's life -- */

static void chi_ws_stop_timer(chi_worker *w, ch_timer *t)
{
    if (*t) ch_timer_stop(w, *t);
    *t = 0;
}

/* The end, whichever way it came: topics left, timers stopped, on_close,
   then the ch_ws is freed. */
static void chi_ws_end(ch_ws *ws, int code, const char *reason, size_t len)
{
    chi_worker *w = ws->w;
    ws->state = CHI_WSS_DONE;
    while (ws->subs) {
        chi_ws_sub *s = ws->subs;
        ws->subs = s->wnext;
        chi_ws_sub_unlink(&w->ws_hub, s);
    }
    chi_ws_stop_timer(w, &ws->keepalive);
    chi_ws_stop_timer(w, &ws->close_wait);
    chi_ws_stop_timer(w, &ws->first_input);
    if (ws->prev) ws->prev->next = ws->next;
    else w->ws_hub.all = ws->next;
    if (ws->next) ws->next->prev = ws->prev;
    if (ws->opts->on_close) ws->opts->on_close(ws, code, reason ? reason : "", reason ? len : 0);
    chi_buf_free(&ws->msg);
    CHOPIN_FREE(ws);
}

/* The connection went (the client left, or was cut): 1006 (7.1.5). */
static void chi_ws_aborted(ch_defer d, void *user)
{
    ch_ws *ws = (ch_ws *)user;
    chi_later *l = chi_later_get(d);
    if (l) {
        l->user_holds = 0; /* freed when chi_later_detach returns */
        l->ws = NULL;
    }
    ws->l = NULL;
    chi_ws_end(ws, 1006, "", 0);
}

static void chi_ws_drained(ch_defer d, void *user)
{
    ch_ws *ws = (ch_ws *)user;
    (void)d;
    if (ws->state == CHI_WSS_OPEN && ws->opts->on_drain) ws->opts->on_drain(ws);
}

CHOPIN_API int ch_ws_upgrade(ch_req *req, ch_res *res, const ch_ws_opts *opts, const char *protocol)
{
    chi_worker *w = res->w;
    ch_str key;
    ch_defer d;
    chi_later *l;
    ch_ws *ws;
    int st = chi_ws_check_request(req, &key);
    if (!opts) st = 500;
    if (protocol && (strlen(protocol) >= sizeof ws->protocol || !ch_ws_offered(req, protocol))) st = 500;
    if (st) {
        chi_ws_refuse(res, st);
        return -1;
    }
    ws = (ch_ws *)CHOPIN_MALLOC(sizeof *ws);
    if (!ws) {
        ch_res_error(res, 503);
        return -1;
    }
    d = ch_res_defer(res);
    if (!(l = chi_later_get(d)) || !l->c) { /* over max_deferred: 503 is set */
        CHOPIN_FREE(ws);
        return -1;
    }
    memset(ws, 0, sizeof *ws);
    ws->w = w;
    ws->l = l;
    ws->opts = opts;
    ws->user = opts->user;
    if (protocol) memcpy(ws->protocol, protocol, strlen(protocol) + 1);
    chi_ws_parser_init(&ws->parser, opts->max_message ? opts->max_message : CHI_WS_DEFAULT_MAX_MESSAGE);
    if (chi_ws_write_head(w, l, key, protocol) < 0) {
        l->c->flags |= CHI_F_KILL;
        chi_mark_dirty(w, l->c);
        l->user_holds = 0;
        CHOPIN_FREE(ws);
        return 0; /* the connection is cut: there is nothing to answer */
    }
    l->ws = ws;
    l->state = CHI_L_STREAM;
    l->framing = CHI_LF_CLOSE;
    l->no_body = 1; /* nothing of the stream machinery frames or ends it */
    ch_defer_on_abort(d, chi_ws_aborted, ws);
    ch_defer_on_drain(d, chi_ws_drained, ws);
    chi_later_after_hooks(w, l);
    ws->next = w->ws_hub.all;
    if (ws->next) ws->next->prev = ws;
    w->ws_hub.all = ws;
    ws->last_rx_ms = ws->ping_sent_ms = w->now_ms = chi_now_ms();
    if (opts->ping_interval_ms > 0 || opts->idle_timeout_ms > 0) {
        int period = chi_ws_keepalive_period(opts);
        ws->keepalive = ch_timer_start(w, (uint64_t)period, (uint64_t)period, chi_ws_keepalive, ws);
    }
    ws->first_input = ch_timer_start(w, 0, 0, chi_ws_first_input, ws);
    if (opts->on_open) opts->on_open(ws, req);
    return 0;
}

/* ch_ws_route's handler: the route's options are its user pointer. */
static void chi_ws_route_handler(ch_req *req, ch_res *res)
{
    const ch_ws_opts *opts = (const ch_ws_opts *)req->user;
    const char *protocol = NULL;
    const char *const *p;
    for (p = opts->protocols; p && *p && !protocol; p++)
        if (ch_ws_offered(req, *p)) protocol = *p;
    ch_ws_upgrade(req, res, opts, protocol);
}

CHOPIN_API int ch_ws_route(ch_app *app, const char *pattern, const ch_ws_opts *opts)
{
    if (!opts) {
        chi_set_error(app, "ch_ws_route %s: no options", pattern);
        app->reg_failed = 1;
        return -1;
    }
    return ch_get(app, pattern, chi_ws_route_handler, (void *)(uintptr_t)opts);
}

CHOPIN_API void *ch_ws_user(const ch_ws *ws) { return ws ? ws->user : NULL; }
CHOPIN_API void ch_ws_set_user(ch_ws *ws, void *user)
{
    if (ws) ws->user = user;
}
CHOPIN_API size_t ch_ws_queued(const ch_ws *ws)
{
    return ws && ws->l && ws->l->c ? chi_later_queued(ws->w, ws->l->c) : 0;
}
CHOPIN_API const char *ch_ws_protocol(const ch_ws *ws) { return ws ? ws->protocol : ""; }
CHOPIN_API ch_worker *ch_ws_worker(const ch_ws *ws) { return ws ? ws->w : NULL; }
CHOPIN_API ch_app *ch_ws_app(const ch_ws *ws) { return ws ? ws->w->app : NULL; }

/* SIGTERM: every WebSocket of the worker gets close 1001; the worker's
   loop runs on until they have answered or the grace period is over. */
static void chi_ws_begin_shutdown(chi_worker *w)
{
    ch_ws *ws;
    for (ws = w->ws_hub.all; ws; ws = ws->next)
        if (ws->state == CHI_WSS_OPEN) {
            ch_ws_close(ws, CHI_WS_GOING_AWAY, "server shutting down");
            chi_ws_stop_timer(w, &ws->close_wait); /* the grace period decides */
        }
}

static void chi_ws_cleanup(chi_worker *w)
{
    CHOPIN_FREE(w->ws_hub.buckets);
    memset(&w->ws_hub, 0, sizeof w->ws_hub);
}
#endif /* CHOPIN_NO_WEBSOCKET */

/* >>accept --------------------------------------------------------------------
   New connections, up to CHI_ACCEPT_BATCH per wake-up. At max_connections
   the listener leaves the poll set and new clients wait in the kernel's
   backlog; out of descriptors, accepting pauses for a second rather than
   spin on a listener that stays readable. */

static void chi_pause_accept(chi_worker *w)
{
    int k;
    if (!w->accepting) return;
    for (k = 0; k < w->nlisten; k++) chi_poller_del(w->poller, w->listen_fd[k], CHI_EV_READ);
    w->accepting = 0;
}

/* A worker has one listener, or several (inherited sockets on more than one
   address, or more sockets than workers): tag CHI_TAG_LISTEN + k is its
   listener k. */
static void chi_resume_accept(chi_worker *w)
{
    int k;
    if (w->accepting || w->stopping || w->nlisten == 0 || w->now < w->accept_pause_until ||
        w->nconns >= w->app->cfg.max_connections)
        return;
    for (k = 0; k < w->nlisten; k++)
        if (chi_poller_add(w->poller, w->listen_fd[k], CHI_EV_READ, CHI_TAG_LISTEN + (uint64_t)k, w->listen_shared[k]) < 0)
            break;
    if (k == w->nlisten) {
        w->accepting = 1;
        return;
    }
    while (k-- > 0) chi_poller_del(w->poller, w->listen_fd[k], CHI_EV_READ);
}

/* Which of the app's listeners worker id accepts on. Listeners on one
   address form a group (ch_listen numbers them): bound here, a
   SO_REUSEPORT group of one socket per worker, or one shared socket;
   inherited, whatever the launcher or the previous process passed. Every
   worker accepts on every address: a group with at least as many sockets as
   workers is dealt out (socket j to worker j mod workers, so none is left
   unwatched), a smaller one is shared (worker id takes socket id mod size). */
static void chi_take_listeners(chi_worker *w, const ch_app *app, int id)
{
    int nw = app->cfg.workers > 0 ? app->cfg.workers : 1, g, j;
    w->nlisten = 0;
    for (g = 0; g < app->nlisten; g++) {
        int size = 0, pick = 0;
        for (j = 0; j < app->nlisten; j++)
            if (app->listen_group[j] == g) size++;
        for (j = 0; j < app->nlisten && size > 0; j++) {
            if (app->listen_group[j] != g) continue;
            if ((size >= nw && pick % nw == id) || (size < nw && pick == id % size)) {
                w->listen_fd[w->nlisten] = app->listen_fds[j];
                w->listen_shared[w->nlisten] = (unsigned char)(size < nw);
                w->nlisten++;
            }
            pick++;
        }
    }
}

/* The connection table grows (doubling) to hold descriptor fd. */
static int chi_conns_fit(chi_worker *w, int fd)
{
    size_t cap = w->conns_cap ? w->conns_cap : 1024;
    chi_conn **t;
    if ((size_t)fd < w->conns_cap) return 0;
    while (cap <= (size_t)fd) cap *= 2;
    t = (chi_conn **)CHOPIN_REALLOC(w->conns, sizeof(chi_conn *) * cap);
    if (!t) return -1;
    memset(t + w->conns_cap, 0, sizeof(chi_conn *) * (cap - w->conns_cap));
    w->conns = t;
    w->conns_cap = cap;
    return 0;
}

static int chi_conn_open(chi_worker *w, int fd, const chi_peer *peer)
{
    chi_conn *c;
    if (chi_conns_fit(w, fd) < 0) return -1;
    c = w->free_conns;
    if (c)
        w->free_conns = c->next;
    else if (!(c = (chi_conn *)CHOPIN_MALLOC(sizeof *c)))
        return -1;
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->events = CHI_EV_READ;
    c->queue = CHI_Q_NONE;
    c->peer = *peer;
    if (chi_poller_add(w->poller, fd, CHI_EV_READ, (uint64_t)fd, 0) < 0) {
        c->next = w->free_conns;
        w->free_conns = c;
        return -1;
    }
    w->conns[fd] = c;
    w->nconns++;
    chi_q_append(w, c, CHI_Q_IDLE);
    CHI_COUNT(w, conns_opened, 1);
#ifndef CHOPIN_NO_PROXY
    if (w->app->cfg.proxy_protocol == CH_YES && chi_nets_match(w->app->trusted, w->app->ntrusted, peer))
        c->flags |= CHI_F_PROXY;
#endif
    return 0;
}

static void chi_on_accept(chi_worker *w, int k)
{
    int i;
    for (i = 0; i < CHI_ACCEPT_BATCH; i++) {
        chi_peer peer;
        int fd;
        if (w->nconns >= w->app->cfg.max_connections) {
            chi_pause_accept(w); /* new clients wait in the backlog */
            return;
        }
        fd = chi_os_accept(w->listen_fd[k], &peer);
        if (fd == CHI_IO_NOFD) {
            w->accept_pause_until = w->now + 1;
            chi_pause_accept(w);
        }
        if (fd < 0) return;
        if (chi_conn_open(w, fd, &peer) < 0) chi_os_close(fd);
    }
}

/* >>worker loop -----------------------------------------------------------------
   One pass of a worker: wait for events, read the clock if the ticker
   fired, do the batch's I/O, then the tick's timeouts. A threaded worker
   runs passes until it has stopped; an embedded one runs one pass per
   ch_poll call. */

static void chi_begin_shutdown(chi_worker *w)
{
    chi_conn *c;
    if (w->stopping) return;
    w->stopping = 1;
    w->stop_deadline = w->now + w->app->cfg.shutdown_timeout;
    chi_pause_accept(w);
#ifndef CHOPIN_NO_WEBSOCKET
    chi_ws_begin_shutdown(w); /* close 1001 to each; they answer within the grace period */
#endif
    /* After a hand-over the idle keep-alive connections get a grace of one
       to two seconds: a request that comes meanwhile is answered (with
       Connection: close), so fewer clients meet a close just as they send.
       Then chi_close_idle ends them. */
    if (w->app->handover)
        w->idle_close_at = w->now + 2; /* whole seconds: a grace of 1 to 2 s */
    else
        while ((c = w->qhead[CHI_Q_IDLE])) chi_close(w, c);
    while ((c = w->qhead[CHI_Q_LINGER])) chi_close(w, c);
}

/* The end of a hand-over's grace: each idle connection is closed from our
   side first (FIN, then its input drained until the client closes), so a
   request already on its way meets a clean close, not a reset. */
static void chi_close_idle(chi_worker *w)
{
    chi_conn *c;
    w->idle_close_at = 0;
    while ((c = w->qhead[CHI_Q_IDLE])) {
        c->flags |= CHI_F_CLOSING | CHI_F_LINGER_AFTER;
        chi_after_io(w, c);
    }
}

/* The tick is handled in two halves around the I/O of its batch: the clock
   first, so that bytes which came while the worker was late (descheduled,
   stopped, busy in a handler) count as progress at the current time; the
   timeouts last, so that a connection whose data is already waiting is
   served rather than expired. */
static void chi_tick_clock(chi_worker *w)
{
    chi_ticker_drain(&w->ticker);
    chi_read_clock(w);
    chi_refresh_date(w);
}

static void chi_tick_expire(chi_worker *w)
{
    if (w->log.len) chi_log_flush(w);
    if (w->idle_close_at && w->now >= w->idle_close_at) chi_close_idle(w);
    chi_expire_all(w);
    chi_resume_accept(w);
}

static void chi_on_conn_event(chi_worker *w, int fd, unsigned flags)
{
    chi_conn *c = (size_t)fd < w->conns_cap ? w->conns[fd] : NULL;
#if defined(CHI_OS_IO_URING)
    if (flags & CHI_EV_DATA) { /* bytes the ring received, not readiness */
        chi_on_received(w, c);
        return;
    }
#endif
    if (!c) return;
    if ((flags & (CHI_EV_READ | CHI_EV_ERROR)) && (c->events & CHI_EV_READ)) {
        chi_on_readable(w, c);
        if (w->conns[fd] != c) return; /* closed */
    }
    if ((flags & (CHI_EV_WRITE | CHI_EV_ERROR)) && (c->events & CHI_EV_WRITE)) chi_on_writable(w, c);
}

static void chi_on_event(chi_worker *w, const chi_event *ev)
{
    if (ev->tag >= CHI_TAG_LISTEN && ev->tag < CHI_TAG_LISTEN + (uint64_t)w->nlisten) {
        if (w->accepting) chi_on_accept(w, (int)(ev->tag - CHI_TAG_LISTEN));
    } else if (ev->tag == CHI_TAG_TICK) {
        /* its two halves run around the batch: see chi_worker_pass */
    } else if (ev->tag == CHI_TAG_WAKE) { /* posts, or the stop */
        chi_waker_drain(&w->waker);
        chi_run_inbox(w);
        if (chi_load_int(&w->stop_flag)) chi_begin_shutdown(w);
    } else if (ev->tag == CHI_TAG_STOP) { /* embedded: ch_stop and posts poke the app's waker */
        chi_waker_drain(&w->app->stop);
        chi_run_inbox(w);
        if (chi_load_int(&w->app->stop_flag)) chi_begin_shutdown(w);
    } else {
        chi_on_conn_event(w, (int)ev->tag, ev->flags);
    }
}

/* Until it has stopped: stopping, and every connection done or out of
   grace. */
static int chi_worker_running(const chi_worker *w)
{
    return !w->stopping || (w->nconns > 0 && w->now < w->stop_deadline);
}

/* One pass. Returns 0, or -1 when the poller fails. */
/* After the events: the timers due, then the connections to settle. */
static void chi_async_pass(chi_worker *w)
{
    if (w->timers.n) chi_timers_run(&w->timers, w->now_ms = chi_now_ms(), w);
    if (w->ndirty) chi_settle_all(w);
}

/* The wait: no longer than the first timer, no wait at all while
   connections are left to settle. */
static int chi_pass_timeout(chi_worker *w, int timeout_ms)
{
    int64_t t;
    if (w->ndirty) return 0;
    w->now_ms = chi_now_ms();
    t = chi_timers_wait(&w->timers, w->now_ms);
    return timeout_ms < 0 || t < timeout_ms ? (int)t : timeout_ms;
}

static int chi_worker_pass(chi_worker *w, int timeout_ms)
{
    chi_event ev[CHI_MAX_EVENTS];
    int n, i, tick = 0;
    if (w->timers.n | (uint32_t)w->ndirty) timeout_ms = chi_pass_timeout(w, timeout_ms);
    n = chi_poller_wait(w->poller, ev, CHI_MAX_EVENTS, timeout_ms);
    if (n < 0) return -1;
    for (i = 0; i < n; i++)
        if (ev[i].tag == CHI_TAG_TICK) tick = 1;
    if (tick) chi_tick_clock(w);
    for (i = 0; i < n; i++) chi_on_event(w, &ev[i]);
    /* what the events armed or finished is done in this same pass */
    if (w->timers.n | (uint32_t)w->ndirty) chi_async_pass(w);
    if (tick) chi_tick_expire(w);
    /* below max_connections again: accept at once, not on the next tick */
    if (!w->accepting) chi_resume_accept(w);
    return 0;
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
    chi_later_cleanup(w);
    chi_fcache_free(w); /* after the connections: none sends a file now */
#ifndef CHOPIN_NO_WEBSOCKET
    chi_ws_cleanup(w);
#endif
    CHOPIN_FREE(w->conns);
    w->conns = NULL;
    w->conns_cap = 0;
    if (w->accepting) chi_pause_accept(w);
    if (w->ticker_open) chi_ticker_close(&w->ticker);
    if (w->waker_open) chi_waker_close(&w->waker);
    if (w->poller == &w->own_poller) chi_poller_close(&w->own_poller);
    w->ticker_open = w->waker_open = 0;
    w->poller = NULL;
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
    chi_slots_free(w);
    chi_buf_free(&w->decoded);
}

/* Sets up a worker around a poller: its own (threaded), or the app's
   (embedded: then ch_stop reaches it through the app's waker and it needs
   none of its own). Returns 0, or -1 (cleanup undoes what was done). */
static int chi_worker_init(chi_worker *w, ch_app *app, int id, chi_poller *poller)
{
    memset(w, 0, sizeof *w);
    w->app = app;
    w->id = id;
    chi_take_listeners(w, app, id);
    w->res.w = w;
    w->res.json = &w->json;
    w->sink.w = w;
    w->sink.json = &w->sink_json;
    chi_timers_init(&w->timers);
    w->wake = poller ? &app->stop : &w->waker;
#if !CHI_ATOMICS
    if (chi_os_mutex_init(&w->inbox_mu) < 0) return -1;
#endif
    chi_req_bind(&w->req, &w->req_store);
    w->req.worker = w;
    w->metrics = app->metrics && id < app->nmetrics ? &app->metrics[id] : NULL;
    w->timeouts[CHI_Q_IDLE] = app->cfg.idle_timeout;
    w->timeouts[CHI_Q_HEAD] = app->cfg.header_timeout;
    w->timeouts[CHI_Q_BODY] = app->cfg.body_timeout;
    w->timeouts[CHI_Q_WRITE] = app->cfg.write_timeout;
    w->timeouts[CHI_Q_LINGER] = CHI_LINGER_TIMEOUT;
    chi_common_init(w->common);
    chi_build_ok_lead(w);
    if (poller) {
        w->poller = poller;
    } else {
#if defined(CHI_OS_IO_URING)
        if (chi_poller_open_owned(&w->own_poller) < 0) return -1;
#else
        if (chi_poller_open(&w->own_poller) < 0) return -1;
#endif
        w->poller = &w->own_poller;
        if (chi_waker_open(&w->waker, w->poller, CHI_TAG_WAKE) < 0) return -1;
        w->waker_open = 1;
    }
    w->scratch = (char *)CHOPIN_MALLOC(CHOPIN_READ_SIZE);
    if (!w->scratch || chi_ticker_open(&w->ticker, w->poller, 1000, CHI_TAG_TICK) < 0) return -1;
#if defined(CHI_OS_IO_URING)
    (void)chi_poller_receive(w->poller); /* where the kernel can: else polls, as for epoll */
#endif
    w->ticker_open = 1;
    chi_read_clock(w);
    chi_refresh_date(w); /* before the FastRoutes are built: they copy it */
    if (chi_build_fast(w) < 0) return -1;
    chi_resume_accept(w);
    return w->accepting ? 0 : -1;
}

static void *chi_worker_main(void *arg)
{
    chi_worker *w = (chi_worker *)arg;
    /* once per thread, so no sendfile needs its own guard (>>os) */
    w->sigpipe_blocked = chi_os_block_sigpipe() == 0;
    chi_worker_hooks_start(w);
    while (chi_worker_running(w))
        if (chi_worker_pass(w, -1) < 0) {
            char why[128];
            chi_log(w, CH_LOG_ERROR, CH_LOGITEM_WORKER_FAILED, "worker %d: waiting for events failed (%s): it stops",
                    w->id, chi_os_error_text(why, sizeof why));
            break;
        }
    chi_worker_wind_up(w);
    chi_poller_finish(w->poller);
    return NULL;
}

/* >>config ------------------------------------------------------------------
   The zero config is resolved here, in one place: fields set in code, then
   the environment for the fields left at zero, then defaults. A value that
   cannot be used is an error with a message, never silently replaced. */

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
    if (chi_parse_int(v, 1, CHI_MAX_WORKERS, &n) < 0) {
        chi_set_error(app, "invalid CHOPIN_WORKERS '%s': expected a number from 1 to %d", v, CHI_MAX_WORKERS);
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

static int chi_env_pid_file(ch_app *app, ch_config *c)
{
    const char *v = getenv("PID_FILE");
    if (c->pid_file || !v) return 0;
    if (!*v || strlen(v) >= CHI_MAX_PATH) {
        chi_set_error(app, "invalid PID_FILE '%.64s': expected a path shorter than %d bytes", v, CHI_MAX_PATH);
        return -1;
    }
    c->pid_file = v;
    return 0;
}

/* Socket activation, systemd's protocol (sd_listen_fds(3)): LISTEN_PID
   names the process the sockets are for, LISTEN_FDS how many there are, at
   descriptors 3, 4, ... Given the two values (NULL: unset) and our pid,
   returns the count (0: not activated), or -1 with the reason in why. Being
   handed sockets meant for another process, or a count that makes no sense,
   is an error rather than a silent bind of PORT. */
static int chi_parse_listen_env(const char *fds, const char *pid, long self, char *why, size_t cap)
{
    long n, p;
    if (!fds && !pid) return 0;
    if (!pid) {
        (void)snprintf(why, cap, "LISTEN_FDS is set but LISTEN_PID is not: which process are the sockets for?");
        return -1;
    }
    if (chi_parse_int(pid, 1, 199999999, &p) < 0) {
        (void)snprintf(why, cap, "invalid LISTEN_PID '%.32s': expected a process id", pid);
        return -1;
    }
    if (p != self) {
        (void)snprintf(why, cap, "LISTEN_PID=%ld is not this process (pid %ld): the sockets were passed to another one", p,
                 self);
        return -1;
    }
    if (!fds) {
        (void)snprintf(why, cap, "LISTEN_PID is set but LISTEN_FDS is not");
        return -1;
    }
    if (chi_parse_int(fds, 1, CHI_MAX_LISTENERS, &n) < 0) {
        (void)snprintf(why, cap, "invalid LISTEN_FDS '%.32s': expected a number of sockets from 1 to %d", fds,
                 CHI_MAX_LISTENERS);
        return -1;
    }
    return (int)n;
}

static int chi_env_log(ch_app *app, ch_config *c)
{
    static const char *names[] = {"off", "error", "warn", "info", "debug"};
    const char *v = getenv("CHOPIN_LOG");
    size_t i;
    if (c->log_level != CH_LOG_DEFAULT || !v) return 0;
    for (i = 0; i < 5; i++)
        if (strlen(v) == strlen(names[i]) && chi_ieq(v, names[i], strlen(v))) {
            c->log_level = (ch_log_level)(CH_LOG_OFF + (int)i);
            return 0;
        }
    chi_set_error(app, "invalid CHOPIN_LOG '%s': expected off, error, warn, info or debug", v);
    return -1;
}

static int chi_env_trust_proxy(ch_config *c)
{
    const char *v = getenv("CHOPIN_TRUST_PROXY");
    if (!c->trust_proxy && v && *v) c->trust_proxy = v;
    return 0;
}

static int chi_def(int v, int d) { return v ? v : d; }
static size_t chi_defz(size_t v, size_t d) { return v ? v : d; }

/* The defaults, for whatever neither the code nor the environment set. */
static void chi_config_defaults(ch_config *c)
{
    if (c->mode == CH_MODE_DEFAULT) c->mode = CH_MODE_PERFORMANCE;
    if (c->workers == 0) c->workers = c->mode == CH_MODE_STANDARD ? 1 : chi_os_cpu_count();
    if (c->workers > CHI_MAX_WORKERS) c->workers = CHI_MAX_WORKERS;
    /* one listener per worker where the kernel balances them (see >>os) */
    if (c->reuseport == 0) c->reuseport = (c->mode == CH_MODE_STANDARD || !CHI_REUSEPORT_BALANCES) ? CH_NO : CH_YES;
    if (c->port == 0) c->port = CHI_DEFAULT_PORT;
    c->max_header_size = chi_defz(c->max_header_size, CHI_DEFAULT_MAX_HEADER);
    c->max_target_size = chi_defz(c->max_target_size, CHI_DEFAULT_MAX_TARGET);
    c->max_body_size = chi_defz(c->max_body_size, CHI_DEFAULT_MAX_BODY);
    c->max_connections = chi_def(c->max_connections, CHI_DEFAULT_MAX_CONNS);
    c->idle_timeout = chi_def(c->idle_timeout, CHI_DEFAULT_IDLE_TIMEOUT);
    c->header_timeout = chi_def(c->header_timeout, CHI_DEFAULT_HEADER_TIMEOUT);
    c->body_timeout = chi_def(c->body_timeout, CHI_DEFAULT_BODY_TIMEOUT);
    c->write_timeout = chi_def(c->write_timeout, CHI_DEFAULT_WRITE_TIMEOUT);
    c->shutdown_timeout = chi_def(c->shutdown_timeout, CHI_DEFAULT_SHUTDOWN_TIMEOUT);
    c->backlog = chi_def(c->backlog, CHI_DEFAULT_BACKLOG);
    if (c->log_level == CH_LOG_DEFAULT) c->log_level = CH_LOG_WARN;
    c->max_deferred = chi_def(c->max_deferred, c->max_connections);
    c->offload_threads = chi_def(c->offload_threads, CHI_DEFAULT_OFFLOAD_THREADS);
}

/* "[::1]", as a URL writes an IPv6 address: the address inside. */
static void chi_host_unbracket(char *host)
{
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        memmove(host, host + 1, n - 2);
        host[n - 2] = 0;
    }
}

/* Code, then environment, then defaults (see the precedence note above). */
static int chi_resolve_config(ch_app *app, const ch_config *in)
{
    ch_config c;
    if (in)
        c = *in;
    else
        memset(&c, 0, sizeof c);
    if (!c.ignore_env && (chi_env_port(app, &c) < 0 || chi_env_host(app, &c) < 0 || chi_env_mode(app, &c) < 0 ||
                          chi_env_workers(app, &c) < 0 || chi_env_reuseport(app, &c) < 0 ||
                          chi_env_pid_file(app, &c) < 0 || chi_env_log(app, &c) < 0 || chi_env_trust_proxy(&c) < 0))
        return -1;
    if (c.port < CH_PORT_ANY || c.port > 65535 || c.workers < 0 || c.workers > CHI_MAX_WORKERS) {
        chi_set_error(app, "invalid ch_config: port or workers out of range");
        return -1;
    }
    if (c.mode == CH_MODE_STANDARD && c.workers > 1) {
        chi_set_error(app, "standard mode runs one event loop: CHOPIN_WORKERS must be 1 or unset");
        return -1;
    }
    if (c.host && strlen(c.host) >= sizeof app->host) {
        chi_set_error(app, "invalid host: longer than %d bytes", CHI_MAX_HOST - 1);
        return -1;
    }
    if (c.pid_file && (!*c.pid_file || strlen(c.pid_file) >= sizeof app->pid_file)) {
        chi_set_error(app, "invalid pid_file: empty, or longer than %d bytes", CHI_MAX_PATH - 1);
        return -1;
    }
    chi_config_defaults(&c);
    app->host_given = c.host != NULL;
    (void)snprintf(app->host, sizeof app->host, "%s", c.host ? c.host : CHI_DEFAULT_HOST); /* length checked above */
    chi_host_unbracket(app->host);
    c.host = app->host;
    (void)snprintf(app->pid_file, sizeof app->pid_file, "%s", c.pid_file ? c.pid_file : "");
    c.pid_file = app->pid_file[0] ? app->pid_file : NULL;
    app->cfg = c;
    app->lim.max_header = c.max_header_size;
    app->lim.max_target = c.max_target_size;
    app->lim.max_body = c.max_body_size;
    return chi_batteries_prepare(app);
}

/* >>listen ------------------------------------------------------------------
   Sockets are bound before any worker starts, so a port in use or a bad
   address is reported by ch_listen's return value; or they are inherited
   (socket activation, a restart), and checked just as early. */

static void chi_addr_text(const ch_app *app, char *out, size_t n)
{
    if (strchr(app->host, ':'))
        (void)snprintf(out, n, "[%s]:%d", app->host, app->cfg.port);
    else
        (void)snprintf(out, n, "%s:%d", app->host, app->cfg.port);
}

/* Socket activation. Started by systemd (deploy/chopin.socket), by a
   launcher, or by the previous process in a restart, the server finds its
   listening sockets at descriptors 3, 4, ... (LISTEN_FDS, LISTEN_PID,
   LISTEN_FDNAMES) and serves on them instead of binding HOST:PORT: no bind
   and no bind probe, since the sockets are ours by inheritance. Each must be
   a listening TCP socket, of HOST's family when HOST is set to an address.
   The variables are removed once read (as sd_listen_fds does), so a child
   of the app does not take them for its own. ch_config.ignore_env turns
   activation off. Returns the number of sockets taken, 0, or -1. */
static int chi_take_inherited(ch_app *app)
{
    const char *fds = getenv("LISTEN_FDS"), *pid = getenv("LISTEN_PID"), *names = getenv("LISTEN_FDNAMES");
    char why[192];
    int n, k, want = 0, port = 0, ngroups = 0;
    chi_peer first;
    memset(&first, 0, sizeof first);
    if (app->cfg.ignore_env || (!fds && !pid)) return 0;
    n = chi_parse_listen_env(fds, pid, chi_os_pid(), why, sizeof why);
    if (names && strlen(names) < sizeof app->fdnames) (void)snprintf(app->fdnames, sizeof app->fdnames, "%s", names);
    /* ch_listen runs before any worker starts; sd_listen_fds does the same */
    unsetenv("LISTEN_FDS");     /* NOLINT(concurrency-mt-unsafe) */
    unsetenv("LISTEN_PID");     /* NOLINT(concurrency-mt-unsafe) */
    unsetenv("LISTEN_FDNAMES"); /* NOLINT(concurrency-mt-unsafe) */
    if (n < 0) {
        chi_set_error(app, "socket activation: %s", why);
        return -1;
    }
    if (app->host_given) want = chi_os_host_family(app->host);
    for (k = 0; k < n; k++) {
        int fd = 3 + k, g, p;
        chi_peer addr;
        const char *problem = chi_os_check_listener(fd);
        if (!problem && chi_os_sockname(fd, &addr, &p) < 0) problem = "has no address";
        if (problem) {
            chi_set_error(app, "socket activation: LISTEN_FDS=%d, but fd %d %s", n, fd, problem);
            return -1;
        }
        if (want && addr.family != want) {
            chi_set_error(app, "socket activation: fd %d is an IPv%d socket, but HOST=%s is an IPv%d address (wrong family)",
                          fd, addr.family, app->host, want);
            return -1;
        }
        /* sockets on one address (a SO_REUSEPORT group) form one group */
        for (g = 0; g < k; g++) {
            chi_peer other;
            int op;
            if (chi_os_sockname(app->listen_fds[g], &other, &op) == 0 && op == p && other.family == addr.family &&
                memcmp(other.addr, addr.addr, addr.family == 6 ? 16 : 4) == 0)
                break;
        }
        app->listen_group[k] = g < k ? app->listen_group[g] : ngroups++;
        app->listen_fds[k] = fd;
        if (k == 0) {
            first = addr;
            port = p;
        }
    }
    app->nlisten = n;
    app->inherited = 1;
    app->cfg.port = port;
    if (chi_os_peer_text(&first, app->host, sizeof app->host) == 0) (void)snprintf(app->host, sizeof app->host, "?");
    return n;
}

/* CHOPIN_READY_FD: the previous process's end of a pipe, told once this
   one serves (>>restart). Kept if it is an open descriptor. */
static void chi_take_ready_fd(ch_app *app)
{
    const char *v = getenv("CHOPIN_READY_FD");
    long fd;
    if (app->cfg.ignore_env || !v) return;
    if (chi_parse_int(v, 0, 65535, &fd) == 0 && chi_os_adopt_fd((int)fd) == 0) app->ready_fd = (int)fd;
    unsetenv("CHOPIN_READY_FD"); /* NOLINT(concurrency-mt-unsafe): before the workers start */
}

#ifndef CHOPIN_NO_RESTART
/* What a restart runs: the executable's path and the arguments, taken now
   (from ch_config.argv, else /proc/self/cmdline). Unknown, ch_restart
   reports it; serving does not need them. */
static void chi_take_command(ch_app *app, char **argv)
{
    size_t len = 0, i;
    int n = 0, k = 0;
    char *block = NULL;
    if (argv) {
        for (n = 0; argv[n]; n++) len += strlen(argv[n]) + 1;
        if (n && (block = (char *)CHOPIN_MALLOC(len + 1)) != NULL)
            for (k = 0, len = 0; k < n; k++) {
                memcpy(block + len, argv[k], strlen(argv[k]) + 1);
                len += strlen(argv[k]) + 1;
            }
    } else {
        len = chi_os_read_cmdline(&block);
    }
    if (!block || !len) {
        CHOPIN_FREE(block);
        return;
    }
    for (i = 0, n = 0; i < len; i++)
        if (block[i] == 0) n++;
    app->argv = (char **)CHOPIN_MALLOC(sizeof(char *) * (size_t)(n + 1));
    if (!app->argv) {
        CHOPIN_FREE(block);
        return;
    }
    for (i = 0, k = 0; i < len && k < n; k++) {
        app->argv[k] = block + i;
        i += strlen(block + i) + 1;
    }
    app->argv[k] = NULL;
    app->argv_block = block;
    app->cfg.argv = app->argv;
    if (chi_os_self_exe(app->argv[0], app->exe, sizeof app->exe) < 0) app->exe[0] = 0;
}
#endif

static int chi_bind_all(ch_app *app)
{
    chi_listen_req r;
    char why[128], addr[CHI_MAX_HOST + 16];
    int reuse = app->cfg.reuseport == CH_YES;
    r.host = app->host;
    r.port = app->cfg.port == CH_PORT_ANY ? 0 : app->cfg.port;
    r.count = reuse ? app->cfg.workers : 1;
    r.reuseport = reuse;
    r.backlog = app->cfg.backlog;
    if (chi_os_listen(&r, app->listen_fds, why, sizeof why) < 0) {
        chi_addr_text(app, addr, sizeof addr);
        chi_set_error(app, "cannot listen on %s: %s", addr, why);
        return -1;
    }
    app->nlisten = r.count;
    app->cfg.port = r.port;
    return 0;
}

#if defined(CHI_OS_IO_URING)
/* The one line saying io_uring was refused and epoll serves instead: the
   app's own poller opened first and met the refusal (each worker's poller
   then asks the kernel again and meets the same answer). */
static void chi_uring_refused_log(const ch_app *app)
{
    char msg[CHI_LOG_LINE], why[128];
    if (!app->ctl.refused || app->log_level == CH_LOG_OFF || app->log_level < CH_LOG_WARN) return;
    (void)snprintf(msg, sizeof msg, "io_uring refused (%s): serving with epoll",
                   chi_os_errno_text(app->ctl.refused, why, sizeof why));
    chi_log_emit(app, CH_LOG_WARN, CH_LOGITEM_IO_URING_REFUSED, msg);
}
#endif

CHOPIN_API int ch_listen(ch_app *app, const ch_config *cfg)
{
    int rc;
    if (!app) return -1;
    if (app->reg_failed) return -1; /* the registration error is in app->err */
    if (app->listening) {
        chi_set_error(app, "ch_listen called twice");
        return -1;
    }
    if (chi_resolve_config(app, cfg) < 0) return -1;
    chi_os_raise_nofile();
    rc = chi_take_inherited(app);
    if (rc < 0 || (rc == 0 && chi_bind_all(app) < 0)) return -1;
    chi_take_ready_fd(app);
#ifndef CHOPIN_NO_RESTART
    chi_take_command(app, cfg ? cfg->argv : NULL);
#endif
#if defined(CHI_OS_IO_URING)
    chi_uring_refused_log(app);
#endif
    app->listening = 1;
    app->err[0] = 0;
    return 0;
}

CHOPIN_API const ch_config *ch_config_used(const ch_app *app) { return app->listening ? &app->cfg : NULL; }

/* >>restart -----------------------------------------------------------------
   Restarts that drop nothing, as nginx's binary upgrade does them. On
   SIGUSR2 (or ch_restart) the main thread starts the executable again, same
   arguments and environment, and hands it the listening sockets by socket
   activation (LISTEN_FDS at descriptors 3.., LISTEN_PID its pid) plus the
   write end of a pipe (CHOPIN_READY_FD). Both processes now hold the same
   sockets, so a connection waiting in the kernel's queue is taken by one or
   the other, never refused. The new process writes PID_FILE and a byte on
   the pipe once its workers accept; then the old one stops accepting,
   closes its idle keep-alive connections (the others after their current
   answer) and finishes what is in flight, like any graceful stop. If the
   new process exits first, or is not ready in time, it is killed and
   waited for, and the old one goes on serving; the reason goes to stderr.
   The health route (ch_health) answers 503 once a worker drains. */

static void chi_ops_log(const ch_app *app, const char *fmt, ...)
{
    char line[CHI_ERROR_LEN + 64];
    int n = snprintf(line, sizeof line, "chopin[%ld]: ", chi_os_pid());
    va_list ap;
    (void)app;
    va_start(ap, fmt);
    (void)vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    chi_os_log_line(line);
}

/* Once serving: PID_FILE, then the process that started us (if any). */
static void chi_announce_ready(ch_app *app)
{
    char why[96];
    if (app->pid_file[0]) {
        if (chi_os_write_pidfile(app->pid_file, chi_os_pid()) == 0)
            app->pid_written = 1;
        else
            chi_ops_log(app, "cannot write PID_FILE %s: %s", app->pid_file, chi_os_error_text(why, sizeof why));
    }
    if (app->ready_fd >= 0) {
        chi_os_notify_ready(app->ready_fd);
        app->ready_fd = -1;
    }
}

/* At exit: PID_FILE goes, unless a successor has written its own pid. */
static void chi_pidfile_remove(ch_app *app)
{
    if (app->pid_written) chi_os_remove_pidfile(app->pid_file, chi_os_pid());
    app->pid_written = 0;
}

#ifndef CHOPIN_NO_RESTART
/* The successor's environment: ours without the variables of a previous
   activation, plus LISTEN_FDS, LISTEN_PID (its digits are written by the
   child, into room kept here), LISTEN_FDNAMES if we got names, and
   CHOPIN_READY_FD. The strings live in vars; the array is freed by the
   caller. */
typedef struct chi_spawn_vars {
    char fds[32], pid[48], names[CHI_MAX_HOST + 16], ready[48];
} chi_spawn_vars;

static int chi_is_var(const char *entry, const char *name)
{
    size_t n = strlen(name);
    return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

static char **chi_successor_env(const ch_app *app, chi_spawn_vars *v)
{
    char **env = chi_os_environ(), **out;
    size_t n = 0, i, k = 0;
    while (env && env[n]) n++;
    out = (char **)CHOPIN_MALLOC(sizeof(char *) * (n + 5));
    if (!out) return NULL;
    for (i = 0; i < n; i++)
        if (!chi_is_var(env[i], "LISTEN_FDS") && !chi_is_var(env[i], "LISTEN_PID") &&
            !chi_is_var(env[i], "LISTEN_FDNAMES") && !chi_is_var(env[i], "CHOPIN_READY_FD"))
            out[k++] = env[i];
    (void)snprintf(v->fds, sizeof v->fds, "LISTEN_FDS=%d", app->nlisten);
    (void)snprintf(v->pid, sizeof v->pid, "LISTEN_PID=%s", "00000000000000000000");
    (void)snprintf(v->ready, sizeof v->ready, "CHOPIN_READY_FD=%d", 3 + app->nlisten);
    out[k++] = v->fds;
    out[k++] = v->pid;
    out[k++] = v->ready;
    if (app->fdnames[0]) {
        (void)snprintf(v->names, sizeof v->names, "LISTEN_FDNAMES=%s", app->fdnames);
        out[k++] = v->names;
    }
    out[k] = NULL;
    return out;
}

static void chi_successor_forget(ch_app *app)
{
    chi_poller_del(&app->ctl, app->next.ready_rd, CHI_EV_READ);
    chi_os_close(app->next.ready_rd);
    memset(&app->next, 0, sizeof app->next);
}

/* Starts the successor (a restart). The main thread then waits for its
   pipe (chi_restart_check). Returns 0, or -1 (logged: still serving). */
static int chi_restart_begin(ch_app *app, const int *blocked, int nblocked)
{
    chi_spawn s;
    chi_spawn_vars v;
    char **envp, why[96];
    int pipefd[2];
    long pid;
    if (app->next.pid) {
        chi_ops_log(app, "restart: already under way (pid %ld starting); ignored", app->next.pid);
        return -1;
    }
    if (!app->exe[0] || !app->argv) {
        chi_ops_log(app, "restart: impossible, the executable or its arguments are unknown (set ch_config.argv)");
        return -1;
    }
    if (chi_os_pipe(pipefd) < 0) {
        chi_ops_log(app, "restart: no pipe: %s; still serving", chi_os_error_text(why, sizeof why));
        return -1;
    }
    envp = chi_successor_env(app, &v);
    memset(&s, 0, sizeof s);
    s.exe = app->exe;
    s.argv = app->argv;
    s.envp = envp;
    s.fds = app->listen_fds;
    s.nfds = app->nlisten;
    s.ready_fd = pipefd[1];
    s.pid_digits = v.pid + strlen("LISTEN_PID=");
    s.unblock = blocked;
    s.nunblock = nblocked;
    pid = envp ? chi_os_spawn(&s) : -1;
    chi_os_close(pipefd[1]); /* the child's copy is the only writer left */
    CHOPIN_FREE(envp);
    if (pid < 0 || chi_poller_add(&app->ctl, pipefd[0], CHI_EV_READ, CHI_TAG_READY, 0) < 0) {
        chi_ops_log(app, "restart: cannot start %s: %s; still serving", app->exe, chi_os_error_text(why, sizeof why));
        chi_os_close(pipefd[0]);
        if (pid > 0) chi_os_reap(pid, 0, why, sizeof why);
        return -1;
    }
    app->next.pid = pid;
    app->next.ready_rd = pipefd[0];
    app->next.deadline_ns = chi_os_now_ns() + (int64_t)CHI_DEFAULT_RESTART_TIMEOUT * 1000000000;
    chi_ops_log(app, "restart: started pid %ld (%s), passing %d listening socket%s", pid, app->exe, app->nlisten,
                app->nlisten == 1 ? "" : "s");
    return 0;
}

/* The successor's pipe is readable, or its time is up. Returns 1 when it
   serves (this process then drains and leaves), 0 otherwise. */
static int chi_restart_check(ch_app *app, int timed_out)
{
    char why[96];
    long pid = app->next.pid;
    int r = timed_out ? -1 : chi_os_read_ready(app->next.ready_rd);
    if (r == 1) {
        chi_successor_forget(app);
        chi_ops_log(app, "restart: pid %ld serves; this process stops accepting and drains", pid);
        return 1;
    }
    if (r == 0 || timed_out) {
        chi_successor_forget(app);
        chi_os_reap(pid, timed_out ? 0 : 1000, why, sizeof why);
        if (timed_out)
            chi_ops_log(app, "restart failed: pid %ld was not serving after %d s and was killed; still serving", pid,
                        CHI_DEFAULT_RESTART_TIMEOUT);
        else
            chi_ops_log(app, "restart failed: pid %ld %s before serving; still serving", pid, why);
    }
    return 0;
}

/* Stopping while a successor starts: it would be left serving alone. */
static void chi_restart_abandon(ch_app *app)
{
    char why[96];
    long pid = app->next.pid;
    if (!pid) return;
    chi_successor_forget(app);
    chi_os_reap(pid, 0, why, sizeof why);
    chi_ops_log(app, "restart abandoned: stopping; pid %ld %s", pid, why);
}

#else /* CHOPIN_NO_RESTART: the hand-over is compiled out */
static int chi_restart_begin(ch_app *app, const int *blocked, int nblocked)
{
    (void)blocked;
    (void)nblocked;
    chi_ops_log(app, "restart: compiled out (CHOPIN_NO_RESTART); ignored");
    return -1;
}

static int chi_restart_check(ch_app *app, int timed_out)
{
    (void)app;
    (void)timed_out;
    return 0;
}

static void chi_restart_abandon(ch_app *app) { (void)app; }
#endif /* CHOPIN_NO_RESTART */

CHOPIN_API int ch_restart(ch_app *app)
{
    if (!app) return -1;
#ifdef CHOPIN_NO_RESTART
    chi_set_error(app, "ch_restart: compiled out (CHOPIN_NO_RESTART)");
    return -1;
#endif
    if (app->embedded) {
        chi_set_error(app, "ch_restart needs ch_serve: an embedded server (ch_poll) cannot restart");
        return -1;
    }
    if (!app->listening || !app->exe[0] || !app->argv) {
        chi_set_error(app, "ch_restart: %s", !app->listening ? "not listening"
                                                             : "the executable or its arguments are unknown (set ch_config.argv)");
        return -1;
    }
    chi_waker_wake(&app->restart);
    return 0;
}

CHOPIN_API void ch_health_handler(ch_req *req, ch_res *res)
{
    int draining = res->w->stopping;
    (void)req;
    ch_res_text(res, draining ? 503 : 200, draining ? "draining" : "ok");
}

CHOPIN_API int ch_health(ch_app *app, const char *path) { return ch_get(app, path, ch_health_handler, NULL); }

/* >>run ---------------------------------------------------------------------
   The calling thread starts the workers and then only waits, on the app's
   own poller: for SIGINT or SIGTERM (taken as events by the OS seam, so no
   global handler state is needed) or for ch_stop; for SIGUSR2 or
   ch_restart, and then for the successor's pipe (>>restart). To stop, it
   wakes every worker, which stops accepting, closes idle connections,
   finishes the requests in flight and returns. */

/* The signals ch_serve takes as events. */
static const int chi_serve_signals[] = {SIGINT, SIGTERM, SIGUSR2};
#define CHI_SERVE_NSIGNALS 3

CHOPIN_API void ch_stop(ch_app *app)
{
    if (!app) return;
    chi_store_int(&app->stop_flag, 1); /* the waker also carries posts */
    if (app->stop_open) chi_waker_wake(&app->stop);
}

/* Milliseconds until a starting successor's deadline; -1: none. */
static int chi_wait_ms(const ch_app *app)
{
    int64_t left;
    if (!app->next.pid) return -1;
    left = (app->next.deadline_ns - chi_os_now_ns()) / 1000000 + 1;
    return left < 0 ? 0 : (int)left;
}

/* Returns on ch_stop, on a stop signal (sig may be NULL: none), or once a
   successor serves; starts one on SIGUSR2 or ch_restart. */
static void chi_wait_for_stop(ch_app *app, chi_signals *sig)
{
    chi_event ev[8];
    int i, n, s, stop = 0, nblocked = sig ? CHI_SERVE_NSIGNALS : 0;
    while (!stop) {
        n = chi_poller_wait(&app->ctl, ev, 8, chi_wait_ms(app));
        if (n < 0) break;
        for (i = 0; i < n; i++) {
            if (ev[i].tag == CHI_TAG_STOP) {
                stop = 1;
            } else if (ev[i].tag == CHI_TAG_SIGNAL && sig && (s = chi_signals_read(sig)) != 0) {
                if (s == SIGUSR2)
                    chi_restart_begin(app, chi_serve_signals, nblocked);
                else
                    stop = 1;
            } else if (ev[i].tag == CHI_TAG_RESTART) {
                chi_waker_drain(&app->restart);
                chi_restart_begin(app, chi_serve_signals, nblocked);
            } else if (ev[i].tag == CHI_TAG_READY && app->next.pid) {
                if (chi_restart_check(app, 0)) stop = app->handover = 1;
            }
        }
        if (!stop && app->next.pid && chi_os_now_ns() >= app->next.deadline_ns) chi_restart_check(app, 1);
    }
    chi_waker_drain(&app->stop);
    chi_restart_abandon(app);
}

/* Stops and frees the workers that started (started of them). */
static void chi_stop_workers(ch_app *app, int started)
{
    int i;
    for (i = 0; i < started; i++) {
        chi_store_int(&app->workers[i].stop_flag, 1); /* the waker also carries posts */
        chi_waker_wake(&app->workers[i].waker);
    }
    for (i = 0; i < started; i++) chi_os_thread_join(app->workers[i].thread);
    chi_pool_stop(app->pool); /* its last results go to the workers' queues */
    chi_store_int(&app->nworkers, 0);
    for (i = 0; i < started; i++) chi_worker_cleanup(&app->workers[i]);
    CHOPIN_FREE(app->workers);
    app->workers = NULL;
}

static void chi_close_listeners(ch_app *app)
{
    int i;
    for (i = 0; i < app->nlisten; i++) chi_os_close(app->listen_fds[i]);
    app->nlisten = 0;
    app->listening = 0;
}

/* Starts cfg.workers threads; returns how many started (all, or -1). */
static int chi_start_workers(ch_app *app)
{
    int i, nw = app->cfg.workers;
    app->workers = (chi_worker *)CHOPIN_MALLOC(sizeof(chi_worker) * (size_t)nw);
    if (!app->workers) {
        chi_set_error(app, "out of memory");
        return -1;
    }
    for (i = 0; i < nw; i++) {
        chi_worker *w = &app->workers[i];
        if (chi_worker_init(w, app, i, NULL) < 0 ||
            (chi_store_int(&app->nworkers, i + 1), 0) ||
            chi_os_thread_start(&w->thread, chi_worker_main, w) < 0) {
            char why[128];
            chi_set_error(app, "cannot start worker %d: %s", i, chi_os_error_text(why, sizeof why));
            chi_worker_cleanup(w);
            chi_stop_workers(app, i);
            return -1;
        }
    }
    return nw;
}

CHOPIN_API int ch_serve(ch_app *app)
{
    chi_signals sig;
    int sig_open = 0, started;
    if (!app || !app->listening || app->workers) {
        if (app) chi_set_error(app, "ch_serve needs a successful ch_listen first");
        return -1;
    }
    /* before the workers start, so they inherit the blocked signals */
    if (!app->cfg.no_signals)
        sig_open = chi_signals_open(&sig, &app->ctl, chi_serve_signals, CHI_SERVE_NSIGNALS, CHI_TAG_SIGNAL) == 0;
    started = chi_start_workers(app);
    if (started > 0) {
        int64_t t0;
        chi_announce_ready(app);
        chi_wait_for_stop(app, sig_open ? &sig : NULL);
        t0 = chi_os_now_ns();
        chi_stop_workers(app, started);
        if (app->handover)
            chi_ops_log(app, "restart: drained in %ld ms; exiting", (long)((chi_os_now_ns() - t0) / 1000000));
    }
    chi_close_listeners(app);
    if (sig_open) chi_signals_close(&sig);
    chi_pidfile_remove(app);
    return started > 0 ? 0 : -1;
}

CHOPIN_API int ch_run(ch_app *app, const ch_config *cfg)
{
    if (ch_listen(app, cfg) < 0) return -1;
    return ch_serve(app);
}

/* >>embed -------------------------------------------------------------------
   The server inside the caller's loop. The first ch_poll sets up one worker
   on the calling thread around the app's own poller, whose descriptor
   ch_poll_fd hands out; every call then runs one pass of that worker with
   the caller's timeout. ch_stop pokes the app's waker, which is in that
   same poller, so the worker begins its graceful stop on the next pass;
   once it has stopped, ch_poll returns 1. No thread, no signal handling. */

static void chi_embed_end(ch_app *app)
{
    chi_pool_stop(app->pool);
    chi_store_int(&app->nworkers, 0);
    chi_worker_cleanup(&app->workers[0]);
    CHOPIN_FREE(app->workers);
    app->workers = NULL;
    chi_close_listeners(app);
    chi_pidfile_remove(app);
}

static int chi_embed_begin(ch_app *app)
{
    if (!app->listening) {
        chi_set_error(app, "ch_poll needs a successful ch_listen first");
        return -1;
    }
    if (app->cfg.workers > 1) {
        chi_set_error(app, "ch_poll runs one event loop: workers must be 0 or 1 (CHOPIN_WORKERS too)");
        return -1;
    }
    app->workers = (chi_worker *)CHOPIN_MALLOC(sizeof(chi_worker));
    if (!app->workers) {
        chi_set_error(app, "out of memory");
        return -1;
    }
    if (chi_worker_init(&app->workers[0], app, 0, &app->ctl) < 0) {
        char why[128];
        chi_set_error(app, "cannot start the embedded server: %s", chi_os_error_text(why, sizeof why));
        chi_worker_cleanup(&app->workers[0]);
        CHOPIN_FREE(app->workers);
        app->workers = NULL;
        return -1;
    }
    app->embedded = 1;
    chi_store_int(&app->nworkers, 1);
    chi_worker_hooks_start(&app->workers[0]);
    chi_waker_drain(&app->restart); /* no restart here: an early ch_restart is dropped */
    chi_announce_ready(app);
    return 0;
}

CHOPIN_API int ch_poll(ch_app *app, int timeout_ms)
{
    chi_worker *w;
    if (!app) return -1;
    if (app->workers && !app->embedded) {
        chi_set_error(app, "ch_poll and ch_serve cannot run the same app");
        return -1;
    }
    if (!app->workers) {
        if (app->embedded) return 1; /* stopped earlier */
        if (chi_embed_begin(app) < 0) return -1;
    }
    w = &app->workers[0];
    if (chi_worker_pass(w, timeout_ms < 0 ? 0 : timeout_ms) < 0) {
        char why[128];
        chi_set_error(app, "poll failed: %s", chi_os_error_text(why, sizeof why));
        return -1;
    }
#if defined(CHI_OS_IO_URING)
    chi_poller_flush(&app->ctl); /* the caller may sleep on ch_poll_fd next */
#endif
    if (chi_worker_running(w)) return 0;
    chi_worker_wind_up(w);
    chi_poller_finish(w->poller);
    chi_embed_end(app);
    return 1;
}

/* The descriptor is the app's poller's; the worker joins it here if no
   ch_poll did yet, so the listener and the tick are in the set before the
   caller first waits on it. */
CHOPIN_API int ch_poll_fd(ch_app *app)
{
    if (!app || (app->workers && !app->embedded)) return -1;
    if (!app->workers && !app->embedded && chi_embed_begin(app) < 0) return -1;
#if defined(CHI_OS_IO_URING)
    chi_poller_flush(&app->ctl);
#endif
    return chi_poller_fd(&app->ctl);
}

/* Frees everything: a running embedded server is closed at once (call
   ch_stop and ch_poll until it returns 1 for a graceful stop). */
CHOPIN_API void ch_app_free(ch_app *app)
{
    if (!app) return;
    if (app->workers) chi_embed_end(app);
    chi_close_listeners(app);
    if (app->stop_open) chi_waker_close(&app->stop);
    if (app->restart_open) chi_waker_close(&app->restart);
    if (app->ctl_open) chi_poller_close(&app->ctl);
    if (app->ready_fd >= 0) chi_os_close(app->ready_fd);
    CHOPIN_FREE(app->argv);
    CHOPIN_FREE(app->argv_block);
    chi_pool_free(app->pool);
    chi_app_free_routes(app);
    chi_batteries_free(app);
    CHOPIN_FREE(app);
}

#endif /* CHOPIN_CORE_ONLY */

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
