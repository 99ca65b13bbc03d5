import CSeccomp
import CSystemShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The seccomp filter every jailed process runs under (bubblewrap's `--seccomp FD`), built with
/// libseccomp once per process and cached as BPF bytes.
///
/// Default allow, with a deny list of what a Python analytics script never needs and what
/// attacks the jail or the kernel: a denied call fails with EPERM (clone3 with ENOSYS, so glibc
/// falls back to clone, as Docker does), never with a crash. Calls through a non-native ABI
/// (i386 `int 0x80`, x32) kill the process: the deny list is written for x86-64 numbers only.
/// Learned from Docker's default profile (moby `profiles/seccomp/default.json`) and nsjail.
public enum SeccompFilter {
    /// One group of denied calls and why they are denied (the README lists the same).
    public struct Group: Sendable {
        public var calls: [String]
        public var why: String
    }

    public static let deniedGroups: [Group] = [
        Group(calls: ["ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp"],
              why: "reach into another process (the jail's init could be made to drop its parent-death signal)"),
        Group(calls: ["keyctl", "add_key", "request_key"],
              why: "kernel keyrings are not namespaced: keys of the runner's session or user could be read"),
        Group(calls: ["mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "open_tree_attr", "fsopen",
                      "fsconfig", "fsmount", "fspick", "mount_setattr", "statmount", "listmount"],
              why: "change or inspect the jail's mounts"),
        Group(calls: ["unshare", "setns"],
              why: "new or other namespaces (nested user namespaces are the usual first step of kernel exploits)"),
        Group(calls: ["bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register"],
              why: "large kernel attack surface, and io_uring bypasses seccomp for the calls it carries"),
        Group(calls: ["kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module",
                      "query_module", "get_kernel_syms", "acct", "swapon", "swapoff", "reboot", "syslog", "vhangup",
                      "sethostname", "setdomainname", "settimeofday", "clock_settime", "clock_adjtime", "iopl", "ioperm",
                      "quotactl", "quotactl_fd", "nfsservctl", "lookup_dcookie", "uselib", "ustat", "sysfs", "_sysctl",
                      "fanotify_init"],
              why: "administer the machine or the kernel"),
        Group(calls: ["name_to_handle_at", "open_by_handle_at"],
              why: "open files by handle, around the jail's mounts"),
        Group(calls: ["mbind", "set_mempolicy", "set_mempolicy_home_node", "migrate_pages", "move_pages"],
              why: "NUMA placement of memory, of other processes too"),
    ]

    /// Calls refused only with some arguments (EPERM too).
    public static let conditionalRules: [String] = [
        "clone with any CLONE_NEW* flag (new namespaces); clone3 answers ENOSYS so glibc falls back to clone",
        "personality other than Docker's allowed values (0, 0x8, 0x20000, 0x20008, 0xffffffff)",
        "ioctl TIOCSTI and TIOCLINUX (typing into a terminal)",
        "socket of the families AF_VSOCK (reaches the hypervisor whatever the network namespace) and AF_PACKET",
    ]

    /// Syscalls newer than some libseccomp releases know by name (x86-64 numbers).
    static let knownNumbers: [String: Int32] = ["open_tree_attr": 467, "statmount": 457, "listmount": 458,
                                                "set_mempolicy_home_node": 450, "mount_setattr": 442, "quotactl_fd": 443]

    /// The BPF program, built on first use.
    public static func bpf() throws -> [UInt8] { try cached.get() }

    private static let cached: Result<[UInt8], RunnerError> = Result { try build() }.mapError {
        ($0 as? RunnerError) ?? RunnerError(.internalError, "Could not build the seccomp filter: \($0).")
    }

    /// Allowed `personality` arguments (Docker's): 0 (PER_LINUX), 8 (PER_LINUX32), 0x20000
    /// (UNAME26), 0x20008 and 0xffffffff (query).
    static let allowedPersonalities: [UInt32] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff]

    static func build() throws -> [UInt8] {
        try LazyLibrary.require(.seccomp)
        guard let ctx = seccomp_init(sr_seccomp_act_allow()) else {
            throw RunnerError(.internalError, "libseccomp could not allocate a filter; check that libseccomp2 is installed.")
        }
        defer { seccomp_release(ctx) }
        func check(_ rc: Int32, _ what: String) throws {
            guard rc == 0 else {
                throw RunnerError(.internalError, "libseccomp could not \(what) (error \(-rc)); check the libseccomp2 package.")
            }
        }
        try check(sr_seccomp_set_bad_arch_kill(ctx), "set the action for other ABIs")
        _ = sr_seccomp_optimize_tree(ctx)  // older libseccomp: the linear layout is as correct, only slower
        let eperm = sr_seccomp_act_errno(UInt16(EPERM))

        for group in deniedGroups {
            for name in group.calls {
                guard let nr = number(of: name) else { continue }  // not on this kernel's ABI
                try check(sr_seccomp_rule(ctx, eperm, nr), "deny \(name)")
            }
        }
        // clone3 carries its flags in memory seccomp cannot read: ENOSYS makes glibc use clone.
        if let nr = number(of: "clone3") { try check(sr_seccomp_rule(ctx, sr_seccomp_act_errno(UInt16(ENOSYS)), nr), "refuse clone3") }
        // clone(flags, …): flags is the first argument on x86-64.
        if let nr = number(of: "clone") {
            let namespaces: [UInt64] = [0x0002_0000, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000]
            for flag in namespaces { try check(sr_seccomp_rule_masked_eq(ctx, eperm, nr, 0, flag, flag), "deny clone with namespace flags") }
        }
        // The kernel reads these arguments as 32-bit ints: compare the low half only, so high bits cannot slip past.
        if let nr = number(of: "ioctl") {
            for request: UInt64 in [0x5412 /* TIOCSTI */, 0x541C /* TIOCLINUX */] {
                try check(sr_seccomp_rule_masked_eq(ctx, eperm, nr, 1, 0xffff_ffff, request), "deny terminal ioctls")
            }
        }
        if let nr = number(of: "socket") {
            for family: UInt64 in [40 /* AF_VSOCK */, 17 /* AF_PACKET */] {
                try check(sr_seccomp_rule_masked_eq(ctx, eperm, nr, 0, 0xffff_ffff, family), "deny socket families")
            }
        }
        if let nr = number(of: "personality") {
            // libseccomp takes one comparison per argument in a rule: deny the complement of the
            // allowed set as disjoint bit patterns over the low 32 bits, and anything with high bits.
            try check(sr_seccomp_rule_gt(ctx, eperm, nr, 0, 0xffff_ffff), "deny personality")
            for p in complementPatterns(of: allowedPersonalities) {
                try check(sr_seccomp_rule_masked_eq(ctx, eperm, nr, 0, UInt64(p.mask), UInt64(p.value)), "deny personality")
            }
        }

        var out: UnsafeMutablePointer<UInt8>?
        var length = 0
        try check(sr_seccomp_export(ctx, &out, &length), "export the filter")
        guard let out else { throw RunnerError(.internalError, "libseccomp exported an empty filter.") }
        defer { free(out) }
        return Array(UnsafeBufferPointer(start: out, count: length))
    }

    static func number(of name: String) -> Int32? {
        let nr = seccomp_syscall_resolve_name(name)
        if nr >= 0 { return nr }
        return knownNumbers[name]
    }

    /// Disjoint (mask, value) patterns over 32 bits that together match exactly the values not in `allowed`.
    static func complementPatterns(of allowed: [UInt32]) -> [(mask: UInt32, value: UInt32)] {
        var out: [(mask: UInt32, value: UInt32)] = []
        func walk(bit: Int, mask: UInt32, value: UInt32, values: [UInt32]) {
            if values.isEmpty { out.append((mask, value)); return }
            if bit < 0 { return }
            let b = UInt32(1) << UInt32(bit)
            walk(bit: bit - 1, mask: mask | b, value: value, values: values.filter { $0 & b == 0 })
            walk(bit: bit - 1, mask: mask | b, value: value | b, values: values.filter { $0 & b != 0 })
        }
        walk(bit: 31, mask: 0, value: 0, values: allowed)
        return out
    }
}
