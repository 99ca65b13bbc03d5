import CSystemShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a finished process left: its status, its capped output, whether the deadline hit.
public struct ProcessOutcome: Sendable {
    public var exitCode: Int32
    /// The signal that ended it, when one did.
    public var signal: Int32?
    public var timedOut: Bool
    public var cancelled: Bool
    public var stdout: CappedOutput
    public var stderr: CappedOutput
    public var duration: Duration
    /// For a bubblewrap launch: whether the command was started inside the jail (bubblewrap's
    /// status reported its exit). nil when no jail status was asked for.
    public var jailStarted: Bool? = nil
    /// Whether every process of the run is known to be gone: the jail's pid namespace emptied,
    /// the run's cgroup empty, or (weak mode as root) no process left with the run's uid.
    public var everythingEnded: Bool = true
    /// The run's cgroup memory limit killed one of its processes.
    public var memoryLimitHit: Bool = false
}

/// A process to start: absolute path, arguments, exact environment, limits on time and output.
public struct ProcessSpec: Sendable {
    public var executable: String
    public var arguments: [String]
    public var environment: [String: String]
    public var timeout: Duration
    public var outputLimit: Int
    /// Start in a new session (setsid) rather than a new process group.
    public var newSession = false
    /// Working directory; the runner's own when nil.
    public var workingDirectory: String?
    /// Set up between fork and exec: cgroups to join, rlimits, the uid to drop to, descriptors.
    public var jail: JailSetup?
    /// Called on the reading thread with each chunk as it arrives (stream 1 = stdout, 2 = stderr),
    /// before capping: for callers that stream output onwards (e2b-local, progress).
    public var onOutput: (@Sendable (Int32, UnsafeRawBufferPointer) -> Void)?

    public init(executable: String, arguments: [String], environment: [String: String], timeout: Duration, outputLimit: Int) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.timeout = timeout
        self.outputLimit = outputLimit
    }
}

/// What the child does to itself between fork and exec (see `sr_spawn_jailed`), and how the
/// runner makes sure nothing of it is left afterwards.
public struct JailSetup: Sendable {
    public var limits: JailLimits?
    public var uid: uid_t?
    /// Descriptors handed to the child: `passedFDs[i]` becomes descriptor 3 + i there. The runner
    /// closes its copies once the child is started (they belong to the spec from then on).
    public var passedFDs: [Int32] = []
    /// Contents the child puts into memfds of its own at 3 + passedFDs.count + i (bubblewrap's
    /// `--file` and `--seccomp` sources): the runner holds no descriptor per file.
    public var blobs: [[UInt8]] = []
    /// Join a fresh session keyring after dropping the uid.
    public var newKeyring = true
    /// bubblewrap's `--json-status-fd` (read end) and `--block-fd` (write end), when the launch is a jail.
    public var bubblewrapStatus: Int32?
    public var bubblewrapBlock: Int32?
    /// Weak mode as root: kill every process of `uid` at the end and confirm none is left.
    public var killByUid = false
    /// A seccomp BPF program the child installs itself (weak mode; bubblewrap gets its own by descriptor).
    public var seccomp: [UInt8]?
    var cgroup: CgroupV1?

    public init(limits: JailLimits?, uid: uid_t?) {
        self.limits = limits
        self.uid = uid
    }
}

/// Kills a running process tree; safe to call from any thread, any number of times. For a
/// bubblewrap launch it kills the jail's init through a pidfd (no pid-reuse race), which
/// empties the whole pid namespace.
public final class ProcessKiller: @unchecked Sendable {
    private let lock = NSLock()
    /// The direct child while it is not reaped (its pid cannot be reused before that).
    private var pid: pid_t = 0
    /// A pidfd of the jail's pid 1 once adopted.
    private var jailInit: Int32 = -1
    /// A bubblewrap launch whose pid 1 is not adopted yet: killing bubblewrap now could leave
    /// that init blocked and unsupervised, so the kill waits for the adoption.
    private var awaitingInit = false
    private var extra: [@Sendable () -> Void] = []
    /// The current process's own extra kill (its cgroup).
    private var runAction: (@Sendable () -> Void)?
    /// The runner itself is ending the current process (its timeout, or its end).
    private var terminating = false
    public private(set) var cancelled = false
    /// Someone asked for a kill (cancellation, e2b-local's signals): a process attached later dies at once.
    public private(set) var requested = false

    public init() {}

