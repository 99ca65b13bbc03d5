import Foundation

/// One line of a run's `egress` log: every request to one destination with one outcome,
/// counted together (a run that makes 5,000 export requests has one line for them).
public struct EgressEntry: Sendable, Equatable, Codable {
    public var host: String
    public var port: Int
    public var scheme: String?
    public var allowed: Bool
    /// Requests (or, for a connection that never sent a request, connections).
    public var requests: Int
    /// Bytes of request bodies sent to the host.
    public var bytesOut: Int64
    /// Bytes of answers (headers and body) received from the host.
    public var bytesIn: Int64
    /// Why it was refused or failed; nil when everything went through.
    public var reason: String?

    public init(host: String, port: Int, scheme: String?, allowed: Bool, requests: Int = 0, bytesOut: Int64 = 0, bytesIn: Int64 = 0,
                reason: String? = nil) {
        self.host = host
        self.port = port
        self.scheme = scheme
        self.allowed = allowed
        self.requests = requests
        self.bytesOut = bytesOut
        self.bytesIn = bytesIn
        self.reason = reason
    }

    /// The entry's JSON Schema (one item of the result's `egress`).
    public static var jsonSchema: JSONValue {
        func t(_ type: JSONValue, _ d: String) -> JSONValue { .object(["type": type, "description": .string(d)]) }
        return .object([
            "type": "object",
            "properties": .object([
                "host": t("string", "The host the script asked for (empty for something that was not an HTTP request)."),
                "port": t("integer", "Its port."),
                "scheme": t(.array(["string", "null"]), "http or https."),
                "allowed": t("boolean", "Whether the policy allowed the destination."),
                "requests": t("integer", "Requests counted in this entry."),
                "bytesOut": t("integer", "Request body bytes sent to the host."),
                "bytesIn": t("integer", "Answer bytes received from the host."),
                "reason": t(.array(["string", "null"]), "Why it was refused or failed; null when it went through."),
            ]),
            "required": .array(["host", "port", "allowed", "requests", "bytesOut", "bytesIn"]),
        ])
    }
}

/// The log one proxy keeps: entries keyed by destination and outcome, at most `limit` of them
/// (the rest are counted in a final `*` entry), plus totals for the caps.
final class EgressLog: @unchecked Sendable {
    private struct Key: Hashable {
        var host: String
        var port: Int
        var scheme: String?
        var allowed: Bool
        var reason: String?
    }

    private let lock = NSLock()
    private var order: [Key] = []
    private var entries: [Key: EgressEntry] = [:]
    private var overflow: EgressEntry?
    private let limit: Int
    private(set) var totalOut: Int64 = 0
    private(set) var totalIn: Int64 = 0

    init(limit: Int) { self.limit = limit }

    func record(host: String, port: Int, scheme: String?, allowed: Bool, reason: String?, requests: Int = 1,
                bytesOut: Int64 = 0, bytesIn: Int64 = 0) {
        let key = Key(host: String(host.prefix(255)), port: port, scheme: scheme, allowed: allowed, reason: reason.map { String($0.prefix(400)) })
        lock.withLock {
            if var e = entries[key] {
                e.requests += requests
                e.bytesOut += bytesOut
                e.bytesIn += bytesIn
                entries[key] = e
            } else if entries.count < limit {
                order.append(key)
                entries[key] = EgressEntry(host: key.host, port: port, scheme: scheme, allowed: allowed, requests: requests,
                                           bytesOut: bytesOut, bytesIn: bytesIn, reason: key.reason)
            } else {
                var o = overflow ?? EgressEntry(host: "*", port: 0, scheme: nil, allowed: false,
                                                reason: "more destinations than the log keeps (\(limit)); counted here together")
                o.requests += requests
                o.bytesOut += bytesOut
                o.bytesIn += bytesIn
                o.allowed = o.allowed || allowed
                overflow = o
            }
        }
    }

    /// Counts bytes against the caps; false when this would pass one.
    func spend(out: Int64 = 0, in incoming: Int64 = 0, limits: EgressLimits) -> Bool {
        lock.withLock {
            if totalOut + out > limits.maxBytesOut || totalIn + incoming > limits.maxBytesIn { return false }
            totalOut += out
            totalIn += incoming
            return true
        }
    }

    var snapshot: [EgressEntry] {
        lock.withLock { order.compactMap { entries[$0] } + (overflow.map { [$0] } ?? []) }
    }
}
