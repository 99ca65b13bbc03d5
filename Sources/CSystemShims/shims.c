#define _GNU_SOURCE
#include "CSystemShims.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <unistd.h>
#include <pthread.h>

int sr_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
             int stdout_fd, int stderr_fd, int new_session, const char *cwd) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0) return rc;
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) { posix_spawn_file_actions_destroy(&fa); return rc; }

    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, stdout_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, stderr_fd, 2);
    /* No descriptor of the runner may leak into the sandbox. */
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    if (cwd != NULL) posix_spawn_file_actions_addchdir_np(&fa, cwd);

    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (new_session) {
        flags |= POSIX_SPAWN_SETSID;
    } else {
        flags |= POSIX_SPAWN_SETPGROUP;
        posix_spawnattr_setpgroup(&attr, 0);
    }
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, flags);

    rc = posix_spawn(pid, path, &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return rc;
}

/* This process's own peak RSS in KiB: VmHWM from /proc/self/status. Not getrusage's ru_maxrss:
 * on Linux it carries the size of the process that exec'd us across exec (a benchmark's big
 * parent made the runner look as big as it). ru_maxrss only where /proc is missing. */
long sr_peak_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "re");
    if (f) {
        char line[256];
        long kib = -1;
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "VmHWM:", 6) == 0) { kib = strtol(line + 6, NULL, 10); break; }
        }
        fclose(f);
        if (kib >= 0) return kib;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return ru.ru_maxrss;
}

int sr_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

#include <errno.h>
#include <sys/socket.h>

int sr_accept_cloexec(int fd) {
    int c;
    do { c = accept4(fd, NULL, NULL, SOCK_CLOEXEC); } while (c < 0 && errno == EINTR);
    return c;
}

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#define SR_KEYCTL_JOIN_SESSION_KEYRING 1

static void sr_child_fail(int fd, int err) {
    (void)!write(fd, &err, sizeof err);
    _exit(127);
}

/* The steps of a jailed child between fork and exec that the local jail and e2b-local share;
 * async-signal-safe; each returns 0 or the errno of the step that failed. */
int sr_child_set_rlimits(unsigned long long as_bytes, unsigned long long cpu_seconds, unsigned long long nproc,
                         unsigned long long fsize_bytes, unsigned long long nofile) {
    const struct { int resource; unsigned long long value; } limits[] = {
        {RLIMIT_AS, as_bytes}, {RLIMIT_CPU, cpu_seconds}, {RLIMIT_NPROC, nproc},
        {RLIMIT_FSIZE, fsize_bytes}, {RLIMIT_NOFILE, nofile}, {RLIMIT_CORE, 0},
    };
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        struct rlimit r;
        r.rlim_cur = r.rlim_max = limits[i].value;
        if (setrlimit(limits[i].resource, &r) != 0) return errno;
    }
    return 0;
}

int sr_child_become(unsigned int uid, unsigned int gid) {
    if (setgroups(0, NULL) != 0) return errno;
    if (setresgid(gid, gid, gid) != 0) return errno;
    if (setresuid(uid, uid, uid) != 0) return errno;
    return 0;
}

int sr_child_fresh_keyring(void) {
    /* A fresh anonymous session keyring: nothing of the parent's session is possessed. */
    if (syscall(SYS_keyctl, SR_KEYCTL_JOIN_SESSION_KEYRING, (char *)NULL) < 0 && errno != ENOSYS) return errno;
    return 0;
}

/* Every disposition to default (SIGKILL/SIGSTOP and glibc's internal signals refuse: ignored). */
void sr_child_default_dispositions(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (int s = 1; s < NSIG; s++) sigaction(s, &sa, NULL);
}

void sr_reset_signals(void) {
    sr_child_default_dispositions();
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
}

static void sr_close_from(int lowest, int except) {
    if (except >= lowest) {
        if (except > lowest && syscall(SYS_close_range, lowest, except - 1, 0) != 0)
            for (int fd = lowest; fd < except; fd++) close(fd);
        if (syscall(SYS_close_range, except + 1, ~0U, 0) != 0)
            for (int fd = except + 1; fd < 65536; fd++) close(fd);
    } else if (syscall(SYS_close_range, lowest, ~0U, 0) != 0) {
        for (int fd = lowest; fd < 65536; fd++) if (fd != except) close(fd);
    }
}

