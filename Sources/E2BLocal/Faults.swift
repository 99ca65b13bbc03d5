import Foundation
import SandboxRunner

/// One fault to inject, parsed from `KIND[:key=value...]` (see README.md).
public struct FaultSpec: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        /// Sandbox creates answer 429 (E2B's rate or concurrency limit).
        case create429 = "create-429"
        /// Sandbox creates answer a 5xx.
        case create5xx = "create-5xx"
        /// A sandbox is created but its 201 never arrives: the connection is closed instead.
        case createDrop = "create-drop"
        /// Uploads (`POST /files`) answer a 5xx.
        case upload5xx = "upload-5xx"
        /// `process.Process/Start` streams end after N data events without the end envelope.
        case streamCut = "stream-cut"
        /// Requests are answered normally after a delay.
        case latency
    }

    public var kind: Kind
    /// How many matching requests get it; nil = every one.
    public var count: Int? = 1
    /// Status of a 5xx fault.
    public var status: Int = 500
    /// `Retry-After` seconds of a 429 (0 = no header).
    public var retryAfter: Int = 1
    /// Data events sent before a stream cut.
    public var after: Int = 1
    /// A stream cut drops the connection instead of ending the HTTP body cleanly.
    public var abort: Bool = false
    /// Delay of a latency fault.
    public var milliseconds: Int = 1000
    /// Only requests whose path starts with this (latency; every kind honours it).
    public var pathPrefix: String?

    public init(kind: Kind) { self.kind = kind }

    /// Parses `KIND[:key=value...]`; `create-503` and `upload-502` name the status directly.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        var name = parts[0].trimmingCharacters(in: .whitespaces).lowercased()
        var status: Int?
        if name == "slow" { name = Kind.latency.rawValue }
        if name == "429" { name = Kind.create429.rawValue }
        for prefix in ["create-", "upload-"] where name.hasPrefix(prefix) {
            if let s = Int(name.dropFirst(prefix.count)), (500...599).contains(s) {
                status = s
                name = prefix + "5xx"
            }
        }
        guard let kind = Kind(rawValue: name) else {
            let known = Kind.allCases.map(\.rawValue).joined(separator: ", ")
            throw RunnerError(.badInput, "Unknown fault kind '\(parts[0])' in '\(text)'. Known kinds: \(known).")
        }
        self.kind = kind
        if let status { self.status = status }
        for part in parts.dropFirst() {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw RunnerError(.badInput, "Fault option '\(part)' in '\(text)' is not key=value.") }
            try set(kv[0], kv[1], in: text)
        }
    }

    mutating func set(_ key: String, _ value: String, in text: String) throws {
        func int(_ range: ClosedRange<Int>) throws -> Int {
            guard let n = Int(value), range.contains(n) else {
                throw RunnerError(.badInput, "Fault option \(key)=\(value) in '\(text)' must be a whole number in \(range.lowerBound)...\(range.upperBound).")
            }
            return n
        }
        switch key {
        case "count": count = value == "*" ? nil : try int(1...1_000_000)
        case "status": status = try int(500...599)
        case "retry_after": retryAfter = try int(0...3600)
        case "after": after = try int(0...1_000_000)
        case "ms": milliseconds = try int(0...600_000)
        case "path": pathPrefix = value
        case "mode":
            guard value == "close" || value == "abort" else {
                throw RunnerError(.badInput, "Fault option mode=\(value) in '\(text)' must be close or abort.")
            }
            abort = value == "abort"
        default:
            throw RunnerError(.badInput, "Unknown fault option '\(key)' in '\(text)'. Options: count, status, retry_after, after, mode, ms, path.")
        }
    }

    /// The canonical text of this spec (what `GET /_local/faults` shows).
    public var text: String {
        var s = kind.rawValue
        s += ":count=" + (count.map(String.init) ?? "*")
        switch kind {
        case .create429: s += ":retry_after=\(retryAfter)"
        case .createDrop: break
        case .create5xx, .upload5xx: s += ":status=\(status)"
        case .streamCut: s += ":after=\(after):mode=\(abort ? "abort" : "close")"
        case .latency: s += ":ms=\(milliseconds)"
        }
        if let pathPrefix { s += ":path=\(pathPrefix)" }
        return s
    }

    /// Builds a spec from a JSON object (`{"kind": "create-429", "count": 2}`) or string.
    static func from(json: JSONValue) throws -> FaultSpec {
        if let s = json.stringValue { return try FaultSpec(parsing: s) }
        guard let o = json.objectValue, let kind = o["kind"]?.display else {
            throw RunnerError(.badInput, "A fault must be a SPEC string or an object with a \"kind\".")
        }
        var spec = try FaultSpec(parsing: kind)
        for (k, v) in o where k != "kind" {
            if k == "count", v == .null { spec.count = nil; continue }
            try spec.set(k, v.display, in: json.jsonText())
        }
        return spec
    }
}

/// The armed faults of a running server; safe from any thread.
final class FaultInjector: @unchecked Sendable {
    private struct Armed { var spec: FaultSpec; var fired: Int }
    private let lock = NSLock()
    private var armed: [Armed] = []
    private var firedTotal: [String: Int] = [:]

    init(_ specs: [FaultSpec]) { armed = specs.map { Armed(spec: $0, fired: 0) } }

    func arm(_ specs: [FaultSpec]) {
        lock.lock(); defer { lock.unlock() }
        armed += specs.map { Armed(spec: $0, fired: 0) }
    }

    func disarmAll() {
        lock.lock(); defer { lock.unlock() }
        armed = []
    }

    /// Consumes one use of the first armed fault of this kind matching the path.
    func take(_ kind: FaultSpec.Kind, path: String) -> FaultSpec? {
        lock.lock(); defer { lock.unlock() }
        guard let i = armed.firstIndex(where: { a in
            a.spec.kind == kind && (a.spec.pathPrefix.map { path.hasPrefix($0) } ?? true)
                && (a.spec.count.map { a.fired < $0 } ?? true)
        }) else { return nil }
        armed[i].fired += 1
        firedTotal[kind.rawValue, default: 0] += 1
        let spec = armed[i].spec
        if let c = spec.count, armed[i].fired >= c { armed.remove(at: i) }
        return spec
    }

    /// The delay every armed latency fault matching the path adds (each use consumed).
    func latency(path: String) -> Int {
        lock.lock(); defer { lock.unlock() }
        var total = 0
        for i in armed.indices where armed[i].spec.kind == .latency
            && (armed[i].spec.pathPrefix.map { path.hasPrefix($0) } ?? true) {
            armed[i].fired += 1
            firedTotal[FaultSpec.Kind.latency.rawValue, default: 0] += 1
            total += armed[i].spec.milliseconds
        }
        armed.removeAll { a in a.spec.count.map { a.fired >= $0 } ?? false }
        return total
    }

    var json: JSONValue {
        lock.lock(); defer { lock.unlock() }
        return .object([
            "armed": .array(armed.map { a in
                .object(["spec": .string(a.spec.text), "fired": .int(a.fired),
                         "remaining": a.spec.count.map { .int($0 - a.fired) } ?? .string("*")])
            }),
            "fired": .object(firedTotal.mapValues { .int($0) }),
        ])
    }
}
