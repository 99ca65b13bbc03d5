import Foundation
import SandboxRunner

/// Settings of an e2b-local server: where it listens, what it accepts, how its sandboxes are jailed.
public struct E2BLocalConfiguration: Sendable {
    /// The key used when `E2B_API_KEY` is unset; deliberately not shaped like a real E2B key.
    public static let demoAPIKey = E2BConfiguration.localDemoKey
    /// The envd version reported to clients: the official SDK switches features on it
    /// (>= 0.4.0 default user, >= 0.5.7 octet-stream uploads). Everything up to 0.5.7 is served.
    public static let envdVersion = "0.5.7"
    /// Where a sandbox's workspace appears inside its jail, and the default user's home.
    public static let home = "/home/user"
    /// The envd port the SDK names in `E2b-Sandbox-Port` and in `49983-<id>.<domain>` hosts.
    public static let envdPort = 49983

    public var host: String = "127.0.0.1"
    /// 0 picks a free port; the server reports the real one.
    public var port: Int = 0
    public var apiKey: String = demoAPIKey
    /// Templates a sandbox may be created from (`base` always).
    public var templates: Set<String> = ["base"]
    /// Live sandboxes at most; creates past it get a 429.
    public var maxSandboxes: Int = 20
    /// Lifetime of a sandbox created without `timeout` (the API's default).
    public var defaultTimeout: Int = 15
    /// Longest lifetime a create or a timeout change may ask for (E2B Pro's 24 hours).
    public var maxTimeout: Int = 86_400
    /// The `domain` reported for sandboxes (envd is also reachable as `49983-<id>.<domain>`).
    public var domain: String = "localhost"
    /// Faults armed at start.
    public var faults: [FaultSpec] = []
    /// Isolation and limits of the jail each command runs in.
    public var isolation: IsolationMode = .bubblewrap
    public var limits = JailLimits()
    /// How often expired sandboxes are looked for.
    public var reapInterval: Duration = .milliseconds(200)
    /// Largest multipart upload body (octet-stream uploads are streamed to disk and not bounded here).
    public var maxMultipartBytes: Int = 256 << 20

    public init() {}

    /// The key shown to people: its head only.
    public static func mask(_ key: String) -> String {
        key.count <= 8 ? String(repeating: "*", count: key.count) : String(key.prefix(8)) + "…"
    }
}
