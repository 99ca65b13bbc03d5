import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SandboxRunner

/// The request context: Hummingbird's core storage plus the connection, which envd streams watch
/// to kill a command whose client went away, and /_local checks for a loopback peer.
struct E2BRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// True for a loopback peer. Behind the TLS front the peer is the front's Unix socket
    /// connection, which stands for a loopback client only when the front listens on loopback.
    func peerIsLoopback(frontOnLoopback: Bool) -> Bool {
        switch channel.remoteAddress {
        case .unixDomainSocket?, nil: return frontOnLoopback
        case let address?:
            guard let ip = address.ipAddress else { return false }
            return Self.isLoopback(ip)
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "::1" || host == "localhost" || host.hasPrefix("127.") || host.hasPrefix("::ffff:127.")
    }
}

extension HTTPField.Name {
    static let apiKey = Self("X-API-Key")!
    static let accessToken = Self("X-Access-Token")!
    static let sandboxID = Self("E2b-Sandbox-Id")!
    static let sandboxPort = Self("E2b-Sandbox-Port")!
    static let connectTimeout = Self("Connect-Timeout-Ms")!
    static let keepaliveInterval = Self("Keepalive-Ping-Interval")!
    static let retryAfter = Self("Retry-After")!
    static let nextToken = Self("X-Next-Token")!
    static let idempotencyKey = Self("Idempotency-Key")!
}

/// Answers in the shapes E2B uses.
enum Reply {
    static func json(_ status: Int, _ value: JSONValue, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json"
        return Response(status: .init(code: status), headers: h,
                        body: ResponseBody(byteBuffer: ByteBuffer(string: value.jsonText())))
    }

    /// The control plane's and envd's error body: `{"code": <status>, "message": …}`.
    static func error(_ status: Int, _ message: String, headers: HTTPFields = [:]) -> Response {
        json(status, errorBody(status, message), headers: headers)
    }

    static func errorBody(_ status: Int, _ message: String) -> JSONValue {
        .object(["code": .int(status), "message": .string(message)])
    }

    static func empty(_ status: Int) -> Response { Response(status: .init(code: status)) }

    /// A Connect error before any message: the HTTP status of the code, `{"code": "<name>", "message"}`.
    static func connectError(_ code: ConnectCode, _ message: String) -> Response {
        json(code.httpStatus, .object(["code": .string(code.rawValue), "message": .string(message)]))
    }

    /// What E2B's proxy answers for a sandbox it does not know (the SDK reads "was not found").
    static func sandboxNotFound(_ id: String) -> Response {
        json(502, .object(["code": .int(502), "message": .string("The sandbox \(id) was not found"), "sandboxId": .string(id)]))
    }
}

/// Connect error codes and the HTTP statuses the Connect protocol gives them.
enum ConnectCode: String, Sendable {
    case canceled, unknown, internalError = "internal", invalidArgument = "invalid_argument"
    case deadlineExceeded = "deadline_exceeded", notFound = "not_found", alreadyExists = "already_exists"
    case permissionDenied = "permission_denied", resourceExhausted = "resource_exhausted"
    case failedPrecondition = "failed_precondition", aborted, outOfRange = "out_of_range"
    case unauthenticated, unavailable, unimplemented, dataLoss = "data_loss"

    /// The Connect protocol's HTTP status for each code.
    var httpStatus: Int {
        switch self {
        case .canceled: return 499
        case .unknown, .internalError, .dataLoss: return 500
        case .invalidArgument, .failedPrecondition, .outOfRange: return 400
        case .deadlineExceeded: return 504
        case .notFound: return 404
        case .alreadyExists, .aborted: return 409
        case .permissionDenied: return 403
        case .unauthenticated: return 401
        case .resourceExhausted: return 429
        case .unavailable: return 503
        case .unimplemented: return 501
        }
    }
}

/// Query strings as form encoding has them: `+` is a space, then percent-decoding.
enum Query {
    static func parse(_ query: String?) -> [(String, String)] {
        guard let query, !query.isEmpty else { return [] }
        return query.split(separator: "&").map { pair in
            let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
            return (decode(kv[0]), kv.count > 1 ? decode(kv[1]) : "")
        }
    }

    static func decode(_ s: String) -> String {
        let spaced = s.replacingOccurrences(of: "+", with: " ")
        return spaced.removingPercentEncoding ?? spaced
    }

    static func value(_ name: String, in query: String?) -> String? {
        parse(query).first { $0.0 == name }?.1
    }
}

extension Date {
    /// RFC 3339 with milliseconds, UTC, as E2B's API answers.
    var rfc3339: String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: self)
    }
}

/// Request counts per route, for tests (`GET /_local/stats`).
final class RequestStats: @unchecked Sendable {
    private let lock = NSLock()
    private var byRoute: [String: Int] = [:]
    private var byStatus: [String: Int] = [:]
    private var total = 0
    /// envd calls that carried X-API-Key (which E2B's proxy would hand to the sandbox).
    private var envdWithKey = 0

    func countEnvdCallWithAPIKey() {
        lock.lock(); defer { lock.unlock() }
        envdWithKey += 1
    }

    func count(route: String) {
        lock.lock(); defer { lock.unlock() }
        total += 1
        byRoute[route, default: 0] += 1
    }

    func count(status: Int) {
        lock.lock(); defer { lock.unlock() }
        byStatus[String(status), default: 0] += 1
    }

    func reset() {
        lock.lock(); defer { lock.unlock() }
        byRoute = [:]; byStatus = [:]; total = 0; envdWithKey = 0
    }

    var json: [String: JSONValue] {
        lock.lock(); defer { lock.unlock() }
        return ["total": .int(total), "requests": .object(byRoute.mapValues { .int($0) }),
                "by_status": .object(byStatus.mapValues { .int($0) }), "envd_calls_with_api_key": .int(envdWithKey)]
    }
}
