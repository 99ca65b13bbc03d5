import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SandboxRunner

/// E2B's control plane (`api.<domain>`): create, list, inspect, extend and kill sandboxes.
extension E2BLocalResponder {
    static let clientID = "e2b-local"

    func controlPlane(_ request: inout Request, segments: [String], context: E2BRequestContext) async -> Response {
        let method = request.method
        switch (method, segments) {
        case (.get, ["health"]):
            return Reply.json(200, .object(["status": .string("ok")]))
        default: break
        }
        guard let key = request.headers[.apiKey], !key.isEmpty else {
            return Reply.error(401, "Missing X-API-Key header: send your E2B API key in X-API-Key.")
        }
        guard key == config.apiKey else {
            return Reply.error(401, "Invalid API key: the X-API-Key header does not hold the key this server accepts.")
        }
        // Paths: /sandboxes…, /v2/sandboxes…; `id` is the segment after "sandboxes".
        let s = segments.first == "v2" ? Array(segments.dropFirst()) : segments
        let v2 = segments.first == "v2"
        guard s.first == "sandboxes", s.count <= 3 else {
            return Reply.error(404, "No such API route: \(method) \(request.uri.path).")
        }
        if s.count == 1 {
            if method == .post { return await create(&request, v2: v2, context: context) }
            if method == .get { return list(request, v2: v2) }
            return Reply.error(405, "\(method) is not allowed on \(request.uri.path).")
        }
        let id = s[1]
        let action = s.count == 3 ? s[2] : nil
        switch (method, action) {
        case (.get, nil) where !v2:
            guard let sandbox = state.registry.get(id) else { return notFound(id) }
            return Reply.json(200, detail(sandbox))
        case (.get, "metrics"?) where !v2:
            guard let sandbox = state.registry.get(id) else { return notFound(id) }
            let start = Query.value("start", in: request.uri.query).flatMap(Int.init).map { Date(timeIntervalSince1970: TimeInterval($0)) }
            let end = Query.value("end", in: request.uri.query).flatMap(Int.init).map { Date(timeIntervalSince1970: TimeInterval($0)) }
            let samples = await Blocking.run { sandbox.metrics(from: start, to: end) }
            return Reply.json(200, .array(samples.map(\.json)))
        case (.delete, nil) where !v2:
            return await state.registry.kill(id) ? Reply.empty(204) : notFound(id)
        case (.post, "timeout"?) where !v2:
            guard let sandbox = state.registry.get(id) else { return notFound(id) }
            switch await seconds(&request, field: "timeout", required: true) {
            case .failure(let r): return r.response
            case .success(let t): sandbox.setTimeout(max(0, t ?? config.defaultTimeout))
            }
            return Reply.empty(204)
        case (.post, "refreshes"?) where !v2:
            guard let sandbox = state.registry.get(id) else { return notFound(id) }
            switch await seconds(&request, field: "duration", required: false) {
            case .failure(let r): return r.response
            case .success(let t): sandbox.extend(toAtLeast: t ?? config.defaultTimeout)
            }
            return Reply.empty(204)
        case (.post, "connect"?):
            guard let sandbox = state.registry.get(id) else { return notFound(id) }
            switch await seconds(&request, field: "timeout", required: false) {
            case .failure(let r): return r.response
            case .success(let t): sandbox.extend(toAtLeast: t ?? config.defaultTimeout)
            }
            return Reply.json(200, created(sandbox))
        case (_, nil) where !v2, (_, "timeout"?) where !v2:
            return Reply.error(405, "\(method) is not allowed on \(request.uri.path).")
        default:
            return Reply.error(404, "No such API route: \(method) \(request.uri.path).")
        }
    }

    private func notFound(_ id: String) -> Response {
        Reply.error(404, "Sandbox \(id) not found: it was killed, reached its timeout or never existed.")
    }

