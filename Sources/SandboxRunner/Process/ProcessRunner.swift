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
    /// Set up between fork and exec: cgroups to join, rlimits, the uid to drop to.
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

/// What the child does to itself between fork and exec (see `sr_spawn_jailed`).
public struct JailSetup: Sendable {
    public var limits: JailLimits?
    public var uid: uid_t?
    public var cgroupProcs: [String] = []
    public init(limits: JailLimits?, uid: uid_t?, cgroupProcs: [String]) {
        self.limits = limits
        self.uid = uid
        self.cgroupProcs = cgroupProcs
    }
}

/// Kills a running process group; safe to call from any thread, any number of times.
public final class ProcessKiller: @unchecked Sendable {
    private let lock = NSLock()
    private var pgid: pid_t = 0
    private var extra: [@Sendable () -> Void] = []
    public private(set) var cancelled = false

    public init() {}

    func attach(pgid: pid_t) {
        lock.lock(); defer { lock.unlock() }
        self.pgid = pgid
        if cancelled { Glibc.kill(-pgid, SIGKILL) }
    }

    /// Another way to kill what the process left behind (a cgroup), run with every kill.
    public func onKill(_ action: @escaping @Sendable () -> Void) {
        lock.lock(); extra.append(action); lock.unlock()
    }

    public func kill(cancelling: Bool = false) {
        lock.lock()
        if cancelling { cancelled = true }
        let pg = pgid
        let actions = extra
        lock.unlock()
        if pg > 0 { Glibc.kill(-pg, SIGKILL) }
        for a in actions { a() }
    }
}

/// Runs a process with its stdout and stderr read concurrently on a dedicated thread (never on
/// the cooperative pool), a wall-clock deadline that kills the whole process group, and caps.
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

    public static func runBlocking(_ spec: ProcessSpec, killer: ProcessKiller) throws -> ProcessOutcome {
        let clock = ContinuousClock()
        let start = clock.now
        let (outPipe, errPipe) = try outputPipes()

        var pid: pid_t = 0
        let argv = [spec.executable] + spec.arguments
        let envp = spec.environment.map { "\($0.key)=\($0.value)" }.sorted()
        let rc = withCStrings(argv) { cArgv in
            withCStrings(envp) { cEnvp in
                guard let jail = spec.jail else {
                    return sr_spawn(&pid, spec.executable, cArgv, cEnvp, outPipe[1], errPipe[1], spec.newSession ? 1 : 0, spec.workingDirectory)
                }
                return withCStrings(jail.cgroupProcs) { cgroups in
                    var setup = sr_jail_setup()
                    if let l = jail.limits {
                        setup.set_limits = 1
                        setup.as_bytes = UInt64(l.memoryBytes); setup.cpu_seconds = UInt64(l.cpuSeconds); setup.nproc = UInt64(l.processes)
                        setup.fsize_bytes = UInt64(l.fileSizeBytes); setup.nofile = UInt64(l.openFiles)
                    }
                    if let uid = jail.uid { setup.set_ids = 1; setup.uid = uid; setup.gid = uid }
                    setup.cgroup_procs = jail.cgroupProcs.isEmpty ? nil : UnsafePointer(OpaquePointer(cgroups))
                    return sr_spawn_jailed(&pid, spec.executable, cArgv, cEnvp, outPipe[1], errPipe[1], spec.workingDirectory, &setup)
                }
            }
        }
        close(outPipe[1]); close(errPipe[1])
        guard rc == 0 else {
            close(outPipe[0]); close(errPipe[0])
            throw RunnerError(.unavailable, "Could not start \(spec.executable): \(String(cString: strerror(rc))).")
        }
        killer.attach(pgid: pid)

        var stdout = CappedOutput(limit: spec.outputLimit)
        var stderr = CappedOutput(limit: spec.outputLimit)
        let deadline = start + spec.timeout
        var timedOut = false
        var drainDeadline: ContinuousClock.Instant?
        var fds = [pollfd(fd: outPipe[0], events: Int16(POLLIN), revents: 0),
                   pollfd(fd: errPipe[0], events: Int16(POLLIN), revents: 0)]
        let bufferSize = 64 * 1024
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 8)
        defer { buffer.deallocate() }

        while fds.contains(where: { $0.fd >= 0 }) {
            let now = clock.now
            if !timedOut && now >= deadline {
                timedOut = true
                killer.kill()
                drainDeadline = now + .seconds(2)
            }
            if let dd = drainDeadline, now >= dd { break }
            let limit = drainDeadline ?? deadline
            let remaining = max(0, (limit - now).milliseconds)
            let n = poll(&fds, nfds_t(fds.count), Int32(min(remaining, 250)))
            if n < 0 && errno != EINTR { break }
            if n <= 0 { continue }
            for i in fds.indices where fds[i].fd >= 0 && fds[i].revents != 0 {
                let r = read(fds[i].fd, buffer.baseAddress, bufferSize)
                if r > 0 {
                    let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<r])
                    if i == 0 { stdout.append(chunk) } else { stderr.append(chunk) }
                    spec.onOutput?(Int32(i + 1), chunk)
                } else if r == 0 || (errno != EINTR && errno != EAGAIN) {
                    close(fds[i].fd)
                    fds[i].fd = -1
                }
            }
        }
        for f in fds where f.fd >= 0 { close(f.fd) }

        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // Whatever the process left in its group goes with it.
        Glibc.kill(-pid, SIGKILL)

        let exited = (status & 0x7f) == 0
        let exitCode = exited ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return ProcessOutcome(exitCode: exitCode, signal: exited ? nil : status & 0x7f, timedOut: timedOut,
                              cancelled: killer.cancelled, stdout: stdout, stderr: stderr, duration: clock.now - start)
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

    private static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
        let cStrings = strings.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        return (cStrings + [nil]).withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}

extension Duration {
    public var milliseconds: Int64 {
        let (s, atto) = components
        return s * 1000 + atto / 1_000_000_000_000_000
    }
}
