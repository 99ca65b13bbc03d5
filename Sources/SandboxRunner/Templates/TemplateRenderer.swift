import Foundation

/// A template whose variables passed validation and were written into the script as literals.
public struct RenderedTemplate: Sendable, Equatable {
    public var name: String
    public var script: String
    /// Every variable's final value, defaults included (written to run.json).
    public var variables: [String: JSONValue]
}

/// Validates variables against the manifest and substitutes `{{ name }}` markers in the script
/// with Python literals of the declared type. Nothing reaches a sandbox unless this succeeds.
public enum TemplateRenderer {
    static let markerPattern = #"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}"#
    static let namePattern = #"^[a-z][a-z0-9_]{0,63}$"#

    public static func render(_ template: Template, inputs: [String: VariableInput]) throws -> RenderedTemplate {
        let specs = template.manifest.variables
        let known = Set(specs.map(\.name))
        for name in inputs.keys.sorted() where !known.contains(name) {
            let list = specs.map(\.name).joined(separator: ", ")
            let variable = RunnerError.Parameter.variable(name)
            throw RunnerError(.badInput, phrase: "\(subject: variable) is unknown to template \(template.name). "
                + (list.isEmpty ? "It takes no variables." : "Its variables are: \(list)."), parameter: variable)
        }
        var values: [String: JSONValue] = [:]
        for spec in specs {
            if let input = inputs[spec.name], !(input == .json(.null) && !spec.isRequired) {
                values[spec.name] = try VariableValidator.validate(input, spec: spec)
            } else if let def = spec.default {
                // Not given, or an explicit JSON null for an optional variable: its default.
                values[spec.name] = def == .null ? .null : try VariableValidator.validate(.json(def), spec: spec)
            } else if !spec.isRequired {
                values[spec.name] = .null  // optional without a default: the script gets None
            } else {
                let variable = RunnerError.Parameter.variable(spec.name)
                throw RunnerError(.badInput, phrase: "\(subject: variable) is required for template \(template.name): \(spec.description) "
                    + "Pass it as \(pass: variable).", parameter: variable)
            }
        }
        let script = try substitute(template.script, values: values)
        return RenderedTemplate(name: template.name, script: script, variables: values)
    }

    /// Replaces every marker with the literal of its value; a marker naming no variable is a template bug.
    static func substitute(_ script: String, values: [String: JSONValue]) throws -> String {
        let re = try NSRegularExpression(pattern: markerPattern)
        let ns = script as NSString
        var out = ""
        var last = 0
        for m in re.matches(in: script, range: NSRange(location: 0, length: ns.length)) {
            out += ns.substring(with: NSRange(location: last, length: m.range.location - last))
            let name = ns.substring(with: m.range(at: 1))
            guard let value = values[name] else {
                throw RunnerError(.badInput, "The template uses {{ \(name) }} but declares no such variable.")
            }
            out += pythonLiteral(value)
            last = m.range.location + m.range.length
        }
        out += ns.substring(from: last)
        return out
    }

    /// Checks a manifest and its script when the catalog loads them.
    public static func checkTemplate(manifest: TemplateManifest, script: String) throws {
        var seen = Set<String>()
        for spec in manifest.variables {
            guard spec.name.range(of: namePattern, options: .regularExpression) != nil else {
                throw RunnerError(.badInput, "variable name '\(spec.name)' must be lower_snake_case.")
            }
            guard seen.insert(spec.name).inserted else {
                throw RunnerError(.badInput, "variable '\(spec.name)' is declared twice.")
            }
            if spec.type == .enum, (spec.values ?? []).isEmpty {
                throw RunnerError(.badInput, "enum variable '\(spec.name)' lists no values.")
            }
            if let def = spec.default, def != .null {
                do { _ = try VariableValidator.validate(.json(def), spec: spec) } catch let e as RunnerError {
                    throw RunnerError(.badInput, "the default of '\(spec.name)' is invalid: \(e.message)")
                }
            }
        }
        let re = try NSRegularExpression(pattern: markerPattern)
        for m in re.matches(in: script, range: NSRange(script.startIndex..., in: script)) {
            let name = (script as NSString).substring(with: m.range(at: 1))
            if !seen.contains(name) { throw RunnerError(.badInput, "template.py uses {{ \(name) }}, which the manifest does not declare.") }
        }
        if let example = manifest.example {
            let t = Template(manifest: manifest, script: script, directory: URL(fileURLWithPath: "/"), isCustom: false)
            do { _ = try render(t, inputs: example.mapValues { .json($0) }) } catch let e as RunnerError {
                throw RunnerError(.badInput, "the example variables are invalid: \(e.message)")
            }
        }
    }

    /// A Python literal for a validated value: digits for integers, an ASCII-only escaped string
    /// literal for strings, `True`/`False`/`None`, lists and dicts of literals.
    public static func pythonLiteral(_ value: JSONValue) -> String {
        switch value {
        case .null: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d):
            guard d.isFinite else { return "None" }
            let s = String(d)
            return s.contains(".") || s.contains("e") ? s : s + ".0"
        case .string(let s): return pythonString(s)
        case .array(let a): return "[" + a.map(pythonLiteral).joined(separator: ", ") + "]"
        case .object(let o):
            return "{" + o.keys.sorted().map { pythonString($0) + ": " + pythonLiteral(o[$0]!) }.joined(separator: ", ") + "}"
        }
    }

    static func pythonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                let v = scalar.value
                if v >= 0x20 && v < 0x7f {
                    out.unicodeScalars.append(scalar)
                } else if v <= 0xff {
                    out += String(format: "\\x%02x", v)
                } else if v <= 0xffff {
                    out += String(format: "\\u%04x", v)
                } else {
                    out += String(format: "\\U%08x", v)
                }
            }
        }
        return out + "\""
    }
}