    private func readJSON(_ request: inout Request) async -> Result<[String: JSONValue], ReplyError> {
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: 1 << 20) } catch {
            return .failure(ReplyError(Reply.error(413, "The request body is over 1 MiB.")))
        }
        if buffer.readableBytes == 0 { return .success([:]) }
        guard let value = JSONValue.parse(Data(buffer.readableBytesView)), let object = value.objectValue else {
            return .failure(ReplyError(Reply.error(400, "The request body is not a JSON object.")))
        }
        return .success(object)
    }

    private func seconds(_ request: inout Request, field: String, required: Bool) async -> Result<Int?, ReplyError> {
        let body: [String: JSONValue]
        switch await readJSON(&request) {
        case .failure(let e): return .failure(e)
        case .success(let b): body = b
        }
        guard let v = body[field] else {
            return required ? .failure(ReplyError(Reply.error(400, "The body needs \"\(field)\" in seconds."))) : .success(nil)
        }
        guard let t = v.intValue else {
            return .failure(ReplyError(Reply.error(400, "\"\(field)\" must be a whole number of seconds.")))
        }
        if t > config.maxTimeoutSeconds { return .failure(ReplyError(Reply.error(400, tooLong))) }
        return .success(t)
    }

    private func stringMap(_ value: JSONValue?, name: String) -> Result<[String: String], ReplyError> {
        guard let value, value != .null else { return .success([:]) }
        guard let o = value.objectValue else { return .failure(ReplyError(Reply.error(400, "\"\(name)\" must be an object of strings."))) }
        var out: [String: String] = [:]
        for (k, v) in o {
            guard let s = v.stringValue else { return .failure(ReplyError(Reply.error(400, "\"\(name)\".\(k) must be a string."))) }
            out[k] = s
        }
        return .success(out)
    }

    /// E2B's own message for a lifetime over the plan's (infra `handlers/timeout_helper.go`).
    var tooLong: String { "Timeout cannot be greater than \(config.maxSandboxHours) hours" }

    private func create(_ request: inout Request, v2: Bool, context: E2BRequestContext) async -> Response {
        if config.strict && !v2 {
            return Reply.error(410, "POST /sandboxes is deprecated: create sandboxes with POST /v2/sandboxes (e2b-local --strict).")
        }
        if let f = state.faults.take(.create429, path: request.uri.path) {
            var h = HTTPFields()
            if f.retryAfter > 0 { h[.retryAfter] = String(f.retryAfter) }
            return Reply.error(429, "Rate limit exceeded (injected fault): too many sandbox creates, retry later.", headers: h)
        }
        if let f = state.faults.take(.create5xx, path: request.uri.path) {
            return Reply.error(f.status, "Failed to create the sandbox (injected fault \(f.status)).")
        }
        let raw: ByteBuffer
        do { raw = try await request.collectBody(upTo: 1 << 20) } catch { return Reply.error(413, "The request body is over 1 MiB.") }
        guard let parsed = raw.readableBytes == 0 ? JSONValue.object([:]) : JSONValue.parse(Data(raw.readableBytesView)),
              let body = parsed.objectValue else {
            return Reply.error(400, "Error when parsing request: the body is not a JSON object.")
        }
        // Idempotency-Key (SDK 2.63 `retry.py`: 1–255 of [a-z0-9-]): the same key and body get the
        // same sandbox, however many times the create is retried.
        var idempotency: (key: String, fingerprint: String)?
        if let key = request.headers[.idempotencyKey] {
            guard (1...255).contains(key.count), key.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }) else {
                return Reply.error(400, "Invalid Idempotency-Key: 1 to 255 lowercase letters, digits or hyphens.")
            }
            let fingerprint = (v2 ? "v2 " : "v1 ") + JSONValue.object(body).jsonText()
            if let (status, answer) = state.registry.claim(key: key, fingerprint: fingerprint) {
                return Reply.json(status, answer)
            }
            idempotency = (key, fingerprint)
        }
        let response = await createSandbox(body, v2: v2)
        if let idempotency {
            state.registry.settle(key: idempotency.key, fingerprint: idempotency.fingerprint,
                                  answer: response.status == 201 ? response.body : nil)
        }
        if response.status == 201, state.faults.take(.createDrop, path: request.uri.path) != nil {
            // The sandbox exists but its 201 never reaches the client (a lost answer).
            state.logger.info("create answer dropped (injected fault)")
            try? await context.channel.close()
        }
        return Reply.json(response.status, response.body)
    }

    private func createSandbox(_ body: [String: JSONValue], v2: Bool) async -> (status: Int, body: JSONValue) {
        func refuse(_ status: Int, _ message: String) -> (Int, JSONValue) { (status, Reply.errorBody(status, message)) }
        guard let template = body["templateID"]?.stringValue, !template.isEmpty else {
            return refuse(400, "Error when parsing request: templateID is required.")
        }
        // infra `cache/templates/errors.go`: an unknown template is 404 "template '<id>' not found".
        guard config.templates.contains(template) else { return refuse(404, "template '\(template)' not found") }
        var lifetime = config.defaultTimeout
        if let t = body["timeout"], t != .null {
            guard let n = t.intValue else { return refuse(400, "Error when parsing request: timeout must be an integer.") }
            // infra `handlers/timeout_helper.go`, validateAndParseTimeout.
            guard n > 0 else { return refuse(400, "Timeout must be greater than 0") }
            guard n <= config.maxTimeoutSeconds else { return refuse(400, tooLong) }
            lifetime = n
        }
        let metadata: [String: String], envVars: [String: String]
        switch stringMap(body["metadata"], name: "metadata") {
        case .failure(let e): return (e.response.status.code, Reply.errorBody(e.response.status.code, "\"metadata\" must be an object of strings."))
        case .success(let m): metadata = m
        }
        switch stringMap(body["envVars"], name: "envVars") {
        case .failure(let e): return (e.response.status.code, Reply.errorBody(e.response.status.code, "\"envVars\" must be an object of strings."))
        case .success(let m): envVars = m
        }
        let network: SandboxNetwork
        switch NetworkOptions.validate(allowInternetAccess: body["allow_internet_access"] ?? body["allowInternetAccess"],
                                       network: body["network"]) {
        case .failure(let f): return refuse(f.status, f.message)
        case .success(let n): network = n
        }
        // v2 secures every sandbox; the deprecated route only when asked (infra `sandbox_create.go`).
        let secure = v2 || body["secure"]?.boolValue == true
        do {
            let s = try await state.registry.create(templateID: template, lifetime: lifetime, metadata: metadata, envVars: envVars,
                                                    secure: secure, network: network)
            state.logger.info("sandbox created", metadata: ["sandbox": .string(s.id), "template": .string(template),
                                                            "timeout_s": .stringConvertible(lifetime)])
            return (201, created(s))
        } catch let r as SandboxRegistry.Refusal {
            return refuse(r.status, r.message)
        } catch {
            return refuse(500, "Could not create the sandbox: \(error).")
        }
    }

    private func created(_ s: LocalSandbox) -> JSONValue {
        .object([
            "sandboxID": .string(s.id), "templateID": .string(s.templateID), "alias": .string(s.templateID),
            "clientID": .string(Self.clientID), "envdVersion": .string(E2BLocalConfiguration.envdVersion),
            "envdAccessToken": s.secure ? .string(s.accessToken) : .null,
            "trafficAccessToken": .string(s.trafficAccessToken), "domain": .string(config.domain),
        ])
    }

    private func listed(_ s: LocalSandbox) -> [String: JSONValue] {
        [
            "sandboxID": .string(s.id), "templateID": .string(s.templateID), "alias": .string(s.templateID),
            "clientID": .string(Self.clientID), "startedAt": .string(s.startedAt.rfc3339), "endAt": .string(s.endAt.rfc3339),
            "cpuCount": .int(2), "memoryMB": .int(config.limits.memoryBytes >> 20), "diskSizeMB": .int((config.diskBytes + config.limits.tmpBytes + SandboxLauncher.shmBytes) >> 20),
            "state": .string("running"), "envdVersion": .string(E2BLocalConfiguration.envdVersion),
            "metadata": .object(s.metadata.mapValues(JSONValue.string)),
        ]
    }

    private func detail(_ s: LocalSandbox) -> JSONValue {
        var o = listed(s)
        o["envdAccessToken"] = s.secure ? .string(s.accessToken) : .null
        o["domain"] = .string(config.domain)
        o["allowInternetAccess"] = .bool(s.network.internet)
        if let n = s.network.config { o["network"] = n }
        return .object(o)
    }

    /// `GET /sandboxes` (everything) and `GET /v2/sandboxes` (filters, `limit`, `nextToken` ↔ `X-Next-Token`).
    private func list(_ request: Request, v2: Bool) -> Response {
        let query = request.uri.query
        var sandboxes = state.registry.all
        if let m = Query.value("metadata", in: query), !m.isEmpty {
            // The SDK sends metadata=urlencode({quote(k): quote(v)}): pairs joined by & inside one value.
            let wanted = Query.parse(m)
            sandboxes = sandboxes.filter { s in wanted.allSatisfy { k, v in s.metadata[k] == v } }
        }
        guard v2 else { return Reply.json(200, .array(sandboxes.map { .object(listed($0)) })) }
        if let states = Query.value("state", in: query), !states.isEmpty,
           !states.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == "running" }) {
            sandboxes = []
        }
        if let t = Query.value("template", in: query), !t.isEmpty { sandboxes = sandboxes.filter { $0.templateID == t } }
        // Newest first unless asked otherwise (spec/openapi.yml: order defaults to desc).
        if Query.value("order", in: query) != "asc" { sandboxes.reverse() }
        var limit = 100
        if let l = Query.value("limit", in: query) {
            guard let n = Int(l), (1...100).contains(n) else { return Reply.error(400, "limit must be from 1 to 100.") }
            limit = n
        }
        if let token = Query.value("nextToken", in: query), !token.isEmpty {
            guard let i = sandboxes.firstIndex(where: { $0.id == token }) else { return Reply.json(200, .array([])) }
            sandboxes = Array(sandboxes[i...])
        }
        var headers = HTTPFields()
        if sandboxes.count > limit { headers[.nextToken] = sandboxes[limit].id }
        return Reply.json(200, .array(sandboxes.prefix(limit).map { .object(listed($0)) }), headers: headers)
    }
}

/// A ready answer carried as an error through parsing helpers.
struct ReplyError: Error {
    let response: Response
    init(_ response: Response) { self.response = response }
}
