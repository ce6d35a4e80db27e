/* tests/kqueue/kqueue.c - a small kqueue emulation over epoll, for tests only.

   Why: chopin.h's kqueue backend (macOS and the BSDs) must be built and run by
   `make test` on a Linux machine. This file implements kqueue() and kevent()
   (see sys/event.h beside it) with epoll, timerfd, eventfd and signalfd, enough
   for what the backend uses. Written from scratch for chopin.h.

   What it does:
   - kqueue() is an epoll fd. State per kqueue (found through a table indexed by
     that fd) holds one slot per watched descriptor, with its read and write
     notes, combined into ONE epoll registration (EPOLLIN|EPOLLRDHUP for read,
     EPOLLOUT for write); a descriptor with no enabled note is taken out of
     epoll, so a hang-up cannot make a quiet descriptor spin.
   - EVFILT_TIMER: one timerfd per timer (ms by default, NOTE_SECONDS/USECONDS/
     NSECONDS too), periodic unless EV_ONESHOT; data = expirations since the last
     report. EVFILT_USER: one eventfd per note; NOTE_TRIGGER writes it, EV_CLEAR
     reads it back when reported; NOTE_FF* fflags are kept. EVFILT_SIGNAL: one
     signalfd per signal, watched edge-triggered and never read, so the signal
     stays pending as it does with real kqueue; data = 1.
   - EV_ADD, EV_DELETE, EV_ENABLE, EV_DISABLE, EV_ONESHOT, EV_CLEAR (on READ/WRITE
     it becomes EPOLLET for the descriptor, so both notes of one descriptor must
     agree), EV_RECEIPT, EV_ERROR entries for failed changes when the event list
     has room (else -1 and errno), EV_EOF on hang-up, udata passed through and,
     as on FreeBSD and macOS (not NetBSD/OpenBSD), replaced by every change to
     an existing note, EV_ENABLE and NOTE_TRIGGER included; READ
     data = FIONREAD (1 where that fails, e.g. a listener), WRITE data = 1.
   - Closed descriptors: epoll forgets a file when its last reference closes;
     each slot also remembers the file's (st_dev, st_ino), so an EV_ADD on a
     reused descriptor number starts fresh, and events for a descriptor with no
     live note are dropped. A closed kqueue's timer/user/signal fds are closed
     when a later kqueue() gets the same number (its memory stays reachable).
   - Threads: changes and the translation of events run under a per-kqueue
     mutex; epoll_wait runs outside it, so another thread may kevent() the same
     kqueue (NOTE_TRIGGER) while the owner waits.

   What it does NOT prove about real kqueue:
   - Readiness is Linux's: when a socket counts as readable or writable, and
     when EV_EOF shows (from EPOLLRDHUP/EPOLLHUP/EPOLLERR); fflags never carries
     the socket error (reading SO_ERROR here would clear it for the caller);
     WRITE data is not the free buffer space; a listener's data is not the
     backlog length.
   - Close semantics: with a dup()ed or inherited descriptor epoll keeps
     reporting the file after close(); real kqueue drops the note on close().
   - Signals: only signals blocked in the waiting thread are seen, and only when
     process-directed or sent to that thread; real kqueue records every attempt
     to deliver, even to an ignored or unblocked signal, counts them in data and
     never changes the signal's fate. A pending signal may be reported again when
     another signal arrives for the process.
   - Timers run on CLOCK_MONOTONIC with Linux's timer slack.
   - Concurrent waits on one kqueue from several threads may both see an event.
   - Nothing about macOS or BSD sockets: SO_REUSEPORT on macOS does not balance
     connections, accept4/SOCK_CLOEXEC availability, EVFILT_USER absence on some
     systems, or the real numeric values of the constants.
   - Not implemented: EVFILT_VNODE/PROC/AIO, EV_DISPATCH, NOTE_LOWAT, fork. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sys/event.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define KQ_AUX_BIT ((uint64_t)1 << 63)
#define KQ_BATCH 256

struct kq_note { /* the read or the write side of one descriptor */
    int on, enabled;
    unsigned short flags; /* EV_CLEAR, EV_ONESHOT, EV_RECEIPT as registered */
    void *udata;
};

