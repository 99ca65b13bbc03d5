import CE2BLocal
import Foundation
import SandboxRunner
#if canImport(Glibc)
import Glibc
#endif

/// A running sandbox: one bubblewrap (its own user, pid, mount, ipc, uts, cgroup and, unless it
/// has internet, network namespaces) whose root is read-only and whose only writable places are
/// two size-capped tmpfs, `/home/user` and `/tmp`, inside its own mount namespace: nothing of it
/// is on the host's disk and nothing is left when it ends. Its process 2 is the agent. Every
/// process in it runs under the local jail's seccomp filter, and (where the host has cgroup v1
/// and the server is root) in the sandbox's own memory and pids cgroups.
final class SandboxInstance: @unchecked Sendable {
    let bwrapPid: pid_t
    /// The sandbox's process 1 (bubblewrap's reaper) as the host sees it, and a pidfd on it.
    let initPid: pid_t
    let initPidfd: Int32
    /// The sandbox's root directory (O_PATH), for fd-relative reads of its mounts.
    let rootFD: Int32
    let link: AgentLink
    /// The host uid the sandbox's user maps to (nil when the server is not root).
    let uid: uid_t?
    let homeBytes: Int
    let tmpBytes: Int
    /// The sandbox's cgroups (memory of its whole tree, processes), or nil where unavailable.
    let cgroup: CgroupV1?

    private let condition = NSCondition()
    private var reaped = false
    private var onExit: [@Sendable () -> Void] = []

    init(bwrapPid: pid_t, initPid: pid_t, initPidfd: Int32, rootFD: Int32, link: AgentLink, uid: uid_t?, homeBytes: Int, tmpBytes: Int,
         cgroup: CgroupV1?) {
        self.cgroup = cgroup
        self.bwrapPid = bwrapPid
        self.initPid = initPid
        self.initPidfd = initPidfd
        self.rootFD = rootFD
        self.link = link
        self.uid = uid
        self.homeBytes = homeBytes
        self.tmpBytes = tmpBytes
    }

    /// Called by the monitor once bubblewrap has been reaped.
    func markReaped() {
        condition.lock()
        reaped = true
        let actions = onExit
        onExit = []
        condition.broadcast()
        condition.unlock()
        actions.forEach { $0() }
    }

    var isReaped: Bool { condition.lock(); defer { condition.unlock() }; return reaped }

    /// Runs `action` once the sandbox has ended (at once if it has).
    func whenExited(_ action: @escaping @Sendable () -> Void) {
        condition.lock()
        if reaped { condition.unlock(); action(); return }
        onExit.append(action)
        condition.unlock()
    }

    /// Kills everything in the sandbox and returns once that is verified: SIGKILL to its process
    /// 1 through the pidfd (no pid reuse race), then the pidfd reports the exit, which the kernel
    /// signals only after every other process of the pid namespace is gone; then bubblewrap is
    /// reaped. Only then are the descriptors closed. Blocking: call it off the event loops.
    func killAndWait() {
        _ = e2bl_pidfd_kill(initPidfd, SIGKILL)
        var gone = e2bl_pidfd_wait(initPidfd, 10_000) == 1
        condition.lock()
        let deadline = Date().addingTimeInterval(10)
        while !reaped && condition.wait(until: deadline) {}
        let wasReaped = reaped
        condition.unlock()
        if !wasReaped {
            // bubblewrap itself is stuck (never seen): it is our child, so its pid cannot be reused.
            Glibc.kill(bwrapPid, SIGKILL)
            condition.lock()
            while !reaped { condition.wait() }
            condition.unlock()
        }
        if !gone { gone = e2bl_pidfd_wait(initPidfd, -1) == 1 }
        // The pid namespace is empty now; the cgroups are checked empty and removed.
        _ = cgroup?.killAndAwaitEmpty()
        link.shutdown()
        close(rootFD)
        close(initPidfd)
    }

    /// Used and total bytes of the sandbox's writable storage (its two tmpfs), measured through
    /// descriptors opened beneath its root without following any link it could have planted.
    func storageUsage() -> (used: Int, total: Int) {
        var used = 0, total = 0
        for dir in ["home/user", "tmp", "dev/shm"] {
            let fd = e2bl_open_beneath(rootFD, dir, e2bl_o_path_directory)
            guard fd >= 0 else { continue }
            var u: UInt64 = 0, t: UInt64 = 0
            if e2bl_fs_usage(fd, &u, &t) == 0 { used += Int(u); total += Int(t) }
            close(fd)
        }
        return (used, total)
    }

