/* tests/testnet.h - what the C black-box test programs share: a clock,
   sleeps, a free loopback port, connections to 127.0.0.1, the server's
   environment, a server process's memory, descriptors and CPU time read from
   /proc, a file read whole, and a small deterministic random number generator.

   Used by tests/blackbox.c, tests/rest_blackbox.c, tests/batteries_blackbox.c,
   tests/async_unit.c (its in-process server), tests/ws/ws_blackbox.c,
   tests/ws/ws_load.c, tests/soak/soak.c and tests/soak/idlemem.c. Every
   function is `static inline`: a program takes what it needs and the rest
   costs nothing (and draws no unused-function warning). C99 plus POSIX:
   include it before any system header, or define _GNU_SOURCE (or
   _POSIX_C_SOURCE) first. Linux: the /proc readers. */
#ifndef TESTNET_H
#define TESTNET_H

#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

/* ---- time ---- */

/* Milliseconds on the monotonic clock (never steps back). */
static inline long long tn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps `us` microseconds in all, however often a signal interrupts. */
static inline void tn_sleep_us(long us)
{
    struct timespec ts;
    ts.tv_sec = us / 1000000;
    ts.tv_nsec = (us % 1000000) * 1000;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static inline void tn_sleep_ms(long ms)
{
    tn_sleep_us(ms * 1000);
}

/* ---- loopback sockets ---- */

/* The address 127.0.0.1:port. */
static inline void tn_loopback(struct sockaddr_in *a, int port)
{
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

/* A port free on 127.0.0.1 now, or -1: the kernel picks one for a socket
   bound to port 0, which is closed again for the server to take. */
static inline int tn_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd < 0) return -1;
    tn_loopback(&a, 0);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* A blocking connection to 127.0.0.1:port, or -1 (errno says why). */
static inline int tn_connect(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), err;
    if (fd < 0) return -1;
    tn_loopback(&a, port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

static inline void tn_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* A non-blocking socket whose connect to 127.0.0.1:port has started (it may
   still be under way: wait for POLLOUT, then read SO_ERROR), or -1. With
   rcvbuf > 0, SO_RCVBUF is set first (before the connect, so the window the
   handshake offers follows it). */
static inline int tn_connect_start(int port, int rcvbuf)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), err;
    if (fd < 0) return -1;
    tn_nonblock(fd);
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    tn_loopback(&a, port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* Nagle's delay off: each write leaves at once as its own segment (the
   split-request and byte-by-byte cases rely on it). */
static inline void tn_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* A read on fd fails with EAGAIN after `seconds` without a byte, so a
   blocking client never waits forever for a silent server. */
static inline void tn_recv_timeout(int fd, int seconds)
{
    struct timeval tv;
    tv.tv_sec = seconds;
    tv.tv_usec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/* ---- the server process ---- */

/* In the forked child, before exec: the examples' servers read where to
   listen from PORT and HOST. */
static inline void tn_server_env(int port)
{
    char text[16];
    snprintf(text, sizeof text, "%d", port);
    setenv("PORT", text, 1);
    setenv("HOST", "127.0.0.1", 1);
}

/* Waits until 127.0.0.1:port accepts a connection (trying every 10 ms):
   0; or 1 when the process pid (if > 0) exited first, reaped, its wait
   status in *status (if not NULL); or -1 after timeout_ms. */
static inline int tn_wait_listening(int port, pid_t pid, long timeout_ms, int *status)
{
    long long deadline = tn_now_ms() + timeout_ms;
    int st, fd;
    for (;;) {
        if (pid > 0 && waitpid(pid, &st, WNOHANG) == pid) {
            if (status) *status = st;
            return 1;
        }
        if ((fd = tn_connect(port)) >= 0) {
            close(fd);
            return 0;
        }
        if (tn_now_ms() > deadline) return -1;
        tn_sleep_ms(10);
    }
}

/* SIGTERM (a graceful stop), then up to timeout_ms for the process to exit:
   1 when it exited with status 0; 0 when it ended otherwise, or did not end
   in time (then it is killed). Reaped either way. */
static inline int tn_stop_server(pid_t pid, long timeout_ms)
{
    long long deadline = tn_now_ms() + timeout_ms;
    int status = 0;
    kill(pid, SIGTERM);
    while (tn_now_ms() <= deadline) {
        if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) && WEXITSTATUS(status) == 0;
        tn_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return 0;
}

/* A "Name:" line's number from /proc/PID/status, in KiB ("VmRSS:": resident
   memory now, "VmHWM:": its peak), or -1. */
static inline long tn_proc_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    size_t n = strlen(field);
    long kib = -1;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (!(f = fopen(path, "r"))) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0) kib = strtol(line + n, NULL, 10);
    fclose(f);
    return kib;
}

/* The process's resident memory in KiB, or -1. */
static inline long tn_proc_rss_kib(pid_t pid)
{
    return tn_proc_kib(pid, "VmRSS:");
}

/* How many descriptors the process has open (/proc/PID/fd), or -1. */
static inline int tn_proc_fd_count(pid_t pid)
{
    char path[64];
    DIR *d;
    struct dirent *e;
    int n = 0;
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    if (!(d = opendir(path))) return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* CPU time the process has used (user + system) in ms, or -1. */
static inline long long tn_proc_cpu_ms(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long utime, stime;
    long hz = sysconf(_SC_CLK_TCK);
    FILE *f;
    size_t n;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r"))) return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return -1;
    return (long long)((utime + stime) * 1000 / (unsigned long long)(hz > 0 ? hz : 100));
}

/* ---- files ---- */

/* Reads the file (a server's log) into buf, NUL-terminated, at most cap - 1
   bytes; "" when it cannot be opened. */
static inline void tn_slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
}

/* ---- deterministic randomness ---- */

/* The next number of a xorshift32 sequence (Marsaglia); *state must not be
   0. The same seed gives the same run, so a failure can be replayed. */
static inline uint32_t tn_xorshift32(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

#endif
