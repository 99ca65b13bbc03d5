import Foundation

/// Settings of the E2B backend, from the environment (`E2B_*`) or set by code.
public struct E2BConfiguration: Sendable {
    /// Control plane, default `https://api.<domain>`.
    public var apiURL: String
    /// envd base URL when all sandboxes share one (e2b-local, E2B_SANDBOX_URL); otherwise
    /// `https://49983-<sandboxID>.<domain>` per sandbox.
    public var sandboxURL: String?
    public var domain: String = "e2b.app"
    public var apiKey: String
    /// The sandbox image; it must have python3, bash, base64 and tar (E2B's `base` has them).
    public var templateID: String = "base"
    /// CAs to trust and where to connect (E2B_CA_FILE, E2B_CONNECT_TO): how a self-signed
    /// e2b-local on loopback is reached under a real-looking domain.
    public var connection = CurlConnectionOptions()
    /// The longest sandbox lifetime the plan allows (E2B_MAX_SANDBOX_TIMEOUT; Hobby: 1 h). A run
    /// whose timeout plus `lifetimeMargin` does not fit is refused before any sandbox is created.
    public var maxSandboxTimeout: Duration = .seconds(3600)
    /// Sandbox lifetime beyond the run's own timeout: the time from the create answer to envd
    /// starting the script (one connect, `connectTimeout`, plus slack). envd kills the script at
    /// the run's deadline and we kill the sandbox right after; the lifetime is only the backstop
    /// for when that kill cannot be delivered, so it is kept as short as the run allows.
    public var lifetimeMargin: Duration = .seconds(15)
    public var connectTimeout: Duration = .seconds(10)
    public var requestTimeout: Duration = .seconds(60)
    /// Attempts for idempotent steps (create with its Idempotency-Key, kill) on 429, 5xx and
    /// connection errors.
    public var attempts: Int = 4
    public var baseBackoff: Duration = .milliseconds(250)
    public var maxBackoff: Duration = .seconds(8)
    /// Keep sandboxes warm between runs (agents, smoke): a pool of at most this many; 0 = off.
    public var warmPoolSize: Int = 0
    /// Idle warm sandboxes are killed after this long.
    public var warmIdleTTL: Duration = .seconds(120)
    /// Bundles up to this size (base64) travel inside the `Start` request; larger ones are
    /// uploaded first (one more round trip). The command line and environment of a Linux
    /// process hold at most 2 MiB in all, 128 KiB per string.
    public var inlineBundleLimit: Int = 1 << 20

    public init(apiURL: String, sandboxURL: String? = nil, apiKey: String) {
        self.apiURL = apiURL
        self.sandboxURL = sandboxURL
        self.apiKey = apiKey
    }

    /// The key `sandbox-runner e2b-local` accepts when E2B_API_KEY is unset.
    public static let localDemoKey = "e2b_local_demo_key"

    public static func fromEnvironment(_ env: [String: String]) throws -> E2BConfiguration {
        func value(_ name: String) -> String? { env[name].flatMap { $0.isEmpty ? nil : $0 } }
        let domain = value("E2B_DOMAIN") ?? "e2b.app"
        let apiURL = value("E2B_API_URL") ?? "https://api.\(domain)"
        let connection = CurlConnectionOptions(caFile: value("E2B_CA_FILE"), connectTo: value("E2B_CONNECT_TO"))
        if let ca = connection.caFile, !FileManager.default.isReadableFile(atPath: ca) {
            throw RunnerError(.badInput, "E2B_CA_FILE names \(ca), which cannot be read: point it at a PEM file of CA certificates.")
        }
        if let target = connection.connectTo, Self.hostAndPort(target) == nil {
            throw RunnerError(.badInput, "E2B_CONNECT_TO must be host:port (e.g. 127.0.0.1:8443); got '\(target)'.")
        }
        let local = apiURL.hasPrefix("http://") || Self.isLoopback(host: Self.host(of: apiURL))
            || connection.connectTo.flatMap(Self.hostAndPort).map { Self.isLoopback(host: $0.host) } == true
        guard let key = value("E2B_API_KEY") ?? (local ? localDemoKey : nil) else {
            throw RunnerError(.unavailable, "E2B_API_KEY is not set: put your E2B API key in the environment or .env to use --backend e2b.")
        }
        // A plain-HTTP control plane is a local, single-port server (e2b-local): its envd is
        // on the same address unless E2B_SANDBOX_URL says otherwise.
        let sandboxURL = value("E2B_SANDBOX_URL") ?? (apiURL.hasPrefix("http://") ? apiURL : nil)
        var c = E2BConfiguration(apiURL: apiURL, sandboxURL: sandboxURL, apiKey: key)
        c.domain = domain
        c.connection = connection
        if let t = value("E2B_TEMPLATE") { c.templateID = t }
        if let raw = value("E2B_MAX_SANDBOX_TIMEOUT") {
            guard let s = Int(raw), (60...86_400 * 30).contains(s) else {
                throw RunnerError(.badInput, "E2B_MAX_SANDBOX_TIMEOUT must be a whole number of seconds from 60 up "
                    + "(your E2B plan's longest sandbox lifetime, 3600 on Hobby); got '\(raw)'.")
            }
            c.maxSandboxTimeout = .seconds(s)
        }
        return c
    }

    /// True when sandboxes are created on this machine (e2b-local on loopback), so they can reach
    /// its loopback services (the --demo PostHog); a cloud sandbox never can.
    public var sandboxesAreLocal: Bool {
        if let target = connection.connectTo, let hp = Self.hostAndPort(target) { return Self.isLoopback(host: hp.host) }
        return Self.isLoopback(host: Self.host(of: apiURL)) && (sandboxURL.map { Self.isLoopback(host: Self.host(of: $0)) } ?? true)
    }

    /// The lifetime to ask for a sandbox that runs a job of `timeout`, or a refusal when the plan
    /// cannot hold it. With a warm pool the sandbox should also outlive its idle time, but only
    /// as far as the plan allows.
    public func sandboxLifetime(forRunTimeout timeout: Duration, warm: Bool) throws -> Duration {
        let needed = timeout + lifetimeMargin
        guard needed <= maxSandboxTimeout else {
            let s = timeout.components.seconds, m = lifetimeMargin.components.seconds, max = maxSandboxTimeout.components.seconds
            throw RunnerError(.badInput, "A \(s) s run needs an E2B sandbox living \(s + m) s (\(m) s of start-up margin), "
                + "longer than E2B_MAX_SANDBOX_TIMEOUT (\(max) s, your plan's limit): lower --timeout to at most \(max - m) s, "
                + "or raise E2B_MAX_SANDBOX_TIMEOUT if your plan allows longer sandboxes.")
        }
        return warm ? min(needed + warmIdleTTL, maxSandboxTimeout) : needed
    }

    func envdURL(sandboxID: String, domain: String?) -> String {
        if let sandboxURL { return sandboxURL.trimmingCharacters(in: CharacterSet(charactersIn: "/")) }
        return "https://49983-\(sandboxID).\(domain ?? self.domain)"
    }

    var api: String { apiURL.trimmingCharacters(in: CharacterSet(charactersIn: "/")) }

    static func host(of url: String) -> String {
        guard let c = URLComponents(string: url), let h = c.host else { return "" }
        return h.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
    }

    static func hostAndPort(_ s: String) -> (host: String, port: Int)? {
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        let host = String(s[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return host.isEmpty ? nil : (host, port)
    }

    static func isLoopback(host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.") || host.hasSuffix(".localhost")
    }
}
