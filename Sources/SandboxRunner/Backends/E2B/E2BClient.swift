import Foundation

/// A live E2B sandbox as the control plane described it.
public struct E2BSandbox: Sendable {
    public var id: String
    public var envdURL: String
    public var accessToken: String?
    /// When E2B will kill it by itself (our backstop).
    public var endsAt: ContinuousClock.Instant
}

/// What a create asks for: the body of `POST /v2/sandboxes` and its `Idempotency-Key`.
public struct E2BSandboxSpec: Sendable {
    public var templateID: String
    public var lifetime: Duration
    public var metadata: [String: String] = [:]
    public var envVars: [String: String] = [:]
    public var network: NetworkPolicy = .none
    /// Under `posthog`: the allowlist and key E2B's egress rules get (see `E2BEgressPlan`).
    public var egress: E2BEgressPlan?
    /// Sent on every attempt of this one create, so a retried create whose first 201 was lost
    /// gets the same sandbox instead of a second one (E2B SDK 2.63: `post_v2_sandboxes.py`
    /// sends it as `Idempotency-Key`; `retry.py` allows 1–255 of `[a-z0-9-]`).
    public var idempotencyKey: String = UUID().uuidString.lowercased()

    public init(templateID: String, lifetime: Duration) {
        self.templateID = templateID
        self.lifetime = lifetime
    }

    public var timeoutSeconds: Int { max(1, Int((lifetime.milliseconds + 999) / 1000)) }

    /// The create body. `secure` is not sent: the v2 API secures every sandbox's envd with the
    /// `envdAccessToken` it answers.
    public var body: JSONValue {
        var o: [String: JSONValue] = [
            "templateID": .string(templateID), "timeout": .int(timeoutSeconds),
            "metadata": .object(metadata.mapValues(JSONValue.string)), "envVars": .object(envVars.mapValues(JSONValue.string)),
        ]
        o.merge(Self.networkFields(network, egress: egress)) { _, n in n }
        return .object(o)
    }

    /// What a run's network policy becomes at create. `none`: no egress at all
    /// (`allow_internet_access: false`, which E2B treats as `network.denyOut: ["0.0.0.0/0"]`);
    /// `host`: the internet; `posthog`: `network` with `allowOut` = the PostHog hosts,
    /// `denyOut` = ["0.0.0.0/0"] (everything else) and
    /// `rules[api host] = [{"transform": {"headers": {"Authorization": "Bearer …"}}}]`, which E2B's
    /// egress proxy injects, so the key stays outside the sandbox (E2B's OpenAPI spec,
    /// `SandboxNetworkConfig` / `SandboxNetworkRule` / `SandboxNetworkTransform`; SDK 2.63
    /// `sandbox_api.py`, `SandboxNetworkOpts`).
    static func networkFields(_ policy: NetworkPolicy, egress: E2BEgressPlan?) -> [String: JSONValue] {
        switch policy {
        case .none: return ["allow_internet_access": .bool(false)]
        case .host: return ["allow_internet_access": .bool(true)]
        case .posthog:
            guard let egress else { return ["allow_internet_access": .bool(false)] }
            return ["allow_internet_access": .bool(true), "network": egress.network]
        }
    }

    /// The network fields as one string: sandboxes of a warm pool are reused only by runs that
    /// would create them alike.
    var networkKey: String { JSONValue.object(Self.networkFields(network, egress: egress)).jsonText() }
}

/// How a `posthog` run's allowlist and key look to E2B. E2B's egress matches names (on ports 80
/// and 443, from the Host header or TLS SNI) and addresses; `rules` are keyed by DNS names only.
/// A loopback address (the `--demo` server, reachable from e2b-local only) is given to the
/// sandbox as `localhost`, so the key can still be injected by a rule.
public struct E2BEgressPlan: Sendable {
    /// `{allowOut, denyOut, rules}`.
    public var network: JSONValue
    /// POSTHOG_API_URL / POSTHOG_INGEST_URL as the sandbox must call them.
    public var environment: [String: String]

    static let namePorts: Set<Int> = [80, 443]

