import CSystemShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Per-run cgroups (v1 `memory` and `pids` controllers), on by default where this machine lets
/// us make them (root, v1 hierarchy mounted and writable): they cap the memory of the whole
/// process tree (tmpfs pages and kernel memory included) and its process count, and let the
/// runner kill and count everything the run left.
///
/// The child joins by writing "0" to each cgroup's `tasks` file between fork and exec: that
/// moves one thread (the child is single-threaded then) without the global
/// cgroup_threadgroup_rwsem write lock a write to `cgroup.procs` takes (kernel/cgroup/cgroup.c,
/// cgroup_procs_write_start: "If we migrate a single thread, we don't care about threadgroup
/// stability"), which waits for an RCU grace period on a busy host. The 10–15 ms per run that
/// cgroups used to cost here was mostly the runner polling the cgroup while the jail's processes
/// were still dying; the runner now waits on a pidfd of the jail's init (the kernel has emptied
/// the pid namespace when it exits), so the cgroup is empty when it looks.
public final class CgroupV1: @unchecked Sendable {
    static let root = "/sys/fs/cgroup"
    let directories: [String]
    private let lock = NSLock()
    private var oomKillCount = 0

    /// The controllers usable here (root, v1 hierarchy mounted and writable).
    static var available: [String] {
        guard geteuid() == 0 else { return [] }
        return ["memory", "pids"].filter { access("\(root)/\($0)", W_OK) == 0 && access("\(root)/\($0)/tasks", F_OK) == 0 }
    }

    /// Why cgroups are not used here, or nil when they are.
    static var unavailableReason: String? {
        if geteuid() != 0 { return "the runner is not root, so it cannot make cgroups" }
        var missing: [String] = []
        for c in ["memory", "pids"] where access("\(root)/\(c)/tasks", F_OK) != 0 { missing.append(c) }
        if missing.count == 2 { return "no cgroup v1 memory or pids hierarchy is mounted under \(root) (cgroup v2 is not supported yet)" }
        return nil
    }

    /// Makes the run's cgroups with its limits; nil where cgroups are off or unavailable. Public
    /// so e2b-local's sandboxes get the same (named `runId` under `sandbox-runner/`).
    public init?(runId: String, limits: JailLimits) {
        guard limits.useCgroups else { return nil }
        var dirs: [String] = []
        for controller in Self.available {
            let parent = "\(Self.root)/\(controller)/sandbox-runner"
            if mkdir(parent, 0o755) != 0 && errno != EEXIST { continue }
            let dir = "\(parent)/\(runId)"
            guard mkdir(dir, 0o755) == 0 else { continue }
            let ok: Bool
            switch controller {
            case "pids": ok = Self.write("\(limits.processes)", to: "\(dir)/pids.max")
            default:
                ok = Self.write("\(limits.memoryBytes)", to: "\(dir)/memory.limit_in_bytes")
                // No swap either: the memory+swap limit equals the memory limit where swap is accounted.
                if access("\(dir)/memory.memsw.limit_in_bytes", F_OK) == 0 {
                    _ = Self.write("\(limits.memoryBytes)", to: "\(dir)/memory.memsw.limit_in_bytes")
                }
            }
            if ok { dirs.append(dir) } else { rmdir(dir) }
        }
        guard !dirs.isEmpty else { return nil }
        directories = dirs
    }

    /// The files the child writes "0" into to join.
    public var tasksFiles: [String] { directories.map { "\($0)/tasks" } }

    /// Processes the memory limit killed so far (memory.oom_control's oom_kill).
    public var oomKills: Int {
        lock.lock(); defer { lock.unlock() }
        return max(oomKillCount, readOOMKills())
    }

    private func readOOMKills() -> Int {
        guard let dir = directories.first(where: { $0.contains("/memory/") }),
              let text = try? String(contentsOfFile: "\(dir)/memory.oom_control", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("oom_kill ") {
            return Int(line.dropFirst("oom_kill ".count)) ?? 0
        }
        return 0
    }

    /// The pids in the run's cgroups now.
    public func members() -> [pid_t] {
        var out: Set<pid_t> = []
        for dir in directories {
            guard let text = try? String(contentsOfFile: "\(dir)/cgroup.procs", encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") { if let pid = pid_t(line) { out.insert(pid) } }
        }
        return Array(out)
    }

    /// SIGKILL to every process in the run's cgroups, through a pidfd after checking the process is
    /// still a member (a pid read from cgroup.procs may have been reused by the time it is signalled).
    func killAll() {
        for pid in members() {
            let fd = sr_pidfd_open(pid)
            guard fd >= 0 else { continue }
            if isMember(pid) { _ = sr_pidfd_send_signal(fd, SIGKILL) }
            close(fd)
        }
    }

    private func isMember(_ pid: pid_t) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8) else { return false }
        let mine = directories.map { String($0.dropFirst(Self.root.count)).split(separator: "/", maxSplits: 1).last.map(String.init) ?? "" }
        return text.split(separator: "\n").contains { line in mine.contains { line.hasSuffix(":/" + $0) } }
    }

    /// Kills what is left, waits until the cgroups are empty and removes them. False when some
    /// process would not go within 10 s (the cgroups then stay, and say so by existing).
    public func killAndAwaitEmpty() -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        var attempt = 0
        while ContinuousClock.now < deadline {
            if members().isEmpty {
                lock.lock(); oomKillCount = max(oomKillCount, readOOMKills()); lock.unlock()
                for dir in directories { rmdir(dir) }
                return true
            }
            if attempt % 10 == 0 { killAll() }
            attempt += 1
            usleep(attempt < 50 ? 200 : 5_000)
        }
        return false
    }

    @discardableResult
    static func write(_ value: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return value.withCString { Glibc.write(fd, $0, strlen($0)) } >= 0
    }
}
