import Foundation
import Testing
@testable import SandboxRunner

/// `sandbox-runner e2b-local` on loopback, started fresh for a test with the given faults.
final class E2BLocalProcess {
    let child: ChildProcess
    let url: String
    static let key = "e2b_local_test_key"

    init(faults: [String] = [], extra: [String] = []) throws {
        child = try ChildProcess.start(executable: Repo.binary.path,
                                       arguments: ["e2b-local", "--port", "0"] + faults.flatMap { ["--fault", $0] } + extra,
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

    /// The server's own count of sandboxes still alive.
    func liveSandboxes() throws -> Int {
        let r = try CurlHTTPClient.request(url: url + "/_local/stats")
        return JSONValue.parse(Data(r.body))?["live_sandboxes"]?.intValue ?? -1
    }

    func requests(_ route: String) throws -> Int {
        let r = try CurlHTTPClient.request(url: url + "/_local/stats")
        return JSONValue.parse(Data(r.body))?["requests"]?[route]?.intValue ?? 0
    }
}

@Suite("E2B backend against e2b-local", .serialized, .timeLimit(.minutes(3)))
struct E2BBackendTests {
    func run(_ script: String, server: E2BLocalProcess, config: E2BConfiguration? = nil, timeout: Duration = .seconds(30),
             environment: [String: String] = [:]) async throws -> RunResult {
        let backend = E2BBackend(config: config ?? server.config())
        let executor = Executor(catalog: Repo.catalog(), assembler: try BundleAssembler(sandboxDirectory: Repo.locator.sandboxDirectory),
                                backend: backend, environment: environment)
        defer { backend.shutdown() }
        return await executor.run(RunRequest(source: .script(source: script, label: "t.py"), timeout: timeout, network: .host))
    }

    @Test func runsAndLeavesNothingAlive() async throws {
        let server = try E2BLocalProcess()
        let secret = "phx_e2btest_\(UUID().uuidString.prefix(8))"
        let r = try await run("import os, json; print(json.dumps({'k': os.environ['POSTHOG_PERSONAL_API_KEY'], 'cwd': os.getcwd()}))",
                              server: server, environment: ["POSTHOG_PERSONAL_API_KEY": secret])
        #expect(r.success, "\(r.error ?? "") \(r.stderr)")
        #expect(r.backend == "e2b")
        #expect(r.data?["k"] == .string("[REDACTED]"))
        #expect(r.data?["cwd"]?.stringValue?.hasPrefix("/home/user/run-") == true)
        #expect(try server.liveSandboxes() == 0)
        #expect(try server.requests("POST /sandboxes") + server.requests("POST /v2/sandboxes") == 1)
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
        let clock = ContinuousClock()
        let start = clock.now
        let r = try await run("import time; print('tick', flush=True); time.sleep(60)", server: server, timeout: .seconds(2))
        #expect(r.timedOut)
        #expect(r.exitStatus == 124)
        #expect(r.output == "tick\n")
        #expect(clock.now - start < .seconds(15))
        #expect(try server.liveSandboxes() == 0)
    }

    @Test func createIsRetriedOn429And5xx() async throws {
        let server = try E2BLocalProcess(faults: ["create-429:count=2:retry_after=0", "create-503:count=1"])
        let r = try await run("print('ok')", server: server)
        #expect(r.success, "\(r.error ?? "")")
        #expect(try server.requests("POST /sandboxes") == 4)
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

    @Test func failedUploadStillKills() async throws {
        let server = try E2BLocalProcess(faults: ["upload-502:count=1"])
        let r = try await run("print('ok')", server: server)
        #expect(!r.success)
        #expect(r.exitStatus == 69)
        #expect(try server.requests("DELETE /sandboxes/{id}") == 1)
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

    @Test func warmPoolSkipsCreateAndUpload() async throws {
        let server = try E2BLocalProcess()
        var config = server.config()
        config.warmPoolSize = 1
        let backend = E2BBackend(config: config)
        let executor = Executor(catalog: Repo.catalog(), assembler: try BundleAssembler(sandboxDirectory: Repo.locator.sandboxDirectory),
                                backend: backend, environment: [:])
        let request = { RunRequest(source: .template(name: "echo_vars", inputs: ["who": .text("w")]), network: .host) }
        let cold = await executor.run(request())
        let coldTrips = backend.roundTripsOfLastRun
        let warm = await executor.run(request())
        let warmTrips = backend.roundTripsOfLastRun
        #expect(cold.success && warm.success, "\(cold.error ?? "") \(warm.error ?? "")")
        #expect(coldTrips <= 4, "cold run made \(coldTrips) round trips")
        #expect(warmTrips <= 2, "warm run made \(warmTrips) round trips")
        #expect(try server.requests("POST /sandboxes") == 1)
        #expect(try server.requests("POST /files") == 1)
        #expect(try server.liveSandboxes() == 1)
        backend.shutdown()
        #expect(try server.liveSandboxes() == 0)
    }

    @Test func cancellationKillsTheSandbox() async throws {
        let server = try E2BLocalProcess()
        let backend = E2BBackend(config: server.config())
        let executor = Executor(catalog: Repo.catalog(), assembler: try BundleAssembler(sandboxDirectory: Repo.locator.sandboxDirectory),
                                backend: backend, environment: [:])
        let clock = ContinuousClock()
        let start = clock.now
        let task = Task {
            await executor.run(RunRequest(source: .script(source: "import time; time.sleep(60)", label: "s.py"), timeout: .seconds(60)))
        }
        try await Task.sleep(for: .seconds(1.5))
        task.cancel()
        let r = await task.value
        #expect(!r.success)
        #expect(clock.now - start < .seconds(15))
        #expect(try server.liveSandboxes() == 0)
    }
}
