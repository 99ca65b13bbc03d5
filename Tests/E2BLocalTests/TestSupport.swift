import E2BLocal
import Foundation
import Logging
import SandboxRunner
import Testing

/// A running e2b-local on 127.0.0.1:0 and blocking HTTP to it (libcurl on its own thread).
struct LocalServer: Sendable {
    let url: String
    let server: E2BLocalServer
    /// How a client reaches it: the CA to trust when it serves TLS.
    var options = CurlConnectionOptions()
    var key: String { server.configuration.apiKey }

    /// Starts a server, runs `body`, checks that no sandbox is left, and shuts the server down.
    static func with(_ configure: (inout E2BLocalConfiguration) -> Void = { _ in },
                     expectNoSandboxesLeft: Bool = true,
                     _ body: (LocalServer) async throws -> Void) async throws {
        var config = E2BLocalConfiguration()
        config.reapInterval = .milliseconds(50)
        configure(&config)
        var logger = Logger(label: "e2b-local-test")
        logger.logLevel = .warning
        let server = E2BLocalServer(configuration: config, logger: logger)
        let (urls, continuation) = AsyncStream.makeStream(of: String.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { continuation.finish() }
                try await server.run { url in continuation.yield(url) }
            }
            var iterator = urls.makeAsyncIterator()
            guard let url = await iterator.next() else {
                try await group.waitForAll()
                Issue.record("The server stopped before it listened.")
                return
            }
            #expect(url.hasPrefix(config.tls == nil ? "http://127.0.0.1:" : "https://127.0.0.1:"))
            #expect(!url.hasSuffix(":0"))
            var local = LocalServer(url: url, server: server)
            if let chain = config.tls?.certificateChain {
                local.options.caFile = URL(fileURLWithPath: chain).deletingLastPathComponent().appendingPathComponent("ca.pem").path
            }
            do {
                try await body(local)
            } catch {
                await server.shutdown()
                try? await group.waitForAll()
                throw error
            }
            if expectNoSandboxesLeft {
                #expect(server.liveSandboxCount == 0, "a test left sandboxes alive")
                let stats = try await local.request("GET", "/_local/stats").json
                #expect(stats["live_sandboxes"] == .int(0))
            }
            await server.shutdown()
            try await group.waitForAll()
            #expect(server.liveSandboxCount == 0)
        }
    }

    // MARK: HTTP

    func request(_ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8]? = nil,
                 timeout: Duration = .seconds(30)) async throws -> HTTPResponse {
        let url = self.url + path
        let options = self.options
        return try await onThread {
            try CurlHTTPClient.request(method: method, url: url, headers: headers, body: body, timeout: timeout, options: options)
        }
    }

    func api(_ method: String, _ path: String, json: JSONValue? = nil) async throws -> HTTPResponse {
        var headers = ["X-API-Key": key]
        if json != nil { headers["Content-Type"] = "application/json" }
        return try await request(method, path, headers: headers, body: json.map { Array($0.jsonText().utf8) })
    }

    func create(timeout: Int = 60, metadata: [String: String] = [:], envVars: [String: String] = [:],
                extra: [String: JSONValue] = [:]) async throws -> Sandbox {
        var body: [String: JSONValue] = [
            "templateID": .string("base"), "timeout": .int(timeout),
            "metadata": .object(metadata.mapValues(JSONValue.string)), "envVars": .object(envVars.mapValues(JSONValue.string)),
        ]
        body.merge(extra) { _, e in e }
        let r = try await api("POST", "/v2/sandboxes", json: .object(body))
        try #require(r.status == 201, "create answered \(r.status): \(r.text)")
        let j = r.json
        return Sandbox(id: try #require(j["sandboxID"]?.stringValue), token: j["envdAccessToken"]?.stringValue)
    }

    func kill(_ sandbox: Sandbox) async throws {
        let r = try await api("DELETE", "/sandboxes/\(sandbox.id)")
        #expect(r.status == 204)
    }

    /// A unary Connect call (`List`, `SendSignal`, filesystem RPCs) with a JSON message.
    func rpc(_ sandbox: Sandbox, _ path: String, _ message: JSONValue) async throws -> HTTPResponse {
        try await envd(sandbox, "POST", path, headers: ["Content-Type": "application/json"], body: Array(message.jsonText().utf8))
    }

    func stats() async throws -> JSONValue { try await request("GET", "/_local/stats").json }

    func envd(_ sandbox: Sandbox, _ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8]? = nil,
              timeout: Duration = .seconds(30)) async throws -> HTTPResponse {
        var h = sandbox.headers
        h.merge(headers) { $1 }
        return try await request(method, path, headers: h, body: body, timeout: timeout)
    }

    func upload(_ sandbox: Sandbox, path: String, data: [UInt8]) async throws -> HTTPResponse {
        let boundary = "e2blocaltestboundary"
        var body = Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(path)\"\r\nContent-Type: application/octet-stream\r\n\r\n".utf8)
        body += data + Array("\r\n--\(boundary)--\r\n".utf8)
        let query = "path=\(path.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? path)&username=user"
        return try await envd(sandbox, "POST", "/files?\(query)", headers: ["Content-Type": "multipart/form-data; boundary=\(boundary)"], body: body)
    }

    /// Runs a command through `process.Process/Start` and collects the stream with arrival times.
    func run(_ sandbox: Sandbox, _ command: String, envs: [String: String] = [:], cwd: String? = nil,
             timeoutMs: Int? = nil, keepalive: Int? = nil, clientTimeout: Duration = .seconds(60)) async throws -> CommandStream {
        var process: [String: JSONValue] = ["cmd": .string("/bin/bash"), "args": .array([.string("-l"), .string("-c"), .string(command)]),
                                            "envs": .object(envs.mapValues(JSONValue.string))]
        if let cwd { process["cwd"] = .string(cwd) }
        let message = JSONValue.object(["process": .object(process), "stdin": .bool(false)])
        return try await stream(sandbox, "/process.Process/Start", message, timeoutMs: timeoutMs, keepalive: keepalive,
                                clientTimeout: clientTimeout)
    }

    /// A server-streaming Connect call (`Start`, `Connect`, `WatchDir`), collected with arrival times.
    func stream(_ sandbox: Sandbox, _ path: String, _ message: JSONValue, timeoutMs: Int? = nil, keepalive: Int? = nil,
                clientTimeout: Duration = .seconds(60)) async throws -> CommandStream {
        var headers = sandbox.headers
        headers["Content-Type"] = "application/connect+json"
        headers["Connect-Protocol-Version"] = "1"
        if let timeoutMs { headers["Connect-Timeout-Ms"] = String(timeoutMs) }
        if let keepalive { headers["Keepalive-Ping-Interval"] = String(keepalive) }
        let url = self.url + path
        let options = self.options
        let body = Frames.encode(Array(message.jsonText().utf8))
        return try await onThread { [headers] in
            let stream = CommandStream()
            let start = ContinuousClock.now
            do {
                let r = try CurlEasy(options: options).perform(method: "POST", url: url, headers: headers, body: body,
                                                               timeout: clientTimeout) { chunk in
                    stream.feed(chunk, at: ContinuousClock.now - start)
                    return true
                }
                stream.status = r.status
                stream.contentType = r.headers["content-type"]
                stream.errorBody = r.status == 200 ? nil : r.text
            } catch let e as HTTPError {
                stream.transportError = e
            }
            stream.total = ContinuousClock.now - start
            return stream
        }
    }
}