    /// CPU ticks (own and reaped children's) and resident bytes of every process in the sandbox,
    /// walking the process tree down from its process 1 through /proc.
    func processTreeUsage() -> (ticks: Int, rssBytes: Int) {
        var ticks = 0, rss = 0
        var queue: [Int32] = [initPid]
        var seen = Set<Int32>()
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        while let pid = queue.popLast(), seen.insert(pid).inserted, seen.count < 10_000 {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // After the command: state is field 3; utime..cstime 14-17; rss 24 (1-based, whole line).
            if fields.count > 21 {
                ticks += (11...14).reduce(0) { $0 + (Int(fields[$1]) ?? 0) }
                rss += (Int(fields[21]) ?? 0) * page
            }
            if let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") {
                for t in tasks {
                    if let children = try? String(contentsOfFile: "/proc/\(pid)/task/\(t)/children", encoding: .utf8) {
                        queue += children.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
                    }
                }
            }
        }
        return (ticks, rss)
    }
}

/// Starts sandboxes. Every bubblewrap is forked from one thread that lives as long as the server
/// (a sandbox is SIGKILLed when the thread that forked it ends: PR_SET_PDEATHSIG).
enum SandboxLauncher {
    struct Settings: Sendable {
        var limits: JailLimits
        var homeBytes: Int
        var tmpBytes: Int
        var internet: Bool
        var python: String
        var bwrap: String
        /// The egress proxy's socket on the host, bound in at `EgressProxy.sandboxPath`.
        var egressSocket: String?
    }

    /// POSIX shared memory (`/dev/shm`, Python's multiprocessing locks): small, capped.
    static let shmBytes = 16 << 20

    /// The uid the sandbox's user has inside (E2B's `user`), and its home.
    static let sandboxUID = 1000
    static let home = E2BLocalConfiguration.home

    /// What commands see besides their sandbox's and their own variables.
    static func baseEnvironment() -> [String: String] {
        var env = LocalJail.baseEnvironment(home: home)
        env["USER"] = "user"
        env["LOGNAME"] = "user"
        env["SHELL"] = "/bin/bash"
        env.removeValue(forKey: "PYTHONDONTWRITEBYTECODE")
        env.removeValue(forKey: "PYTHONUNBUFFERED")
        return env
    }

    /// The sandbox as the local jail's argument builder sees it: user 1000 at /home/user (a
    /// 0755 tmpfs), 1777 /tmp and /dev/shm, and the egress socket when it has one.
    static func layout(_ s: Settings) -> JailLayout {
        var l = JailLayout(home: .tmpfs(bytes: s.homeBytes), network: s.internet ? .host : .none, tmpBytes: s.tmpBytes, shmBytes: shmBytes)
        l.mountPoint = home
        l.hostname = "e2b-local"
        l.user = (sandboxUID, sandboxUID)
        l.extraSystemFiles = ["/etc/alternatives"]
        l.homePermissions = "0755"
        l.tmpPermissions = "1777"
        if let socket = s.egressSocket { l.binds.append(JailBind(source: socket, destination: EgressProxy.sandboxPath, readOnly: true)) }
        return l
    }

    /// Descriptors as bubblewrap sees them: the agent's control socket at 3, bubblewrap's info
    /// at 4, /etc/passwd and /etc/group at 5 and 6, the seccomp program at 7.
    static let descriptors = JailDescriptors(seccomp: 7, info: 4, data: [.init(path: "/etc/passwd", fd: 5), .init(path: "/etc/group", fd: 6)])

    static func bubblewrapArguments(_ s: Settings) -> [String] {
        LocalJail.bubblewrapArguments(layout(s), descriptors: descriptors) + ["--"]
    }

    struct LaunchFailure: Error, CustomStringConvertible {
        var description: String
    }