    public init(_ rules: PostHogEgressRules, sandboxesAreLocal: Bool) throws {
        func sandboxHost(_ t: EgressTarget) -> String {
            EgressAddress(t.host)?.isLoopback == true ? "localhost" : t.host
        }
        var allow: [String] = []
        for d in rules.destinations {
            let host = sandboxHost(d.target)
            let isName = EgressAddress(host) == nil
            if isName && !Self.namePorts.contains(d.target.port) && !sandboxesAreLocal {
                throw RunnerError(.badInput, "E2B's egress rules match names on ports 80 and 443 only, but \(d.target) is to be reached; "
                    + "serve PostHog on 443 (or 80), or run with --network host.")
            }
            if d.injectsKey && !isName {
                throw RunnerError(.badInput, "E2B injects the personal API key only for names, but POSTHOG_API_URL is the address \(d.target.host); "
                    + "give PostHog's name instead, or run with --network host.")
            }
            if !allow.contains(host) { allow.append(host) }
        }
        var network: [String: JSONValue] = ["allowOut": .array(allow.map(JSONValue.string)), "denyOut": .array(["0.0.0.0/0"])]
        if let auth = rules.authorization, let api = rules.destinations.first(where: \.injectsKey) {
            network["rules"] = .object([sandboxHost(api.target): .array([.object(["transform": .object(["headers": .object(["Authorization": .string(auth)])])])])])
        }
        self.network = .object(network)
        func rewrite(_ url: String, _ t: EgressTarget) -> String {
            guard EgressAddress(t.host)?.isLoopback == true else { return url }
            let shown = EgressAddress(t.host)!.isIPv6 ? "[\(t.host)]" : t.host
            return url.replacingOccurrences(of: "://\(shown)", with: "://localhost")
        }
        environment = ["POSTHOG_API_URL": rewrite(rules.endpoints.apiURL, rules.endpoints.api),
                       "POSTHOG_INGEST_URL": rewrite(rules.endpoints.ingestURL, rules.endpoints.ingest)]
    }
}

/// What a process run in a sandbox produced.
public struct E2BProcessResult: Sendable {
    public var pid: Int?
    public var exitCode: Int32
    public var signalled: Bool
    public var timedOut: Bool
    public var stdout: CappedOutput
    public var stderr: CappedOutput
    /// The stream ended without its end event (sandbox gone, connection cut).
    public var incomplete: Bool
    public var streamError: String?
}

/// E2B's REST control plane and the in-sandbox envd over one reused libcurl handle (so one
/// connection carries the calls of a run when both are on one host). Blocking: use it from a
/// dedicated thread. Counts its HTTP round trips for the benchmark.
///
/// Headers by host, as the SDK keeps them (E2B SDK 2.63 `connection_config.py`,
/// `ConnectionConfig.sandbox_headers`): the control plane gets `X-API-Key`; envd gets only
/// `User-Agent`, `E2b-Sandbox-Id`, `E2b-Sandbox-Port` and `X-Access-Token`. E2B's proxy forwards
/// every header into the sandbox, where the script can read it.
public final class E2BClient: @unchecked Sendable {
    public let config: E2BConfiguration
    let curl: CurlEasy
    public private(set) var roundTrips = 0
    static let userAgent = "sandbox-runner/0.2"

    public init(config: E2BConfiguration) throws {
        self.config = config
        self.curl = try CurlEasy(options: config.connection)
    }

    public func cancel() { curl.cancel() }

    // MARK: control plane

