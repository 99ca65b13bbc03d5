import Foundation

/// Where PostHog is, resolved from the runner's settings exactly as the driver resolves them
/// (`sandbox/posthog_driver/config.py`: shortcuts `us`/`eu`, https by default, the ingestion
/// host derived for PostHog Cloud), so the hosts the proxy allows are the hosts the driver calls.
/// The sandbox is given these normalized URLs.
public struct PostHogEndpoints: Sendable, Equatable {
    public static let defaultAPIURL = "https://us.posthog.com"
    static let shortcuts = ["us": "https://us.posthog.com", "eu": "https://eu.posthog.com"]
    static let cloudIngest = ["us.posthog.com": "us.i.posthog.com", "eu.posthog.com": "eu.i.posthog.com", "app.posthog.com": "us.i.posthog.com"]
    static let cloudApp = ["us.i.posthog.com": "us.posthog.com", "eu.i.posthog.com": "eu.posthog.com"]

    /// `scheme://host[:port][/prefix]`, as the sandbox gets them.
    public var apiURL: String
    public var ingestURL: String
    public var api: EgressTarget
    public var ingest: EgressTarget

    /// From POSTHOG_API_URL (or POSTHOG_HOST) and POSTHOG_INGEST_URL; a setting that cannot be
    /// parsed is a bad-input error naming it.
    public static func from(environment env: [String: String]) throws -> PostHogEndpoints {
        let apiSetting = nonEmpty(env["POSTHOG_API_URL"]) != nil ? "POSTHOG_API_URL" : "POSTHOG_HOST"
        let rawAPI = nonEmpty(env["POSTHOG_API_URL"]) ?? nonEmpty(env["POSTHOG_HOST"]) ?? defaultAPIURL
        var api = try parse(rawAPI, setting: apiSetting)
        if let app = cloudApp[api.host] { api.host = app }  // the ingestion host given by mistake
        let ingest: ParsedURL
        if let rawIngest = nonEmpty(env["POSTHOG_INGEST_URL"]) {
            var i = try parse(rawIngest, setting: "POSTHOG_INGEST_URL")
            if let mapped = cloudIngest[i.host] { i.host = mapped }
            ingest = i
        } else if let mapped = cloudIngest[api.host] {
            ingest = ParsedURL(scheme: "https", host: mapped, port: nil, path: "")
        } else {
            ingest = api
        }
        return PostHogEndpoints(apiURL: api.text, ingestURL: ingest.text, api: api.target, ingest: ingest.target)
    }

    struct ParsedURL {
        var scheme: String
        var host: String
        var port: Int?
        var path: String
        var target: EgressTarget { EgressTarget(scheme: scheme, host: host, port: port ?? (scheme == "https" ? 443 : 80)) }
        var text: String {
            let h = EgressAddress(host)?.isIPv6 == true ? "[\(host)]" : host
            return "\(scheme)://\(h)\(port.map { ":\($0)" } ?? "")\(path)"
        }
    }

    static func nonEmpty(_ s: String?) -> String? {
        guard let t = s?.trimmingCharacters(in: .whitespaces), !t.isEmpty else { return nil }
        return t
    }

    /// `us`, `eu`, `host[:port][/path]` or `http(s)://host[:port][/path]`; stricter than the
    /// driver (the port must be a number, the host a name or an address) so that nothing the
    /// runner allowed is read differently inside.
    static func parse(_ raw: String, setting: String) throws -> ParsedURL {
        func bad(_ why: String) -> RunnerError {
            RunnerError(.badInput, "\(setting) is not a usable PostHog URL (\(why)); set it to us, eu or an http(s):// URL such as https://us.posthog.com.")
        }
        var text = shortcuts[raw.lowercased()] ?? raw
        if !text.contains("://") { text = "https://" + text }
        let schemeEnd = text.range(of: "://")!
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { throw bad("the scheme must be http or https") }
        let rest = text[schemeEnd.upperBound...]
        let hostport = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        var path = rest.dropFirst(hostport.count).split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        path = path.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let trimmedPath = path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        guard !hostport.isEmpty else { throw bad("it has no host") }
        guard !hostport.contains("@"), !hostport.contains(where: { $0.isWhitespace || $0.isNewline }),
              !trimmedPath.contains(where: { $0.isWhitespace || $0.isNewline || $0.asciiValue.map { $0 < 0x20 || $0 == 0x7f } ?? false }) else {
            throw bad("it holds spaces, control characters or credentials")
        }
        let (host, port) = try splitHostPort(hostport, bad: bad)
        return ParsedURL(scheme: scheme, host: host, port: port, path: trimmedPath.isEmpty ? "" : "/" + trimmedPath)
    }

    /// `host`, `host:port`, `[v6]`, `[v6]:port` → (lower-cased host without brackets, port).
    static func splitHostPort(_ hostport: String, bad: (String) -> RunnerError) throws -> (String, Int?) {
        var host: String
        var portText: Substring?
        if hostport.hasPrefix("[") {
            guard let close = hostport.firstIndex(of: "]") else { throw bad("an IPv6 address needs its closing bracket") }
            host = String(hostport[hostport.index(after: hostport.startIndex)..<close])
            let after = hostport[hostport.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw bad("unexpected text after the IPv6 address") }
                portText = after.dropFirst()
            }
            guard EgressAddress(host)?.isIPv6 == true else { throw bad("the bracketed host is not an IPv6 address") }
        } else {
            let parts = hostport.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { throw bad("an IPv6 address must be written in brackets") }
            host = String(parts[0])
            if parts.count == 2 { portText = parts[1] }
        }
        host = host.lowercased()
        var port: Int?
        if let p = portText {
            guard let n = Int(p), p.allSatisfy(\.isASCII), (1...65535).contains(n) else { throw bad("the port must be a number from 1 to 65535") }
            port = n
        }
        if EgressAddress(host) == nil {
            let labels = host.hasSuffix(".") ? host.dropLast().split(separator: ".", omittingEmptySubsequences: false)
                : host.split(separator: ".", omittingEmptySubsequences: false)
            let valid = !labels.isEmpty && host.count <= 253 && labels.allSatisfy { label in
                !label.isEmpty && label.count <= 63 && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
                    && !label.hasPrefix("-") && !label.hasSuffix("-")
            }
            guard valid else { throw bad("the host is not a valid name or address") }
        }
        return (host, port)
    }
}

