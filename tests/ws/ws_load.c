/* tests/ws/ws_load.c - WebSocket load for `make ws-bench` (not a test).
 *
 *   ws_load echo   PORT PID CONNS SECONDS SIZE
 *       CONNS connections to /ws/echo, each with one SIZE-byte text message
 *       in flight: send, wait for the echo, send again, for SECONDS.
 *       Prints round trips per second and the server's CPU per round trip.
 *   ws_load fanout PORT PID SUBSCRIBERS MESSAGES
 *       SUBSCRIBERS connections to /ws/chat?room=fan, then one more member
 *       sends MESSAGES 32-byte messages to the room; waits until every
 *       member has every message. Prints deliveries per second and the
 *       server's CPU per delivery.
 * PID is the server's (for its CPU time from /proc). One thread, epoll.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "../testnet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct lconn {
    int fd;
    int open;            /* handshake done */
    unsigned char in[65536];
    size_t len;
    long got;            /* messages received */
} lconn;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The server's CPU time (user + system) in seconds, 0 if unknown. */
static double cpu_s(int pid)
{
    long long ms = tn_proc_cpu_ms((pid_t)pid);
    return ms < 0 ? 0 : (double)ms / 1000.0;
}

static int dial(int port, const char *path)
{
    char req[512];
    int fd = tn_connect(port), n;
    if (fd < 0) return -1;
    tn_nodelay(fd);
    n = snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    tn_nonblock(fd);
    return fd;
}

/* A masked client text frame of size bytes into out; returns its length. */
static size_t frame(unsigned char *out, size_t size, unsigned seq)
{
    size_t i, o = 0;
    out[o++] = 0x81;
    out[o++] = (unsigned char)(0x80 | size); /* size < 126 */
    memcpy(out + o, "\x11\x22\x33\x44", 4);
    o += 4;
    for (i = 0; i < size; i++) out[o + i] = (unsigned char)(('a' + (seq + i) % 26) ^ "\x11\x22\x33\x44"[i & 3]);
    return o + size;
}

/* Counts whole server frames in c->in (unmasked, short), keeping a tail. */
static long take_frames(lconn *c)
{
    size_t off = 0;
    long n = 0;
    if (!c->open) {
        unsigned char *e = (unsigned char *)memmem(c->in, c->len, "\r\n\r\n", 4);
        if (!e) return 0;
        if (memcmp(c->in, "HTTP/1.1 101", 12) != 0) {
            fprintf(stderr, "ws_load: handshake refused: %.40s\n", (char *)c->in);
            exit(1);
        }
        off = (size_t)(e - c->in) + 4;
        c->open = 1;
    }
    for (;;) {
        size_t hl = 2, len;
        if (c->len - off < 2) break;
        len = c->in[off + 1] & 0x7F;
        if (len == 126) {
            if (c->len - off < 4) break;
            len = (size_t)c->in[off + 2] << 8 | c->in[off + 3];
            hl = 4;
        } else if (len == 127) {
            fprintf(stderr, "ws_load: unexpected large frame\n");
            exit(1);
        }
        if (c->len - off < hl + len) break;
        off += hl + len;
        n++;
    }
    memmove(c->in, c->in + off, c->len - off);
    c->len -= off;
    c->got += n;
    return n;
}

