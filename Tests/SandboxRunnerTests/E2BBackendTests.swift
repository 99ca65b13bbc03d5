import Foundation
import Testing
@testable import SandboxRunner

/// `sandbox-runner e2b-local` on loopback, started fresh for a test with the given faults. Strict
/// by default: an envd call carrying the team API key, or the deprecated create, is refused.
final class E2BLocalProcess {
    let child: ChildProcess
    let url: String
    static let key = "e2b_local_test_key"

    init(faults: [String] = [], extra: [String] = [], strict: Bool = true) throws {
        child = try ChildProcess.start(executable: Repo.binary.path,
                                       arguments: ["e2b-local", "--port", "0"] + (strict ? ["--strict"] : []) + faults.flatMap { ["--fault", $0] } + extra,
                                       environment: ["PATH": "/usr/bin:/bin", "E2B_API_KEY": Self.key, "HOME": NSTemporaryDirectory()])
        let deadline = ContinuousClock.now + .seconds(30)
        var found: String?
        while found == nil && ContinuousClock.now < deadline && child.isRunning {
            if let line = child.stdout.firstLine(containing: "listening on "), let r = line.range(of: "http://") {
                found = String(line[r.lowerBound...]).trimmingCharacters(in: .whitespaces)
            } else {
                usleep(10_000)
            }
        }
        guard let found else { throw RunnerError(.unavailable, "e2b-local did not start: \(child.stderr.text)") }
        url = found
    }

    deinit { child.stop(grace: .seconds(5)) }

    func config(key: String = E2BLocalProcess.key) -> E2BConfiguration {
        var c = E2BConfiguration(apiURL: url, sandboxURL: url, apiKey: key)
        c.baseBackoff = .milliseconds(20)
        c.maxBackoff = .milliseconds(200)
        return c
    }

    var stats: JSONValue { (try? CurlHTTPClient.request(url: url + "/_local/stats")).flatMap { JSONValue.parse(Data($0.body)) } ?? .null }

    /// The server's own count of sandboxes still alive.
    func liveSandboxes() throws -> Int { stats["live_sandboxes"]?.intValue ?? -1 }

    func requests(_ route: String) throws -> Int { stats["requests"]?[route]?.intValue ?? 0 }
}

/// Output chunks gathered from a callback thread.
final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var bytes: [Int32: [UInt8]] = [:]
    func add(_ fd: Int32, _ b: [UInt8]) { lock.lock(); bytes[fd, default: []] += b; lock.unlock() }
    func text(_ fd: Int32) -> String { lock.lock(); defer { lock.unlock() }; return String(decoding: bytes[fd] ?? [], as: UTF8.self) }
}

@Suite("E2B backend against e2b-local", .serialized, .timeLimit(.minutes(3)))
struct E2BBackendTests {
    func executor(_ backend: E2BBackend, environment: [String: String] = [:]) throws -> Executor {
        Executor(catalog: Repo.catalog(), assembler: try BundleAssembler(sandboxDirectory: Repo.locator.sandboxDirectory),
                 backend: backend, environment: environment)
    }

    func run(_ script: String, server: E2BLocalProcess, config: E2BConfiguration? = nil, timeout: Duration = .seconds(30),
             network: NetworkPolicy = .host, environment: [String: String] = [:]) async throws -> RunResult {
        let backend = E2BBackend(config: config ?? server.config())
        defer { backend.shutdown() }
        return await try executor(backend, environment: environment)
            .run(RunRequest(source: .script(source: script, label: "t.py"), timeout: timeout, network: network))
    }

