/* tests/ops/unit.c - unit tests for the operations parts of chopin.h
   (issue 12): the LISTEN_FDS / LISTEN_PID parser, the checks on an
   inherited socket, how listeners are dealt to the workers, the PID file,
   the successor's environment and command. It includes the implementation,
   so the internal chi_ functions are reachable. Build: make build/ops_unit
   (ASan+UBSan). Last line: "N passed, N failed". */
#define CHOPIN_IMPLEMENTATION
#include "../../chopin.h"

#include <stdio.h>
#include <sys/un.h>

#include "../check.h"

/* ---- LISTEN_FDS / LISTEN_PID ---- */

static int parse(const char *fds, const char *pid, long self, char *why)
{
    why[0] = 0;
    return chi_parse_listen_env(fds, pid, self, why, 192);
}

static void test_listen_env(void)
{
    char why[192];
    CHECK(parse(NULL, NULL, 42, why) == 0);                  /* not activated */
    CHECK(parse("1", "42", 42, why) == 1);
    CHECK(parse("2", "42", 42, why) == 2);
    CHECK(parse("1024", "42", 42, why) == 1024);             /* CHI_MAX_LISTENERS */
    CHECK(parse("1025", "42", 42, why) == -1 && strstr(why, "LISTEN_FDS"));
    CHECK(parse("0", "42", 42, why) == -1 && strstr(why, "LISTEN_FDS"));
    CHECK(parse("", "42", 42, why) == -1);
    CHECK(parse("2x", "42", 42, why) == -1);
    CHECK(parse("-1", "42", 42, why) == -1);
    CHECK(parse(" 1", "42", 42, why) == -1);
    CHECK(parse("99999999999999999999", "42", 42, why) == -1); /* no overflow */
    CHECK(parse("1", "43", 42, why) == -1 && strstr(why, "LISTEN_PID=43") && strstr(why, "42"));
    CHECK(parse("1", NULL, 42, why) == -1 && strstr(why, "LISTEN_PID"));
    CHECK(parse(NULL, "42", 42, why) == -1 && strstr(why, "LISTEN_FDS"));
    CHECK(parse("1", "abc", 42, why) == -1 && strstr(why, "LISTEN_PID"));
    CHECK(parse("1", "", 42, why) == -1);
    CHECK(parse("1", "0", 0, why) == -1);                   /* no process 0 */
    CHECK(parse("1", "420000000000", 42, why) == -1);
}

/* ---- the checks on an inherited socket ---- */

static int tcp_socket(int type, int do_listen)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, type, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0) return -1;
    if (do_listen && listen(fd, 8) < 0) return -1;
    return fd;
}

static void test_check_listener(void)
{
    int lfd = tcp_socket(SOCK_STREAM, 1), nfd = tcp_socket(SOCK_STREAM, 0), ufd = tcp_socket(SOCK_DGRAM, 0);
    int xfd = socket(AF_UNIX, SOCK_STREAM, 0), dfd = open("/dev/null", O_RDONLY), port = 0;
    const char *why;
    chi_peer addr;
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    snprintf(un.sun_path, sizeof un.sun_path, "/tmp/chopin-ops-unit.%ld", (long)getpid());
    unlink(un.sun_path);
    CHECK(xfd >= 0 && bind(xfd, (struct sockaddr *)&un, sizeof un) == 0 && listen(xfd, 4) == 0);
    CHECK(lfd >= 0 && nfd >= 0 && ufd >= 0 && dfd >= 0);
    CHECK(chi_os_check_listener(lfd) == NULL);
    CHECK((fcntl(lfd, F_GETFL) & O_NONBLOCK) && (fcntl(lfd, F_GETFD) & FD_CLOEXEC)); /* made so */
    CHECK(chi_os_sockname(lfd, &addr, &port) == 0 && addr.family == 4 && port > 0);
    CHECK((why = chi_os_check_listener(nfd)) && strstr(why, "not listening"));
    CHECK((why = chi_os_check_listener(ufd)) && strstr(why, "stream"));
    CHECK((why = chi_os_check_listener(xfd)) && strstr(why, "unix") && strstr(why, "family"));
    CHECK((why = chi_os_check_listener(dfd)) && strstr(why, "not a socket"));
    close(dfd);
    CHECK((why = chi_os_check_listener(dfd)) && strstr(why, "not open"));
    CHECK(chi_os_host_family("127.0.0.1") == 4 && chi_os_host_family("::1") == 6 &&
          chi_os_host_family("localhost") == 0);
    close(lfd);
    close(nfd);
    close(ufd);
    close(xfd);
    unlink(un.sun_path);
}