struct kq_fd {
    struct kq_note rd, wr;
    uint32_t in_epoll; /* the events registered with epoll; 0: not registered */
    int write_first;   /* with room for one event, read and write take turns */
    dev_t dev;         /* which file the notes belong to */
    ino_t ino;
};

struct kq_aux { /* a timer, user event or signal: one helper fd each */
    int on, enabled, fd;
    short filter;
    uintptr_t ident;
    unsigned short flags;
    unsigned fflags;
    intptr_t data;
    void *udata;
    uint32_t gen; /* tells a reused slot from the one an old epoll event meant */
};

struct kq_state {
    int ep;
    pthread_mutex_t mu;
    struct kq_fd *fds;
    int nfds;
    struct kq_aux *aux;
    int naux;
    uint32_t gen;
};

/* The emulation's only global state: kqueue fd -> its state. */
static pthread_mutex_t kq_table_mu = PTHREAD_MUTEX_INITIALIZER;
static struct kq_state **kq_table;
static int kq_table_len;

static void kq_state_free(struct kq_state *st)
{
    int i;
    for (i = 0; i < st->naux; i++)
        if (st->aux[i].on) close(st->aux[i].fd);
    pthread_mutex_destroy(&st->mu);
    free(st->fds);
    free(st->aux);
    free(st);
}

int kqueue(void)
{
    struct kq_state *st = (struct kq_state *)calloc(1, sizeof *st);
    int ep;
    if (!st) {
        errno = ENOMEM;
        return -1;
    }
    ep = epoll_create1(0); /* a real kqueue fd is not close-on-exec either */
    if (ep < 0) {
        free(st);
        return -1;
    }
    st->ep = ep;
    pthread_mutex_init(&st->mu, NULL);
    pthread_mutex_lock(&kq_table_mu);
    if (ep >= kq_table_len) {
        int len = ep + 16, i;
        struct kq_state **t = (struct kq_state **)realloc(kq_table, sizeof *t * (size_t)len);
        if (!t) {
            pthread_mutex_unlock(&kq_table_mu);
            close(ep);
            kq_state_free(st);
            errno = ENOMEM;
            return -1;
        }
        for (i = kq_table_len; i < len; i++) t[i] = NULL;
        kq_table = t;
        kq_table_len = len;
    }
    /* the number was free, so an older kqueue with it has been closed */
    if (kq_table[ep]) kq_state_free(kq_table[ep]);
    kq_table[ep] = st;
    pthread_mutex_unlock(&kq_table_mu);
    return ep;
}

static struct kq_state *kq_get(int kq)
{
    struct kq_state *st = NULL;
    pthread_mutex_lock(&kq_table_mu);
    if (kq >= 0 && kq < kq_table_len) st = kq_table[kq];
    pthread_mutex_unlock(&kq_table_mu);
    return st;
}

/* --- descriptors: EVFILT_READ and EVFILT_WRITE ---------------------------- */

static uint32_t kq_fd_mask(const struct kq_fd *f)
{
    uint32_t m = 0;
    int clear = 0;
    if (f->rd.on && f->rd.enabled) {
        m |= EPOLLIN | EPOLLRDHUP;
        clear |= (f->rd.flags & EV_CLEAR) != 0;
    }
    if (f->wr.on && f->wr.enabled) {
        m |= EPOLLOUT;
        clear |= (f->wr.flags & EV_CLEAR) != 0;
    }
    return m && clear ? m | EPOLLET : m;
}