/// The `posthog` network policy's allowlist: the PostHog API and ingestion hosts (scheme, host
/// and port each), plus the operator's `SANDBOX_RUNNER_EGRESS_ALLOW`. Names are resolved by the
/// proxy; a name that resolves to a loopback, private, link-local or otherwise internal address
/// is refused unless the operator named that very address (an IP literal such as the `--demo`
/// server's 127.0.0.1), wrote `localhost` (loopback only), or listed the name in
/// `SANDBOX_RUNNER_EGRESS_PRIVATE`. The personal API key is added as `Authorization: Bearer …`
/// to requests for the API host only; any `Authorization` the script sends is removed.
public struct PostHogEgressRules: EgressRules {
    public struct Destination: Sendable, Equatable {
        public var target: EgressTarget
        public var injectsKey: Bool
    }

    public var endpoints: PostHogEndpoints
    public var destinations: [Destination]
    /// Names the operator vouches for when they resolve to internal addresses.
    public var privateNames: Set<String>
    public let resolver: EgressResolver
    /// `Bearer <personal key>`; never logged, never shown.
    let authorization: String?
    public var hasKey: Bool { authorization != nil }

    /// Headers the script may never send through the proxy.
    public static let stripped: Set<String> = ["authorization", "proxy-authorization"]

    /// From the runner's environment: POSTHOG_API_URL / POSTHOG_INGEST_URL (or their defaults),
    /// POSTHOG_PERSONAL_API_KEY, SANDBOX_RUNNER_EGRESS_ALLOW (comma-separated `host`,
    /// `host:port` or `http(s)://host[:port]`; https and 443 by default),
    /// SANDBOX_RUNNER_EGRESS_PRIVATE (comma-separated names) and SANDBOX_RUNNER_EGRESS_HOSTS (a
    /// hosts file the proxy resolves from first). Bad settings are bad-input errors naming them.
    public static func from(environment env: [String: String]) throws -> PostHogEgressRules {
        let endpoints = try PostHogEndpoints.from(environment: env)
        var destinations = [Destination(target: endpoints.api, injectsKey: true)]
        if endpoints.ingest != endpoints.api { destinations.append(Destination(target: endpoints.ingest, injectsKey: false)) }
        for item in list(env["SANDBOX_RUNNER_EGRESS_ALLOW"]) {
            let parsed = try PostHogEndpoints.parse(item, setting: "SANDBOX_RUNNER_EGRESS_ALLOW (\(item.prefix(80)))")
            guard parsed.path.isEmpty else {
                throw RunnerError(.badInput, "SANDBOX_RUNNER_EGRESS_ALLOW takes hosts (host, host:port or https://host:port) without paths; fix the entry \(item.prefix(80)).")
            }
            if !destinations.contains(where: { $0.target == parsed.target }) {
                destinations.append(Destination(target: parsed.target, injectsKey: false))
            }
        }
        var overrides: [String: [EgressAddress]] = [:]
        if let file = PostHogEndpoints.nonEmpty(env["SANDBOX_RUNNER_EGRESS_HOSTS"]) { overrides = try EgressResolver.hostsFile(file) }
        let key = PostHogEndpoints.nonEmpty(env["POSTHOG_PERSONAL_API_KEY"])
        if let key, key.contains(where: { $0.isNewline || ($0.asciiValue ?? 0x20) < 0x20 }) {
            throw RunnerError(.badInput, "POSTHOG_PERSONAL_API_KEY holds a line break or control character; paste the key alone.")
        }
        return PostHogEgressRules(endpoints: endpoints, destinations: destinations,
                                  privateNames: Set(list(env["SANDBOX_RUNNER_EGRESS_PRIVATE"]).map { $0.lowercased() }),
                                  resolver: EgressResolver(overrides: overrides), authorization: key.map { "Bearer \($0)" })
    }

    static func list(_ raw: String?) -> [String] {
        (raw ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The allowed destinations, as `doctor` and errors show them.
    public var summary: String { destinations.map(\.target.description).joined(separator: ", ") }

    public func decide(_ target: EgressTarget) -> EgressDecision {
        guard let destination = destinations.first(where: { $0.target == target }) else {
            return .refuse("\(target) is not allowed: this sandbox may reach only \(summary) (SANDBOX_RUNNER_EGRESS_ALLOW adds hosts).")
        }
        guard let addresses = resolver.resolve(target.host) else {
            return .refuse("\(target.host) could not be resolved by the egress proxy.")
        }
        let literal = EgressAddress(target.host) != nil
        let localName = target.host == "localhost" || target.host.hasSuffix(".localhost")
        for a in addresses {
            guard let kind = a.internalKind else { continue }
            if literal || privateNames.contains(target.host) { continue }
            if localName && kind == "loopback" { continue }
            return .refuse("\(target.host) resolves to a \(kind) address (\(a)), which the egress proxy refuses; "
                + "if that is meant, name the host in SANDBOX_RUNNER_EGRESS_PRIVATE.")
        }
        let set = destination.injectsKey ? authorization.map { [(name: "Authorization", value: $0)] } ?? [] : []
        return .allow(addresses: addresses, set: set, strip: Self.stripped)
    }
}
