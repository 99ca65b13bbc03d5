#define _GNU_SOURCE
#include "CSystemShims.h"
#include <fcntl.h>
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

long sr_peak_rss_kib(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return ru.ru_maxrss;
}

int sr_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

#include <errno.h>
#include <grp.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static void sr_child_fail(int fd, int err) {
    (void)!write(fd, &err, sizeof err);
    _exit(127);
}

int sr_spawn_jailed(pid_t *pid, const char *path, char *const argv[], char *const envp[],
                    int stdout_fd, int stderr_fd, const char *cwd, const sr_jail_setup *setup) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
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
        /* Only async-signal-safe calls from here to execve. */
        int w = report[1];
        for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
        setpgid(0, 0);
        if (setup->cgroup_procs != NULL) {
            for (const char *const *p = setup->cgroup_procs; *p != NULL; p++) {
                int fd = open(*p, O_WRONLY | O_CLOEXEC);
                if (fd < 0 || write(fd, "0", 1) != 1) sr_child_fail(w, errno ? errno : EIO);
                close(fd);
            }
        }
        if (setup->set_limits) {
            struct rlimit r;
            r.rlim_cur = r.rlim_max = setup->as_bytes;    if (setrlimit(RLIMIT_AS, &r)) sr_child_fail(w, errno);
            r.rlim_cur = r.rlim_max = setup->cpu_seconds; if (setrlimit(RLIMIT_CPU, &r)) sr_child_fail(w, errno);
            r.rlim_cur = r.rlim_max = setup->nproc;       if (setrlimit(RLIMIT_NPROC, &r)) sr_child_fail(w, errno);
            r.rlim_cur = r.rlim_max = setup->fsize_bytes; if (setrlimit(RLIMIT_FSIZE, &r)) sr_child_fail(w, errno);
            r.rlim_cur = r.rlim_max = setup->nofile;      if (setrlimit(RLIMIT_NOFILE, &r)) sr_child_fail(w, errno);
            r.rlim_cur = r.rlim_max = 0;                  if (setrlimit(RLIMIT_CORE, &r)) sr_child_fail(w, errno);
        }
        if (setup->set_ids) {
            if (setgroups(0, NULL) != 0) sr_child_fail(w, errno);
            if (setresgid(setup->gid, setup->gid, setup->gid) != 0) sr_child_fail(w, errno);
            if (setresuid(setup->uid, setup->uid, setup->uid) != 0) sr_child_fail(w, errno);
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull < 0 || dup2(devnull, 0) < 0) sr_child_fail(w, errno);
        if (dup2(stdout_fd, 1) < 0 || dup2(stderr_fd, 2) < 0) sr_child_fail(w, errno);
        if (cwd != NULL && chdir(cwd) != 0) sr_child_fail(w, errno);
        /* Nothing of the runner but 0-2 and the report pipe (close-on-exec) survives. */
        if (w > 3 && syscall(SYS_close_range, 3, w - 1, 0) != 0) for (int fd = 3; fd < w; fd++) close(fd);
        if (syscall(SYS_close_range, w + 1, ~0U, 0) != 0) for (int fd = w + 1; fd < 4096; fd++) close(fd);
        execve(path, argv, envp);
        sr_child_fail(w, errno);
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
        return err;
    }
    *pid = child;
    return 0;
}