/* Makes epoll's registration match the notes. */
static int kq_fd_sync(struct kq_state *st, int fd)
{
    struct kq_fd *f = &st->fds[fd];
    struct epoll_event e;
    uint32_t want = kq_fd_mask(f);
    memset(&e, 0, sizeof e);
    e.events = want;
    e.data.u64 = (uint64_t)(unsigned)fd;
    if (want == 0) {
        if (f->in_epoll) epoll_ctl(st->ep, EPOLL_CTL_DEL, fd, &e); /* ENOENT: closed meanwhile */
    } else if (f->in_epoll) {
        if (epoll_ctl(st->ep, EPOLL_CTL_MOD, fd, &e) < 0 &&
            (errno != ENOENT || epoll_ctl(st->ep, EPOLL_CTL_ADD, fd, &e) < 0))
            return errno;
    } else if (epoll_ctl(st->ep, EPOLL_CTL_ADD, fd, &e) < 0 &&
               (errno != EEXIST || epoll_ctl(st->ep, EPOLL_CTL_MOD, fd, &e) < 0)) {
        return errno;
    }
    f->in_epoll = want;
    return 0;
}

static int kq_fd_grow(struct kq_state *st, int fd)
{
    int len = fd + 64, i;
    struct kq_fd *t;
    if (fd < st->nfds) return 0;
    t = (struct kq_fd *)realloc(st->fds, sizeof *t * (size_t)len);
    if (!t) return ENOMEM;
    for (i = st->nfds; i < len; i++) memset(&t[i], 0, sizeof t[i]);
    st->fds = t;
    st->nfds = len;
    return 0;
}

static int kq_change_fd(struct kq_state *st, const struct kevent *kev)
{
    struct stat sb;
    struct kq_fd *f, saved;
    struct kq_note *n;
    int fd, err;
    uint32_t m;
    if (kev->ident > (uintptr_t)INT_MAX || fstat((int)kev->ident, &sb) < 0) return EBADF;
    fd = (int)kev->ident;
    if ((err = kq_fd_grow(st, fd)) != 0) return err;
    f = &st->fds[fd];
    if ((f->rd.on || f->wr.on) && (f->dev != sb.st_dev || f->ino != sb.st_ino)) {
        /* the number now names another file: the old notes died with the old one */
        memset(&f->rd, 0, sizeof f->rd);
        memset(&f->wr, 0, sizeof f->wr);
        f->in_epoll = 0;
    }
    saved = *f;
    n = kev->filter == EVFILT_READ ? &f->rd : &f->wr;
    if (kev->flags & EV_DELETE) {
        if (!n->on) return ENOENT;
        memset(n, 0, sizeof *n);
    } else {
        if (kev->flags & EV_ADD) {
            if (!n->on) n->enabled = 1;
            n->on = 1;
            n->flags = (unsigned short)(kev->flags & (EV_CLEAR | EV_ONESHOT | EV_RECEIPT));
            f->dev = sb.st_dev;
            f->ino = sb.st_ino;
        } else if (!n->on) {
            return ENOENT;
        }
        n->udata = kev->udata; /* FreeBSD and macOS: every change sets it, EV_ENABLE too */
        if (kev->flags & EV_ENABLE) n->enabled = 1;
        if (kev->flags & EV_DISABLE) n->enabled = 0;
    }
    m = kq_fd_mask(f);
    if ((m & EPOLLET) && (m & EPOLLIN) && (m & EPOLLOUT) && ((f->rd.flags ^ f->wr.flags) & EV_CLEAR)) {
        *f = saved; /* one epoll registration cannot be edge- and level-triggered at once */
        return EINVAL;
    }
    if ((err = kq_fd_sync(st, fd)) != 0) *f = saved;
    return err;
}

/* --- timers, user events, signals ----------------------------------------- */

static struct kq_aux *kq_aux_find(struct kq_state *st, short filter, uintptr_t ident)
{
    int i;
    for (i = 0; i < st->naux; i++)
        if (st->aux[i].on && st->aux[i].filter == filter && st->aux[i].ident == ident) return &st->aux[i];
    return NULL;
}