/* Waits for the child's report: 0 when it exec'd, else the errno it sent (the child is reaped). */
static int sr_await_exec(pid_t child, int report_read) {
    int err = 0;
    ssize_t n;
    do { n = read(report_read, &err, sizeof err); } while (n < 0 && errno == EINTR);
    close(report_read);
    if (n == (ssize_t)sizeof err) {
        int status;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
        return err ? err : EIO;
    }
    return 0;
}

int sr_spawn_helper(pid_t *pid, const char *path, char *const argv[], char *const envp[],
                    int stdout_fd, int stderr_fd) {
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
        close(report[0]); close(report[1]);
        return err;
    }
    if (child == 0) {
        int w = report[1];
        sr_child_default_dispositions();
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) sr_child_fail(w, errno);
        /* The parent may have died between fork and prctl: then no signal would ever come. */
        if (getppid() != parent) _exit(127);
        setpgid(0, 0);
        int so = fcntl(stdout_fd, F_DUPFD_CLOEXEC, 3), se = fcntl(stderr_fd, F_DUPFD_CLOEXEC, 3);
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (so < 0 || se < 0 || devnull < 0) sr_child_fail(w, errno);
        if (dup2(devnull, 0) < 0 || dup2(so, 1) < 0 || dup2(se, 2) < 0) sr_child_fail(w, errno);
        sr_close_from(3, w);
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        execve(path, argv, envp);
        sr_child_fail(w, errno);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(report[1]);
    int err = sr_await_exec(child, report[0]);
    if (err == 0) *pid = child;
    return err;
}

