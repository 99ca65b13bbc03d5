import Foundation

/// The result document every run answers with (design.md, "The result document").
public struct RunResult: Sendable, Equatable {
    public static let schemaVersion = 1

    public var success: Bool
    public var output: String
    public var error: String?
    public var data: JSONValue?
    public var exitCode: Int32
    public var durationMs: Int
    public var template: String?
    public var backend: String
    public var runId: String
    public var stderr: String
    public var truncated: Bool
    public var timedOut: Bool = false
    public var isolation: String?
    public var network: String?
    public var bundleSha256: String?
    public var variables: [String: JSONValue]?
    /// Milliseconds per phase: validate, bundle, sandbox.
    public var timings: [String: Int] = [:]
    /// What went wrong, as a kind: nil on success.
    public var errorKind: RunnerError.Kind?
    /// Under the `posthog` network policy (local jail): every destination the script asked the
    /// egress proxy for, allowed or refused, with its bytes.
    public var egress: [EgressEntry]?
    /// The files the script left under `out/`, as the host received and checked them (empty when
    /// none, or when they could not be collected: `error` then says why).
    public var artifacts: [Artifact] = []

    /// The CLI's exit status for this result (README, "Errors").
    public var exitStatus: Int32 {
        if success { return 0 }
        if timedOut { return 124 }
        return errorKind?.exitCode ?? 1
    }

    /// A result for a run that never reached a sandbox (bad input, no jail): `exitCode` -1, the
    /// error phrased for the surface that asked.
    public static func failure(_ error: RunnerError, surface: RunnerError.Surface = .cli, runId: String, template: String?,
                               backend: String) -> RunResult {
        RunResult(success: false, output: "", error: error.message(for: surface), data: nil, exitCode: -1, durationMs: 0,
                  template: template, backend: backend, runId: runId, stderr: "", truncated: false, errorKind: error.kind)
    }
}

extension RunResult: Codable {
    enum CodingKeys: String, CodingKey {
        case schemaVersion, success, output, error, data, exitCode, durationMs, template, backend, runId, stderr, truncated,
             timedOut, isolation, network, bundleSha256, variables, timings, errorKind, egress, artifacts
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        success = try c.decode(Bool.self, forKey: .success)
        output = try c.decode(String.self, forKey: .output)
        error = try c.decodeIfPresent(String.self, forKey: .error)
        data = try c.decodeIfPresent(JSONValue.self, forKey: .data)
        exitCode = try c.decode(Int32.self, forKey: .exitCode)
        durationMs = try c.decode(Int.self, forKey: .durationMs)
        template = try c.decodeIfPresent(String.self, forKey: .template)
        backend = try c.decode(String.self, forKey: .backend)
        runId = try c.decode(String.self, forKey: .runId)
        stderr = try c.decode(String.self, forKey: .stderr)
        truncated = try c.decode(Bool.self, forKey: .truncated)
        timedOut = try c.decodeIfPresent(Bool.self, forKey: .timedOut) ?? false
        isolation = try c.decodeIfPresent(String.self, forKey: .isolation)
        network = try c.decodeIfPresent(String.self, forKey: .network)
        bundleSha256 = try c.decodeIfPresent(String.self, forKey: .bundleSha256)
        variables = try c.decodeIfPresent([String: JSONValue].self, forKey: .variables)
        timings = try c.decodeIfPresent([String: Int].self, forKey: .timings) ?? [:]
        errorKind = try c.decodeIfPresent(RunnerError.Kind.self, forKey: .errorKind)
        egress = try c.decodeIfPresent([EgressEntry].self, forKey: .egress)
        artifacts = try c.decodeIfPresent([Artifact].self, forKey: .artifacts) ?? []
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(Self.schemaVersion, forKey: .schemaVersion)
        try c.encode(success, forKey: .success)
        try c.encode(output, forKey: .output)
        try c.encode(error, forKey: .error)  // explicit null on success
        try c.encode(data, forKey: .data)
        try c.encode(exitCode, forKey: .exitCode)
        try c.encode(durationMs, forKey: .durationMs)
        try c.encode(template, forKey: .template)
        try c.encode(backend, forKey: .backend)
        try c.encode(runId, forKey: .runId)
        try c.encode(stderr, forKey: .stderr)
        try c.encode(truncated, forKey: .truncated)
        try c.encode(timedOut, forKey: .timedOut)
        try c.encodeIfPresent(isolation, forKey: .isolation)
        try c.encodeIfPresent(network, forKey: .network)
        try c.encodeIfPresent(bundleSha256, forKey: .bundleSha256)
        try c.encodeIfPresent(variables, forKey: .variables)
        try c.encode(timings, forKey: .timings)
        try c.encodeIfPresent(errorKind, forKey: .errorKind)
        try c.encodeIfPresent(egress, forKey: .egress)
        try c.encode(artifacts, forKey: .artifacts)
    }

