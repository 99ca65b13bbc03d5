import Foundation
import Testing
@testable import SandboxRunner
#if canImport(Glibc)
import Glibc
#endif

/// The real jail (bubblewrap, rlimits, cgroups where usable) against hostile scripts.
@Suite("Local jail", .serialized, .timeLimit(.minutes(3)))
struct LocalJailTests {
    func run(_ script: String, timeout: Duration = .seconds(20), limits: JailLimits = JailLimits(),
             environment: [String: String] = [:], network: NetworkPolicy = .none) async throws -> RunResult {
        let executor = try Repo.executor(limits: limits, environment: environment)
        return await executor.run(RunRequest(source: .script(source: script, label: "test.py"), timeout: timeout, network: network))
    }

    @Test func printsAndSucceeds() async throws {
        let r = try await run("import json; print(json.dumps({'answer': 42}))")
        #expect(r.success)
        #expect(r.exitCode == 0)
        #expect(r.data?["answer"] == .int(42))
        #expect(r.isolation == "bubblewrap")
        #expect(r.network == "none")
    }

    @Test func failingScriptIsAResult() async throws {
        let r = try await run("import sys; print('partial'); sys.exit(3)")
        #expect(!r.success)
        #expect(r.exitCode == 3)
        #expect(r.exitStatus == 1)
        #expect(r.output == "partial\n")
        #expect(r.error?.contains("status 3") == true)
    }

    @Test func timeoutKillsTheTreeAndKeepsPartialOutput() async throws {
        let r = try await run("""
            import os, time, sys
            print(os.readlink('/proc/self/ns/pid'), flush=True)
            if os.fork() == 0:
                os.setsid()
                time.sleep(300)
            time.sleep(300)
            """, timeout: .seconds(2))
        #expect(!r.success)
        #expect(r.timedOut)
        #expect(r.exitStatus == 124)
        let ns = r.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(ns.hasPrefix("pid:["), "partial output kept: \(r.output)")
        // Nothing of the run survives it, the forked and setsid'd child included: checked at once.
        let left = Processes.live { $0.pidNamespace == ns }
        defer { for p in left { kill(p.pid, SIGKILL) } }
        #expect(left.isEmpty, "processes left: \(left.map(\.summary))")
    }

