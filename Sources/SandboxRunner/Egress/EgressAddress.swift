import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An IP address as the egress proxy checks it: parsed, classified, and written the way
/// libcurl's CURLOPT_RESOLVE wants it.
public struct EgressAddress: Sendable, Hashable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 (IPv6).
    public let bytes: [UInt8]

    public init?(_ text: String) {
        var s = text
        if s.hasPrefix("[") && s.hasSuffix("]") { s = String(s.dropFirst().dropLast()) }
        var v4 = in_addr()
        if inet_pton(AF_INET, s, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        guard !s.contains("%"), inet_pton(AF_INET6, s, &v6) == 1 else { return nil }
        bytes = withUnsafeBytes(of: &v6) { Array($0) }
    }

    init(bytes: [UInt8]) { self.bytes = bytes }

    public var isIPv6: Bool { bytes.count == 16 }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = isIPv6 ? AF_INET6 : AF_INET
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        return String(cString: buffer)
    }

    /// `[v6]` or `v4`, as URLs and CURLOPT_RESOLVE write addresses.
    public var bracketed: String { isIPv6 ? "[\(description)]" : description }

    /// The IPv4 address an IPv6 one carries (IPv4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::a.b.c.d,
    /// IPv4-compatible ::a.b.c.d, 6to4 2002:AABB:CCDD::): what the packet would really reach.
    var embeddedIPv4: EgressAddress? {
        guard isIPv6 else { return nil }
        let b = bytes
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff { return EgressAddress(bytes: Array(b[12..<16])) }
        if b[0..<12].allSatisfy({ $0 == 0 }) && !(b[12..<15].allSatisfy { $0 == 0 }) { return EgressAddress(bytes: Array(b[12..<16])) }
        if b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4..<12].allSatisfy({ $0 == 0 }) {
            return EgressAddress(bytes: Array(b[12..<16]))
        }
        if b[0] == 0x20 && b[1] == 0x02 { return EgressAddress(bytes: Array(b[2..<6])) }
        return nil
    }

    /// What kind of non-public address this is, or nil for a public one. The ranges are E2B's
    /// always-denied list (infra `packages/shared/pkg/sandbox-network/firewall.go`,
    /// DeniedSandboxCIDRs) plus what no public service lives at (this-network, benchmarking,
    /// IETF protocol assignments, multicast, reserved, IPv6 unspecified and multicast).
    public var internalKind: String? {
        if let v4 = embeddedIPv4 { return v4.internalKind }
        let b = bytes
        if !isIPv6 {
            switch (b[0], b[1]) {
            case (127, _): return "loopback"
            case (10, _), (192, 168): return "private"
            case (172, 16...31): return "private"
            case (100, 64...127): return "shared (carrier-grade NAT)"
            case (169, 254): return "link-local"
            case (0, _): return "this-network"
            case (192, 0) where b[2] == 0: return "reserved"
            case (198, 18...19): return "benchmarking"
            case (224...239, _): return "multicast"
            case (240...255, _): return "reserved"
            default: return nil
            }
        }
        if b[0..<15].allSatisfy({ $0 == 0 }) { return b[15] == 1 ? "loopback" : "unspecified" }
        if b[0] & 0xfe == 0xfc { return "private (unique local)" }
        if b[0] == 0xfe && b[1] & 0xc0 == 0x80 { return "link-local" }
        if b[0] == 0xfe && b[1] & 0xc0 == 0xc0 { return "site-local" }
        if b[0] == 0xff { return "multicast" }
        return nil
    }

    public var isLoopback: Bool { internalKind == "loopback" }

    /// Whether the address lies in `cidr` ("10.0.0.0/8", "::1/128", or a bare address).
    public func isIn(cidr: String) -> Bool {
        let parts = cidr.split(separator: "/", maxSplits: 1)
        guard let base = EgressAddress(String(parts[0])) else { return false }
        let me = (base.isIPv6 == isIPv6) ? self : (embeddedIPv4 ?? self)
        guard base.bytes.count == me.bytes.count else { return false }
        let bits = parts.count == 2 ? Int(parts[1]) ?? -1 : base.bytes.count * 8
        guard bits >= 0 && bits <= base.bytes.count * 8 else { return false }
        for i in 0..<base.bytes.count {
            let take = min(8, max(0, bits - i * 8))
            if take == 0 { break }
            let mask: UInt8 = take == 8 ? 0xff : ~(0xff >> UInt8(take))
            if base.bytes[i] & mask != me.bytes[i] & mask { return false }
        }
        return true
    }
}

/// Names to addresses for the egress proxy: the operator's own mapping first (a hosts file,
/// `SANDBOX_RUNNER_EGRESS_HOSTS`), then the system resolver. Answers are kept for a short while
/// per proxy, and the proxy connects only to the addresses it checked (no second lookup).
public final class EgressResolver: @unchecked Sendable {
    public let overrides: [String: [EgressAddress]]
    private let lock = NSLock()
    private var cache: [String: (addresses: [EgressAddress], at: ContinuousClock.Instant)] = [:]
    static let ttl: Duration = .seconds(30)

    public init(overrides: [String: [EgressAddress]] = [:]) {
        self.overrides = overrides
    }

    /// Reads a hosts file (`ADDRESS NAME…` per line, `#` comments).
    public static func hostsFile(_ path: String) throws -> [String: [EgressAddress]] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw RunnerError(.badInput, "SANDBOX_RUNNER_EGRESS_HOSTS names \(path), which cannot be read; give a hosts file (ADDRESS NAME per line).")
        }
        var out: [String: [EgressAddress]] = [:]
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let first = fields.first else { continue }
            guard let address = EgressAddress(first), fields.count > 1 else {
                throw RunnerError(.badInput, "SANDBOX_RUNNER_EGRESS_HOSTS (\(path)) has a line that is not ADDRESS NAME…; fix or remove it.")
            }
            for name in fields.dropFirst() { out[name.lowercased(), default: []].append(address) }
        }
        return out
    }

    /// The addresses of `host` (an IP literal is its own answer), or nil when it has none.
    public func resolve(_ host: String) -> [EgressAddress]? {
        if let literal = EgressAddress(host) { return [literal] }
        if let mapped = overrides[host] { return mapped }
        let now = ContinuousClock.now
        if let hit = lock.withLock({ cache[host] }), now - hit.at < Self.ttl { return hit.addresses }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return nil }
        defer { freeaddrinfo(list) }
        var out: [EgressAddress] = []
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            if let sa = ai.pointee.ai_addr {
                if ai.pointee.ai_family == AF_INET {
                    let a = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                    out.append(EgressAddress(bytes: withUnsafeBytes(of: a) { Array($0) }))
                } else if ai.pointee.ai_family == AF_INET6 {
                    let a = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                    out.append(EgressAddress(bytes: withUnsafeBytes(of: a) { Array($0) }))
                }
            }
            p = ai.pointee.ai_next
        }
        var seen = Set<EgressAddress>()
        out = out.filter { seen.insert($0).inserted }
        guard !out.isEmpty else { return nil }
        lock.withLock { cache[host] = (out, now) }
        return out
    }
}