int sr_spawn_jailed(pid_t *pid, const char *path, char *const argv[], char *const envp[],
                    int stdout_fd, int stderr_fd, const char *cwd, const sr_jail_setup *setup) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    sigset_t all, old;
    sigfillset(&all);
    /* Blocked across fork so no handler of the runner runs in the child before the reset. */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t child = fork();
    if (child < 0) {
        int err = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        close(report[0]); close(report[1]);
        return err;
    }
    if (child == 0) {
        /* Only async-signal-safe calls from here to execve. */
        int keep = setup->keep_count > 0 ? setup->keep_count : 0;
        int blobs = setup->blob_count > 0 ? setup->blob_count : 0;
        if (keep > 256) sr_child_fail(report[1], EMFILE);
        /* A runner at its descriptor limit (a server full of connections) leaves no room for the
           moves below: first close everything the child does not need. */
        int needed[256 + 3];
        int n_needed = 0;
        needed[n_needed++] = report[1];
        needed[n_needed++] = stdout_fd;
        needed[n_needed++] = stderr_fd;
        for (int i = 0; i < keep; i++) needed[n_needed++] = setup->keep_fds[i];
        for (int i = 1; i < n_needed; i++)  /* insertion sort: no allocation here */
            for (int j = i; j > 0 && needed[j - 1] > needed[j]; j--) { int t = needed[j]; needed[j] = needed[j - 1]; needed[j - 1] = t; }
        int from = 3;
        for (int i = 0; i < n_needed; i++) {
            if (needed[i] > from && syscall(SYS_close_range, from, needed[i] - 1, 0) != 0)
                for (int fd = from; fd < needed[i]; fd++) close(fd);
            if (needed[i] + 1 > from) from = needed[i] + 1;
        }
        if (syscall(SYS_close_range, from, ~0U, 0) != 0) for (int fd = from; fd < 65536; fd++) close(fd);
        int base = 3 + keep + blobs + 3;
        int w = fcntl(report[1], F_DUPFD_CLOEXEC, base);
        if (w < 0) sr_child_fail(report[1], errno);
        sr_child_default_dispositions();
        setpgid(0, 0);

        /* Descriptors: first everything we need lifted above the targets, then placed. */
        int moved[256];
        for (int i = 0; i < keep; i++) {
            moved[i] = fcntl(setup->keep_fds[i], F_DUPFD_CLOEXEC, base);
            if (moved[i] < 0) sr_child_fail(w, errno);
        }
        int so = fcntl(stdout_fd, F_DUPFD_CLOEXEC, base), se = fcntl(stderr_fd, F_DUPFD_CLOEXEC, base);
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (so < 0 || se < 0 || devnull < 0) sr_child_fail(w, errno);
        if (dup2(devnull, 0) < 0 || dup2(so, 1) < 0 || dup2(se, 2) < 0) sr_child_fail(w, errno);
        for (int i = 0; i < keep; i++)
            if (dup2(moved[i], 3 + i) < 0) sr_child_fail(w, errno);   /* dup2 clears close-on-exec */
        /* Nothing of the runner but 0-2, the kept ones and the report pipe (close-on-exec) survives. */
        sr_close_from(3 + keep, w);

        if (setup->cgroup_tasks != NULL) {
            for (const char *const *p = setup->cgroup_tasks; *p != NULL; p++) {
                int fd = open(*p, O_WRONLY | O_CLOEXEC);
                if (fd < 0) sr_child_fail(w, errno);
                if (write(fd, "0", 1) != 1) sr_child_fail(w, errno ? errno : EIO);
                close(fd);
            }
        }
        for (int i = 0; i < blobs; i++) {
            int want = 3 + keep + i;
            int fd = memfd_create("jail", 0);
            if (fd < 0) sr_child_fail(w, errno);
            if (fd != want) {
                if (dup2(fd, want) < 0) sr_child_fail(w, errno);
                close(fd);
            }
            const char *p = setup->blobs[i].data;
            size_t left = setup->blobs[i].len;
            while (left > 0) {
                ssize_t n = write(want, p, left);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) sr_child_fail(w, n < 0 ? errno : EIO);
                p += n; left -= (size_t)n;
            }
            if (lseek(want, 0, SEEK_SET) != 0) sr_child_fail(w, errno);
        }
        int e;
        if (setup->set_limits && (e = sr_child_set_rlimits(setup->as_bytes, setup->cpu_seconds, setup->nproc,
                                                           setup->fsize_bytes, setup->nofile)) != 0) sr_child_fail(w, e);
        if (setup->set_ids && (e = sr_child_become(setup->uid, setup->gid)) != 0) sr_child_fail(w, e);
        if (setup->new_keyring && (e = sr_child_fresh_keyring()) != 0) sr_child_fail(w, e);
        if (cwd != NULL && chdir(cwd) != 0) sr_child_fail(w, errno);
        if (setup->seccomp_bpf != NULL) {
            struct sock_fprog prog = { (unsigned short)(setup->seccomp_len / sizeof(struct sock_filter)),
                                       (struct sock_filter *)setup->seccomp_bpf };
            if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) sr_child_fail(w, errno);
            if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) sr_child_fail(w, errno);
        }
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        execve(path, argv, envp);
        sr_child_fail(w, errno);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(report[1]);
    int err = sr_await_exec(child, report[0]);
    if (err == 0) *pid = child;
    return err;
}

int sr_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int sr_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int sr_pidfd_wait_exit(int pidfd, int timeout_ms) {
    struct pollfd p = { .fd = pidfd, .events = POLLIN, .revents = 0 };
    for (;;) {
        int n = poll(&p, 1, timeout_ms);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        return n > 0 ? 1 : 0;
    }
}

int sr_memfd_with(const char *name, const void *data, size_t len) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) return -1;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno; close(fd); errno = e; return -1;
        }
        p += n; left -= (size_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) { int e = errno; close(fd); errno = e; return -1; }
    return fd;
}