    /// The attack: the team API key travels with envd calls, where E2B's proxy hands it to the
    /// sandbox (a script with sudo reads envd's traffic). e2b-local counts envd calls carrying it
    /// and, in strict mode, refuses them. Before this change every call carried it.
    @Test func theAPIKeyNeverReachesEnvd() async throws {
        let server = try E2BLocalProcess()
        let secret = "phx_e2btest_\(UUID().uuidString.prefix(8))"
        let backend = E2BBackend(config: server.config())
        let r = await try executor(backend, environment: ["POSTHOG_PERSONAL_API_KEY": secret]).run(RunRequest(
            source: .script(source: "import os, json; print(json.dumps({'k': os.environ['POSTHOG_PERSONAL_API_KEY'], 'cwd': os.getcwd(), "
                + "'bundle': [k for k in os.environ if 'BUNDLE' in k]}))", label: "t.py"), network: .host))
        #expect(r.success, "\(r.error ?? "") \(r.stderr)")
        #expect(r.backend == "e2b")
        #expect(r.data?["k"] == .string("[REDACTED]"))
        #expect(r.data?["cwd"]?.stringValue?.hasPrefix("/home/user/run-") == true)
        #expect(r.data?["bundle"] == .array([]), "the inline bundle is gone from the script's environment")
        #expect(backend.roundTripsOfLastRun == 2, "create and Start only, before the result")
        backend.shutdown()
        #expect(server.stats["envd_calls_with_api_key"] == .int(0))
        #expect(try server.requests("POST /v2/sandboxes") == 1)
        #expect(try server.requests("POST /files") == 0, "the bundle travels inside Start")
        #expect(try server.requests("DELETE /sandboxes/{id}") == 1)
        #expect(try server.liveSandboxes() == 0)
    }

    @Test func theKillComesAfterTheResult() async throws {
        // Every kill waits 3 s at the server: the result must not.
        let server = try E2BLocalProcess(faults: ["latency:ms=3000:count=*:path=/sandboxes/"])
        let backend = E2BBackend(config: server.config())
        let r = await try executor(backend).run(RunRequest(source: .script(source: "print('ok')", label: "t.py")))
        #expect(r.success, "\(r.error ?? "")")
        #expect(try server.liveSandboxes() == 1, "the result came back before the kill finished")
        #expect(backend.shutdown().isEmpty)
        #expect(try server.liveSandboxes() == 0, "shutdown waits for the pending kill")
    }

    @Test func outputIsHandedOnAsItStreams() async throws {
        let server = try E2BLocalProcess()
        let backend = E2BBackend(config: server.config())
        defer { backend.shutdown() }
        let seen = Collected()
        var request = RunRequest(source: .script(source: "import sys\nprint('out')\nsys.stderr.write('err\\n')", label: "t.py"))
        request.onOutput = { fd, chunk in seen.add(fd, Array(chunk)) }
        let r = await try executor(backend).run(request)
        #expect(r.success, "\(r.error ?? "")")
        #expect(seen.text(1) == "out\n" && seen.text(2) == "err\n")
    }

    @Test func nonZeroExitIsAResult() async throws {
        let server = try E2BLocalProcess()
        let r = try await run("import sys; print('partial'); sys.stderr.write('bad\\n'); sys.exit(4)", server: server)
        #expect(!r.success)
        #expect(r.exitCode == 4)
        #expect(r.output == "partial\n")
        #expect(r.stderr == "bad\n")
        #expect(try server.liveSandboxes() == 0)
    }

    @Test func timeoutKillsTheSandbox() async throws {
        let server = try E2BLocalProcess()
        let r = try await run("import time; print('tick', flush=True); time.sleep(60)", server: server, timeout: .seconds(2))
        #expect(r.timedOut)
        #expect(r.exitStatus == 124)
        #expect(r.output == "tick\n")
        #expect(try server.liveSandboxes() == 0)
    }

    @Test func createIsRetriedOn429And5xx() async throws {
        let server = try E2BLocalProcess(faults: ["create-429:count=2:retry_after=0", "create-503:count=1"])
        let r = try await run("print('ok')", server: server)
        #expect(r.success, "\(r.error ?? "")")
        #expect(try server.requests("POST /v2/sandboxes") == 4)
        #expect(try server.liveSandboxes() == 0)
    }

    /// A create whose 201 is lost on the way back: retried with the same Idempotency-Key, it gets
    /// the sandbox the first attempt made instead of leaving that one orphaned until its timeout.
    @Test func aLostCreateAnswerLeavesExactlyOneSandbox() async throws {
        let server = try E2BLocalProcess(faults: ["create-drop"], strict: false)
        let r = try await run("print('ok')", server: server)
        #expect(r.success, "\(r.error ?? "")")
        #expect(server.stats["sandboxes_created"] == .int(1))
        #expect(try server.liveSandboxes() == 0)
    }

