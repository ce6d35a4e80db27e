/* tests/kqueue/seam_test.c - checks one backend of chopin.h's OS seam
   (>>os) against its contract, over real sockets and pipes. It includes
   chopin.h's implementation with the backend forced, and calls the
   backend's chi_poller_*, chi_waker_*, chi_ticker_* and chi_signals_*
   functions directly:
     (nothing)                         epoll (Linux's default)
     -DSEAM_POLL                       CHOPIN_USE_POLL
     -DSEAM_KQUEUE -Itests/kqueue      CHOPIN_USE_KQUEUE; on Linux link
                                       tests/kqueue/kqueue.c (the emulation)
     -DSEAM_KQUEUE -DSEAM_NO_EVFILT_USER   the same, with the self-pipe waker
                                       used where EVFILT_USER is missing
     -DSEAM_URING                      CHOPIN_USE_IO_URING (the ring; epoll
                                       where the kernel refuses it)
   Every wait is bounded. The last line is "N passed, N failed". */

#define _GNU_SOURCE /* before any system header, as chopin.h asks */

/* Outstanding allocations: every backend must give back what it takes. */
#include <stdlib.h>
static long seam_allocs;
static void *seam_malloc(size_t n)
{
    void *p = malloc(n);
    if (p) seam_allocs++;
    return p;
}
static void *seam_realloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q && !p) seam_allocs++;
    return q;
}
static void seam_free(void *p)
{
    if (p) seam_allocs--;
    free(p);
}
#define CHOPIN_MALLOC(n) seam_malloc(n)
#define CHOPIN_REALLOC(p, n) seam_realloc(p, n)
#define CHOPIN_FREE(p) seam_free(p)

#if defined(SEAM_KQUEUE)
#define CHOPIN_USE_KQUEUE
#ifdef SEAM_NO_EVFILT_USER
#include <sys/event.h>
#undef EVFILT_USER /* as on a system without it: the backend falls back to a pipe */
#define SEAM_NAME "kqueue (self-pipe waker)"
#else
#define SEAM_NAME "kqueue"
#endif
#define SEAM_HAS_FD 1
#elif defined(SEAM_URING)
#define CHOPIN_USE_IO_URING
#define SEAM_NAME "io_uring"
#define SEAM_HAS_FD 1
#define SEAM_URING_SENDS 1 /* a send is queued until the next wait */
#elif defined(SEAM_POLL)
#define CHOPIN_USE_POLL
#define SEAM_NAME "poll"
#define SEAM_HAS_FD 0
#else
#define CHOPIN_USE_EPOLL
#define SEAM_NAME "epoll"
#define SEAM_HAS_FD 1
#endif
#ifndef SEAM_URING_SENDS
#define SEAM_URING_SENDS 0
#endif
#define CHOPIN_IMPLEMENTATION
#include "../../chopin.h"

#include <poll.h>

/* --- harness --------------------------------------------------------------- */
static int passed, failed;

#define CHECK(cond)                                                                                     \
    do {                                                                                                \
        if (cond)                                                                                       \
            passed++;                                                                                   \
        else {                                                                                          \
            failed++;                                                                                   \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                      \
        }                                                                                               \
    } while (0)

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One wait; the flags of every event with `tag` ORed (a backend may split
   read and write into two events). 0: none for that tag. */
static unsigned wait_tag(chi_poller *p, uint64_t tag, int timeout_ms)
{
    chi_event ev[CHI_MAX_EVENTS];
    unsigned f = 0;
    int n, i;
    long long end = now_ms() + timeout_ms;
    do { /* other tags (a tick) may come first: keep waiting until the deadline */
        long long left = end - now_ms();
        n = chi_poller_wait(p, ev, CHI_MAX_EVENTS, left < 0 ? 0 : (int)left);
        for (i = 0; i < n; i++)
            if (ev[i].tag == tag) f |= ev[i].flags;
    } while (!f && n >= 0 && now_ms() < end);
    return f;
}

static void sleep_ms(int ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static int tcp_listener(struct sockaddr_in *addr)
{
    socklen_t len = sizeof *addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)addr, sizeof *addr) < 0 || listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)addr, &len) < 0)
        return -1;
    set_nonblock(fd);
    return fd;
}

static int tcp_connect(const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0) return -1;
    return fd;
}

/* --- the contract ---------------------------------------------------------- */