/* ---- listeners dealt to the workers ---- */

/* n listeners with the groups given, w workers: how many each worker gets,
   and every listener is taken by at least one worker. */
static int g_seen[CHI_MAX_LISTENERS];

static void deal(ch_app *app, int w, const int *groups, int n, int *counts, int *shared)
{
    chi_worker *wk = (chi_worker *)calloc(1, sizeof *wk);
    int i, k;
    app->cfg.workers = w;
    app->nlisten = n;
    memset(g_seen, 0, sizeof g_seen);
    for (i = 0; i < n; i++) {
        app->listen_fds[i] = 100 + i;
        app->listen_group[i] = groups[i];
    }
    for (i = 0; i < w; i++) {
        chi_take_listeners(wk, app, i);
        counts[i] = wk->nlisten;
        shared[i] = 0;
        for (k = 0; k < wk->nlisten; k++) {
            g_seen[wk->listen_fd[k] - 100]++;
            shared[i] += wk->listen_shared[k];
        }
    }
    free(wk);
}

static int all_seen(int n)
{
    int i;
    for (i = 0; i < n; i++)
        if (!g_seen[i]) return 0;
    return 1;
}

static void test_take_listeners(void)
{
    ch_app *app = ch_app_new();
    int counts[8], shared[8];
    static const int one[1] = {0}, same4[4] = {0, 0, 0, 0}, two[2] = {0, 1}, mixed[5] = {0, 0, 1, 0, 0};
    /* one socket (shared mode, or one inherited): every worker, shared */
    deal(app, 4, one, 1, counts, shared);
    CHECK(counts[0] == 1 && counts[3] == 1 && shared[0] == 1 && shared[3] == 1 && g_seen[0] == 4);
    /* one socket per worker (SO_REUSEPORT): one each, not shared */
    deal(app, 4, same4, 4, counts, shared);
    CHECK(counts[0] == 1 && counts[1] == 1 && counts[2] == 1 && counts[3] == 1 && shared[0] == 0 && all_seen(4));
    CHECK(g_seen[0] == 1 && g_seen[3] == 1);
    /* four sockets of one address, two workers (a restart into fewer): two each */
    deal(app, 2, same4, 4, counts, shared);
    CHECK(counts[0] == 2 && counts[1] == 2 && shared[0] == 0 && all_seen(4));
    /* one worker, two addresses (http, admin): both */
    deal(app, 1, two, 2, counts, shared);
    CHECK(counts[0] == 2 && shared[0] == 0 && all_seen(2));
    /* three workers, two addresses of one socket each: every worker both */
    deal(app, 3, two, 2, counts, shared);
    CHECK(counts[0] == 2 && counts[1] == 2 && counts[2] == 2 && shared[2] == 2);
    /* four sockets on one address + one on another, two workers */
    deal(app, 2, mixed, 5, counts, shared);
    CHECK(counts[0] == 3 && counts[1] == 3 && all_seen(5) && g_seen[2] == 2 && g_seen[0] == 1);
    app->nlisten = 0; /* the fds above are not real */
    ch_app_free(app);
}

/* ---- PID file ---- */

