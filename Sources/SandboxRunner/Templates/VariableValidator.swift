import Foundation

/// A variable as the caller gave it: text from the CLI (`--var k=v`) or JSON from an agent.
public enum VariableInput: Sendable, Equatable {
    case text(String)
    case json(JSONValue)
}

/// Checks one value against its declared type and bounds, producing the typed value that
/// the renderer writes as a literal. Every failure names the variable and what it expects.
public enum VariableValidator {
    public static let defaultMaxStringLength = 1000
    public static let defaultMaxItems = 100
    /// Event and property names: no quotes, backticks, braces or semicolons.
    public static let identifierPattern = #"^[$A-Za-z_][$A-Za-z0-9_.:/ -]{0,199}$"#

    public static func validate(_ input: VariableInput, spec: VariableSpec) throws -> JSONValue {
        switch spec.type {
        case .integer:
            let value: Int
            switch input {
            case .text(let s):
                let t = s.trimmingCharacters(in: .whitespaces)
                guard t.range(of: #"^[+-]?[0-9]{1,18}$"#, options: .regularExpression) != nil, let i = Int(t) else {
                    throw fail(spec, "must be an integer\(bounds(spec))", got: input)
                }
                value = i
            case .json(.int(let i)): value = i
            case .json(.double(let d)) where d.rounded() == d && abs(d) < 1e18: value = Int(d)
            default: throw fail(spec, "must be an integer\(bounds(spec))", got: input)
            }
            try checkRange(Double(value), spec: spec, got: input)
            return .int(value)

        case .number:
            let value: Double
            switch input {
            case .text(let s):
                guard let d = Double(s.trimmingCharacters(in: .whitespaces)), d.isFinite else {
                    throw fail(spec, "must be a number\(bounds(spec))", got: input)
                }
                value = d
            case .json(.int(let i)): value = Double(i)
            case .json(.double(let d)) where d.isFinite: value = d
            default: throw fail(spec, "must be a number\(bounds(spec))", got: input)
            }
            try checkRange(value, spec: spec, got: input)
            return .double(value)

        case .boolean:
            switch input {
            case .json(.bool(let b)): return .bool(b)
            case .text(let s):
                switch s.lowercased() {
                case "true", "1", "yes", "on": return .bool(true)
                case "false", "0", "no", "off": return .bool(false)
                default: break
                }
            default: break
            }
            throw fail(spec, "must be true or false", got: input)

        case .string:
            return .string(try checkString(try text(input, spec: spec, what: "a string"), spec: spec, pattern: spec.pattern))

        case .identifier:
            return .string(try checkString(try text(input, spec: spec, what: "a name"), spec: spec,
                                           pattern: spec.pattern ?? identifierPattern,
                                           patternHelp: "a valid event or property name (letters, digits, $ _ . : / - and spaces; no quotes)"))

        case .enum:
            let s = try text(input, spec: spec, what: "one of the allowed values")
            let allowed = spec.values ?? []
            guard allowed.contains(s) else {
                throw fail(spec, "must be one of \(allowed.joined(separator: ", "))", got: input)
            }
            return .string(s)

        case .date:
            let s = try text(input, spec: spec, what: "a date (YYYY-MM-DD)")
            guard let d = parseDate(s) else { throw fail(spec, "must be a date (YYYY-MM-DD)", got: input) }
            return .string(d)

        case .datetime:
            let s = try text(input, spec: spec, what: "a date-time (ISO 8601)")
            guard let d = parseDateTime(s) else {
                throw fail(spec, "must be an ISO 8601 date-time such as 2026-10-01T00:00:00Z", got: input)
            }
            return .string(d)

        case .stringList, .identifierList:
            let items: [String]
            switch input {
            case .json(.array(let arr)):
                items = try arr.map { item in
                    guard case .string(let s) = item else { throw fail(spec, "must be a list of strings", got: input) }
                    return s
                }
            case .text(let s):
                // `a,b,c` or a JSON list on the CLI; JSON callers send an array (their schema says so).
                items = try splitList(s, spec: spec, input: input)
            default:
                throw fail(spec, "must be a list of strings", got: input)
            }
            let maxItems = spec.maxItems ?? defaultMaxItems
            if items.count > maxItems { throw fail(spec, "must have at most \(maxItems) items", got: input) }
            if let minItems = spec.minItems, items.count < minItems {
                throw fail(spec, "must have at least \(minItems) item\(minItems == 1 ? "" : "s")", got: input)
            }
            let isIdent = spec.type == .identifierList
            let checked = try items.map { item -> JSONValue in
                .string(try checkString(item, spec: spec, pattern: isIdent ? (spec.pattern ?? identifierPattern) : spec.pattern,
                                        patternHelp: isIdent ? "a list of valid event or property names" : nil))
            }
            return .array(checked)
        }
    }

