import Foundation
import SandboxRunner
#if canImport(Glibc)
import Glibc
#endif

/// The create body's `allow_internet_access` and `network`, validated as E2B validates them
/// (infra `packages/api/internal/handlers/sandbox_create.go`: validateNetworkConfig,
/// validateEgressRules, validateNetworkRules) and turned into what a local sandbox gets.
///
/// A sandbox with any `denyOut` (or `allow_internet_access: false`, which E2B treats as
/// `denyOut: ["0.0.0.0/0"]`) gets its own empty network namespace, and, when anything is still
/// allowed, an egress proxy bound in that enforces `allowOut`, `denyOut` and `rules` as E2B does
/// (`E2BEgressRules`); only a sandbox with neither shares the host's network.
enum NetworkOptions {
    struct Failure: Error {
        var status: Int
        var message: String
    }

    static let allTraffic = "0.0.0.0/0"
    static let maxRuleDomains = 10
    static let maxTransformsPerDomain = 1
    static let maxDomainLength = 128
    static let maxHeaderNameLength = 64
    static let maxHeaderValueLength = 2048
    static let maxHeadersPerRule = 20

    static func validate(allowInternetAccess: JSONValue?, network: JSONValue?) -> Result<SandboxNetwork, Failure> {
        var internet = true
        if let a = allowInternetAccess, a != .null {
            guard let b = a.boolValue else { return .failure(Failure(status: 400, message: "Error when parsing request: allow_internet_access must be a boolean.")) }
            internet = b
        }
        guard let network, network != .null else {
            return .success(SandboxNetwork(internet: internet, config: nil, allowOut: [], denyOut: internet ? [] : [allTraffic], rules: nil))
        }
        guard let n = network.objectValue else { return .failure(Failure(status: 400, message: "Error when parsing request: network must be an object.")) }
        do {
            let allowOut = try strings(n["allowOut"], "allowOut")
            let denyOut = try strings(n["denyOut"], "denyOut")
            if let ep = n["egressProxy"], ep != .null {
                _ = ep
                throw Failure(status: 403, message: "Egress proxy (network.egressProxy) is not enabled for this team.")
            }
            if let mask = n["maskRequestHost"], mask != .null {
                guard let m = mask.stringValue, !m.isEmpty, m.allSatisfy({ $0.isASCII }) else {
                    throw Failure(status: 400, message: "mask request host is not valid: \(mask.display)")
                }
            }
            for dns in try strings(n["dnsServers"], "dnsServers") where !isIPv4(dns) {
                throw Failure(status: 400, message: "invalid DNS server \(dns): it must be an IPv4 address")
            }
            if let ports = n["httpsPorts"], ports != .null {
                guard let list = ports.arrayValue, list.allSatisfy({ ($0.intValue ?? 0) >= 1 && ($0.intValue ?? 0) <= 65535 }) else {
                    throw Failure(status: 400, message: "Error when parsing request: httpsPorts must be a list of ports.")
                }
                if list.contains(.int(E2BLocalConfiguration.envdPort)) {
                    throw Failure(status: 400, message: "The envd port (\(E2BLocalConfiguration.envdPort)) cannot be listed in httpsPorts.")
                }
            }
            // validateEgressRules.
            for cidr in denyOut where !isSpecifiedIPOrCIDR(cidr) {
                throw Failure(status: 400, message: "invalid denied CIDR \(cidr)")
            }
            let domains = allowOut.filter { !isIPOrCIDR($0) }
            for address in allowOut where isIPOrCIDR(address) && !isSpecifiedIPOrCIDR(address) {
                throw Failure(status: 400, message: "invalid allowed address \(address)")
            }
            if !domains.isEmpty && !denyOut.contains(allTraffic) {
                throw Failure(status: 400, message: "When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' in deny out to block all other traffic.")
            }
            try validateRules(n["rules"])
            let denied = internet || denyOut.contains(allTraffic) ? denyOut : denyOut + [allTraffic]
            return .success(SandboxNetwork(internet: internet && denyOut.isEmpty, config: network, allowOut: allowOut, denyOut: denied,
                                           rules: n["rules"].flatMap { $0 == .null ? nil : $0 }))
        } catch let f as Failure {
            return .failure(f)
        } catch {
            return .failure(Failure(status: 400, message: "Error when parsing request: \(error)"))
        }
    }

    static func strings(_ v: JSONValue?, _ name: String) throws -> [String] {
        guard let v, v != .null else { return [] }
        guard let list = v.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else {
            throw Failure(status: 400, message: "Error when parsing request: network.\(name) must be a list of strings.")
        }
        return list.compactMap(\.stringValue)
    }