static void test_open_close(void)
{
    chi_poller p, z;
    int before = fcntl(0, F_GETFD) >= 0;
    CHECK(chi_poller_open(&p) == 0);
    chi_poller_close(&p);
    chi_poller_close(&p); /* twice: harmless */
    memset(&z, 0, sizeof z);
    chi_poller_close(&z); /* a zeroed one: must not close fd 0 */
    CHECK((fcntl(0, F_GETFD) >= 0) == before);
}

static void test_read_write_mod_del(void)
{
    chi_poller p;
    int s[2], t[2];
    char buf[64];
    uint64_t tag;
    CHECK(chi_poller_open(&p) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
    set_nonblock(s[0]);
    tag = (uint64_t)s[0];
    CHECK(chi_poller_add(&p, s[0], CHI_EV_READ, tag, 0) == 0);
    CHECK(wait_tag(&p, tag, 0) == 0);
    CHECK(write(s[1], "hello", 5) == 5);
    CHECK(wait_tag(&p, tag, 1000) & CHI_EV_READ);
    CHECK(wait_tag(&p, tag, 0) & CHI_EV_READ); /* level-triggered: still readable */
    CHECK(read(s[0], buf, sizeof buf) == 5);
    CHECK(wait_tag(&p, tag, 0) == 0);

    /* mod: read and write, then write only, then quiet */
    CHECK(write(s[1], "x", 1) == 1);
    CHECK(chi_poller_mod(&p, s[0], CHI_EV_READ, CHI_EV_READ | CHI_EV_WRITE, tag) == 0);
    CHECK((wait_tag(&p, tag, 1000) & (CHI_EV_READ | CHI_EV_WRITE)) == (CHI_EV_READ | CHI_EV_WRITE));
    CHECK(chi_poller_mod(&p, s[0], CHI_EV_READ | CHI_EV_WRITE, CHI_EV_WRITE, tag) == 0);
    CHECK(wait_tag(&p, tag, 0) == CHI_EV_WRITE);
    CHECK(chi_poller_mod(&p, s[0], CHI_EV_WRITE, 0, tag) == 0);
    CHECK(wait_tag(&p, tag, 50) == 0); /* registered but quiet, with data waiting */
    /* a new tag on mod is what the events carry from then on */
    CHECK(chi_poller_mod(&p, s[0], 0, CHI_EV_READ, tag + 1000) == 0);
    CHECK(wait_tag(&p, tag + 1000, 1000) & CHI_EV_READ);
    CHECK(chi_poller_mod(&p, s[0], CHI_EV_READ, CHI_EV_READ, tag) == 0);
    CHECK((wait_tag(&p, tag, 1000) & CHI_EV_READ) && wait_tag(&p, tag + 1000, 0) == 0);

    /* del: quiet, fd still open; add again */
    CHECK(chi_poller_del(&p, s[0], CHI_EV_READ) == 0);
    CHECK(wait_tag(&p, tag, 50) == 0);
    CHECK(fcntl(s[0], F_GETFD) >= 0);
    CHECK(chi_poller_add(&p, s[0], CHI_EV_READ | CHI_EV_WRITE, tag, 0) == 0);
    CHECK((wait_tag(&p, tag, 1000) & (CHI_EV_READ | CHI_EV_WRITE)) == (CHI_EV_READ | CHI_EV_WRITE));
    /* an fd added with 0 is registered but quiet until mod */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, t) == 0);
    CHECK(write(t[1], "y", 1) == 1);
    CHECK(chi_poller_add(&p, t[0], 0, 77, 0) == 0);
    CHECK(wait_tag(&p, 77, 50) == 0);
    CHECK(chi_poller_mod(&p, t[0], 0, CHI_EV_READ, 77) == 0);
    CHECK(wait_tag(&p, 77, 1000) & CHI_EV_READ);

    /* forget, then close: nothing more for it; the number reused starts fresh */
    chi_poller_forget(&p, s[0]);
    close(s[0]);
    close(s[1]);
    CHECK(wait_tag(&p, tag, 50) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
    CHECK(chi_poller_add(&p, s[0], CHI_EV_WRITE, (uint64_t)s[0] + 5000, 0) == 0);
    CHECK(wait_tag(&p, (uint64_t)s[0] + 5000, 1000) == CHI_EV_WRITE);
    chi_poller_forget(&p, s[0]);
    close(s[0]);
    close(s[1]);
    chi_poller_forget(&p, t[0]);
    close(t[0]);
    close(t[1]);
    CHECK(wait_tag(&p, 77, 0) == 0);
    chi_poller_close(&p);
}

