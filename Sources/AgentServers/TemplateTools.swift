import Foundation
import MCP
import SandboxRunner

/// The agent-facing view of the catalog: one tool per template (schemas derived from the
/// manifest), `run_script` and `list_templates`, and the calls that run them through the
/// executor. Used by the MCP servers (stdio and HTTP); nothing here runs a sandbox itself.
///
/// Every input problem of every tool is a tool result with `isError: true`, an actionable sentence
/// first and the result document (with `errorKind`) as `structuredContent`, so a model can fix its
/// call; only an unknown tool is a JSON-RPC error.
public struct TemplateTools: Sendable {
    public static let runScript = "run_script"
    public static let listTemplates = "list_templates"
    /// The longest script, in Unicode scalars (what JSON Schema's maxLength counts).
    public static let maxScriptCharacters = 128 * 1024
    /// The argument every running tool takes besides its variables (variable names are lower_snake_case: no clash).
    public static let timeoutArgument = "timeoutSeconds"

    public var executor: Executor
    /// Where runs' `out/` files are kept for the agent to read (`resources/read`, the HTTP
    /// artifacts route); nil: not collected.
    public var artifacts: ArtifactStore?
    public var artifactLimits = ArtifactLimits()
    /// Files up to this size come embedded in a tool result, besides their resource link.
    public static let embedLimit = 64 * 1024
    /// `resources/read` answers files up to this size (larger ones: the HTTP API or the CLI).
    public static let readLimit = 16 << 20

    public init(executor: Executor, artifacts: ArtifactStore? = nil) {
        self.executor = executor
        self.artifacts = artifacts
    }

    /// Points a request's `out/` at the store (when there is one).
    public func collecting(_ request: RunRequest) -> RunRequest {
        guard let artifacts else { return request }
        var r = request
        r.artifacts = artifacts.output(forRun: r.runId, limits: artifactLimits)
        return r
    }

    /// Registers a finished run's files with the store; the result's artifacts get their MCP
    /// `uri` (and, for `serve`, their `url`).
    public func recorded(_ result: RunResult, urls: Bool = false) -> RunResult {
        guard let artifacts else { return result }
        artifacts.record(result)
        var r = result
        for i in r.artifacts.indices {
            r.artifacts[i].uri = ArtifactStore.uri(runId: r.runId, name: r.artifacts[i].name)
            if urls { r.artifacts[i].url = "/v1/runs/\(r.runId)/artifacts/" + r.artifacts[i].urlEncodedName }
        }
        return r
    }

    var templates: [Template] { executor.catalog.names.compactMap { try? executor.catalog.template(named: $0) } }

    static var timeoutProperty: JSONValue {
        .object(["type": "integer", "minimum": 1, "maximum": .int(Int(Executor.maximumTimeout.components.seconds)),
                 "description": "Wall-clock limit in seconds (default: the template's, or 60)."])
    }

    /// A template's tool input: its variables (from the manifest) plus `timeoutSeconds`.
    static func inputSchema(_ m: TemplateManifest) -> JSONValue {
        guard case .object(var schema) = TemplateSchema.input(m), case .object(var props)? = schema["properties"] else {
            return TemplateSchema.input(m)
        }
        props[timeoutArgument] = timeoutProperty
        schema["properties"] = .object(props)
        return .object(schema)
    }

    static var listSchema: JSONValue {
        .object([
            "type": "object", "additionalProperties": false, "required": .array(["templates"]),
            "properties": .object(["templates": .object([
                "type": "array",
                "items": .object([
                    "type": "object", "required": .array(["name", "description", "readOnly", "inputSchema"]),
                    "properties": .object([
                        "name": .object(["type": "string"]), "description": .object(["type": "string"]),
                        "readOnly": .object(["type": "boolean"]), "inputSchema": .object(["type": "object"]),
                    ]),
                ]),
            ])]),
        ])
    }

