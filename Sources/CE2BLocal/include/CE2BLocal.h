#ifndef SANDBOX_RUNNER_CE2BLOCAL_H
#define SANDBOX_RUNNER_CE2BLOCAL_H
/* What e2b-local needs below Swift: a spawn that hands a sandbox its descriptors, pidfds,
   descriptor passing over a Unix socket, fd-relative opens that stay inside a root, and a small
   TLS front (OpenSSL) before the plain HTTP listener. */
#include <stddef.h>
#include <sys/types.h>

/* What the child sets up between fork and exec (async-signal-safe steps only). */
typedef struct {
    int set_limits;
    unsigned long long as_bytes, cpu_seconds, nproc, fsize_bytes, nofile;
    int set_ids;
    unsigned int uid, gid;
    /* NULL or a NULL-terminated list of cgroup v1 `tasks` files the child joins (writing "0")
       before it drops its ids: the sandbox's memory and pids cgroups. */
    const char *const *cgroup_tasks;
} e2bl_launch_limits;

/* Forks and execs `path`: stdin and stdout on /dev/null, stderr onto stderr_fd (-1: /dev/null),
   fds[i] placed at descriptor 3+i, every other descriptor closed, signals reset, a new session
   and a fresh session keyring, the cgroups joined, the limits and ids applied, and SIGKILL when the forking thread ends (call it from a thread
   that lives as long as the child should). Returns 0 or an errno of the child's setup or exec. */
int e2bl_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
               const int *fds, int nfds, int stderr_fd, const e2bl_launch_limits *limits);

/* waitpid(pid, &status, 0) retried on EINTR; returns the raw status or -1. */
int e2bl_wait(pid_t pid);

/* pidfd_open / pidfd_send_signal; -1 with errno set on failure. */
int e2bl_pidfd_open(pid_t pid);
int e2bl_pidfd_kill(int pidfd, int sig);
/* Waits up to timeout_ms (-1: forever) for the process behind a pidfd to exit: 1 exited, 0 not yet. */
int e2bl_pidfd_wait(int pidfd, int timeout_ms);

/* A close-on-exec AF_UNIX SOCK_SEQPACKET pair. */
int e2bl_seqpacket_pair(int fds[2]);
/* A close-on-exec pipe. */
int e2bl_pipe(int fds[2]);
/* One message with up to 16 descriptors attached. Returns bytes sent or -1 (errno). */
ssize_t e2bl_send(int sock, const void *buf, size_t len, const int *fds, int nfds);
/* One message; received descriptors (close-on-exec) go to fds, their count to *nfds.
   Returns bytes received, 0 at end of stream, -1 (errno). A truncated message is EMSGSIZE. */
ssize_t e2bl_recv(int sock, void *buf, size_t cap, int *fds, int maxfds, int *nfds);
/* A sealed-size anonymous file holding len bytes, positioned at 0. -1 (errno). */
int e2bl_memfd_with(const void *buf, size_t len);

/* openat2(dirfd, path, flags | O_CLOEXEC) resolving inside dirfd as the root, never through
   symbolic links or magic links, never crossing into other mounts' parents. -1 (errno). */
int e2bl_open_beneath(int dirfd, const char *path, int flags);
/* O_PATH | O_DIRECTORY (not visible to Swift through Glibc). */
extern const int e2bl_o_path_directory;

/* Used and total bytes of the filesystem holding fd. 0 or -1 (errno). */
int e2bl_fs_usage(int fd, unsigned long long *used, unsigned long long *total);

/* Writes a CA (ca.pem) and a server certificate it signed (cert.pem: leaf then CA; key.pem)
   into dir, the server certificate naming domain, *.domain, localhost, 127.0.0.1 and ::1.
   0, or -1 with a sentence in err. */
int e2bl_make_certificates(const char *dir, const char *domain, char *err, size_t errlen);

typedef struct e2bl_tls_front e2bl_tls_front;
/* Listens on host:port (0 picks one, reported in *bound_port) for TLS (certificate chain and
   key from PEM files, HTTP/1.1 by ALPN), and relays each connection's plaintext to the Unix
   socket upstream_path. NULL with a sentence in err on failure. */
e2bl_tls_front *e2bl_tls_start(const char *host, int port, const char *cert_path, const char *key_path,
                               const char *upstream_path, int *bound_port, char *err, size_t errlen);
/* Stops accepting, ends every relayed connection, waits for their threads, frees the front. */
void e2bl_tls_stop(e2bl_tls_front *front);
#endif
