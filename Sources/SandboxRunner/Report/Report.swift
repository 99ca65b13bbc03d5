import Foundation

/// A run's answer as people read it: the view model the terminal, CSV and HTML renderers draw.
/// Built by `Report.make` from a result document and the template's view (or a generic view).
/// Every string that came from the script or its variables is already `ReportText.clean`ed.
public struct Report: Sendable, Equatable {
    public struct Fact: Sendable, Equatable {
        public var label: String
        public var value: String
    }

    /// One cell: the text shown, the raw value (CSV) and the number (alignment, bars, charts).
    public struct Cell: Sendable, Equatable {
        public var text: String
        public var raw: String
        public var number: Double?
    }

    public struct Column: Sendable, Equatable {
        public var label: String
        public var numeric: Bool
    }

    public struct Table: Sendable, Equatable {
        public var columns: [Column]
        public var rows: [[Cell]]
        /// Rows shown on a terminal before "… N more".
        public var limit: Int
    }

    public struct Series: Sendable, Equatable {
        public struct Line: Sendable, Equatable {
            public var label: String
            public var values: [Double?]
            public var format: ViewFormat?
        }
        public var xLabel: String
        public var xs: [String]
        public var lines: [Line]
    }

    public struct Matrix: Sendable, Equatable {
        public struct Row: Sendable, Equatable {
            public var label: String
            public var size: Double
            public var cells: [Double]
        }
        public var rowLabel: String
        public var sizeLabel: String
        public var cellLabel: String
        public var rows: [Row]
    }

    public struct Funnel: Sendable, Equatable {
        public struct Step: Sendable, Equatable {
            public var label: String
            public var count: Double
            public var countText: String
        }
        public var stepLabel: String
        public var countLabel: String
        public var steps: [Step]
    }

    public enum Chart: Sendable, Equatable {
        case series(Series), matrix(Matrix), funnel(Funnel)
    }

    /// One block: a title, a chart when the block is one, and always its data as a table (what
    /// CSV writes, what the HTML report lists under the chart).
    public struct Section: Sendable, Equatable {
        public var title: String
        public var chart: Chart?
        public var table: Table
    }

    public var title: String
    public var success: Bool
    /// "succeeded", "failed", "timed out", "cancelled".
    public var status: String
    public var facts: [Fact]
    public var variables: [Fact]
    public var error: String?
    public var stderrTail: [String]
    public var headline: [Fact]
    public var sections: [Section]
    /// stdout's last lines when it was not JSON (an ad hoc script).
    public var outputTail: [String]
    /// Lines of the result's other lists (egress, artifacts), as sections after the answer's.
    public var extras: [Section]

    /// The prefix of the machine-readable progress lines the driver writes on stderr; they are
    /// shown live (`ProgressLine`), never in a report's stderr tail.
    public static let progressMarker = "sandbox-runner-progress: "
}

extension Report {
    /// Builds the report of one result; `view` is the template's (nil: the generic view).
    public static func make(_ result: RunResult, view: TemplateView?, stderrLines: Int = 10) -> Report {
        let c = ReportText.clean
        let status = result.success ? "succeeded" : result.timedOut ? "timed out" : result.errorKind == .cancelled ? "cancelled" : "failed"
        var facts: [Fact] = []
        facts.append(Fact(label: "template", value: result.template.map(c) ?? "ad hoc script"))
        var backend = c(result.backend)
        if let iso = result.isolation { backend += " (\(c(iso)))" }
        facts.append(Fact(label: "backend", value: backend))
        if let network = result.network { facts.append(Fact(label: "network", value: c(network))) }
        facts.append(Fact(label: "duration", value: ReportText.duration(seconds: Double(result.durationMs) / 1000)))
        facts.append(Fact(label: "exit code", value: String(result.exitCode)))
        facts.append(Fact(label: "run id", value: c(result.runId)))
        if result.truncated { facts.append(Fact(label: "output", value: "truncated at the output limit")) }
        let variables = (result.variables ?? [:]).keys.sorted().map { k in
            Fact(label: c(k), value: ReportText.format(result.variables?[k], nil))
        }

        var stderrTail: [String] = []
        if !result.success {
            let lines = result.stderr.split(separator: "\n", omittingEmptySubsequences: true)
                .filter { !$0.hasPrefix(progressMarker) && !$0.hasPrefix("sandbox-runner-error: ") }
            stderrTail = lines.suffix(stderrLines).map { c(String($0)) }
        }

        var headline: [Fact] = []
        var sections: [Section] = []
        var outputTail: [String] = []
        if let data = result.data {
            let v = view ?? genericView(data)
            for f in v.headline ?? [] {
                headline.append(Fact(label: ReportText.clean(f.label), value: ReportText.format(data.value(at: f.field), f.format, unit: f.unit)))
            }
            for b in v.blocks ?? [] {
                if let s = section(b, data: data) { sections.append(s) }
            }
        } else if !result.output.isEmpty {
            outputTail = result.output.split(separator: "\n", omittingEmptySubsequences: false).suffix(20).map { c(String($0)) }
            if outputTail.last == "" { outputTail.removeLast() }
        }
        return Report(title: result.template.map(c) ?? "ad hoc script", success: result.success, status: status, facts: facts,
                      variables: variables, error: result.error.map(c), stderrTail: stderrTail, headline: headline,
                      sections: sections, outputTail: outputTail, extras: extras(result))
    }

