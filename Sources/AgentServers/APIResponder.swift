import Foundation
import HTTPTypes
import Hummingbird
import MCP
import NIOCore
import NIOPosix
import SandboxRunner

/// The routes of `serve`, with the methods each allows (405 with `Allow` otherwise).
enum APIRoute: Equatable {
    case healthz, openapi, templates, template(String), runs, run(String), runEvents(String), runArtifact(String, String), runReport(String), mcp

    static func match(_ path: String) -> APIRoute? {
        let s = path.split(separator: "/").map(String.init)
        switch s.count {
        case 1 where s[0] == "healthz": return .healthz
        case 1 where s[0] == "openapi.json": return .openapi
        case 1 where s[0] == "mcp": return .mcp
        case 2 where s == ["v1", "templates"]: return .templates
        case 2 where s == ["v1", "runs"]: return .runs
        case 3 where s[0] == "v1" && s[1] == "templates": return .template(s[2])
        case 3 where s[0] == "v1" && s[1] == "runs": return .run(s[2])
        case 4 where s[0] == "v1" && s[1] == "runs" && s[3] == "events": return .runEvents(s[2])
        case 5... where s[0] == "v1" && s[1] == "runs" && s[3] == "artifacts":
            // The name is the rest of the path (it may hold directories), each component decoded.
            let parts = s[4...].map { $0.removingPercentEncoding ?? $0 }
            return .runArtifact(s[2], parts.joined(separator: "/"))
        case 4 where s[0] == "v1" && s[1] == "runs" && s[3] == "report": return .runReport(s[2])
        default: return nil
        }
    }

    var methods: [HTTPRequest.Method] {
        switch self {
        case .healthz, .openapi, .templates, .template, .runEvents, .runArtifact, .runReport: return [.get]
        case .runs: return [.post]
        case .run: return [.get, .delete]
        case .mcp: return [.post, .get, .delete]
        }
    }

    var isPublic: Bool { self == .healthz || self == .openapi }
}

struct APIResponder: HTTPResponder {
    typealias Context = APIContext
    let server: HTTPAPIServer
    var executor: Executor { server.tools.executor }

    func respond(to request: Request, context: APIContext) async throws -> Response {
        let clock = ContinuousClock()
        let start = clock.now
        var runId: String?
        let response = await route(request, context: context, runId: &runId)
        var log: [String: JSONValue] = ["method": .string(request.method.rawValue), "path": .string(request.uri.path),
                                        "status": .int(response.status.code), "ms": .int(Int((clock.now - start).milliseconds))]
        if let runId { log["runId"] = .string(runId) }
        FileHandle.standardError.write(Data((JSONValue.object(log).jsonText() + "\n").utf8))
        return response
    }