    /// Every tool, with truthful annotations: read-only templates say so, writers do not.
    public func tools() -> [Tool] {
        var tools = templates.map { t -> Tool in
            let m = t.manifest
            return Tool(name: m.name, title: m.title, description: m.description,
                        inputSchema: value(Self.inputSchema(m)),
                        annotations: .init(title: m.title, readOnlyHint: m.isReadOnly, destructiveHint: m.isReadOnly ? nil : false,
                                           idempotentHint: m.isReadOnly, openWorldHint: m.usesPostHog),
                        outputSchema: value(RunResult.jsonSchema(dataSchema: m.output)))
        }
        tools.append(Tool(
            name: Self.runScript, title: "Run a Python script in the sandbox",
            description: "Runs ad hoc Python 3 in the same sandbox and result contract as the templates. The script can "
                + "`from posthog_driver import PostHogClient, emit` (PostHog settings come from the server's environment) "
                + "and should print one JSON document. It has no network unless the server allows PostHog access.",
            inputSchema: value(.object([
                "type": "object", "additionalProperties": false, "required": .array(["script"]),
                "properties": .object([
                    "script": .object(["type": "string", "minLength": 1, "description": "The Python source.",
                                       "maxLength": .int(Self.maxScriptCharacters)]),
                    Self.timeoutArgument: Self.timeoutProperty,
                ]),
            ])),
            annotations: .init(title: "Run a Python script", readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true),
            outputSchema: value(RunResult.jsonSchema())))
        tools.append(Tool(
            name: Self.listTemplates, title: "List the analytics templates",
            description: "Lists every template with its description, whether it writes to PostHog, and its input schema.",
            inputSchema: value(.object(["type": "object", "additionalProperties": false, "properties": .object([:])])),
            annotations: .init(title: "List templates", readOnlyHint: true, idempotentHint: true, openWorldHint: false),
            outputSchema: value(Self.listSchema)))
        return tools
    }

    /// Runs a tool. An unknown tool is a protocol error (thrown); everything else, bad arguments
    /// included, is a result (`isError` with a sentence first when it failed).
    public func call(name: String, arguments: [String: Value]?, killer: ProcessKiller = ProcessKiller()) async throws -> CallTool.Result {
        let isTemplate = executor.catalog.templates[name] != nil
        guard isTemplate || name == Self.runScript || name == Self.listTemplates else {
            throw MCPError.invalidParams("Unknown tool '\(name)'. Call tools/list for the tools this server has.")
        }
        let template = isTemplate ? name : nil
        var args: [String: JSONValue] = [:]
        for (k, v) in arguments ?? [:] {
            guard let j = jsonValue(v) else {
                return failure(RunnerError(.badInput, "Argument '\(k)' is not a JSON value."), template: template)
            }
            args[k] = j
        }

        if name == Self.listTemplates {
            if let extra = args.keys.sorted().first {
                return failure(RunnerError(.badInput, "list_templates takes no arguments; got '\(extra)'."), template: nil)
            }
            let list: JSONValue = .array(templates.map { t in
                .object(["name": .string(t.name), "description": .string(t.manifest.description),
                         "readOnly": .bool(t.manifest.isReadOnly), "inputSchema": Self.inputSchema(t.manifest)])
            })
            let doc: JSONValue = .object(["templates": list])
            let structured: Value? = value(doc)
            return CallTool.Result(content: [.text(text: doc.jsonText(), annotations: nil, _meta: nil)], structuredContent: structured)
        }

        var timeout: Duration?
        if let t = args.removeValue(forKey: Self.timeoutArgument) {
            let max = Int(Executor.maximumTimeout.components.seconds)
            guard let s = t.intValue, (1...max).contains(s) else {
                return failure(RunnerError(.badInput, phrase: "\(subject: .timeout) must be a whole number of seconds from 1 to \(max).",
                                           parameter: .timeout), template: template)
            }
            timeout = .seconds(s)
        }
        var request: RunRequest
        if name == Self.runScript {
            if let extra = Set(args.keys).subtracting(["script"]).sorted().first {
                return failure(RunnerError(.badInput, "run_script takes script and timeoutSeconds only; got '\(extra)'."), template: nil)
            }
            guard case .string(let script)? = args["script"], !script.isEmpty else {
                return failure(RunnerError(.badInput, phrase: "\(subject: .script) is required: the Python source as a non-empty string.",
                                           parameter: .script), template: nil)
            }
            guard script.unicodeScalars.count <= Self.maxScriptCharacters else {
                return failure(RunnerError(.badInput, phrase: "\(subject: .script) is over \(Self.maxScriptCharacters) characters; send a smaller script.",
                                           parameter: .script), template: nil)
            }
            let usesPostHog = executor.environment["POSTHOG_API_URL"] != nil
            request = RunRequest(source: .script(source: script, label: "run_script.py"), timeout: timeout,
                                 network: usesPostHog ? executor.postHogNetwork : NetworkPolicy.none, surface: .mcp)
        } else {
            request = RunRequest(source: .template(name: name, inputs: args.mapValues { .json($0) }), timeout: timeout, surface: .mcp)
        }
        return result(recorded(await executor.run(collecting(request), killer: killer)))
    }

