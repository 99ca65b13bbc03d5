import Foundation

/// How a template's answer is shown to a person, declared in its manifest's `view`: headline
/// numbers, then blocks (tables, series, a retention matrix, a funnel) over arrays of its output.
/// One renderer (`ReportBuilder`, then the terminal, CSV and HTML renderers) reads it; nothing
/// here is written per template in Swift. Paths are dotted (`parameters.days`, `reach.share`).
public struct TemplateView: Codable, Sendable, Equatable {
    public var headline: [ViewField]?
    public var blocks: [ViewBlock]?

    public init(headline: [ViewField]? = nil, blocks: [ViewBlock]? = nil) {
        self.headline = headline
        self.blocks = blocks
    }
}

/// How a value is written for a person (CSV always carries the raw value).
public enum ViewFormat: String, Codable, Sendable, CaseIterable {
    /// `integer`: grouped digits; `number`: up to 2 decimals; `percent`: a fraction 0…1 as 12.3 %;
    /// `seconds`: a duration; `datetime`: ISO 8601 shortened to the second; `json`: compact JSON.
    case text, integer, number, percent, seconds, date, datetime, boolean, bytes, json
}

/// One value to show: where it is (a dotted path; "." is a row itself), what to call it, how to write it.
public struct ViewField: Codable, Sendable, Equatable {
    public var field: String
    public var label: String
    public var format: ViewFormat?
    /// Written after the value ("events", "users").
    public var unit: String?

    public init(field: String, label: String, format: ViewFormat? = nil, unit: String? = nil) {
        self.field = field
        self.label = label
        self.format = format
        self.unit = unit
    }
}

/// One block of a view, over the array (or, for `map`, the object) at `path`.
public struct ViewBlock: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// `table`: `columns` of each item. `map`: an object's entries as rows `{key, value}`
        /// (columns name `key`, `value` or `value.PATH`). `series`: `x` and `y` of each item, a
        /// sparkline per y. `matrix`: a row per item, `row` and `size`, then the integer array
        /// `cells` as shares of `size` (retention). `funnel`: `step` and `count` as bars relative
        /// to the first step, plus `columns`.
        case table, map, series, matrix, funnel
    }

    public var kind: Kind
    public var title: String
    public var path: String
    public var columns: [ViewField]?
    public var x: ViewField?
    public var y: [ViewField]?
    public var step: ViewField?
    public var count: ViewField?
    public var row: ViewField?
    public var size: ViewField?
    public var cells: String?
    /// The matrix's column heading: "Week" gives Week 0, Week 1, ….
    public var cellLabel: String?
    /// Rows shown on a terminal before "… N more" (default 20; the HTML report shows 500).
    public var limit: Int?
    /// Rows ordered by this field (of the row, as the columns name it), largest first with `descending`.
    public var sortBy: String?
    public var descending: Bool?

    public init(kind: Kind, title: String, path: String, columns: [ViewField]? = nil) {
        self.kind = kind
        self.title = title
        self.path = path
        self.columns = columns
    }

    /// Every field this block shows, in the order a table of it has them.
    public var allColumns: [ViewField] {
        switch kind {
        case .table, .map: return columns ?? []
        case .series: return [x].compactMap { $0 } + (y ?? [])
        case .matrix: return [row, size].compactMap { $0 }
        case .funnel: return [step, count].compactMap { $0 } + (columns ?? [])
        }
    }
}

// MARK: - checking a view against the output schema