static struct kq_aux *kq_aux_slot(struct kq_state *st)
{
    int i;
    struct kq_aux *t;
    for (i = 0; i < st->naux; i++)
        if (!st->aux[i].on) return &st->aux[i];
    t = (struct kq_aux *)realloc(st->aux, sizeof *t * (size_t)(st->naux + 8));
    if (!t) return NULL;
    memset(&t[st->naux], 0, sizeof *t * 8);
    st->aux = t;
    st->naux += 8;
    return &st->aux[st->naux - 8];
}

static int kq_aux_epoll(struct kq_state *st, struct kq_aux *a, int op)
{
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    if (a->enabled) e.events = a->filter == EVFILT_SIGNAL ? EPOLLIN | EPOLLET : EPOLLIN;
    e.data.u64 = KQ_AUX_BIT | ((uint64_t)a->gen << 32) | (uint64_t)(a - st->aux);
    return epoll_ctl(st->ep, op, a->fd, &e) < 0 ? errno : 0;
}

static void kq_aux_delete(struct kq_state *st, struct kq_aux *a)
{
    epoll_ctl(st->ep, EPOLL_CTL_DEL, a->fd, NULL);
    close(a->fd);
    a->on = 0;
}

static int kq_timer_arm(struct kq_aux *a, intptr_t data, unsigned fflags, unsigned short flags)
{
    struct itimerspec its;
    long long ns;
    if (data < 0) return EINVAL;
    if (fflags & NOTE_SECONDS)
        ns = (long long)data * 1000000000LL;
    else if (fflags & NOTE_USECONDS)
        ns = (long long)data * 1000LL;
    else if (fflags & NOTE_NSECONDS)
        ns = (long long)data;
    else
        ns = (long long)data * 1000000LL;
    if (ns <= 0) ns = 1; /* 0 would disarm a timerfd; kqueue fires at once */
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = (time_t)(ns / 1000000000LL);
    its.it_value.tv_nsec = (long)(ns % 1000000000LL);
    if (!(flags & EV_ONESHOT)) its.it_interval = its.it_value;
    return timerfd_settime(a->fd, 0, &its, NULL) < 0 ? errno : 0;
}

static void kq_user_fflags(struct kq_aux *a, unsigned fflags)
{
    unsigned v = fflags & NOTE_FFLAGSMASK;
    switch (fflags & NOTE_FFCTRLMASK) {
    case NOTE_FFAND: a->fflags &= v; break;
    case NOTE_FFOR: a->fflags |= v; break;
    case NOTE_FFCOPY: a->fflags = v; break;
    default: break;
    }
}

static int kq_aux_open(short filter, const struct kevent *kev)
{
    if (filter == EVFILT_TIMER) return timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (filter == EVFILT_USER) return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    {
        sigset_t one;
        sigemptyset(&one);
        if (sigaddset(&one, (int)kev->ident) < 0) return -1;
        return signalfd(-1, &one, SFD_NONBLOCK | SFD_CLOEXEC);
    }
}

static int kq_change_aux(struct kq_state *st, const struct kevent *kev)
{
    struct kq_aux *a = kq_aux_find(st, kev->filter, kev->ident);
    int err, created = 0;
    if (kev->filter == EVFILT_SIGNAL && (kev->ident == 0 || kev->ident >= (uintptr_t)NSIG)) return EINVAL;
    if (kev->flags & EV_DELETE) {
        if (!a) return ENOENT;
        kq_aux_delete(st, a);
        return 0;
    }
    if (!a) {
        if (!(kev->flags & EV_ADD)) return ENOENT;
        if (!(a = kq_aux_slot(st))) return ENOMEM;
        memset(a, 0, sizeof *a);
        a->fd = kq_aux_open(kev->filter, kev);
        if (a->fd < 0) return errno;
        a->on = a->enabled = created = 1;
        a->filter = kev->filter;
        a->ident = kev->ident;
        a->gen = ++st->gen & 0x7fffffffu;
    }
    a->udata = kev->udata; /* as on FreeBSD and macOS: a NOTE_TRIGGER with NULL clears it */
    if (kev->flags & EV_ADD) {
        a->flags = (unsigned short)(kev->flags & (EV_CLEAR | EV_ONESHOT | EV_RECEIPT));
        if (kev->filter == EVFILT_USER) a->data = kev->data;
    }
    if (kev->flags & EV_ENABLE) a->enabled = 1;
    if (kev->flags & EV_DISABLE) a->enabled = 0;
    err = 0;
    if (kev->filter == EVFILT_TIMER && (kev->flags & EV_ADD)) err = kq_timer_arm(a, kev->data, kev->fflags, a->flags);
    if (!err) err = kq_aux_epoll(st, a, created ? EPOLL_CTL_ADD : EPOLL_CTL_MOD);
    if (err) {
        if (created) kq_aux_delete(st, a);
        return err;
    }
    if (kev->filter == EVFILT_USER) {
        kq_user_fflags(a, kev->fflags);
        if (kev->fflags & NOTE_TRIGGER) {
            uint64_t one = 1;
            if (write(a->fd, &one, sizeof one) < 0 && errno != EAGAIN) return errno;
        }
    }
    return 0;
}