static void test_errors(void)
{
    chi_poller p;
    struct sockaddr_in addr;
    struct linger lg;
    chi_event ev[4];
    int lfd, c, a, c2, a2, n, got = 0, i;
    unsigned f;
    char buf[16];
    long long t0;
    CHECK(chi_poller_open(&p) == 0);
    CHECK((lfd = tcp_listener(&addr)) >= 0);
    CHECK(chi_poller_add(&p, lfd, CHI_EV_READ, CHI_TAG_LISTEN, 1) == 0);
    CHECK(wait_tag(&p, CHI_TAG_LISTEN, 0) == 0);
    CHECK((c = tcp_connect(&addr)) >= 0);
    CHECK(wait_tag(&p, CHI_TAG_LISTEN, 1000) & CHI_EV_READ);
    CHECK((a = accept(lfd, NULL, NULL)) >= 0);
    /* a reset peer: an error (with or without READ), and read says so */
    CHECK(chi_poller_add(&p, a, CHI_EV_READ, (uint64_t)a, 0) == 0);
    lg.l_onoff = 1;
    lg.l_linger = 0;
    setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c);
    f = wait_tag(&p, (uint64_t)a, 1000);
    CHECK(f & CHI_EV_ERROR);
    CHECK(read(a, buf, sizeof buf) < 0 && errno == ECONNRESET);
    chi_poller_forget(&p, a);
    close(a);
    /* a reset peer seen by a writer */
    CHECK((c2 = tcp_connect(&addr)) >= 0);
    t0 = now_ms();
    while ((a2 = accept(lfd, NULL, NULL)) < 0 && now_ms() - t0 < 1000) sleep_ms(1);
    CHECK(a2 >= 0);
    CHECK(chi_poller_add(&p, a2, CHI_EV_WRITE, (uint64_t)a2, 0) == 0);
    CHECK(wait_tag(&p, (uint64_t)a2, 1000) == CHI_EV_WRITE);
    CHECK(chi_poller_mod(&p, a2, CHI_EV_WRITE, 0, (uint64_t)a2) == 0);
    setsockopt(c2, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c2);
    sleep_ms(20);
    CHECK(chi_poller_mod(&p, a2, 0, CHI_EV_WRITE, (uint64_t)a2) == 0);
    CHECK(wait_tag(&p, (uint64_t)a2, 1000) & CHI_EV_ERROR);
    chi_poller_forget(&p, a2);
    close(a2);
    /* a clean close: readable (maybe with ERROR), read returns 0 */
    CHECK((c = tcp_connect(&addr)) >= 0);
    t0 = now_ms();
    while ((a = accept(lfd, NULL, NULL)) < 0 && now_ms() - t0 < 1000) sleep_ms(1);
    CHECK(a >= 0);
    CHECK(chi_poller_add(&p, a, CHI_EV_READ, (uint64_t)a, 0) == 0);
    close(c);
    CHECK(wait_tag(&p, (uint64_t)a, 1000) & (CHI_EV_READ | CHI_EV_ERROR));
    CHECK(read(a, buf, sizeof buf) == 0);
    chi_poller_forget(&p, a);
    close(a);
    /* a full batch is bounded by max */
    for (i = 0; i < 3; i++) (void)tcp_connect(&addr);
    n = chi_poller_wait(&p, ev, 1, 1000);
    CHECK(n == 1 && ev[0].tag == CHI_TAG_LISTEN);
    while ((a = accept(lfd, NULL, NULL)) >= 0) {
        close(a);
        got++;
    }
    CHECK(got == 3);
    CHECK(chi_poller_del(&p, lfd, CHI_EV_READ) == 0);
    close(lfd);
    chi_poller_close(&p);
    /* the connecting sockets above are left to process exit */
}

