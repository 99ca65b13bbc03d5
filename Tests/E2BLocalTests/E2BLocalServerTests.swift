import E2BLocal
import Foundation
import SandboxRunner
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// e2b-local over real HTTP, each rule checked against E2B's own source (e2b-dev/infra, paths
/// given in the tests) or its SDK 2.63.
@Suite("e2b-local server", .serialized, .timeLimit(.minutes(3)))
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
            // A command killed by a signal inside the sandbox reports the signal, as Go's ProcessState does.
            let signalled = try await s.run(sb, "kill -TERM $$")
            #expect(signalled.end?["exitCode"] == .int(-1))
            #expect(signalled.end?["status"] == .string("signal: terminated"))

            let read = try await s.envd(sb, "GET", "/files?path=/home/user/out.txt&username=user")
            #expect(read.status == 200)
            #expect(read.text == "made\n")
            #expect(try await s.envd(sb, "GET", "/files?path=/home/user/missing.txt").status == 404)
            #expect(try await s.envd(sb, "GET", "/files?path=/home/user/in").status == 400, "a directory is not a file")

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

    @Test("keys, tokens, templates and lifetimes are refused with E2B's codes and bodies")
    func refusals() async throws {
        try await LocalServer.with { s in
            let none = try await s.request("POST", "/v2/sandboxes", body: Array("{\"templateID\":\"base\"}".utf8))
            #expect(none.status == 401)
            #expect(none.json["code"] == .int(401))
            #expect(try await s.request("GET", "/v2/sandboxes", headers: ["X-API-Key": "not-the-key"]).status == 401)

            let sb = try await s.create()
            // envd's own auth middleware answers plain JSON {code: 401, message}, RPCs included
            // (infra packages/envd/internal/api/auth.go: WithAuthorization → jsonError(401, …)).
            let badToken = Sandbox(id: sb.id, token: "nope")
            let rpc = try await s.run(badToken, "echo hi")
            #expect(rpc.status == 401)
            #expect(rpc.errorJSON["code"] == .int(401))
            #expect(rpc.errorJSON["message"]?.stringValue?.contains("unauthorized access") == true)
            #expect(try await s.envd(Sandbox(id: sb.id, token: nil), "GET", "/files?path=x").status == 401)
            #expect(try await s.envd(sb, "GET", "/files?path=x&username=mallory").status == 401)
            #expect(try await s.envd(Sandbox(id: sb.id, token: nil), "GET", "/health").status == 204, "health needs no token")

            // infra packages/api/internal/cache/templates/errors.go: 404 "template '<id>' not found", on both routes.
            for route in ["/sandboxes", "/v2/sandboxes"] {
                let unknown = try await s.api("POST", route, json: .object(["templateID": .string("no-such")]))
                #expect(unknown.status == 404)
                #expect(unknown.json["message"] == .string("template 'no-such' not found"))
            }
            // infra packages/api/internal/handlers/timeout_helper.go: the plan's MaxLengthHours.
            let tooLong = try await s.api("POST", "/v2/sandboxes", json: .object(["templateID": .string("base"), "timeout": .int(3601)]))
            #expect(tooLong.status == 400)
            #expect(tooLong.json == .object(["code": .int(400), "message": .string("Timeout cannot be greater than 1 hours")]))
            let zero = try await s.api("POST", "/v2/sandboxes", json: .object(["templateID": .string("base"), "timeout": .int(0)]))
            #expect(zero.json["message"] == .string("Timeout must be greater than 0"))
            let extend = try await s.api("POST", "/sandboxes/\(sb.id)/timeout", json: .object(["timeout": .int(7200)]))
            #expect(extend.status == 400)
            #expect(try await s.api("POST", "/v2/sandboxes", json: .object(["timeout": .int(5)])).status == 400)
            #expect(try await s.stats()["sandboxes_created"] == .int(1), "no refused create made a sandbox")
            try await s.kill(sb)
        }
        try await LocalServer.with({ $0.maxSandboxHours = 24 }) { s in
            let pro = try await s.api("POST", "/v2/sandboxes", json: .object(["templateID": .string("base"), "timeout": .int(86_401)]))
            #expect(pro.json["message"] == .string("Timeout cannot be greater than 24 hours"))
        }
    }

    @Test("strict mode refuses an envd call that carries the team API key, and the deprecated create")
    func strictMode() async throws {
        try await LocalServer.with({ $0.strict = true }) { s in
            let sb = try await s.create()
            let leaked = try await s.envd(sb, "POST", "/process.Process/List", headers: ["Content-Type": "application/json", "X-API-Key": s.key],
                                          body: Array("{}".utf8))
            #expect(leaked.status == 403)
            #expect(leaked.json["message"]?.stringValue?.contains("X-API-Key") == true)
            #expect(try await s.rpc(sb, "/process.Process/List", .object([:])).status == 200)
            let old = try await s.api("POST", "/sandboxes", json: .object(["templateID": .string("base")]))
            #expect(old.status == 410)
            try await s.kill(sb)
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
            #expect(try await s.stats()["sandboxes_expired"] == .int(1))

            let kept = try await s.create(timeout: 1)
            #expect(try await s.api("POST", "/sandboxes/\(kept.id)/timeout", json: .object(["timeout": .int(30)])).status == 204)
            try await Task.sleep(for: .milliseconds(1500))
            #expect(try await s.api("GET", "/sandboxes/\(kept.id)").status == 200)
            try await s.kill(kept)
        }
    }

    @Test("output streams as it is produced, in chunks of at most 32 KiB")
    func streaming() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create()
            // Streamed, not held to the end: the first chunk comes well before the end frame. A 2 s
            // sleep against a 1 s bound leaves a loaded 2-core machine a second of delivery delay
            // (a 1 s sleep against 0.7 s flaked under CI load at 0.66 s).
            let run = try await s.run(sb, "echo first; sleep 2; echo second")
            let data = run.dataEvents
            try #require(data.count == 2)
            let endFrame = try #require(run.frames.first { $0.json["event"]?["end"] != nil })
            #expect(endFrame.at - data[0].at >= .seconds(1), "the first chunk arrived \(endFrame.at - data[0].at) before the end")
            #expect(run.output("stdout") == "first\nsecond\n")

            let big = try await s.run(sb, "head -c 300000 /dev/zero | tr '\\0' 'x'")
            #expect(big.output("stdout").count == 300_000)
            for f in big.dataEvents {
                let b64 = f.json["event"]?["data"]?["stdout"]?.stringValue ?? ""
                #expect((Data(base64Encoded: b64)?.count ?? 0) <= 32 * 1024)
            }
            try await s.kill(sb)
        }
    }

    @Test("keepalives; on Connect-Timeout-Ms the command is killed and the stream ends with only deadline_exceeded")
    func keepaliveAndDeadline() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create()
            let quiet = try await s.run(sb, "sleep 2.3; echo done", keepalive: 1)
            #expect(quiet.events.filter { $0["keepalive"] != nil }.count >= 1)
            #expect(quiet.output("stdout") == "done\n")

            let late = try await s.run(sb, "echo partial; sleep 10", timeoutMs: 800)
            #expect(late.total < .seconds(5))
            #expect(late.output("stdout") == "partial\n")
            // infra packages/envd/internal/services/process/start.go: the stream returns ctx.Err()
            // when its deadline passes, before any end event.
            #expect(late.end == nil, "no end event after the deadline")
            #expect(late.endOfStream?["error"]?["code"] == .string("deadline_exceeded"))
            var left = -1
            for _ in 0..<40 {
                left = try await s.rpc(sb, "/process.Process/List", .object([:])).json["processes"]?.arrayValue?.count ?? -1
                if left == 0 { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(left == 0, "the command was killed at its deadline")
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
                pid = try await s.rpc(sb, "/process.Process/List", .object([:])).json["processes"]?.arrayValue?.first?["pid"]?.intValue
                if pid == nil { try await Task.sleep(for: .milliseconds(50)) }
            }
            let p = try #require(pid)
            let r = try await s.rpc(sb, "/process.Process/SendSignal", .object(["process": .object(["pid": .int(p)]), "signal": .string("SIGNAL_SIGKILL")]))
            #expect(r.status == 200)
            #expect(r.json == .object([:]))
            let run = try await stream
            #expect(run.pid == p)
            #expect(run.end?["exitCode"] == .int(-1))
            #expect(run.end?["status"] == .string("signal: killed"))
            #expect(run.endOfStream == .object([:]))
            let missing = try await s.rpc(sb, "/process.Process/SendSignal", .object(["process": .object(["pid": .int(999_999)]), "signal": .string("SIGNAL_SIGKILL")]))
            #expect(missing.status == 404)
            #expect(missing.json["code"] == .string("not_found"))
            try await s.kill(sb)
        }
    }

    @Test("a command outlives a client that goes away; Connect attaches to it and replays a recent end")
    func backgroundAndConnect() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create()
            // The client gives up after 1 s; envd keeps the process (start.go: "We do not want the
            // command to be killed if the request context is cancelled").
            let first = try await s.run(sb, "echo one; sleep 2; echo two; exit 7", clientTimeout: .seconds(1))
            #expect(first.transportError != nil)
            let pid = try #require(first.pid)
            let listed = try await s.rpc(sb, "/process.Process/List", .object([:])).json["processes"]?.arrayValue ?? []
            #expect(listed.compactMap { $0["pid"]?.intValue } == [pid])
            let attached = try await s.stream(sb, "/process.Process/Connect", .object(["process": .object(["pid": .int(pid)])]))
            #expect(attached.pid == pid)
            #expect(attached.output("stdout") == "two\n", "a Connect gets the output from then on")
            #expect(attached.end?["exitCode"] == .int(7))
            // Connecting after the end replays it.
            let late = try await s.stream(sb, "/process.Process/Connect", .object(["process": .object(["pid": .int(pid)])]))
            #expect(late.pid == pid)
            #expect(late.end?["exitCode"] == .int(7))
            let unknown = try await s.stream(sb, "/process.Process/Connect", .object(["process": .object(["pid": .int(424_242)])]))
            #expect(unknown.endOfStream?["error"]?["code"] == .string("not_found"))
            try await s.kill(sb)
        }
    }

    @Test("stdin: SendInput and CloseStdin reach a command started with stdin")
    func stdin() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create()
            let message = JSONValue.object(["process": .object(["cmd": .string("/bin/bash"), "args": .array([.string("-c"), .string("tr a-z A-Z")])]),
                                            "stdin": .bool(true), "tag": .string("upper")])
            async let stream = s.stream(sb, "/process.Process/Start", message)
            var pid: Int?
            for _ in 0..<100 where pid == nil {
                pid = try await s.rpc(sb, "/process.Process/List", .object([:])).json["processes"]?.arrayValue?.first?["pid"]?.intValue
                if pid == nil { try await Task.sleep(for: .milliseconds(50)) }
            }
            let input = JSONValue.object(["process": .object(["tag": .string("upper")]),
                                          "input": .object(["stdin": .string(Data("hello\n".utf8).base64EncodedString())])])
            #expect(try await s.rpc(sb, "/process.Process/SendInput", input).status == 200)
            #expect(try await s.rpc(sb, "/process.Process/CloseStdin", .object(["process": .object(["pid": .int(try #require(pid))])])).status == 200)
            let run = try await stream
            #expect(run.output("stdout") == "HELLO\n")
            #expect(run.end?["status"] == .string("exit status 0"))
            try await s.kill(sb)
        }
    }

    @Test("envVars, process envs (which win) and cwd reach the command")
    func environmentAndCwd() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create(envVars: ["A": "sandbox", "B": "sandbox"])
            _ = try await s.envd(sb, "POST", "/files?path=sub/keep", headers: ["Content-Type": "application/octet-stream"], body: [])
            let run = try await s.run(sb, "echo $A $B $HOME $USER $E2B_SANDBOX_ID; pwd", envs: ["B": "process"], cwd: "/home/user/sub")
            #expect(run.output("stdout") == "sandbox process /home/user user \(sb.id)\n/home/user/sub\n")
            let rel = try await s.run(sb, "pwd", cwd: "sub")
            #expect(rel.output("stdout") == "/home/user/sub\n")
            let bad = try await s.run(sb, "pwd", cwd: "/home/user/nope")
            #expect(bad.endOfStream?["error"]?["code"] == .string("invalid_argument"))
            try await s.kill(sb)
        }
    }

    @Test("each sandbox has its own writable filesystem: /tmp and home persist across commands, capped, not shared")
    func ownFilesystem() async throws {
        try await LocalServer.with({ $0.diskBytes = 8 << 20; $0.limits.tmpBytes = 4 << 20 }) { s in
            let a = try await s.create(), b = try await s.create()
            _ = try await s.run(a, "echo kept > /tmp/note; echo home > ~/h")
            #expect(try await s.run(a, "cat /tmp/note ~/h").output("stdout") == "kept\nhome\n")
            #expect(try await s.envd(a, "GET", "/files?path=/tmp/note").text == "kept\n")
            #expect(try await s.upload(a, path: "/tmp/up/x.txt", data: Array("up".utf8)).status == 200)
            #expect(try await s.run(a, "cat /tmp/up/x.txt").output("stdout") == "up")
            #expect(try await s.run(b, "cat /tmp/note").end?["exitCode"] == .int(1), "another sandbox has its own /tmp")
            // The root is read-only; writable storage is capped (a 4 MiB /tmp, an 8 MiB home).
            #expect(try await s.run(a, "touch /opt-file").end?["exitCode"] == .int(1))
            #expect(try await s.run(a, "touch /dev/file").end?["exitCode"] == .int(1), "bubblewrap's /dev tmpfs is read-only")
            #expect(try await s.run(a, "head -c 20000000 /dev/zero > /dev/shm/big").end?["exitCode"] == .int(1), "/dev/shm is capped")
            #expect(try await s.upload(a, path: "/usr/evil", data: [1]).status != 200)
            let fill = try await s.run(a, "dd if=/dev/zero of=/tmp/fill bs=1M count=64")
            #expect(fill.end?["exitCode"] == .int(1))
            #expect(fill.output("stderr").contains("No space left"))
            let big = try await s.envd(a, "POST", "/files?path=/home/user/big", headers: ["Content-Type": "application/octet-stream"],
                                       body: [UInt8](repeating: 7, count: 16 << 20))
            #expect(big.status == 507, "\(big.text)")
            try await s.kill(a)
            try await s.kill(b)
        }
    }

    @Test("file operations stay inside the sandbox even through links it planted")
    func linksStayInside() async throws {
        let marker = "/tmp/e2b-local-escape-\(UUID().uuidString)"
        try await LocalServer.with { s in
            let sb = try await s.create()
            _ = try await s.run(sb, "ln -s /etc/passwd leak; ln -s /tmp /home/user/hosttmp; ln -s / /tmp/root")
            // The sandbox's own /etc/passwd (its user), never the host's.
            let leak = try await s.envd(sb, "GET", "/files?path=leak")
            #expect(leak.status == 200)
            #expect(leak.text.contains("user:x:1000:1000"))
            #expect(!leak.text.contains("daemon:"), "the host's passwd must not come back")
            // Writes through a link land in the sandbox's tmpfs, not the host's /tmp.
            #expect(try await s.upload(sb, path: "hosttmp/" + URL(fileURLWithPath: marker).lastPathComponent, data: [1]).status == 200)
            #expect(try await s.upload(sb, path: "/tmp/root" + marker + "-2", data: [1]).status == 200)
            #expect(!FileManager.default.fileExists(atPath: marker))
            #expect(!FileManager.default.fileExists(atPath: marker + "-2"))
            try await s.kill(sb)
        }
    }

    @Test("a kill returns only once nothing of the sandbox runs, whatever its scripts did to survive")
    func killIsVerified() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create()
            _ = try await s.run(sb, "setsid sh -c 'trap \"\" TERM HUP; sleep 300' >/dev/null 2>&1 < /dev/null & "
                + "nohup sleep 301 >/dev/null 2>&1 & (sleep 302 >/dev/null 2>&1 &) ; echo started")
            let host = try await s.request("GET", "/_local/sandboxes/\(sb.id)").json
            let ns = try #require(host["pidNamespace"]?.stringValue)
            #expect(hostProcesses(inPidNamespace: ns).count >= 5, "bubblewrap's reaper, the agent and three survivors")
            if let uid = host["hostUID"]?.intValue { #expect(hostProcesses(uid: uid_t(uid)).count >= 4) }
            try await s.kill(sb)
            #expect(hostProcesses(inPidNamespace: ns) == [], "processes of the sandbox outlived its kill")
            if let uid = host["hostUID"]?.intValue { #expect(hostProcesses(uid: uid_t(uid)) == []) }
        }
    }

    @Test("network: allow_internet_access false or any denyOut is an empty network namespace; fields validated like E2B")
    func network() async throws {
        try await LocalServer.with { s in
            let ifaces = "python3 -c 'import socket; print(len(socket.if_nameindex()))'"
            let closed = try await s.create(extra: ["allow_internet_access": .bool(false)])
            #expect(try await s.run(closed, ifaces).output("stdout") == "1\n", "only lo")
            let denied = try await s.create(extra: ["network": .object(["allowOut": .array([.string("api.posthog.com")]),
                                                                        "denyOut": .array([.string("0.0.0.0/0")])])])
            #expect(try await s.run(denied, ifaces).output("stdout") == "1\n")
            let info = try await s.api("GET", "/sandboxes/\(denied.id)").json
            #expect(info["network"]?["allowOut"] == .array([.string("api.posthog.com")]))
            let open = try await s.create()
            #expect(try await s.run(open, ifaces).output("stdout") != "1\n", "the host's network")
            // infra sandbox_create.go validateEgressRules / validateNetworkRules.
            func refused(_ network: JSONValue) async throws -> JSONValue {
                let r = try await s.api("POST", "/v2/sandboxes", json: .object(["templateID": .string("base"), "network": network]))
                #expect(r.status == 400)
                return r.json["message"] ?? .null
            }
            #expect(try await refused(.object(["allowOut": .array([.string("example.com")])]))
                == .string("When specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' in deny out to block all other traffic."))
            #expect(try await refused(.object(["denyOut": .array([.string("example.com")])])) == .string("invalid denied CIDR example.com"))
            #expect(try await refused(.object(["denyOut": .array([.string("0.0.0.0")])])) == .string("invalid denied CIDR 0.0.0.0"))
            #expect(try await refused(.object(["rules": .object(["*.example.com": .array([])])]))
                == .string("Rule domain \"*.example.com\" is not a valid domain name."))
            #expect(try await refused(.object(["rules": .object(["api.example.com": .array([.object(["transform": .object(["headers": .object(["Bad Name": .string("x")])])])])])]))
                == .string("Header name \"Bad Name\" in rule for domain \"api.example.com\" must contain only valid HTTP token characters."))
            for sb in [closed, denied, open] { try await s.kill(sb) }
        }
    }

    /// E2B SDK 2.63 `api/client/api/sandboxes/post_v2_sandboxes.py` sends the header (its answers
    /// include 409 and 422) and `retry.py` resolve_idempotency_key allows 1–255 of [a-z0-9-].
    @Test("Idempotency-Key: a retried create gets the same sandbox; another body or a bad key is refused")
    func idempotency() async throws {
        try await LocalServer.with { s in
            func create(_ key: String, timeout: Int = 60) async throws -> HTTPResponse {
                try await s.request("POST", "/v2/sandboxes", headers: ["X-API-Key": s.key, "Content-Type": "application/json", "Idempotency-Key": key],
                                    body: Array("{\"templateID\":\"base\",\"timeout\":\(timeout)}".utf8))
            }
            let first = try await create("run-1")
            let again = try await create("run-1")
            #expect(first.status == 201 && again.status == 201)
            #expect(first.json["sandboxID"] == again.json["sandboxID"])
            #expect(try await s.stats()["sandboxes_created"] == .int(1))
            #expect(try await create("run-1", timeout: 30).status == 422)
            #expect(try await create("Not_Valid").status == 400)
            let other = try await create("run-2")
            #expect(other.json["sandboxID"] != first.json["sandboxID"])
            for r in [first, other] { try await s.kill(Sandbox(id: r.json["sandboxID"]!.stringValue!, token: nil)) }
        }
    }

    /// The SDK 2.63 model `api/client/models/sandbox_metric.py` needs every field below.
    @Test("metrics measure the sandbox: CPU of a busy loop, memory, its storage")
    func metrics() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create()
            _ = try await s.run(sb, "dd if=/dev/urandom of=/tmp/blob bs=1M count=8 2>/dev/null; "
                + "python3 -c 'import time; t = time.time()\nwhile time.time() - t < 1.5: pass'")
            let samples = try await s.api("GET", "/sandboxes/\(sb.id)/metrics").json.arrayValue ?? []
            let last = try #require(samples.last)
            for key in ["timestamp", "timestampUnix", "cpuCount", "cpuUsedPct", "memUsed", "memTotal", "memCache", "diskUsed", "diskTotal"] {
                #expect(last[key] != nil, "a sample lacks \(key)")
            }
            #expect((last["diskUsed"]?.intValue ?? 0) >= 8 << 20)
            #expect(last["diskTotal"]?.intValue == (256 + 64 + 16) << 20, "home, /tmp and /dev/shm")
            #expect((last["memUsed"]?.intValue ?? 0) > 1 << 20, "the agent alone holds megabytes")
            let cpu: Double = { if case .double(let d)? = last["cpuUsedPct"] { return d }; return Double(last["cpuUsedPct"]?.intValue ?? 0) }()
            #expect(cpu > 10, "a second and a half of busy loop shows: \(cpu)%")
            try await s.kill(sb)
        }
    }

    /// infra packages/envd/internal/services/filesystem/{dir,stat,move,remove}.go: MakeDir on an
    /// existing directory is already_exists, a missing path not_found; EntryInfo as utils.go builds it.
    @Test("filesystem service: ListDir, Stat, MakeDir, Move, Remove and a watcher, with envd's codes")
    func filesystem() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create()
            #expect(try await s.upload(sb, path: "d/a.txt", data: Array("aaa".utf8)).status == 200)
            let list = try await s.rpc(sb, "/filesystem.Filesystem/ListDir", .object(["path": .string("/home/user/d")])).json
            let entry = try #require(list["entries"]?.arrayValue?.first)
            #expect(entry["name"] == .string("a.txt"))
            #expect(entry["type"] == .string("FILE_TYPE_FILE"))
            #expect(entry["size"] == .string("3"))
            #expect(entry["permissions"] == .string("-rw-r--r--"))
            #expect(entry["owner"] == .string("user"))
            let made = try await s.rpc(sb, "/filesystem.Filesystem/MakeDir", .object(["path": .string("/tmp/x/y")]))
            #expect(made.json["entry"]?["type"] == .string("FILE_TYPE_DIRECTORY"))
            let twice = try await s.rpc(sb, "/filesystem.Filesystem/MakeDir", .object(["path": .string("/tmp/x/y")]))
            #expect(twice.status == 409)
            #expect(twice.json["code"] == .string("already_exists"))
            let watcher = try await s.rpc(sb, "/filesystem.Filesystem/CreateWatcher", .object(["path": .string("/tmp/x")])).json["watcherId"]
            let moved = try await s.rpc(sb, "/filesystem.Filesystem/Move", .object(["source": .string("d/a.txt"), "destination": .string("/tmp/x/b.txt")]))
            #expect(moved.json["entry"]?["path"] == .string("/tmp/x/b.txt"))
            let events = try await s.rpc(sb, "/filesystem.Filesystem/GetWatcherEvents", .object(["watcherId": watcher ?? .null])).json
            #expect(events["events"] == .array([.object(["name": .string("b.txt"), "type": .string("EVENT_TYPE_CREATE")])]))
            #expect(try await s.rpc(sb, "/filesystem.Filesystem/Stat", .object(["path": .string("d/a.txt")])).status == 404)
            #expect(try await s.rpc(sb, "/filesystem.Filesystem/Remove", .object(["path": .string("/tmp/x")])).status == 200)
            #expect(try await s.rpc(sb, "/filesystem.Filesystem/Stat", .object(["path": .string("/tmp/x")])).json["code"] == .string("not_found"))
            #expect(try await s.rpc(sb, "/filesystem.Filesystem/ListDir", .object(["path": .string("/home/user/d/nope")])).status == 404)
            try await s.kill(sb)
        }
    }

    @Test("list: both routes, metadata filter, pagination")
    func list() async throws {
        try await LocalServer.with { s in
            let a = try await s.create(metadata: ["team": "red", "run": "1"])
            let b = try await s.create(metadata: ["team": "blue"])
            let all = try await s.api("GET", "/v2/sandboxes")
            #expect(all.json.arrayValue?.compactMap { $0["sandboxID"]?.stringValue } == [b.id, a.id], "newest first")
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
            let third = try await s.api("POST", "/v2/sandboxes", json: .object(["templateID": .string("base")]))
            #expect(third.status == 429)
            #expect(third.json["message"]?.stringValue?.contains("concurrent") == true)
            try await s.kill(a)
            let c = try await s.create()
            try await s.kill(b)
            try await s.kill(c)
        }
    }

    @Test("graceful shutdown kills running commands and every sandbox")
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

    @Test("a script that kills the sandbox's agent ends the sandbox")
    func agentKilled() async throws {
        try await LocalServer.with { s in
            let sb = try await s.create()
            // (After the start is answered: a command that kills the agent at once can beat its reply.)
            let run = try await s.run(sb, "sleep 0.3; kill -9 2; sleep 10")
            #expect(run.endOfStream?["error"]?["code"] == .string("unavailable"),
                    "\(run.frames.map { "\($0.flag) \($0.json.jsonText())" }) \(run.transportError?.message ?? "") \(run.status)")
            var live = 1
            for _ in 0..<40 where live != 0 {
                live = try await s.stats()["live_sandboxes"]?.intValue ?? -1
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(live == 0)
            #expect(try await s.stats()["sandboxes_died"] == .int(1))
        }
    }
}
