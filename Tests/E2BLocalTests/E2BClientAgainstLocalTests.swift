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
        try await LocalServer.with { s in
            let c = try client(s)
            let result = try await onThread { () -> E2BProcessResult in
                var sb = try c.create(lifetime: .seconds(60), metadata: ["runner": "test"], envVars: ["FROM_CREATE": "yes"])
                defer { try? c.kill(sb) }
                try c.upload(sb, path: "/home/user/job/run.py", bytes: Array("print('hello from the bundle')\n".utf8))
                try c.extend(&sb, lifetime: .seconds(120))
                return try c.run(sb, command: "python3 -u job/run.py; echo $FROM_CREATE $X >&2; exit 5", envs: ["X": "1"],
                                 cwd: "/home/user", timeout: .seconds(30), outputLimit: 1 << 20)
            }
            #expect(result.pid != nil)
            #expect(result.exitCode == 5)
            #expect(!result.signalled && !result.timedOut && !result.incomplete)
            #expect(result.stdout.text == "hello from the bundle\n")
            #expect(result.stderr.text == "yes 1\n")
            #expect(result.streamError == nil)
        }
    }

    @Test("a deadline, a cut stream and a retried 429 look like E2B's")
    func failures() async throws {
        try await LocalServer.with({ $0.faults = [try! FaultSpec(parsing: "create-429:retry_after=0")] }) { s in
            let c = try client(s)
            let (late, cut) = try await onThread { () -> (E2BProcessResult, E2BProcessResult) in
                let sb = try c.create(lifetime: .seconds(60), metadata: [:])
                defer { try? c.kill(sb) }
                let late = try c.run(sb, command: "echo partial; sleep 10", envs: [:], cwd: "/home/user", timeout: .seconds(1),
                                     outputLimit: 1 << 20)
                let armed = try CurlHTTPClient.request(method: "POST", url: s.url + "/_local/faults", body: Array("[\"stream-cut:after=1\"]".utf8))
                precondition(armed.status == 200)
                let cut = try c.run(sb, command: "echo a; sleep 0.2; echo b", envs: [:], cwd: "/home/user", timeout: .seconds(10),
                                    outputLimit: 1 << 20)
                return (late, cut)
            }
            #expect(late.timedOut)
            #expect(late.stdout.text == "partial\n")
            #expect(cut.incomplete)
            #expect(cut.stdout.text == "a\n")
            let stats = try await s.request("GET", "/_local/stats").json
            #expect(stats["requests"]?["POST /sandboxes"] == .int(2), "the 429 was retried once")
        }
    }
}
