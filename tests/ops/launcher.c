/* launcher.c - a tiny socket-activation launcher for the operations tests
   (issue 12), speaking systemd's protocol (sd_listen_fds(3)).

   It opens the listening sockets itself, forks, and in the child puts them at
   file descriptors 3, 4, ... (close-on-exec cleared; every descriptor above
   them is closed), sets LISTEN_FDS to their
   number, LISTEN_PID to the child's own pid (set in the child, after the fork,
   before exec) and LISTEN_FDNAMES when asked, then execs the command. The
   parent closes its copies (unless --keep), forwards SIGINT, SIGTERM, SIGHUP,
   SIGUSR1 and SIGUSR2 to the child, waits for it and exits with its status
   (128 + signal number when it was killed by one).

   Usage: launcher [options] [--] command [args...]
     --port N          a TCP listener on 127.0.0.1:N (0: a free port); may be
                       given again for more sockets (fd 4, 5, ...); default one
                       listener on a free port
     --fds N           N listeners, each on a free port (after any --port)
     --names a:b       LISTEN_FDNAMES (colon-separated, as systemd writes it)
     --port-file F     write the ports, one a line in fd order, to F before
                       starting the command (written whole, then renamed)
     --keep            the parent keeps its copies of the sockets open (as
                       systemd does, so connections queue while no child runs)
   Broken cases, for the server's start-up error path (the broken socket is
   fd 3; listeners asked for by --port or --fds follow it at fd 4, ...):
     --wrong-pid       LISTEN_PID is the launcher's pid, not the child's
     --not-listening   fd 3 is a bound TCP socket that never called listen()
     --udp             fd 3 is a bound UDP socket
     --unix PATH       fd 3 is a listening AF_UNIX stream socket at PATH
     --not-socket      fd 3 is /dev/null
     --count N         LISTEN_FDS=N whatever was opened (e.g. more than there
                       are, or 0)
   Every socket is bound on 127.0.0.1 only. Messages go to stderr, prefixed
   "launcher:"; exit status 2 for its own errors (bad option, bind, fork).

   Build: cc -std=c99 -Wall -Wextra -Wpedantic -O2 tests/ops/launcher.c -o build/launcher */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_FDS 16

static volatile sig_atomic_t child_pid;

static void forward(int sig)
{
    if (child_pid > 0) kill((pid_t)child_pid, sig);
}

/* Says what failed and why (errno); -1 for the socket helpers. */
static int fail(const char *what)
{
    fprintf(stderr, "launcher: %s: %s\n", what, strerror(errno));
    return -1;
}

/* The same, as main's exit status. */
static int die(const char *what)
{
    fail(what);
    return 2;
}

/* A TCP (or UDP) socket bound on 127.0.0.1:port; listening when asked.
   Returns the fd and the port it got in *got. */
static int open_inet(int type, int port, int do_listen, int *got)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int one = 1, fd = socket(AF_INET, type, 0);
    if (fd < 0) return fail("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        fprintf(stderr, "launcher: bind 127.0.0.1:%d: %s\n", port, strerror(errno));
        close(fd);
        return -1;
    }
    if (do_listen && listen(fd, 1024) < 0) {
        close(fd);
        return fail("listen");
    }
    if (getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        close(fd);
        return fail("getsockname");
    }
    *got = ntohs(a.sin_port);
    return fd;
}

static int open_unix(const char *path)
{
    struct sockaddr_un a;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return fail("socket");
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof a.sun_path) {
        fprintf(stderr, "launcher: unix socket path too long: %s\n", path);
        close(fd);
        return -1;
    }
    strcpy(a.sun_path, path);
    unlink(path);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 16) < 0) {
        close(fd);
        return fail(path);
    }
    return fd;
}