extension TemplateView {
    /// Checks that every field the view names exists in the output schema, that blocks point at
    /// arrays (objects for `map`) and carry what their kind needs. Throws a sentence naming the
    /// first problem; a manifest whose view fails is refused like any bad manifest.
    public func validate(against output: JSONValue?) throws {
        guard let output else {
            throw RunnerError(.badInput, "manifest.json's view needs an output schema (the manifest's output) to be checked against.")
        }
        for f in headline ?? [] {
            guard let s = ViewSchema.resolve(f.field, in: output) else { throw Self.missing(f.field, "headline") }
            if ViewSchema.isContainer(s) && f.format != .json {
                throw RunnerError(.badInput, "manifest.json's view: headline field '\(f.field)' is an object or array; a headline is one value (or use format json).")
            }
        }
        for (i, b) in (blocks ?? []).enumerated() {
            let name = "block \(i + 1) (\(b.title))"
            if let limit = b.limit, limit < 1 { throw RunnerError(.badInput, "manifest.json's view: \(name) has a limit below 1.") }
            guard let container = ViewSchema.resolve(b.path, in: output) else { throw Self.missing(b.path, name) }
            let item: JSONValue
            if b.kind == .map {
                guard ViewSchema.types(container).contains("object"), let values = container["additionalProperties"], values.objectValue != nil else {
                    throw RunnerError(.badInput, "manifest.json's view: \(name) is a map, but '\(b.path)' is not an object of named values in the output schema.")
                }
                item = .object(["type": "object", "properties": .object(["key": .object(["type": "string"]), "value": values])])
            } else {
                guard ViewSchema.types(container).contains("array"), let items = container["items"] else {
                    throw RunnerError(.badInput, "manifest.json's view: \(name) is a \(b.kind.rawValue), but '\(b.path)' is not an array in the output schema.")
                }
                item = items
            }
            let needs: [(String, Bool)]
            switch b.kind {
            case .table, .map: needs = [("columns", !(b.columns ?? []).isEmpty)]
            case .series: needs = [("x", b.x != nil), ("y", !(b.y ?? []).isEmpty)]
            case .matrix: needs = [("row", b.row != nil), ("size", b.size != nil), ("cells", b.cells != nil)]
            case .funnel: needs = [("step", b.step != nil), ("count", b.count != nil)]
            }
            if let absent = needs.first(where: { !$0.1 }) {
                throw RunnerError(.badInput, "manifest.json's view: \(name) is a \(b.kind.rawValue) and needs '\(absent.0)'.")
            }
            for c in b.allColumns where ViewSchema.resolve(c.field, in: item) == nil {
                throw Self.missing("\(b.path)[].\(c.field)", name)
            }
            if let cells = b.cells {
                guard let s = ViewSchema.resolve(cells, in: item), ViewSchema.types(s).contains("array") else {
                    throw RunnerError(.badInput, "manifest.json's view: \(name) has cells '\(cells)', which is not an array in each item of '\(b.path)' in the output schema.")
                }
            }
            if let sort = b.sortBy, ViewSchema.resolve(sort, in: item) == nil { throw Self.missing("\(b.path)[].\(sort)", name) }
        }
    }

    static func missing(_ path: String, _ place: String) -> RunnerError {
        RunnerError(.badInput, "manifest.json's view: \(place) names '\(path)', which the output schema does not have.")
    }
}

/// Walking a JSON Schema by dotted paths (the subset the manifests use: properties, items,
/// additionalProperties, type unions with null, anyOf).
enum ViewSchema {
    static func types(_ s: JSONValue) -> Set<String> {
        switch s["type"] {
        case .string(let t)?: return [t]
        case .array(let ts)?: return Set(ts.compactMap(\.stringValue))
        default:
            var out = Set<String>()
            for alt in s["anyOf"]?.arrayValue ?? [] { out.formUnion(types(alt)) }
            return out
        }
    }

    static func isContainer(_ s: JSONValue) -> Bool { !types(s).isDisjoint(with: ["object", "array"]) && !types(s).contains("string") }

    /// The schema of the value at `path` inside a value of schema `s`; nil when it has no such field.
    static func resolve(_ path: String, in s: JSONValue) -> JSONValue? {
        if path == "." { return s }  // the item itself (an array of strings)
        var current = s
        for part in path.split(separator: ".", omittingEmptySubsequences: false).map(String.init) {
            guard !part.isEmpty else { return nil }
            if let props = current["properties"]?.objectValue, let next = props[part] {
                current = next
            } else if let extra = current["additionalProperties"], extra.objectValue != nil {
                current = extra  // any key of a map
            } else if let alts = current["anyOf"]?.arrayValue, let hit = alts.lazy.compactMap({ resolve(part, in: $0) }).first {
                current = hit
            } else {
                return nil
            }
        }
        return current
    }
}

extension JSONValue {
    /// The value at a dotted path (`reach.share`); nil when any step is missing or not an object.
    public func value(at path: String) -> JSONValue? {
        var current: JSONValue? = self
        for part in path.split(separator: ".") { current = current?[String(part)] }
        return current
    }
}