/* Many fds, more ready than one wait takes: every one is seen within a few waits. */
static void test_many(void)
{
    enum { PAIRS = 150 };
    chi_poller p;
    chi_event ev[CHI_MAX_EVENTS];
    int s[PAIRS][2], i, w, n, seen = 0;
    unsigned char hit[PAIRS];
    memset(hit, 0, sizeof hit);
    CHECK(chi_poller_open(&p) == 0);
    for (i = 0; i < PAIRS; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, s[i]) < 0) break;
        chi_poller_add(&p, s[i][0], CHI_EV_READ, (uint64_t)i, 0);
        if (write(s[i][1], "z", 1) != 1) break;
    }
    CHECK(i == PAIRS);
    for (w = 0; w < 20 && seen < PAIRS; w++) {
        n = chi_poller_wait(&p, ev, 64, 1000);
        CHECK(n >= 0 && n <= 64);
        for (i = 0; i < n; i++)
            if (ev[i].tag < PAIRS && !hit[ev[i].tag]) {
                hit[ev[i].tag] = 1;
                seen++;
            }
    }
    CHECK(seen == PAIRS);
    /* take every other one out (del, or forget and close), the rest still report */
    for (i = 0; i < PAIRS; i += 2) {
        if (i % 4 == 0)
            CHECK(chi_poller_del(&p, s[i][0], CHI_EV_READ) == 0);
        else {
            chi_poller_forget(&p, s[i][0]);
            close(s[i][0]);
            s[i][0] = -1;
        }
    }
    memset(hit, 0, sizeof hit);
    seen = 0;
    for (w = 0; w < 10; w++) {
        n = chi_poller_wait(&p, ev, CHI_MAX_EVENTS, 100);
        for (i = 0; i < n; i++)
            if (ev[i].tag < PAIRS && !hit[ev[i].tag]) {
                hit[ev[i].tag] = 1;
                seen++;
            }
    }
    for (i = 0; i < PAIRS; i += 2) CHECK(!hit[i]);
    CHECK(seen == PAIRS / 2);
    for (i = 0; i < PAIRS; i++) {
        if (s[i][0] >= 0) close(s[i][0]);
        close(s[i][1]);
    }
    chi_poller_close(&p);
}

struct waker_arg {
    chi_waker *wk;
    int times;
};

static void *wake_thread(void *arg)
{
    struct waker_arg *a = (struct waker_arg *)arg;
    int i;
    sleep_ms(30); /* let the owner block first */
    for (i = 0; i < a->times; i++) chi_waker_wake(a->wk);
    return NULL;
}

static void test_waker(void)
{
    chi_poller p;
    chi_waker wk;
    pthread_t th;
    struct waker_arg arg;
    long long t0;
    CHECK(chi_poller_open(&p) == 0);
    CHECK(chi_waker_open(&wk, &p, CHI_TAG_WAKE) == 0);
    CHECK(wait_tag(&p, CHI_TAG_WAKE, 0) == 0);
    arg.wk = &wk;
    arg.times = 1;
    CHECK(pthread_create(&th, NULL, wake_thread, &arg) == 0);
    t0 = now_ms();
    CHECK(wait_tag(&p, CHI_TAG_WAKE, 2000) & CHI_EV_READ);
    CHECK(now_ms() - t0 < 1500);
    pthread_join(th, NULL);
    chi_waker_drain(&wk);
    CHECK(wait_tag(&p, CHI_TAG_WAKE, 0) == 0);
    /* many wakes coalesce; a drain stops them */
    arg.times = 1000;
    CHECK(pthread_create(&th, NULL, wake_thread, &arg) == 0);
    pthread_join(th, NULL);
    CHECK(wait_tag(&p, CHI_TAG_WAKE, 1000) & CHI_EV_READ);
    chi_waker_drain(&wk);
    CHECK(wait_tag(&p, CHI_TAG_WAKE, 0) == 0);
    chi_waker_wake(&wk); /* from the owner too */
    CHECK(wait_tag(&p, CHI_TAG_WAKE, 1000) & CHI_EV_READ);
    chi_waker_drain(&wk);
    chi_waker_close(&wk);
    CHECK(wait_tag(&p, CHI_TAG_WAKE, 30) == 0);
    chi_poller_close(&p);
}

static void test_ticker(void)
{
    chi_poller p;
    chi_ticker t;
    chi_event ev[8];
    long long t0, first = -1;
    int ticks = 0, i, n;
    CHECK(chi_poller_open(&p) == 0);
    CHECK(chi_ticker_open(&t, &p, 50, CHI_TAG_TICK) == 0);
    t0 = now_ms();
    while (now_ms() - t0 < 330) {
        n = chi_poller_wait(&p, ev, 8, 100);
        for (i = 0; i < n; i++)
            if (ev[i].tag == CHI_TAG_TICK) {
                if (first < 0) first = now_ms() - t0;
                ticks++;
                chi_ticker_drain(&t);
            }
    }
    /* every 50 ms for 330 ms: about 6; loose bounds for a busy machine */
    CHECK(ticks >= 3 && ticks <= 8);
    CHECK(first >= 35 && first < 300);
    if (ticks < 3 || ticks > 8 || first < 35) printf("  ticker: %d ticks, the first after %lld ms\n", ticks, first);
    chi_ticker_close(&t);
    CHECK(wait_tag(&p, CHI_TAG_TICK, 120) == 0);
    chi_poller_close(&p);
}

