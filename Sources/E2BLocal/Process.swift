import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SandboxRunner
#if canImport(Glibc)
import Glibc
#endif

/// envd's Connect process service: `Start` and `Connect` (server-streaming,
/// `application/connect+json`), `List`, `SendSignal`, `SendInput`, `CloseStdin` (unary JSON).
/// As in envd (infra `packages/envd/internal/services/process/start.go`), a command lives on its
/// own: a client that goes away only detaches its stream; `Connect-Timeout-Ms` on `Start` is the
/// command's deadline (it is killed, and the stream ends with `deadline_exceeded` and no end
/// event); `Connect` attaches another stream to a running command, or replays a recent end.
extension E2BLocalResponder {
    /// Envelopes as the Connect streaming protocol frames them. Written here rather than shared with
    /// the client so a framing mistake on one side cannot hide behind the same code on the other.
    enum Envelope {
        static func frame(_ json: String, flag: UInt8 = 0) -> ByteBuffer {
            let payload = Array(json.utf8)
            var b = ByteBuffer()
            b.reserveCapacity(5 + payload.count)
            b.writeInteger(flag)
            b.writeInteger(UInt32(payload.count), endianness: .big)
            b.writeBytes(payload)
            return b
        }

        static func event(_ inner: String) -> ByteBuffer { frame("{\"event\":{\(inner)}}") }

        static func endStream(error: (ConnectCode, String)? = nil) -> ByteBuffer {
            guard let (code, message) = error else { return frame("{}", flag: 0x02) }
            let e = JSONValue.object(["error": .object(["code": .string(code.rawValue), "message": .string(message)])])
            return frame(e.jsonText(), flag: 0x02)
        }

        /// Parses the first message of a Connect streaming request body.
        static func firstMessage(_ bytes: ByteBuffer) throws -> JSONValue {
            var b = bytes
            guard let flag = b.readInteger(as: UInt8.self), let length = b.readInteger(endianness: .big, as: UInt32.self) else {
                throw ConnectFailure(.invalidArgument, "The request body is not a Connect envelope (flag byte and 4-byte length).")
            }
            guard flag & 0x01 == 0 else { throw ConnectFailure(.unimplemented, "Compressed request messages are not supported.") }
            guard let payload = b.readBytes(length: Int(length)) else {
                throw ConnectFailure(.invalidArgument, "The request envelope says \(length) bytes but the body is shorter.")
            }
            guard let json = JSONValue.parse(Data(payload)), json.objectValue != nil else {
                throw ConnectFailure(.invalidArgument, "The request message is not a JSON object.")
            }
            return json
        }
    }

    struct ConnectFailure: Error {
        var code: ConnectCode
        var message: String
        init(_ code: ConnectCode, _ message: String) { self.code = code; self.message = message }
        init(_ f: AgentLink.Failure) {
            code = ConnectCode(rawValue: f.code) ?? .internalError
            message = f.message
        }
    }

    func processService(_ method: String, _ request: inout Request, sandbox: LocalSandbox, context: E2BRequestContext) async -> Response {
        switch method {
        case "Start": return await start(&request, sandbox: sandbox, context: context)
        case "Connect": return await connect(&request, sandbox: sandbox, context: context)
        case "List": return listProcesses(sandbox)
        case "SendSignal": return await sendSignal(&request, sandbox: sandbox)
        case "SendInput": return await sendInput(&request, sandbox: sandbox)
        case "CloseStdin": return await closeStdin(&request, sandbox: sandbox)
        default: return Reply.connectError(.unimplemented, "process.Process/\(method) is not implemented by e2b-local.")
        }
    }

    // MARK: Start, Connect

    private func streamingMessage(_ request: inout Request) async -> Result<JSONValue, ConnectFailure> {
        let contentType = (request.headers[.contentType] ?? "").lowercased()
        guard contentType.hasPrefix("application/connect+json") else {
            return .failure(ConnectFailure(.unimplemented, "Use Content-Type application/connect+json: e2b-local speaks Connect with JSON only."))
        }
        do {
            let body = try await request.collectBody(upTo: 8 << 20)
            return .success(try Envelope.firstMessage(body))
        } catch let f as ConnectFailure {
            return .failure(f)
        } catch {
            return .failure(ConnectFailure(.resourceExhausted, "The request body is over 8 MiB."))
        }
    }

