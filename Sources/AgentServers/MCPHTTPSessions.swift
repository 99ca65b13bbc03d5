import Foundation
import MCP
import SandboxRunner

/// MCP over Streamable HTTP at `/mcp` (the MCP Swift SDK's `StatefulHTTPServerTransport`, one per
/// session): `initialize` without a session opens one (`Mcp-Session-Id`), requests with the header
/// go to it, `DELETE` ends it. Sessions are bounded in number and expire when idle; ending one
/// kills the sandboxes of its calls. `server/discover` without a session is answered at once.
actor MCPHTTPSessions {
    struct Session {
        let server: Server
        let transport: StatefulHTTPServerTransport
        let runs: SessionRuns
        var lastUsed: ContinuousClock.Instant
    }

    let service: MCPService
    let maxSessions: Int
    let idleLimit: Duration
    let loopbackOnly: Bool
    private var sessions: [String: Session] = [:]
    private var closed = false

    init(service: MCPService, maxSessions: Int, idleLimit: Duration, loopbackOnly: Bool) {
        self.service = service
        self.maxSessions = max(1, maxSessions)
        self.idleLimit = idleLimit
        self.loopbackOnly = loopbackOnly
    }

    var count: Int { sessions.count }

    func handle(_ request: MCP.HTTPRequest) async -> MCP.HTTPResponse {
        if closed { return .error(statusCode: 503, .internalError("The server is shutting down; open a session on another instance.")) }
        if let id = request.header(HTTPHeaderName.sessionID) {
            guard var s = sessions[id] else {
                return .error(statusCode: 404, .invalidRequest("No MCP session \(id.prefix(64)) here (it ended or expired): initialize a new one."))
            }
            s.lastUsed = .now
            sessions[id] = s
            let response = await s.transport.handleRequest(request)
            if request.method.uppercased() == "DELETE" && response.statusCode == 200 { await end(id) }
            return response
        }
        let message = request.body.flatMap { JSONValue.parse($0) }
        let method = message?["method"]?.stringValue
        if request.method.uppercased() == "POST", method == Discover.name, let id = message?["id"] {
            return discover(id: id)
        }
        guard request.method.uppercased() == "POST", method == "initialize" else {
            return .error(statusCode: 400, .invalidRequest("Send initialize first (POST without Mcp-Session-Id), then every request with the Mcp-Session-Id it answers."))
        }
        return await open(request)
    }

    private func discover(id: JSONValue) -> MCP.HTTPResponse {
        let result: JSONValue = .object([
            "supportedVersions": .array(Version.supported.sorted().map { .string($0) }),
            "capabilities": .object(["tools": .object(["listChanged": .bool(false)])]),
            "instructions": .string(MCPService.instructions),
            "ttlMs": .int(0), "cacheScope": .string("private"), "resultType": .string("complete"),
        ])
        let body = JSONValue.object(["jsonrpc": "2.0", "id": id, "result": result]).jsonText()
        return .data(Data(body.utf8), headers: ["Content-Type": "application/json"])
    }

    private func open(_ request: MCP.HTTPRequest) async -> MCP.HTTPResponse {
        if sessions.count >= maxSessions {
            // Make room: the least recently used session with nothing running.
            if let victim = sessions.filter({ $0.value.runs.count == 0 }).min(by: { $0.value.lastUsed < $1.value.lastUsed })?.key {
                await end(victim)
            } else {
                return .error(statusCode: 503, .internalError("Too many MCP sessions with calls in progress; retry in a few seconds."),
                              extraHeaders: ["Retry-After": "5"])
            }
        }
        let id = UUID().uuidString.lowercased()
        let origin: OriginValidator = loopbackOnly ? .localhost() : .disabled
        let transport = StatefulHTTPServerTransport(
            sessionIDGenerator: FixedSessionID(id: id),
            validationPipeline: StandardValidationPipeline(validators: [
                origin, AcceptHeaderValidator(mode: .sseRequired), ContentTypeValidator(), ProtocolVersionValidator(), SessionValidator(),
            ]))
        let runs = SessionRuns()
        let initialized = InitializedFlag()
        let server = await service.makeServer(runs: runs, initialized: initialized)
        do {
            try await MCPService.start(server, transport: transport, initialized: initialized)
        } catch {
            return .error(statusCode: 500, .internalError("Could not open an MCP session: \(error)."))
        }
        sessions[id] = Session(server: server, transport: transport, runs: runs, lastUsed: .now)
        let response = await transport.handleRequest(request)
        if case .error = response { await end(id) }
        return response
    }

    private func end(_ id: String) async {
        guard let s = sessions.removeValue(forKey: id) else { return }
        s.runs.close()
        await s.server.stop()
    }

    /// Ends sessions idle for longer than the limit (and with nothing running).
    func expire(now: ContinuousClock.Instant) async {
        for (id, s) in sessions where now - s.lastUsed >= idleLimit && s.runs.count == 0 { await end(id) }
    }

    /// Ends every session (shutdown): their running calls are killed and their streams end.
    func closeAll() async {
        closed = true
        for id in Array(sessions.keys) { await end(id) }
    }

    func killAll() { for s in sessions.values { s.runs.close() } }
}

struct FixedSessionID: SessionIDGenerator {
    let id: String
    func generateSessionID() -> String { id }
}