/* Empties the directory behind dfd (which it closes). */
static int sr_empty_dir(int dfd, int depth, int max_depth) {
    int first_err = 0;
    DIR *d = fdopendir(dfd);
    if (d == NULL) { int e = errno; close(dfd); return e; }
    for (int pass = 0; pass < 64; pass++) {
        int removed = 0, left = 0;
        rewinddir(d);
        struct dirent *e;
        while ((errno = 0, e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            struct stat st;
            if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                if (errno != ENOENT && !first_err) first_err = errno;
                continue;
            }
            if (S_ISDIR(st.st_mode)) {
                if (depth + 1 >= max_depth) { if (!first_err) first_err = ELOOP; left++; continue; }
                int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
                if (sub < 0 && errno == EACCES && st.st_uid == geteuid()) {
                    /* Our own unreadable directory (not root): make it ours to empty. A swap to a
                       link here could only change the mode of another file of this same uid. */
                    fchmodat(dirfd(d), e->d_name, 0700, 0);
                    sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
                }
                if (sub < 0) {
                    /* Replaced by something else since fstatat (a link): remove that name only. */
                    if ((errno == ELOOP || errno == ENOTDIR) && unlinkat(dirfd(d), e->d_name, 0) == 0) { removed++; continue; }
                    if (errno != ENOENT && !first_err) first_err = errno;
                    left++;
                    continue;
                }
                int rc = sr_empty_dir(sub, depth + 1, max_depth);
                if (rc && !first_err) first_err = rc;
                if (unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) == 0) removed++;
                else if (errno != ENOENT) { left++; if (!first_err) first_err = errno; }
            } else {
                if (unlinkat(dirfd(d), e->d_name, 0) == 0) removed++;
                else if (errno != ENOENT) { left++; if (!first_err) first_err = errno; }
            }
        }
        if (left == 0 || removed == 0) break;
    }
    closedir(d);
    return first_err;
}

int sr_remove_tree_at(int parent_fd, const char *name, int max_depth) {
    int dfd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (dfd < 0) {
        if (errno == ENOENT) return 0;
        if (errno == ELOOP || errno == ENOTDIR) return unlinkat(parent_fd, name, 0) == 0 ? 0 : errno;
        return errno;
    }
    int rc = sr_empty_dir(dfd, 0, max_depth < 1 ? 1 : max_depth);
    if (unlinkat(parent_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT && !rc) rc = errno;
    return rc;
}

int sr_chown_beneath(int root_fd, const char *relative, unsigned int uid, unsigned int gid) {
    char part[256];
    int dfd = fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0) return errno;
    const char *p = relative;
    while (*p == '/') p++;
    if (*p == '\0') {
        int rc = fchown(dfd, uid, gid) == 0 ? 0 : errno;
        close(dfd);
        return rc;
    }
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0 || n >= sizeof part) { close(dfd); return EINVAL; }
        memcpy(part, p, n);
        part[n] = '\0';
        if (strcmp(part, "..") == 0 || strcmp(part, ".") == 0) { close(dfd); return EINVAL; }
        const char *rest = slash ? slash + 1 : NULL;
        while (rest && *rest == '/') rest++;
        if (rest == NULL || *rest == '\0') {
            int rc = fchownat(dfd, part, uid, gid, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
            close(dfd);
            return rc;
        }
        int next = openat(dfd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        close(dfd);
        if (next < 0) return errno;
        dfd = next;
        p = rest;
    }
}

/* 1 when a process other than the caller runs with real, effective or saved uid `uid` and has
   not exited yet (zombies are dead: they hold no files and run nothing). */
