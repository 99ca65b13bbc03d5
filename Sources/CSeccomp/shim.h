#ifndef SANDBOX_RUNNER_CSECCOMP_SHIM_H
#define SANDBOX_RUNNER_CSECCOMP_SHIM_H
#include <seccomp.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* seccomp_rule_add is variadic and the actions are function-like macros: Swift can call neither.
   One typed wrapper per shape. */

static inline uint32_t sr_seccomp_act_allow(void) { return SCMP_ACT_ALLOW; }
static inline uint32_t sr_seccomp_act_errno(uint16_t e) { return SCMP_ACT_ERRNO(e); }
static inline uint32_t sr_seccomp_act_kill_process(void) { return SCMP_ACT_KILL_PROCESS; }

/* A rule on the syscall alone. */
static inline int sr_seccomp_rule(scmp_filter_ctx ctx, uint32_t action, int syscall_nr) {
    return seccomp_rule_add_array(ctx, action, syscall_nr, 0, NULL);
}

/* A rule with one comparison: (arg & mask) == datum. */
static inline int sr_seccomp_rule_masked_eq(scmp_filter_ctx ctx, uint32_t action, int syscall_nr,
                                            unsigned int arg, uint64_t mask, uint64_t datum) {
    struct scmp_arg_cmp c = { arg, SCMP_CMP_MASKED_EQ, mask, datum };
    return seccomp_rule_add_array(ctx, action, syscall_nr, 1, &c);
}

/* A rule with one comparison: arg > datum (all 64 bits). */
static inline int sr_seccomp_rule_gt(scmp_filter_ctx ctx, uint32_t action, int syscall_nr,
                                     unsigned int arg, uint64_t datum) {
    struct scmp_arg_cmp c = { arg, SCMP_CMP_GT, datum, 0 };
    return seccomp_rule_add_array(ctx, action, syscall_nr, 1, &c);
}

static inline int sr_seccomp_set_bad_arch_kill(scmp_filter_ctx ctx) {
    return seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
}

/* Binary-tree dispatch on the syscall number (libseccomp >= 2.5): a short path for allowed calls. */
static inline int sr_seccomp_optimize_tree(scmp_filter_ctx ctx) {
    return seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
}

/* The filter as a BPF program (what bubblewrap's --seccomp reads): malloc'd bytes the caller frees.
   Returns 0 or a negative errno. */
static inline int sr_seccomp_export(scmp_filter_ctx ctx, unsigned char **out, size_t *len) {
    int fd = (int)syscall(SYS_memfd_create, "seccomp-bpf", 1u /* MFD_CLOEXEC */);
    if (fd < 0) return -1;
    int rc = seccomp_export_bpf(ctx, fd);
    if (rc != 0) { close(fd); return rc; }
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || lseek(fd, 0, SEEK_SET) != 0) { close(fd); return -5; }
    unsigned char *buf = (unsigned char *)malloc((size_t)size);
    if (buf == NULL) { close(fd); return -12; }
    size_t got = 0;
    while (got < (size_t)size) {
        ssize_t n = read(fd, buf + got, (size_t)size - got);
        if (n <= 0) { free(buf); close(fd); return -5; }
        got += (size_t)n;
    }
    close(fd);
    *out = buf;
    *len = got;
    return 0;
}
#endif