    public func jsonText(pretty: Bool = true) -> String {
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? e.encode(self)) ?? Data(), as: UTF8.self)
    }
}

extension RunResult {
    /// The result document's JSON Schema: the one definition that `show --json`, the OpenAPI
    /// document (`RunResult`) and every MCP tool's output schema publish. `data` is the template's
    /// own output schema when it has one (any JSON value, or null when stdout was not JSON).
    public static func jsonSchema(dataSchema: JSONValue? = nil) -> JSONValue {
        func t(_ type: String, _ description: String) -> JSONValue { .object(["type": .string(type), "description": .string(description)]) }
        func nullable(_ type: String, _ description: String) -> JSONValue {
            .object(["type": .array([.string(type), "null"]), "description": .string(description)])
        }
        let data: JSONValue
        if let dataSchema {
            data = .object(["description": "stdout parsed as JSON: the template's output (null when the run failed before printing it).",
                            "anyOf": .array([dataSchema, .object(["type": "null"])])])
        } else {
            data = .object(["description": "stdout parsed as JSON when it is JSON, else null."])
        }
        let kinds = RunnerError.Kind.allCases.map { JSONValue.string($0.rawValue) }
        let properties: [String: JSONValue] = [
            "schemaVersion": .object(["const": .int(schemaVersion), "description": "Version of this document's shape."]),
            "success": t("boolean", "True only when the process exited 0 and nothing infrastructural failed."),
            "output": t("string", "stdout (redacted, capped at the output limit)."),
            "error": nullable("string", "What failed and what to do, one sentence; null on success."),
            "errorKind": .object(["type": .array([.string("string"), "null"]), "enum": .array(kinds + [.null]),
                                  "description": "The error vocabulary (README, \"Errors\"); null on success."]),
            "data": data,
            "exitCode": t("integer", "The script's exit status; 124 when the deadline stopped it, 128+N when signal N did, -1 when no process ran."),
            "durationMs": t("integer", "Wall-clock milliseconds of the whole run."),
            "template": nullable("string", "The template's name; null for an ad hoc script."),
            "backend": t("string", "Where it ran: local or e2b."),
            "runId": t("string", "The run's id."),
            "stderr": t("string", "stderr (redacted, capped)."),
            "truncated": t("boolean", "True when stdout or stderr was cut at the output limit."),
            "timedOut": t("boolean", "True when the run hit its timeout."),
            "isolation": t("string", "The isolation used: bubblewrap, weak, e2b."),
            "network": .object(["type": "string", "enum": .array(NetworkPolicy.allCases.map { .string($0.rawValue) }),
                                "description": "The sandbox's network: none, posthog (only the PostHog hosts, through the egress proxy; the key stays outside) or host."]),
            "egress": .object(["type": "array", "items": EgressEntry.jsonSchema,
                               "description": "Under the posthog policy: every destination the script asked for, allowed or refused, with bytes out and in."]),
            "bundleSha256": t("string", "sha256 of the bundle that ran."),
            "variables": .object(["type": "object", "description": "Every variable's final value, defaults included."]),
            "timings": .object(["type": "object", "additionalProperties": .object(["type": "integer"]),
                                "description": "Milliseconds per phase (prepareMs, sandboxMs)."]),
            "artifacts": .object(["type": "array", "items": artifactSchema,
                                  "description": "The files the script left under out/, as the host received and checked them."]),
        ]
        let required = ["schemaVersion", "success", "output", "error", "data", "exitCode", "durationMs", "template", "backend", "runId",
                        "stderr", "truncated", "timedOut", "timings", "artifacts"]
        return .object([
            "type": "object", "additionalProperties": false,
            "description": "The result document every run answers with.",
            "properties": .object(properties),
            "required": .array(required.map(JSONValue.string)),
        ])
    }
}

extension RunResult {
    /// One entry of `artifacts`.
    public static var artifactSchema: JSONValue {
        func t(_ type: String, _ description: String) -> JSONValue { .object(["type": .string(type), "description": .string(description)]) }
        return .object([
            "type": "object", "additionalProperties": false,
            "required": .array(["name", "bytes", "sha256", "mediaType"]),
            "properties": .object([
                "name": t("string", "The path relative to out/."),
                "bytes": t("integer", "Size in bytes."),
                "sha256": .object(["type": "string", "pattern": "^[0-9a-f]{64}$", "description": "sha256 of the bytes, computed by the host."]),
                "mediaType": t("string", "The media type, from the name's extension."),
                "path": t("string", "Where the CLI wrote it (CLI only)."),
                "url": t("string", "Where the HTTP API serves it: GET with the same bearer token (HTTP only)."),
                "uri": t("string", "Its MCP resource URI, readable with resources/read (MCP only)."),
            ]),
        ])
    }
}
