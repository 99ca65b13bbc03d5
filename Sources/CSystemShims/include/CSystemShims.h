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


/* What sr_spawn_jailed sets up in the child between fork and exec (async-signal-safe steps only). */
typedef struct {
    int set_limits;           /* apply the rlimits below */
    unsigned long long as_bytes, cpu_seconds, nproc, fsize_bytes, nofile;
    int set_ids;              /* drop to uid/gid with no supplementary groups */
    unsigned int uid, gid;
    const char *const *cgroup_procs;  /* NULL-terminated cgroup.procs files to join, or NULL */
} sr_jail_setup;

/* Like sr_spawn, but the child first joins the cgroups, lowers its rlimits and drops to the
   given uid/gid (no capabilities remain), then execs. Returns 0 or an errno (of the child's
   setup or exec, reported through a close-on-exec pipe). */
int sr_spawn_jailed(pid_t *pid, const char *path, char *const argv[], char *const envp[],
                    int stdout_fd, int stderr_fd, const char *cwd, const sr_jail_setup *setup);
#endif
