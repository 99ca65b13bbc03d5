import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SandboxRunner
import ServiceLifecycle
import UnixSignals

/// Settings of `sandbox-runner serve`.
public struct HTTPAPIConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 0
    /// Bearer token; nil only when explicitly allowed on loopback.
    public var token: String?
    public var maxConcurrent = 4
    public var queueLength = 16
    public var maxBodyBytes = 1 << 20
    /// How long a SIGTERM waits for running sandboxes before killing them.
    public var shutdownGrace: Duration = .seconds(20)
    public init() {}
}

/// The HTTP API for agents: templates with their JSON Schema, runs, health, OpenAPI.
public final class HTTPAPIServer: Sendable {
    let config: HTTPAPIConfiguration
    let tools: TemplateTools
    let gate: RunGate
    let running = RunningRuns()

    public init(config: HTTPAPIConfiguration, tools: TemplateTools) {
        self.config = config
        self.tools = tools
        self.gate = RunGate(maxConcurrent: config.maxConcurrent, queueLength: config.queueLength)
    }

    /// Serves until SIGTERM/SIGINT (or cancellation); then stops accepting, lets running sandboxes
    /// finish within the grace period, kills the rest.
    public func run(onListening: @escaping @Sendable (String) async -> Void) async throws {
        var logger = Logger(label: "sandbox-runner.serve")
        logger.logLevel = .warning
        let host = config.host
        let app = Application(
            responder: APIResponder(server: self),
            configuration: .init(address: .hostname(host, port: config.port), serverName: nil),
            onServerRunning: { channel in await onListening("http://\(host):\(channel.localAddress?.port ?? 0)") },
            logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: app), .init(service: Drainer(running: running, grace: config.shutdownGrace))],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        running.killAll()
    }
}

/// Kills what is still running once the grace period after a shutdown signal is over.
struct Drainer: Service {
    let running: RunningRuns
    let grace: Duration
    func run() async throws {
        try? await gracefulShutdown()
        try? await Task.sleep(for: grace)
        running.killAll()
    }
}

/// The runs in flight, so shutdown can kill their sandboxes.
final class RunningRuns: @unchecked Sendable {
    private let lock = NSLock()
    private var killers: [String: ProcessKiller] = [:]
    func add(_ id: String, _ k: ProcessKiller) { lock.lock(); killers[id] = k; lock.unlock() }
    func remove(_ id: String) { lock.lock(); killers[id] = nil; lock.unlock() }
    func killAll() {
        lock.lock(); let all = Array(killers.values); lock.unlock()
        for k in all { k.kill(cancelling: true) }
    }
}

/// Admission control: at most `maxConcurrent` runs, at most `queueLength` waiting; past that, 429.
actor RunGate {
    let maxConcurrent: Int
    let queueLength: Int
    private var running = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(maxConcurrent: Int, queueLength: Int) {
        self.maxConcurrent = max(1, maxConcurrent)
        self.queueLength = max(0, queueLength)
    }

    /// False when both the slots and the queue are full.
    func enter() async -> Bool {
        if running < maxConcurrent { running += 1; return true }
        guard waiters.count < queueLength else { return false }
        await withCheckedContinuation { waiters.append($0) }
        return true
    }

    func leave() {
        if waiters.isEmpty { running -= 1 } else { waiters.removeFirst().resume() }
    }
}

struct APIResponder: HTTPResponder {
    typealias Context = BasicRequestContext
    let server: HTTPAPIServer

    func respond(to request: Request, context: BasicRequestContext) async throws -> Response {
        let clock = ContinuousClock()
        let start = clock.now
        var runId: String?
        let response = await route(request, runId: &runId)
        var log: [String: JSONValue] = ["method": .string(request.method.rawValue), "path": .string(request.uri.path),
                                        "status": .int(response.status.code), "ms": .int(Int((clock.now - start).milliseconds))]
        if let runId { log["runId"] = .string(runId) }
        FileHandle.standardError.write(Data((JSONValue.object(log).jsonText() + "\n").utf8))
        return response
    }