    // MARK: - helpers

    static func text(_ input: VariableInput, spec: VariableSpec, what: String) throws -> String {
        switch input {
        case .text(let s), .json(.string(let s)): return s
        default: throw fail(spec, "must be \(what)", got: input)
        }
    }

    /// Lengths are counted in Unicode scalars (JSON Schema's code points), never in graphemes: a
    /// base letter with 20,000 combining marks is one grapheme but 20,001 scalars.
    static func checkString(_ s: String, spec: VariableSpec, pattern: String?, patternHelp: String? = nil) throws -> String {
        let maxLength = spec.maxLength ?? defaultMaxStringLength
        let length = s.unicodeScalars.count
        if length > maxLength { throw fail(spec, "must be at most \(maxLength) characters", got: .text(s)) }
        if let minLength = spec.minLength, length < minLength {
            throw fail(spec, "must be at least \(minLength) character\(minLength == 1 ? "" : "s")", got: .text(s))
        }
        if s.unicodeScalars.contains(where: { $0.value == 0 }) { throw fail(spec, "must not contain NUL characters", got: .text(s)) }
        if let pattern, !matches(s, pattern: pattern) {
            throw fail(spec, patternHelp.map { "must be \($0)" } ?? "must match \(pattern)", got: .text(s))
        }
        return s
    }

