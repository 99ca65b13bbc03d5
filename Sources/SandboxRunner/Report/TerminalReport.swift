import Foundation

/// Draws a `Report` for a terminal: a short header, the headline numbers, tables fitted to the
/// width (long lists cut with "… N more"), a retention matrix as a shaded grid, a funnel as bars,
/// series as sparklines with min and max; errors as one sentence and the stderr tail. Colour (ANSI)
/// only when asked for. For people: the layout may change; scripts read `--json`.
public struct TerminalReport: Sendable {
    public var width: Int
    public var colour: Bool

    public init(width: Int, colour: Bool) {
        self.width = max(40, min(width, 400))
        self.colour = colour
    }

    enum Style: String {
        case bold = "1", dim = "2", red = "31", green = "32", yellow = "33", cyan = "36"
    }

    func paint(_ text: String, _ style: Style) -> String {
        colour && !text.isEmpty ? "\u{1B}[\(style.rawValue)m\(text)\u{1B}[0m" : text
    }

    public func render(_ report: Report) -> String {
        var out: [String] = []
        let mark = report.success ? paint("✓", .green) : paint("✗", .red)
        let facts = Dictionary(report.facts.map { ($0.label, $0.value) }, uniquingKeysWith: { a, _ in a })
        let status = " \(report.status) in \(facts["duration"] ?? "?")"
        let title = ReportText.truncate(report.title, to: max(8, width - 2 - ReportText.width(status)))
        out.append("\(mark) \(paint(title, .bold))" + ReportText.truncate(status, to: width - 2 - ReportText.width(title)))
        if !report.variables.isEmpty {
            let vars = report.variables.map { "\($0.label)=\($0.value)" }.joined(separator: "  ")
            out += wrap(vars, label: "variables")
        }
        let where_ = ["backend", "network", "run id"].compactMap { k in facts[k].map { "\(k) \($0)" } }.joined(separator: " · ")
        out += wrap(where_, label: "ran")
        if let note = facts["output"] { out += wrap(note, label: "output") }

        if let error = report.error {
            out.append("")
            out += wrap(error, label: paint("error", .red), labelWidth: 5, indent: 2)
            if !report.stderrTail.isEmpty {
                out.append("")
                out.append(paint("  stderr (\(ReportText.lastLines(report.stderrTail.count))):", .dim))
                out += report.stderrTail.map { "    " + ReportText.truncate($0, to: width - 4) }
            }
        }
        if !report.headline.isEmpty {
            out.append("")
            let lw = min(report.headline.map { ReportText.width($0.label) }.max() ?? 0, width / 2)
            for f in report.headline {
                out.append("  " + paint(ReportText.pad(ReportText.truncate(f.label, to: lw), to: lw), .dim) + "  "
                           + ReportText.truncate(f.value, to: width - lw - 4))
            }
        }
        for s in report.sections + report.extras {
            out.append("")
            out.append(paint(s.title, .bold))
            switch s.chart {
            case .series(let series)?: out += seriesLines(series)
            case .funnel(let funnel)?: out += funnelLines(funnel, table: s.table)
            case .matrix(let matrix)?: out += matrixLines(matrix, limit: s.table.limit)
            case nil: out += tableLines(s.table)
            }
        }
        if !report.outputTail.isEmpty {
            out.append("")
            out.append(paint("stdout (\(ReportText.lastLines(report.outputTail.count))):", .dim))
            out += report.outputTail.map { "  " + ReportText.truncate($0, to: width - 2) }
        }
        return out.joined(separator: "\n") + "\n"
    }