    /// The tool result for a finished (or refused) run: its artifacts as resource links (small
    /// ones also embedded), readable with `resources/read`.
    func result(_ r: RunResult) -> CallTool.Result {
        var content: [Tool.Content] = []
        if !r.success { content.append(.text(text: r.error ?? "The run failed.", annotations: nil, _meta: nil)) }
        let text = r.jsonText(pretty: false)
        content.append(.text(text: text, annotations: nil, _meta: nil))
        for a in r.artifacts {
            guard let uri = a.uri else { continue }
            content.append(.resourceLink(uri: uri, name: a.name, title: nil,
                                         description: "\(a.bytes) bytes, sha256 \(a.sha256); a file the run left in out/.",
                                         mimeType: a.mediaType, annotations: nil))
            if a.bytes <= Self.embedLimit, let embedded = readResource(uri: uri) {
                content.append(.resource(resource: embedded, annotations: nil, _meta: nil))
            }
        }
        let structured: Value? = value(JSONValue.parse(Data(text.utf8)) ?? .null)
        return CallTool.Result(content: content, structuredContent: structured, isError: !r.success)
    }

    func failure(_ error: RunnerError, template: String?) -> CallTool.Result {
        result(RunResult.failure(error, surface: .mcp, runId: RunRequest.newRunId(), template: template, backend: executor.backend.name))
    }

    func value(_ j: JSONValue) -> Value {
        (try? JSONDecoder().decode(Value.self, from: Data(j.jsonText().utf8))) ?? .null
    }

    func jsonValue(_ v: Value) -> JSONValue? {
        guard let data = try? JSONEncoder().encode(v) else { return nil }
        return JSONValue.parse(data)
    }
}

extension TemplateTools {
    /// The contents of an artifact's URI (text for text types, else base64), or nil when the store
    /// has no such file or it is over `readLimit`.
    func readResource(uri: String) -> Resource.Content? {
        guard let store = artifacts, let (runId, name) = ArtifactStore.parse(uri: uri),
              let file = store.open(runId: runId, name: name) else { return nil }
        defer { close(file.fd) }
        guard file.artifact.bytes <= Self.readLimit else { return nil }
        var data = Data(count: file.artifact.bytes)
        let complete = data.withUnsafeMutableBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                let n = read(file.fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
        guard complete, SHA256.hex(data) == file.artifact.sha256 else { return nil }
        if file.artifact.isText, let text = String(data: data, encoding: .utf8) {
            return .text(text, uri: uri, mimeType: file.artifact.mediaType)
        }
        return .binary(data, uri: uri, mimeType: file.artifact.mediaType)
    }

    /// `resources/list`: every retained artifact.
    func listResources() -> [Resource] {
        guard let store = artifacts else { return [] }
        return store.all().flatMap { run in
            run.artifacts.map { a in
                Resource(name: a.name, uri: ArtifactStore.uri(runId: run.runId, name: a.name),
                         description: "A file run \(run.runId) left in out/ (sha256 \(a.sha256)).", mimeType: a.mediaType, size: a.bytes)
            }
        }
    }
}
