/* tests/uring/no_uring.c - runs a program under a seccomp filter that makes
   io_uring_setup fail, as a container's default policy does (Docker's
   refuses it with EPERM), so the io_uring build's fallback to epoll can be
   tested on a kernel that has io_uring:

       no-uring [-e EPERM|ENOSYS|EACCES] PROGRAM [ARGS...]
       no-uring --probe      says whether this kernel lets us set up a
                             ring (exit 0), or why not (exit 1)

   It sets no_new_privs (needed to install a filter without privileges),
   installs the filter, checks that io_uring_setup now fails with the chosen
   errno, and execs PROGRAM (the filter stays across exec). Every other
   system call is allowed. Linux only. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define NU_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NU_ARCH AUDIT_ARCH_AARCH64
#elif defined(__i386__)
#define NU_ARCH AUDIT_ARCH_I386
#else
#error "no-uring: add this architecture's AUDIT_ARCH_*"
#endif

static int errno_named(const char *s)
{
    if (strcmp(s, "EPERM") == 0) return EPERM;
    if (strcmp(s, "ENOSYS") == 0) return ENOSYS;
    if (strcmp(s, "EACCES") == 0) return EACCES;
    return -1;
}

int main(int argc, char **argv)
{
    int e = EPERM, first = 1;
    struct io_uring_params prm;
    long r;
    if (argc == 2 && strcmp(argv[1], "--probe") == 0) {
        memset(&prm, 0, sizeof prm);
        r = syscall(__NR_io_uring_setup, 4, &prm);
        if (r < 0) {
            printf("io_uring refused here: %s\n", strerror(errno));
            return 1;
        }
        close((int)r);
        printf("io_uring available\n");
        return 0;
    }
    if (argc > 2 && strcmp(argv[1], "-e") == 0) {
        e = errno_named(argv[2]);
        first = 3;
    }
    if (e < 0 || first >= argc) {
        fprintf(stderr, "usage: no-uring [-e EPERM|ENOSYS|EACCES] PROGRAM [ARGS...]\n");
        return 2;
    }
    {
        struct sock_filter f[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (unsigned)offsetof(struct seccomp_data, arch)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NU_ARCH, 1, 0),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (unsigned)offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)e & SECCOMP_RET_DATA)),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog;
        prog.len = (unsigned short)(sizeof f / sizeof f[0]);
        prog.filter = f;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
            syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
            perror("no-uring: installing the seccomp filter");
            return 1;
        }
    }
    memset(&prm, 0, sizeof prm);
    r = syscall(__NR_io_uring_setup, 4, &prm);
    if (r >= 0 || errno != e) {
        fprintf(stderr, "no-uring: the filter did not refuse io_uring_setup (%ld, %s)\n", r, strerror(errno));
        return 1;
    }
    execv(argv[first], argv + first);
    perror("no-uring: exec");
    return 127;
}
