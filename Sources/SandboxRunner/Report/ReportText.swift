import Foundation

/// Text for people: what a script produced made safe to show, its width on a terminal, and
/// values written by their view format.
public enum ReportText {
    /// A script's text for one cell or line: control characters escaped (`TerminalText.escape`),
    /// newline and tab too (a cell is one line), and the invisible characters that reorder or hide
    /// text (bidirectional overrides and isolates, U+FEFF) and XML-invalid noncharacters written
    /// the same way, so a value cannot rewrite the screen, reorder a table or break the HTML.
    public static func clean(_ text: String) -> String {
        TerminalText.escape(text) { TerminalText.isControl($0) || needsEscape($0) }
    }

    static func needsEscape(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x0A, 0x09, 0x0D: return true
        case 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069, 0xFEFF: return true
        case 0xFDD0...0xFDEF: return true
        default: return s.value & 0xFFFE == 0xFFFE  // U+FFFE, U+FFFF and their kin in every plane
        }
    }

    /// Columns a string takes on a terminal: wide East Asian characters and emoji take two,
    /// combining marks and format characters none.
    public static func width(_ text: String) -> Int {
        var w = 0
        for s in text.unicodeScalars { w += width(s) }
        return w
    }

    static func width(_ s: Unicode.Scalar) -> Int {
        let v = s.value
        if v < 0x300 { return v < 0x20 || (0x7F..<0xA0).contains(v) ? 0 : 1 }
        switch s.properties.generalCategory {
        case .nonspacingMark, .enclosingMark, .format: return 0
        default: break
        }
        if v == 0x200B { return 0 }
        let wide: [ClosedRange<UInt32>] = [0x1100...0x115F, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF,
                                           0xA000...0xA4CF, 0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE30...0xFE4F, 0xFF00...0xFF60,
                                           0xFFE0...0xFFE6, 0x1F300...0x1F64F, 0x1F900...0x1F9FF, 0x20000...0x3FFFD]
        if wide.contains(where: { $0.contains(v) }) { return 2 }
        if s.properties.isEmojiPresentation { return 2 }
        return 1
    }

    /// `text` cut to at most `columns` terminal columns, ending in "…" when cut.
    public static func truncate(_ text: String, to columns: Int) -> String {
        guard width(text) > columns else { return text }
        guard columns > 1 else { return columns == 1 ? "…" : "" }
        var out = String.UnicodeScalarView()
        var w = 0
        for s in text.unicodeScalars {
            let sw = width(s)
            if w + sw > columns - 1 { break }
            out.append(s)
            w += sw
        }
        return String(out) + "…"
    }

    /// `text` padded with spaces to `columns`, on the left when `right` (numbers).
    public static func pad(_ text: String, to columns: Int, right: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, columns - width(text)))
        return right ? fill + text : text + fill
    }

    // MARK: values

    /// A value written for a person by its format; "–" for null or absent.
    public static func format(_ value: JSONValue?, _ format: ViewFormat?, unit: String? = nil) -> String {
        guard let value, value != .null else { return "–" }
        var text: String
        switch (format ?? .text, value) {
        case (.integer, _), (.number, _), (.bytes, _), (.seconds, _), (.percent, _):
            guard let d = number(value) else { text = clean(value.display); break }
            switch format! {
            case .integer: text = grouped(d, decimals: d.rounded() == d ? 0 : 2)
            case .number: text = decimal(d)
            case .percent: text = percent(d)
            case .seconds: text = duration(seconds: d)
            default: text = bytes(d)
            }
        case (.boolean, .bool(let b)): text = b ? "yes" : "no"
        case (.datetime, .string(let s)): text = clean(shortDateTime(s))
        case (.json, _): text = clean(value.jsonText())
        case (_, .string(let s)): text = clean(s)
        case (_, .bool(let b)): text = b ? "yes" : "no"
        case (_, .int(let i)): text = grouped(Double(i), decimals: 0)
        case (_, .double(let d)): text = decimal(d)
        default: text = clean(value.jsonText())
        }
        if let unit, !unit.isEmpty { text += " " + unit }
        return text
    }

    /// The value as it is (CSV): strings unchanged but for control characters, numbers as JSON writes them.
    public static func raw(_ value: JSONValue?) -> String {
        switch value {
        case nil, .null?: return ""
        case .string(let s)?: return TerminalText.escape(s)
        case .bool(let b)?: return b ? "true" : "false"
        case .int(let i)?: return String(i)
        case .double(let d)?: return d.rounded() == d && abs(d) < 1e15 ? String(Int(d)) : String(d)
        case let v?: return TerminalText.escape(v.jsonText())
        }
    }

    public static func number(_ v: JSONValue?) -> Double? {
        switch v {
        case .int(let i)?: return Double(i)
        case .double(let d)?: return d
        default: return nil
        }
    }

    /// 1234567.891 → "1,234,567.89"
    public static func grouped(_ d: Double, decimals: Int) -> String {
        guard d.isFinite else { return String(d) }
        let s = String(format: "%.\(decimals)f", abs(d))
        let parts = s.split(separator: ".", maxSplits: 1)
        var digits = Array(parts[0])
        var out: [Character] = []
        while digits.count > 3 {
            out = [","] + Array(digits.suffix(3)) + out
            digits.removeLast(3)
        }
        var text = String(digits + out)
        if parts.count == 2 {
            let frac = parts[1].reversed().drop(while: { $0 == "0" }).reversed()
            if !frac.isEmpty { text += "." + String(frac) }
        }
        return (d < 0 && text.contains(where: { $0 != "0" && $0 != "." && $0 != "," }) ? "-" : "") + text
    }

    /// 1234.5678 → "1,234.6", 3.14159 → "3.14", 0.000123 → "0.000123" (three significant digits below 1).
    public static func decimal(_ d: Double) -> String {
        if d.rounded() == d && abs(d) < 1e15 { return grouped(d, decimals: 0) }
        if abs(d) >= 100 { return grouped(d, decimals: 1) }
        if abs(d) >= 1 { return grouped(d, decimals: 2) }
        let digits = max(2, min(12, 2 - Int(floor(log10(abs(d))))))
        return grouped(d, decimals: digits)
    }

    /// "last line", "last 5 lines".
    public static func lastLines(_ n: Int) -> String { n == 1 ? "last line" : "last \(n) lines" }

    /// 0.1234 → "12.3%"
    public static func percent(_ fraction: Double) -> String {
        let p = fraction * 100
        if p == 100 || p == 0 { return "\(Int(p))%" }
        return String(format: abs(p) < 0.1 ? "%.2f%%" : "%.1f%%", p)
    }

    /// 812 ms → "812 ms", 7384 s → "2 h 03 m".
    public static func duration(seconds s: Double) -> String {
        guard s.isFinite else { return String(s) }
        if abs(s) < 1 { return "\(Int((s * 1000).rounded())) ms" }
        if abs(s) < 60 { return String(format: s < 10 ? "%.1f s" : "%.0f s", s) }
        let total = Int(s.rounded())
        if total < 3600 { return String(format: "%d m %02d s", total / 60, total % 60) }
        if total < 86400 { return String(format: "%d h %02d m", total / 3600, (total % 3600) / 60) }
        return String(format: "%d d %02d h", total / 86400, (total % 86400) / 3600)
    }

    public static func bytes(_ b: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = b
        var i = 0
        while abs(v) >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(Int(v)) B" : String(format: "%.1f %@", v, units[i])
    }

    /// "2026-11-20T13:45:02.123456+00:00" → "2026-11-20 13:45:02+00:00"; anything else unchanged.
    public static func shortDateTime(_ s: String) -> String {
        guard s.count >= 19, s.unicodeScalars.allSatisfy({ $0.isASCII }) else { return s }
        var t = Array(s)
        guard t[10] == "T" || t[10] == " " else { return s }
        t[10] = " "
        var rest = Array(t[19...])
        if rest.first == "." { rest = Array(rest.drop(while: { $0 == "." || $0.isNumber })) }
        if rest == ["Z"] || rest == Array("+00:00") { rest = Array("Z") }
        return String(t[..<19]) + String(rest)
    }
}