    /// Starts a sandbox and waits for its agent. Blocking.
    static func launch(_ s: Settings, uid: uid_t?, cgroup: CgroupV1?, onEvent: @escaping @Sendable ([String: JSONValue], [Int32]) -> Void,
                       onAgentGone: @escaping @Sendable () -> Void) throws -> SandboxInstance {
        var control: [Int32] = [-1, -1], info: [Int32] = [-1, -1], passwd: [Int32] = [-1, -1], group: [Int32] = [-1, -1],
            errPipe: [Int32] = [-1, -1]
        func closeAll(_ fds: [Int32]) { for fd in fds where fd >= 0 { close(fd) } }
        let bpf: [UInt8]
        do { bpf = try SeccompFilter.bpf() } catch { throw LaunchFailure(description: "\(error)") }
        let seccomp = bpf.withUnsafeBytes { e2bl_memfd_with($0.baseAddress, $0.count) }
        guard seccomp >= 0 else { throw LaunchFailure(description: "Could not hold the seccomp filter in a memfd (errno \(errno)).") }
        defer { close(seccomp) }
        guard e2bl_seqpacket_pair(&control) == 0, e2bl_pipe(&info) == 0, e2bl_pipe(&passwd) == 0, e2bl_pipe(&group) == 0,
              e2bl_pipe(&errPipe) == 0 else {
            let e = errno
            closeAll(control + info + passwd + group + errPipe)
            throw LaunchFailure(description: "Could not create the sandbox's pipes (errno \(e)).")
        }
        let id = sandboxUID
        writeAll(passwd[1], "root:x:0:0:root:/root:/usr/sbin/nologin\nuser:x:\(id):\(id):user:\(home):/bin/bash\n")
        writeAll(group[1], "root:x:0:\nuser:x:\(id):\n")
        close(passwd[1]); close(group[1])

        let argv = [s.bwrap] + bubblewrapArguments(s) + [s.python, "-I", "-S", "-c", SandboxAgent.source]
        let env = ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8"]
        var limits = e2bl_launch_limits()
        limits.set_limits = 1
        limits.as_bytes = UInt64(s.limits.memoryBytes)
        limits.cpu_seconds = UInt64(s.limits.cpuSeconds)
        limits.nproc = UInt64(s.limits.processes)
        limits.fsize_bytes = UInt64(s.limits.fileSizeBytes)
        limits.nofile = UInt64(s.limits.openFiles)
        if let uid { limits.set_ids = 1; limits.uid = uid; limits.gid = uid }
        let handed = [control[1], info[1], passwd[0], group[0]]
        let pid: pid_t
        do {
            pid = try Spawner.shared.spawn(argv: argv, env: env, fds: handed + [seccomp], stderr: errPipe[1], limits: limits,
                                           cgroupTasks: cgroup?.tasksFiles ?? [])
        } catch {
            closeAll(handed + [control[0], info[0], errPipe[0], errPipe[1]])
            throw error
        }
        closeAll(handed + [errPipe[1]])
        let errRead = errPipe[0]
        defer { close(errRead) }

        let link = AgentLink(fd: control[0])
        let ready = ReadySignal()
        let monitorDone = ReadySignal()
        var instance: SandboxInstance?
        let holder = InstanceHolder()
        // The monitor: reaps bubblewrap whenever it ends, early or late.
        let monitor = Thread {
            _ = e2bl_wait(pid)
            monitorDone.fire(nil)
            holder.get()?.markReaped()
        }
        monitor.name = "e2b-local.sandbox-monitor"
        monitor.start()

        func fail(_ what: String) -> LaunchFailure {
            Glibc.kill(pid, SIGKILL)
            _ = monitorDone.wait(seconds: 10)
            let why = readAvailable(errRead).trimmingCharacters(in: .whitespacesAndNewlines)
            return LaunchFailure(description: what + (why.isEmpty ? "" : " (\(why))"))
        }

        let infoText = readToEnd(info[0], seconds: 10)
        close(info[0])
        guard let infoJSON = JSONValue.parse(Data(infoText.utf8))?.objectValue, let child = infoJSON["child-pid"]?.intValue,
              let pidNS = infoJSON["pid-namespace"]?.intValue else {
            link.shutdown()
            close(control[0])
            throw fail("bubblewrap did not start the sandbox")
        }
        let pidfd = e2bl_pidfd_open(pid_t(child))
        // The pidfd must name our sandbox's process 1, not a process that took its pid.
        let nsLink = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(child)/ns/pid")) ?? ""
        guard pidfd >= 0, nsLink == "pid:[\(pidNS)]" else {
            if pidfd >= 0 { close(pidfd) }
            close(control[0])
            throw fail("the sandbox ended while starting")
        }
        link.start(onEvent: { message, fds in
            if message["event"] == .string("ready") { ready.fire(message); return }
            onEvent(message, fds)
        }, onClose: {
            ready.fire(nil)
            onAgentGone()
        })
        guard ready.wait(seconds: 15) != nil else {
            _ = e2bl_pidfd_kill(pidfd, SIGKILL)
            close(pidfd)
            throw fail("the sandbox's agent did not start")
        }
        let rootFD = open("/proc/\(child)/root", e2bl_o_path_directory | O_CLOEXEC)
        guard rootFD >= 0 else {
            _ = e2bl_pidfd_kill(pidfd, SIGKILL)
            close(pidfd)
            throw fail("the sandbox's root could not be opened (errno \(errno))")
        }
        instance = SandboxInstance(bwrapPid: pid, initPid: pid_t(child), initPidfd: pidfd, rootFD: rootFD, link: link, uid: uid,
                                   homeBytes: s.homeBytes, tmpBytes: s.tmpBytes, cgroup: cgroup)
        holder.set(instance!)
        if monitorDone.isFired { instance!.markReaped() }
        return instance!
    }

