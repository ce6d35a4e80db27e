/* tests/kqueue/sys/event.h - the kqueue API of the BSDs and macOS, emulated on
   Linux over epoll by tests/kqueue/kqueue.c, so chopin.h's kqueue backend can be
   built and tested on a Linux machine. Tests only: see kqueue.c for what the
   emulation does and does not prove. Written for chopin.h; values follow the
   FreeBSD/macOS layout, but nothing should depend on the numbers. */
#ifndef CHI_TEST_SYS_EVENT_H
#define CHI_TEST_SYS_EVENT_H

#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

struct kevent {
    uintptr_t ident;      /* fd, timer id, user id or signal number */
    short filter;         /* EVFILT_* */
    unsigned short flags; /* EV_* */
    unsigned int fflags;  /* NOTE_* */
    intptr_t data;        /* bytes readable, timer expirations, signal count, errno with EV_ERROR */
    void *udata;          /* passed through untouched */
};

#define EV_SET(kevp, a, b, c, d, e, f)                                                                  \
    do {                                                                                                \
        struct kevent *ev_set_p_ = (kevp);                                                              \
        ev_set_p_->ident = (uintptr_t)(a);                                                              \
        ev_set_p_->filter = (short)(b);                                                                 \
        ev_set_p_->flags = (unsigned short)(c);                                                         \
        ev_set_p_->fflags = (unsigned int)(d);                                                          \
        ev_set_p_->data = (intptr_t)(e);                                                                \
        ev_set_p_->udata = (f);                                                                         \
    } while (0)

/* filters */
#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)
#define EVFILT_SIGNAL (-6)
#define EVFILT_TIMER (-7)
#define EVFILT_USER (-11)

/* flags: actions */
#define EV_ADD 0x0001u
#define EV_DELETE 0x0002u
#define EV_ENABLE 0x0004u
#define EV_DISABLE 0x0008u
/* flags: behaviour */
#define EV_ONESHOT 0x0010u
#define EV_CLEAR 0x0020u
#define EV_RECEIPT 0x0040u
/* flags: returned */
#define EV_ERROR 0x4000u
#define EV_EOF 0x8000u

/* EVFILT_USER fflags */
#define NOTE_FFNOP 0x00000000u
#define NOTE_FFAND 0x40000000u
#define NOTE_FFOR 0x80000000u
#define NOTE_FFCOPY 0xc0000000u
#define NOTE_FFCTRLMASK 0xc0000000u
#define NOTE_FFLAGSMASK 0x00ffffffu
#define NOTE_TRIGGER 0x01000000u

/* EVFILT_TIMER fflags (default unit: milliseconds) */
#define NOTE_SECONDS 0x00000001u
#define NOTE_MSECONDS 0x00000002u
#define NOTE_USECONDS 0x00000004u
#define NOTE_NSECONDS 0x00000008u

/* In C++ the function kevent hides struct kevent's implicit constructor, as it
   does with the real header, which the compiler keeps quiet as a system header. */
#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#endif
int kqueue(void);
int kevent(int kq, const struct kevent *changelist, int nchanges, struct kevent *eventlist, int nevents,
           const struct timespec *timeout);
#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#ifdef __cplusplus
}
#endif

#endif