    @Test func forkBombIsContained() async throws {
        var limits = JailLimits()
        limits.processes = 32
        let r = try await run("""
            import os, sys, time
            n = 0
            for _ in range(10000):
                try:
                    pid = os.fork()
                except OSError:
                    break
                if pid == 0:
                    time.sleep(30)
                    os._exit(0)
                n += 1
            print(n)
            sys.stdout.flush()
            os._exit(0)
            """, timeout: .seconds(20), limits: limits)
        #expect(r.success)
        let n = Int(r.output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        #expect(n >= 1 && n < 32, "forked \(n) processes")
    }

    @Test(.enabled(if: LocalJail.cgroupsUnavailableReason == nil,
                   "skipped because cgroups are unavailable here: \(LocalJail.cgroupsUnavailableReason ?? "")"))
    func cgroupsByDefaultContainForksAndAreRemoved() async throws {
        var limits = JailLimits()
        #expect(limits.useCgroups || ProcessInfo.processInfo.environment["SANDBOX_RUNNER_CGROUPS"] == "0")
        limits.useCgroups = true
        limits.processes = 16
        let r = try await run("""
            import os, time
            n = 0
            for _ in range(100):
                try:
                    if os.fork() == 0:
                        time.sleep(20); os._exit(0)
                    n += 1
                except OSError:
                    break
            print(n, flush=True)
            os._exit(0)
            """, limits: limits)
        #expect(r.success, "\(r.error ?? "") \(r.stderr)")
        let n = Int(r.output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        #expect(n >= 1 && n < 16)
        for controller in ["pids", "memory"] {
            let left = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup/\(controller)/sandbox-runner")) ?? []
            #expect(!left.contains(r.runId))
        }
    }

    /// The fork-bomb tests above also pass through RLIMIT_NPROC alone (each run has its own uid):
    /// this one looks at the run's pids cgroup from the host while the run is alive: every process
    /// of the run is in it, and its pids.max is the run's limit.
    @Test(.enabled(if: LocalJail.cgroupsUnavailableReason == nil,
                   "skipped because cgroups are unavailable here: \(LocalJail.cgroupsUnavailableReason ?? "")"))
    func everyProcessOfTheRunIsInItsPidsCgroup() async throws {
        var limits = JailLimits()
        limits.useCgroups = true
        limits.processes = 24
        let executor = try Repo.executor(limits: limits)
        var request = RunRequest(source: .script(source: """
            import os, sys, time
            for _ in range(5):
                if os.fork() == 0:
                    time.sleep(5); os._exit(0)
            print("ready", flush=True)
            time.sleep(3)
            os._exit(0)
            """, label: "forks.py"), timeout: .seconds(30))
        let dir = "/sys/fs/cgroup/pids/sandbox-runner/\(request.runId)"
        let seen = CgroupSeen()
        request.onOutput = { fd, chunk in
            guard fd == 1, String(decoding: chunk, as: UTF8.self).contains("ready") else { return }
            seen.set(max: try? String(contentsOfFile: dir + "/pids.max", encoding: .utf8),
                     current: try? String(contentsOfFile: dir + "/pids.current", encoding: .utf8))
        }
        let r = await executor.run(request)
        #expect(r.success, "\(r.error ?? "") \(r.stderr)")
        let (max, current) = seen.get()
        #expect(max?.trimmingCharacters(in: .whitespacesAndNewlines) == "24", "pids.max: \(max ?? "missing")")
        // bubblewrap's pid 1, python and its five children at least.
        let n = Int(current?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? -1
        #expect(n >= 7, "pids.current: \(current ?? "missing")")
        #expect(!FileManager.default.fileExists(atPath: dir), "the run's cgroup is left behind")
    }

    @Test func memoryHogFailsCleanly() async throws {
        var limits = JailLimits()
        limits.memoryBytes = 256 << 20
        let r = try await run("""
            chunks = []
            while True:
                chunks.append(bytearray(16 << 20))
            """, limits: limits)
        #expect(!r.success)
        #expect(!r.timedOut)
        #expect(r.error?.contains("memory") == true, "\(r.error ?? "")")
    }

    @Test func outputFloodIsCappedAndCounted() async throws {
        let executor = try Repo.executor()
        var e = executor
        e.outputLimit = 64 << 10
        let r = await e.run(RunRequest(source: .script(source: """
            import sys
            chunk = b'x' * 65536
            for _ in range(1024):
                sys.stdout.buffer.write(chunk)
            sys.stderr.write('done\\n')
            """, label: "flood.py"), timeout: .seconds(60)))
        #expect(r.success)
        #expect(r.truncated)
        #expect(r.output.utf8.count == 64 << 10)
        #expect(r.stderr == "done\n")
        #expect(r.data == nil)
    }

    @Test func hostFilesAreInvisible() async throws {
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent("host-secret-\(UUID().uuidString)")
        try "host secret".write(to: marker, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: marker) }
        let r = try await run("""
            import json, os
            out = {}
            for p in [\(TemplateRenderer.pythonLiteral(.string(marker.path))), '/etc/shadow', '/etc/passwd', '/root/.bashrc',
                      \(TemplateRenderer.pythonLiteral(.string(Repo.root.appendingPathComponent("Package.swift").path)))]:
                try:
                    open(p).read(); out[p] = 'READ'
                except OSError as e:
                    out[p] = type(e).__name__
            try:
                open('/usr/bin/evil', 'w'); out['write_usr'] = 'WROTE'
            except OSError as e:
                out['write_usr'] = type(e).__name__
            out['uid'] = os.getuid()
            print(json.dumps(out))
            """)
        #expect(r.success)
        guard case .object(let o)? = r.data else { Issue.record("no data: \(r.output) \(r.stderr)"); return }
        for (path, v) in o where path != "uid" {
            #expect(v != .string("READ") && v != .string("WROTE"), "\(path) was reachable")
        }
        if geteuid() == 0 { #expect(o["uid"] != .int(0)) }
    }

    @Test func noNetworkByDefault() async throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(listener, 4)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        let port = Int(UInt16(bigEndian: addr.sin_port))
        let script = """
            import socket
            try:
                socket.create_connection(('127.0.0.1', \(port)), timeout=2); print('connected')
            except OSError as e:
                print('blocked')
            """
        let none = try await run(script)
        #expect(none.output == "blocked\n")
        let host = try await run(script, network: .host)
        #expect(host.output == "connected\n")
        #expect(host.network == "host")
    }

    @Test func secretsReachTheScriptOnlyAsEnvironmentAndAreRedacted() async throws {
        let secret = "phx_test_\(UUID().uuidString.replacingOccurrences(of: "-", with: ""))"
        let r = try await run("""
            import os, sys
            k = os.environ['POSTHOG_PERSONAL_API_KEY']
            print('key is', k)
            print('stderr', k, file=sys.stderr)
            raise RuntimeError('leaking ' + k)
            """, environment: ["POSTHOG_PERSONAL_API_KEY": secret])
        #expect(!r.success)
        #expect(r.output == "key is [REDACTED]\n")
        #expect(!r.stderr.contains(secret))
        #expect(r.stderr.contains("[REDACTED]"))
        #expect(r.error.map { !$0.contains(secret) } ?? true)
        #expect(!r.jsonText().contains(secret))
        // The bundle never holds it.
        let prepared = try Repo.executor(environment: ["POSTHOG_PERSONAL_API_KEY": secret]).prepare(
            RunRequest(source: .template(name: "echo_vars", inputs: ["who": .text("u")])))
        // Every entry as shipped (uncompressed: a gzip'd archive could hide the bytes).
        #expect(!prepared.1.contents.contains { String(decoding: $0.bytes + Array($0.path.utf8), as: UTF8.self).contains(secret) })
    }

    @Test func nothingOfTheWorkspaceIsOnTheHost() async throws {
        let marker = "sr-marker-\(UUID().uuidString)"
        let r = try await run("""
            import os
            for d in ('.', '/tmp', '/dev/shm'):
                open(os.path.join(d, '\(marker)'), 'w').write('x')
            print(os.getcwd())
            """)
        #expect(r.success, "\(r.stderr)")
        #expect(r.output == "/home/sandbox\n")
        let tmp = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        for dir in [tmp, "/tmp", "/dev/shm"] {
            let found = FileManager.default.enumerator(atPath: dir)?.allObjects.compactMap { $0 as? String }.filter { $0.hasSuffix(marker) } ?? []
            #expect(found.isEmpty, "\(dir): \(found)")
        }
    }

    @Test func templateRunsWithRenderedVariables() async throws {
        let executor = try Repo.executor()
        let r = await executor.run(RunRequest(source: .template(name: "echo_vars", inputs: [
            "who": .text("o'brien \"quoted\""), "steps": .text("signed_up,$pageview"), "days": .text("30")])))
        #expect(r.success, "\(r.stderr)")
        #expect(r.data?["who"] == .string("o'brien \"quoted\""))
        #expect(r.data?["steps"] == .array([.string("signed_up"), .string("$pageview")]))
        #expect(r.data?["days"] == .int(30))
        #expect(r.template == "echo_vars")
    }

    @Test func missingBubblewrapRefusesWithExit69() async throws {
        var tools = JailTools.discover()
        tools.bwrap = nil
        let executor = Executor(catalog: Repo.catalog(), assembler: try BundleAssembler(sandboxDirectory: Repo.locator.sandboxDirectory),
                                backend: LocalJail(mode: .bubblewrap, tools: tools), environment: [:])
        let r = await executor.run(RunRequest(source: .script(source: "print(1)", label: "t.py")))
        #expect(!r.success)
        #expect(r.exitStatus == 69)
        #expect(r.error?.contains("--allow-weak-isolation") == true)
    }

    @Test func weakModeIsOptInAndSaysSo() async throws {
        let executor = Executor(catalog: Repo.catalog(), assembler: try BundleAssembler(sandboxDirectory: Repo.locator.sandboxDirectory),
                                backend: LocalJail(mode: .weak), environment: [:])
        let r = await executor.run(RunRequest(source: .script(source: "import os; print(os.getcwd() != '/home/sandbox')", label: "t.py")))
        #expect(r.success, "\(r.error ?? "") \(r.stderr)")
        #expect(r.isolation == "weak")
        #expect(r.output == "True\n")
    }

    @Test func badVariableNeverReachesASandbox() async throws {
        let executor = try Repo.executor()
        let r = await executor.run(RunRequest(source: .template(name: "echo_vars", inputs: ["who": .text("u"), "days": .text("0")])))
        #expect(!r.success)
        #expect(r.exitStatus == 64)
        #expect(r.isolation == nil)
        #expect(r.error?.contains("'days'") == true)
    }
}

private final class CgroupSeen: @unchecked Sendable {
    private let lock = NSLock()
    private var max: String?
    private var current: String?
    func set(max: String?, current: String?) { lock.lock(); self.max = max; self.current = current; lock.unlock() }
    func get() -> (String?, String?) { lock.lock(); defer { lock.unlock() }; return (max, current) }
}
