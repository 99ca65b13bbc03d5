import CE2BLocal
import Foundation
import SandboxRunner
#if canImport(Glibc)
import Glibc
#endif

/// The server's end of a sandbox agent's socket (SOCK_SEQPACKET): requests with an `id`,
/// replies carrying the same `id`, and events (`ready`, `exit`). Descriptors travel with
/// messages (SCM_RIGHTS); messages over 48 KiB travel in a memfd. One reader thread per link.
/// Nothing the agent says is trusted beyond its own sandbox: sizes are bounded and descriptors
/// are checked by whoever uses them.
final class AgentLink: @unchecked Sendable {
    struct Reply: Sendable {
        var json: [String: JSONValue]
        /// Received descriptors; the caller owns (and closes) them.
        var fds: [Int32]
    }

    /// An operation the agent refused: a Connect code name, envd's message, the errno behind it.
    struct Failure: Error, Sendable {
        var code: String
        var message: String
        var errno: Int32
    }

    static let inlineLimit = 48 * 1024
    static let maxMessageBytes = 64 << 20

    let fd: Int32
    private let lock = NSLock()
    private var nextID = 0
    private var pending: [Int: CheckedContinuation<Reply, Error>] = [:]
    private var closed = false
    private var fdClosed = false

    init(fd: Int32) { self.fd = fd }

    /// Starts the reader thread. `onEvent` runs on it, in order, for every message without an id;
    /// `onClose` once when the agent's end is gone.
    func start(onEvent: @escaping @Sendable ([String: JSONValue], [Int32]) -> Void, onClose: @escaping @Sendable () -> Void) {
        let t = Thread { [self] in
            read(onEvent: onEvent)
            failAll(Failure(code: "unavailable", message: "the sandbox is gone", errno: 0))
            lock.withLock {
                fdClosed = true
                close(fd)
            }
            onClose()
        }
        t.name = "e2b-local.agent"
        t.start()
    }

    private func read(onEvent: @Sendable ([String: JSONValue], [Int32]) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024 + 1)
        var fds = [Int32](repeating: -1, count: 16)
        while true {
            var n: Int32 = 0
            let got = buffer.withUnsafeMutableBytes { b in
                fds.withUnsafeMutableBufferPointer { f in e2bl_recv(fd, b.baseAddress, b.count, f.baseAddress, 16, &n) }
            }
            if got <= 0 { return }
            var received = Array(fds.prefix(Int(n)))
            guard var message = JSONValue.parse(Data(buffer[0..<got]))?.objectValue else {
                received.forEach { close($0) }
                return  // a corrupt agent: treat as gone
            }
            if message["memfd"] == .bool(true) {
                guard let memfd = received.first, let big = Self.readAll(memfd), let parsed = JSONValue.parse(big)?.objectValue else {
                    received.forEach { close($0) }
                    return
                }
                close(memfd)
                received.removeFirst()
                message = parsed
            }
            if let id = message["id"]?.intValue {
                let waiter = lock.withLock { pending.removeValue(forKey: id) }
                if let waiter {
                    if message["ok"] == .bool(true) {
                        waiter.resume(returning: Reply(json: message, fds: received))
                    } else {
                        received.forEach { close($0) }
                        waiter.resume(throwing: Failure(code: message["code"]?.stringValue ?? "internal",
                                                        message: message["message"]?.stringValue ?? "the agent failed",
                                                        errno: Int32(message["errno"]?.intValue ?? 0)))
                    }
                } else {
                    received.forEach { close($0) }  // late reply to a call that timed out
                }
            } else {
                onEvent(message, received)
            }
        }
    }

    /// A memfd's whole content, at most `maxMessageBytes`.
    static func readAll(_ fd: Int32) -> Data? {
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size <= maxMessageBytes else { return nil }
        var out = Data(count: Int(st.st_size))
        var off = 0
        while off < out.count {
            let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + off, $0.count - off, off_t(off)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            off += n
        }
        return out
    }

    /// Sends one request and waits for its reply. The descriptors in `fds` are sent, then closed
    /// here (the agent holds its own copies once the message is sent).
    func call(_ op: String, _ fields: [String: JSONValue] = [:], fds: [Int32] = [], timeout: Duration = .seconds(30)) async throws -> Reply {
        let id = lock.withLock { () -> Int in nextID += 1; return nextID }
        var message = fields
        message["op"] = .string(op)
        message["id"] = .int(id)
        let data = Array(message.jsonText().utf8)
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<Reply, Error>) in
            let refused: Bool = lock.withLock {
                if closed { return true }
                pending[id] = c
                return false
            }
            if refused {
                fds.forEach { close($0) }
                c.resume(throwing: Failure(code: "unavailable", message: "the sandbox is gone", errno: 0))
                return
            }
            let sent = send(data, fds: fds)
            fds.forEach { close($0) }
            if !sent {
                fail(id, Failure(code: "unavailable", message: "the sandbox is gone", errno: 0))
                return
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(timeout.milliseconds))) { [self] in
                fail(id, Failure(code: "deadline_exceeded", message: "the sandbox did not answer within \(timeout)", errno: 0))
            }
        }
    }

    /// Sends a request whose answer nobody waits for (a timer's kill).
    func post(_ op: String, _ fields: [String: JSONValue]) {
        let id = lock.withLock { () -> Int in nextID += 1; return nextID }
        var message = fields
        message["op"] = .string(op)
        message["id"] = .int(id)
        _ = send(Array(message.jsonText().utf8), fds: [])
    }

    private func send(_ data: [UInt8], fds: [Int32]) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if fdClosed { return false }
        if data.count > Self.inlineLimit {
            let memfd = data.withUnsafeBytes { e2bl_memfd_with($0.baseAddress, $0.count) }
            guard memfd >= 0 else { return false }
            defer { close(memfd) }
            let header = Array(#"{"memfd":true}"#.utf8)
            return ([memfd] + fds).withUnsafeBufferPointer { f in
                header.withUnsafeBytes { e2bl_send(fd, $0.baseAddress, $0.count, f.baseAddress, Int32(f.count)) }
            } == header.count
        }
        return fds.withUnsafeBufferPointer { f in
            data.withUnsafeBytes { e2bl_send(fd, $0.baseAddress, $0.count, f.baseAddress, Int32(f.count)) }
        } == data.count
    }

    private func fail(_ id: Int, _ error: Error) {
        let waiter = lock.withLock { pending.removeValue(forKey: id) }
        waiter?.resume(throwing: error)
    }

    private func failAll(_ error: Error) {
        let waiters: [CheckedContinuation<Reply, Error>] = lock.withLock {
            closed = true
            let all = Array(pending.values)
            pending = [:]
            return all
        }
        waiters.forEach { $0.resume(throwing: error) }
    }

    /// Ends the link from this side (the reader thread then finishes).
    func shutdown() {
        lock.withLock { if !fdClosed { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) } }
    }
}

extension Dictionary where Key == String, Value == JSONValue {
    func jsonText() -> String { JSONValue.object(self).jsonText() }
}
