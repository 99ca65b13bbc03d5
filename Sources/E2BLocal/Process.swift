import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SandboxRunner
#if canImport(Glibc)
import Glibc
#endif

/// envd's Connect process service: `Start` (server-streaming, `application/connect+json`),
/// `SendSignal` and `List` (unary JSON).
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
        default: return "signal \(s)"
        }
    }

    /// The end event; proto3 JSON leaves out zero values (exitCode 0, exited false).
    static func endEvent(exitCode: Int32, signal: Int32?) -> ByteBuffer {
        if let signal { return Envelope.event("\"end\":{\"exitCode\":-1,\"status\":\"signal: \(signalName(signal))\"}") }
        let code = exitCode == 0 ? "" : "\"exitCode\":\(exitCode),"
        return Envelope.event("\"end\":{\(code)\"exited\":true,\"status\":\"exit status \(exitCode)\"}")
    }

    // MARK: Start

    func start(_ request: inout Request, sandbox: LocalSandbox, context: E2BRequestContext) async -> Response {
        let contentType = (request.headers[.contentType] ?? "").lowercased()
        guard contentType.hasPrefix("application/connect+json") else {
            return Reply.json(415, .object(["code": .string(ConnectCode.unimplemented.rawValue),
                                            "message": .string("Use Content-Type application/connect+json: e2b-local speaks Connect with JSON only.")]))
        }
        let user = Self.user(request)
        guard Self.knownUser(user) else { return Reply.connectError(.unauthenticated, "User '\(user ?? "")' does not exist in this sandbox (only user and root).") }
        let message: JSONValue
        do {
            let body = try await request.collectBody(upTo: 4 << 20)
            message = try Envelope.firstMessage(body)
        } catch let f as ConnectFailure {
            return Reply.connectError(f.code, f.message)
        } catch {
            return Reply.connectError(.resourceExhausted, "The request body is over 4 MiB.")
        }
        guard let p = message["process"]?.objectValue, let cmd = p["cmd"]?.stringValue, !cmd.isEmpty else {
            return Reply.connectError(.invalidArgument, "process.cmd is required.")
        }
        if let pty = message["pty"], pty != .null {
            return Reply.connectError(.unimplemented, "PTY processes are not supported by e2b-local.")
        }
        let args = (p["args"]?.arrayValue ?? []).compactMap(\.stringValue)
        var envs: [String: String] = [:]
        for (k, v) in p["envs"]?.objectValue ?? [:] { if let s = v.stringValue { envs[k] = s } }
        let cwdRaw = p["cwd"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        let config = ProcessConfig(cmd: cmd, args: args, envs: envs, cwd: cwdRaw)

        // The working directory: under /home/user it must exist in the workspace.
        let ws = WorkspacePaths(workspace: sandbox.workspace, uid: sandbox.uid)
        let cwd = ws.sandboxPath(cwdRaw ?? E2BLocalConfiguration.home)
        if cwd == ws.home || cwd.hasPrefix(ws.home + "/") {
            guard let (host, _) = try? ws.existing(cwd), Self.isDirectory(host) else {
                return Reply.connectError(.invalidArgument, "The working directory \(cwd) does not exist in the sandbox.")
            }
        } else if !["/", "/tmp", "/usr", "/bin", "/proc", "/dev"].contains(where: { cwd == $0 || cwd.hasPrefix($0 + "/") }) {
            return Reply.connectError(.invalidArgument, "The working directory \(cwd) does not exist in the sandbox.")
        }

        var deadline: Duration?
        if let t = request.headers[.connectTimeout] {
            guard t.count <= 10, let ms = Int64(t), ms > 0 else {
                return Reply.connectError(.invalidArgument, "Connect-Timeout-Ms must be a positive number of at most 10 digits.")
            }
            deadline = .milliseconds(ms)
        }
        let keepalive = request.headers[.keepaliveInterval].flatMap(Int.init).flatMap { $0 > 0 ? Duration.seconds($0) : nil }
        guard let process = sandbox.register(config: config, tag: message["tag"]?.stringValue) else {
            return Reply.sandboxNotFound(sandbox.id)
        }
        var environment = sandbox.envVars.merging(envs) { _, process in process }
        environment["E2B_SANDBOX"] = environment["E2B_SANDBOX"] ?? "true"
        environment["E2B_SANDBOX_ID"] = sandbox.id
        environment["E2B_TEMPLATE_ID"] = sandbox.templateID
        environment["USER"] = environment["USER"] ?? (user ?? "user")

        let run = CommandRun(state: state, sandbox: sandbox, process: process, argv: [cmd] + args, cwd: cwd,
                             environment: environment, deadline: deadline, keepalive: keepalive,
                             cut: state.faults.take(.streamCut, path: request.uri.path), channel: context.channel)
        var headers = HTTPFields()
        headers[.contentType] = "application/connect+json"
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            try await run.stream(to: &writer)
        })
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    // MARK: SendSignal, List

    func sendSignal(_ request: inout Request, sandbox: LocalSandbox) async -> Response {
        let message: JSONValue
        switch await unaryMessage(&request) {
        case .failure(let f): return Reply.connectError(f.code, f.message)
        case .success(let m): message = m
        }
        let selector = message["process"]
        let pid = selector?["pid"]?.intValue.map(UInt32.init)
        let tag = selector?["tag"]?.stringValue
        guard pid != nil || tag != nil else { return Reply.connectError(.invalidArgument, "process.pid or process.tag is required.") }
        let signal: Int32
        switch message["signal"] {
        case .string("SIGNAL_SIGKILL")?, .int(9)?: signal = SIGKILL
        case .string("SIGNAL_SIGTERM")?, .int(15)?: signal = SIGTERM
        default: return Reply.connectError(.invalidArgument, "signal must be SIGNAL_SIGKILL or SIGNAL_SIGTERM.")
        }
        guard let process = sandbox.process(pid: pid, tag: tag) else {
            return Reply.connectError(.notFound, "process with \(pid.map { "pid \($0)" } ?? "tag \(tag ?? "")") not found")
        }
        // The jail stops a process tree only with SIGKILL; a SIGTERM is reported as such.
        process.end(.signal(signal))
        return Reply.json(200, .object([:]))
    }

    func listProcesses(_ sandbox: LocalSandbox) -> Response {
        let processes: [JSONValue] = sandbox.runningProcesses.map { p in
            var o: [String: JSONValue] = ["pid": .int(Int(p.pid)), "config": p.config.json]
            if let tag = p.tag { o["tag"] = .string(tag) }
            return .object(o)
        }
        return Reply.json(200, .object(["processes": .array(processes)]))
    }

    private func unaryMessage(_ request: inout Request) async -> Result<JSONValue, ConnectFailure> {
        let contentType = (request.headers[.contentType] ?? "").lowercased()
        guard contentType.hasPrefix("application/json") else {
            return .failure(ConnectFailure(.unimplemented, "Use Content-Type application/json: e2b-local speaks Connect with JSON only."))
        }
        guard let body = try? await request.collectBody(upTo: 1 << 20) else {
            return .failure(ConnectFailure(.resourceExhausted, "The request body is over 1 MiB."))
        }
        if body.readableBytes == 0 { return .success(.object([:])) }
        guard let json = JSONValue.parse(Data(body.readableBytesView)), json.objectValue != nil else {
            return .failure(ConnectFailure(.invalidArgument, "The request message is not a JSON object."))
        }
        return .success(json)
    }
}