    @Test func createGivingUpIsAClearError() async throws {
        let server = try E2BLocalProcess(faults: ["create-429:count=*:retry_after=0"])
        let r = try await run("print('ok')", server: server)
        #expect(!r.success)
        #expect(r.exitStatus == 69)
        #expect(r.error?.contains("429") == true)
        #expect(try server.liveSandboxes() == 0)
    }

    @Test func aBundleTooBigToInlineIsUploadedAndAFailedUploadStillKills() async throws {
        let server = try E2BLocalProcess(faults: ["upload-502:count=1"])
        var config = server.config()
        config.inlineBundleLimit = 16
        let failed = try await run("print('ok')", server: server, config: config)
        #expect(!failed.success)
        #expect(failed.exitStatus == 69)
        #expect(try server.requests("DELETE /sandboxes/{id}") == 1)
        let uploaded = try await run("print('ok')", server: server, config: config)
        #expect(uploaded.success, "\(uploaded.error ?? "")")
        #expect(try server.requests("POST /files") == 2)
        #expect(server.stats["envd_calls_with_api_key"] == .int(0))
        #expect(try server.liveSandboxes() == 0)
    }

    @Test(arguments: ["close", "abort"])
    func streamCutMidRun(mode: String) async throws {
        let server = try E2BLocalProcess(faults: ["stream-cut:after=1:mode=\(mode)"])
        let r = try await run("import time\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(0.2)", server: server)
        #expect(!r.success)
        #expect(r.exitStatus == 69)
        #expect(r.error?.contains("stream") == true || r.error?.contains("reach") == true, "\(r.error ?? "")")
        #expect(try server.liveSandboxes() == 0)
    }

    @Test func badKeyIsActionable() async throws {
        let server = try E2BLocalProcess()
        let r = try await run("print('ok')", server: server, config: server.config(key: "e2b_wrong_key_123"))
        #expect(!r.success)
        #expect(r.exitStatus == 69)
        #expect(r.error?.contains("E2B_API_KEY") == true)
        #expect(r.error?.contains("e2b_wrong_key_123") == false)
    }

    @Test func aColdRunIsTwoRoundTripsAndAWarmOneIsOne() async throws {
        // The return to the pool extends the sandbox's lifetime (the idle TTL is longer than the
        // plan lets a sandbox live), and that extend is slow: the next run starts while its
        // sandbox is still on the way back.
        let server = try E2BLocalProcess(faults: ["latency:ms=400:count=*:path=/sandboxes/"])
        var config = server.config()
        config.warmPoolSize = 1
        config.maxSandboxTimeout = .seconds(150)
        config.warmIdleTTL = .seconds(150)
        let backend = E2BBackend(config: config)
        let executor = try executor(backend)
        let request = { RunRequest(source: .template(name: "echo_vars", inputs: ["who": .text("w")]), timeout: .seconds(30), network: .host) }
        let cold = await executor.run(request())
        let coldTrips = backend.roundTripsOfLastRun
        #expect(cold.success, "\(cold.error ?? "")")
        #expect(coldTrips == 2, "cold run made \(coldTrips) round trips before its result")
        // Each run starts right after the last returned, while its sandbox is still on the way
        // back to the pool (the return runs on a cleanup thread): it must wait for it, not create
        // another (CI caught a second create once, when a fast return lost that race).
        for i in 1...5 {
            let warm = await executor.run(request())
            let warmTrips = backend.roundTripsOfLastRun
            #expect(warm.success, "\(warm.error ?? "")")
            #expect(warmTrips == 1, "warm run \(i) made \(warmTrips) round trips before its result")
        }
        #expect(try server.requests("POST /v2/sandboxes") == 1)
        #expect(try server.requests("POST /process.Process/Start") == 6)
        #expect(try server.liveSandboxes() == 1)
        backend.shutdown()
        #expect(try server.liveSandboxes() == 0)
    }

