import Foundation

/// Replaces every occurrence of a secret's value with `[REDACTED]`.
///
/// Matching is on the UTF-8 bytes of the text, never on graphemes: a secret followed by a
/// combining mark or a variation selector is still found. Covered forms:
/// - plain text, wherever it sits (also when the script wrote it in pieces: streams are joined
///   before they are redacted), and a secret's first 4+ characters at the very end of a cut stream;
/// - JSON-escaped text: any character of the secret written as `\uXXXX` (either case, surrogate
///   pairs for characters outside the BMP) or as a short escape (`\/`, `\"`, `\\`, `\n`, …), in any mix;
/// - parsed JSON: `redact(_ value:)` redacts every string and key after the escapes are decoded.
/// Not covered: any other encoding of a secret (base64, hex, percent-encoding, Python `\x`
/// escapes, reversed, split by other characters, case changed, Unicode look-alikes).
public struct Redactor: Sendable {
    public static let marker = "[REDACTED]"
    /// Variables whose values are always secrets.
    public static let secretNames: Set<String> = [
        "POSTHOG_PERSONAL_API_KEY", "POSTHOG_PROJECT_API_KEY", "POSTHOG_API_KEY", "E2B_API_KEY",
        "E2B_ACCESS_TOKEN", "SANDBOX_RUNNER_TOKEN",
    ]
    /// Values shorter than this (in Unicode scalars) are not treated as secrets (redacting "1" would ruin output).
    static let minimumLength = 6
    /// A cut stream's tail is redacted when it holds at least this many leading scalars of a secret.
    static let minimumTail = 4

    /// The secrets, longest first.
    public private(set) var secrets: [String]
    private let scalars: [[Unicode.Scalar]]
    /// Each secret's characters as UTF-8 bytes.
    private let encoded: [[[UInt8]]]

    public init(secrets: [String]) {
        let kept = Set(secrets.filter { $0.unicodeScalars.count >= Self.minimumLength })
        self.secrets = kept.sorted { ($0.utf8.count, $0) > ($1.utf8.count, $1) }
        self.scalars = self.secrets.map { Array($0.unicodeScalars) }
        self.encoded = scalars.map { $0.map { Array(UTF8.encode($0)!) } }
    }

    /// The secrets among environment variables: the known names plus anything named like a key.
    public init(environment: [String: String]) {
        self.init(secrets: environment.filter { Self.isSecretName($0.key) }.map(\.value))
    }

    public static func isSecretName(_ name: String) -> Bool {
        if secretNames.contains(name) { return true }
        let upper = name.uppercased()
        return ["_KEY", "_TOKEN", "_SECRET", "PASSWORD"].contains { upper.hasSuffix($0) }
    }

    public func redact(_ text: String) -> String {
        redact(text, truncated: false)
    }

    /// Redacts text that was cut (`truncated`): a secret's head at the very end is redacted too.
    public func redact(_ text: String, truncated: Bool) -> String {
        guard !secrets.isEmpty else { return text }
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        var changed = false
        var i = 0
        var copiedUpTo = 0
        let marker = Array(Self.marker.utf8)
        while i < bytes.count {
            let b = bytes[i]
            var matchEnd: Int?
            for k in scalars.indices {
                // Cheap first test: the first character's first byte, or the start of an escape.
                if b != UInt8(ascii: "\\") && b != encoded[k][0][0] { continue }
                if let end = Self.match(scalars[k], encoded[k], in: bytes, at: i) { matchEnd = end; break }
            }
            if let end = matchEnd {
                out.append(contentsOf: bytes[copiedUpTo..<i])
                out.append(contentsOf: marker)
                copiedUpTo = end
                i = end
                changed = true
            } else {
                i += 1
            }
        }
        if truncated, let cut = tailCut(bytes, from: copiedUpTo) {
            out.append(contentsOf: bytes[copiedUpTo..<cut])
            out.append(contentsOf: marker)
            copiedUpTo = bytes.count
            changed = true
        }
        guard changed else { return text }
        out.append(contentsOf: bytes[copiedUpTo...])
        return String(decoding: out, as: UTF8.self)
    }

    /// Every string and every key of a parsed document, redacted.
    public func redact(_ value: JSONValue) -> JSONValue {
        guard !secrets.isEmpty else { return value }
        switch value {
        case .string(let s): return .string(redact(s))
        case .array(let a): return .array(a.map(redact))
        case .object(let o):
            var out: [String: JSONValue] = [:]
            for (k, v) in o { out[redact(k)] = redact(v) }
            return .object(out)
        default: return value
        }
    }

    /// Where a secret's head (at least `minimumTail` scalars, literal) starts at the end of `bytes`.
    private func tailCut(_ bytes: [UInt8], from start: Int) -> Int? {
        for s in scalars {
            for n in stride(from: s.count - 1, through: Self.minimumTail, by: -1) {
                let head = Array(String(String.UnicodeScalarView(s[0..<n])).utf8)
                if bytes.count - start >= head.count && bytes.suffix(head.count).elementsEqual(head) {
                    return bytes.count - head.count
                }
            }
        }
        return nil
    }

    /// The end of a match of `secret` in `bytes` at `start`, each character literal or JSON-escaped.
    static func match(_ secret: [Unicode.Scalar], _ encoded: [[UInt8]], in bytes: [UInt8], at start: Int) -> Int? {
        var j = start
        for k in secret.indices {
            guard let next = matchCharacter(secret[k], literal: encoded[k], in: bytes, at: j) else { return nil }
            j = next
        }
        return j
    }

    private static func matchCharacter(_ c: Unicode.Scalar, literal: [UInt8], in bytes: [UInt8], at j: Int) -> Int? {
        if j + literal.count <= bytes.count && bytes[j..<(j + literal.count)].elementsEqual(literal) { return j + literal.count }
        guard j + 1 < bytes.count, bytes[j] == UInt8(ascii: "\\") else { return nil }
        switch bytes[j + 1] {
        case UInt8(ascii: "u"):
            guard let unit = hex4(bytes, at: j + 2) else { return nil }
            if c.value < 0x10000 { return unit == c.value ? j + 6 : nil }
            let v = c.value - 0x10000
            guard unit == 0xD800 + (v >> 10), j + 7 < bytes.count, bytes[j + 6] == UInt8(ascii: "\\"), bytes[j + 7] == UInt8(ascii: "u"),
                  let low = hex4(bytes, at: j + 8), low == 0xDC00 + (v & 0x3FF) else { return nil }
            return j + 12
        case UInt8(ascii: "\""): return c.value == 0x22 ? j + 2 : nil
        case UInt8(ascii: "\\"): return c.value == 0x5C ? j + 2 : nil
        case UInt8(ascii: "/"): return c.value == 0x2F ? j + 2 : nil
        case UInt8(ascii: "b"): return c.value == 0x08 ? j + 2 : nil
        case UInt8(ascii: "f"): return c.value == 0x0C ? j + 2 : nil
        case UInt8(ascii: "n"): return c.value == 0x0A ? j + 2 : nil
        case UInt8(ascii: "r"): return c.value == 0x0D ? j + 2 : nil
        case UInt8(ascii: "t"): return c.value == 0x09 ? j + 2 : nil
        default: return nil
        }
    }

    private static func hex4(_ bytes: [UInt8], at i: Int) -> UInt32? {
        guard i + 4 <= bytes.count else { return nil }
        var v: UInt32 = 0
        for k in i..<(i + 4) {
            let b = bytes[k]
            let d: UInt32
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(b - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(b - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(b - UInt8(ascii: "A") + 10)
            default: return nil
            }
            v = v << 4 | d
        }
        return v
    }
}
