#define _GNU_SOURCE
#include "CSystemShims.h"
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <unistd.h>

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