    /// Another way to kill what the process left behind (a remote sandbox), run with every kill.
    public func onKill(_ action: @escaping @Sendable () -> Void) {
        lock.lock(); extra.append(action); lock.unlock()
    }

    public func kill(cancelling: Bool = false) {
        lock.lock()
        if cancelling { cancelled = true }
        requested = true
        signalLocked()
        let actions = extra + (runAction.map { [$0] } ?? [])
        lock.unlock()
        for a in actions { a() }
    }

    /// The runner's own kill of the current process (timeout, end of run).
    func terminate() {
        lock.lock()
        terminating = true
        signalLocked()
        let action = runAction
        lock.unlock()
        action?()
    }

    private func signalLocked() {
        guard requested || terminating else { return }
        if jailInit >= 0 { _ = sr_pidfd_send_signal(jailInit, SIGKILL) }
        if pid > 0 && !awaitingInit {
            Glibc.kill(pid, SIGKILL)
            Glibc.kill(-pid, SIGKILL)
        }
    }

    func attach(pid: pid_t, awaitingInit: Bool, onKill: (@Sendable () -> Void)?) {
        lock.lock()
        self.pid = pid
        self.awaitingInit = awaitingInit
        self.runAction = onKill
        terminating = false
        signalLocked()
        let action = requested ? onKill : nil
        lock.unlock()
        action?()
    }

    /// The jail's pid 1 is known (or known not to exist): kills may go ahead.
    func adopt(jailInit fd: Int32) {
        lock.lock(); defer { lock.unlock() }
        jailInit = fd
        awaitingInit = false
        signalLocked()
    }

    /// Lets the kill of bubblewrap go ahead without its init (it made none, or never said so).
    func stopWaitingForInit() {
        lock.lock(); defer { lock.unlock() }
        awaitingInit = false
        signalLocked()
    }

    /// Before the child is reaped: from then on its pid may name another process.
    func detach() {
        lock.lock(); defer { lock.unlock() }
        pid = 0
        if jailInit >= 0 { close(jailInit); jailInit = -1 }
        runAction = nil
    }

    var killRequested: Bool { lock.lock(); defer { lock.unlock() }; return requested || terminating }
    var jailInitFD: Int32 { lock.lock(); defer { lock.unlock() }; return jailInit }
}

