import SandboxRunner

/// OpenAPI 3.1 for the HTTP API. The templates' schemas come from their manifests and the result
/// document's from `RunResult.jsonSchema`; every 4xx/5xx of every operation is the `Error` document.
enum OpenAPIDocument {
    static func ref(_ name: String) -> JSONValue { .object(["$ref": .string("#/components/schemas/\(name)")]) }
    static func content(_ schema: JSONValue, type: String = "application/json") -> JSONValue { .object([type: .object(["schema": schema])]) }
    static func response(_ name: String) -> JSONValue { .object(["$ref": .string("#/components/responses/\(name)")]) }
    static func str(_ s: String) -> JSONValue { .string(s) }

    static func make(tools: TemplateTools) -> JSONValue {
        let executor = tools.executor
        let catalog = executor.catalog
        let templates = catalog.names.compactMap { try? catalog.template(named: $0) }
        let maxTimeout = Int(Executor.maximumTimeout.components.seconds)

        var schemas: [String: JSONValue] = [
            "RunResult": RunResult.jsonSchema(),
            "Error": .object([
                "type": "object", "additionalProperties": false,
                "required": .array(["error", "errorKind", "status"]),
                "description": "Every 4xx and 5xx answer. errorKind is the error vocabulary (README, \"Errors\").",
                "properties": .object([
                    "error": .object(["type": "string", "description": "What failed and what to do, one sentence."]),
                    "errorKind": .object(["type": "string", "enum": .array(RunnerError.Kind.allCases.map { .string($0.rawValue) })]),
                    "status": .object(["type": "integer", "minimum": 400, "maximum": 599]),
                    "field": .object(["type": "string", "description": "The request field the error is about (variables.NAME, timeoutSeconds, …)."]),
                    "runId": .object(["type": "string"]),
                ]),
            ]),
            "Health": .object([
                "type": "object", "required": .array(["ok", "templates", "backend", "running"]), "additionalProperties": false,
                "properties": .object([
                    "ok": .object(["const": .bool(true)]), "templates": .object(["type": "integer", "minimum": 0]),
                    "backend": .object(["type": "string"]), "running": .object(["type": "integer", "minimum": 0]),
                ]),
            ]),
            "Template": .object([
                "type": "object", "additionalProperties": false,
                "required": .array(["name", "title", "description", "readOnly", "inputSchema", "resultSchema", "example"]),
                "properties": .object([
                    "name": .object(["type": "string"]), "title": .object(["type": .array(["string", "null"])]),
                    "description": .object(["type": "string"]), "readOnly": .object(["type": "boolean"]),
                    "inputSchema": .object(["type": "object", "description": "JSON Schema of the variables."]),
                    "resultSchema": .object(["type": "object", "description": "JSON Schema of the result document, with this template's data."]),
                    "example": .object(["type": "object", "description": "Example variables."]),
                ]),
            ]),
            "TemplateList": .object([
                "type": "object", "required": .array(["templates"]), "additionalProperties": false,
                "properties": .object(["templates": .object(["type": "array", "items": ref("Template")])]),
            ]),
            "RunStatus": .object([
                "type": "object", "additionalProperties": false,
                "required": .array(["runId", "state", "template", "createdAt", "startedAt", "finishedAt", "links", "result"]),
                "properties": .object([
                    "runId": .object(["type": "string"]),
                    "state": .object(["type": "string", "enum": .array(RunState.allCases.map { .string($0.rawValue) })]),
                    "template": .object(["type": .array(["string", "null"])]),
                    "createdAt": .object(["type": "string", "format": "date-time"]),
                    "startedAt": .object(["type": .array(["string", "null"]), "format": "date-time"]),
                    "finishedAt": .object(["type": .array(["string", "null"]), "format": "date-time"]),
                    "links": .object(["type": "object", "required": .array(["self", "events", "report"]), "properties": .object([
                        "self": .object(["type": "string"]), "events": .object(["type": "string"]),
                        "report": .object(["type": "string", "description": "The run as one self-contained HTML page."]),
                    ])]),
                    "result": .object(["anyOf": .array([ref("RunResult"), .object(["type": "null"])]),
                                       "description": "The result document once the run has finished, else null."]),
                ]),
            ]),
        ]

        // The request: a template run or a script run, never both, never neither.
        let common: [String: JSONValue] = [
            "timeoutSeconds": .object(["type": "integer", "minimum": 1, "maximum": .int(maxTimeout),
                                       "description": "Wall-clock limit in seconds (default: the template's, or 60)."]),
            "backend": .object(["type": "string", "enum": .array([.string(executor.backend.name)]),
                                "description": "The backend this server runs on (the only one it accepts)."]),
            "wait": .object(["type": "boolean", "default": .bool(true),
                             "description": "false: answer 202 at once with the run's status and a Location to poll."]),
        ]
        var variants: [JSONValue] = templates.map { t in
            schemas["variables_\(t.name)"] = TemplateSchema.input(t.manifest)
            var props = common
            props["template"] = .object(["const": .string(t.name)])
            props["variables"] = ref("variables_\(t.name)")
            let needsVariables = t.manifest.variables.contains(where: \.isRequired)
            return .object(["type": "object", "additionalProperties": false,
                            "required": .array(needsVariables ? ["template", "variables"] : ["template"]),
                            "title": .string("run \(t.name)"), "properties": .object(props)])
        }
        var scriptProps = common
        scriptProps["script"] = .object(["type": "string", "minLength": 1, "maxLength": .int(TemplateTools.maxScriptCharacters),
                                         "description": "Ad hoc Python 3."])
        variants.append(.object(["type": "object", "additionalProperties": false, "required": .array(["script"]),
                                 "title": "run a script", "properties": .object(scriptProps)]))
        schemas["RunRequest"] = .object(["oneOf": .array(variants)])

        // One response object per error status, each the Error document.
        let errors: [(String, Int, String)] = [
            ("BadRequest", 400, "The request is malformed or a variable is invalid (field names it)."),
            ("Unauthorized", 401, "No or wrong bearer token."),
            ("NotFound", 404, "No such template, run or route."),
            ("MethodNotAllowed", 405, "The route does not take this method; Allow lists the ones it does."),
            ("PayloadTooLarge", 413, "The body or the script is over its limit."),
            ("TooManyRequests", 429, "Too many runs in progress and queued; retry after Retry-After seconds."),
            ("InternalError", 500, "sandbox-runner itself failed."),
            ("ServiceUnavailable", 503, "No sandbox can be had, or the server is shutting down; retry after Retry-After seconds."),
        ]
        var responses: [String: JSONValue] = [:]
        let retryAfter: JSONValue = .object(["Retry-After": .object(["schema": .object(["type": "integer", "minimum": 1]),
                                                                     "description": "Seconds to wait before retrying."])])
        for (name, status, description) in errors {
            var r: [String: JSONValue] = ["description": .string(description), "content": content(ref("Error"))]
            if status == 401 {
                r["headers"] = .object(["WWW-Authenticate": .object(["schema": .object(["type": "string"])])])
            } else if status == 405 {
                r["headers"] = .object(["Allow": .object(["schema": .object(["type": "string"]), "required": true])])
            } else if status == 429 || status == 503 {
                r["headers"] = retryAfter
            }
            responses[name] = .object(r)
        }
        func errorResponses(_ names: [String]) -> [String: JSONValue] {
            var out: [String: JSONValue] = [:]
            for (name, status, _) in errors where names.contains(name) { out[String(status)] = response(name) }
            return out
        }
        let always = ["MethodNotAllowed", "InternalError", "ServiceUnavailable"]
        let secured = always + ["Unauthorized"]
        let bearer: JSONValue = .array([.object(["bearer": .array([])])])
        let runIdParam: JSONValue = .object(["name": "id", "in": "path", "required": true, "schema": .object(["type": "string"]),
                                             "description": "The run's id (runId)."])
        func op(_ id: String, _ summary: String, _ ok: [String: JSONValue], errors names: [String], secure: Bool = true,
                extra: [String: JSONValue] = [:]) -> JSONValue {
            var o: [String: JSONValue] = ["operationId": .string(id), "summary": .string(summary),
                                          "responses": .object(ok.merging(errorResponses(names + (secure ? secured : always))) { a, _ in a })]
            o["security"] = secure ? bearer : .array([])
            for (k, v) in extra { o[k] = v }
            return .object(o)
        }
        func ok(_ status: String, _ description: String, _ schema: JSONValue, type: String = "application/json") -> [String: JSONValue] {
            [status: .object(["description": .string(description), "content": content(schema, type: type)])]
        }

        let runLink: (String) -> JSONValue = { id in
            .object(["operationId": .string(id), "parameters": .object(["id": "$response.body#/runId"])])
        }
        let runLinks: JSONValue = .object(["GetRun": runLink("getRun"), "DeleteRun": runLink("deleteRun"), "GetRunEvents": runLink("getRunEvents"),
                                           "GetRunReport": runLink("getRunReport")])
        // One Server-Sent Event as a client parses it.
        let sseEvent: JSONValue = .object([
            "type": "object", "required": .array(["event", "data"]),
            "properties": .object([
                "event": .object(["type": "string", "enum": .array(["state", "stdout", "stderr", "result"])]),
                "data": .object(["type": "string", "description": "JSON: {state} for state, {text} for stdout/stderr, the result document for result."]),
                "id": .object(["type": "string"]),
            ]),
        ])
        let paths: [String: JSONValue] = [
            "/healthz": .object(["get": op("getHealth", "Liveness and what the server has", ok("200", "Serving", ref("Health")), errors: [], secure: false)]),
            "/openapi.json": .object(["get": op("getOpenAPI", "This document", ok("200", "The OpenAPI document", .object(["type": "object"])), errors: [],
                                                secure: false)]),
            "/v1/templates": .object(["get": op("listTemplates", "Every template with its JSON Schema", ok("200", "The templates", ref("TemplateList")),
                                                errors: [])]),
            "/v1/templates/{name}": .object(["get": op(
                "getTemplate", "One template with its input and result schemas", ok("200", "The template", ref("Template")), errors: ["NotFound"],
                extra: ["parameters": .array([.object(["name": "name", "in": "path", "required": true, "schema": .object(["type": "string"])])])])]),
            "/v1/runs": .object(["post": op(
                "createRun", "Run a template or a script: the result document, or (wait: false) 202 and the run's status",
                [
                    "200": .object([
                        "description": "The run happened (it may have failed: see success and errorKind); it stays at /v1/runs/{id} for the retention period.",
                        "content": content(ref("RunResult")), "links": runLinks,
                    ]),
                    "202": .object([
                        "description": "Accepted: poll Location (GET /v1/runs/{id}) or stream /v1/runs/{id}/events.",
                        "headers": .object(["Location": .object(["schema": .object(["type": "string"]), "required": true])]),
                        "content": content(ref("RunStatus")), "links": runLinks,
                    ]),
                ],
                errors: ["BadRequest", "NotFound", "PayloadTooLarge", "TooManyRequests"],
                extra: ["requestBody": .object(["required": true, "content": content(ref("RunRequest"))])])]),
            "/v1/runs/{id}": .object([
                "parameters": .array([runIdParam]),
                "get": op("getRun", "A run's state, then its result", ok("200", "The run's status", ref("RunStatus")), errors: ["NotFound"]),
                "delete": op("deleteRun", "Cancel the run (its sandbox is killed) and forget it; answers its final status",
                             ok("200", "The run's final status", ref("RunStatus")), errors: ["NotFound"]),
            ]),
            "/v1/runs/{id}/artifacts/{name}": .object([
                "parameters": .array([runIdParam, .object([
                    "name": "name", "in": "path", "required": true, "schema": .object(["type": "string"]),
                    "description": "The artifact's name as the result lists it (a path under out/; / kept, the rest percent-encoded)."])]),
                "get": op("getRunArtifact", "A file the run left in out/, while the run is retained (its result lists them under artifacts)",
                          [
                            "200": .object([
                                "description": "The file's bytes. ETag is its sha256 (quoted); Content-Type comes from its name.",
                                "headers": .object([
                                    "ETag": .object(["schema": .object(["type": "string"]), "required": true]),
                                    "Content-Length": .object(["schema": .object(["type": "integer", "minimum": 0]), "required": true]),
                                ]),
                                "content": .object(["*/*": .object(["schema": .object(["type": "string", "format": "binary"])])]),
                            ]),
                            "304": .object(["description": "If-None-Match named the file's ETag: unchanged."]),
                          ],
                          errors: ["NotFound"]),
            ]),
            "/v1/runs/{id}/events": .object([
                "parameters": .array([runIdParam]),
                "get": op("getRunEvents", "The run as Server-Sent Events: state, stdout and stderr chunks as they arrive ({\"text\": …}), then result "
                    + "(the result document)", ok("200", "An event stream", sseEvent, type: "text/event-stream"),
                          errors: ["NotFound"]),
            ]),
            "/v1/runs/{id}/report": .object([
                "parameters": .array([runIdParam]),
                "get": op("getRunReport", "The run for people: one self-contained HTML page (the template's view as tables and inline SVG "
                    + "charts, the variables, the run's metadata; no script, nothing loaded from elsewhere); while the run goes, its state",
                          ok("200", "An HTML page", .object(["type": "string"]), type: "text/html"), errors: ["NotFound"]),
            ]),
        ]
        return .object([
            "openapi": "3.1.0",
            "info": .object(["title": "sandbox-runner", "version": "1.0.0",
                             "description": .string("Run PostHog analytics templates in sandboxes. MCP over Streamable HTTP is served at /mcp "
                                + "(same bearer token, same tools as `sandbox-runner mcp`).")]),
            "components": .object([
                "schemas": .object(schemas),
                "responses": .object(responses),
                "securitySchemes": .object(["bearer": .object(["type": "http", "scheme": "bearer"])]),
            ]),
            "paths": .object(paths),
        ])
    }
}
