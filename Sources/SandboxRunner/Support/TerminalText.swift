/// Text from a script made safe for a terminal: control characters (C0 other than newline and
/// tab, DEL, and C1 including U+009B, the one-character CSI) are written as visible escapes, so
/// a script cannot move the cursor, rewrite earlier lines, set the window title or type into the
/// operator's shell. For human-facing output only: `--json` stays exact JSON.
public enum TerminalText {
    /// Whether `scalar` is a control character a terminal could act on.
    public static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        return (v < 0x20 && v != 0x0A && v != 0x09) || v == 0x7F || (0x80...0x9F).contains(v)
    }

    /// Control characters (or the scalars `shouldEscape` names) as `\u{1B}`-style escapes;
    /// everything else unchanged.
    public static func escape(_ text: String, where shouldEscape: (Unicode.Scalar) -> Bool = isControl) -> String {
        guard text.unicodeScalars.contains(where: shouldEscape) else { return text }
        var out = String.UnicodeScalarView()
        for s in text.unicodeScalars {
            if shouldEscape(s) {
                out.append(contentsOf: "\\u{\(String(s.value, radix: 16, uppercase: true))}".unicodeScalars)
            } else {
                out.append(s)
            }
        }
        return String(out)
    }

    /// JSON text for a terminal: DEL and C1 characters (which JSON encoders leave raw) written as
    /// `\u007F`-style escapes. The result is still valid JSON with the same meaning; C0 characters
    /// are already escaped by any JSON encoder.
    public static func escapeJSON(_ json: String) -> String {
        guard json.unicodeScalars.contains(where: isControl) else { return json }
        var out = String.UnicodeScalarView()
        for s in json.unicodeScalars {
            if isControl(s) {
                let hex = String(s.value, radix: 16, uppercase: false)
                out.append(contentsOf: ("\\u" + String(repeating: "0", count: 4 - hex.count) + hex).unicodeScalars)
            } else {
                out.append(s)
            }
        }
        return String(out)
    }
}
