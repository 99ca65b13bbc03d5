import E2BLocal
import Foundation
import SandboxRunner
import Testing

@Suite("e2b-local server", .serialized, .timeLimit(.minutes(2)))
struct E2BLocalServerTests {
    @Test("create → upload → run → read → kill, over real HTTP")
    func lifecycle() async throws {
        try await LocalServer.with { s in
            let created = try await s.api("POST", "/v2/sandboxes", json: .object(["templateID": .string("base"), "timeout": .int(60)]))
            #expect(created.status == 201)
            let c = created.json
            for field in ["sandboxID", "templateID", "envdVersion", "envdAccessToken", "trafficAccessToken", "domain", "clientID"] {
                #expect(c[field]?.stringValue?.isEmpty == false, "create answer lacks \(field)")
            }
            #expect(c["envdVersion"] == .string(E2BLocalConfiguration.envdVersion))
            let sb = Sandbox(id: try #require(c["sandboxID"]?.stringValue), token: c["envdAccessToken"]?.stringValue)

            #expect(try await s.envd(sb, "GET", "/health").status == 204)
            // The host form E2B's proxy routes by: 49983-<id>.<domain>.
            let byHost = try await s.request("GET", "/files?path=nothing", headers: ["Host": "49983-\(sb.id).localhost", "X-Access-Token": sb.token ?? ""])
            #expect(byHost.status == 404, "routed to the sandbox's envd: \(byHost.text)")
            let otherPort = try await s.request("GET", "/health", headers: ["Host": "8080-\(sb.id).localhost"])
            #expect(otherPort.json["message"]?.stringValue?.contains("port is not open") == true)

            let up = try await s.upload(sb, path: "/home/user/in/data.txt", data: Array("line one\n".utf8))
            #expect(up.status == 200, "\(up.text)")
            #expect(up.json == .array([.object(["path": .string("/home/user/in/data.txt"), "name": .string("data.txt"),
                                                "type": .string("file")])]))
            // Streamed upload, relative path, parents created.
            let raw = try await s.envd(sb, "POST", "/files?path=deep/er/raw.bin", headers: ["Content-Type": "application/octet-stream"],
                                       body: [0, 1, 2, 255])
            #expect(raw.status == 200, "\(raw.text)")
            #expect(raw.json.arrayValue?.first?["path"] == .string("/home/user/deep/er/raw.bin"))
            #expect(try await s.envd(sb, "GET", "/files?path=deep/er/raw.bin").body == [0, 1, 2, 255])

            let run = try await s.run(sb, "cat in/data.txt; echo oops >&2; echo made > out.txt; exit 3", timeoutMs: 20_000)
            #expect(run.status == 200)
            #expect(run.contentType == "application/connect+json")
            #expect(run.events.first?["start"]?["pid"]?.intValue != nil, "the first event is start")
            #expect(run.output("stdout") == "line one\n")
            #expect(run.output("stderr") == "oops\n")
            #expect(run.end?["exitCode"] == .int(3))
            #expect(run.end?["exited"] == .bool(true))
            #expect(run.end?["status"] == .string("exit status 3"))
            #expect(run.endOfStream == .object([:]))
            #expect(run.leftoverBytes == 0)

            let ok = try await s.run(sb, "true")
            #expect(ok.end?["exitCode"] == nil, "exit code 0 is left out, as proto3 JSON does")
            #expect(ok.end?["status"] == .string("exit status 0"))

            let read = try await s.envd(sb, "GET", "/files?path=/home/user/out.txt&username=user")
            #expect(read.status == 200)
            #expect(read.text == "made\n")
            #expect(try await s.envd(sb, "GET", "/files?path=/home/user/missing.txt").status == 404)

            let info = try await s.api("GET", "/sandboxes/\(sb.id)")
            #expect(info.status == 200)
            #expect(info.json["state"] == .string("running"))

            try await s.kill(sb)
            let again = try await s.api("DELETE", "/sandboxes/\(sb.id)")
            #expect(again.status == 404)
            #expect(again.json["code"] == .int(404))
            let gone = try await s.envd(sb, "GET", "/health")
            #expect(gone.status == 502)
            #expect(gone.json["message"]?.stringValue?.contains("was not found") == true)
        }
    }

    @Test("wrong or missing keys and tokens are refused with {code, message}")
    func auth() async throws {
        try await LocalServer.with { s in
            let none = try await s.request("POST", "/sandboxes", body: Array("{\"templateID\":\"base\"}".utf8))
            #expect(none.status == 401)
            #expect(none.json["code"] == .int(401))
            #expect(none.json["message"]?.stringValue?.isEmpty == false)
            let wrong = try await s.request("GET", "/v2/sandboxes", headers: ["X-API-Key": "not-the-key"])
            #expect(wrong.status == 401)

            let sb = try await s.create()
            let noToken = Sandbox(id: sb.id, token: nil)
            #expect(try await s.envd(noToken, "GET", "/files?path=x").status == 401)
            let badToken = Sandbox(id: sb.id, token: "nope")
            let rpc = try await s.run(badToken, "echo hi")
            #expect(rpc.status == 401)
            #expect(rpc.errorBody?.contains("\"unauthenticated\"") == true)
            #expect(try await s.envd(sb, "GET", "/files?path=x&username=mallory").status == 401)

            let open = try await s.create(secure: false)
            #expect(try await s.run(Sandbox(id: open.id, token: nil), "true").end != nil)

            let unknownTemplate = try await s.api("POST", "/sandboxes", json: .object(["templateID": .string("no-such")]))
            #expect(unknownTemplate.status == 400)
            #expect(try await s.api("POST", "/v2/sandboxes", json: .object(["templateID": .string("no-such")])).status == 404)
            #expect(try await s.api("POST", "/sandboxes", json: .object(["timeout": .int(5)])).status == 400)
            try await s.kill(sb)
            try await s.kill(open)
        }
    }

    @Test("a sandbox past its end time is killed with its commands, and removed")
    func expiry() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create(timeout: 1)
            let run = try await s.run(sb, "echo started; sleep 30")
            #expect(run.output("stdout") == "started\n")
            #expect(run.total < .seconds(10))
            #expect(run.end == nil, "a sandbox that dies sends no end event")
            #expect(run.endOfStream?["error"]?["code"] == .string("unavailable"))
            #expect(s.server.liveSandboxCount == 0)
            #expect(try await s.api("GET", "/sandboxes/\(sb.id)").status == 404)
            let stats = try await s.request("GET", "/_local/stats").json
            #expect(stats["sandboxes_expired"] == .int(1))
            #expect(stats["running_processes"] == .int(0))

            // Extending the lifetime keeps it alive.
            let kept = try await s.create(timeout: 1)
            #expect(try await s.api("POST", "/sandboxes/\(kept.id)/timeout", json: .object(["timeout": .int(30)])).status == 204)
            try await Task.sleep(for: .milliseconds(1500))
            #expect(try await s.api("GET", "/sandboxes/\(kept.id)").status == 200)
            try await s.kill(kept)
        }
    }

    @Test("output streams as it is produced, not when the command ends")
    func streaming() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create()
            let run = try await s.run(sb, "echo first; sleep 1; echo second")
            let data = run.dataEvents
            try #require(data.count == 2)
            let endFrame = try #require(run.frames.first { $0.json["event"]?["end"] != nil })
            #expect(endFrame.at - data[0].at >= .milliseconds(700), "the first chunk arrived \(endFrame.at - data[0].at) before the end")
            #expect(run.output("stdout") == "first\nsecond\n")

            // Large output arrives in chunks of at most 32 KiB, all of it.
            let big = try await s.run(sb, "head -c 300000 /dev/zero | tr '\\0' 'x'")
            #expect(big.output("stdout").count == 300_000)
            for f in big.dataEvents {
                let b64 = f.json["event"]?["data"]?["stdout"]?.stringValue ?? ""
                #expect((Data(base64Encoded: b64)?.count ?? 0) <= 32 * 1024)
            }
            try await s.kill(sb)
        }
    }

    @Test("idle streams get keepalives; Connect-Timeout-Ms is the command's deadline")
    func keepaliveAndDeadline() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create()
            let quiet = try await s.run(sb, "sleep 2.3; echo done", keepalive: 1)
            #expect(quiet.events.filter { $0["keepalive"] != nil }.count >= 1)
            #expect(quiet.output("stdout") == "done\n")

            let late = try await s.run(sb, "echo partial; sleep 10", timeoutMs: 800)
            #expect(late.total < .seconds(5))
            #expect(late.output("stdout") == "partial\n")
            #expect(late.end?["exitCode"] == .int(-1))
            #expect(late.end?["status"] == .string("signal: killed"))
            #expect(late.endOfStream?["error"]?["code"] == .string("deadline_exceeded"))
            try await s.kill(sb)
        }
    }

    @Test("SendSignal kills a running command; List shows it while it runs")
    func sendSignal() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create()
            async let stream = s.run(sb, "echo up; sleep 30")
            var pid: Int?
            for _ in 0..<100 where pid == nil {
                let list = try await s.envd(sb, "POST", "/process.Process/List", headers: ["Content-Type": "application/json"],
                                            body: Array("{}".utf8))
                pid = list.json["processes"]?.arrayValue?.first?["pid"]?.intValue
                if pid == nil { try await Task.sleep(for: .milliseconds(50)) }
            }
            let p = try #require(pid)
            let body = Array("{\"process\":{\"pid\":\(p)},\"signal\":\"SIGNAL_SIGKILL\"}".utf8)
            let r = try await s.envd(sb, "POST", "/process.Process/SendSignal", headers: ["Content-Type": "application/json"], body: body)
            #expect(r.status == 200)
            #expect(r.json == .object([:]))
            let run = try await stream
            #expect(run.pid == p)
            #expect(run.end?["exitCode"] == .int(-1))
            #expect(run.end?["status"] == .string("signal: killed"))
            #expect(run.endOfStream == .object([:]))
            let missing = try await s.envd(sb, "POST", "/process.Process/SendSignal", headers: ["Content-Type": "application/json"],
                                           body: Array("{\"process\":{\"pid\":999999},\"signal\":\"SIGNAL_SIGKILL\"}".utf8))
            #expect(missing.status == 404)
            #expect(missing.json["code"] == .string("not_found"))
            try await s.kill(sb)
        }
    }

    @Test("a client that disconnects takes its command with it")
    func disconnect() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create()
            // libcurl gives up after 1 s: the server must notice and kill `sleep 30`.
            let url = s.url + "/process.Process/Start"
            var headers = sb.headers
            headers["Content-Type"] = "application/connect+json"
            let message = Array("{\"process\":{\"cmd\":\"/bin/bash\",\"args\":[\"-c\",\"sleep 30\"]}}".utf8)
            let failed = try await onThread { [headers] () -> Bool in
                do { _ = try CurlHTTPClient.request(method: "POST", url: url, headers: headers, body: Frames.encode(message), timeout: .seconds(1)) }
                catch { return true }
                return false
            }
            #expect(failed)
            var running = -1
            for _ in 0..<60 {
                running = try await s.request("GET", "/_local/stats").json["running_processes"]?.intValue ?? -1
                if running == 0 { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(running == 0)
            try await s.kill(sb)
        }
    }

    @Test("envVars, process envs (which win) and cwd reach the command")
    func environmentAndCwd() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create(envVars: ["A": "sandbox", "B": "sandbox"])
            _ = try await s.envd(sb, "POST", "/files?path=sub/keep", headers: ["Content-Type": "application/octet-stream"], body: [])
            let run = try await s.run(sb, "echo $A $B $HOME; pwd", envs: ["B": "process"], cwd: "/home/user/sub")
            #expect(run.output("stdout") == "sandbox process /home/user\n/home/user/sub\n")
            let rel = try await s.run(sb, "pwd", cwd: "sub")
            #expect(rel.output("stdout") == "/home/user/sub\n")
            let bad = try await s.run(sb, "pwd", cwd: "/home/user/nope")
            #expect(bad.status == 400)
            #expect(bad.errorBody?.contains("invalid_argument") == true)
            try await s.kill(sb)
        }
    }

    @Test("paths cannot leave the workspace, not even through links the sandbox made")
    func pathSafety() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create()
            #expect(try await s.envd(sb, "GET", "/files?path=../../etc/passwd").status == 400)
            #expect(try await s.envd(sb, "GET", "/files?path=/etc/passwd").status == 400)
            #expect(try await s.upload(sb, path: "/tmp/x", data: [1]).status == 400)
            _ = try await s.run(sb, "ln -s /etc/passwd leak; ln -s /etc escape")
            #expect(try await s.envd(sb, "GET", "/files?path=leak").status == 400)
            #expect(try await s.upload(sb, path: "escape/evil", data: [1]).status == 400)
            #expect(try await s.upload(sb, path: "leak", data: [1]).status == 400)
            try await s.kill(sb)
        }
    }

    @Test("list: both routes, metadata filter, pagination")
    func list() async throws {
        try await LocalServer.with { s in
            let a = try await s.create(metadata: ["team": "red", "run": "1"])
            let b = try await s.create(metadata: ["team": "blue"])
            let all = try await s.api("GET", "/v2/sandboxes")
            #expect(all.json.arrayValue?.count == 2)
            let first = try #require(all.json.arrayValue?.first)
            for field in ["templateID", "sandboxID", "clientID", "startedAt", "endAt", "cpuCount", "memoryMB", "diskSizeMB", "state", "envdVersion", "metadata"] {
                #expect(first[field] != nil, "listed sandbox lacks \(field)")
            }
            let red = try await s.api("GET", "/v2/sandboxes?metadata=team%3Dred")
            #expect(red.json.arrayValue?.compactMap { $0["sandboxID"]?.stringValue } == [a.id])
            let old = try await s.api("GET", "/sandboxes?metadata=team%3Dblue")
            #expect(old.json.arrayValue?.compactMap { $0["sandboxID"]?.stringValue } == [b.id])
            let page = try await s.api("GET", "/v2/sandboxes?limit=1")
            #expect(page.json.arrayValue?.count == 1)
            let token = try #require(page.headers["x-next-token"])
            let next = try await s.api("GET", "/v2/sandboxes?limit=1&nextToken=\(token)")
            #expect(next.json.arrayValue?.count == 1)
            #expect(next.headers["x-next-token"] == nil)
            #expect(try await s.api("GET", "/v2/sandboxes?state=paused").json == .array([]))
            try await s.kill(a)
            try await s.kill(b)
        }
    }

    @Test("--max-sandboxes: creates past the limit get a 429 about concurrent sandboxes")
    func maxSandboxes() async throws {
        try await LocalServer.with({ $0.maxSandboxes = 2 }) { s in
            let a = try await s.create()
            let b = try await s.create()
            let third = try await s.api("POST", "/sandboxes", json: .object(["templateID": .string("base")]))
            #expect(third.status == 429)
            #expect(third.json["message"]?.stringValue?.contains("concurrent sandboxes") == true)
            try await s.kill(a)
            let c = try await s.create()
            try await s.kill(b)
            try await s.kill(c)
        }
    }

    @Test("graceful shutdown kills running commands and removes every sandbox")
    func shutdown() async throws {
        try await LocalServer.with(expectNoSandboxesLeft: false) { s in
            let sb = try await s.create()
            async let stream = s.run(sb, "echo up; sleep 30")
            try await Task.sleep(for: .milliseconds(500))
            await s.server.shutdown()
            let run = try await stream
            #expect(run.total < .seconds(15))
            #expect(run.endOfStream?["error"]?["code"] == .string("unavailable"))
            #expect(s.server.liveSandboxCount == 0)
        }
    }
}
