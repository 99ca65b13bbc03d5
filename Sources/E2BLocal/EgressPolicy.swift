import Foundation
import SandboxRunner

/// A sandbox's `network` as E2B's egress enforces it, for the egress proxy e2b-local binds into
/// the sandbox (infra `packages/orchestrator/pkg/tcpfirewall/handlers.go`):
/// - an allowed name (`allowOut`, exact, `*.suffix` or `*`) is matched on ports 80 and 443 only
///   (E2B reads the name from the Host header or TLS SNI there; other ports are checked by
///   address alone), then dialled by name and refused when it resolves to an internal address
///   (`DeniedSandboxCIDRs`, `packages/shared/pkg/sandbox-network/firewall.go`);
/// - otherwise the destination's addresses are checked: allowed when all are in `allowOut`
///   CIDRs, or when none is in `denyOut` (`0.0.0.0/0` is all traffic, IPv6 included);
/// - internal addresses are refused whatever allowed them, unless the operator let them through
///   (`--allow-internal-egress`, E2B's ALLOW_SANDBOX_INTERNAL_CIDRS; here also `ADDRESS:PORT`);
/// - `rules[name][0].transform.headers` replace the request's headers of those names.
/// Deviation: E2B intercepts transparently; e2b-local's sandboxes reach the proxy through a Unix
/// socket (`POSTHOG_EGRESS_SOCKET`) with absolute URLs, and CONNECT is refused.
struct E2BEgressRules: EgressRules {
    /// A hole the operator made in the internal-address refusal.
    struct InternalException: Sendable, Equatable {
        var cidr: String
        var port: Int?

        /// `CIDR`, `ADDRESS`, `ADDRESS:PORT` or `[V6]:PORT`.
        init?(_ text: String) {
            if let close = text.lastIndex(of: "]"), text.hasPrefix("[") {
                let address = String(text[text.index(after: text.startIndex)..<close])
                let rest = text[text.index(after: close)...]
                guard EgressAddress(address) != nil else { return nil }
                if rest.isEmpty { port = nil } else {
                    guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()), (1...65535).contains(p) else { return nil }
                    port = p
                }
                cidr = address
                return
            }
            let parts = text.split(separator: ":")
            if parts.count == 2, EgressAddress(String(parts[0])) != nil {
                guard let p = Int(parts[1]), (1...65535).contains(p) else { return nil }
                cidr = String(parts[0])
                port = p
                return
            }
            guard NetworkOptions.isIPOrCIDR(text) else { return nil }
            cidr = text
            port = nil
        }

        func covers(_ a: EgressAddress, port p: Int) -> Bool { a.isIn(cidr: cidr) && (port == nil || port == p) }
    }

    var allowedNames: [String]
    var allowedCIDRs: [String]
    var deniedCIDRs: [String]
    /// Rule domain → headers to set.
    var headers: [String: [(name: String, value: String)]]
    var exceptions: [InternalException]
    let resolver: EgressResolver

    static let namePorts: Set<Int> = [80, 443]

    init(allowOut: [String], denyOut: [String], rules: JSONValue?, exceptions: [InternalException],
         hosts: [String: [EgressAddress]] = [:]) {
        resolver = EgressResolver(overrides: hosts)
        allowedNames = allowOut.filter { !NetworkOptions.isIPOrCIDR($0) }.map { $0.lowercased() }
        allowedCIDRs = allowOut.filter { NetworkOptions.isIPOrCIDR($0) }
        deniedCIDRs = denyOut
        var h: [String: [(name: String, value: String)]] = [:]
        for (domain, list) in rules?.objectValue ?? [:] {
            guard let first = list.arrayValue?.first, let set = first["transform"]?["headers"]?.objectValue else { continue }
            h[domain.lowercased()] = set.sorted { $0.key < $1.key }.compactMap { k, v in v.stringValue.map { (k, $0) } }
        }
        headers = h
        self.exceptions = exceptions
    }

    static func matches(_ host: String, _ pattern: String) -> Bool {
        if pattern.isEmpty { return false }
        if pattern == "*" || pattern == host { return true }
        if pattern.hasPrefix("*.") { return host.hasSuffix(String(pattern.dropFirst())) }
        return false
    }

    static func contains(_ cidrs: [String], _ a: EgressAddress) -> Bool {
        cidrs.contains { $0 == NetworkOptions.allTraffic || a.isIn(cidr: $0) }
    }

    func decide(_ target: EgressTarget) -> EgressDecision {
        guard let resolved = resolver.resolve(target.host) else {
            return .refuse("\(target.host) could not be resolved by the egress proxy.")
        }
        // E2B dials an allowed name address by address and refuses each internal one: what is
        // left is what may be connected to (and all the proxy will connect to).
        let excepted = { (a: EgressAddress) in exceptions.contains { $0.covers(a, port: target.port) } }
        let addresses = resolved.filter { $0.internalKind == nil || excepted($0) }
        guard !addresses.isEmpty else {
            let a = resolved[0]
            return .refuse("\(target.host) resolves to a \(a.internalKind ?? "internal") address (\(a)), which E2B always refuses "
                + "(e2b-local --allow-internal-egress makes an exception).")
        }
        let isName = EgressAddress(target.host) == nil
        let byName = isName && allowedNames.contains { Self.matches(target.host, $0) }
        let byAddress = !allowedCIDRs.isEmpty && addresses.allSatisfy { Self.contains(allowedCIDRs, $0) }
        let notDenied = !addresses.contains { Self.contains(deniedCIDRs, $0) }
        guard byName || byAddress || notDenied else {
            return .refuse("\(target) is not in the sandbox's network.allowOut, and its denyOut covers it.")
        }
        if byName && !byAddress && !notDenied && !Self.namePorts.contains(target.port) && !addresses.allSatisfy(excepted) {
            return .refuse("\(target) is allowed by name, which E2B matches on ports 80 and 443 only.")
        }
        let set = headers.first { Self.matches(target.host, $0.key) }?.value ?? []
        return .allow(addresses: addresses, set: set, strip: [])
    }
}