    static func writeAll(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            off += n
        }
    }

    /// Reads until end of file, at most `seconds`.
    static func readToEnd(_ fd: Int32, seconds: Int) -> String {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        let deadline = Date().addingTimeInterval(TimeInterval(seconds))
        while out.count < 1 << 20 {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let left = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
            let r = poll(&p, 1, left)
            if r < 0 && errno == EINTR { continue }
            if r <= 0 { break }
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// What a pipe holds right now (bubblewrap's error, when it failed).
    static func readAvailable(_ fd: Int32) -> String {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var buf = [UInt8](repeating: 0, count: 8192)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : ""
    }
}

private final class InstanceHolder: @unchecked Sendable {
    private let lock = NSLock()
    private var value: SandboxInstance?
    func set(_ v: SandboxInstance) { lock.withLock { value = v } }
    func get() -> SandboxInstance? { lock.withLock { value } }
}

/// A one-shot signal carrying an optional message, waited for with a timeout.
final class ReadySignal: @unchecked Sendable {
    private let condition = NSCondition()
    private var fired = false
    private var value: [String: JSONValue]?

    func fire(_ v: [String: JSONValue]?) {
        condition.lock()
        if !fired { fired = true; value = v }
        condition.broadcast()
        condition.unlock()
    }

    var isFired: Bool { condition.lock(); defer { condition.unlock() }; return fired }

    func wait(seconds: Double) -> [String: JSONValue]? {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date().addingTimeInterval(seconds)
        while !fired && condition.wait(until: deadline) {}
        return value
    }
}

/// The one long-lived thread every sandbox is forked from.
final class Spawner: @unchecked Sendable {
    static let shared = Spawner()
    private let condition = NSCondition()
    private var queue: [() -> Void] = []

    private init() {
        let t = Thread { [self] in
            while true {
                condition.lock()
                while queue.isEmpty { condition.wait() }
                let work = queue.removeFirst()
                condition.unlock()
                work()
            }
        }
        t.name = "e2b-local.spawner"
        t.start()
    }

    func spawn(argv: [String], env: [String: String], fds: [Int32], stderr: Int32, limits: e2bl_launch_limits,
               cgroupTasks: [String] = []) throws -> pid_t {
        let done = ReadySignal()
        let box = SpawnResult()
        condition.lock()
        queue.append {
            var pid: pid_t = 0
            let envp = env.map { "\($0.key)=\($0.value)" }.sorted()
            var l = limits
            let rc = withCStringArray(argv) { a in
                withCStringArray(envp) { e in
                    withCStringArray(cgroupTasks) { tasks in
                        l.cgroup_tasks = cgroupTasks.isEmpty ? nil : UnsafePointer(OpaquePointer(tasks))
                        return fds.withUnsafeBufferPointer { f in e2bl_spawn(&pid, argv[0], a, e, f.baseAddress, Int32(f.count), stderr, &l) }
                    }
                }
            }
            box.set(rc == 0 ? .success(pid) : .failure(LaunchFailureError(code: rc)))
            done.fire(nil)
        }
        condition.signal()
        condition.unlock()
        _ = done.wait(seconds: 3600)
        return try box.get()
    }
}

struct LaunchFailureError: Error, CustomStringConvertible {
    var code: Int32
    var description: String { "Could not start bubblewrap: \(String(cString: strerror(code)))." }
}

private final class SpawnResult: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<pid_t, Error> = .failure(LaunchFailureError(code: EIO))
    func set(_ v: Result<pid_t, Error>) { lock.withLock { value = v } }
    func get() throws -> pid_t { try lock.withLock { value }.get() }
}

/// NULL-terminated C string arrays for execve.
func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let ptrs = strings.map { strdup($0) } + [nil]
    defer { ptrs.forEach { free($0) } }
    return ptrs.withUnsafeBufferPointer { body($0.baseAddress!) }
}