static int blocked(int sig)
{
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    return sigismember(&cur, sig) == 1;
}

static void test_signals(void)
{
    static const int stops[2] = {SIGTERM, SIGINT};
    chi_poller p;
    chi_signals s;
    sigset_t pend;
    int term_before = blocked(SIGTERM), int_before = blocked(SIGINT);
    CHECK(chi_poller_open(&p) == 0);
    CHECK(chi_signals_open(&s, &p, stops, 2, CHI_TAG_SIGNAL) == 0);
    CHECK(blocked(SIGTERM) && blocked(SIGINT));
    CHECK(chi_signals_read(&s) == 0);
    CHECK(wait_tag(&p, CHI_TAG_SIGNAL, 0) == 0);
    /* sent to the process, as `kill` and a terminal do */
    CHECK(kill(getpid(), SIGTERM) == 0);
    CHECK(wait_tag(&p, CHI_TAG_SIGNAL, 2000) & CHI_EV_READ);
    CHECK(chi_signals_read(&s) == SIGTERM);
    CHECK(chi_signals_read(&s) == 0);
    CHECK(kill(getpid(), SIGINT) == 0);
    CHECK(wait_tag(&p, CHI_TAG_SIGNAL, 2000) & CHI_EV_READ);
    CHECK(chi_signals_read(&s) == SIGINT);
#if SEAM_HAS_FD
    /* raise() targets this thread, the one that waits: kqueue and signalfd see it */
    CHECK(raise(SIGTERM) == 0);
    CHECK(wait_tag(&p, CHI_TAG_SIGNAL, 2000) & CHI_EV_READ);
    CHECK(chi_signals_read(&s) == SIGTERM);
#endif
    /* one left unread at close: discarded, and the mask is back as it was */
    CHECK(kill(getpid(), SIGTERM) == 0);
    sleep_ms(20);
    chi_signals_close(&s);
    CHECK(blocked(SIGTERM) == term_before && blocked(SIGINT) == int_before);
    sigemptyset(&pend);
    sigpending(&pend);
    CHECK(sigismember(&pend, SIGTERM) == 0);
    chi_poller_close(&p);
}

