/*
 * tests/soak/idlemem.c - what an idle keep-alive connection costs a
 * chopin.h server in process memory.
 *
 *     build/idlemem [--conns N] SERVER        (make idle-mem: N = 10000)
 *
 * It starts SERVER (the example app) on a free port, warms it up (500
 * connections, one request each, closed), and measures its RSS; then this
 * process (the client, with its own descriptor limit raised) opens N
 * connections, sends GET /plaintext on each, reads the answer and keeps the
 * connection open. Once all N are idle it measures again and prints the RSS
 * growth per connection, then closes them and checks that the descriptors
 * return. Kernel socket buffers are not process memory and are not counted;
 * the server's own per-connection state and its connection table are. The
 * RSS is the server's plus its children's (a server that forks workers, as
 * nginx does, can be measured the same way through a wrapper script that
 * reads PORT).
 * The server must allow N + a few descriptors (chopin raises its soft limit
 * to the hard one) and keep idle connections longer than the run
 * (idle_timeout: 60 s by default).
 */
#include "../testnet.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t g_pid;
static int g_port;

static int dial(void)
{
    return tn_connect_start(g_port, 0);
}

static long rss_of(int pid)
{
    return tn_proc_rss_kib((pid_t)pid);
}

/* The RSS of the server and of its child processes (a server that forks
   workers, such as nginx, for comparison). */
static long rss_kib(void)
{
    long kib = rss_of((int)g_pid);
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], buf[512], *p;
        FILE *f;
        int ppid = 0;
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        if (!(f = fopen(path, "r"))) continue;
        buf[fread(buf, 1, sizeof buf - 1, f)] = 0;
        fclose(f);
        p = strrchr(buf, ')');
        if (p && sscanf(p + 2, "%*c %d", &ppid) == 1 && ppid == (int)g_pid) kib += rss_of(atoi(e->d_name));
    }
    if (d) closedir(d);
    return kib;
}

static int fd_count(void)
{
    return tn_proc_fd_count(g_pid);
}

/* Opens n connections, one request each, answered; returns their fds. */
static int *open_served(int n)
{
    static const char req[] = "GET /plaintext HTTP/1.1\r\nHost: idle\r\n\r\n";
    int *fds = calloc((size_t)n, sizeof *fds), ep = epoll_create1(0), opened = 0, done = 0, i;
    char *state = calloc((size_t)n, 1); /* 0 connecting, 1 sent, 2 answered */
    long long deadline = tn_now_ms() + 120000;
    struct epoll_event evs[256];
    while (done < n) {
        int k, m;
        /* keep at most 512 handshakes in flight: the listen backlog is finite */
        while (opened < n && opened - done < 512) {
            struct epoll_event ev;
            fds[opened] = dial();
            if (fds[opened] < 0) {
                fprintf(stderr, "idlemem: connect %d: %s\n", opened, strerror(errno));
                exit(2);
            }
            memset(&ev, 0, sizeof ev);
            ev.events = EPOLLOUT | EPOLLIN;
            ev.data.u32 = (unsigned)opened;
            epoll_ctl(ep, EPOLL_CTL_ADD, fds[opened], &ev);
            opened++;
        }
        if (tn_now_ms() > deadline) {
            fprintf(stderr, "idlemem: only %d of %d connections served in 120 s\n", done, n);
            exit(2);
        }
        m = epoll_wait(ep, evs, 256, 100);
        for (k = 0; k < m; k++) {
            i = (int)evs[k].data.u32;
            if (state[i] == 0 && (evs[k].events & EPOLLOUT)) {
                if (send(fds[i], req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1)) {
                    fprintf(stderr, "idlemem: send on connection %d failed\n", i);
                    exit(2);
                }
                state[i] = 1;
                {
                    struct epoll_event ev;
                    memset(&ev, 0, sizeof ev);
                    ev.events = EPOLLIN;
                    ev.data.u32 = (unsigned)i;
                    epoll_ctl(ep, EPOLL_CTL_MOD, fds[i], &ev);
                }
            } else if (state[i] == 1 && (evs[k].events & EPOLLIN)) {
                char buf[4096];
                ssize_t r = recv(fds[i], buf, sizeof buf, 0);
                if (r <= 0) {
                    fprintf(stderr, "idlemem: connection %d closed before its answer\n", i);
                    exit(2);
                }
                if (memmem(buf, (size_t)r, "Hello, World!", 13)) {
                    state[i] = 2;
                    done++;
                    epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
                }
            }
        }
    }
    close(ep);
    free(state);
    return fds;
}

int main(int argc, char **argv)
{
    int n = 10000, i, *fds, *warm, fds0, fds1, fds2, st;
    const char *server = NULL;
    long rss_idle, rss0, rss1, rss2;
    struct rlimit rl;
    long long t0;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc) n = atoi(argv[++i]);
        else server = argv[i];
    }
    if (!server || n < 1) {
        fprintf(stderr, "usage: idlemem [--conns N] SERVER\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if ((long)rl.rlim_cur < n + 600) {
            fprintf(stderr, "idlemem: the descriptor limit (%ld) is below %d + 600; raise the hard limit\n",
                    (long)rl.rlim_cur, n);
            return 2;
        }
    }
    g_port = tn_free_port();
    g_pid = fork();
    if (g_pid == 0) {
        tn_server_env(g_port);
        execl(server, server, (char *)NULL);
        _exit(127);
    }
    if (tn_wait_listening(g_port, g_pid, 10000, NULL) != 0) {
        fprintf(stderr, "idlemem: the server does not listen\n");
        return 2;
    }
    usleep(300000);
    rss_idle = rss_kib();
    warm = open_served(500);
    for (i = 0; i < 500; i++) close(warm[i]);
    free(warm);
    usleep(1000000);
    rss0 = rss_kib();
    fds0 = fd_count();
    printf("idlemem: server %s (pid %d): RSS %ld KiB idle, %ld KiB after 500 warm-up connections; %d descriptors\n",
           server, (int)g_pid, rss_idle, rss0, fds0);

    t0 = tn_now_ms();
    fds = open_served(n);
    usleep(1000000);
    rss1 = rss_kib();
    fds1 = fd_count();
    printf("idlemem: %d keep-alive connections, each served one request, now idle (opened in %.1f s): "
           "RSS %ld KiB, %d descriptors\n", n, (tn_now_ms() - t0) / 1000.0, rss1, fds1);
    printf("idlemem: RSS growth %ld KiB = %.0f bytes per idle connection\n", rss1 - rss0,
           (double)(rss1 - rss0) * 1024.0 / n);
    for (i = 0; i < n; i++) close(fds[i]);
    free(fds);
    t0 = tn_now_ms();
    while (fd_count() != fds0 && tn_now_ms() - t0 < 10000) usleep(50000);
    usleep(500000);
    rss2 = rss_kib();
    fds2 = fd_count();
    printf("idlemem: after closing them: RSS %ld KiB, %d descriptors\n", rss2, fds2);
    kill(g_pid, SIGTERM);
    waitpid(g_pid, &st, 0);
    if (fds1 != fds0 + n) printf("idlemem: note: %d descriptors, expected %d\n", fds1, fds0 + n);
    return fds2 == fds0 ? 0 : 1;
}
