import E2BLocal
import Foundation
import SandboxRunner
import Testing

@Suite("e2b-local faults", .serialized, .timeLimit(.minutes(2)))
struct FaultTests {
    @Test("SPEC parsing", arguments: [
        ("create-429", "create-429:count=1:retry_after=1"),
        ("429:count=2:retry_after=0", "create-429:count=2:retry_after=0"),
        ("create-503:count=*", "create-5xx:count=*:status=503"),
        ("upload-5xx:status=502", "upload-5xx:count=1:status=502"),
        ("stream-cut:after=3:mode=abort", "stream-cut:count=1:after=3:mode=abort"),
        ("slow:ms=250:path=/files", "latency:count=1:ms=250:path=/files"),
        ("create-drop:count=2", "create-drop:count=2"),
    ])
    func parse(text: String, canonical: String) throws {
        #expect(try FaultSpec(parsing: text).text == canonical)
    }

    @Test("bad SPECs are refused with a sentence", arguments: ["boom", "create-429:count=0", "latency:ms", "stream-cut:mode=x", "upload-5xx:nope=1"])
    func parseErrors(text: String) {
        #expect(throws: RunnerError.self) { try FaultSpec(parsing: text) }
    }

    @Test("create-429 and create-5xx from --fault, then creates work again")
    func createFaults() async throws {
        try await LocalServer.with({ $0.faults = [try! FaultSpec(parsing: "create-429:retry_after=2"), try! FaultSpec(parsing: "create-503")] }) { s in
            let body = JSONValue.object(["templateID": .string("base")])
            let limited = try await s.api("POST", "/v2/sandboxes", json: body)
            #expect(limited.status == 429)
            #expect(limited.headers["retry-after"] == "2")
            #expect(limited.json["code"] == .int(429))
            let busy = try await s.api("POST", "/v2/sandboxes", json: body)
            #expect(busy.status == 503)
            #expect(busy.json["code"] == .int(503))
            let sb = try await s.create()
            try await s.kill(sb)
            let faults = try await s.request("GET", "/_local/faults").json
            #expect(faults["armed"] == .array([]))
            #expect(faults["fired"]?["create-429"] == .int(1))
        }
    }

    @Test("upload-5xx armed at runtime through /_local/faults")
    func uploadFault() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create()
            let armed = try await s.request("POST", "/_local/faults", body: Array("[\"upload-5xx:status=502\"]".utf8))
            #expect(armed.status == 200)
            let failed = try await s.upload(sb, path: "a.txt", data: [1])
            #expect(failed.status == 502)
            #expect(try await s.upload(sb, path: "a.txt", data: [1]).status == 200)

            _ = try await s.request("POST", "/_local/faults", body: Array("{\"kind\": \"upload-5xx\", \"count\": null}".utf8))
            #expect(try await s.upload(sb, path: "a.txt", data: [1]).status == 500)
            #expect(try await s.upload(sb, path: "a.txt", data: [1]).status == 500)
            #expect(try await s.request("DELETE", "/_local/faults").status == 200)
            #expect(try await s.upload(sb, path: "a.txt", data: [1]).status == 200)
            try await s.kill(sb)
        }
    }

    @Test("stream-cut closes the stream after N data events without the end envelope; the command goes on, as behind a dropped proxy")
    func streamCut() async throws {
        try await LocalServer.with({ $0.faults = [try! FaultSpec(parsing: "stream-cut:after=2")] }) { s in
            let sb = try await s.create()
            let run = try await s.run(sb, "for i in 1 2 3 4 5; do echo $i; sleep 0.2; done")
            #expect(run.status == 200)
            #expect(run.transportError == nil)
            #expect(run.pid != nil)
            #expect(run.dataEvents.count == 2)
            #expect(run.end == nil)
            #expect(run.endOfStream == nil)
            let pid = try #require(run.pid)
            let attached = try await s.stream(sb, "/process.Process/Connect", .object(["process": .object(["pid": .int(pid)])]))
            #expect(attached.end?["status"] == .string("exit status 0"), "the command ran to its end")
            // Only once: the next stream is whole.
            #expect(try await s.run(sb, "echo whole").end != nil)
            try await s.kill(sb)
        }
    }

    @Test("stream-cut mode=abort drops the connection mid-stream")
    func streamAbort() async throws {
        try await LocalServer.with({ $0.faults = [try! FaultSpec(parsing: "stream-cut:after=1:mode=abort")] }) { s in
            let sb = try await s.create()
            let run = try await s.run(sb, "echo a; sleep 0.3; echo b; sleep 5")
            #expect(run.transportError != nil, "the HTTP exchange must fail")
            #expect(run.dataEvents.count == 1)
            #expect(run.total < .seconds(4))
            try await s.kill(sb)
        }
    }

    @Test("latency delays matching requests; stats count routes")
    func latency() async throws {
        try await LocalServer.with({ $0.faults = [try! FaultSpec(parsing: "latency:ms=400:count=*:path=/v2/")] }) { s in
            let clock = ContinuousClock()
            let slow = try await clock.measure { _ = try await s.api("GET", "/v2/sandboxes") }
            _ = try await s.api("GET", "/sandboxes")
            #expect(slow >= .milliseconds(400))  // a lower bound: the delay itself, whatever the load
            // The other path was not delayed: the server applied the latency fault once, not twice
            // (no wall-clock upper bound, which a loaded machine can break).
            let faults = try await s.request("GET", "/_local/faults").json
            #expect(faults["fired"]?["latency"] == .int(1))
            let stats = try await s.request("GET", "/_local/stats").json
            #expect(stats["requests"]?["GET /v2/sandboxes"] == .int(1))
            #expect(stats["requests"]?["GET /sandboxes"] == .int(1))
            #expect(stats["live_sandboxes"] == .int(0))
        }
    }
}