static void test_poller_fd(void)
{
    chi_poller p;
    int s[2], fd;
    struct pollfd pf;
    CHECK(chi_poller_open(&p) == 0);
    fd = chi_poller_fd(&p);
#if SEAM_HAS_FD
    CHECK(fd >= 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
    CHECK(chi_poller_add(&p, s[0], CHI_EV_READ, 9, 0) == 0);
#if defined(SEAM_URING)
    chi_poller_flush(&p); /* as ch_poll does before the caller sleeps on the descriptor */
#endif
    pf.fd = fd;
    pf.events = POLLIN;
    pf.revents = 0;
    CHECK(poll(&pf, 1, 0) == 0); /* nothing to report: not readable */
    CHECK(write(s[1], "q", 1) == 1);
    CHECK(poll(&pf, 1, 1000) == 1 && (pf.revents & POLLIN));
    CHECK(wait_tag(&p, 9, 0) & CHI_EV_READ);
    close(s[0]);
    close(s[1]);
#else
    (void)s;
    (void)pf;
    CHECK(fd == -1);
#endif
    chi_poller_close(&p);
}

/* Sending through the poller (chi_poller_send, _shutdown_write, _close_fd):
   every byte a send took arrives, in order, even when the descriptor is shut
   or closed right after (io_uring queues them and sends with the next wait);
   a send that says CHI_IO_AGAIN is followed by "writable" once the peer
   reads. The peer's reads and the poller's waits alternate, bounded. */
static size_t pump(chi_poller *p, int rd, char *got, size_t cap, int *eof, int ms)
{
    chi_event ev[CHI_MAX_EVENTS];
    size_t have = 0;
    long long end = now_ms() + ms;
    *eof = 0;
    while (!*eof && now_ms() < end) {
        ssize_t r;
        (void)chi_poller_wait(p, ev, CHI_MAX_EVENTS, 5);
        while ((r = read(rd, got + have, cap - have)) > 0) have += (size_t)r;
        if (r == 0) *eof = 1;
    }
    return have;
}

static void test_send(void)
{
    static char big[1 << 20], got[1 << 20];
    chi_poller p;
    int s[2], eof, seen;
    size_t i, took, have;
    long r;
    for (i = 0; i < sizeof big; i++) big[i] = (char)(i * 7 + i / 251);
    CHECK(chi_poller_open(&p) == 0);
    /* a small send, then the peer reads it */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
    set_nonblock(s[0]);
    set_nonblock(s[1]);
    CHECK(chi_poller_add(&p, s[0], CHI_EV_READ, 5, 0) == 0);
    CHECK(chi_poller_send(&p, s[0], "hello", 5) == 5);
    CHECK(!chi_poller_sending(&p, s[0]) || SEAM_URING_SENDS);
    have = 0;
    {
        long long end = now_ms() + 1000;
        chi_event ev[CHI_MAX_EVENTS];
        while (have < 5 && now_ms() < end) {
            ssize_t n;
            (void)chi_poller_wait(&p, ev, CHI_MAX_EVENTS, 5);
            if ((n = read(s[1], got + have, sizeof got - have)) > 0) have += (size_t)n;
        }
    }
    CHECK(have == 5 && memcmp(got, "hello", 5) == 0);
    /* sends until one would block, then writable once the peer reads */
    took = 0;
    while (took < sizeof big && (r = chi_poller_send(&p, s[0], big + took, sizeof big - took)) > 0) took += (size_t)r;
    CHECK(took > 0 && took < sizeof big);
    CHECK(chi_poller_send(&p, s[0], big + took, sizeof big - took) == CHI_IO_AGAIN);
    CHECK(chi_poller_mod(&p, s[0], CHI_EV_READ, CHI_EV_READ | CHI_EV_WRITE, 5) == 0);
    have = 0;
    seen = 0;
    {
        long long end = now_ms() + 2000;
        chi_event ev[CHI_MAX_EVENTS];
        while ((!seen || have < took) && now_ms() < end) {
            int n = chi_poller_wait(&p, ev, CHI_MAX_EVENTS, 5), k;
            ssize_t m;
            for (k = 0; k < n; k++)
                if (ev[k].tag == 5 && (ev[k].flags & CHI_EV_WRITE)) seen = 1;
            while ((m = read(s[1], got + have, sizeof got - have)) > 0) have += (size_t)m;
        }
    }
    CHECK(seen);
    CHECK(have == took && memcmp(got, big, took) == 0);
    /* a shutdown right after a send: every byte, then the end */
    CHECK(chi_poller_mod(&p, s[0], CHI_EV_READ | CHI_EV_WRITE, CHI_EV_READ, 5) == 0);
    r = chi_poller_send(&p, s[0], big, 60000);
    CHECK(r > 0);
    CHECK(chi_poller_shutdown_write(&p, s[0]) == 0);
    have = pump(&p, s[1], got, sizeof got, &eof, 2000);
    CHECK(eof && r > 0 && have == (size_t)r && memcmp(got, big, have) == 0);
    chi_poller_close_fd(&p, s[0]);
    close(s[1]);
    /* a close right after a send: every byte, then the end */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
    set_nonblock(s[0]);
    set_nonblock(s[1]);
    CHECK(chi_poller_add(&p, s[0], CHI_EV_READ, 6, 0) == 0);
    r = chi_poller_send(&p, s[0], big + 3, 100000);
    CHECK(r > 0);
    chi_poller_close_fd(&p, s[0]);
    have = pump(&p, s[1], got, sizeof got, &eof, 2000);
    CHECK(eof && r > 0 && have == (size_t)r && memcmp(got, big + 3, have) == 0);
    close(s[1]);
    chi_poller_finish(&p);
    chi_poller_close(&p);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    printf("seam test: %s backend\n", SEAM_NAME);
#if defined(SEAM_URING)
    printf("# ch_backend() says %s\n", ch_backend());
#endif
    test_open_close();
    test_read_write_mod_del();
    test_errors();
    test_many();
    test_waker();
    test_ticker();
    test_signals();
    test_poller_fd();
    test_send();
    seam_free(seam_realloc(seam_malloc(1), 2)); /* the counter itself (the kqueue block never allocates) */
    CHECK(seam_allocs == 0);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
