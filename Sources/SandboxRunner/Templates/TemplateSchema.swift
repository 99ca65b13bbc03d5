import Foundation

/// JSON Schema derived from a manifest: the one description of a template's inputs and outputs
/// that the MCP tools and the HTTP API publish (never written twice).
public enum TemplateSchema {
    /// The input schema: types, bounds, enums, defaults, descriptions, `required`, no extra keys.
    public static func input(_ m: TemplateManifest) -> JSONValue {
        var properties: [String: JSONValue] = [:]
        for v in m.variables {
            var p = property(v)
            if !v.isRequired {
                // An optional variable also takes null: "unset", i.e. its default (the renderer's rule).
                if case .string(let t)? = p["type"] { p["type"] = .array([.string(t), "null"]) }
                if case .array(let values)? = p["enum"] { p["enum"] = .array(values + [.null]) }
            }
            properties[v.name] = .object(p)
        }
        let required = m.variables.filter(\.isRequired).map { JSONValue.string($0.name) }
        var schema: [String: JSONValue] = [
            "type": .string("object"),
            "properties": .object(properties),
            "additionalProperties": .bool(false),
        ]
        if !required.isEmpty { schema["required"] = .array(required) }
        return .object(schema)
    }

    static func property(_ v: VariableSpec) -> [String: JSONValue] {
        var p: [String: JSONValue] = ["description": .string(v.description)]
        func num(_ d: Double) -> JSONValue { d.rounded() == d && abs(d) < 1e15 ? .int(Int(d)) : .double(d) }
        let stringRules: ([String: JSONValue]) -> [String: JSONValue] = { base in
            var s = base
            s["maxLength"] = .int(v.maxLength ?? VariableValidator.defaultMaxStringLength)
            if let min = v.minLength { s["minLength"] = .int(min) }
            return s
        }
        switch v.type {
        case .integer:
            p["type"] = .string("integer")
            if let lo = v.minimum { p["minimum"] = num(lo) }
            if let hi = v.maximum { p["maximum"] = num(hi) }
        case .number:
            p["type"] = .string("number")
            if let lo = v.minimum { p["minimum"] = num(lo) }
            if let hi = v.maximum { p["maximum"] = num(hi) }
        case .boolean:
            p["type"] = .string("boolean")
        case .string:
            p = stringRules(p)
            p["type"] = .string("string")
            if let pattern = v.pattern { p["pattern"] = .string(pattern) }
        case .identifier:
            p = stringRules(p)
            p["type"] = .string("string")
            p["pattern"] = .string(v.pattern ?? VariableValidator.identifierPattern)
        case .enum:
            p["type"] = .string("string")
            p["enum"] = .array((v.values ?? []).map(JSONValue.string))
        case .date:
            p["type"] = .string("string")
            p["format"] = .string("date")
        case .datetime:
            p["type"] = .string("string")
            p["format"] = .string("date-time")
        case .stringList, .identifierList:
            var item: [String: JSONValue] = stringRules(["type": .string("string")])
            if v.type == .identifierList { item["pattern"] = .string(v.pattern ?? VariableValidator.identifierPattern) }
            else if let pattern = v.pattern { item["pattern"] = .string(pattern) }
            p["type"] = .string("array")
            p["items"] = .object(item)
            p["maxItems"] = .int(v.maxItems ?? VariableValidator.defaultMaxItems)
            if let min = v.minItems { p["minItems"] = .int(min) }
        }
        if let d = v.default, d != .null { p["default"] = d }
        return p
    }

    /// The result document's schema, with the template's own output schema as `data` (the one
    /// definition lives with the document: `RunResult.jsonSchema`).
    public static func result(dataSchema: JSONValue?) -> JSONValue {
        RunResult.jsonSchema(dataSchema: dataSchema)
    }
}