    /// A stream answer that is only an error (Connect streams report errors in the end-of-stream
    /// message of a 200 answer).
    static func streamError(_ f: ConnectFailure) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/connect+json"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: Envelope.endStream(error: (f.code, f.message))))
    }

    static func deadline(_ request: Request) -> Result<Duration?, ConnectFailure> {
        guard let t = request.headers[.connectTimeout] else { return .success(nil) }
        guard t.count <= 10, let ms = Int64(t), ms > 0 else {
            return .failure(ConnectFailure(.invalidArgument, "Connect-Timeout-Ms must be a positive number of at most 10 digits."))
        }
        return .success(.milliseconds(ms))
    }

    func start(_ request: inout Request, sandbox: LocalSandbox, context: E2BRequestContext) async -> Response {
        let message: JSONValue
        switch await streamingMessage(&request) {
        case .failure(let f) where f.code == .unimplemented && !(request.headers[.contentType] ?? "").hasPrefix("application/connect"):
            return Reply.json(415, .object(["code": .string(f.code.rawValue), "message": .string(f.message)]))
        case .failure(let f): return Self.streamError(f)
        case .success(let m): message = m
        }
        guard let p = message["process"]?.objectValue, let cmd = p["cmd"]?.stringValue, !cmd.isEmpty else {
            return Self.streamError(ConnectFailure(.invalidArgument, "process.cmd is required."))
        }
        if let pty = message["pty"], pty != .null {
            return Self.streamError(ConnectFailure(.unimplemented, "PTY processes are not supported by e2b-local."))
        }
        let deadline: Duration?
        switch Self.deadline(request) {
        case .failure(let f): return Self.streamError(f)
        case .success(let d): deadline = d
        }
        let args = (p["args"]?.arrayValue ?? []).compactMap(\.stringValue)
        var envs: [String: String] = [:]
        for (k, v) in p["envs"]?.objectValue ?? [:] { if let s = v.stringValue { envs[k] = s } }
        let cwd = p["cwd"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        let config = ProcessConfig(cmd: cmd, args: args, envs: envs, cwd: cwd)
        var environment = SandboxLauncher.baseEnvironment().merging(sandbox.envVars) { _, s in s }.merging(envs) { _, p in p }
        environment["E2B_SANDBOX"] = environment["E2B_SANDBOX"] ?? "true"
        environment["E2B_SANDBOX_ID"] = sandbox.id
        // The deviation from E2B's transparent egress: the proxy is reached through this socket.
        if sandbox.egress != nil { environment["POSTHOG_EGRESS_SOCKET"] = EgressProxy.sandboxPath }
        environment["E2B_TEMPLATE_ID"] = sandbox.templateID
        let process: SandboxProcess
        let subscription: SandboxProcess.Subscription
        do {
            let started = try await sandbox.start(config: config, tag: message["tag"]?.stringValue, environment: environment,
                                                  cwd: cwd ?? E2BLocalConfiguration.home, stdin: message["stdin"]?.boolValue ?? false,
                                                  subscribe: true)
            process = started.0
            subscription = started.1!
        } catch let f as AgentLink.Failure {
            if f.code == "unavailable" { return Reply.sandboxNotFound(sandbox.id) }
            return Self.streamError(ConnectFailure(f))
        } catch {
            return Self.streamError(ConnectFailure(.internalError, "\(error)"))
        }
        let deadlineAt = deadline.map { ContinuousClock.now + $0 }
        if let deadline {
            // The command's own deadline, whatever happens to this stream.
            process.killAfter(deadline, in: sandbox)
        }
        return streamResponse(process: process, subscription: subscription, sandbox: sandbox, request: request, context: context,
                              deadline: deadline, deadlineAt: deadlineAt)
    }

    func connect(_ request: inout Request, sandbox: LocalSandbox, context: E2BRequestContext) async -> Response {
        let message: JSONValue
        switch await streamingMessage(&request) {
        case .failure(let f): return Self.streamError(f)
        case .success(let m): message = m
        }
        let selector = message["process"]
        let pid = selector?["pid"]?.intValue.flatMap { UInt32(exactly: $0) }
        let tag = selector?["tag"]?.stringValue
        guard pid != nil || tag != nil else { return Self.streamError(ConnectFailure(.invalidArgument, "process.pid or process.tag is required.")) }
        let deadline: Duration?
        switch Self.deadline(request) {
        case .failure(let f): return Self.streamError(f)
        case .success(let d): deadline = d
        }
        guard let process = sandbox.process(pid: pid, tag: tag) else {
            if let (endedPid, end) = sandbox.endedProcess(pid: pid, tag: tag) {
                var headers = HTTPFields()
                headers[.contentType] = "application/connect+json"
                var body = Envelope.event("\"start\":{\"pid\":\(endedPid)}")
                var endFrame = Envelope.event(end.eventJSON)
                var tail = Envelope.endStream()
                body.writeBuffer(&endFrame)
                body.writeBuffer(&tail)
                return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: body))
            }
            return Self.streamError(ConnectFailure(.notFound, "process with \(pid.map { "pid \($0)" } ?? "tag \(tag ?? "")") not found"))
        }
        return streamResponse(process: process, subscription: process.subscribe(), sandbox: sandbox, request: request,
                              context: context, deadline: deadline, deadlineAt: deadline.map { ContinuousClock.now + $0 })
    }

    private func streamResponse(process: SandboxProcess, subscription: SandboxProcess.Subscription, sandbox: LocalSandbox,
                                request: Request, context: E2BRequestContext, deadline: Duration?,
                                deadlineAt: ContinuousClock.Instant?) -> Response {
        let keepalive = request.headers[.keepaliveInterval].flatMap(Int.init).flatMap { $0 > 0 ? Duration.seconds($0) : nil }
        let stream = CommandStream(state: state, sandbox: sandbox, process: process, subscription: subscription, deadline: deadline,
                                   deadlineAt: deadlineAt, keepalive: keepalive, cut: state.faults.take(.streamCut, path: request.uri.path),
                                   channel: context.channel)
        var headers = HTTPFields()
        headers[.contentType] = "application/connect+json"
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            try await stream.run(to: &writer)
        })
    }

    // MARK: unary calls

    private func unaryMessage(_ request: inout Request) async -> Result<JSONValue, ConnectFailure> {
        let contentType = (request.headers[.contentType] ?? "").lowercased()
        guard contentType.hasPrefix("application/json") else {
            return .failure(ConnectFailure(.unimplemented, "Use Content-Type application/json: e2b-local speaks Connect with JSON only."))
        }
        guard let body = try? await request.collectBody(upTo: 8 << 20) else {
            return .failure(ConnectFailure(.resourceExhausted, "The request body is over 8 MiB."))
        }
        if body.readableBytes == 0 { return .success(.object([:])) }
        guard let json = JSONValue.parse(Data(body.readableBytesView)), json.objectValue != nil else {
            return .failure(ConnectFailure(.invalidArgument, "The request message is not a JSON object."))
        }
        return .success(json)
    }

    func unary(_ request: inout Request, _ body: (JSONValue) async throws -> JSONValue) async -> Response {
        switch await unaryMessage(&request) {
        case .failure(let f): return Reply.connectError(f.code, f.message)
        case .success(let m):
            do { return Reply.json(200, try await body(m)) } catch let f as ConnectFailure {
                return Reply.connectError(f.code, f.message)
            } catch let f as AgentLink.Failure {
                return Reply.connectError(ConnectCode(rawValue: f.code) ?? .internalError, f.message)
            } catch {
                return Reply.connectError(.internalError, "\(error)")
            }
        }
    }

    private func selected(_ message: JSONValue, in sandbox: LocalSandbox) throws -> SandboxProcess {
        let selector = message["process"]
        let pid = selector?["pid"]?.intValue.flatMap { UInt32(exactly: $0) }
        let tag = selector?["tag"]?.stringValue
        guard pid != nil || tag != nil else { throw ConnectFailure(.invalidArgument, "process.pid or process.tag is required.") }
        guard let p = sandbox.process(pid: pid, tag: tag) else {
            throw ConnectFailure(.notFound, "process with \(pid.map { "pid \($0)" } ?? "tag \(tag ?? "")") not found")
        }
        return p
    }

    func sendSignal(_ request: inout Request, sandbox: LocalSandbox) async -> Response {
        await unary(&request) { message in
            let process = try selected(message, in: sandbox)
            let signal: Int32
            switch message["signal"] {
            case .string("SIGNAL_SIGKILL")?, .int(9)?: signal = SIGKILL
            case .string("SIGNAL_SIGTERM")?, .int(15)?: signal = SIGTERM
            default: throw ConnectFailure(.unimplemented, "invalid signal: \(message["signal"]?.display ?? "SIGNAL_UNSPECIFIED")")
            }
            try await sandbox.signal(process, signal)
            return .object([:])
        }
    }

    func sendInput(_ request: inout Request, sandbox: LocalSandbox) async -> Response {
        await unary(&request) { message in
            let process = try selected(message, in: sandbox)
            guard let b64 = message["input"]?["stdin"]?.stringValue else {
                throw ConnectFailure(.unimplemented, "Only stdin input is supported by e2b-local (no PTY).")
            }
            guard let bytes = Data(base64Encoded: b64) else { throw ConnectFailure(.invalidArgument, "input.stdin is not base64.") }
            let result = await Blocking.result { try process.write(stdin: Array(bytes)) }
            if case .failure = result {
                throw ConnectFailure(.failedPrecondition, "the process's stdin is not open: start it with stdin true")
            }
            return .object([:])
        }
    }

    func closeStdin(_ request: inout Request, sandbox: LocalSandbox) async -> Response {
        await unary(&request) { message in
            let process = try selected(message, in: sandbox)
            do { try process.closeStdin() } catch {
                throw ConnectFailure(.failedPrecondition, "the process's stdin is not open")
            }
            return .object([:])
        }
    }

    func listProcesses(_ sandbox: LocalSandbox) -> Response {
        let processes: [JSONValue] = sandbox.runningProcesses.map { p in
            var o: [String: JSONValue] = ["pid": .int(Int(p.pid)), "config": p.config.json]
            if let tag = p.tag { o["tag"] = .string(tag) }
            return .object(o)
        }
        return Reply.json(200, .object(["processes": .array(processes)]))
    }
}