/// One `Start` stream: runs the command in the jail and writes its events as they happen.
struct CommandRun: Sendable {
    let state: E2BLocalState
    let sandbox: LocalSandbox
    let process: RunningProcess
    let argv: [String]
    let cwd: String
    let environment: [String: String]
    let deadline: Duration?
    let keepalive: Duration?
    let cut: FaultSpec?
    let channel: any Channel

    struct StreamCut: Error {}

    typealias Envelope = E2BLocalResponder.Envelope

    func stream(to writer: inout any ResponseBodyWriter) async throws {
        defer { sandbox.unregister(process.pid) }
        // A client that goes away (its side of the connection closes) takes its command with it.
        let watcher = InputCloseWatcher { [process] in process.end(.disconnected) }
        try? await channel.pipeline.addHandler(watcher, position: .first).get()
        do {
            try await streamEvents(to: &writer)
        } catch {
            _ = try? await channel.pipeline.removeHandler(watcher).get()
            throw error
        }
        _ = try? await channel.pipeline.removeHandler(watcher).get()
    }

    private func streamEvents(to writer: inout any ResponseBodyWriter) async throws {
        let (events, continuation) = AsyncStream.makeStream(of: StreamItem.self)
        let bridge = OutputBridge(continuation: continuation)
        process.whenEnded { bridge.close() }
        defer { bridge.close() }

        try await writer.write(Envelope.event("\"start\":{\"pid\":\(process.pid)}"))
        var outcome: Result<ProcessOutcomeBox, any Error>?
        var cutNow = cut.map { $0.after == 0 } ?? false
        if cutNow { process.end(.disconnected) }

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [state, sandbox, process, argv, cwd, environment, deadline] in
                // The sandbox's end also ends the command (via terminate); this bound is only a backstop.
                let lifetime = max(1, Int(sandbox.endAt.timeIntervalSinceNow.rounded(.up))) + 5
                let limit = deadline.map { $0 + .seconds(1) } ?? .seconds(lifetime)
                let result: Result<ProcessOutcomeBox, any Error>
                do {
                    let o = try await state.jail.runCommand(
                        argv, workspace: sandbox.workspace, mountPoint: E2BLocalConfiguration.home, workingDirectory: cwd,
                        environment: environment, network: sandbox.network, timeout: limit, outputLimit: 64 * 1024,
                        uid: sandbox.uid, killer: process.killer, onOutput: { fd, bytes in bridge.push(fd, bytes) })
                    result = .success(ProcessOutcomeBox(exitCode: o.exitCode, signal: o.signal, timedOut: o.timedOut))
                } catch {
                    result = .failure(error)
                }
                continuation.yield(.exited(result))
                continuation.finish()
            }
            if let keepalive {
                group.addTask {
                    while !Task.isCancelled {
                        try await Task.sleep(for: keepalive)
                        continuation.yield(.tick)
                    }
                }
            }
            if let deadline {
                group.addTask { [process] in
                    try await Task.sleep(for: deadline)
                    process.end(.deadline)
                }
            }
            group.addTask { [channel, process] in
                await ChannelWatch.waitUntilClosed(channel)
                if !Task.isCancelled { process.end(.disconnected) }
            }