static int usage(void)
{
    fprintf(stderr, "usage: launcher [--port N]... [--fds N] [--names a:b] [--port-file F] [--keep]\n"
                    "                [--wrong-pid | --not-listening | --udp | --unix PATH | --not-socket]\n"
                    "                [--count N] [--] command [args...]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int ports[MAX_FDS], fds[MAX_FDS], nports = 0, nfds = 0, extra = 0, i, status;
    char **cmd;
    int wrong_pid = 0, not_listening = 0, udp = 0, not_socket = 0, keep = 0, count = -1, broken;
    const char *names = NULL, *port_file = NULL, *unix_path = NULL;
    struct sigaction sa;
    pid_t pid;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--")) {
            i++;
            break;
        } else if (a[0] != '-' || a[1] != '-') {
            break;
        } else if (!strcmp(a, "--wrong-pid")) {
            wrong_pid = 1;
        } else if (!strcmp(a, "--not-listening")) {
            not_listening = 1;
        } else if (!strcmp(a, "--udp")) {
            udp = 1;
        } else if (!strcmp(a, "--not-socket")) {
            not_socket = 1;
        } else if (!strcmp(a, "--keep")) {
            keep = 1;
        } else if (!v) {
            return usage();
        } else {
            i++;
            if (!strcmp(a, "--port")) {
                if (nports == MAX_FDS) return usage();
                ports[nports++] = atoi(v);
            } else if (!strcmp(a, "--fds")) {
                extra = atoi(v);
            } else if (!strcmp(a, "--names")) {
                names = v;
            } else if (!strcmp(a, "--port-file")) {
                port_file = v;
            } else if (!strcmp(a, "--unix")) {
                unix_path = v;
            } else if (!strcmp(a, "--count")) {
                count = atoi(v);
            } else {
                return usage();
            }
        }
    }
    if (i >= argc || extra < 0 || nports + extra > MAX_FDS) return usage();
    cmd = argv + i;
    while (extra-- > 0) ports[nports++] = 0;
    broken = not_socket || unix_path || udp || not_listening;
    if (broken) { /* the broken socket goes first, at fd 3 */
        if (nports == MAX_FDS) return usage();
        memmove(ports + 1, ports, (size_t)nports * sizeof *ports);
        ports[0] = 0;
        nports++;
    }
    if (nports == 0) ports[nports++] = 0;

    for (nfds = 0; nfds < nports; nfds++) {
        int got = 0, fd;
        if (nfds == 0 && not_socket) fd = open("/dev/null", O_RDWR);
        else if (nfds == 0 && unix_path) fd = open_unix(unix_path);
        else if (nfds == 0 && udp) fd = open_inet(SOCK_DGRAM, ports[0], 0, &got);
        else fd = open_inet(SOCK_STREAM, ports[nfds], !(nfds == 0 && not_listening), &got);
        if (fd < 0) return 2;
        fds[nfds] = fd;
        ports[nfds] = got;
        if (nfds == 0 && not_socket) fprintf(stderr, "launcher: fd 3: /dev/null\n");
        else if (nfds == 0 && unix_path) fprintf(stderr, "launcher: fd 3: unix %s\n", unix_path);
        else fprintf(stderr, "launcher: fd %d: %s 127.0.0.1:%d\n", 3 + nfds,
                     nfds == 0 && udp ? "udp" : nfds == 0 && not_listening ? "tcp, not listening," : "tcp", got);
    }
    if (port_file) {
        char tmp[4096];
        FILE *f;
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        f = fopen(tmp, "w");
        if (!f) return die(tmp);
        for (i = 0; i < nfds; i++) fprintf(f, "%d\n", ports[i]);
        if (fclose(f) != 0 || rename(tmp, port_file) != 0) return die(port_file);
    }

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);

    pid = fork();
    if (pid < 0) return die("fork");
    if (pid == 0) {
        char buf[64];
        int k;
        /* move the sockets out of the way of 3.. first, then into place */
        for (k = 0; k < nfds; k++) {
            int moved = fcntl(fds[k], F_DUPFD_CLOEXEC, 3 + MAX_FDS);
            if (moved < 0) _exit(127);
            close(fds[k]);
            fds[k] = moved;
        }
        for (k = 0; k < nfds; k++) {
            if (dup2(fds[k], 3 + k) < 0) _exit(127); /* dup2 clears FD_CLOEXEC on the copy */
            close(fds[k]);
        }
        { /* nothing else leaks into the command, as with systemd */
            long max = sysconf(_SC_OPEN_MAX), fd;
            if (max < 0 || max > 65536) max = 65536;
            for (fd = 3 + nfds; fd < max; fd++) close((int)fd);
        }
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGUSR1, SIG_DFL);
        signal(SIGUSR2, SIG_DFL);
        snprintf(buf, sizeof buf, "%d", count >= 0 ? count : nfds);
        setenv("LISTEN_FDS", buf, 1);
        snprintf(buf, sizeof buf, "%ld", (long)(wrong_pid ? getppid() : getpid()));
        setenv("LISTEN_PID", buf, 1);
        if (names) setenv("LISTEN_FDNAMES", names, 1);
        else unsetenv("LISTEN_FDNAMES");
        execvp(cmd[0], cmd);
        fprintf(stderr, "launcher: exec %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
    }
    child_pid = pid;
    if (!keep)
        for (i = 0; i < nfds; i++) close(fds[i]);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return die("waitpid");
    if (unix_path) unlink(unix_path);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
