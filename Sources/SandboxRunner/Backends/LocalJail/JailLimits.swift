import Foundation

/// Resource limits of one jailed run. The defaults keep ten runs at once well inside a 24 GiB
/// host: with cgroups (the default where usable) each run's whole tree, its tmpfs files
/// included, holds at most `memoryBytes` (10 × 1 GiB); without them the tmpfs sizes and the
/// per-process address space are what bound it.
public struct JailLimits: Sendable, Equatable {
    /// The whole tree's memory where the cgroup memory controller is usable (tmpfs pages and
    /// kernel memory count, swap is not allowed), and each process's address space (RLIMIT_AS).
    public var memoryBytes: Int = 1 << 30
    /// CPU seconds (RLIMIT_CPU).
    public var cpuSeconds: Int = 120
    /// Processes and threads (the cgroup pids controller, and RLIMIT_NPROC for the jail's own uid).
    public var processes: Int = 64
    /// Largest file the script may write (RLIMIT_FSIZE).
    public var fileSizeBytes: Int = 256 << 20
    /// Open descriptors per process (RLIMIT_NOFILE).
    public var openFiles: Int = 256
    /// Size of the workspace (the jail's home, a tmpfs inside the jail).
    public var workspaceBytes: Int = 256 << 20
    /// Size of the jail's /tmp (tmpfs).
    public var tmpBytes: Int = 64 << 20
    /// Size of the jail's /dev/shm (tmpfs; Python's multiprocessing uses it).
    public var shmBytes: Int = 16 << 20
    /// Per-run cgroup v1 `memory`/`pids` limits where this machine has them (root, v1 mounted).
    /// On unless SANDBOX_RUNNER_CGROUPS=0.
    public var useCgroups: Bool = ProcessInfo.processInfo.environment["SANDBOX_RUNNER_CGROUPS"] != "0"

    public init() {}
}
