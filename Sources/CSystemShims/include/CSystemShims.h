#ifndef SANDBOX_RUNNER_SYSTEM_SHIMS_H
#define SANDBOX_RUNNER_SYSTEM_SHIMS_H
#include <spawn.h>
#include <sys/types.h>

/* Spawns `path` with argv/envp: stdin from /dev/null, stdout/stderr onto the given fds,
   every other descriptor closed, signal dispositions reset, in a new process group
   (or a new session when new_session is non-zero), in `cwd` when not NULL. Returns 0 or an errno. */
int sr_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
             int stdout_fd, int stderr_fd, int new_session, const char *cwd);

/* pipe2(fds, O_CLOEXEC). Returns 0 or -1 with errno set. */
int sr_pipe_cloexec(int fds[2]);

/* Peak resident set size of this process, in KiB. */
long sr_peak_rss_kib(void);
#endif
