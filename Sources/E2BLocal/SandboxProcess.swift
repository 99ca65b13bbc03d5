import Foundation
import SandboxRunner
#if canImport(Glibc)
import Glibc
#endif

/// How a command ended, as envd's end event has it (Go's ProcessState).
struct ProcessEnd: Sendable, Equatable {
    var exitCode: Int32
    var exited: Bool
    var status: String

    /// proto3 JSON leaves out zero values (exitCode 0, exited false).
    var eventJSON: String {
        var fields: [String] = []
        if exitCode != 0 { fields.append("\"exitCode\":\(exitCode)") }
        if exited { fields.append("\"exited\":true") }
        fields.append("\"status\":\(JSONValue.string(status).jsonText())")
        return "\"end\":{" + fields.joined(separator: ",") + "}"
    }

    static func from(code: Int32?, signal: Int32?) -> ProcessEnd {
        if let signal { return ProcessEnd(exitCode: -1, exited: false, status: "signal: \(signalName(signal))") }
        let c = code ?? 0
        return ProcessEnd(exitCode: c, exited: true, status: "exit status \(c)")
    }

    /// Go's names for the signals a process can end by (`signal: killed`).
    static func signalName(_ s: Int32) -> String {
        switch s {
        case SIGKILL: return "killed"
        case SIGTERM: return "terminated"
        case SIGINT: return "interrupt"
        case SIGHUP: return "hangup"
        case SIGSEGV: return "segmentation fault"
        case SIGABRT: return "aborted"
        case SIGPIPE: return "broken pipe"
        case SIGXCPU: return "CPU time limit exceeded"
        case SIGXFSZ: return "file size limit exceeded"
        case SIGALRM: return "alarm clock"
        default: return "signal \(s)"
        }
    }
}

/// What a stream attached to a command receives.
enum ProcessEvent: Sendable {
    case data(fd: Int32, bytes: [UInt8])
    case end(ProcessEnd)
    /// The sandbox ended under the command: the stream ends with `unavailable`, no end event.
    case gone(String)
}

/// A command started through envd: it lives until it exits, is signalled or its sandbox ends —
/// not as long as any client's stream (envd's `Start` keeps the process when the request context
/// is cancelled). Its output goes to every stream attached at the time (`Start`, `Connect`), in
/// chunks of at most 32 KiB, with backpressure: a stream more than 1 MiB behind makes the reading
/// thread wait, so a slow client slows the command instead of growing memory.
final class SandboxProcess: @unchecked Sendable {
    static let chunkBytes = 32 * 1024
    static let backlogLimit = 1 << 20

    let pid: UInt32
    let config: ProcessConfig
    let tag: String?

    final class Subscription: @unchecked Sendable {
        let id: Int
        let events: AsyncStream<ProcessEvent>
        fileprivate let continuation: AsyncStream<ProcessEvent>.Continuation
        fileprivate var pending = 0
        fileprivate init(id: Int) {
            self.id = id
            (events, continuation) = AsyncStream.makeStream(of: ProcessEvent.self)
        }
    }

    private let condition = NSCondition()
    private var subscribers: [Int: Subscription] = [:]
    private var nextID = 0
    private var exitStatus: (Int32?, Int32?)?
    private var outputDone = false
    private var ending = false
    private var final: ProcessEvent?
    private var onEnd: [@Sendable (ProcessEnd) -> Void] = []
    /// Guarded by its own lock: a write to a full pipe may block, and must not block the rest.
    private let inputLock = NSLock()
    private var stdinFD: Int32?

    init(pid: UInt32, config: ProcessConfig, tag: String?, stdinFD: Int32?) {
        self.pid = pid
        self.config = config
        self.tag = tag
        self.stdinFD = stdinFD
    }

    /// Attaches a stream; one attached after the end gets the end at once.
    func subscribe() -> Subscription {
        condition.lock()
        defer { condition.unlock() }
        nextID += 1
        let s = Subscription(id: nextID)
        if let final {
            s.continuation.yield(final)
            s.continuation.finish()
        } else {
            subscribers[s.id] = s
        }
        return s
    }

    func unsubscribe(_ s: Subscription) {
        condition.lock()
        subscribers[s.id] = nil
        condition.broadcast()
        condition.unlock()
        s.continuation.finish()
    }

