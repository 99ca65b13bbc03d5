import Foundation
import MCP
import SandboxRunner

/// The agent-facing view of the catalog: one tool per template (schemas derived from the
/// manifest), `run_script` and `list_templates`, and the calls that run them through the
/// executor. Used by the MCP server; nothing here runs a sandbox itself.
public struct TemplateTools: Sendable {
    public static let runScript = "run_script"
    public static let listTemplates = "list_templates"
    public static let maxScriptBytes = 256 * 1024

    public var executor: Executor

    public init(executor: Executor) { self.executor = executor }

    var templates: [Template] { executor.catalog.names.compactMap { try? executor.catalog.template(named: $0) } }

    /// Every tool, with truthful annotations: read-only templates say so, writers do not.
    public func tools() -> [Tool] {
        let result = value(TemplateSchema.result(dataSchema: nil))
        var tools = templates.map { t -> Tool in
            let m = t.manifest
            return Tool(name: m.name, title: m.title, description: m.description,
                        inputSchema: value(TemplateSchema.input(m)),
                        annotations: .init(title: m.title, readOnlyHint: m.isReadOnly, destructiveHint: m.isReadOnly ? nil : false,
                                           idempotentHint: m.isReadOnly, openWorldHint: m.usesPostHog),
                        outputSchema: value(TemplateSchema.result(dataSchema: m.output)))
        }
        tools.append(Tool(
            name: Self.runScript, title: "Run a Python script in the sandbox",
            description: "Runs ad hoc Python 3 in the same sandbox and result contract as the templates. The script can "
                + "`from posthog_driver import PostHogClient, emit` (PostHog settings come from the server's environment) "
                + "and should print one JSON document. It has no network unless the server allows PostHog access.",
            inputSchema: .object([
                "type": "object", "additionalProperties": false, "required": ["script"],
                "properties": .object([
                    "script": .object(["type": "string", "description": "The Python source.", "maxLength": .int(Self.maxScriptBytes)]),
                    "timeoutSeconds": .object(["type": "integer", "minimum": 1, "maximum": 3600, "description": "Wall-clock limit (default 60)."]),
                ]),
            ]),
            annotations: .init(title: "Run a Python script", readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true),
            outputSchema: result))
        tools.append(Tool(
            name: Self.listTemplates, title: "List the analytics templates",
            description: "Lists every template with its description, whether it writes to PostHog, and its input schema.",
            inputSchema: .object(["type": "object", "additionalProperties": false, "properties": .object([:])]),
            annotations: .init(title: "List templates", readOnlyHint: true, idempotentHint: true, openWorldHint: false)))
        return tools
    }

    /// Runs a tool. Unknown tools are protocol errors (thrown); a failed run is a result with
    /// `isError` and an actionable sentence first.
    public func call(name: String, arguments: [String: Value]?, killer: ProcessKiller = ProcessKiller()) async throws -> CallTool.Result {
        let args = try (arguments ?? [:]).mapValues { try jsonValue($0) }
        if name == Self.listTemplates {
            let list: JSONValue = .array(templates.map { t in
                .object(["name": .string(t.name), "description": .string(t.manifest.description),
                         "readOnly": .bool(t.manifest.isReadOnly), "inputSchema": TemplateSchema.input(t.manifest)])
            })
            let doc: JSONValue = .object(["templates": list])
            return try CallTool.Result(content: [.text(text: doc.jsonText(), annotations: nil, _meta: nil)], structuredContent: value(doc))
        }
        let request: RunRequest
        if name == Self.runScript {
            guard case .string(let script)? = args["script"], !script.isEmpty else {
                throw MCPError.invalidParams("run_script needs `script`, the Python source as a string.")
            }
            guard script.utf8.count <= Self.maxScriptBytes else {
                throw MCPError.invalidParams("The script is over \(Self.maxScriptBytes) bytes.")
            }
            let extra = Set(args.keys).subtracting(["script", "timeoutSeconds"])
            guard extra.isEmpty else { throw MCPError.invalidParams("run_script takes script and timeoutSeconds only; got \(extra.sorted().joined(separator: ", ")).") }
            var timeout: Duration?
            if let t = args["timeoutSeconds"] {
                guard let s = t.intValue, (1...3600).contains(s) else { throw MCPError.invalidParams("timeoutSeconds must be 1–3600.") }
                timeout = .seconds(s)
            }
            let usesPostHog = executor.environment["POSTHOG_API_URL"] != nil
            request = RunRequest(source: .script(source: script, label: "run_script.py"), timeout: timeout, network: usesPostHog ? .host : NetworkPolicy.none)
        } else {
            guard executor.catalog.templates[name] != nil else { throw MCPError.invalidParams("Unknown tool '\(name)'.") }
            request = RunRequest(source: .template(name: name, inputs: args.mapValues { .json($0) }))
        }
        let result = await executor.run(request, killer: killer)
        let doc = JSONValue.parse(Data(result.jsonText(pretty: false).utf8)) ?? .null
        var content: [Tool.Content] = []
        if !result.success {
            content.append(.text(text: result.error ?? "The run failed.", annotations: nil, _meta: nil))
        }
        content.append(.text(text: result.jsonText(pretty: false), annotations: nil, _meta: nil))
        return try CallTool.Result(content: content, structuredContent: value(doc), isError: !result.success)
    }

    func value(_ j: JSONValue) -> Value {
        (try? JSONDecoder().decode(Value.self, from: Data(j.jsonText().utf8))) ?? .null
    }

    func jsonValue(_ v: Value) throws -> JSONValue {
        guard let j = JSONValue.parse(try JSONEncoder().encode(v)) else { throw MCPError.invalidParams("Arguments must be JSON values.") }
        return j
    }
}