extension SandboxProcess {
    /// Kills the command's process group at its deadline (envd: the process context's timeout).
    func killAfter(_ deadline: Duration, in sandbox: LocalSandbox) {
        let ms = Int(deadline.milliseconds)
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(ms)) { [weak self, weak sandbox] in
            guard let self, let sandbox, !self.hasEnded else { return }
            sandbox.instance.link.post("signal", ["pid": .int(Int(self.pid)), "signal": .int(Int(SIGKILL))])
        }
    }
}

/// One `Start` or `Connect` stream: the command's events, keepalives, the deadline, the
/// client going away, written as Connect envelopes.
struct CommandStream: Sendable {
    let state: E2BLocalState
    let sandbox: LocalSandbox
    let process: SandboxProcess
    let subscription: SandboxProcess.Subscription
    let deadline: Duration?
    /// When the deadline passes: for `Start`, the instant the command's kill is due.
    let deadlineAt: ContinuousClock.Instant?
    let keepalive: Duration?
    let cut: FaultSpec?
    let channel: any Channel

    struct StreamCut: Error {}

    enum Item: Sendable {
        case event(ProcessEvent)
        case tick
        case deadline
        case closed
    }

    typealias Envelope = E2BLocalResponder.Envelope

    func run(to writer: inout any ResponseBodyWriter) async throws {
        defer { process.unsubscribe(subscription) }
        try await writer.write(Envelope.event("\"start\":{\"pid\":\(process.pid)}"))
        var cutNow = cut.map { $0.after == 0 } ?? false
        if cutNow {
            state.logger.info("stream cut (injected fault)", metadata: ["sandbox": .string(sandbox.id)])
            if cut?.abort == true { throw StreamCut() }
            try await writer.finish(nil)
            return
        }
        let (items, continuation) = AsyncStream.makeStream(of: Item.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [subscription] in
                for await e in subscription.events { continuation.yield(.event(e)) }
            }
            if let keepalive {
                group.addTask {
                    while !Task.isCancelled {
                        try await Task.sleep(for: keepalive)
                        continuation.yield(.tick)
                    }
                }
            }
            if let deadlineAt {
                group.addTask {
                    try await Task.sleep(until: deadlineAt, clock: .continuous)
                    continuation.yield(.deadline)
                }
            }
            group.addTask { [channel] in
                await ChannelWatch.waitUntilClosed(channel)
                continuation.yield(.closed)
            }
            defer { group.cancelAll() }

            var dataEvents = 0
            var lastSent = ContinuousClock.now
            for await item in items {
                switch item {
                case .event(.data(let fd, let bytes)):
                    let key = fd == 2 ? "stderr" : "stdout"
                    try await writer.write(Envelope.event("\"data\":{\"\(key)\":\"\(Data(bytes).base64EncodedString())\"}"))
                    process.consumed(subscription, bytes.count)
                    lastSent = .now
                    dataEvents += 1
                    if let cut, dataEvents >= cut.after { cutNow = true }
                case .event(.end(let end)):
                    if let deadlineAt, ContinuousClock.now >= deadlineAt {
                        // Killed at the deadline, and the end came first: the stream's own context has
                        // expired all the same, so envd sends only the error (start.go).
                        continuation.yield(.deadline)
                        continue
                    }
                    try await writer.write(Envelope.event(end.eventJSON))
                    try await writer.write(Envelope.endStream())
                    try await writer.finish(nil)
                    return
                case .event(.gone(let why)):
                    try await writer.write(Envelope.endStream(error: (.unavailable, why)))
                    try await writer.finish(nil)
                    return
                case .deadline:
                    // No end event: the stream's own context expired (start.go returns ctx.Err()).
                    let ms = deadline.map { String($0.milliseconds) } ?? "?"
                    try await writer.write(Envelope.endStream(error: (.deadlineExceeded, "context deadline exceeded (\(ms) ms)")))
                    try await writer.finish(nil)
                    return
                case .closed:
                    return
                case .tick:
                    if let keepalive, ContinuousClock.now - lastSent >= keepalive - .milliseconds(100) {
                        try await writer.write(Envelope.event("\"keepalive\":{}"))
                        lastSent = .now
                    }
                }
                if cutNow {
                    state.logger.info("stream cut (injected fault)", metadata: ["sandbox": .string(sandbox.id)])
                    if cut?.abort == true { throw StreamCut() }
                    try await writer.finish(nil)
                    return
                }
            }
        }
    }
}