    func route(_ request: Request, context: APIContext, runId: inout String?) async -> Response {
        guard let route = APIRoute.match(request.uri.path) else {
            return error(RunnerError(.notFound, "No route \(request.uri.path.prefix(200)); see /openapi.json for the routes."))
        }
        if !route.isPublic, let token = server.config.token {
            let given = request.headers[.authorization] ?? ""
            guard given.hasPrefix("Bearer "), constantTimeEqual(String(given.dropFirst(7)), token) else {
                var h = HTTPFields()
                h[.wwwAuthenticate] = "Bearer"
                return error(RunnerError(.unauthorized, "Missing or wrong bearer token: send Authorization: Bearer $SANDBOX_RUNNER_TOKEN."),
                             headers: h)
            }
        }
        guard route.methods.contains(request.method) else {
            var h = HTTPFields()
            h[.allow] = route.methods.map(\.rawValue).joined(separator: ", ")
            return error(RunnerError(.methodNotAllowed, "\(request.method.rawValue) is not allowed on \(request.uri.path.prefix(200)); "
                + "use \(route.methods.map(\.rawValue).joined(separator: " or ")).") , headers: h)
        }
        switch route {
        case .healthz:
            if server.gate.isDraining {
                return error(RunGate.shuttingDown)
            }
            return json(200, .object(["ok": .bool(true), "templates": .int(executor.catalog.names.count), "backend": .string(executor.backend.name),
                                      "running": .int(server.gate.inFlight)]))
        case .openapi:
            return json(200, OpenAPIDocument.make(tools: server.tools))
        case .templates:
            let list = executor.catalog.names.compactMap { try? executor.catalog.template(named: $0) }
            return json(200, .object(["templates": .array(list.map(describe))]))
        case .template(let name):
            guard let t = executor.catalog.templates[name] else { return error(Self.noTemplate(name)) }
            return json(200, describe(t))
        case .runs:
            return await startRun(request, context: context, runId: &runId)
        case .run(let id):
            runId = id
            if request.method == .delete {
                guard let doc = await server.runs.delete(id) else { return error(Self.noRun(id)) }
                server.tools.artifacts?.remove(runId: id)
                return json(200, doc)
            }
            guard let r = server.runs.record(id) else { return error(Self.noRun(id)) }
            return json(200, server.runs.status(r))
        case .runEvents(let id):
            runId = id
            guard let events = server.runs.subscribe(id) else { return error(Self.noRun(id)) }
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                            body: ResponseBody { writer in
                                for await e in events { try await writer.write(ByteBuffer(string: e.sse)) }
                                try await writer.finish(nil)
                            })
        case .runArtifact(let id, let name):
            runId = id
            return artifact(request, runId: id, name: name)
        case .runReport(let id):
            runId = id
            guard let r = server.runs.record(id) else { return error(Self.noRun(id)) }
            let (state, result) = server.runs.snapshot(r)
            let html = result.map { HTMLReport.render(Report.make($0, view: $0.template.flatMap { executor.catalog.templates[$0]?.manifest.view })) }
                ?? HTMLReport.renderPending(runId: id, template: r.template, state: state.rawValue)
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
        case .mcp:
            return await mcp(request)
        }
    }

    /// `GET /v1/runs/{id}/artifacts/{name}`: a file the run left in out/, while the run is retained.
    /// Only names its result listed are served, read descriptor-relative without following links.
    func artifact(_ request: Request, runId id: String, name: String) -> Response {
        guard server.runs.record(id) != nil else { return error(Self.noRun(id)) }
        guard let store = server.tools.artifacts, let file = store.open(runId: id, name: name) else {
            return error(RunnerError(.notFound, "Run \(id.prefix(100)) has no artifact named '\(TerminalText.escape(String(name.prefix(200))))'; "
                + "its result lists the ones it has (artifacts)."))
        }
        let a = file.artifact
        var h = HTTPFields()
        h[.contentType] = a.mediaType
        h[.contentLength] = String(a.bytes)
        h[.eTag] = "\"\(a.sha256)\""
        h[.cacheControl] = "private, max-age=0"
        h[.contentDisposition] = "attachment; filename=\"\(Self.dispositionName(a.name))\""
        h[.xContentTypeOptions] = "nosniff"
        h[.contentSecurityPolicy] = "sandbox; default-src 'none'"
        let tags = request.headers[values: .ifNoneMatch].flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        if tags.contains("\"\(a.sha256)\"") || tags.contains("*") {
            close(file.fd)
            h[.contentLength] = nil
            return Response(status: .notModified, headers: h)
        }
        let fd = OwnedFD(file.fd)
        return Response(status: .ok, headers: h, body: ResponseBody(contentLength: a.bytes) { writer in
            defer { fd.close() }
            var left = a.bytes
            while left > 0 {
                let want = min(left, 64 * 1024)
                let chunk = try await NIOThreadPool.singleton.runIfActive { () throws -> [UInt8] in
                    var buffer = [UInt8](repeating: 0, count: want)
                    while true {
                        let n = buffer.withUnsafeMutableBytes { read(fd.fd, $0.baseAddress, $0.count) }
                        if n < 0 && errno == EINTR { continue }
                        guard n > 0 else { throw ArtifactReadFailure() }
                        return Array(buffer[0..<n])
                    }
                }
                left -= chunk.count
                try await writer.write(ByteBuffer(bytes: chunk))
            }
            try await writer.finish(nil)
        })
    }

    /// A name for Content-Disposition: the last component, quotes and control characters replaced.
    static func dispositionName(_ name: String) -> String {
        let leaf = name.split(separator: "/").last.map(String.init) ?? name
        return String(leaf.unicodeScalars.map { s -> Character in
            s == "\"" || s == "\\" || s.value < 0x20 || s.value == 0x7F || !s.isASCII ? "_" : Character(s)
        })
    }

    static func noTemplate(_ name: String) -> RunnerError {
        RunnerError(.notFound, phrase: "No template named '\(name.prefix(100))'; GET /v1/templates lists them.", parameter: .template)
    }

    static func noRun(_ id: String) -> RunnerError {
        RunnerError(.notFound, "No run \(id.prefix(100)) here: it never existed, was deleted, or finished longer ago than the retention period.")
    }

    func describe(_ t: Template) -> JSONValue {
        .object(["name": .string(t.name), "title": t.manifest.title.map(JSONValue.string) ?? .null,
                 "description": .string(t.manifest.description), "readOnly": .bool(t.manifest.isReadOnly),
                 "inputSchema": TemplateSchema.input(t.manifest), "resultSchema": RunResult.jsonSchema(dataSchema: t.manifest.output),
                 "example": .object(t.manifest.example ?? [:])])
    }

    // MARK: runs

    static let runFields: Set<String> = ["template", "script", "variables", "timeoutSeconds", "backend", "wait"]

    /// Reads and checks a run request; every problem is an `Error` naming the JSON field.
    func parseRun(_ request: inout Request) async -> Result<(RunRequest, wait: Bool), RunnerError> {
        let limit = server.config.maxBodyBytes
        guard let buffer = try? await request.collectBody(upTo: limit) else {
            return .failure(RunnerError(.tooLarge, "The request body is over \(limit) bytes; send a smaller script or fewer variables."))
        }
        guard case .object(let body)? = JSONValue.parse(Data(buffer.readableBytesView)) else {
            return .failure(RunnerError(.badInput, "The body must be a JSON object: {\"template\": NAME, \"variables\": {...}} or {\"script\": SOURCE}."))
        }
        if let extra = Set(body.keys).subtracting(Self.runFields).sorted().first {
            return .failure(RunnerError(.badInput, "Field '\(extra.prefix(100))' is unknown; the fields are \(Self.runFields.sorted().joined(separator: ", "))."))
        }
        if let b = body["backend"] {
            guard b.stringValue == executor.backend.name else {
                return .failure(RunnerError(.badInput, "Field 'backend' must be \"\(executor.backend.name)\": this server runs on that backend only."))
            }
        }
        var wait = true
        if let w = body["wait"] {
            guard let b = w.boolValue else { return .failure(RunnerError(.badInput, "Field 'wait' must be true or false.")) }
            wait = b
        }
        var timeout: Duration?
        if let t = body["timeoutSeconds"] {
            let max = Int(Executor.maximumTimeout.components.seconds)
            guard case .int(let s) = t, (1...max).contains(s) else {
                return .failure(RunnerError(.badInput, phrase: "\(subject: .timeout) must be a whole number of seconds from 1 to \(max).",
                                            parameter: .timeout))
            }
            timeout = .seconds(s)
        }
        switch (body["template"], body["script"]) {
        case (.some(let t), nil):
            guard let name = t.stringValue else {
                return .failure(RunnerError(.badInput, phrase: "\(subject: .template) must be a template's name.", parameter: .template))
            }
            guard executor.catalog.templates[name] != nil else { return .failure(Self.noTemplate(name)) }
            var inputs: [String: VariableInput] = [:]
            if let v = body["variables"] {
                guard case .object(let o) = v else { return .failure(RunnerError(.badInput, "Field 'variables' must be a JSON object.")) }
                inputs = o.mapValues { .json($0) }
            }
            return .success((RunRequest(source: .template(name: name, inputs: inputs), timeout: timeout, surface: .http), wait))
        case (nil, .some(let s)):
            if body["variables"] != nil {
                return .failure(RunnerError(.badInput, "Field 'variables' goes with template; a script takes none."))
            }
            guard let script = s.stringValue, !script.isEmpty else {
                return .failure(RunnerError(.badInput, phrase: "\(subject: .script) must be the Python source as a non-empty string.",
                                            parameter: .script))
            }
            guard script.unicodeScalars.count <= TemplateTools.maxScriptCharacters else {
                return .failure(RunnerError(.badInput, phrase: "\(subject: .script) is over \(TemplateTools.maxScriptCharacters) characters; send a smaller script.",
                                            parameter: .script))
            }
            let net: NetworkPolicy = executor.environment["POSTHOG_API_URL"] != nil ? executor.postHogNetwork : .none
            return .success((RunRequest(source: .script(source: script, label: "script.py"), timeout: timeout, network: net, surface: .http), wait))
        default:
            return .failure(RunnerError(.badInput, "Give exactly one of the fields template and script."))
        }
    }

    func startRun(_ request: Request, context: APIContext, runId: inout String?) async -> Response {
        var request = request
        let parsed: (RunRequest, wait: Bool)
        switch await parseRun(&request) {
        case .failure(let e): return error(e)
        case .success(let p): parsed = p
        }
        var (run, wait) = parsed
        runId = run.runId
        let template: String? = { if case .template(let n, _) = run.source { return n }; return nil }()
        // Bad variables are refused before a slot or a sandbox is taken.
        do { _ = try executor.prepare(run) } catch let e as RunnerError {
            return error(e, runId: run.runId)
        } catch {
            return self.error(RunnerError(.internalError, "The run could not be prepared: \(error)."), runId: run.runId)
        }
        run = server.tools.collecting(run)
        if !wait {
            switch server.runs.submit(run, template: template) {
            case .failure(let e): return error(e)
            case .success(let record):
                var h = HTTPFields()
                h[.location] = "/v1/runs/\(record.id)"
                return json(202, server.runs.status(record), headers: h)
            }
        }
        // A sync run is a run like the others: GET /v1/runs/{id} and its events work while it goes and after.
        let record = server.runs.register(run, template: template)
        let killer = record.killer
        let watch = DisconnectWatch(killer: killer)
        context.channel.closeFuture.whenComplete { _ in watch.fire() }
        server.connections.onHangup(context.channel) { watch.fire() }
        if let refusal = await server.gate.enter(killer: killer) {
            watch.disarm()
            server.runs.forget(record)
            return error(refusal, runId: run.runId)
        }
        _ = server.runs.start(record)
        let streams = OutputStreams(redactor: executor.redactor) { [runs = server.runs] name, text in runs.emit(record, name, text) }
        run.onOutput = { fd, chunk in streams.feed(fd, chunk) }
        server.running.add(run.runId, killer)
        let result = server.tools.recorded(await executor.run(run, killer: killer), urls: true)
        watch.disarm()
        server.running.remove(run.runId)
        streams.flush()
        server.gate.leave()
        server.runs.finish(record, result)
        if let kind = result.errorKind, !kind.isRunOutcome {
            return error(RunnerError(kind, result.error ?? "The run failed."), runId: run.runId)
        }
        return Response(status: .ok, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: result.jsonText(pretty: false))))
    }

    // MARK: MCP

    func mcp(_ request: Request) async -> Response {
        var request = request
        var headers: [String: String] = [:]
        for field in request.headers {
            let name = field.name.canonicalName
            headers[name] = headers[name].map { $0 + ", " + field.value } ?? field.value
        }
        var body: Data?
        if request.method == .post {
            guard let buffer = try? await request.collectBody(upTo: server.config.maxBodyBytes) else {
                return error(RunnerError(.tooLarge, "The request body is over \(server.config.maxBodyBytes) bytes."))
            }
            body = Data(buffer.readableBytesView)
        }
        let answer = await server.mcp.handle(MCP.HTTPRequest(method: request.method.rawValue, headers: headers, body: body, path: "/mcp"))
        var h = HTTPFields()
        for (k, v) in answer.headers { if let name = HTTPField.Name(k) { h[name] = v } }
        let status = HTTPResponse.Status(code: answer.statusCode)
        if case .stream(let stream, _) = answer {
            return Response(status: status, headers: h, body: ResponseBody { writer in
                do {
                    for try await chunk in stream { try await writer.write(ByteBuffer(bytes: chunk)) }
                } catch {}
                try await writer.finish(nil)
            })
        }
        return Response(status: status, headers: h, body: ResponseBody(byteBuffer: ByteBuffer(bytes: answer.bodyData ?? Data())))
    }

    // MARK: helpers

    func json(_ status: Int, _ value: JSONValue, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json"
        return Response(status: .init(code: status), headers: h, body: ResponseBody(byteBuffer: ByteBuffer(string: value.jsonText())))
    }

    /// The one error document: `{error, errorKind, status, field?, runId?}`.
    func error(_ e: RunnerError, runId: String? = nil, headers: HTTPFields = [:]) -> Response {
        let status = e.kind.isRunOutcome ? 500 : e.kind.httpStatus
        var doc: [String: JSONValue] = ["error": .string(executor.redactor.redact(e.message(for: .http))),
                                        "errorKind": .string(e.kind.rawValue), "status": .int(status)]
        if let field = e.parameter?.field(for: .http) { doc["field"] = .string(field) }
        if let runId { doc["runId"] = .string(runId) }
        var h = headers
        if e.kind == .rateLimited { h[.retryAfter] = "5" }
        if e.kind == .unavailable && h[.retryAfter] == nil { h[.retryAfter] = "5" }
        return json(status, .object(doc), headers: h)
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
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
}

struct ArtifactReadFailure: Error {}

