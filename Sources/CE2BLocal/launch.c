#define _GNU_SOURCE
#include "CE2BLocal.h"
#include "CSystemShims.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static void child_fail(int fd, int err) {
    (void)!write(fd, &err, sizeof err);
    _exit(127);
}

int e2bl_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
               const int *fds, int nfds, int stderr_fd, const e2bl_launch_limits *limits) {
    if (nfds < 0 || nfds > 32) return EINVAL;
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    pid_t parent = getpid();
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t child = fork();
    if (child < 0) {
        int err = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        close(report[0]);
        close(report[1]);
        return err;
    }
    if (child == 0) {
        /* Only async-signal-safe calls from here to execve. Move what we keep above 3+nfds
           first, so placing fds[i] at 3+i never clobbers another of them or the report pipe. */
        int w = fcntl(report[1], F_DUPFD_CLOEXEC, 64 + nfds);
        if (w < 0) _exit(127);
        int high[32];
        for (int i = 0; i < nfds; i++) {
            high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 64 + nfds + 1 + i);
            if (high[i] < 0) child_fail(w, errno);
        }
        int err_high = -1;
        if (stderr_fd >= 0 && (err_high = fcntl(stderr_fd, F_DUPFD_CLOEXEC, 64 + 2 * nfds + 2)) < 0) child_fail(w, errno);
        sr_child_default_dispositions();
        if (setsid() < 0) child_fail(w, errno);
        if (limits->cgroup_tasks != NULL) {
            for (const char *const *p = limits->cgroup_tasks; *p != NULL; p++) {
                int fd = open(*p, O_WRONLY | O_CLOEXEC);
                if (fd < 0) child_fail(w, errno);
                if (write(fd, "0", 1) != 1) child_fail(w, errno);
                close(fd);
            }
        }
        int e;
        if (limits->set_limits && (e = sr_child_set_rlimits(limits->as_bytes, limits->cpu_seconds, limits->nproc,
                                                            limits->fsize_bytes, limits->nofile)) != 0) child_fail(w, e);
        if (limits->set_ids && (e = sr_child_become(limits->uid, limits->gid)) != 0) child_fail(w, e);
        /* A fresh, empty session keyring: nothing the server's session holds is the sandbox's. */
        if ((e = sr_child_fresh_keyring()) != 0) child_fail(w, e);
        /* After the id change (which clears it): the sandbox dies with the thread that made it. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(w, errno);
        if (getppid() != parent) _exit(127);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull < 0) child_fail(w, errno);
        if (dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0) child_fail(w, errno);
        if (dup2(err_high >= 0 ? err_high : devnull, 2) < 0) child_fail(w, errno);
        for (int i = 0; i < nfds; i++) {
            if (dup2(high[i], 3 + i) < 0) child_fail(w, errno); /* dup2 clears close-on-exec */
        }
        /* Everything else is closed at exec (the report pipe among them). */
        if (syscall(SYS_close_range, 3 + nfds, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
            for (int fd = 3 + nfds; fd < 65536; fd++) {
                if (fd != w) fcntl(fd, F_SETFD, FD_CLOEXEC);
            }
        }
        execve(path, argv, envp);
        child_fail(w, errno);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(report[1]);
    int err = 0;
    ssize_t n;
    do { n = read(report[0], &err, sizeof err); } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof err) {
        int status;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
        return err ? err : EIO;
    }
    *pid = child;
    return 0;
}

int e2bl_wait(pid_t pid) {
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    return status;
}

int e2bl_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int e2bl_pidfd_kill(int pidfd, int sig) { return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0); }

int e2bl_pidfd_wait(int pidfd, int timeout_ms) {
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    for (;;) {
        int r = poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR) continue;
        return r > 0 ? 1 : 0;
    }
}

int e2bl_seqpacket_pair(int fds[2]) { return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds); }

int e2bl_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

ssize_t e2bl_send(int sock, const void *buf, size_t len, const int *fds, int nfds) {
    if (nfds < 0 || nfds > 16) { errno = EINVAL; return -1; }
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    union { char buf[CMSG_SPACE(16 * sizeof(int))]; struct cmsghdr align; } control;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    ssize_t n;
    do { n = sendmsg(sock, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n;
}

ssize_t e2bl_recv(int sock, void *buf, size_t cap, int *fds, int maxfds, int *nfds) {
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    union { char buf[CMSG_SPACE(16 * sizeof(int))]; struct cmsghdr align; } control;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    *nfds = 0;
    ssize_t n;
    do { n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *in = (int *)CMSG_DATA(c);
        for (int i = 0; i < count; i++) {
            if (*nfds < maxfds) fds[(*nfds)++] = in[i]; else close(in[i]);
        }
    }
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        for (int i = 0; i < *nfds; i++) close(fds[i]);
        *nfds = 0;
        errno = EMSGSIZE;
        return -1;
    }
    return n;
}

int e2bl_memfd_with(const void *buf, size_t len) {
    int fd = memfd_create("e2b-local-message", MFD_CLOEXEC);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, (const char *)buf + off, len - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno; close(fd); errno = e; return -1;
        }
        off += (size_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) { int e = errno; close(fd); errno = e; return -1; }
    return fd;
}

int e2bl_open_beneath(int dirfd, const char *path, int flags) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS;
    long r;
    do { r = syscall(SYS_openat2, dirfd, path, &how, sizeof how); } while (r < 0 && errno == EINTR);
    return (int)r;
}

const int e2bl_o_path_directory = O_PATH | O_DIRECTORY;

int e2bl_fs_usage(int fd, unsigned long long *used, unsigned long long *total) {
    struct statfs s;
    if (fstatfs(fd, &s) != 0) return -1;
    *total = (unsigned long long)s.f_blocks * (unsigned long long)s.f_bsize;
    *used = (unsigned long long)(s.f_blocks - s.f_bfree) * (unsigned long long)s.f_bsize;
    return 0;
}