static int kq_change(struct kq_state *st, const struct kevent *kev)
{
    if (kev->filter == EVFILT_READ || kev->filter == EVFILT_WRITE) return kq_change_fd(st, kev);
    if (kev->filter == EVFILT_TIMER || kev->filter == EVFILT_USER || kev->filter == EVFILT_SIGNAL)
        return kq_change_aux(st, kev);
    return EINVAL;
}

/* --- turning epoll events into kevents ------------------------------------ */

static void kq_out(struct kevent *o, uintptr_t ident, short filter, unsigned flags, unsigned fflags, intptr_t data,
                   void *udata)
{
    o->ident = ident;
    o->filter = filter;
    o->flags = (unsigned short)flags;
    o->fflags = fflags;
    o->data = data;
    o->udata = udata;
}

/* Reports what a descriptor's enabled notes see; returns the kevents written. */
static int kq_take_fd(struct kq_state *st, int fd, uint32_t ev, struct kevent *out, int room)
{
    struct kq_fd *f;
    int n = 0, resync = 0, dropped = 0, want_rd, want_wr; /* dropped: level-triggered, it comes back */
    if (fd < 0 || fd >= st->nfds) return 0;
    f = &st->fds[fd];
    want_rd = f->rd.on && f->rd.enabled && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR));
    want_wr = f->wr.on && f->wr.enabled && (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR));
    if (want_rd && want_wr && room < 2) {
        /* one slot left: take turns, as a real kqueue requeues a level-triggered note at the tail */
        if (f->write_first) want_rd = 0; else want_wr = 0;
        f->write_first = !f->write_first;
        dropped = 1;
    }
    if (want_rd) {
        int avail = 0;
        intptr_t data = ioctl(fd, FIONREAD, &avail) == 0 ? (intptr_t)avail : 1;
        unsigned eof = (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ? EV_EOF : 0u;
        kq_out(&out[n++], (uintptr_t)fd, EVFILT_READ, f->rd.flags | eof, 0, data, f->rd.udata);
        if (f->rd.flags & EV_ONESHOT) {
            memset(&f->rd, 0, sizeof f->rd);
            resync = 1;
        }
    }
    if (want_wr) {
        unsigned eof = (ev & (EPOLLHUP | EPOLLERR)) ? EV_EOF : 0u;
        kq_out(&out[n++], (uintptr_t)fd, EVFILT_WRITE, f->wr.flags | eof, 0, 1, f->wr.udata);
        if (f->wr.flags & EV_ONESHOT) {
            memset(&f->wr, 0, sizeof f->wr);
            resync = 1;
        }
    }
    if (n == 0 && !f->rd.on && !f->wr.on) { /* stale: nothing wants this file any more */
        epoll_ctl(st->ep, EPOLL_CTL_DEL, fd, NULL);
        f->in_epoll = 0;
        return 0;
    }
    if (resync || (dropped && (f->in_epoll & EPOLLET))) kq_fd_sync(st, fd); /* a MOD re-arms an edge */
    return n;
}