struct Sandbox: Sendable {
    var id: String
    var token: String?
    var headers: [String: String] {
        var h = ["E2b-Sandbox-Id": id, "E2b-Sandbox-Port": "49983"]
        if let token { h["X-Access-Token"] = token }
        return h
    }
}

/// Connect envelopes, decoded here independently of the client's decoder.
enum Frames {
    static func encode(_ message: [UInt8], flag: UInt8 = 0) -> [UInt8] {
        let n = UInt32(message.count)
        return [flag, UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)] + message
    }
}

/// A decoded `Start` answer: each envelope with when it arrived.
final class CommandStream: @unchecked Sendable {
    struct Frame {
        var flag: UInt8
        var json: JSONValue
        var at: Duration
    }

    var status = 0
    var contentType: String?
    var errorBody: String?
    var transportError: HTTPError?
    var frames: [Frame] = []
    var total: Duration = .zero
    /// The body of a non-200 answer, parsed.
    var errorJSON: JSONValue { errorBody.flatMap { JSONValue.parse(Data($0.utf8)) } ?? .null }
    private var buffer: [UInt8] = []

    func feed(_ bytes: UnsafeRawBufferPointer, at: Duration) {
        buffer += bytes
        while buffer.count >= 5 {
            let n = Int(buffer[1]) << 24 | Int(buffer[2]) << 16 | Int(buffer[3]) << 8 | Int(buffer[4])
            guard buffer.count >= 5 + n else { break }
            let json = JSONValue.parse(Data(buffer[5..<(5 + n)])) ?? .null
            frames.append(Frame(flag: buffer[0], json: json, at: at))
            buffer.removeFirst(5 + n)
        }
    }

    var leftoverBytes: Int { buffer.count }
    var events: [JSONValue] { frames.filter { $0.flag == 0 }.compactMap { $0.json["event"] } }
    var endOfStream: JSONValue? { frames.last.flatMap { $0.flag == 2 ? $0.json : nil } }
    var pid: Int? { events.first?["start"]?["pid"]?.intValue }
    var end: JSONValue? { events.first { $0["end"] != nil }?["end"] }

    func output(_ key: String) -> String {
        events.compactMap { $0["data"]?[key]?.stringValue }.compactMap { Data(base64Encoded: $0) }
            .map { String(decoding: $0, as: UTF8.self) }.joined()
    }

    var dataEvents: [Frame] { frames.filter { $0.flag == 0 && $0.json["event"]?["data"] != nil } }
}

extension HTTPResponse {
    var json: JSONValue { JSONValue.parse(Data(body)) ?? .null }
}

/// Host processes running as `uid` (a sandbox's user as the host sees it).
func hostProcesses(uid: uid_t) -> [Int32] {
    let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { Int32($0) } ?? []
    return pids.filter { pid in
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else { return false }
        return line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first.flatMap { uid_t($0) } == uid
    }
}

/// Host processes in the pid namespace named like `pid:[4026532181]`.
func hostProcesses(inPidNamespace ns: String) -> [Int32] {
    let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { Int32($0) } ?? []
    return pids.filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\($0)/ns/pid")) == ns }
}

/// Runs blocking work (libcurl) on its own thread, never on the cooperative pool.
func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, Error>) in
        let t = Thread { c.resume(with: Result { try work() }) }
        t.start()
    }
}
