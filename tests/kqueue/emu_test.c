/* tests/kqueue/emu_test.c - unit tests of the kqueue emulation (kqueue.c):
   each filter, enable/disable, delete, one-shot, clear, fd reuse, a user event
   triggered from another thread, a signal, a timer. Every wait is bounded.
   Build: cc -Itests/kqueue tests/kqueue/emu_test.c tests/kqueue/kqueue.c -pthread
   The last line is "N passed, N failed". */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sys/event.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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

#define TAG(n) ((void *)(uintptr_t)(n))

static int change(int kq, uintptr_t ident, int filter, unsigned flags, unsigned fflags, intptr_t data, void *udata)
{
    struct kevent k;
    EV_SET(&k, ident, filter, flags, fflags, data, udata);
    return kevent(kq, &k, 1, NULL, 0, NULL);
}

static int wait_ms(int kq, struct kevent *out, int max, int ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    return kevent(kq, NULL, 0, out, max, &ts);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const struct kevent *find(const struct kevent *ev, int n, int filter)
{
    int i;
    for (i = 0; i < n; i++)
        if (ev[i].filter == filter) return &ev[i];
    return NULL;
}

static void test_read_write(void)
{
    struct kevent ev[8];
    int kq = kqueue(), s[2], n;
    char buf[16];
    CHECK(kq >= 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
    CHECK(change(kq, (uintptr_t)s[0], EVFILT_READ, EV_ADD, 0, 0, TAG(11)) == 0);
    CHECK(wait_ms(kq, ev, 8, 0) == 0); /* nothing to read yet */
    CHECK(write(s[1], "abc", 3) == 3);
    n = wait_ms(kq, ev, 8, 1000);
    CHECK(n == 1 && ev[0].filter == EVFILT_READ && ev[0].ident == (uintptr_t)s[0]);
    CHECK(n == 1 && ev[0].udata == TAG(11) && ev[0].data == 3 && !(ev[0].flags & EV_EOF));
    CHECK(wait_ms(kq, ev, 8, 0) == 1); /* level-triggered: still there */
    CHECK(read(s[0], buf, sizeof buf) == 3);
    CHECK(wait_ms(kq, ev, 8, 0) == 0);

    /* write on the same fd: one epoll registration, two kevents */
    CHECK(change(kq, (uintptr_t)s[0], EVFILT_WRITE, EV_ADD, 0, 0, TAG(12)) == 0);
    CHECK(write(s[1], "x", 1) == 1);
    n = wait_ms(kq, ev, 8, 1000);
    CHECK(n == 2 && find(ev, n, EVFILT_READ) && find(ev, n, EVFILT_WRITE));
    CHECK(n == 2 && find(ev, n, EVFILT_WRITE)->udata == TAG(12) && find(ev, n, EVFILT_READ)->udata == TAG(11));
    /* room for one: read and write take turns */
    {
        struct kevent a, b;
        CHECK(wait_ms(kq, &a, 1, 0) == 1 && wait_ms(kq, &b, 1, 0) == 1 && a.filter != b.filter);
    }
    /* disable write, then read; enable again */
    CHECK(change(kq, (uintptr_t)s[0], EVFILT_WRITE, EV_DISABLE, 0, 0, TAG(12)) == 0);
    n = wait_ms(kq, ev, 8, 0);
    CHECK(n == 1 && ev[0].filter == EVFILT_READ);
    CHECK(change(kq, (uintptr_t)s[0], EVFILT_READ, EV_DISABLE, 0, 0, TAG(11)) == 0);
    CHECK(wait_ms(kq, ev, 8, 0) == 0);
    /* as on FreeBSD and macOS, a change without EV_ADD replaces udata too */
    CHECK(change(kq, (uintptr_t)s[0], EVFILT_WRITE, EV_ENABLE, 0, 0, TAG(16)) == 0);
    n = wait_ms(kq, ev, 8, 0);
    CHECK(n == 1 && ev[0].filter == EVFILT_WRITE && ev[0].udata == TAG(16));
    CHECK(change(kq, (uintptr_t)s[0], EVFILT_READ, EV_ENABLE, 0, 0, TAG(11)) == 0);
    CHECK(wait_ms(kq, ev, 8, 0) == 2);
    /* delete */
    CHECK(change(kq, (uintptr_t)s[0], EVFILT_WRITE, EV_DELETE, 0, 0, NULL) == 0);
    n = wait_ms(kq, ev, 8, 0);
    CHECK(n == 1 && ev[0].filter == EVFILT_READ);
    CHECK(change(kq, (uintptr_t)s[0], EVFILT_WRITE, EV_DELETE, 0, 0, NULL) == -1 && errno == ENOENT);
    CHECK(change(kq, (uintptr_t)s[0], EVFILT_WRITE, EV_ENABLE, 0, 0, NULL) == -1 && errno == ENOENT);
    CHECK(change(kq, (uintptr_t)s[0], EVFILT_READ, EV_DELETE, 0, 0, NULL) == 0);
    CHECK(wait_ms(kq, ev, 8, 0) == 0);
    /* EV_ADD on an existing note changes its udata */
    CHECK(change(kq, (uintptr_t)s[0], EVFILT_READ, EV_ADD, 0, 0, TAG(13)) == 0);
    CHECK(change(kq, (uintptr_t)s[0], EVFILT_READ, EV_ADD, 0, 0, TAG(14)) == 0);
    n = wait_ms(kq, ev, 8, 0);
    CHECK(n == 1 && ev[0].udata == TAG(14));
    /* EV_EOF when the peer goes */
    close(s[1]);
    n = wait_ms(kq, ev, 8, 1000);
    CHECK(n == 1 && ev[0].filter == EVFILT_READ && (ev[0].flags & EV_EOF));
    CHECK(change(kq, (uintptr_t)s[0], EVFILT_WRITE, EV_ADD, 0, 0, TAG(15)) == 0);
    n = wait_ms(kq, ev, 8, 1000);
    CHECK(n == 2 && find(ev, n, EVFILT_WRITE) && (find(ev, n, EVFILT_WRITE)->flags & EV_EOF));
    close(s[0]);
    close(kq);
}

static void test_errors_receipt(void)
{
    struct kevent k[2], ev[4];
    int kq = kqueue(), p[2], n;
    CHECK(pipe(p) == 0);
    CHECK(change(kq, 1000000, EVFILT_READ, EV_ADD, 0, 0, NULL) == -1 && errno == EBADF);
    CHECK(change(kq, (uintptr_t)p[0], 99, EV_ADD, 0, 0, NULL) == -1 && errno == EINVAL);
    CHECK(change(kq, 0, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL) == -1 && errno == EINVAL);
    CHECK(kevent(-1, NULL, 0, ev, 4, NULL) == -1 && errno == EBADF);
    /* with room, a failed change is an EV_ERROR entry; EV_RECEIPT reports success too */
    EV_SET(&k[0], (uintptr_t)p[0], EVFILT_READ, EV_ADD | EV_RECEIPT, 0, 0, TAG(1));
    EV_SET(&k[1], (uintptr_t)p[0], EVFILT_WRITE, EV_DELETE, 0, 0, TAG(2));
    n = kevent(kq, k, 2, ev, 4, NULL);
    CHECK(n == 2 && (ev[0].flags & EV_ERROR) && ev[0].data == 0 && (ev[1].flags & EV_ERROR) && ev[1].data == ENOENT);
    CHECK(write(p[1], "x", 1) == 1);
    n = wait_ms(kq, ev, 4, 1000);
    CHECK(n == 1 && ev[0].udata == TAG(1));
    close(p[0]);
    close(p[1]);
    close(kq);
}

static void test_oneshot_clear(void)
{
    struct kevent ev[4];
    int kq = kqueue(), p[2], n;
    char buf[8];
    CHECK(pipe(p) == 0);
    CHECK(change(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD | EV_ONESHOT, 0, 0, TAG(3)) == 0);
    CHECK(write(p[1], "ab", 2) == 2);
    CHECK(wait_ms(kq, ev, 4, 1000) == 1 && (ev[0].flags & EV_ONESHOT));
    CHECK(wait_ms(kq, ev, 4, 0) == 0);
    CHECK(change(kq, (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL) == -1 && errno == ENOENT);
    /* EV_CLEAR: reported once per change of state */
    CHECK(change(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, TAG(4)) == 0);
    CHECK(wait_ms(kq, ev, 4, 1000) == 1 && ev[0].data == 2);
    CHECK(wait_ms(kq, ev, 4, 0) == 0);
    CHECK(write(p[1], "c", 1) == 1);
    n = wait_ms(kq, ev, 4, 1000);
    CHECK(n == 1 && ev[0].data == 3);
    CHECK(read(p[0], buf, sizeof buf) == 3);
    /* one epoll registration cannot mix edge and level */
    CHECK(change(kq, (uintptr_t)p[0], EVFILT_WRITE, EV_ADD, 0, 0, NULL) == -1 && errno == EINVAL);
    close(p[0]);
    close(p[1]);
    close(kq);
}

/* Closing an fd removes its notes; a new file under the same number starts fresh. */
static void test_fd_reuse(void)
{
    struct kevent ev[4];
    int kq = kqueue(), s[2], t[2], num, n;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
    num = s[0];
    CHECK(change(kq, (uintptr_t)num, EVFILT_READ, EV_ADD, 0, 0, TAG(21)) == 0);
    CHECK(write(s[1], "x", 1) == 1);
    close(s[0]);
    CHECK(wait_ms(kq, ev, 4, 0) == 0); /* closed: nothing reported for it */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, t) == 0);
    if (t[0] != num) { /* put the new file under the old number */
        CHECK(dup2(t[0], num) == num);
        close(t[0]);
        t[0] = num;
    }
    CHECK(wait_ms(kq, ev, 4, 0) == 0);
    CHECK(change(kq, (uintptr_t)num, EVFILT_WRITE, EV_ADD, 0, 0, TAG(22)) == 0);
    CHECK(write(t[1], "y", 1) == 1); /* readable now, but the old read note is gone */
    n = wait_ms(kq, ev, 4, 1000);
    CHECK(n == 1 && ev[0].filter == EVFILT_WRITE && ev[0].udata == TAG(22));
    CHECK(change(kq, (uintptr_t)num, EVFILT_READ, EV_DELETE, 0, 0, NULL) == -1 && errno == ENOENT);
    close(t[0]);
    close(t[1]);
    close(s[1]);
    CHECK(change(kq, (uintptr_t)num, EVFILT_WRITE, EV_DELETE, 0, 0, NULL) == -1 && errno == EBADF);
    close(kq);
    /* a new kqueue under the number of a closed one starts empty */
    kq = kqueue();
    CHECK(kq >= 0 && wait_ms(kq, ev, 4, 0) == 0);
    close(kq);
}

static void test_timer(void)
{
    struct kevent ev[4];
    int kq = kqueue(), n, fires = 0;
    long long t0, t1;
    CHECK(change(kq, 7, EVFILT_TIMER, EV_ADD, 0, 20, TAG(31)) == 0);
    t0 = now_ms();
    n = wait_ms(kq, ev, 4, 2000);
    t1 = now_ms();
    CHECK(n == 1 && ev[0].filter == EVFILT_TIMER && ev[0].ident == 7 && ev[0].udata == TAG(31) && ev[0].data >= 1);
    CHECK(t1 - t0 >= 15 && t1 - t0 < 1000);
    /* periodic: a few more, each bounded */
    t0 = now_ms();
    while (fires < 3 && now_ms() - t0 < 2000)
        if (wait_ms(kq, ev, 4, 500) == 1) fires++;
    CHECK(fires == 3 && now_ms() - t0 >= 45);
    /* expirations add up while nobody looks */
    usleep(70000);
    CHECK(wait_ms(kq, ev, 4, 0) == 1 && ev[0].data >= 2);
    /* disabled: quiet; deleted: gone */
    CHECK(change(kq, 7, EVFILT_TIMER, EV_DISABLE, 0, 0, TAG(31)) == 0);
    CHECK(wait_ms(kq, ev, 4, 60) == 0);
    CHECK(change(kq, 7, EVFILT_TIMER, EV_DELETE, 0, 0, NULL) == 0);
    CHECK(change(kq, 7, EVFILT_TIMER, EV_DELETE, 0, 0, NULL) == -1 && errno == ENOENT);
    /* one-shot */
    CHECK(change(kq, 8, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 10, TAG(32)) == 0);
    CHECK(wait_ms(kq, ev, 4, 1000) == 1 && ev[0].udata == TAG(32));
    CHECK(wait_ms(kq, ev, 4, 40) == 0);
    /* the timeout itself is honoured */
    t0 = now_ms();
    CHECK(wait_ms(kq, ev, 4, 50) == 0);
    t1 = now_ms();
    CHECK(t1 - t0 >= 45 && t1 - t0 < 1000);
    close(kq);
}

struct trig {
    int kq, count;
};

static void *trigger_thread(void *arg)
{
    struct trig *t = (struct trig *)arg;
    int i;
    usleep(20000); /* let the main thread block first */
    for (i = 0; i < t->count; i++) {
        struct kevent k;
        EV_SET(&k, 5, EVFILT_USER, 0, NOTE_TRIGGER, 0, TAG(41));
        if (kevent(t->kq, &k, 1, NULL, 0, NULL) != 0) return NULL;
        if (i % 16 == 0) usleep(100);
    }
    return NULL;
}

static void test_user(void)
{
    struct kevent ev[4];
    struct trig tr;
    pthread_t th;
    int kq = kqueue(), n, events = 0;
    long long t0;
    CHECK(change(kq, 5, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, TAG(41)) == 0);
    CHECK(wait_ms(kq, ev, 4, 0) == 0);
    CHECK(change(kq, 5, EVFILT_USER, 0, NOTE_TRIGGER | NOTE_FFCOPY | 0x5u, 0, TAG(41)) == 0);
    n = wait_ms(kq, ev, 4, 1000);
    CHECK(n == 1 && ev[0].filter == EVFILT_USER && ev[0].ident == 5 && ev[0].udata == TAG(41) && ev[0].fflags == 0x5u);
    CHECK(wait_ms(kq, ev, 4, 0) == 0); /* EV_CLEAR: consumed */
    /* triggered from another thread while this one waits */
    tr.kq = kq;
    tr.count = 1;
    CHECK(pthread_create(&th, NULL, trigger_thread, &tr) == 0);
    t0 = now_ms();
    n = wait_ms(kq, ev, 4, 3000);
    CHECK(n == 1 && ev[0].udata == TAG(41) && now_ms() - t0 < 2500);
    pthread_join(th, NULL);
    /* many triggers, coalesced, no crash, at least one event */
    tr.count = 500;
    CHECK(pthread_create(&th, NULL, trigger_thread, &tr) == 0);
    t0 = now_ms();
    while (now_ms() - t0 < 400)
        if (wait_ms(kq, ev, 4, 50) > 0) events++;
    pthread_join(th, NULL);
    while (wait_ms(kq, ev, 4, 0) > 0) events++;
    CHECK(events >= 1 && events <= 500);
    /* without EV_CLEAR a trigger stays until deleted */
    CHECK(change(kq, 6, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, TAG(42)) == 0);
    CHECK(wait_ms(kq, ev, 4, 1000) == 1 && wait_ms(kq, ev, 4, 0) == 1 && ev[0].udata == TAG(42));
    CHECK(change(kq, 6, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL) == 0); /* a trigger with NULL clears udata */
    CHECK(wait_ms(kq, ev, 4, 0) == 1 && ev[0].udata == NULL);
    CHECK(change(kq, 6, EVFILT_USER, EV_DISABLE, 0, 0, NULL) == 0 && wait_ms(kq, ev, 4, 0) == 0);
    CHECK(change(kq, 6, EVFILT_USER, EV_DELETE, 0, 0, NULL) == 0 && wait_ms(kq, ev, 4, 0) == 0);
    close(kq);
}

static void test_signal(void)
{
    struct kevent ev[4];
    sigset_t set, old, pend;
    int kq = kqueue(), n, sig = 0;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    CHECK(change(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, TAG(51)) == 0);
    CHECK(wait_ms(kq, ev, 4, 0) == 0);
    CHECK(kill(getpid(), SIGUSR1) == 0);
    n = wait_ms(kq, ev, 4, 1000);
    CHECK(n == 1 && ev[0].filter == EVFILT_SIGNAL && ev[0].ident == SIGUSR1 && ev[0].udata == TAG(51) && ev[0].data == 1);
    CHECK(wait_ms(kq, ev, 4, 0) == 0); /* once per delivery */
    /* like real kqueue, the signal is still pending: the program takes it */
    sigemptyset(&pend);
    CHECK(sigpending(&pend) == 0 && sigismember(&pend, SIGUSR1) == 1);
    CHECK(sigwait(&set, &sig) == 0 && sig == SIGUSR1);
    CHECK(raise(SIGUSR1) == 0); /* sent to this thread, the one waiting */
    CHECK(wait_ms(kq, ev, 4, 1000) == 1);
    CHECK(sigwait(&set, &sig) == 0 && sig == SIGUSR1);
    CHECK(change(kq, SIGUSR1, EVFILT_SIGNAL, EV_DELETE, 0, 0, NULL) == 0);
    CHECK(kill(getpid(), SIGUSR1) == 0);
    CHECK(wait_ms(kq, ev, 4, 30) == 0);
    CHECK(sigwait(&set, &sig) == 0 && sig == SIGUSR1);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(kq);
}

int main(void)
{
    test_read_write();
    test_errors_receipt();
    test_oneshot_clear();
    test_fd_reuse();
    test_timer();
    test_user();
    test_signal();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