    /// The stream has written `n` bytes of what it was given.
    func consumed(_ s: Subscription, _ n: Int) {
        condition.lock()
        s.pending -= n
        condition.broadcast()
        condition.unlock()
    }

    func whenEnded(_ action: @escaping @Sendable (ProcessEnd) -> Void) {
        condition.lock()
        if case .end(let e)? = final { condition.unlock(); action(e); return }
        if let (code, signal) = exitStatus, outputDone { condition.unlock(); action(ProcessEnd.from(code: code, signal: signal)); return }
        onEnd.append(action)
        condition.unlock()
    }

    var hasEnded: Bool { condition.lock(); defer { condition.unlock() }; return final != nil }

    /// Reads the command's stdout and stderr on a thread of its own until both are closed.
    func startReading(stdout: Int32, stderr: Int32) {
        let t = Thread { [self] in
            var fds = [pollfd(fd: stdout, events: Int16(POLLIN), revents: 0), pollfd(fd: stderr, events: Int16(POLLIN), revents: 0)]
            var buffer = [UInt8](repeating: 0, count: Self.chunkBytes)
            while fds.contains(where: { $0.fd >= 0 }) {
                let r = poll(&fds, nfds_t(fds.count), -1)
                if r < 0 { if errno == EINTR { continue }; break }
                for i in fds.indices where fds[i].fd >= 0 && fds[i].revents != 0 {
                    let n = buffer.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) }
                    if n > 0 {
                        publish(fd: i == 0 ? 1 : 2, bytes: Array(buffer[0..<n]))
                    } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                        close(fds[i].fd)
                        fds[i].fd = -1
                    }
                }
            }
            for f in fds where f.fd >= 0 { close(f.fd) }
            condition.lock()
            outputDone = true
            condition.unlock()
            finishIfDone()
        }
        t.name = "e2b-local.command-output"
        t.start()
    }

    private func publish(fd: Int32, bytes: [UInt8]) {
        condition.lock()
        while final == nil && subscribers.values.contains(where: { $0.pending >= Self.backlogLimit }) { condition.wait() }
        let targets = Array(subscribers.values)
        for s in targets { s.pending += bytes.count }
        condition.unlock()
        for s in targets { s.continuation.yield(.data(fd: fd, bytes: bytes)) }
    }

    /// The agent reaped the command.
    func exited(code: Int32?, signal: Int32?) {
        condition.lock()
        if exitStatus == nil { exitStatus = (code, signal) }
        condition.unlock()
        finishIfDone()
    }

    /// envd sends the end once the output pipes are closed and the process was waited for.
    private func finishIfDone() {
        condition.lock()
        guard final == nil, !ending, outputDone, let (code, signal) = exitStatus else { condition.unlock(); return }
        ending = true
        let end = ProcessEnd.from(code: code, signal: signal)
        let actions = onEnd
        onEnd = []
        condition.unlock()
        // Off the sandbox's list before any stream hears of the end.
        actions.forEach { $0(end) }
        condition.lock()
        if final == nil { finish(.end(end)) }
        condition.unlock()
    }

    /// The sandbox is gone: every stream ends now.
    func gone(_ reason: String) {
        condition.lock()
        if final == nil { finish(.gone(reason)) }
        onEnd = []
        condition.unlock()
    }

    /// With the lock held.
    private func finish(_ event: ProcessEvent) {
        final = event
        for s in subscribers.values {
            s.continuation.yield(event)
            s.continuation.finish()
        }
        subscribers = [:]
        condition.broadcast()
        // Not under this lock: a write blocked on the pipe holds the input lock until the command dies.
        DispatchQueue.global().async { [self] in try? closeStdin() }
    }

    // MARK: stdin

    enum InputError: Error { case notOpen, failed(Int32) }

    /// Writes to the command's stdin (started with `stdin: true`).
    func write(stdin bytes: [UInt8]) throws {
        inputLock.lock()
        defer { inputLock.unlock() }
        guard let fd = stdinFD else { throw InputError.notOpen }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 { if errno == EINTR { continue }; throw InputError.failed(errno) }
            off += n
        }
    }

    func closeStdin() throws {
        inputLock.lock()
        defer { inputLock.unlock() }
        guard let fd = stdinFD else { throw InputError.notOpen }
        close(fd)
        stdinFD = nil
    }
}