    /// Whether `s` matches `pattern` the way JSON Schema (ECMA-262) reads it: a search, where `$`
    /// is the true end of the string. ICU's `$` also matches before a final newline, so every
    /// `$` outside a character class becomes `\z`.
    static func matches(_ s: String, pattern: String) -> Bool {
        guard let re = try? NSRegularExpression(pattern: strictEndAnchors(pattern)) else { return false }
        return re.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) != nil
    }

    /// `pattern` with each unescaped `$` outside `[...]` replaced by `\z`.
    static func strictEndAnchors(_ pattern: String) -> String {
        var out = ""
        var inClass = false
        var escaped = false
        var classStart = false
        for c in pattern {
            if escaped { out.append(c); escaped = false; classStart = false; continue }
            switch c {
            case "\\": out.append(c); escaped = true
            case "[" where !inClass: inClass = true; classStart = true; out.append(c); continue
            case "]" where inClass && !classStart: inClass = false; out.append(c)
            case "$" where !inClass: out += "\\z"
            default: out.append(c)
            }
            if !(c == "^" && classStart) { classStart = false }
        }
        return out
    }

    static func splitList(_ s: String, spec: VariableSpec, input: VariableInput) throws -> [String] {
        let t = s.trimmingCharacters(in: .whitespaces)
        if t.hasPrefix("[") {
            guard case .array(let arr)? = JSONValue.parse(Data(t.utf8)) else {
                throw fail(spec, "must be a JSON list of strings or a comma-separated list", got: input)
            }
            return try arr.map { item in
                guard case .string(let s) = item else { throw fail(spec, "must be a list of strings", got: input) }
                return s
            }
        }
        if t.isEmpty { return [] }
        return t.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    }

    static func checkRange(_ v: Double, spec: VariableSpec, got: VariableInput) throws {
        if let lo = spec.minimum, v < lo { throw fail(spec, "must be at least \(fmt(lo))\(bounds(spec))", got: got) }
        if let hi = spec.maximum, v > hi { throw fail(spec, "must be at most \(fmt(hi))\(bounds(spec))", got: got) }
    }

    static func bounds(_ spec: VariableSpec) -> String {
        switch (spec.minimum, spec.maximum) {
        case let (lo?, hi?): return " (\(fmt(lo))–\(fmt(hi)))"
        case let (lo?, nil): return " (≥ \(fmt(lo)))"
        case let (nil, hi?): return " (≤ \(fmt(hi)))"
        default: return ""
        }
    }

    static func fmt(_ d: Double) -> String { d.rounded() == d && abs(d) < 1e15 ? String(Int(d)) : String(d) }

    static func fail(_ spec: VariableSpec, _ what: String, got: VariableInput) -> RunnerError {
        let shown: String
        switch got {
        case .text(let s): shown = s
        case .json(let j): shown = j.jsonText()
        }
        let scalars = shown.unicodeScalars
        let clipped = scalars.count > 40 ? String(String.UnicodeScalarView(scalars.prefix(40))) + "…" : shown
        let variable = RunnerError.Parameter.variable(spec.name)
        return RunnerError(.badInput, phrase: "\(subject: variable) \(what); got '\(clipped)'.", parameter: variable)
    }

    static func parseDate(_ s: String) -> String? {
        guard s.range(of: #"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"#, options: .regularExpression) != nil else { return nil }
        let parts = s.split(separator: "-").compactMap { Int($0) }
        guard parts.count == 3, (1...12).contains(parts[1]) else { return nil }
        var comps = DateComponents(); comps.year = parts[0]; comps.month = parts[1]; comps.day = parts[2]
        var cal = Calendar(identifier: .gregorian); cal.timeZone = TimeZone(identifier: "UTC")!
        guard comps.isValidDate(in: cal) else { return nil }
        return s
    }

    /// Accepts `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.ffffff]][Z|±HH:MM]`, normalised to UTC: `YYYY-MM-DDTHH:MM:SSZ`, or `YYYY-MM-DDTHH:MM:SS.ffffffZ`
    /// when the value has a fraction of a second (kept to the microsecond, PostHog's precision).
    static func parseDateTime(_ s: String) -> String? {
        if let d = parseDate(s) { return d + "T00:00:00Z" }
        let pattern = #"^([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?(Z|[+-][0-9]{2}:?[0-9]{2})?$"#
        guard let re = try? NSRegularExpression(pattern: strictEndAnchors(pattern)),
              let m = re.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) else { return nil }
        func group(_ i: Int) -> String? {
            guard let r = Range(m.range(at: i), in: s) else { return nil }
            return String(s[r])
        }
        guard let day = group(1), parseDate(day) != nil, let hh = Int(group(2) ?? ""), let mm = Int(group(3) ?? "") else { return nil }
        let ss = Int(group(4) ?? "0") ?? 0
        guard hh < 24, mm < 60, ss < 60 else { return nil }
        var offsetSeconds = 0
        if let tz = group(6), tz != "Z" {
            let digits = tz.dropFirst().replacingOccurrences(of: ":", with: "")
            guard let h = Int(digits.prefix(2)), let mi = Int(digits.suffix(2)), h < 24, mi < 60 else { return nil }
            offsetSeconds = (h * 3600 + mi * 60) * (tz.hasPrefix("-") ? -1 : 1)
        }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX"); f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
        guard let local = f.date(from: String(format: "%@T%02d:%02d:%02d", day, hh, mm, ss)) else { return nil }
        // Whole seconds go through the calendar; the fraction is carried over as digits (an offset
        // is whole minutes, so it never changes it), padded to microseconds.
        let seconds = f.string(from: local.addingTimeInterval(TimeInterval(-offsetSeconds)))
        guard let fraction = group(5) else { return seconds + "Z" }
        return seconds + "." + fraction.padding(toLength: 6, withPad: "0", startingAt: 0) + "Z"
    }
}
