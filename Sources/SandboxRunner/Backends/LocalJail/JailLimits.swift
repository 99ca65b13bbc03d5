import Foundation

/// Resource limits of one jailed run.
public struct JailLimits: Sendable, Equatable {
    /// Address space (RLIMIT_AS) and, where the cgroup memory controller is usable, the cgroup limit.
    public var memoryBytes: Int = 1 << 30
    /// CPU seconds (RLIMIT_CPU).
    public var cpuSeconds: Int = 120
    /// Processes and threads (RLIMIT_NPROC for the jail's own uid, and the cgroup pids controller).
    public var processes: Int = 64
    /// Largest file the script may write (RLIMIT_FSIZE).
    public var fileSizeBytes: Int = 256 << 20
    /// Open descriptors (RLIMIT_NOFILE).
    public var openFiles: Int = 256
    /// Size of the jail's /tmp (tmpfs).
    public var tmpBytes: Int = 64 << 20
    /// Per-run cgroup v1 `pids`/`memory` limits where writable (SANDBOX_RUNNER_CGROUPS=1).
    public var useCgroups: Bool = ProcessInfo.processInfo.environment["SANDBOX_RUNNER_CGROUPS"] == "1"

    public init() {}
}