    /// `text` after a dim label, wrapped at spaces to the width.
    func wrap(_ text: String, label: String, labelWidth: Int = 9, indent: Int = 0) -> [String] {
        let lead = String(repeating: " ", count: indent)
        let head = lead + (label.contains("\u{1B}") ? label : paint(ReportText.pad(label, to: labelWidth), .dim)) + "  "
        let room = max(20, width - indent - labelWidth - 2)
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: false).map(String.init) {
            let candidate = line.isEmpty ? word : line + " " + word
            if ReportText.width(candidate) > room && !line.isEmpty {
                lines.append(line)
                line = word
            } else {
                line = candidate
            }
        }
        lines.append(line)
        lines = lines.map { String($0.reversed().drop(while: { $0 == " " }).reversed()) }
        let blank = String(repeating: " ", count: indent + labelWidth + 2)
        return lines.enumerated().map { i, l in (i == 0 ? head : blank) + ReportText.truncate(l, to: room) }
    }

    // MARK: tables

    /// Column widths that fit `width`: the widest text columns shrink first (to 6), then columns
    /// are left out from the right. Returns the widths of the columns kept.
    func fit(_ natural: [Int], numeric: [Bool], available: Int) -> [Int] {
        var w = natural
        func total(_ ws: [Int]) -> Int { ws.reduce(0, +) + 2 * max(0, ws.count - 1) }
        while total(w) > available {
            let candidates = w.indices.filter { !numeric[$0] && w[$0] > 6 }
            guard let widest = candidates.max(by: { w[$0] < w[$1] }) else { break }
            w[widest] = max(6, w[widest] - (total(w) - available))
        }
        while w.count > 1 && total(w) > available { w.removeLast() }
        return w
    }

    func tableLines(_ t: Table, indent: Int = 2) -> [String] {
        guard !t.columns.isEmpty else { return [] }
        if t.rows.isEmpty { return [String(repeating: " ", count: indent) + paint("(none)", .dim)] }
        let shown = Array(t.rows.prefix(t.limit))
        let natural = t.columns.indices.map { i in
            max(ReportText.width(t.columns[i].label), shown.map { ReportText.width($0[i].text) }.max() ?? 0)
        }
        let widths = fit(natural, numeric: t.columns.map(\.numeric), available: width - indent)
        let lead = String(repeating: " ", count: indent)
        func line(_ cells: [String], header: Bool) -> String {
            let parts = widths.indices.map { i in
                ReportText.pad(ReportText.truncate(cells[i], to: widths[i]), to: widths[i], right: t.columns[i].numeric)
            }
            let text = parts.joined(separator: "  ")
            let trimmed = String(text.reversed().drop(while: { $0 == " " }).reversed())
            return lead + (header ? paint(trimmed, .dim) : trimmed)
        }
        var out = [line(t.columns.map(\.label), header: true)]
        out += shown.map { line($0.map(\.text), header: false) }
        var notes: [String] = []
        if t.rows.count > shown.count { notes.append("… \(t.rows.count - shown.count) more") }
        if widths.count < t.columns.count {
            let left = t.columns.count - widths.count
            notes.append("\(left) more column\(left == 1 ? "" : "s") (\(t.columns[widths.count...].map(\.label).joined(separator: ", "))) not shown")
        }
        if !notes.isEmpty { out.append(lead + paint(ReportText.truncate(notes.joined(separator: "; "), to: width - indent), .dim)) }
        return out
    }

    typealias Table = Report.Table

    // MARK: charts

    static let sparks: [Character] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]

    /// Values squeezed to `n` points by averaging runs of neighbours.
    static func bucket(_ values: [Double?], into n: Int) -> [Double?] {
        guard values.count > n, n > 0 else { return values }
        return (0..<n).map { i in
            let lo = i * values.count / n, hi = max(lo + 1, (i + 1) * values.count / n)
            let some = values[lo..<hi].compactMap { $0 }
            return some.isEmpty ? nil : some.reduce(0, +) / Double(some.count)
        }
    }

    static func sparkline(_ values: [Double?]) -> String {
        let some = values.compactMap { $0 }
        guard let lo = some.min(), let hi = some.max() else { return String(repeating: " ", count: values.count) }
        return String(values.map { v -> Character in
            guard let v else { return " " }
            if hi == lo { return sparks[3] }
            return sparks[min(7, Int(((v - lo) / (hi - lo) * 7).rounded()))]
        })
    }

    func seriesLines(_ s: Report.Series) -> [String] {
        guard let first = s.xs.first, let last = s.xs.last else { return [] }
        var out = ["  " + paint(ReportText.truncate("\(s.xLabel) \(first) … \(last) (\(s.xs.count) points)", to: width - 2), .dim)]
        let lw = s.lines.map { ReportText.width($0.label) }.max() ?? 0
        for line in s.lines {
            let some = line.values.enumerated().compactMap { i, v in v.map { (i, $0) } }
            guard let lo = some.min(by: { $0.1 < $1.1 }), let hi = some.max(by: { $0.1 < $1.1 }) else {
                out.append("  " + ReportText.pad(line.label, to: lw) + "  (no values)")
                continue
            }
            let fmt = line.format ?? .number
            let stats = "min \(ReportText.format(.double(lo.1), fmt)) (\(s.xs[lo.0]))  max \(ReportText.format(.double(hi.1), fmt)) (\(s.xs[hi.0]))"
                + "  last \(ReportText.format(line.values.last.flatMap { $0 }.map(JSONValue.double), fmt))"
            let room = width - 2 - lw - 2
            // The sparkline on the label's line; the figures on the same line when they fit, else below.
            let sparkRoom = ReportText.width(stats) + 2 + min(line.values.count, 60) <= room ? room - ReportText.width(stats) - 2 : room
            let spark = Self.sparkline(Self.bucket(line.values, into: max(8, min(sparkRoom, line.values.count))))
            if sparkRoom < room {
                out.append("  " + ReportText.pad(line.label, to: lw) + "  " + paint(spark, .cyan) + "  " + stats)
            } else {
                out.append("  " + ReportText.pad(line.label, to: lw) + "  " + paint(spark, .cyan))
                out.append("  " + String(repeating: " ", count: lw + 2) + ReportText.truncate(stats, to: room))
            }
        }
        return out
    }

    func funnelLines(_ f: Report.Funnel, table: Table) -> [String] {
        let base = f.steps.first?.count ?? 0
        let labels = f.steps.enumerated().map { "\($0.offset + 1) \($0.element.label)" }
        let cw = max(ReportText.width(f.countLabel), f.steps.map { ReportText.width($0.countText) }.max() ?? 0)
        // Label, bar, count, percentage: the bar takes what the label leaves, 5 to 40 columns.
        let fixed = 2 + 2 + 2 + cw + 2 + 7
        let lw = max(6, min(max(ReportText.width(f.stepLabel), labels.map(ReportText.width).max() ?? 0), max(12, width / 3), width - fixed - 5))
        let barWidth = max(5, min(40, width - fixed - lw))
        var out: [String] = []
        for (i, s) in f.steps.enumerated() {
            let share = base > 0 ? s.count / base : 0
            let cells = Int((share * Double(barWidth)).rounded())
            let bar = String(repeating: "█", count: cells) + String(repeating: "░", count: barWidth - cells)
            out.append("  " + ReportText.pad(ReportText.truncate(labels[i], to: lw), to: lw) + "  " + paint(bar, .cyan) + "  "
                       + ReportText.pad(s.countText, to: cw, right: true) + "  " + ReportText.pad(ReportText.percent(share), to: 7, right: true))
        }
        // The other columns (conversion from the previous step, times) as a table beneath.
        if table.columns.count > 2 {
            var rest = table
            rest.columns = [table.columns[0]] + table.columns[2...]
            rest.rows = table.rows.map { [$0[0]] + $0[2...] }
            out.append("")
            out += tableLines(rest)
        }
        return out
    }

    static func shade(_ share: Double) -> Character {
        share >= 0.8 ? "█" : share >= 0.6 ? "▓" : share >= 0.4 ? "▒" : share >= 0.2 ? "░" : share > 0 ? "·" : " "
    }

    func matrixLines(_ m: Report.Matrix, limit: Int) -> [String] {
        let rows = Array(m.rows.prefix(limit))
        let lw = max(ReportText.width(m.rowLabel), rows.map { ReportText.width($0.label) }.max() ?? 0)
        let sizes = rows.map { ReportText.format(.double($0.size), .integer) }
        let sw = max(ReportText.width(m.sizeLabel), sizes.map(ReportText.width).max() ?? 0)
        let periods = m.rows.map(\.cells.count).max() ?? 0
        let cellWidth = 7  // "▓ 45.2%"
        let room = width - 2 - lw - 2 - sw
        let shownPeriods = max(1, min(periods, room / (cellWidth + 1)))
        var out: [String] = []
        let header = ReportText.pad(m.rowLabel, to: lw) + "  " + ReportText.pad(m.sizeLabel, to: sw, right: true)
            + (0..<shownPeriods).map { " " + ReportText.pad("\(m.cellLabel.prefix(1))\($0)", to: cellWidth, right: true) }.joined()
        out.append("  " + paint(header, .dim))
        for (r, row) in rows.enumerated() {
            var line = "  " + ReportText.pad(ReportText.truncate(row.label, to: lw), to: lw) + "  " + ReportText.pad(sizes[r], to: sw, right: true)
            for k in 0..<shownPeriods {
                guard k < row.cells.count else { break }
                let share = row.size > 0 ? row.cells[k] / row.size : 0
                let pct = share >= 0.995 ? "100%" : String(format: "%.1f%%", share * 100)
                let cell = ReportText.pad("\(Self.shade(share)) " + ReportText.pad(pct, to: 5, right: true), to: cellWidth, right: true)
                line += " " + (colour ? "\u{1B}[38;5;\(Self.ramp(share))m\(cell)\u{1B}[0m" : cell)
            }
            out.append(line)
        }
        var notes: [String] = []
        if m.rows.count > rows.count { notes.append("… \(m.rows.count - rows.count) more") }
        if shownPeriods < periods { notes.append("\(periods - shownPeriods) later \(m.cellLabel.lowercased())s not shown") }
        notes.append("\(m.cellLabel.prefix(1))k: share of the row's \(m.sizeLabel.lowercased()) in \(m.cellLabel.lowercased()) k")
        out.append("  " + paint(ReportText.truncate(notes.joined(separator: "; "), to: width - 2), .dim))
        return out
    }

    /// A 256-colour blue ramp for a share 0…1.
    static func ramp(_ share: Double) -> Int {
        let ramp = [240, 24, 25, 26, 27, 33, 39]
        return ramp[min(ramp.count - 1, Int((share * Double(ramp.count - 1)).rounded()))]
    }
}
