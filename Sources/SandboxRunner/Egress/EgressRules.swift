import Foundation

/// Where a request through the egress proxy wants to go: the scheme, host and port of its
/// absolute URL (host lower-cased, an IPv6 address without brackets).
public struct EgressTarget: Sendable, Hashable, CustomStringConvertible {
    public var scheme: String
    public var host: String
    public var port: Int

    public init(scheme: String, host: String, port: Int) {
        self.scheme = scheme
        self.host = host
        self.port = port
    }

    /// `host:port`, the IPv6 form bracketed.
    public var authority: String { (EgressAddress(host)?.isIPv6 ?? false ? "[\(host)]" : host) + ":\(port)" }
    public var description: String { "\(scheme)://\(authority)" }
}

/// What the proxy does with one request.
public enum EgressDecision: Sendable {
    /// Forward it, connecting only to `addresses` (the ones checked; nil for an IP literal host,
    /// which is its own address), after removing `strip` headers from the script's request and
    /// setting `set` (which replace any the script sent under those names).
    case allow(addresses: [EgressAddress], set: [(name: String, value: String)], strip: Set<String>)
    /// Refuse it with this reason (one sentence, shown to the script and logged).
    case refuse(String)
}

/// The allowlist behind an egress proxy: which targets may be reached, at which addresses,
/// and which headers are added on the way (credentials stay on the host side).
public protocol EgressRules: Sendable {
    func decide(_ target: EgressTarget) -> EgressDecision
}

/// Caps on what one proxy (one run, one e2b-local sandbox) may do.
public struct EgressLimits: Sendable, Equatable {
    /// Connections from the sandbox open at once (past it, new ones are refused).
    public var maxOpenConnections: Int = 16
    /// Connections from the sandbox in all.
    public var maxConnections: Int = 4096
    /// Requests in all (every one is logged and checked).
    public var maxRequests: Int = 100_000
    /// Bytes of request bodies sent out, in all.
    public var maxBytesOut: Int64 = 256 << 20
    /// Bytes of answers brought in, in all (exports are large: the default is 8 GiB).
    public var maxBytesIn: Int64 = 8 << 30
    /// A request head (request line and headers) at most.
    public var maxHeadBytes: Int = 64 << 10
    /// Seconds a kept-alive connection may wait for its next request, and a request for its body.
    public var idleTimeout: Duration = .seconds(120)
    /// Distinct log entries kept (destinations × outcomes); more are counted in one last entry.
    public var maxLogEntries: Int = 100
    /// A PEM file of CAs to trust instead of the system's for TLS to the allowed hosts.
    public var caFile: String?

    public init() {}

    /// The defaults, changed by `SANDBOX_RUNNER_EGRESS_MAX_BYTES_IN` / `_OUT` (bytes) and
    /// `SANDBOX_RUNNER_EGRESS_CA_FILE`.
    public static func from(environment env: [String: String]) throws -> EgressLimits {
        var l = EgressLimits()
        for (name, keyPath) in [("SANDBOX_RUNNER_EGRESS_MAX_BYTES_IN", \EgressLimits.maxBytesIn),
                                ("SANDBOX_RUNNER_EGRESS_MAX_BYTES_OUT", \EgressLimits.maxBytesOut)] {
            guard let raw = env[name], !raw.isEmpty else { continue }
            guard let v = Int64(raw), v > 0 else {
                throw RunnerError(.badInput, "\(name) must be a positive number of bytes.")
            }
            l[keyPath: keyPath] = v
        }
        if let ca = env["SANDBOX_RUNNER_EGRESS_CA_FILE"], !ca.isEmpty { l.caFile = ca }
        return l
    }
}
