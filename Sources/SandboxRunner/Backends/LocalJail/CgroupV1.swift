import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Per-run cgroups (v1 `pids` and `memory` controllers), opt-in with SANDBOX_RUNNER_CGROUPS=1
/// where this machine lets us make them: they cap the memory of the whole tree and let us kill
/// everything the run left. Off by default: attaching a process to a v1 cgroup waits for an RCU
/// grace period (10–15 ms per run here), and the per-run uid already makes RLIMIT_NPROC a
/// per-run process cap.
final class CgroupV1: @unchecked Sendable {
    static let root = "/sys/fs/cgroup"
    let directories: [String]

    /// The controllers usable here (root, v1 hierarchy mounted and writable).
    static var available: [String] {
        guard geteuid() == 0 else { return [] }
        return ["pids", "memory"].filter { access("\(root)/\($0)", W_OK) == 0 && FileManager.default.fileExists(atPath: "\(root)/\($0)/cgroup.procs") }
    }

    init?(runId: String, limits: JailLimits) {
        guard limits.useCgroups else { return nil }
        var dirs: [String] = []
        for controller in Self.available {
            let dir = "\(Self.root)/\(controller)/sandbox-runner/\(runId)"
            do {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            } catch { continue }
            let ok: Bool
            switch controller {
            case "pids": ok = Self.write("\(limits.processes)", to: "\(dir)/pids.max")
            default:
                ok = Self.write("\(limits.memoryBytes)", to: "\(dir)/memory.limit_in_bytes")
                _ = Self.write("\(limits.memoryBytes)", to: "\(dir)/memory.memsw.limit_in_bytes")
            }
            if ok { dirs.append(dir) } else { rmdir(dir) }
        }
        guard !dirs.isEmpty else { return nil }
        directories = dirs
    }

    var procsFiles: [String] { directories.map { "\($0)/cgroup.procs" } }

    /// SIGKILL to every process in the run's cgroups.
    func killAll() {
        for dir in directories {
            guard let text = try? String(contentsOfFile: "\(dir)/cgroup.procs", encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") { if let pid = pid_t(line) { kill(pid, SIGKILL) } }
        }
    }

    /// Kills what is left and removes the cgroups (they must be empty to go).
    func remove() {
        // Killed processes leave the cgroup within a few milliseconds: poll briefly.
        var pending = directories
        for attempt in 0..<400 {
            if attempt % 20 == 0 { killAll() }
            pending = pending.filter { rmdir($0) != 0 && errno != ENOENT }
            if pending.isEmpty { return }
            usleep(attempt < 50 ? 200 : 5_000)
        }
    }

    @discardableResult
    static func write(_ value: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return value.withCString { Glibc.write(fd, $0, strlen($0)) } >= 0
    }
}