            var dataEvents = 0
            var lastSent = ContinuousClock.now
            loop: for await item in events {
                switch item {
                case .output(let fd, let bytes):
                    guard !cutNow else { continue }
                    let key = fd == 2 ? "stderr" : "stdout"
                    let b64 = Data(bytes).base64EncodedString()
                    try await writer.write(Envelope.event("\"data\":{\"\(key)\":\"\(b64)\"}"))
                    bridge.written(bytes.count)
                    lastSent = .now
                    dataEvents += 1
                    if let cut, dataEvents >= cut.after {
                        cutNow = true
                        process.end(.disconnected)
                    }
                case .tick:
                    if let keepalive, ContinuousClock.now - lastSent >= keepalive - .milliseconds(100), !cutNow {
                        try await writer.write(Envelope.event("\"keepalive\":{}"))
                        lastSent = .now
                    }
                case .exited(let r):
                    outcome = r
                    break loop
                }
            }
            group.cancelAll()
        }

        if cutNow, let cut {
            state.logger.info("stream cut (injected fault)", metadata: ["sandbox": .string(sandbox.id), "pid": .stringConvertible(process.pid)])
            if cut.abort { throw StreamCut() }
            try await writer.finish(nil)
            return
        }
        switch (outcome, process.reason) {
        case (_, .sandboxGone(let why)?):
            try await writer.write(Envelope.endStream(error: (.unavailable, why)))
        case (.failure(let error)?, _):
            try await writer.write(Envelope.endStream(error: (.internalError, "The command could not be started: \(error)")))
        case (.success(let o)?, let reason) where reason == .deadline || o.timedOut:
            try await writer.write(E2BLocalResponder.endEvent(exitCode: -1, signal: SIGKILL))
            let ms = deadline.map { String($0.milliseconds) } ?? "?"
            try await writer.write(Envelope.endStream(error: (.deadlineExceeded,
                "The command ran past its deadline of \(ms) ms (Connect-Timeout-Ms) and was killed.")))
        case (.success(_)?, .signal(let s)?):
            try await writer.write(E2BLocalResponder.endEvent(exitCode: -1, signal: s))
            try await writer.write(Envelope.endStream())
        case (.success(let o)?, _):
            try await writer.write(E2BLocalResponder.endEvent(exitCode: o.exitCode, signal: o.signal))
            try await writer.write(Envelope.endStream())
        case (nil, _):
            try await writer.write(Envelope.endStream(error: (.canceled, "The command stream ended before the command did.")))
        }
        try await writer.finish(nil)
    }
}