static int kq_take_aux(struct kq_state *st, uint64_t key, struct kevent *out)
{
    int i = (int)(key & 0xffffffffu);
    uint32_t gen = (uint32_t)(key >> 32) & 0x7fffffffu;
    struct kq_aux *a;
    uint64_t v = 0;
    unsigned fflags = 0;
    intptr_t data = 1;
    if (i >= st->naux) return 0;
    a = &st->aux[i];
    if (!a->on || !a->enabled || a->gen != gen) return 0; /* deleted or disabled meanwhile */
    if (a->filter == EVFILT_TIMER) {
        if (read(a->fd, &v, sizeof v) != (ssize_t)sizeof v) return 0;
        data = (intptr_t)v;
    } else if (a->filter == EVFILT_USER) {
        if (a->flags & EV_CLEAR) {
            if (read(a->fd, &v, sizeof v) != (ssize_t)sizeof v) return 0;
        }
        fflags = a->fflags;
        data = a->data;
        if (a->flags & EV_CLEAR) a->fflags = 0;
    }
    kq_out(out, a->ident, a->filter, a->flags, fflags, data, a->udata);
    if (a->flags & EV_ONESHOT) kq_aux_delete(st, a);
    return 1;
}

static int kq_translate(struct kq_state *st, const struct epoll_event *ev, int n, struct kevent *out, int room)
{
    int i, got = 0;
    for (i = 0; i < n && got < room; i++) {
        uint64_t key = ev[i].data.u64;
        if (key & KQ_AUX_BIT)
            got += kq_take_aux(st, key, &out[got]);
        else
            got += kq_take_fd(st, (int)key, ev[i].events, &out[got], room - got);
    }
    /* epoll events left over are level-triggered, or edge-triggered signals
       whose signal stays pending; the next call picks the former up again */
    return got;
}

static long long kq_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kevent(int kq, const struct kevent *changelist, int nchanges, struct kevent *eventlist, int nevents,
           const struct timespec *timeout)
{
    struct kq_state *st = kq_get(kq);
    struct epoll_event ev[KQ_BATCH];
    long long deadline = 0;
    int i, nret = 0;
    if (!st) {
        errno = EBADF;
        return -1;
    }
    if (nchanges < 0 || nevents < 0 || (nchanges > 0 && !changelist) || (nevents > 0 && !eventlist)) {
        errno = EINVAL;
        return -1;
    }
    pthread_mutex_lock(&st->mu);
    for (i = 0; i < nchanges; i++) {
        int err = kq_change(st, &changelist[i]);
        if (err || (changelist[i].flags & EV_RECEIPT)) {
            if (nret < nevents) {
                eventlist[nret] = changelist[i];
                eventlist[nret].flags = EV_ERROR;
                eventlist[nret].data = err;
                nret++;
            } else if (err) {
                pthread_mutex_unlock(&st->mu);
                errno = err;
                return -1;
            }
        }
    }
    pthread_mutex_unlock(&st->mu);
    if (nret > 0 || nevents == 0) return nret;
    if (timeout) {
        long long ms = (long long)timeout->tv_sec * 1000 + (timeout->tv_nsec + 999999) / 1000000;
        deadline = kq_now_ms() + ms;
    }
    for (;;) {
        int wait_ms = -1, n, got;
        if (timeout) {
            long long left = deadline - kq_now_ms();
            wait_ms = left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
        }
        n = epoll_wait(st->ep, ev, nevents < KQ_BATCH ? nevents : KQ_BATCH, wait_ms);
        if (n < 0) return -1; /* EINTR included, as kevent does */
        pthread_mutex_lock(&st->mu);
        got = kq_translate(st, ev, n, eventlist, nevents);
        pthread_mutex_unlock(&st->mu);
        if (got > 0 || wait_ms == 0) return got;
        /* only stale events, or epoll woke a little early: wait for the rest */
    }
}