/// Runs a process with its stdout and stderr read concurrently on a dedicated thread (never on
/// the cooperative pool), a wall-clock deadline that kills the whole process tree, and caps.
public enum ProcessRunner {
    public static func run(_ spec: ProcessSpec, killer: ProcessKiller = ProcessKiller()) async throws -> ProcessOutcome {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<ProcessOutcome, Error>) in
                let thread = Thread {
                    do { cont.resume(returning: try runBlocking(spec, killer: killer)) } catch { cont.resume(throwing: error) }
                }
                thread.name = "sandbox-runner.process"
                thread.start()
            }
        } onCancel: {
            killer.kill(cancelling: true)
        }
    }

    /// Before an exec that replaces this process: default dispositions and an empty signal mask
    /// (the Swift runtime's threads run with signals blocked, which an exec would pass on).
    public static func resetSignalsForExec() { sr_reset_signals() }

    public static func runBlocking(_ spec: ProcessSpec, killer: ProcessKiller) throws -> ProcessOutcome {
        let clock = ContinuousClock()
        let start = clock.now
        let passed = spec.jail?.passedFDs ?? []
        let statusFD = spec.jail?.bubblewrapStatus ?? -1
        var blockFD = spec.jail?.bubblewrapBlock ?? -1
        defer {
            if statusFD >= 0 { close(statusFD) }
            if blockFD >= 0 { close(blockFD) }
        }
        let pipes: ([Int32], [Int32])
        do {
            pipes = try outputPipes()
        } catch {
            for fd in passed { close(fd) }
            throw error
        }
        let (outPipe, errPipe) = pipes

        var pid: pid_t = 0
        let rc = spawn(spec, stdout: outPipe[1], stderr: errPipe[1], pid: &pid)
        close(outPipe[1]); close(errPipe[1])
        for fd in passed { close(fd) }
        guard rc == 0 else {
            close(outPipe[0]); close(errPipe[0])
            throw RunnerError(.unavailable, "Could not start \(spec.executable): \(String(cString: strerror(rc))).")
        }
        let isBubblewrap = statusFD >= 0
        // Our own unreaped child: its pid cannot be reused, so this pidfd names it for sure. A
        // bubblewrap launch needs none: its status pipe closes when bubblewrap exits (its only
        // other holder, the jail's pid 1, closes it before anything runs).
        let childFD = isBubblewrap ? -1 : sr_pidfd_open(pid)
        defer { if childFD >= 0 { close(childFD) } }
        var cgroupKill: (@Sendable () -> Void)?
        if let cgroup = spec.jail?.cgroup { cgroupKill = { cgroup.killAll() } }
        killer.attach(pid: pid, awaitingInit: isBubblewrap, onKill: cgroupKill)

        var stdout = CappedOutput(limit: spec.outputLimit)
        var stderr = CappedOutput(limit: spec.outputLimit)
        let deadline = start + spec.timeout
        var timedOut = false
        var status = BubblewrapStatus()
        var initAdopted = !isBubblewrap
        var statusOpen = isBubblewrap
        var outFDs: [Int32] = [outPipe[0], errPipe[0]]
        let bufferSize = 64 * 1024
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 8)
        defer { buffer.deallocate() }

        func readOutput(_ i: Int) {
            let r = read(outFDs[i], buffer.baseAddress, bufferSize)
            if r > 0 {
                let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<r])
                if i == 0 { stdout.append(chunk) } else { stderr.append(chunk) }
                spec.onOutput?(Int32(i + 1), chunk)
            } else if r == 0 || (errno != EINTR && errno != EAGAIN) {
                close(outFDs[i])
                outFDs[i] = -1
            }
        }
        /// Reads bubblewrap's status; adopts the jail's pid 1 as soon as it is named.
        func readStatus() {
            let r = read(statusFD, buffer.baseAddress, 4096)
            if r > 0 {
                status.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<r]))
            } else if r == 0 || (errno != EINTR && errno != EAGAIN) {
                statusOpen = false
            }
            if !initAdopted, let initPid = status.childPid {
                initAdopted = true
                let fd = adoptJailInit(initPid, bubblewrap: pid)
                killer.adopt(jailInit: fd)
                // The init waits on --block-fd until here: only now may the command start.
                if fd >= 0 && blockFD >= 0 { var b: UInt8 = 1; _ = write(blockFD, &b, 1) }
            } else if !initAdopted && !statusOpen {
                initAdopted = true  // bubblewrap ended before it made a pid 1
                killer.stopWaitingForInit()
            }
        }
        func childExited() -> Bool {
            if childFD >= 0 { return sr_pidfd_wait_exit(childFD, 0) == 1 }
            var info = siginfo_t()
            return waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info._sifields._sigchld.si_pid == pid
        }

        // Until the direct child (bubblewrap, or the command in weak mode) exits.
        var exited = false
        var killAt: ContinuousClock.Instant?
        while !exited {
            let now = clock.now
            if !timedOut && now >= deadline {
                timedOut = true
                killer.terminate()
            }
            if killAt == nil && killer.killRequested { killAt = now }
            // A kill waits for the init's adoption; bubblewrap names it within milliseconds of starting.
            if let k = killAt, !initAdopted, now - k > .seconds(10) {
                initAdopted = true
                killer.stopWaitingForInit()
            }
            var fds = [pollfd(fd: outFDs[0], events: Int16(POLLIN), revents: 0),
                       pollfd(fd: outFDs[1], events: Int16(POLLIN), revents: 0),
                       pollfd(fd: statusOpen ? statusFD : -1, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: childFD, events: Int16(POLLIN), revents: 0)]
            let remaining = timedOut ? 250 : max(0, (deadline - now).milliseconds)
            let cap: Int64 = isBubblewrap || childFD >= 0 ? 250 : 20
            let n = poll(&fds, nfds_t(fds.count), Int32(min(remaining, cap)))
            if n < 0 && errno != EINTR { break }
            if n > 0 {
                for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 { readOutput(i) }
                if fds[2].fd >= 0 && fds[2].revents != 0 { readStatus() }
            }
            if isBubblewrap {
                exited = !statusOpen
            } else if (fds[3].fd >= 0 && fds[3].revents != 0) || (childFD < 0 && childExited()) {
                exited = true
            }
        }

        // The command ended (or was killed): end every process of the run before anything else.
        while statusOpen { readStatus() }
        killer.terminate()
        var everythingEnded = true
        let initFD = killer.jailInitFD
        if initFD >= 0 {
            // pid 1's exit means the kernel has emptied its pid namespace.
            everythingEnded = sr_pidfd_wait_exit(initFD, 30_000) == 1
        }
        if blockFD >= 0 { close(blockFD); blockFD = -1 }
        // Output still in the pipes; writers that survive (weak mode, no cgroup) cannot hold us long.
        let drainUntil = clock.now + .seconds(2)
        while outFDs.contains(where: { $0 >= 0 }) && clock.now < drainUntil {
            var fds = outFDs.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let n = poll(&fds, nfds_t(fds.count), 100)
            if n < 0 && errno != EINTR { break }
            for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 { readOutput(i) }
        }
        for fd in outFDs where fd >= 0 { close(fd) }

        killer.detach()
        var waitStatus: Int32 = 0
        while waitpid(pid, &waitStatus, 0) < 0 && errno == EINTR {}

        var memoryLimitHit = false
        if let jail = spec.jail {
            if let cgroup = jail.cgroup {
                everythingEnded = cgroup.killAndAwaitEmpty() && everythingEnded
                memoryLimitHit = cgroup.oomKills > 0
            }
            if jail.killByUid, let uid = jail.uid {
                everythingEnded = sr_kill_uid(uid, 5_000) == 0 && everythingEnded
            } else if !isBubblewrap && jail.cgroup == nil {
                everythingEnded = false  // nothing can prove the tree gone
            }
        }

        var exitedNormally = (waitStatus & 0x7f) == 0
        var exitCode = exitedNormally ? (waitStatus >> 8) & 0xff : 128 + (waitStatus & 0x7f)
        if let reported = status.exitCode {
            // The command's own status as bubblewrap reported it (128 + n for a signal): bubblewrap
            // itself may have been killed by the end of the run between reporting and exiting.
            exitCode = reported
            exitedNormally = true
        }
        return ProcessOutcome(exitCode: exitCode, signal: exitedNormally ? nil : waitStatus & 0x7f, timedOut: timedOut,
                              cancelled: killer.cancelled, stdout: stdout, stderr: stderr, duration: clock.now - start,
                              jailStarted: isBubblewrap ? status.exitCode != nil : nil, everythingEnded: everythingEnded,
                              memoryLimitHit: memoryLimitHit)
    }

    /// Starts the child (posix_spawn, or the jailed fork when the spec has a jail). 0 or an errno.
    static func spawn(_ spec: ProcessSpec, stdout: Int32, stderr: Int32, pid: inout pid_t) -> Int32 {
        let argv = [spec.executable] + spec.arguments
        let envp = spec.environment.map { "\($0.key)=\($0.value)" }.sorted()
        var child: pid_t = 0
        let rc: Int32 = withCStrings(argv) { (cArgv: UnsafePointer<UnsafeMutablePointer<CChar>?>) -> Int32 in
            withCStrings(envp) { (cEnvp: UnsafePointer<UnsafeMutablePointer<CChar>?>) -> Int32 in
                guard let jail = spec.jail else {
                    return sr_spawn(&child, spec.executable, cArgv, cEnvp, stdout, stderr, spec.newSession ? 1 : 0, spec.workingDirectory)
                }
                return spawnJailed(jail, spec: spec, argv: cArgv, envp: cEnvp, stdout: stdout, stderr: stderr, pid: &child)
            }
        }
        pid = child
        return rc
    }

    private static func spawnJailed(_ jail: JailSetup, spec: ProcessSpec, argv: UnsafePointer<UnsafeMutablePointer<CChar>?>,
                                    envp: UnsafePointer<UnsafeMutablePointer<CChar>?>, stdout: Int32, stderr: Int32,
                                    pid: inout pid_t) -> Int32 {
        var setup = sr_jail_setup()
        if let l = jail.limits {
            setup.set_limits = 1
            setup.as_bytes = UInt64(l.memoryBytes); setup.cpu_seconds = UInt64(l.cpuSeconds); setup.nproc = UInt64(l.processes)
            setup.fsize_bytes = UInt64(l.fileSizeBytes); setup.nofile = UInt64(l.openFiles)
        }
        if let uid = jail.uid { setup.set_ids = 1; setup.uid = uid; setup.gid = uid }
        setup.new_keyring = jail.newKeyring ? 1 : 0
        let tasks = jail.cgroup?.tasksFiles ?? []
        let keep = jail.passedFDs
        let bpf = jail.seccomp ?? []
        // One buffer for every blob, so a single pointer scope covers them all.
        let joined: [UInt8] = jail.blobs.flatMap { $0 }
        var child: pid_t = 0
        let rc: Int32 = withCStrings(tasks) { (cTasks: UnsafePointer<UnsafeMutablePointer<CChar>?>) -> Int32 in
            keep.withUnsafeBufferPointer { (k: UnsafeBufferPointer<Int32>) -> Int32 in
                bpf.withUnsafeBytes { (program: UnsafeRawBufferPointer) -> Int32 in
                    joined.withUnsafeBytes { (all: UnsafeRawBufferPointer) -> Int32 in
                        var offset = 0
                        var blobs: [sr_blob] = []
                        for b in jail.blobs {
                            blobs.append(sr_blob(data: b.isEmpty ? nil : all.baseAddress.map { $0 + offset }, len: b.count))
                            offset += b.count
                        }
                        setup.cgroup_tasks = tasks.isEmpty ? nil : UnsafePointer(OpaquePointer(cTasks))
                        setup.keep_fds = k.baseAddress
                        setup.keep_count = Int32(k.count)
                        if jail.seccomp != nil {
                            setup.seccomp_bpf = program.baseAddress
                            setup.seccomp_len = program.count
                        }
                        return blobs.withUnsafeBufferPointer { (list: UnsafeBufferPointer<sr_blob>) -> Int32 in
                            setup.blobs = list.baseAddress
                            setup.blob_count = Int32(list.count)
                            return sr_spawn_jailed(&child, spec.executable, argv, envp, stdout, stderr, spec.workingDirectory, &setup)
                        }
                    }
                }
            }
        }
        pid = child
        return rc
    }

    /// A pidfd for bubblewrap's child (the jail's pid 1), or -1 when it is already gone. The pid
    /// came from bubblewrap's status: it is only trusted while that process is still bubblewrap's
    /// child (bubblewrap has not reaped it, so its pid cannot have been reused).
    static func adoptJailInit(_ initPid: pid_t, bubblewrap: pid_t) -> Int32 {
        let fd = sr_pidfd_open(initPid)
        if fd >= 0 {
            if parentPid(of: initPid) == bubblewrap && sr_pidfd_send_signal(fd, 0) == 0 { return fd }
            close(fd)
            return -1
        }
        // No pidfd (out of descriptors): the init is blocked on --block-fd, it cannot exit by itself,
        // so while it is still bubblewrap's child its pid is its own.
        if errno != ESRCH && parentPid(of: initPid) == bubblewrap { Glibc.kill(initPid, SIGKILL) }
        return -1
    }

    /// The parent pid from /proc/PID/stat (after the command name, which may hold spaces and parentheses).
    static func parentPid(of pid: pid_t) -> pid_t? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 1 else { return nil }
        return pid_t(fields[1])
    }

    /// Two close-on-exec pipes for a child's stdout and stderr: [read end, write end] each.
    static func outputPipes() throws -> ([Int32], [Int32]) {
        var out: [Int32] = [-1, -1]
        var err: [Int32] = [-1, -1]
        guard sr_pipe_cloexec(&out) == 0 else { throw RunnerError(.internalError, "Could not create a pipe (errno \(errno)).") }
        guard sr_pipe_cloexec(&err) == 0 else {
            close(out[0]); close(out[1])
            throw RunnerError(.internalError, "Could not create a pipe (errno \(errno)).")
        }
        return (out, err)
    }

    static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
        let cStrings = strings.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        return (cStrings + [nil]).withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}

/// bubblewrap's `--json-status-fd` stream: `{ "child-pid": N, … }` once the jail's pid 1 exists,
/// `{ "exit-code": N }` only when the command was exec'd and has exited (bwrap `report_child_exit_status`).
struct BubblewrapStatus {
    private var pending: [UInt8] = []
    private(set) var childPid: pid_t?
    private(set) var exitCode: Int32?

    mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        pending.append(contentsOf: bytes)
        while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
            let line = Array(pending[..<nl])
            pending.removeSubrange(...nl)
            guard case .object(let o)? = JSONValue.parse(Data(line)) else { continue }
            if childPid == nil, let p = o["child-pid"]?.intValue, p > 0, p <= Int(Int32.max) { childPid = pid_t(p) }
            if let c = o["exit-code"]?.intValue { exitCode = Int32(truncatingIfNeeded: c) }
        }
        if pending.count > 64 * 1024 { pending.removeAll() }
    }
}

extension Duration {
    public var milliseconds: Int64 {
        let (s, atto) = components
        return s * 1000 + atto / 1_000_000_000_000_000
    }
}
