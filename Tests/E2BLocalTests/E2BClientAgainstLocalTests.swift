import E2BLocal
import Foundation
import SandboxRunner
import Testing

/// Our own E2B client (SandboxRunner/Backends/E2B) against e2b-local: the calls a run makes.
@Suite("E2BClient against e2b-local", .serialized, .timeLimit(.minutes(2)))
struct E2BClientAgainstLocalTests {
    func client(_ s: LocalServer) throws -> E2BClient {
        var config = E2BConfiguration(apiURL: s.url, sandboxURL: s.url, apiKey: s.key)
        config.baseBackoff = .milliseconds(20)
        return try E2BClient(config: config)
    }

    @Test("create, upload, run, extend, kill")
    func run() async throws {
        try await LocalServer.with({ $0.strict = true }) { s in
            let c = try client(s)
            let result = try await onThread { () -> E2BProcessResult in
                var sb = try c.create(lifetime: .seconds(60), metadata: ["runner": "test"], envVars: ["FROM_CREATE": "yes"])
                defer { try? c.kill(sb) }
                try c.upload(sb, path: "/home/user/job/run.py", bytes: Array("print('hello from the bundle')\n".utf8))
                try c.extend(&sb, lifetime: .seconds(120))
                return try c.run(sb, argv: ["/bin/bash", "-c", "python3 -u job/run.py; echo $FROM_CREATE $X >&2; exit 5"], envs: ["X": "1"],
                                 cwd: "/home/user", timeout: .seconds(30), outputLimit: 1 << 20)
            }
            #expect(result.pid != nil)
            #expect(result.exitCode == 5)
            #expect(!result.signalled && !result.timedOut && !result.incomplete)
            #expect(result.stdout.text == "hello from the bundle\n")
            #expect(result.stderr.text == "yes 1\n")
            #expect(result.streamError == nil)
            #expect(try await s.stats()["requests"]?["POST /v2/sandboxes"] == .int(1))
        }
    }

    @Test("a deadline, a cut stream and a retried 429 look like E2B's")
    func failures() async throws {
        try await LocalServer.with({ $0.faults = [try! FaultSpec(parsing: "create-429:retry_after=0")] }) { s in
            let c = try client(s)
            let (late, cut) = try await onThread { () -> (E2BProcessResult, E2BProcessResult) in
                let sb = try c.create(lifetime: .seconds(60), metadata: [:])
                defer { try? c.kill(sb) }
                let late = try c.run(sb, argv: ["/bin/bash", "-c", "echo partial; sleep 10"], envs: [:], cwd: "/home/user",
                                     timeout: .seconds(1), outputLimit: 1 << 20)
                let armed = try CurlHTTPClient.request(method: "POST", url: s.url + "/_local/faults", body: Array("[\"stream-cut:after=1\"]".utf8))
                precondition(armed.status == 200)
                let cut = try c.run(sb, argv: ["/bin/bash", "-c", "echo a; sleep 0.2; echo b"], envs: [:], cwd: "/home/user",
                                    timeout: .seconds(10), outputLimit: 1 << 20)
                return (late, cut)
            }
            #expect(late.timedOut)
            #expect(late.stdout.text == "partial\n")
            #expect(cut.incomplete)
            #expect(cut.stdout.text == "a\n")
            #expect(try await s.stats()["requests"]?["POST /v2/sandboxes"] == .int(2), "the 429 was retried once")
        }
    }

    /// The real addressing path: TLS with e2b-local's own CA, the control plane at
    /// `api.<domain>` and envd at `49983-<id>.<domain>` (no routing header needed), both names
    /// resolved to loopback by libcurl's CONNECT_TO, the certificate verified through the CA
    /// setting. There is no plain-HTTP listener to fall back to.
    @Test("over TLS at 49983-<id>.<domain>, verified through E2B_CA_FILE")
    func tls() async throws {
        let dir = NSTemporaryDirectory() + "e2b-tls-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tls = try E2BLocalServer.makeCertificates(in: dir, domain: "e2b-local.test")
        try await LocalServer.with({ $0.tls = tls; $0.domain = "e2b-local.test"; $0.strict = true }) { s in
            let port = try #require(s.url.split(separator: ":").last.map(String.init))
            let env = ["E2B_DOMAIN": "e2b-local.test", "E2B_API_KEY": s.key, "E2B_CA_FILE": dir + "/ca.pem",
                       "E2B_CONNECT_TO": "127.0.0.1:\(port)"]
            let config = try E2BConfiguration.fromEnvironment(env)
            #expect(config.apiURL == "https://api.e2b-local.test")
            #expect(config.sandboxURL == nil)
            #expect(config.sandboxesAreLocal)
            let c = try E2BClient(config: config)
            let (sandbox, result) = try await onThread { () -> (E2BSandbox, E2BProcessResult) in
                let sb = try c.create(lifetime: .seconds(60), metadata: [:])
                defer { try? c.kill(sb) }
                return (sb, try c.run(sb, argv: ["/bin/bash", "-c", "echo over tls"], envs: [:], cwd: "/home/user", timeout: .seconds(20),
                                      outputLimit: 1 << 20))
            }
            #expect(sandbox.envdURL == "https://49983-\(sandbox.id).e2b-local.test")
            #expect(result.stdout.text == "over tls\n")
            // Routed by host alone: no E2b-Sandbox-Id header.
            let byHost = try await onThread {
                try CurlHTTPClient.request(url: "https://49983-nosuchsandbox.e2b-local.test/health", options: config.connection)
            }
            #expect(byHost.status == 502)

            // Another CA does not verify it, and the port speaks no plain HTTP.
            let other = dir + "/other"
            try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
            _ = try E2BLocalServer.makeCertificates(in: other, domain: "e2b-local.test")
            let wrong = CurlConnectionOptions(caFile: other + "/ca.pem", connectTo: config.connection.connectTo)
            await #expect(throws: HTTPError.self) {
                try await onThread { try CurlHTTPClient.request(url: "https://api.e2b-local.test/health", options: wrong) }
            }
            await #expect(throws: HTTPError.self) {
                try await onThread { try CurlHTTPClient.request(url: "http://127.0.0.1:\(port)/health", timeout: .seconds(3)) }
            }
        }
    }

    @Test("a create whose 201 is lost is retried with the same Idempotency-Key: exactly one sandbox")
    func droppedCreate() async throws {
        try await LocalServer.with({ $0.faults = [try! FaultSpec(parsing: "create-drop")] }) { s in
            let c = try client(s)
            let sb = try await onThread { try c.create(lifetime: .seconds(60), metadata: [:]) }
            let stats = try await s.stats()
            #expect(stats["requests"]?["POST /v2/sandboxes"] == .int(2), "the lost answer was retried")
            #expect(stats["sandboxes_created"] == .int(1), "the retry got the sandbox the first attempt made")
            #expect(stats["live_sandboxes"] == .int(1))
            try await onThread { try c.kill(sb) }
        }
    }
}