static void test_pid_file(void)
{
    char path[128], text[64];
    FILE *f;
    snprintf(path, sizeof path, "/tmp/chopin-ops-unit.%ld.pid", (long)getpid());
    CHECK(chi_os_write_pidfile(path, 12345) == 0);
    f = fopen(path, "r");
    CHECK(f && fgets(text, sizeof text, f) && strcmp(text, "12345\n") == 0);
    if (f) fclose(f);
    chi_os_remove_pidfile(path, 999); /* names another: stays */
    CHECK(access(path, F_OK) == 0);
    CHECK(chi_os_write_pidfile(path, 999) == 0); /* replaced whole */
    chi_os_remove_pidfile(path, 999);
    CHECK(access(path, F_OK) != 0);
    CHECK(chi_os_write_pidfile("/nonexistent-dir/x.pid", 1) == -1);
}

/* ---- the successor's environment and command ---- */

static int count_prefix(char **env, const char *prefix, const char **last)
{
    int n = 0;
    for (; *env; env++)
        if (strncmp(*env, prefix, strlen(prefix)) == 0) {
            n++;
            *last = *env;
        }
    return n;
}

static void test_successor(void)
{
    ch_app *app = ch_app_new();
    chi_spawn_vars v;
    char **env, *argv[] = {(char *)"prog", (char *)"--flag", (char *)"x y", NULL};
    const char *last = NULL;
    setenv("LISTEN_FDS", "9", 1);
    setenv("CHOPIN_READY_FD", "7", 1);
    setenv("CHOPIN_OPS_UNIT", "kept", 1);
    app->nlisten = 2;
    snprintf(app->fdnames, sizeof app->fdnames, "http:admin");
    env = chi_successor_env(app, &v);
    CHECK(env != NULL);
    if (env) {
        CHECK(count_prefix(env, "LISTEN_FDS=", &last) == 1 && strcmp(last, "LISTEN_FDS=2") == 0);
        CHECK(count_prefix(env, "CHOPIN_READY_FD=", &last) == 1 && strcmp(last, "CHOPIN_READY_FD=5") == 0);
        CHECK(count_prefix(env, "LISTEN_FDNAMES=", &last) == 1 && strcmp(last, "LISTEN_FDNAMES=http:admin") == 0);
        CHECK(count_prefix(env, "LISTEN_PID=", &last) == 1 && strlen(last) == 11 + 20); /* room for the child */
        CHECK(count_prefix(env, "CHOPIN_OPS_UNIT=", &last) == 1 && strcmp(last, "CHOPIN_OPS_UNIT=kept") == 0);
        CHOPIN_FREE(env);
    }
    unsetenv("LISTEN_FDS");
    unsetenv("CHOPIN_READY_FD");
    app->nlisten = 0;
    chi_take_command(app, argv);
    CHECK(app->argv && strcmp(app->argv[0], "prog") == 0 && strcmp(app->argv[2], "x y") == 0 && !app->argv[3]);
    CHECK(app->argv != argv && app->argv[1] != argv[1]); /* a copy */
#if defined(__linux__)
    CHECK(app->exe[0] == '/'); /* /proc/self/exe */
#endif
    /* not listening: ch_restart refuses, with a reason */
    CHECK(ch_restart(app) == -1 && strstr(ch_error(app), "not listening"));
    CHECK(ch_restart(NULL) == -1);
    CHECK(ch_health(app, "/health") == 0);
    ch_app_free(app);
}

/* Linux, no argv given: the command comes from /proc/self/cmdline. */
static void test_cmdline(void)
{
#if defined(__linux__)
    ch_app *app = ch_app_new();
    chi_take_command(app, NULL);
    CHECK(app->argv && app->argv[0] && strstr(app->argv[0], "ops_unit"));
    ch_app_free(app);
#endif
}

int main(void)
{
    run("LISTEN_FDS / LISTEN_PID parsing", test_listen_env);
    run("inherited socket checks", test_check_listener);
    run("listeners dealt to workers", test_take_listeners);
    run("PID file", test_pid_file);
    run("the successor's environment and command", test_successor);
    run("the command from /proc/self/cmdline", test_cmdline);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