    /// Creates a sandbox with `POST /v2/sandboxes`; retried on 429, 5xx and connection errors
    /// with the same `Idempotency-Key`.
    public func create(_ spec: E2BSandboxSpec) throws -> E2BSandbox {
        // 409: the first attempt with this key is still being made; its sandbox is what we want.
        let response = try withRetries(what: "create an E2B sandbox", alsoRetrying: [409]) {
            try self.api("POST", "/v2/sandboxes", json: spec.body, headers: ["Idempotency-Key": spec.idempotencyKey])
        }
        guard response.status == 201 || response.status == 200 else { throw apiError(response, creating: true) }
        guard case .object(let o)? = JSONValue.parse(Data(response.body)), let id = o["sandboxID"]?.stringValue,
              id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }), !id.isEmpty else {
            throw RunnerError(.unavailable, "E2B answered the create call without a usable sandboxID.")
        }
        let domain = o["domain"]?.stringValue
        return E2BSandbox(id: id, envdURL: config.envdURL(sandboxID: id, domain: domain), accessToken: o["envdAccessToken"]?.stringValue,
                          endsAt: .now + .seconds(spec.timeoutSeconds))
    }

    /// Convenience for tests: a sandbox with this lifetime and metadata.
    public func create(lifetime: Duration, metadata: [String: String], envVars: [String: String] = [:],
                       network: NetworkPolicy = .host) throws -> E2BSandbox {
        var spec = E2BSandboxSpec(templateID: config.templateID, lifetime: lifetime)
        spec.metadata = metadata
        spec.envVars = envVars
        spec.network = network
        return try create(spec)
    }

    /// Kills a sandbox; one already gone (404) counts as killed.
    public func kill(_ sandbox: E2BSandbox) throws {
        let r = try withRetries(what: "kill the E2B sandbox") {
            try self.api("DELETE", "/sandboxes/\(sandbox.id)", ignoringCancel: true)
        }
        guard r.status == 204 || r.status == 200 || r.status == 404 else { throw apiError(r, creating: false) }
    }

    /// Sets the sandbox to end `lifetime` from now.
    public func extend(_ sandbox: inout E2BSandbox, lifetime: Duration) throws {
        let seconds = max(1, Int(lifetime.milliseconds / 1000))
        let r = try api("POST", "/sandboxes/\(sandbox.id)/timeout", json: .object(["timeout": .int(seconds)]), ignoringCancel: true)
        guard r.status == 204 || r.status == 200 else { throw apiError(r, creating: false) }
        sandbox.endsAt = .now + .seconds(seconds)
    }

    // MARK: envd

    /// Uploads a file (multipart, part `file`, filename = the destination path).
    public func upload(_ sandbox: E2BSandbox, path: String, bytes: [UInt8]) throws {
        let boundary = "sandbox-runner-\(UUID().uuidString)"
        var body = Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(path)\"\r\nContent-Type: application/octet-stream\r\n\r\n".utf8)
        body += bytes
        body += Array("\r\n--\(boundary)--\r\n".utf8)
        let r = try envd(sandbox, "POST", "/files?path=\(percentEncode(path))",
                         headers: ["Content-Type": "multipart/form-data; boundary=\(boundary)"], body: body)
        guard r.status == 200 else { throw envdError(r, what: "upload the bundle") }
    }

    /// Streams a file out of the sandbox (`GET /files?path=`, what the SDK's `files.read` sends)
    /// into `onBody`; a missing file (404) sends nothing. When `onBody` stops the transfer (it
    /// refused the bytes) the transfer's own error is not reported: the consumer says why.
    public func download(_ sandbox: E2BSandbox, path: String, onBody: @escaping (UnsafeRawBufferPointer) -> Bool) throws {
        var refused = false
        let response: HTTPResponse
        do {
            response = try envd(sandbox, "GET", "/files?path=\(percentEncode(path))", timeout: config.requestTimeout * 4) { chunk in
                if onBody(chunk) { return true }
                refused = true
                return false
            }
        } catch {
            if refused { return }
            throw error
        }
        guard response.status == 200 || response.status == 404 else { throw envdError(response, what: "read the run's files") }
    }

    /// Starts `argv` through envd's Connect API and decodes its event stream as it arrives.
    /// `timeout` goes to envd as `Connect-Timeout-Ms`, the process's deadline.
    public func run(_ sandbox: E2BSandbox, argv: [String], envs: [String: String], cwd: String, timeout: Duration,
                    outputLimit: Int, onOutput: (@Sendable (Int32, UnsafeRawBufferPointer) -> Void)? = nil) throws -> E2BProcessResult {
        precondition(!argv.isEmpty)
        let request: JSONValue = .object([
            "process": .object(["cmd": .string(argv[0]), "args": .array(argv.dropFirst().map(JSONValue.string)),
                                "envs": .object(envs.mapValues(JSONValue.string)), "cwd": .string(cwd)]),
            "stdin": .bool(false),
        ])
        let headers = ["Content-Type": "application/connect+json", "Connect-Protocol-Version": "1",
                       "Connect-Timeout-Ms": String(timeout.milliseconds), "Keepalive-Ping-Interval": "30"]
        var decoder = ConnectEnvelope.Decoder()
        var result = E2BProcessResult(pid: nil, exitCode: -1, signalled: false, timedOut: false,
                                      stdout: CappedOutput(limit: outputLimit), stderr: CappedOutput(limit: outputLimit),
                                      incomplete: true, streamError: nil)
        var decodeFailure: Error?
        let response: HTTPResponse
        do {
            response = try envd(sandbox, "POST", "/process.Process/Start", headers: headers,
                                body: ConnectEnvelope.encode(Array(request.jsonText().utf8)), timeout: timeout + .seconds(10)) { chunk in
                do {
                    for frame in try decoder.feed(chunk) { Self.apply(frame, to: &result, onOutput: onOutput) }
                    return true
                } catch {
                    decodeFailure = error
                    return false
                }
            }
        } catch let e as HTTPError where e.timedOut {
            // Our own deadline: envd did not end the process in time.
            result.timedOut = true
            return result
        }
        if let decodeFailure { throw decodeFailure }
        guard response.status == 200 else { throw envdError(response, what: "start the script") }
        // envd ends a stream whose Connect-Timeout-Ms passed with only this error, no end event
        // (infra packages/envd/internal/services/process/start.go: the stream returns ctx.Err()).
        if result.streamError == "deadline_exceeded" { result.timedOut = true }
        return result
    }

    static func apply(_ frame: ConnectEnvelope.Decoder.Frame, to result: inout E2BProcessResult,
                      onOutput: (@Sendable (Int32, UnsafeRawBufferPointer) -> Void)? = nil) {
        guard case .object(let msg)? = JSONValue.parse(Data(frame.message)) else { return }
        if frame.flag & ConnectEnvelope.endStreamFlag != 0 {
            if case .object(let err)? = msg["error"] {
                result.streamError = err["code"]?.stringValue ?? "unknown"
            }
            return
        }
        guard case .object(let event)? = msg["event"] else { return }
        if case .object(let start)? = event["start"] { result.pid = start["pid"]?.intValue }
        if case .object(let data)? = event["data"] {
            for (key, stream) in [("stdout", 1), ("stderr", 2)] {
                guard let b64 = data[key]?.stringValue, let bytes = Data(base64Encoded: b64) else { continue }
                bytes.withUnsafeBytes { raw in
                    if stream == 1 { result.stdout.append(raw) } else { result.stderr.append(raw) }
                    onOutput?(Int32(stream), raw)
                }
            }
        }
        if case .object(let end)? = event["end"] {
            // proto3 JSON omits zero values: no exitCode means 0.
            result.exitCode = Int32(end["exitCode"]?.intValue ?? 0)
            let status = end["status"]?.stringValue ?? ""
            result.signalled = status.hasPrefix("signal") || result.exitCode == -1
            result.incomplete = false
        }
    }

    // MARK: plumbing

    /// The headers every envd call carries, and nothing else: no API key, no user (envd ≥ 0.4.0
    /// runs as its default user), exactly as the SDK's `sandbox_headers`.
    func envdHeaders(_ sandbox: E2BSandbox) -> [String: String] {
        var h = ["User-Agent": Self.userAgent, "E2b-Sandbox-Id": sandbox.id, "E2b-Sandbox-Port": "49983"]
        if let token = sandbox.accessToken { h["X-Access-Token"] = token }
        return h
    }

    /// A control-plane call: the only requests that carry the API key.
    func api(_ method: String, _ path: String, json: JSONValue? = nil, headers: [String: String] = [:],
             ignoringCancel: Bool = false) throws -> HTTPResponse {
        var h = headers
        h["X-API-Key"] = config.apiKey
        h["User-Agent"] = Self.userAgent
        var body: [UInt8]?
        if let json {
            h["Content-Type"] = "application/json"
            body = Array(json.jsonText().utf8)
        }
        return try send(method, config.api + path, headers: h, body: body, timeout: nil, ignoringCancel: ignoringCancel, onBody: nil)
    }

    /// An envd call: the sandbox's routing headers and access token, never the API key.
    func envd(_ sandbox: E2BSandbox, _ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8]? = nil,
              timeout: Duration? = nil, onBody: ((UnsafeRawBufferPointer) -> Bool)? = nil) throws -> HTTPResponse {
        let h = envdHeaders(sandbox).merging(headers) { _, call in call }
        return try send(method, sandbox.envdURL + path, headers: h, body: body, timeout: timeout, ignoringCancel: false, onBody: onBody)
    }

    private func send(_ method: String, _ url: String, headers: [String: String], body: [UInt8]?, timeout: Duration?,
                      ignoringCancel: Bool, onBody: ((UnsafeRawBufferPointer) -> Bool)?) throws -> HTTPResponse {
        roundTrips += 1
        let handle = ignoringCancel && curl.isCancelled ? try CurlEasy(options: config.connection) : curl
        do {
            return try handle.perform(method: method, url: url, headers: headers, body: body, timeout: timeout ?? config.requestTimeout,
                                      connectTimeout: config.connectTimeout, onBody: onBody)
        } catch let e as HTTPError {
            if e.aborted && !ignoringCancel { throw RunnerError(.cancelled, "The run was cancelled and its sandbox killed.") }
            if e.timedOut && onBody != nil { throw e }
            throw RunnerError(.unavailable, "Cannot reach E2B: \(e.message) Check E2B_API_URL and the network.")
        }
    }

    /// Retries 429, 5xx and connection errors with exponential backoff and full jitter. Only for
    /// calls that are safe to repeat: a kill, or a create carrying its Idempotency-Key.
    func withRetries(what: String, alsoRetrying extra: Set<Int> = [], _ body: () throws -> HTTPResponse) throws -> HTTPResponse {
        var attempt = 0
        while true {
            attempt += 1
            do {
                let r = try body()
                let retryable = r.status == 429 || (500...599).contains(r.status) && r.status != 501 || extra.contains(r.status)
                if !retryable || attempt >= config.attempts { return r }
                var wait = backoff(attempt)
                if let ra = r.headers["retry-after"], let s = Double(ra) { wait = max(wait, .milliseconds(Int64(s * 1000))) }
                Thread.sleep(forTimeInterval: Double(min(wait, config.maxBackoff * 2).milliseconds) / 1000)
            } catch let e as RunnerError where e.kind == .unavailable && attempt < config.attempts {
                Thread.sleep(forTimeInterval: Double(backoff(attempt).milliseconds) / 1000)
            }
        }
    }

    func backoff(_ attempt: Int) -> Duration {
        let cap = min(config.maxBackoff.milliseconds, config.baseBackoff.milliseconds << min(attempt - 1, 10))
        return .milliseconds(Int64.random(in: 0...max(1, cap)))
    }

    func apiError(_ r: HTTPResponse, creating: Bool) -> RunnerError {
        let message = (JSONValue.parse(Data(r.body))?["message"]?.stringValue).map { Redactor(secrets: [config.apiKey]).redact($0) } ?? ""
        switch r.status {
        case 401, 403: return RunnerError(.unavailable, "E2B refused the API key (\(r.status)): check E2B_API_KEY.")
        case 429:
            return RunnerError(.unavailable, message.lowercased().contains("concurrent")
                ? "E2B's concurrent-sandbox quota is reached (429): wait for running sandboxes to end or raise the plan's limit."
                : "E2B is rate-limiting sandbox creation (429): retry later or run fewer at once.")
        case 404 where creating:
            return RunnerError(.unavailable, "E2B has no template '\(config.templateID)' (404): set E2B_TEMPLATE to a template with python3.")
        case 400 where creating && message.contains("Timeout cannot be greater"):
            return RunnerError(.badInput, "E2B refused the sandbox lifetime (\(message)): set E2B_MAX_SANDBOX_TIMEOUT to your plan's limit "
                + "in seconds and lower --timeout.")
        default:
            return RunnerError(.unavailable, "E2B answered HTTP \(r.status)\(message.isEmpty ? "" : ": \(message)").")
        }
    }

    func envdError(_ r: HTTPResponse, what: String) -> RunnerError {
        if r.status == 502 { return RunnerError(.unavailable, "The E2B sandbox is gone (502) while trying to \(what).") }
        if r.status == 401 { return RunnerError(.unavailable, "The sandbox refused our access token (401) while trying to \(what).") }
        let body = JSONValue.parse(Data(r.body))
        let message = body?["message"]?.stringValue ?? ""
        return RunnerError(.unavailable, "The sandbox could not \(what) (HTTP \(r.status)\(message.isEmpty ? "" : ": \(message)")).")
    }

    func percentEncode(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~/"))) ?? s
    }
}

extension Duration {
    static func * (lhs: Duration, rhs: Int) -> Duration { lhs * Double(rhs) }
}
