import Foundation
import Testing
@testable import SandboxRunner
#if canImport(Glibc)
import Glibc
#endif

/// Each test is an attack a hostile script (or template) makes, run through the built CLI and
/// the real jail. SANDBOX_RUNNER_TEST_BINARY=/work/main/.build/debug/sandbox-runner runs them
/// against an older build: there they fail (see the report of issue 9).
@Suite("Jail against hostile scripts", .serialized, .timeLimit(.minutes(5)))
struct JailAttackTests {
    static let cgroupsHere = LocalJail.cgroupsUnavailableReason == nil

    /// Runs `source` with `sandbox-runner exec FILE --json` plus `args`.
    func exec(_ source: String, _ args: [String] = [], environment: [String: String] = [:], timeout: Duration = .seconds(120)) throws -> CLIResult {
        let dir = try TempDir()
        let file = dir.url.appendingPathComponent("attack.py")
        try source.write(to: file, atomically: true, encoding: .utf8)
        return try runCLI(["exec", file.path, "--json"] + args, environment: environment, timeout: timeout)
    }

    func attack(_ name: String) throws -> String {
        try String(contentsOf: Repo.attacks.appendingPathComponent(name), encoding: .utf8)
    }

    @Test func ptraceOfTheJailsInitAndOfTheParentIsRefused() throws {
        let r = try exec("""
            import ctypes, json, os
            libc = ctypes.CDLL(None, use_errno=True)
            libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
            def attach(pid):
                if libc.ptrace(16, pid, None, None) == 0:  # PTRACE_ATTACH
                    libc.ptrace(17, pid, None, None)
                    return 0
                return ctypes.get_errno()
            out = {"init": attach(1)}
            r, w = os.pipe()
            if os.fork() == 0:  # a child of the script attacks its parent
                os.write(w, str(attach(os.getppid())).encode())
                os._exit(0)
            os.wait()
            out["parent"] = int(os.read(r, 16))
            buf = ctypes.create_string_buffer(8)
            class IOV(ctypes.Structure):
                _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
            local, remote = IOV(ctypes.addressof(buf), 8), IOV(0x400000, 8)
            n = libc.process_vm_readv(1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
            out["process_vm_readv"] = 0 if n >= 0 else ctypes.get_errno()
            print(json.dumps(out))
            """)
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        #expect(r.json?["data"]?["init"] == .int(Int(EPERM)))
        #expect(r.json?["data"]?["parent"] == .int(Int(EPERM)))
        #expect(r.json?["data"]?["process_vm_readv"] == .int(Int(EPERM)))
    }

    @Test func nothingOfTheRunOutlivesIt() throws {
        let r = try runCLI(["exec", Repo.attacks.appendingPathComponent("outlive_the_run.py").path, "--json"])
        let data = try #require(r.json?["data"], "\(r.stdout) \(r.stderr)")
        let ns = try #require(data["ns"]?.stringValue)
        let uid = try #require(data["uid"]?.intValue)
        // Checked at once, not after a wait: the runner returns only when the namespace is empty.
        let left = Processes.live { $0.pidNamespace == ns || $0.uids.contains(uid_t(uid)) }
        defer { for p in left { kill(p.pid, SIGKILL) } }
        #expect(left.isEmpty, "alive after the run: \(left.map(\.summary)); the script's ptrace: \(data["ptrace"]?.stringValue ?? "?")")
        #expect(data["ptrace"]?.stringValue?.hasPrefix("attach errno \(EPERM)") == true)
        let runId = r.json?["runId"]?.stringValue ?? "?"
        for controller in ["pids", "memory"] {
            #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/\(controller)/sandbox-runner/\(runId)"))
        }
    }

    @Test(.enabled(if: cgroupsHere, "skipped because cgroups are unavailable here: \(LocalJail.cgroupsUnavailableReason ?? "")"))
    func theWholeTreesMemoryIsCapped() throws {
        // 8 processes × 400 MB with --memory 512: per-process limits alone let all eight hold 3.2 GB.
        let r = try runCLI(["exec", Repo.attacks.appendingPathComponent("memory_hog.py").path, "--json", "--memory", "512"])
        let data = try #require(r.json?["data"], "\(r.stdout) \(r.stderr)")
        let holding = try #require(data["aliveHolding"]?.intValue)
        #expect(holding <= 1, "\(holding) processes held 400 MB at once")
        #expect((data["reported"]?.intValue ?? 0) >= 1, "not even one process got its 400 MB: \(data)")
    }

