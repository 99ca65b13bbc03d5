import SandboxRunner

/// OpenAPI 3.1 for the HTTP API, with the templates' schemas derived from their manifests.
enum OpenAPIDocument {
    static func make(tools: TemplateTools) -> JSONValue {
        let catalog = tools.executor.catalog
        let templates = catalog.names.compactMap { try? catalog.template(named: $0) }
        var schemas: [String: JSONValue] = ["RunResult": TemplateSchema.result(dataSchema: nil)]
        for t in templates { schemas["variables_\(t.name)"] = TemplateSchema.input(t.manifest) }
        let error: JSONValue = .object(["type": "object", "properties": .object(["error": .object(["type": "string"]), "status": .object(["type": "integer"])])])
        func ref(_ name: String) -> JSONValue { .object(["$ref": .string("#/components/schemas/\(name)")]) }
        func content(_ schema: JSONValue) -> JSONValue { .object(["application/json": .object(["schema": schema])]) }
        let runBody: JSONValue = .object([
            "type": "object", "additionalProperties": false,
            "properties": .object([
                "template": .object(["type": "string", "enum": .array(templates.map { .string($0.name) })]),
                "variables": .object(["type": "object", "description": "Validated against components.schemas.variables_<template>."]),
                "script": .object(["type": "string", "description": "Ad hoc Python instead of a template."]),
                "timeoutSeconds": .object(["type": "integer", "minimum": 1, "maximum": 3600]),
                "backend": .object(["type": "string"]),
            ]),
        ])
        let bearer: JSONValue = .array([.object(["bearer": .array([])])])
        return .object([
            "openapi": "3.1.0",
            "info": .object(["title": "sandbox-runner", "version": "0.1.0",
                             "description": "Run PostHog analytics templates in sandboxes."]),
            "components": .object([
                "schemas": .object(schemas.merging(["Error": error]) { a, _ in a }),
                "securitySchemes": .object(["bearer": .object(["type": "http", "scheme": "bearer"])]),
            ]),
            "paths": .object([
                "/healthz": .object(["get": .object(["summary": "Liveness", "responses": .object(["200": .object(["description": "OK"])])])]),
                "/v1/templates": .object(["get": .object([
                    "summary": "Every template with its JSON Schema", "security": bearer,
                    "responses": .object(["200": .object(["description": "The templates"]), "401": .object(["description": "No or wrong token", "content": content(ref("Error"))])]),
                ])]),
                "/v1/templates/{name}": .object(["get": .object([
                    "summary": "One template with its input and result schemas", "security": bearer,
                    "parameters": .array([.object(["name": "name", "in": "path", "required": true, "schema": .object(["type": "string"])])]),
                    "responses": .object(["200": .object(["description": "The template"]), "404": .object(["description": "No such template", "content": content(ref("Error"))])]),
                ])]),
                "/v1/runs": .object(["post": .object([
                    "summary": "Run a template (or a script) and answer with the result document", "security": bearer,
                    "requestBody": .object(["required": true, "content": content(runBody)]),
                    "responses": .object([
                        "200": .object(["description": "The run happened (it may have failed: see success)", "content": content(ref("RunResult"))]),
                        "400": .object(["description": "Invalid variables or body", "content": content(ref("RunResult"))]),
                        "401": .object(["description": "No or wrong token", "content": content(ref("Error"))]),
                        "404": .object(["description": "No such template", "content": content(ref("Error"))]),
                        "413": .object(["description": "Body too large", "content": content(ref("Error"))]),
                        "429": .object(["description": "Too many runs; see Retry-After", "content": content(ref("Error"))]),
                        "503": .object(["description": "The sandbox could not be had", "content": content(ref("RunResult"))]),
                    ]),
                ])]),
            ]),
        ])
    }
}