    /// The lists a result document may carry beside the answer (`egress`, `artifacts`), shown
    /// generically as tables when present: read from the encoded document, so any such field works.
    static func extras(_ result: RunResult) -> [Section] {
        guard let doc = JSONValue.parse(Data(result.jsonText(pretty: false).utf8))?.objectValue else { return [] }
        var out: [Section] = []
        for (key, title) in [("egress", "Network egress"), ("artifacts", "Artifacts")] {
            guard let list = doc[key]?.arrayValue, !list.isEmpty else { continue }
            let block = genericTable(path: key, title: title, items: list)
            if let s = section(block, data: .object([key: .array(list)])) { out.append(s) }
        }
        return out
    }

    /// Rows of a block: an array's items, or a map's entries as `{key, value}`.
    static func rows(_ b: ViewBlock, data: JSONValue) -> [JSONValue] {
        var rows: [JSONValue]
        if b.kind == .map {
            guard let o = data.value(at: b.path)?.objectValue else { return [] }
            rows = o.keys.sorted().map { .object(["key": .string($0), "value": o[$0]!]) }
        } else {
            rows = data.value(at: b.path)?.arrayValue ?? []
        }
        if let sort = b.sortBy {
            let desc = b.descending ?? false
            rows = rows.enumerated().sorted { l, r in
                let a = l.element.value(at: sort), z = r.element.value(at: sort)
                if let x = ReportText.number(a), let y = ReportText.number(z), x != y { return desc ? x > y : x < y }
                if let x = a?.stringValue, let y = z?.stringValue, x != y { return desc ? x > y : x < y }
                return l.offset < r.offset  // stable
            }.map(\.element)
        }
        return rows
    }

    static func cell(_ row: JSONValue, _ f: ViewField) -> Cell {
        let v = f.field == "." ? row : row.value(at: f.field)
        return Cell(text: ReportText.format(v, f.format, unit: f.unit), raw: ReportText.raw(v), number: ReportText.number(v))
    }

    static func isNumeric(_ f: ViewField, rows: [JSONValue]) -> Bool {
        switch f.format {
        case .integer?, .number?, .percent?, .seconds?, .bytes?: return true
        case nil: return !rows.isEmpty && rows.allSatisfy { r in
            let v = f.field == "." ? r : r.value(at: f.field)
            return v == nil || v == .null || ReportText.number(v) != nil
        } && rows.contains { ReportText.number(f.field == "." ? $0 : $0.value(at: f.field)) != nil }
        default: return false
        }
    }