    @Test func manySmallFilesCannotFillTheWorkspaceOrTmp() throws {
        let r = try runCLI(["exec", Repo.attacks.appendingPathComponent("disk_fill.py").path, "--json"])
        let data = try #require(r.json?["data"], "\(r.stdout) \(r.stderr)")
        let limits = JailLimits()
        for (place, cap) in [("workspace", limits.workspaceBytes), ("tmp", limits.tmpBytes)] {
            let bytes = data[place]?["bytes"]?.intValue ?? -1
            #expect(data[place]?["errno"] == .int(Int(ENOSPC)), "\(place): \(data[place]?.jsonText() ?? "?")")
            #expect(bytes >= 0 && bytes <= cap, "\(place): \(bytes) bytes written, cap \(cap)")
        }
    }

    @Test func keyringsNamespacesMountsAndIoUringAreRefused() throws {
        // The runner is started in a session keyring holding a key (as after a login with
        // pam_keyinit); the script looks for it, and tries what the jail must not allow.
        let description = "sandbox-runner-test-\(UUID().uuidString.prefix(8))"
        let payload = "key-payload-\(UUID().uuidString)"
        let dir = try TempDir()
        let script = dir.url.appendingPathComponent("kernel.py")
        try attack("kernel_interfaces.py").replacingOccurrences(of: "sandbox-runner-test-key", with: description)
            .write(to: script, atomically: true, encoding: .utf8)
        let launcher = """
            import ctypes, os, sys
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            assert libc.syscall(ctypes.c_long(250), ctypes.c_long(1), ctypes.c_char_p(b"sr-test")) >= 0  # join a session keyring
            d, p = sys.argv[1].encode(), sys.argv[2].encode()
            assert libc.syscall(ctypes.c_long(248), ctypes.c_char_p(b"user"), ctypes.c_char_p(d), ctypes.c_char_p(p),
                                ctypes.c_long(len(p)), ctypes.c_long(-3)) >= 0  # add_key(..., KEY_SPEC_SESSION_KEYRING)
            os.execv(sys.argv[3], sys.argv[3:])
            """
        var spec = ProcessSpec(executable: "/usr/bin/python3",
                               arguments: ["-c", launcher, description, payload, Repo.binary.path, "exec", script.path, "--json"],
                               environment: ["PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory()], timeout: .seconds(120), outputLimit: 1 << 20)
        spec.workingDirectory = "/"
        let out = try ProcessRunner.runBlocking(spec, killer: ProcessKiller())
        #expect(!out.stdout.text.contains(payload), "the key's payload was read from inside the jail")
        let data = try #require(JSONValue.parse(Data(out.stdout.text.utf8))?["data"], "\(out.stdout.text) \(out.stderr.text)")
        let eperm = JSONValue.int(Int(EPERM))
        for call in ["keyctl_search", "keyctl_read_own_session", "add_key", "unshare_user", "unshare_net", "clone_newuser",
                     "io_uring_setup", "mount", "bpf", "perf_event_open", "userfaultfd", "personality_no_aslr"] {
            #expect(data[call] == eperm, "\(call): \(data[call]?.jsonText() ?? "missing")")
        }
        #expect(data["proc_keys_shows_key"] == .bool(false), "the runner's session keyring is visible in the jail")
        #expect(data["write_root"] == .int(Int(EROFS)))
        // Other ABIs do not get around the filter: the process is killed (SIGSYS).
        #expect(data["x32_syscall"] == .int(Int(SIGSYS)))
        #expect(data["i386_syscall"] == .int(Int(SIGSYS)))
    }

    @Test func signalAlarmFiresInsideTheJail() throws {
        let r = try exec("""
            import signal, sys, time
            status = open("/proc/self/status").read()
            blocked = [l for l in status.splitlines() if l.startswith("SigBlk")]  # (python itself ignores SIGPIPE, SIGXFSZ)
            signal.signal(signal.SIGALRM, lambda *_: (print("alarm fired", blocked), sys.exit(0)))
            signal.alarm(1)
            time.sleep(10)
            print("alarm never fired", blocked)
            """)
        #expect(r.json?["output"]?.stringValue == "alarm fired ['SigBlk:\\t0000000000000000']\n",
                "\(r.stdout)")
    }

    @Test func aScriptsExit127IsTheScripts() throws {
        let r = try exec("import sys\nprint('ran')\nsys.exit(127)\n")
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        #expect(r.json?["errorKind"] == .string("scriptFailed"))
        #expect(r.json?["exitCode"] == .int(127))
        #expect(r.json?["output"] == .string("ran\n"))
    }

    @Test func secretsInDisguiseAreRedactedEverywhere() throws {
        let tail = UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let secret = "phx_" + tail
        let r = try exec(#"""
            import json, os, sys
            k = os.environ["POSTHOG_PERSONAL_API_KEY"]
            escaped = "".join("\\u%04x" % ord(c) for c in k)
            mixed = "\\u0070" + k[1:]
            print('{"escaped": "%s", "mixed": "%s", "accent": %s, "emoji": %s, "%s": 1}' % (
                escaped, mixed, json.dumps(k + "\u0301", ensure_ascii=False), json.dumps(k + "\ufe0f", ensure_ascii=False), mixed))
            sys.stderr.write(k + "\u0301 " + mixed + " " + k + "\ufe0f " + escaped + "\n")
            raise RuntimeError("leaking " + mixed + " and " + escaped.upper().replace("\\U", "\\u"))
            """#, environment: ["POSTHOG_PERSONAL_API_KEY": secret])
        let doc = try #require(r.json, "\(r.stdout) \(r.stderr)")
        let escapedHead = "\\u0070\\u0068\\u0078"  // "phx" escaped
        func leaks(_ s: String) -> Bool { s.contains(tail.prefix(12)) || s.lowercased().contains(escapedHead) }
        for field in ["output", "stderr", "error"] {
            let text = doc[field]?.stringValue ?? ""
            #expect(!leaks(text), "\(field) leaks: \(text)")
            #expect(text.contains("[REDACTED]"), "\(field): \(text)")
        }
        var strings: [String] = []
        func collect(_ v: JSONValue) {
            switch v {
            case .string(let s): strings.append(s)
            case .array(let a): a.forEach(collect)
            case .object(let o): for (k, x) in o { strings.append(k); collect(x) }
            default: break
            }
        }
        let data = try #require(doc["data"])
        collect(data)
        #expect(strings.count >= 9)
        for s in strings { #expect(!leaks(s), "data leaks: \(s)") }
        #expect(data["escaped"] == .string("[REDACTED]"))
        #expect(data["accent"] == .string("[REDACTED]\u{301}"))
        #expect(data["emoji"] == .string("[REDACTED]\u{FE0F}"))
        #expect(!leaks(r.stdout) && !leaks(r.stderr))
    }

    @Test func symlinkedTemplateFilesAreRefusedByName() throws {
        let dir = try TempDir()
        let hostSecret = dir.url.appendingPathComponent("host-secret.txt")
        try "HOST-SECRET-\(UUID().uuidString)".write(to: hostSecret, atomically: true, encoding: .utf8)
        let manifest = { (name: String) in
            #"{"name": "\#(name)", "description": "d", "variables": [], "example": {}}"#
        }
        let templates = dir.url.appendingPathComponent("templates")
        for name in ["linked_script", "linked_manifest"] {
            let t = templates.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: t, withIntermediateDirectories: true)
            if name == "linked_script" {
                try manifest(name).write(to: t.appendingPathComponent("manifest.json"), atomically: true, encoding: .utf8)
                try FileManager.default.createSymbolicLink(at: t.appendingPathComponent("template.py"), withDestinationURL: hostSecret)
            } else {
                let elsewhere = dir.url.appendingPathComponent("manifest-elsewhere.json")
                try manifest(name).write(to: elsewhere, atomically: true, encoding: .utf8)
                try FileManager.default.createSymbolicLink(at: t.appendingPathComponent("manifest.json"), withDestinationURL: elsewhere)
                try "print('{}')\n".write(to: t.appendingPathComponent("template.py"), atomically: true, encoding: .utf8)
            }
        }
        let secret = try String(contentsOf: hostSecret, encoding: .utf8)
        for (name, file) in [("linked_script", "template.py"), ("linked_manifest", "manifest.json")] {
            let r = try runCLI(["run", name, "--templates-dir", templates.path, "--json"])
            #expect(r.status == 64, "\(name): \(r.status) \(r.stdout) \(r.stderr)")
            #expect((r.stdout + r.stderr).contains(file), "\(name): \(r.stdout) \(r.stderr)")
            #expect(!(r.stdout + r.stderr).contains(secret))
        }
    }

    @Test func variablesAreCheckedToTheTrueEndAndInScalars() throws {
        let dir = try TempDir()
        let t = dir.url.appendingPathComponent("bounded")
        try FileManager.default.createDirectory(at: t, withIntermediateDirectories: true)
        try #"""
            {"name": "bounded", "description": "d", "needsPostHog": false, "example": {"short": "abc"}, "variables": [
              {"name": "short", "type": "string", "description": "at most 10", "maxLength": 10, "required": true},
              {"name": "ev", "type": "identifier", "description": "an event", "default": "$pageview"},
              {"name": "code", "type": "string", "description": "lower case", "pattern": "^[a-z]+$", "default": "abc"}]}
            """#.write(to: t.appendingPathComponent("manifest.json"), atomically: true, encoding: .utf8)
        try "print({{ short }}, {{ ev }}, {{ code }})\n".write(to: t.appendingPathComponent("template.py"), atomically: true, encoding: .utf8)
        let base = ["run", "bounded", "--templates-dir", dir.url.path, "--json"]
        let ok = try runCLI(base + ["--var", "short=abcdefghij", "--var", "ev=signed_up"])
        #expect(ok.status == 0, "\(ok.stdout) \(ok.stderr)")
        let combining = "e" + String(repeating: "\u{301}", count: 10)  // one grapheme, 11 scalars
        for (args, name) in [(["--var", "short=\(combining)"], "'short'"), (["--var", "short=a", "--var", "ev=signup\n"], "'ev'"),
                             (["--var", "short=a", "--var", "code=abc\n"], "'code'")] {
            let r = try runCLI(base + args)
            #expect(r.status == 64, "\(args): \(r.stdout) \(r.stderr)")
            #expect((r.stdout + r.stderr).contains(name), "\(r.stdout) \(r.stderr)")
        }
    }

    @Test func controlCharactersFromAScriptDoNotReachTheTerminal() throws {
        let nasty = "\u{1B}]0;owned\u{07}\u{1B}[2J\u{9B}31mred\u{7F}"
        let source = """
            import sys
            s = "\\x1b]0;owned\\x07\\x1b[2J\\u009b31mred\\x7f"
            print(s)
            raise SystemExit("sandbox-runner-error: " + s)
            """
        let dir = try TempDir()
        let file = dir.url.appendingPathComponent("nasty.py")
        try source.write(to: file, atomically: true, encoding: .utf8)
        let human = try runCLI(["exec", file.path])
        #expect(human.status == 1)
        for (name, text) in [("stdout", human.stdout), ("stderr", human.stderr)] {
            let raw = text.unicodeScalars.filter { TerminalText.isControl($0) }
            #expect(raw.isEmpty, "\(name) holds raw control characters: \(raw.map { String($0.value, radix: 16) })")
        }
        #expect(human.stderr.hasPrefix("error: "))
        #expect(JSONValue.parse(Data(human.stdout.utf8))?["output"] == .string(nasty + "\n"), "pretty output is still the same JSON")
        let machine = try runCLI(["exec", file.path, "--json"])
        #expect(machine.json?["output"] == .string(nasty + "\n"), "--json keeps the exact text")
    }

    @Test func posthogLocalStopsOnSIGTERM() throws {
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSTemporaryDirectory()
        let server = try ChildProcess.start(executable: Repo.binary.path, arguments: ["posthog-local", "--port", "0"],
                                            environment: ["PATH": "/usr/bin:/bin", "HOME": home])
        defer { server.stop(grace: .seconds(1)) }
        try waitFor(.seconds(180), "posthog-local to listen: \(server.stderr.text.suffix(500))") {
            server.stdout.firstLine(containing: "listening on") != nil || !server.isRunning
        }
        #expect(server.isRunning, "posthog-local ended early: \(server.stderr.text.suffix(500))")
        kill(server.pid, SIGTERM)
        let stopped = (try? waitFor(.seconds(5), "") { !server.isRunning }) != nil
        #expect(stopped, "posthog-local ignored SIGTERM")
    }

    @Test func aKilledRunnerLeavesNoHelperBehind() throws {
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSTemporaryDirectory()
        let serve = try ChildProcess.start(executable: Repo.binary.path, arguments: ["serve", "--demo", "--no-auth", "--port", "0"],
                                           environment: ["PATH": "/usr/bin:/bin", "HOME": home])
        defer { serve.stop(grace: .seconds(1)) }
        // serve says it listens once its posthog-local is up (and past its own start-up output).
        try waitFor(.seconds(180), "serve --demo to listen: \(serve.stderr.text.suffix(500))") {
            serve.stdout.firstLine(containing: "listening on") != nil || !serve.isRunning
        }
        let helper = Processes.live { $0.parent == serve.pid && $0.commandLine.contains("server.py") }.first
        let found = try #require(helper, "no posthog-local under serve: \(serve.stderr.text.suffix(500))")
        kill(serve.pid, SIGKILL)
        let gone = (try? waitFor(.seconds(5), "") { Processes.live { $0.pid == found.pid }.isEmpty }) != nil
        if !gone { kill(found.pid, SIGKILL) }
        #expect(gone, "posthog-local (\(found.pid)) outlived the SIGKILLed runner")
    }

    @Test(.enabled(if: geteuid() == 0, "skipped because the race matters when the runner is root (it removes what the jail left); not root here"))
    func aSymlinkSwapRacingTheCleanupTouchesNothingOutside() throws {
        let dir = try TempDir()
        let canary = dir.url.appendingPathComponent("canary")
        try FileManager.default.createDirectory(at: canary, withIntermediateDirectories: true)
        for i in 0..<20 { try "keep".write(to: canary.appendingPathComponent("precious\(i)"), atomically: false, encoding: .utf8) }
        let source = try attack("cleanup_race.py").replacingOccurrences(of: "/nonexistent-canary", with: canary.path)
        let r = try exec(source, ["--allow-weak-isolation"])
        let report = JSONValue.parse(Data((r.json?["output"]?.stringValue ?? "").utf8))
        let uid = report?["uid"]?.intValue ?? -1
        let left = Processes.live { uid > 0 && $0.uids.contains(uid_t(uid)) }
        defer { for p in left { kill(p.pid, SIGKILL) } }
        let kept = (try? FileManager.default.contentsOfDirectory(atPath: canary.path))?.count ?? 0
        #expect(kept == 20, "the cleanup removed \(20 - kept) files of a host directory")
        #expect(left.isEmpty, "the daemon survived: \(left.map(\.summary))")
        if let ws = report?["workspace"]?.stringValue {
            #expect(!FileManager.default.fileExists(atPath: ws), "the workspace was left behind")
        }
    }
}

/// A temporary directory removed when the value goes.
final class TempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("sr-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
}

/// Polls `condition` until it holds or `limit` passes (then throws, naming `what`).
func waitFor(_ limit: Duration, _ what: String, _ condition: () -> Bool) throws {
    let deadline = ContinuousClock.now + limit
    while !condition() {
        guard ContinuousClock.now < deadline else { throw WaitTimeout(what: what) }
        usleep(20_000)
    }
}

struct WaitTimeout: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

/// The host's processes as /proc shows them.
enum Processes {
    struct Info {
        var pid: pid_t
        var parent: pid_t
        var state: Character
        var uids: [uid_t]
        var pidNamespace: String
        var commandLine: String
        var summary: String { "\(pid) [\(state)] uid \(uids.first ?? 0): \(commandLine.prefix(80))" }
    }

    /// Processes that have not exited (zombies are dead: they hold nothing and run nothing) and match.
    static func live(where match: (Info) -> Bool) -> [Info] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.compactMap(info).filter { $0.state != "Z" && $0.state != "X" && match($0) }
    }

    static func info(_ pid: pid_t) -> Info? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")"),
              let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 2, let state = fields[0].first, let ppid = pid_t(fields[1]) else { return nil }
        let uidLine = status.split(separator: "\n").first { $0.hasPrefix("Uid:") } ?? ""
        let uids = uidLine.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().compactMap { uid_t($0) }
        let ns = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/pid")) ?? ""
        let cmd = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")))
            .map { String(decoding: $0.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self) } ?? ""
        return Info(pid: pid, parent: ppid, state: state, uids: uids, pidNamespace: ns, commandLine: cmd)
    }
}
