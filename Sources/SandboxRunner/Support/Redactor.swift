import Foundation

/// Replaces every occurrence of a secret's value with `[REDACTED]`.
public struct Redactor: Sendable {
    public static let marker = "[REDACTED]"
    /// Variables whose values are always secrets.
    public static let secretNames: Set<String> = [
        "POSTHOG_PERSONAL_API_KEY", "POSTHOG_PROJECT_API_KEY", "POSTHOG_API_KEY", "E2B_API_KEY",
        "E2B_ACCESS_TOKEN", "SANDBOX_RUNNER_TOKEN",
    ]
    /// Values shorter than this are not treated as secrets (redacting "1" would ruin output).
    static let minimumLength = 6

    public private(set) var secrets: [String]

    public init(secrets: [String]) {
        self.secrets = Array(Set(secrets.filter { $0.count >= Self.minimumLength })).sorted { $0.count > $1.count }
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
        guard !secrets.isEmpty else { return text }
        var out = text
        for s in secrets where out.contains(s) { out = out.replacingOccurrences(of: s, with: Self.marker) }
        return out
    }

    /// Redacts text that was cut at `truncated`: a secret's head at the very end is redacted too.
    public func redact(_ text: String, truncated: Bool) -> String {
        var out = redact(text)
        guard truncated else { return out }
        for s in secrets {
            for n in stride(from: s.count - 1, through: 4, by: -1) where out.hasSuffix(String(s.prefix(n))) {
                out = String(out.dropLast(n)) + Self.marker
                return out
            }
        }
        return out
    }
}