    /// A block's section. Titles and labels are cleaned too: a generic view takes them from the
    /// script's own keys.
    static func section(_ b: ViewBlock, data: JSONValue) -> Section? {
        let rows = rows(b, data: data)
        let title = ReportText.clean(b.title)
        let limit = b.limit ?? 20
        func table(_ fields: [ViewField]) -> Table {
            Table(columns: fields.map { Column(label: ReportText.clean($0.label), numeric: isNumeric($0, rows: rows)) },
                  rows: rows.map { r in fields.map { cell(r, $0) } }, limit: limit)
        }
        switch b.kind {
        case .table, .map:
            return Section(title: title, chart: nil, table: table(b.columns ?? []))
        case .series:
            guard let x = b.x, let ys = b.y else { return nil }
            let series = Series(xLabel: ReportText.clean(x.label), xs: rows.map { cell($0, x).text },
                                lines: ys.map { y in Series.Line(label: ReportText.clean(y.label), values: rows.map { ReportText.number($0.value(at: y.field)) },
                                                                 format: y.format) })
            return Section(title: title, chart: rows.isEmpty ? nil : .series(series), table: table(b.allColumns))
        case .funnel:
            guard let step = b.step, let count = b.count else { return nil }
            let steps = rows.map { r in
                Funnel.Step(label: cell(r, step).text, count: ReportText.number(r.value(at: count.field)) ?? 0, countText: cell(r, count).text)
            }
            let funnel = Funnel(stepLabel: ReportText.clean(step.label), countLabel: ReportText.clean(count.label), steps: steps)
            return Section(title: title, chart: steps.isEmpty ? nil : .funnel(funnel), table: table(b.allColumns))
        case .matrix:
            guard let row = b.row, let size = b.size, let cellsField = b.cells else { return nil }
            let label = ReportText.clean(b.cellLabel ?? "Period")
            let mrows = rows.map { r in
                Matrix.Row(label: cell(r, row).text, size: ReportText.number(r.value(at: size.field)) ?? 0,
                           cells: (r.value(at: cellsField)?.arrayValue ?? []).map { ReportText.number($0) ?? 0 })
            }
            let width = mrows.map(\.cells.count).max() ?? 0
            // The table (CSV, HTML) has the counts: row, size, then one column per period.
            var t = table([row, size])
            t.columns += (0..<width).map { Column(label: "\(label) \($0)", numeric: true) }
            for (i, r) in rows.enumerated() {
                let cells = r.value(at: cellsField)?.arrayValue ?? []
                t.rows[i] += (0..<width).map { k in
                    k < cells.count ? Cell(text: ReportText.format(cells[k], .integer), raw: ReportText.raw(cells[k]), number: ReportText.number(cells[k]))
                        : Cell(text: "", raw: "", number: nil)
                }
            }
            let matrix = Matrix(rowLabel: ReportText.clean(row.label), sizeLabel: ReportText.clean(size.label), cellLabel: label, rows: mrows)
            return Section(title: title, chart: mrows.isEmpty ? nil : .matrix(matrix), table: t)
        }
    }

    // MARK: the generic view

    /// For output without a view (exec, user templates): its top-level scalars as headline
    /// numbers, its first array (by key order) as a table.
    public static func genericView(_ data: JSONValue) -> TemplateView {
        switch data {
        case .array(let items):
            return TemplateView(headline: [], blocks: [genericTable(path: "", title: "Output", items: items)])
        case .object(let o):
            var headline: [ViewField] = []
            var blocks: [ViewBlock] = []
            for key in o.keys.sorted() {
                switch o[key]! {
                case .array(let items) where blocks.isEmpty && !items.isEmpty:
                    blocks.append(genericTable(path: key, title: key, items: items))
                case .array, .object: continue
                default: headline.append(ViewField(field: key, label: key))
                }
            }
            return TemplateView(headline: headline, blocks: blocks)
        default:
            return TemplateView(headline: [ViewField(field: "", label: "output")], blocks: [])
        }
    }

    /// A table of an array: the keys of its objects as columns (in order of first appearance, up
    /// to 12), or one column of its values.
    static func genericTable(path: String, title: String, items: [JSONValue]) -> ViewBlock {
        var keys: [String] = []
        for item in items.prefix(50) {
            for k in (item.objectValue ?? [:]).keys.sorted() where !keys.contains(k) { keys.append(k) }
        }
        let columns = keys.isEmpty ? [ViewField(field: ".", label: "value")]
            : keys.prefix(12).map { ViewField(field: $0, label: $0) }
        return ViewBlock(kind: .table, title: title, path: path, columns: columns)
    }
}
