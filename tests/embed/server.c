/* The black-box app (examples/bench.c's routes) run from the caller's own
   loop: the way a game engine, a GUI or a daemon that owns its main loop
   embeds chopin.h. Each turn of the loop waits at most 10 ms for the
   server's descriptor (ch_poll_fd, in the program's own poll(2)), lets the
   server run what is ready (ch_poll(app, 0)), then does "its own work"
   (here: counts turns). With the poll backend, which has no descriptor to
   watch, it calls ch_poll(app, 10) instead.
   SIGINT/SIGTERM are the program's business, not the server's: a flag set
   by the handler asks for ch_stop, and the loop runs until ch_poll says the
   server has drained (1). On exit it prints the slowest ch_poll call, so
   the suite can check the budget held. Build: make build/embed. */
#define BENCH_NO_MAIN
#include "../../examples/bench.c"

#include <poll.h>
#include <signal.h>
#include <time.h>

static volatile sig_atomic_t g_stop;

static void on_stop(int sig)
{
    (void)sig;
    g_stop = 1;
}

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int main(void)
{
    ch_config cfg;
    ch_app *app = bench_app();
    long long turns = 0, slowest = 0;
    int rc = 0, stopping = 0, fd;
    struct sigaction sa;
    if (!app) return 1;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGUSR1, SIG_IGN);
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = CH_MODE_STANDARD; /* one loop: this thread's */
    cfg.workers = 1;
    if (ch_listen(app, &cfg) != 0) {
        fprintf(stderr, "chopin: %s\n", ch_error(app));
        ch_app_free(app);
        return 1;
    }
    print_listening(ch_config_used(app));
    fd = ch_poll_fd(app);
    printf("# embedded: ch_poll_fd = %d\n", fd);
    fflush(stdout);
    for (;;) {
        long long t0 = now_us(), took;
        if (g_stop && !stopping) {
            ch_stop(app);
            stopping = 1;
        }
        if (fd >= 0) {
            struct pollfd pf;
            pf.fd = fd;
            pf.events = POLLIN;
            pf.revents = 0;
            poll(&pf, 1, 10); /* the program's own wait: 10 ms at most */
            rc = ch_poll(app, 0);
        } else {
            rc = ch_poll(app, 10);
        }
        took = now_us() - t0;
        if (took > slowest) slowest = took;
        if (rc != 0) break;
        turns++; /* the caller's own work would go here */
    }
    if (rc < 0) fprintf(stderr, "chopin: %s\n", ch_error(app));
    fprintf(stderr, "# embedded: %lld turns, slowest ch_poll %lld us\n", turns, slowest);
    ch_app_free(app);
    return rc < 0 ? 1 : 0;
}