static int sr_uid_has_live_process(unsigned int uid) {
    DIR *proc = opendir("/proc");
    if (proc == NULL) return 1;
    pid_t self = getpid();
    int found = 0;
    struct dirent *e;
    char path[64], buf[4096];
    while (!found && (e = readdir(proc)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 0 || pid == self) continue;
        snprintf(path, sizeof path, "/proc/%ld/status", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = '\0';
        char *state = strstr(buf, "\nState:\t");
        char *uids = strstr(buf, "\nUid:\t");
        if (state == NULL || uids == NULL) continue;
        char st = state[8];
        if (st == 'Z' || st == 'X') continue;
        unsigned int r = 0, eff = 0, saved = 0;
        if (sscanf(uids + 6, "%u %u %u", &r, &eff, &saved) != 3) continue;
        if (r == uid || eff == uid || saved == uid) found = 1;
    }
    closedir(proc);
    return found;
}

int sr_kill_uid(unsigned int uid, int timeout_ms) {
    if (uid == 0 || uid == (unsigned int)geteuid()) return EINVAL;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t child = fork();
    if (child < 0) { int e = errno; pthread_sigmask(SIG_SETMASK, &old, NULL); return e; }
    if (child == 0) {
        if (setgroups(0, NULL) != 0 || setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0) _exit(EPERM);
        struct timespec start, now, pause = { 0, 1000000 };
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
            /* kill(-1) reaches every process this uid may signal (the same uid), the caller excepted. */
            kill(-1, SIGKILL);
            if (!sr_uid_has_live_process(uid)) _exit(0);
            clock_gettime(CLOCK_MONOTONIC, &now);
            long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
            if (ms > timeout_ms) _exit(ETIMEDOUT);
            nanosleep(&pause, NULL);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    int status;
    while (waitpid(child, &status, 0) < 0) if (errno != EINTR) return errno;
    if (!WIFEXITED(status)) return EIO;
    return WEXITSTATUS(status);
}

int sr_renameat_noreplace(int old_dir, const char *old_name, int new_dir, const char *new_name) {
    return (int)syscall(SYS_renameat2, old_dir, old_name, new_dir, new_name, 1 /* RENAME_NOREPLACE */);
}

static const unsigned int sr_sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define SR_ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sr_sha256_block(sr_sha256_ctx *c, const unsigned char *p) {
    unsigned int w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (unsigned int)p[i * 4] << 24 | (unsigned int)p[i * 4 + 1] << 16 | (unsigned int)p[i * 4 + 2] << 8 | p[i * 4 + 3];
    for (int i = 16; i < 64; i++) {
        unsigned int s0 = SR_ROTR(w[i - 15], 7) ^ SR_ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        unsigned int s1 = SR_ROTR(w[i - 2], 17) ^ SR_ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    unsigned int a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4], f = c->h[5], g = c->h[6], h = c->h[7];
    for (int i = 0; i < 64; i++) {
        unsigned int t1 = h + (SR_ROTR(e, 6) ^ SR_ROTR(e, 11) ^ SR_ROTR(e, 25)) + ((e & f) ^ (~e & g)) + sr_sha256_k[i] + w[i];
        unsigned int t2 = (SR_ROTR(a, 2) ^ SR_ROTR(a, 13) ^ SR_ROTR(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
        h = g; g = f; f = e; e = d + t1; d = cc; cc = b; b = a; a = t1 + t2;
    }
    c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d; c->h[4] += e; c->h[5] += f; c->h[6] += g; c->h[7] += h;
}

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

/* The SHA extensions (SHA-NI: Intel since Goldmont/Ice Lake, AMD since Zen): the same
   compression, ~10x fewer instructions. Chosen once at run time (cpuid), the portable code above
   otherwise; a test checks both against sha256sum. */
__attribute__((target("sha,sse4.1,ssse3")))
static void sr_sha256_blocks_shani(unsigned int h[8], const unsigned char *p, size_t blocks) {
    const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i tmp = _mm_loadu_si128((const __m128i *)&h[0]);
    __m128i state1 = _mm_loadu_si128((const __m128i *)&h[4]);
    tmp = _mm_shuffle_epi32(tmp, 0xB1);             /* CDAB */
    state1 = _mm_shuffle_epi32(state1, 0x1B);       /* EFGH */
    __m128i state0 = _mm_alignr_epi8(tmp, state1, 8); /* ABEF */
    state1 = _mm_blend_epi16(state1, tmp, 0xF0);    /* CDGH */
    while (blocks--) {
        __m128i abef = state0, cdgh = state1, w[4];
        for (int i = 0; i < 16; i++) {
            if (i < 4) {
                w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), mask);
            } else {
                /* W[i] from W[i-4], W[i-3], W[i-2], W[i-1] (a ring of four). */
                __m128i m = _mm_sha256msg1_epu32(w[i & 3], w[(i + 1) & 3]);
                m = _mm_add_epi32(m, _mm_alignr_epi8(w[(i + 3) & 3], w[(i + 2) & 3], 4));
                w[i & 3] = _mm_sha256msg2_epu32(m, w[(i + 3) & 3]);
            }
            __m128i msg = _mm_add_epi32(w[i & 3], _mm_loadu_si128((const __m128i *)&sr_sha256_k[4 * i]));
            state1 = _mm_sha256rnds2_epu32(state1, state0, msg);
            msg = _mm_shuffle_epi32(msg, 0x0E);
            state0 = _mm_sha256rnds2_epu32(state0, state1, msg);
        }
        state0 = _mm_add_epi32(state0, abef);
        state1 = _mm_add_epi32(state1, cdgh);
        p += 64;
    }
    tmp = _mm_shuffle_epi32(state0, 0x1B);          /* FEBA */
    state1 = _mm_shuffle_epi32(state1, 0xB1);       /* DCHG */
    state0 = _mm_blend_epi16(tmp, state1, 0xF0);    /* DCBA */
    state1 = _mm_alignr_epi8(state1, tmp, 8);       /* ABEF -> HGFE order in memory */
    _mm_storeu_si128((__m128i *)&h[0], state0);
    _mm_storeu_si128((__m128i *)&h[4], state1);
}

static int sr_sha256_have_shani(void) {
    static int have = -1;
    int v = __atomic_load_n(&have, __ATOMIC_RELAXED);
    if (v < 0) {
        unsigned int a, b, c, d;
        int sse41 = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_1) && (c & bit_SSSE3);
        int sha = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29));
        v = sse41 && sha && getenv("SANDBOX_RUNNER_SHA256_PORTABLE") == NULL;
        __atomic_store_n(&have, v, __ATOMIC_RELAXED);
    }
    return v;
}
#endif