    @Test func cancellationKillsTheSandbox() async throws {
        let server = try E2BLocalProcess()
        let backend = E2BBackend(config: server.config())
        let executor = try executor(backend)
        let task = Task {
            await executor.run(RunRequest(source: .script(source: "import time; time.sleep(60)", label: "s.py"), timeout: .seconds(60)))
        }
        // Cancel only once the sandbox exists and the script runs in it: a cancel before create
        // would pass this test without ever killing anything.
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline, (try server.liveSandboxes() != 1 || server.requests("POST /process.Process/Start") != 1) {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(try server.liveSandboxes() == 1, "the sandbox never came up")
        #expect(try server.requests("POST /process.Process/Start") == 1)
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        let r = await task.value
        #expect(!r.success)
        #expect(r.errorKind == .cancelled)
        backend.shutdown()
        #expect(try server.liveSandboxes() == 0)
    }

    /// E2B answers 400 "Timeout cannot be greater than 1 hours" to a lifetime over the plan's; the
    /// run is refused before that, with nothing created.
    @Test func aRunTooLongForThePlanIsRefusedBeforeCreate() async throws {
        let server = try E2BLocalProcess()
        var config = server.config()
        config.maxSandboxTimeout = .seconds(600)
        let r = try await run("print('never')", server: server, config: config, timeout: .seconds(600))
        #expect(!r.success)
        #expect(r.exitStatus == 64)
        #expect(r.error?.contains("E2B_MAX_SANDBOX_TIMEOUT") == true)
        #expect(server.stats["total"] == .int(0), "nothing reached E2B")
        let fits = try await run("print('fits')", server: server, config: config, timeout: .seconds(585))
        #expect(fits.success, "\(fits.error ?? "")")
        #expect(try server.liveSandboxes() == 0)
    }

    @Test(arguments: [(NetworkPolicy.none, "1"), (NetworkPolicy.host, "more")])
    func theNetworkPolicyReachesCreate(policy: NetworkPolicy, interfaces: String) async throws {
        let server = try E2BLocalProcess()
        let r = try await run("import socket; n = len(socket.if_nameindex()); print(n if n == 1 else 'more')", server: server, network: policy)
        #expect(r.success, "\(r.error ?? "")")
        #expect(r.output == interfaces + "\n")
        #expect(r.network == policy.rawValue)
    }

    // MARK: the CLI

    @Test func demoAgainstACloudE2BIsRefused() throws {
        let cloud = try runCLI(["exec", "-", "--backend", "e2b", "--demo", "--json"],
                               environment: ["E2B_API_KEY": "e2b_0000", "E2B_API_URL": "https://api.e2b.app", "SANDBOX_RUNNER_HOME": Repo.root.path])
        #expect(cloud.status == 64)
        #expect(cloud.json?["error"]?.stringValue?.contains("cannot reach") == true, "\(cloud.stdout)")
        #expect(cloud.json?["errorKind"] == .string("badInput"))
    }

    @Test func demoAgainstE2BLocalWorks() throws {
        // posthog-local is on this machine's loopback, which E2B (and so e2b-local) refuses
        // unless its operator makes an exception; the key is injected by the sandbox's egress.
        let server = try E2BLocalProcess(extra: ["--allow-internal-egress", "127.0.0.1"])
        let script = NSTemporaryDirectory() + "demo-\(UUID().uuidString).py"
        try """
        import os
        from posthog_driver import PostHogClient
        assert 'POSTHOG_PERSONAL_API_KEY' not in os.environ
        with PostHogClient() as client:
            print(client.get_project_info()['id'])
        """.write(toFile: script, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: script) }
        let r = try runCLI(["exec", script, "--backend", "e2b", "--demo", "--json"],
                           environment: ["E2B_API_KEY": E2BLocalProcess.key, "E2B_API_URL": server.url, "SANDBOX_RUNNER_HOME": Repo.root.path],
                           timeout: .seconds(180))
        #expect(r.json?["success"] == .bool(true), "\(r.stdout) \(r.stderr)")
        #expect(r.json?["output"] == .string("1\n"), "the sandbox reached posthog-local on this machine's loopback")
        #expect(r.json?["network"] == .string("posthog"))
        #expect(try server.liveSandboxes() == 0, "the CLI waited for the kill before it exited")
    }

    @Test func theCLIRefusesARunTooLongForThePlan() throws {
        let server = try E2BLocalProcess()
        let r = try runCLI(["exec", "-", "--backend", "e2b", "--timeout", "3600", "--json"],
                           environment: ["E2B_API_KEY": E2BLocalProcess.key, "E2B_API_URL": server.url])
        #expect(r.status == 64)
        #expect(r.json?["error"]?.stringValue?.contains("at most 3585 s") == true, "\(r.stdout)")
        #expect(server.stats["total"] == .int(0))
    }
}
