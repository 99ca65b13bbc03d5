/// The main table of a report (its first section) as RFC 4180 CSV: a header row, every row (not
/// cut), raw values (numbers as JSON writes them), CRLF line ends, fields quoted when they hold a
/// comma, a quote, CR or LF. Control characters other than those are escaped like everything a
/// script produced that a person may see.
public enum CSVReport {
    public static func render(_ report: Report) -> String? {
        guard let table = report.sections.first?.table, !table.columns.isEmpty else { return nil }
        var out = line(table.columns.map(\.label))
        for row in table.rows { out += line(row.map(\.raw)) }
        return out
    }

    static func line(_ fields: [String]) -> String {
        fields.map(field).joined(separator: ",") + "\r\n"
    }

    public static func field(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
