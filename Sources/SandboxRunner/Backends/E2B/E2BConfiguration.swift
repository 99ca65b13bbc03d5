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
    /// The sandbox image; it must have python3 and tar.
    public var templateID: String = "base"
    /// Sandbox lifetime beyond the run's own timeout: the backstop if we could not kill it.
    public var lifetimeMargin: Duration = .seconds(30)
    public var connectTimeout: Duration = .seconds(10)
    public var requestTimeout: Duration = .seconds(60)
    /// Attempts for idempotent steps (create, kill) on 429, 5xx and connection errors.
    public var attempts: Int = 4
    public var baseBackoff: Duration = .milliseconds(250)
    public var maxBackoff: Duration = .seconds(8)
    /// Keep sandboxes warm between runs (agents, smoke): a pool of at most this many; 0 = off.
    public var warmPoolSize: Int = 0
    /// Idle warm sandboxes are killed after this long.
    public var warmIdleTTL: Duration = .seconds(120)

    public init(apiURL: String, sandboxURL: String? = nil, apiKey: String) {
        self.apiURL = apiURL
        self.sandboxURL = sandboxURL
        self.apiKey = apiKey
    }

    /// The key `sandbox-runner e2b-local` accepts when E2B_API_KEY is unset.
    public static let localDemoKey = "e2b_local_demo_key"

    public static func fromEnvironment(_ env: [String: String]) throws -> E2BConfiguration {
        let localAPI = env["E2B_API_URL"]?.hasPrefix("http://") ?? false
        guard let key = env["E2B_API_KEY"].flatMap({ $0.isEmpty ? nil : $0 }) ?? (localAPI ? localDemoKey : nil) else {
            throw RunnerError(.unavailable, "E2B_API_KEY is not set: put your E2B API key in the environment or .env to use --backend e2b.")
        }
        let domain = env["E2B_DOMAIN"].flatMap { $0.isEmpty ? nil : $0 } ?? "e2b.app"
        let apiURL = env["E2B_API_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? "https://api.\(domain)"
        // A plain-HTTP control plane is a local, single-port server (e2b-local): its envd is
        // on the same address unless E2B_SANDBOX_URL says otherwise.
        let sandboxURL = env["E2B_SANDBOX_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? (apiURL.hasPrefix("http://") ? apiURL : nil)
        var c = E2BConfiguration(apiURL: apiURL, sandboxURL: sandboxURL, apiKey: key)
        c.domain = domain
        if let t = env["E2B_TEMPLATE"], !t.isEmpty { c.templateID = t }
        return c
    }

    func envdURL(sandboxID: String, domain: String?) -> String {
        if let sandboxURL { return sandboxURL.trimmingCharacters(in: CharacterSet(charactersIn: "/")) }
        return "https://49983-\(sandboxID).\(domain ?? self.domain)"
    }

    var api: String { apiURL.trimmingCharacters(in: CharacterSet(charactersIn: "/")) }
}
