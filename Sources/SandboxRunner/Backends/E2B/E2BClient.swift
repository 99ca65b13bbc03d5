import Foundation

/// A live E2B sandbox as the control plane described it.
public struct E2BSandbox: Sendable {
    public var id: String
    public var envdURL: String
    public var accessToken: String?
    /// When E2B will kill it by itself (our backstop).
    public var endsAt: ContinuousClock.Instant
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
/// connection carries the create, upload, start and kill of a run). Blocking: use it from a
/// dedicated thread. Counts its HTTP round trips for the benchmark.
public final class E2BClient: @unchecked Sendable {
    public let config: E2BConfiguration
    let curl: CurlEasy
    public private(set) var roundTrips = 0

    public init(config: E2BConfiguration) throws {
        self.config = config
        self.curl = try CurlEasy()
    }

    public func cancel() { curl.cancel() }

    // MARK: control plane

    public func create(lifetime: Duration, metadata: [String: String], envVars: [String: String] = [:]) throws -> E2BSandbox {
        let seconds = max(1, Int((lifetime.milliseconds + 999) / 1000))
        let body: JSONValue = .object([
            "templateID": .string(config.templateID), "timeout": .int(seconds), "secure": .bool(true),
            "metadata": .object(metadata.mapValues(JSONValue.string)), "envVars": .object(envVars.mapValues(JSONValue.string)),
        ])
        let response = try withRetries(what: "create an E2B sandbox") {
            try self.call("POST", self.config.api + "/sandboxes", json: body)
        }
        guard response.status == 201 || response.status == 200 else { throw apiError(response, creating: true) }
        guard case .object(let o)? = JSONValue.parse(Data(response.body)), let id = o["sandboxID"]?.stringValue else {
            throw RunnerError(.unavailable, "E2B answered the create call without a sandboxID.")
        }
        let domain = o["domain"]?.stringValue
        return E2BSandbox(id: id, envdURL: config.envdURL(sandboxID: id, domain: domain), accessToken: o["envdAccessToken"]?.stringValue,
                          endsAt: .now + .seconds(seconds))
    }

    /// Kills a sandbox; one already gone (404) counts as killed.
    public func kill(_ sandbox: E2BSandbox) throws {
        let r = try withRetries(what: "kill the E2B sandbox") {
            try self.call("DELETE", self.config.api + "/sandboxes/\(sandbox.id)", ignoringCancel: true)
        }
        guard r.status == 204 || r.status == 200 || r.status == 404 else { throw apiError(r, creating: false) }
    }

    /// Sets the sandbox to end `lifetime` from now.
    public func extend(_ sandbox: inout E2BSandbox, lifetime: Duration) throws {
        let seconds = max(1, Int(lifetime.milliseconds / 1000))
        let r = try call("POST", config.api + "/sandboxes/\(sandbox.id)/timeout", json: .object(["timeout": .int(seconds)]))
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
        let query = "path=\(percentEncode(path))&username=user"
        let r = try call("POST", sandbox.envdURL + "/files?\(query)", headers: envdHeaders(sandbox).merging(
            ["Content-Type": "multipart/form-data; boundary=\(boundary)"]) { $1 }, body: body)
        guard r.status == 200 else { throw envdError(r, what: "upload the bundle") }
    }

    /// Starts a command through envd's Connect API and decodes its event stream as it arrives.
    public func run(_ sandbox: E2BSandbox, command: String, envs: [String: String], cwd: String, timeout: Duration,
                    outputLimit: Int) throws -> E2BProcessResult {
        let request: JSONValue = .object([
            "process": .object(["cmd": .string("/bin/bash"), "args": .array([.string("-l"), .string("-c"), .string(command)]),
                                "envs": .object(envs.mapValues(JSONValue.string)), "cwd": .string(cwd)]),
            "stdin": .bool(false),
        ])
        var headers = envdHeaders(sandbox)
        headers["Content-Type"] = "application/connect+json"
        headers["Connect-Protocol-Version"] = "1"
        headers["Connect-Timeout-Ms"] = String(timeout.milliseconds)
        headers["Keepalive-Ping-Interval"] = "30"

        var decoder = ConnectEnvelope.Decoder()
        var result = E2BProcessResult(pid: nil, exitCode: -1, signalled: false, timedOut: false,
                                      stdout: CappedOutput(limit: outputLimit), stderr: CappedOutput(limit: outputLimit),
                                      incomplete: true, streamError: nil)
        var decodeFailure: Error?
        let response: HTTPResponse
        do {
            response = try call("POST", sandbox.envdURL + "/process.Process/Start", headers: headers,
                                body: ConnectEnvelope.encode(Array(request.jsonText().utf8)),
                                timeout: timeout + .seconds(10)) { chunk in
                do {
                    for frame in try decoder.feed(chunk) { Self.apply(frame, to: &result) }
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
        if result.streamError == "deadline_exceeded" { result.timedOut = true }
        return result
    }

    static func apply(_ frame: ConnectEnvelope.Decoder.Frame, to result: inout E2BProcessResult) {
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

    func envdHeaders(_ sandbox: E2BSandbox) -> [String: String] {
        var h = ["E2b-Sandbox-Id": sandbox.id, "E2b-Sandbox-Port": "49983", "Authorization": "Basic dXNlcjo="]  // "user:"
        if let token = sandbox.accessToken { h["X-Access-Token"] = token }
        return h
    }

    func call(_ method: String, _ url: String, json: JSONValue? = nil, headers: [String: String] = [:], body: [UInt8]? = nil,
              timeout: Duration? = nil, ignoringCancel: Bool = false, onBody: ((UnsafeRawBufferPointer) -> Bool)? = nil) throws -> HTTPResponse {
        var h = headers
        h["X-API-Key"] = config.apiKey
        h["User-Agent"] = "sandbox-runner/0.1"
        var payload = body
        if let json {
            h["Content-Type"] = "application/json"
            payload = Array(json.jsonText().utf8)
        }
        roundTrips += 1
        let handle = ignoringCancel ? try CurlEasy() : curl
        do {
            return try handle.perform(method: method, url: url, headers: h, body: payload, timeout: timeout ?? config.requestTimeout,
                                      connectTimeout: config.connectTimeout, onBody: onBody)
        } catch let e as HTTPError {
            if e.aborted && !ignoringCancel { throw RunnerError(.scriptFailed, "The run was cancelled and its sandbox killed.") }
            if e.timedOut && onBody != nil { throw e }
            throw RunnerError(.unavailable, "Cannot reach E2B: \(e.message) Check E2B_API_URL and the network.")
        }
    }

    /// Retries 429, 5xx and connection errors with exponential backoff and full jitter.
    func withRetries(what: String, _ body: () throws -> HTTPResponse) throws -> HTTPResponse {
        var attempt = 0
        while true {
            attempt += 1
            do {
                let r = try body()
                let retryable = r.status == 429 || (500...599).contains(r.status) && r.status != 501
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
        case 404 where creating, 400 where creating && message.lowercased().contains("template"):
            return RunnerError(.unavailable, "E2B has no template '\(config.templateID)' (\(r.status)): set E2B_TEMPLATE to a template with python3.")
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