    func route(_ request: Request, runId: inout String?) async -> Response {
        let path = request.uri.path
        let segments = path.split(separator: "/").map(String.init)
        switch (request.method, segments) {
        case (.get, ["healthz"]):
            return json(200, .object(["ok": .bool(true), "templates": .int(server.tools.executor.catalog.names.count)]))
        case (.get, ["openapi.json"]):
            return json(200, OpenAPIDocument.make(tools: server.tools))
        default: break
        }
        if let token = server.config.token {
            let given = request.headers[.authorization] ?? ""
            guard given.hasPrefix("Bearer "), constantTimeEqual(String(given.dropFirst(7)), token) else {
                var h = HTTPFields()
                h[.wwwAuthenticate] = "Bearer"
                return error(401, "Missing or wrong bearer token: send Authorization: Bearer $SANDBOX_RUNNER_TOKEN.", headers: h)
            }
        }
        switch (request.method, segments) {
        case (.get, ["v1", "templates"]):
            let list = server.tools.executor.catalog.names.compactMap { try? server.tools.executor.catalog.template(named: $0) }
            return json(200, .object(["templates": .array(list.map(describe))]))
        case (.get, let s) where s.count == 3 && s[0] == "v1" && s[1] == "templates":
            guard let t = try? server.tools.executor.catalog.template(named: s[2]) else { return error(404, "No template named '\(s[2])'.") }
            return json(200, describe(t))
        case (.post, ["v1", "runs"]):
            return await run(request, runId: &runId)
        default:
            return error(404, "No route \(request.method.rawValue) \(path). See /openapi.json.")
        }
    }

    func describe(_ t: Template) -> JSONValue {
        .object(["name": .string(t.name), "title": t.manifest.title.map(JSONValue.string) ?? .null,
                 "description": .string(t.manifest.description), "readOnly": .bool(t.manifest.isReadOnly),
                 "inputSchema": TemplateSchema.input(t.manifest), "resultSchema": TemplateSchema.result(dataSchema: t.manifest.output),
                 "example": .object(t.manifest.example ?? [:])])
    }

    func run(_ request: Request, runId: inout String?) async -> Response {
        var request = request
        guard let buffer = try? await request.collectBody(upTo: server.config.maxBodyBytes) else {
            return error(413, "The request body is over \(server.config.maxBodyBytes) bytes.")
        }
        guard case .object(let body)? = JSONValue.parse(Data(buffer.readableBytesView)) else {
            return error(400, "The body must be a JSON object: {\"template\": NAME, \"variables\": {...}} or {\"script\": SOURCE}.")
        }
        let known: Set<String> = ["template", "script", "variables", "timeoutSeconds", "backend"]
        if let extra = Set(body.keys).subtracting(known).sorted().first { return error(400, "Unknown field '\(extra)'.") }
        if let backend = body["backend"]?.stringValue, backend != server.tools.executor.backend.name {
            return error(400, "This server runs on the '\(server.tools.executor.backend.name)' backend; '\(backend)' is not available here.")
        }
        var timeout: Duration?
        if let t = body["timeoutSeconds"] {
            guard let s = t.intValue, (1...3600).contains(s) else { return error(400, "timeoutSeconds must be 1–3600.") }
            timeout = .seconds(s)
        }
        let rid = RunRequest.newRunId()
        runId = rid
        let req: RunRequest
        switch (body["template"]?.stringValue, body["script"]?.stringValue) {
        case (let name?, nil):
            guard server.tools.executor.catalog.templates[name] != nil else { return error(404, "No template named '\(name)'.") }
            var inputs: [String: VariableInput] = [:]
            if let v = body["variables"] {
                guard case .object(let o) = v else { return error(400, "variables must be a JSON object.") }
                inputs = o.mapValues { .json($0) }
            }
            req = RunRequest(source: .template(name: name, inputs: inputs), timeout: timeout, runId: rid)
        case (nil, let script?):
            guard script.utf8.count <= TemplateTools.maxScriptBytes else { return error(413, "The script is too large.") }
            let net: NetworkPolicy = server.tools.executor.environment["POSTHOG_API_URL"] != nil ? .host : .none
            req = RunRequest(source: .script(source: script, label: "script.py"), timeout: timeout, network: net, runId: rid)
        default:
            return error(400, "Give exactly one of template or script.")
        }
        guard await server.gate.enter() else {
            var h = HTTPFields()
            h[.retryAfter] = "5"
            return error(429, "Too many runs in progress and queued; retry in a few seconds.", headers: h)
        }
        let killer = ProcessKiller()
        server.running.add(rid, killer)
        let result = await server.tools.executor.run(req, killer: killer)
        server.running.remove(rid)
        await server.gate.leave()
        let status: Int
        switch result.errorKind {
        case .badInput?: status = 400
        case .unavailable?: status = 503
        default: status = 200
        }
        return Response(status: .init(code: status), headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: result.jsonText(pretty: false))))
    }

    func json(_ status: Int, _ value: JSONValue, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json"
        return Response(status: .init(code: status), headers: h, body: ResponseBody(byteBuffer: ByteBuffer(string: value.jsonText())))
    }

    func error(_ status: Int, _ message: String, headers: HTTPFields = [:]) -> Response {
        json(status, .object(["error": .string(message), "status": .int(status)]), headers: headers)
    }

    func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff = UInt8(x.count == y.count ? 0 : 1)
        for i in 0..<max(x.count, y.count) { diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0) }
        return diff == 0
    }
}

extension HTTPField.Name {
    static let retryAfter = Self("Retry-After")!
}