static void sr_sha256_blocks(sr_sha256_ctx *c, const unsigned char *p, size_t blocks) {
#if defined(__x86_64__)
    if (sr_sha256_have_shani()) { sr_sha256_blocks_shani(c->h, p, blocks); return; }
#endif
    for (; blocks; blocks--, p += 64) sr_sha256_block(c, p);
}

int sr_sha256_accelerated(void) {
#if defined(__x86_64__)
    return sr_sha256_have_shani();
#else
    return 0;
#endif
}

void sr_sha256_init(sr_sha256_ctx *c) {
    static const unsigned int iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, iv, sizeof iv);
    c->length = 0;
    c->used = 0;
}

void sr_sha256_update(sr_sha256_ctx *c, const void *data, size_t len) {
    const unsigned char *p = data;
    c->length += len;
    if (c->used) {
        size_t take = 64 - c->used < len ? 64 - c->used : len;
        memcpy(c->block + c->used, p, take);
        c->used += (unsigned int)take;
        p += take;
        len -= take;
        if (c->used < 64) return;
        sr_sha256_blocks(c, c->block, 1);
        c->used = 0;
    }
    if (len >= 64) {
        sr_sha256_blocks(c, p, len / 64);
        p += len - len % 64;
        len %= 64;
    }
    memcpy(c->block, p, len);
    c->used = (unsigned int)len;
}

void sr_sha256_final(sr_sha256_ctx *c, unsigned char out[32]) {
    unsigned long long bits = c->length * 8;
    unsigned char pad = 0x80;
    sr_sha256_update(c, &pad, 1);
    unsigned char zero = 0;
    while (c->used != 56) sr_sha256_update(c, &zero, 1);
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(bits >> (56 - 8 * i));
    sr_sha256_update(c, len, 8);
    for (int i = 0; i < 8; i++) {
        out[i * 4] = (unsigned char)(c->h[i] >> 24);
        out[i * 4 + 1] = (unsigned char)(c->h[i] >> 16);
        out[i * 4 + 2] = (unsigned char)(c->h[i] >> 8);
        out[i * 4 + 3] = (unsigned char)c->h[i];
    }
}
