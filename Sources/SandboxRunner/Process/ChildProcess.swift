import CSystemShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A long-lived helper process (posthog-local, e2b-local in tests): started with clean signal
/// dispositions and mask and PR_SET_PDEATHSIG(SIGKILL) (a runner killed with SIGKILL leaves no
/// helper behind), its stdout and stderr drained on a thread (the last 256 KiB kept), stopped
/// with SIGTERM and then SIGKILL.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    public let stdout = OutputTail()
    public let stderr = OutputTail()
    private let lock = NSLock()
    private var exitStatus: Int32?

    private init(pid: pid_t) { self.pid = pid }

    public static func start(executable: String, arguments: [String], environment: [String: String]) throws -> ChildProcess {
        let (out, err) = try ProcessRunner.outputPipes()
        var pid: pid_t = 0
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        let (outW, errW) = (out[1], err[1])
        let rc: Int32
        (rc, pid) = HelperSpawner.shared.perform { () -> (Int32, pid_t) in
            var child: pid_t = 0
            let rc = sr_spawn_helper(&child, executable, argv, envp, outW, errW)
            return (rc, child)
        }
        close(out[1]); close(err[1])
        guard rc == 0 else {
            close(out[0]); close(err[0])
            throw RunnerError(.unavailable, "Could not start \(executable): \(String(cString: strerror(rc))).")
        }
        let child = ChildProcess(pid: pid)
        let (outFD, errFD, childPid) = (out[0], err[0], pid)
        let drain = Thread {
            var fds = [pollfd(fd: outFD, events: Int16(POLLIN), revents: 0), pollfd(fd: errFD, events: Int16(POLLIN), revents: 0)]
            var buffer = [UInt8](repeating: 0, count: 16 * 1024)
            while fds.contains(where: { $0.fd >= 0 }) {
                if poll(&fds, 2, -1) < 0 { if errno == EINTR { continue }; break }
                for i in fds.indices where fds[i].fd >= 0 && fds[i].revents != 0 {
                    let n = buffer.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) }
                    if n > 0 {
                        (i == 0 ? child.stdout : child.stderr).add(buffer[0..<n])
                    } else if n == 0 || errno != EINTR {
                        close(fds[i].fd)
                        fds[i].fd = -1
                    }
                }
            }
            var status: Int32 = 0
            while waitpid(childPid, &status, 0) < 0 && errno == EINTR {}
            child.lock.lock(); child.exitStatus = status; child.lock.unlock()
        }
        drain.name = "sandbox-runner.child"
        drain.start()
        return child
    }

    public var isRunning: Bool {
        lock.lock(); defer { lock.unlock() }
        return exitStatus == nil
    }

    /// SIGTERM, then SIGKILL after `grace`; returns when the process is gone.
    public func stop(grace: Duration) {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while isRunning && ContinuousClock.now < deadline { usleep(5_000) }
        if isRunning { kill(pid, SIGKILL) }
        while isRunning { usleep(2_000) }
    }

    deinit { if isRunning { kill(pid, SIGKILL) } }
}

/// The last part of a child's output, for finding a ready line or showing why it failed.
public final class OutputTail: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer: [UInt8] = []

    func add(_ bytes: ArraySlice<UInt8>) {
        lock.lock(); defer { lock.unlock() }
        buffer.append(contentsOf: bytes)
        if buffer.count > 256 * 1024 { buffer.removeFirst(buffer.count - 128 * 1024) }
    }

    public var text: String { lock.lock(); defer { lock.unlock() }; return String(decoding: buffer, as: UTF8.self) }

    public func firstLine(containing s: String) -> String? {
        text.split(separator: "\n").first { $0.contains(s) }.map(String.init)
    }
}

/// Forks helpers from one thread that lives as long as the process: the parent-death signal
/// fires when the thread that forked a child ends, and pool threads come and go.
final class HelperSpawner: @unchecked Sendable {
    static let shared = HelperSpawner()
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []

    private init() {
        let thread = Thread { [unowned self] in
            while true {
                condition.lock()
                while jobs.isEmpty { condition.wait() }
                let job = jobs.removeFirst()
                condition.unlock()
                job()
            }
        }
        thread.name = "sandbox-runner.spawner"
        thread.start()
    }

    /// Runs `body` on the spawner thread and waits for it.
    func perform<T>(_ body: @escaping () -> T) -> T {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        condition.lock()
        jobs.append { box.value = body(); done.signal() }
        condition.signal()
        condition.unlock()
        done.wait()
        return box.value!
    }
}

private final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}