static int pump(lconn *c)
{
    for (;;) {
        ssize_t r = read(c->fd, c->in + c->len, sizeof c->in - c->len);
        if (r > 0) {
            c->len += (size_t)r;
            if (c->len == sizeof c->in) return 1;
            continue;
        }
        if (r == 0) return -1;
        return errno == EAGAIN ? 1 : -1;
    }
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int run_echo(int port, int pid, int nconns, double seconds, size_t size)
{
    lconn *cs = (lconn *)calloc((size_t)nconns, sizeof *cs);
    int ep = epoll_create1(0), i;
    unsigned char out[256];
    long trips = 0;
    double t0, t1, c0, c1;
    struct epoll_event evs[256];
    for (i = 0; i < nconns; i++) {
        struct epoll_event ev;
        cs[i].fd = dial(port, "/ws/echo");
        if (cs[i].fd < 0) return fprintf(stderr, "ws_load: connect failed\n"), 1;
        ev.events = EPOLLIN;
        ev.data.u32 = (uint32_t)i;
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    t0 = now_s();
    c0 = cpu_s(pid);
    t1 = t0 + seconds;
    while (now_s() < t1) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (i = 0; i < n; i++) {
            lconn *c = &cs[evs[i].data.u32];
            int was_open = c->open;
            long k;
            if (pump(c) < 0) return fprintf(stderr, "ws_load: a connection closed\n"), 1;
            k = take_frames(c);
            if (!was_open && c->open) k = 1; /* start: one message in flight */
            else if (was_open) trips += k;
            while (k-- > 0) {
                size_t fl = frame(out, size, (unsigned)trips);
                if (write(c->fd, out, fl) != (ssize_t)fl) return fprintf(stderr, "ws_load: short write\n"), 1;
            }
        }
    }
    t1 = now_s();
    c1 = cpu_s(pid);
    printf("echo: %d connections, %zu-byte messages: %.0f round trips/s, server CPU %.2f us per round trip\n", nconns,
           size, (double)trips / (t1 - t0), (c1 - c0) * 1e6 / (double)(trips ? trips : 1));
    return 0;
}

static int run_fanout(int port, int pid, int nsubs, int nmsgs)
{
    lconn *cs = (lconn *)calloc((size_t)nsubs + 1, sizeof *cs);
    int ep = epoll_create1(0), i, opened = 0;
    long want = (long)(nsubs + 1) * nmsgs, total = 0;
    unsigned char out[256];
    double t0, t1, c0, c1, deadline;
    struct epoll_event evs[512];
    raise_nofile();
    for (i = 0; i <= nsubs; i++) {
        struct epoll_event ev;
        cs[i].fd = dial(port, "/ws/chat?room=fan");
        if (cs[i].fd < 0) return fprintf(stderr, "ws_load: connect %d failed: %s\n", i, strerror(errno)), 1;
        ev.events = EPOLLIN;
        ev.data.u32 = (uint32_t)i;
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    deadline = now_s() + 30;
    while (opened <= nsubs && now_s() < deadline) { /* every handshake answered */
        int n = epoll_wait(ep, evs, 512, 100);
        for (i = 0; i < n; i++) {
            lconn *c = &cs[evs[i].data.u32];
            if (pump(c) < 0) return fprintf(stderr, "ws_load: a connection closed\n"), 1;
            if (!c->open) {
                take_frames(c);
                if (c->open) opened++;
            }
        }
    }
    if (opened <= nsubs) return fprintf(stderr, "ws_load: only %d of %d handshakes\n", opened, nsubs + 1), 1;
    usleep(200000); /* subscriptions settled on every worker */
    t0 = now_s();
    c0 = cpu_s(pid);
    for (i = 0; i < nmsgs; i++) { /* the last member publishes to the room */
        size_t fl = frame(out, 32, (unsigned)i);
        if (write(cs[nsubs].fd, out, fl) != (ssize_t)fl) return fprintf(stderr, "ws_load: short write\n"), 1;
    }
    deadline = now_s() + 60;
    while (total < want && now_s() < deadline) {
        int n = epoll_wait(ep, evs, 512, 100);
        for (i = 0; i < n; i++) {
            lconn *c = &cs[evs[i].data.u32];
            if (pump(c) < 0) return fprintf(stderr, "ws_load: a connection closed\n"), 1;
            total += take_frames(c);
        }
    }
    t1 = now_s();
    c1 = cpu_s(pid);
    printf("fan-out: %d subscribers, %d messages: %ld of %ld delivered in %.3f s = %.0f deliveries/s, "
           "server CPU %.3f us per delivery\n",
           nsubs + 1, nmsgs, total, want, t1 - t0, (double)total / (t1 - t0), (c1 - c0) * 1e6 / (double)(total ? total : 1));
    return total == want ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 7 && strcmp(argv[1], "echo") == 0)
        return run_echo(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atof(argv[5]), (size_t)atoi(argv[6]));
    if (argc == 6 && strcmp(argv[1], "fanout") == 0)
        return run_fanout(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    fprintf(stderr, "usage: %s echo PORT PID CONNS SECONDS SIZE | fanout PORT PID SUBSCRIBERS MESSAGES\n", argv[0]);
    return 2;
}
