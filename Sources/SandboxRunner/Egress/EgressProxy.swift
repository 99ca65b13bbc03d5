import CSystemShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The egress proxy of one run (or one e2b-local sandbox): a Unix socket in a directory only
/// the runner can enter, bound into the jail, on which the sandbox speaks plain HTTP/1.1 with
/// absolute URLs (`GET https://us.posthog.com/api/… HTTP/1.1`, keep-alive). Each request is
/// checked against the rules, forwarded over TLS by libcurl with the headers the rules add
/// (the personal API key, which never enters the sandbox), and logged. `CONNECT` is refused:
/// no opaque tunnel leaves the sandbox, so every request is seen, checked and logged.
///
/// Blocking sockets on dedicated threads (one accepts, one per connection from the sandbox);
/// `stop()` shuts every connection down, waits for the threads and removes the socket.
public final class EgressProxy: @unchecked Sendable {
    /// Where the socket appears inside a jail.
    public static let sandboxPath = "/run/sandbox-runner/egress.sock"
    /// The header on every answer the proxy makes itself: `refused`, `unreachable`, `timeout`,
    /// `broken` or `cap` (the driver tells them from PostHog's own answers by it).
    public static let statusHeader = "X-Sandbox-Runner-Egress"
    static let methods: Set<String> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    /// Request headers that are the hop's own, or that libcurl frames.
    static let hopByHop: Set<String> = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
                                        "host", "content-length", "expect"]

    /// The socket on the host (bind it into the jail at `sandboxPath`).
    public let socketPath: String
    private let directory: String
    public let rules: any EgressRules
    public let limits: EgressLimits
    let log: EgressLog
    private let listenFD: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let condition = NSCondition()
    private var clients: Set<Int32> = []
    private var threads = 0
    private var accepted = 0
    private var requests = 0
    private var stopped = false
    private var finalLog: [EgressEntry]?

    private init(socketPath: String, directory: String, rules: any EgressRules, limits: EgressLimits, listenFD: Int32, wake: [Int32]) {
        self.socketPath = socketPath
        self.directory = directory
        self.rules = rules
        self.limits = limits
        self.log = EgressLog(limit: limits.maxLogEntries)
        self.listenFD = listenFD
        self.wakeRead = wake[0]
        self.wakeWrite = wake[1]
    }

    /// Creates the socket in a fresh directory and starts accepting. With `owner` (a jail's own
    /// uid, when the runner is root) the socket is that uid's alone (0600) and its directories
    /// can be passed through but not listed or written (0711): bubblewrap, running as that uid,
    /// must reach the socket to bind it in, and nobody else may connect to it.
    public static func start(rules: any EgressRules, limits: EgressLimits = EgressLimits(), owner: uid_t? = nil) throws -> EgressProxy {
        try LazyLibrary.require(.curl)
        let directory = try makeDirectory(passable: owner != nil)
        let path = directory + "/egress.sock"
        func fail(_ what: String) -> RunnerError {
            let e = errno
            rmdir(directory)
            return RunnerError(.unavailable, "The egress proxy could not \(what) (errno \(e)); check that \(directory) is writable by the runner.")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw fail("create its socket") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { close(fd); throw fail("use the path \(path) (too long)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { close(fd); throw fail("bind its socket") }
        // Only the sandbox's uid may connect; the runner is its owner otherwise (and the
        // directory, 0700 then, keeps everyone else out).
        if let owner {
            guard chown(path, owner, owner) == 0 else { close(fd); unlink(path); throw fail("give its socket to the sandbox's user") }
        }
        guard chmod(path, 0o600) == 0, listen(fd, 128) == 0 else { close(fd); unlink(path); throw fail("listen on its socket") }
        var wake: [Int32] = [-1, -1]
        guard sr_pipe_cloexec(&wake) == 0 else { close(fd); unlink(path); throw fail("create a pipe") }
        let proxy = EgressProxy(socketPath: path, directory: directory, rules: rules, limits: limits, listenFD: fd, wake: wake)
        proxy.condition.lock()
        proxy.threads += 1
        proxy.condition.unlock()
        let t = Thread { proxy.acceptLoop() }
        t.name = "sandbox-runner.egress-accept"
        t.start()
        return proxy
    }

    /// A fresh directory (0700, or 0711 when `passable`) under the runner's own
    /// (`/run/sandbox-runner` as root, `/tmp/sandbox-runner-UID` otherwise), which must be a
    /// real directory owned by the runner that nobody else can write or list.
    static func makeDirectory(passable: Bool) throws -> String {
        let uid = geteuid()
        var bases = ["/tmp/sandbox-runner-\(uid)"]
        if uid == 0 { bases.insert("/run/sandbox-runner", at: 0) }
        for base in bases {
            if mkdir(base, 0o711) != 0 && errno != EEXIST { continue }
            var st = stat()
            guard lstat(base, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, st.st_uid == uid, st.st_mode & 0o066 == 0 else {
                throw RunnerError(.unavailable, "\(base) is not a private directory of the runner's user (a link, someone else's, or open to others); "
                    + "remove it so the egress proxy can make it anew.")
            }
            if st.st_mode & 0o777 != 0o711 { chmod(base, 0o711) }
            var template = Array("\(base)/e-XXXXXX".utf8CString)
            if template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil {
                let dir = String(cString: template)
                if passable { chmod(dir, 0o711) }
                return dir
            }
        }
        throw RunnerError(.unavailable, "The egress proxy could not create a private directory for its socket under /run or /tmp (errno \(errno)).")
    }

    /// Stops accepting, ends every connection (transfers in flight are aborted), waits for the
    /// threads, removes the socket, and returns the log. Later calls return the same log.
    @discardableResult
    public func stop() -> [EgressEntry] {
        condition.lock()
        if let finalLog { condition.unlock(); return finalLog }
        stopped = true
        for fd in clients { shutdown(fd, Int32(SHUT_RDWR)) }
        condition.unlock()
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
        condition.lock()
        let deadline = Date().addingTimeInterval(30)
        while threads > 0 && condition.wait(until: deadline) {}
        let entries = log.snapshot
        finalLog = entries
        condition.unlock()
        unlink(socketPath)
        rmdir(directory)
        return entries
    }

    /// The log so far.
    public var entries: [EgressEntry] { log.snapshot }

    var isStopped: Bool { condition.lock(); defer { condition.unlock() }; return stopped }

    deinit {
        stop()
        close(listenFD)
        close(wakeRead)
        close(wakeWrite)
    }

    // MARK: accepting

    private func acceptLoop() {
        defer {
            condition.lock()
            threads -= 1
            condition.broadcast()
            condition.unlock()
        }
        var fds = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
        while true {
            let r = poll(&fds, 2, -1)
            if r < 0 && errno == EINTR { continue }
            if r < 0 || fds[1].revents != 0 || isStopped { return }
            let c = sr_accept_cloexec(listenFD)
            if c < 0 {
                if errno == EMFILE || errno == ENFILE { usleep(10_000) }
                continue
            }
            condition.lock()
            if stopped { condition.unlock(); close(c); return }
            if clients.count >= limits.maxOpenConnections || accepted >= limits.maxConnections {
                condition.unlock()
                let why = clients.count >= limits.maxOpenConnections
                    ? "too many connections open at once (\(limits.maxOpenConnections)); reuse kept-alive connections"
                    : "the run's connection cap (\(limits.maxConnections)) was reached"
                log.record(host: "", port: 0, scheme: nil, allowed: false, reason: why)
                refuseQuickly(c, why)
                continue
            }
            clients.insert(c)
            accepted += 1
            threads += 1
            condition.unlock()
            let t = Thread { [self] in
                serve(c)
                condition.lock()
                clients.remove(c)
                close(c)
                threads -= 1
                condition.broadcast()
                condition.unlock()
            }
            t.name = "sandbox-runner.egress-conn"
            t.start()
        }
    }

    /// An answer written without waiting (the accept loop must not block on a slow sandbox).
    private func refuseQuickly(_ fd: Int32, _ why: String) {
        let body = Array(Self.errorJSON(why, kind: "cap").utf8)
        let head = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n"
            + "\(Self.statusHeader): cap\r\nConnection: close\r\n\r\n"
        let all = Array(head.utf8) + body
        _ = all.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
        close(fd)
    }

    // MARK: one connection

    private func serve(_ fd: Int32) {
        let client = EgressClientConnection(fd: fd, timeout: limits.idleTimeout)
        var upstream: EgressUpstream?
        var served = 0
        while !isStopped {
            let raw: [UInt8]
            switch client.readHead(limit: limits.maxHeadBytes) {
            case .end:
                return
            case .failed:
                if served == 0 && client.received > 0 {
                    log.record(host: "", port: 0, scheme: nil, allowed: false, reason: "the connection sent something that is not an HTTP request")
                }
                return
            case .bareLF:
                log.record(host: "", port: 0, scheme: nil, allowed: false, reason: "not a valid HTTP request: The request has a bare LF.")
                answer(client, status: 400, kind: "refused", "The request has a bare LF.", keepAlive: false)
                return
            case .tooLarge:
                log.record(host: "", port: 0, scheme: nil, allowed: false, reason: "a request head over \(limits.maxHeadBytes) bytes")
                answer(client, status: 431, kind: "refused", "The request's head is over \(limits.maxHeadBytes) bytes.", keepAlive: false)
                return
            case .head(let bytes):
                raw = bytes
            }
            served += 1
            let head: EgressRequestHead
            switch EgressRequestHead.parse(raw) {
            case .failure(let why):
                log.record(host: "", port: 0, scheme: nil, allowed: false, reason: "not a valid HTTP request: \(why.message)")
                answer(client, status: 400, kind: "refused", why.message, keepAlive: false)
                return
            case .success(let h):
                head = h
            }
            condition.lock()
            requests += 1
            let overCap = requests > limits.maxRequests
            condition.unlock()
            if head.method == "CONNECT" {
                let (host, port) = Self.connectAuthority(head.target)
                let why = "CONNECT tunnels are refused: send each request through the proxy with its absolute URL (GET https://host/path HTTP/1.1)."
                log.record(host: host, port: port, scheme: nil, allowed: false, reason: why)
                answer(client, status: 405, kind: "refused", why, keepAlive: false, extra: "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n")
                return
            }
            let parsedTarget = head.absoluteTarget()
            guard case .success(let (target, pathAndQuery)) = parsedTarget else {
                if case .failure(let why) = parsedTarget {
                    log.record(host: "", port: 0, scheme: nil, allowed: false, reason: why.message)
                    answer(client, status: 400, kind: "refused", why.message, keepAlive: false)
                }
                return
            }
            if overCap {
                let why = "the run's request cap (\(limits.maxRequests)) was reached"
                log.record(host: target.host, port: target.port, scheme: target.scheme, allowed: false, reason: why)
                answer(client, status: 503, kind: "cap", why, keepAlive: false)
                return
            }
            guard Self.methods.contains(head.method) else {
                let why = "the method \(head.method) is not forwarded"
                log.record(host: target.host, port: target.port, scheme: target.scheme, allowed: false, reason: why)
                answer(client, status: 405, kind: "refused", why.prefix(1).uppercased() + why.dropFirst() + ".", keepAlive: false)
                return
            }
            switch rules.decide(target) {
            case .refuse(let why):
                log.record(host: target.host, port: target.port, scheme: target.scheme, allowed: false, reason: why)
                // A refused request's body is not read: the connection cannot carry another.
                if !answer(client, status: 403, kind: "refused", why, keepAlive: head.keepAlive && !head.hasBody) || head.hasBody || !head.keepAlive {
                    return
                }
            case .allow(let addresses, let set, let strip):
                let replaced = Set(set.map { $0.name.lowercased() })
                var headers = head.headers.filter { h in
                    let n = h.name.lowercased()
                    return !Self.hopByHop.contains(n) && !strip.contains(n) && !replaced.contains(n)
                }
                headers += set
                if upstream == nil { upstream = EgressUpstream() }
                guard let up = upstream else {
                    answer(client, status: 502, kind: "broken", "The egress proxy could not create a libcurl handle.", keepAlive: false)
                    return
                }
                let outcome = up.forward(method: head.method, target: target, pathAndQuery: pathAndQuery, addresses: addresses, headers: headers,
                                         head: head, client: client, limits: limits, log: log, stopped: { [weak self] in self?.isStopped ?? true })
                var reason: String?
                switch outcome.failure {
                case nil: break
                case .unreachable(let why)?:
                    reason = why
                    if !outcome.headSent { answer(client, status: 502, kind: "unreachable", why + ".", keepAlive: false) }
                case .timeout(let why)?:
                    reason = why
                    if !outcome.headSent { answer(client, status: 504, kind: "timeout", why + ".", keepAlive: false) }
                case .broken(let why)?:
                    reason = why
                    if !outcome.headSent { answer(client, status: 502, kind: "broken", why + ".", keepAlive: false) }
                case .cap(let why)?:
                    reason = why
                    if !outcome.headSent { answer(client, status: 503, kind: "cap", why + ".", keepAlive: false) }
                case .client?:
                    reason = "the sandbox's side of the connection broke off"
                }
                log.record(host: target.host, port: target.port, scheme: target.scheme, allowed: true, reason: reason,
                           bytesOut: outcome.bytesOut, bytesIn: outcome.bytesIn)
                if !outcome.reusable { return }
            }
        }
    }

    /// CONNECT's `host:port`, for the log.
    static func connectAuthority(_ target: String) -> (String, Int) {
        guard let split = try? PostHogEndpoints.splitHostPort(String(target.prefix(300)), bad: { RunnerError(.badInput, $0) }) else {
            return (String(target.prefix(100)), 0)
        }
        return (split.0, split.1 ?? 0)
    }

    static func errorJSON(_ message: String, kind: String) -> String {
        let doc: JSONValue = .object(["error": .string(message), "egress": .string(kind)])
        return String(decoding: (try? JSONEncoder().encode(doc)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// An answer of the proxy's own: a JSON `{error, egress}` document with the status header.
    @discardableResult
    private func answer(_ client: EgressClientConnection, status: Int, kind: String, _ message: String, keepAlive: Bool,
                        extra: String = "") -> Bool {
        let body = Array(Self.errorJSON(message, kind: kind).utf8)
        let head = "HTTP/1.1 \(status) \(EgressReason.phrase(status))\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n"
            + "\(Self.statusHeader): \(kind)\r\n\(extra)Connection: \(keepAlive ? "keep-alive" : "close")\r\n\r\n"
        return client.write(Array(head.utf8) + body)
    }
}
