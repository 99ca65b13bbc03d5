import Foundation
import SandboxRunner

/// Settings of an e2b-local server: where it listens, what it accepts, how its sandboxes are jailed.
public struct E2BLocalConfiguration: Sendable {
    /// The key used when `E2B_API_KEY` is unset; deliberately not shaped like a real E2B key.
    public static let demoAPIKey = E2BConfiguration.localDemoKey
    /// The envd version reported to clients: the official SDK switches features on it
    /// (>= 0.4.0 default user, >= 0.5.7 octet-stream uploads). Everything up to 0.5.7 is served.
    public static let envdVersion = "0.5.7"
    /// The default user's home inside a sandbox.
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
    /// Lifetime of a sandbox created without `timeout` (the API's default, 15 s:
    /// infra `packages/api/internal/sandbox/sandboxtypes/states.go`, SandboxTimeoutDefault).
    public var defaultTimeout: Int = 15
    /// The plan's longest sandbox lifetime in hours (E2B: `Limits.MaxLengthHours`; Hobby 1, Pro
    /// 24). Creates and timeout changes above it get 400 "Timeout cannot be greater than N hours".
    public var maxSandboxHours: Int = 1
    /// The `domain` reported for sandboxes (envd is also reachable as `49983-<id>.<domain>`).
    public var domain: String = "localhost"
    /// Faults armed at start.
    public var faults: [FaultSpec] = []
    /// Per-process limits of everything in a sandbox (its agent and its commands).
    public var limits = JailLimits()
    /// Size of each sandbox's `/home/user` (a tmpfs in its own mount namespace); `/tmp` is
    /// `limits.tmpBytes`. Together they are all a sandbox can write.
    public var diskBytes: Int = 256 << 20
    /// Refuse what real E2B accepts but our own client must never send: envd calls carrying
    /// `X-API-Key` (E2B's proxy would forward the team key into the sandbox) and the deprecated
    /// `POST /sandboxes`.
    public var strict: Bool = false
    /// Serve TLS (certificate chain and key, PEM) instead of plain HTTP; the plain listener is then
    /// a Unix socket only the TLS front reaches.
    public var tls: TLSFiles?
    /// How often expired sandboxes are looked for.
    public var reapInterval: Duration = .milliseconds(200)
    /// Largest multipart upload body (octet-stream uploads are streamed and not bounded here).
    public var maxMultipartBytes: Int = 256 << 20
    /// Internal addresses sandboxes may still reach through their egress (`CIDR`, `ADDRESS`, or
    /// `ADDRESS:PORT`): E2B refuses loopback, private and link-local addresses whatever a
    /// sandbox's `allowOut` says, unless its operator allows them (ALLOW_SANDBOX_INTERNAL_CIDRS).
    public var internalEgress: [String] = []
    /// Caps of each sandbox's egress proxy.
    public var egressLimits = EgressLimits()
    /// Names the egress proxies resolve from first (`SANDBOX_RUNNER_EGRESS_HOSTS`, a hosts file).
    public var egressHosts: [String: [EgressAddress]] = [:]

    public struct TLSFiles: Sendable {
        public var certificateChain: String
        public var privateKey: String
        public init(certificateChain: String, privateKey: String) {
            self.certificateChain = certificateChain
            self.privateKey = privateKey
        }
    }

    public init() {}

    /// Whether `--allow-internal-egress` can use this entry.
    public static func internalEgressIsValid(_ text: String) -> Bool { E2BEgressRules.InternalException(text) != nil }

    public var maxTimeoutSeconds: Int { maxSandboxHours * 3600 }

    /// The key shown to people: its head only.
    public static func mask(_ key: String) -> String {
        key.count <= 8 ? String(repeating: "*", count: key.count) : String(key.prefix(8)) + "…"
    }
}
