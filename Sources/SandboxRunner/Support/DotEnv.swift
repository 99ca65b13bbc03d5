import Foundation

/// Reads `.env` files with the usual rules: `KEY=value`, optional `export `, `#` comments,
/// single quotes literal, double quotes with `\n` `\"` `\\` escapes. The real environment wins.
public enum DotEnv {
    public static func parse(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            var line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = String(line.dropFirst(7)).trimmingCharacters(in: .whitespaces) }
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            guard key.range(of: #"^[A-Za-z_][A-Za-z0-9_]*$"#, options: .regularExpression) != nil else { continue }
            var value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if value.hasPrefix("'"), let end = value.dropFirst().firstIndex(of: "'") {
                value = String(value[value.index(after: value.startIndex)..<end])
            } else if value.hasPrefix("\"") {
                var result = ""
                var escaped = false
                for ch in value.dropFirst() {
                    if escaped {
                        switch ch { case "n": result.append("\n"); case "t": result.append("\t"); default: result.append(ch) }
                        escaped = false
                    } else if ch == "\\" { escaped = true } else if ch == "\"" { break } else { result.append(ch) }
                }
                value = result
            } else if let hash = value.range(of: " #") {
                value = value[..<hash.lowerBound].trimmingCharacters(in: .whitespaces)
            }
            out[key] = value
        }
        return out
    }

    /// The process environment with `.env` (in `directory`) filled in underneath it.
    public static func environment(loadingFrom directory: URL, base: [String: String] = ProcessInfo.processInfo.environment) -> [String: String] {
        let url = directory.appendingPathComponent(".env")
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return base }
        return base.merging(parse(text)) { real, _ in real }
    }
}