    /// validateNetworkRules: at most 10 domains, each a DNS name (govalidator.IsDNSName), one
    /// transform per domain, at most 20 headers, valid names and values within their lengths.
    static func validateRules(_ v: JSONValue?) throws {
        guard let v, v != .null else { return }
        guard let rules = v.objectValue else { throw Failure(status: 400, message: "Error when parsing request: network.rules must be an object.") }
        if rules.count > maxRuleDomains {
            throw Failure(status: 400, message: "Network rules can have at most \(maxRuleDomains) domains.")
        }
        for (domain, list) in rules.sorted(by: { $0.key < $1.key }) {
            if domain.isEmpty { throw Failure(status: 400, message: "Rule domain must not be empty.") }
            if domain.count > maxDomainLength {
                throw Failure(status: 400, message: "Rule domain \"\(domain)\" exceeds maximum length of \(maxDomainLength) characters.")
            }
            if !isDNSName(domain) { throw Failure(status: 400, message: "Rule domain \"\(domain)\" is not a valid domain name.") }
            guard let items = list.arrayValue else {
                throw Failure(status: 400, message: "Error when parsing request: network.rules[\"\(domain)\"] must be a list.")
            }
            if items.count > maxTransformsPerDomain {
                throw Failure(status: 400, message: "Domain \"\(domain)\" can have at most \(maxTransformsPerDomain) transform rule.")
            }
            for item in items {
                guard let headers = item["transform"]?["headers"]?.objectValue else { continue }
                if headers.count > maxHeadersPerRule {
                    throw Failure(status: 400, message: "Domain \"\(domain)\" can have at most \(maxHeadersPerRule) headers per rule.")
                }
                for (name, value) in headers {
                    if name.isEmpty { throw Failure(status: 400, message: "Header name in rule for domain \"\(domain)\" must not be empty.") }
                    if !isToken(name) {
                        throw Failure(status: 400, message: "Header name \"\(name)\" in rule for domain \"\(domain)\" must contain only valid HTTP token characters.")
                    }
                    if name.utf8.count > maxHeaderNameLength {
                        throw Failure(status: 400, message: "Header name \"\(name)\" in rule for domain \"\(domain)\" exceeds maximum length of \(maxHeaderNameLength) characters.")
                    }
                    guard let text = value.stringValue, isHeaderValue(text) else {
                        throw Failure(status: 400, message: "Value for header \"\(name)\" in rule for domain \"\(domain)\" contains invalid characters.")
                    }
                    if text.utf8.count > maxHeaderValueLength {
                        throw Failure(status: 400, message: "Value for header \"\(name)\" in rule for domain \"\(domain)\" exceeds maximum length of \(maxHeaderValueLength) characters.")
                    }
                }
            }
        }
    }

    // MARK: addresses and names

    static func isIPv4(_ s: String) -> Bool {
        var a = in_addr()
        return inet_pton(AF_INET, s, &a) == 1
    }

    static func isIPv6(_ s: String) -> Bool {
        var a = in6_addr()
        return inet_pton(AF_INET6, s, &a) == 1
    }

    static func isIPOrCIDR(_ s: String) -> Bool {
        if isIPv4(s) || isIPv6(s) { return true }
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let bits = Int(parts[1]), parts[1].allSatisfy(\.isNumber) else { return false }
        if isIPv4(String(parts[0])) { return (0...32).contains(bits) }
        if isIPv6(String(parts[0])) { return (0...128).contains(bits) }
        return false
    }

    /// firewall.go IsSpecifiedIPOrCIDR: an IP or CIDR whose address is not 0.0.0.0 or ::, except
    /// the all-traffic CIDR itself.
    static func isSpecifiedIPOrCIDR(_ s: String) -> Bool {
        guard isIPOrCIDR(s) else { return false }
        if s == allTraffic { return true }
        let ip = String(s.split(separator: "/").first ?? "")
        if isIPv4(ip) {
            var a = in_addr()
            inet_pton(AF_INET, ip, &a)
            return a.s_addr != 0
        }
        var a = in6_addr()
        inet_pton(AF_INET6, ip, &a)
        return withUnsafeBytes(of: &a) { $0.contains { $0 != 0 } }
    }

    /// govalidator.IsDNSName: labels of [A-Za-z0-9_] then [A-Za-z0-9_-]{0,62}, an optional final
    /// dot or underscore, not an IP address.
    static func isDNSName(_ s: String) -> Bool {
        if s.isEmpty || s.replacingOccurrences(of: ".", with: "").count > 255 || isIPv4(s) || isIPv6(s) { return false }
        var name = Substring(s)
        if name.hasSuffix(".") || name.hasSuffix("_") { name = name.dropLast() }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        return !labels.isEmpty && labels.allSatisfy { label in
            guard let first = label.first, label.count <= 63 else { return false }
            let ok: (Character) -> Bool = { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
            return ok(first) && label.dropFirst().allSatisfy { ok($0) || $0 == "-" }
        }
    }

    /// RFC 7230 token characters (httpguts.ValidHeaderFieldName).
    static func isToken(_ s: String) -> Bool {
        s.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)
                || "!#$%&'*+-.^_`|~".utf8.contains(b)
        }
    }

    /// httpguts.ValidHeaderFieldValue: no control characters except tab.
    static func isHeaderValue(_ s: String) -> Bool {
        s.utf8.allSatisfy { b in b == 0x09 || (b >= 0x20 && b != 0x7f) }
    }
}
