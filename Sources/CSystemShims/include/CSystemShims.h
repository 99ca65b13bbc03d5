#ifndef SANDBOX_RUNNER_SYSTEM_SHIMS_H
#define SANDBOX_RUNNER_SYSTEM_SHIMS_H
#include <spawn.h>
#include <stddef.h>
#include <sys/types.h>

/* Spawns `path` with argv/envp: stdin from /dev/null, stdout/stderr onto the given fds,
   every other descriptor closed, signal dispositions reset and the signal mask emptied, in a new
   process group (or a new session when new_session is non-zero), in `cwd` when not NULL.
   Returns 0 or an errno. */
int sr_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
             int stdout_fd, int stderr_fd, int new_session, const char *cwd);

/* Like sr_spawn (new process group), for long-lived helpers (posthog-local): the child also gets
   PR_SET_PDEATHSIG(SIGKILL), so it dies with the thread that spawned it, and exits at once when
   that parent is already gone (checked with getppid() after the prctl). Call it from a thread
   that lives as long as the process. Returns 0 or an errno. */
int sr_spawn_helper(pid_t *pid, const char *path, char *const argv[], char *const envp[],
                    int stdout_fd, int stderr_fd);

/* pipe2(fds, O_CLOEXEC). Returns 0 or -1 with errno set. */
int sr_pipe_cloexec(int fds[2]);

/* accept4(fd, NULL, NULL, SOCK_CLOEXEC), retried on EINTR. The descriptor or -1 with errno. */
int sr_accept_cloexec(int fd);

/* Peak resident set size of this process, in KiB. */
long sr_peak_rss_kib(void);
/* Steps of a child between fork and exec (async-signal-safe), shared by the local jail and
   e2b-local: the run's rlimits (and no core files), dropping to uid/gid with no supplementary
   groups, joining a fresh session keyring. Each returns 0 or the errno of the failed step. */
int sr_child_set_rlimits(unsigned long long as_bytes, unsigned long long cpu_seconds, unsigned long long nproc,
                         unsigned long long fsize_bytes, unsigned long long nofile);
int sr_child_become(unsigned int uid, unsigned int gid);
int sr_child_fresh_keyring(void);
/* Every signal disposition back to default. */
void sr_child_default_dispositions(void);

/* Bytes the child puts into a memfd of its own (so the runner never holds those descriptors). */
typedef struct {
    const void *data;
    size_t len;
} sr_blob;

/* What sr_spawn_jailed sets up in the child between fork and exec (async-signal-safe steps only). */
typedef struct {
    int set_limits;           /* apply the rlimits below */
    unsigned long long as_bytes, cpu_seconds, nproc, fsize_bytes, nofile;
    int set_ids;              /* drop to uid/gid with no supplementary groups */
    unsigned int uid, gid;
    /* NULL-terminated cgroup v1 `tasks` files: "0" written to each moves the (single-threaded)
       child alone, which skips the global threadgroup lock that cgroup.procs takes. */
    const char *const *cgroup_tasks;
    /* Descriptors handed to the child: keep_fds[i] becomes descriptor 3 + i there. */
    const int *keep_fds;
    int keep_count;
    /* Contents the child writes into memfds of its own at descriptors 3 + keep_count + i (bubblewrap's
       --file and --seccomp sources): the runner needs no descriptor per file. */
    const sr_blob *blobs;
    int blob_count;
    int new_keyring;          /* join a fresh anonymous session keyring after dropping the uid */
    /* A seccomp BPF program (struct sock_filter[]) installed last, with no_new_privs; NULL for none
       (bubblewrap launches hand theirs to bubblewrap instead). */
    const void *seccomp_bpf;
    size_t seccomp_len;
} sr_jail_setup;

/* Forks; the child resets every signal disposition, places the kept descriptors at 3, 4, … and
   closes every other one, joins the cgroups, makes the blobs' memfds, lowers its rlimits, drops to the given
   uid/gid (no capabilities remain), joins a fresh session keyring, installs the seccomp filter
   when given, empties its signal mask and execs. Returns 0 or an errno (of the child's setup or exec, reported through a close-on-exec
   pipe). */
int sr_spawn_jailed(pid_t *pid, const char *path, char *const argv[], char *const envp[],
                    int stdout_fd, int stderr_fd, const char *cwd, const sr_jail_setup *setup);

/* Before an exec that replaces this process (posthog-local): every disposition back to default
   and an empty signal mask, so the new program sees SIGTERM. */
void sr_reset_signals(void);

/* pidfd_open(pid, 0): a descriptor for the process that has `pid` now. -1 with errno on failure. */
int sr_pidfd_open(pid_t pid);
/* pidfd_send_signal(pidfd, sig, NULL, 0). 0 or -1 with errno. */
int sr_pidfd_send_signal(int pidfd, int sig);
/* Waits up to timeout_ms (-1: forever) for the process behind pidfd to exit: 1 exited, 0 not yet,
   -1 with errno on failure. */
int sr_pidfd_wait_exit(int pidfd, int timeout_ms);

/* A close-on-exec memfd holding `len` bytes of `data`, its offset back at 0. -1 with errno. */
int sr_memfd_with(const char *name, const void *data, size_t len);

/* Removes the directory `name` inside the directory `parent_fd` and everything under it without
   ever following a symbolic link: every step is openat/fstatat/unlinkat relative to a descriptor
   opened with O_NOFOLLOW. At most max_depth levels are held open. Returns 0, or the first errno
   (the rest is still removed where it can be). */
int sr_remove_tree_at(int parent_fd, const char *name, int max_depth);

/* fchownat(…, AT_SYMLINK_NOFOLLOW) of `relative` (slash-separated, no `..`) under the directory
   root_fd, walking each directory component with O_NOFOLLOW. 0 or an errno. */
int sr_chown_beneath(int root_fd, const char *relative, unsigned int uid, unsigned int gid);

/* As uid `uid` (in a forked helper), SIGKILLs every process of that uid until none is left.
   Returns 0 when no process of the uid remains, ETIMEDOUT when some did after timeout_ms, or an
   errno. Only for uids that nothing but one run uses. */
int sr_kill_uid(unsigned int uid, int timeout_ms);
/* renameat2(old_dir, old_name, new_dir, new_name, RENAME_NOREPLACE): never replaces (nor follows)
   whatever is at the new name. 0 or -1 with errno (EEXIST when the name is taken). */
int sr_renameat_noreplace(int old_dir, const char *old_name, int new_dir, const char *new_name);

/* SHA-256 (FIPS 180-4), incremental: what artifacts and bundles are named and checked by. */
typedef struct {
    unsigned int h[8];
    unsigned char block[64];
    unsigned long long length; /* bytes so far */
    unsigned int used;         /* bytes in block */
} sr_sha256_ctx;
void sr_sha256_init(sr_sha256_ctx *ctx);
void sr_sha256_update(sr_sha256_ctx *ctx, const void *data, size_t len);
/* Writes the 32-byte digest; the context must be initialised again before reuse. */
void sr_sha256_final(sr_sha256_ctx *ctx, unsigned char out[32]);
/* 1 when the compression runs on the CPU's SHA extensions (x86-64 SHA-NI), 0 for the portable
   code (also forced by SANDBOX_RUNNER_SHA256_PORTABLE=1 in the environment, for the tests). */
int sr_sha256_accelerated(void);
#endif
