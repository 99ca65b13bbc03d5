import CSystemShims
import Foundation
import Testing
@testable import SandboxRunner
#if canImport(Glibc)
import Glibc
#endif

@Suite("Redaction")
struct RedactionTests {
    let secret = "phx_Secret/Value_0123"
    var redactor: Redactor { Redactor(secrets: [secret, "tiny"]) }

    @Test func plainAndFollowedByMarksThatJoinItsLastCharacter() {
        #expect(redactor.redact("key=\(secret)!") == "key=[REDACTED]!")
        #expect(redactor.redact("\(secret)\u{301}") == "[REDACTED]\u{301}")
        #expect(redactor.redact("\(secret)\u{FE0F} and \u{301}\(secret)") == "[REDACTED]\u{FE0F} and \u{301}[REDACTED]")
        #expect(redactor.redact("tiny") == "tiny", "values under 6 scalars are not secrets")
    }

    @Test(arguments: [
        #"\u0070\u0068\u0078\u005f\u0053\u0065\u0063\u0072\u0065\u0074\u002f\u0056\u0061\u006c\u0075\u0065\u005f\u0030\u0031\u0032\u0033"#,
        #"\u0070hx_Secret\/Value_0123"#,
        #"phx_S\u0065cret\u002FValue_0123"#,
        #"\u0070\u0068\u0078\u005F\u0053ecret/Value_0123"#,
    ])
    func jsonEscapedForms(escaped: String) {
        #expect(redactor.redact(#"{"k": "\#(escaped)"}"#) == #"{"k": "[REDACTED]"}"#, "\(escaped)")
    }

    @Test func nonBMPSecretsAsSurrogatePairs() {
        let r = Redactor(secrets: ["key-😀-value"])
        #expect(r.redact(#""key-\ud83d\ude00-value""#) == #""[REDACTED]""#)
        #expect(r.redact(#""key-\uD83D\uDE00-value""#) == #""[REDACTED]""#)
        #expect(r.redact(#""key-\ud83d-value""#) == #""key-\ud83d-value""#, "a lone surrogate is not the character")
    }

    @Test func aCutStreamLosesTheSecretsHeadToo() {
        #expect(redactor.redact("out: phx_Sec", truncated: true) == "out: [REDACTED]")
        #expect(redactor.redact("out: phx_Sec", truncated: false) == "out: phx_Sec")
    }

    @Test func everyStringAndKeyOfAParsedDocument() throws {
        let doc = try #require(JSONValue.parse(Data(#"{"\u0070hx_Secret/Value_0123": [1, "a \#(secret)\u0301"], "n": 2}"#.utf8)))
        #expect(redactor.redact(doc) == .object(["[REDACTED]": .array([.int(1), .string("a [REDACTED]\u{301}")]), "n": .int(2)]))
    }

    @Test func theExecutorParsesDataFromTheRedactedOutputAndRedactsItAgain() {
        // The runner's own parse must not undo the redaction of an escaped secret.
        let out = redactor.redact(#"{"a": "\u0070hx_Secret\/Value_0123", "b": "x"}"#)
        let data = JSONValue.parse(Data(out.utf8)).map(redactor.redact)
        #expect(data == .object(["a": .string("[REDACTED]"), "b": .string("x")]))
    }
}

@Suite("Variable validation")
struct ValidationHardeningTests {
    func spec(_ json: String) throws -> VariableSpec { try JSONDecoder().decode(VariableSpec.self, from: Data(json.utf8)) }

    @Test func patternsEndAtTheTrueEnd() throws {
        let ident = try spec(#"{"name": "ev", "type": "identifier", "description": "d"}"#)
        #expect(throws: RunnerError.self) { try VariableValidator.validate(.text("signup\n"), spec: ident) }
        #expect(try VariableValidator.validate(.text("$pageview"), spec: ident) == .string("$pageview"))
        let custom = try spec(#"{"name": "c", "type": "string", "description": "d", "pattern": "^[a-z$]+$"}"#)
        #expect(throws: RunnerError.self) { try VariableValidator.validate(.text("abc\n"), spec: custom) }
        #expect(try VariableValidator.validate(.text("ab$c"), spec: custom) == .string("ab$c"), "a $ inside a class stays a character")
        #expect(VariableValidator.strictEndAnchors(#"^a\$b[$^\]]$"#) == #"^a\$b[$^\]]\z"#)
        #expect(VariableValidator.strictEndAnchors(#"[]$]x$|y$"#) == #"[]$]x\z|y\z"#)
    }

    @Test func lengthsAreUnicodeScalars() throws {
        let s = try spec(#"{"name": "s", "type": "string", "description": "d", "maxLength": 10, "minLength": 2}"#)
        #expect(throws: RunnerError.self) { try VariableValidator.validate(.text("e" + String(repeating: "\u{301}", count: 10)), spec: s) }
        #expect(try VariableValidator.validate(.text("e" + String(repeating: "\u{301}", count: 9)), spec: s) != .null)
        #expect(try VariableValidator.validate(.text("👍🏽"), spec: s) != .null, "two scalars meet minLength 2")
        do {
            _ = try VariableValidator.validate(.text("x" + String(repeating: "\u{301}", count: 20_000)), spec: s)
            Issue.record("20,001 scalars passed maxLength 10")
        } catch let e as RunnerError {
            #expect(e.message.unicodeScalars.count < 200, "the error echoes at most 40 scalars of the value")
        }
    }
}

@Suite("Terminal escaping")
struct TerminalTextTests {
    @Test func controlsAreEscapedNewlinesAndTabsKept() {
        #expect(TerminalText.escape("a\u{1B}[2Jb\u{9B}c\u{7F}\n\td\u{7}") == "a\\u{1B}[2Jb\\u{9B}c\\u{7F}\n\td\\u{7}")
        #expect(TerminalText.escape("plain é 😀") == "plain é 😀")
    }

    @Test func jsonStaysJSON() throws {
        let json = JSONValue.object(["s": .string("x\u{9B}y\u{7F}\u{1B}")]).jsonText()
        let safe = TerminalText.escapeJSON(json)
        #expect(!safe.unicodeScalars.contains(where: TerminalText.isControl))
        #expect(JSONValue.parse(Data(safe.utf8)) == .object(["s": .string("x\u{9B}y\u{7F}\u{1B}")]))
    }
}

@Suite("Seccomp filter")
struct SeccompFilterTests {
    @Test func personalityPatternsMatchExactlyTheOthers() {
        let allowed = SeccompFilter.allowedPersonalities
        let patterns = SeccompFilter.complementPatterns(of: allowed)
        func denied(_ v: UInt32) -> Bool { patterns.contains { v & $0.mask == $0.value } }
        var samples: [UInt32] = allowed + [1, 7, 9, 0x40000, 0x400000, 0x20009, 0x20010, 0xfffffffe, 0x7fffffff, 0x80000000]
        for bit in 0..<32 { samples.append(UInt32(1) << UInt32(bit)); samples.append(~(UInt32(1) << UInt32(bit))) }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<10_000 { samples.append(UInt32.random(in: .min ... .max, using: &rng)) }
        for v in samples { #expect(denied(v) == !allowed.contains(v), "personality \(String(v, radix: 16))") }
        // Disjoint: no value matches two patterns.
        for v in samples { #expect(patterns.filter { v & $0.mask == $0.value }.count <= 1) }
    }

    @Test func theProgramIsBuiltOnceAndNamesEveryGroup() throws {
        let a = try SeccompFilter.bpf()
        #expect(a.count % 8 == 0 && a.count > 8 * 50)
        #expect(try SeccompFilter.bpf() == a)
        for group in SeccompFilter.deniedGroups { for call in group.calls { #expect(SeccompFilter.number(of: call) != nil, "\(call)") } }
    }
}

@Suite("Host-side file operations")
struct HostFileOperationTests {
    /// A tree full of links into a host directory: removed without touching what they point at.
    @Test func removalNeverFollowsALink() throws {
        let dir = try TempDir()
        let canary = dir.url.appendingPathComponent("canary")
        try FileManager.default.createDirectory(at: canary.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try "keep".write(to: canary.appendingPathComponent("sub/file"), atomically: false, encoding: .utf8)
        let tree = dir.url.appendingPathComponent("tree")
        var deep = tree
        for i in 0..<40 {
            deep = deep.appendingPathComponent("d\(i)")
            try FileManager.default.createDirectory(at: deep, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(at: deep.appendingPathComponent("link"), withDestinationURL: canary)
            try "x".write(to: deep.appendingPathComponent("f"), atomically: false, encoding: .utf8)
        }
        #expect(mkfifo(tree.appendingPathComponent("fifo").path, 0o600) == 0)
        let parent = open(dir.url.path, O_RDONLY | O_DIRECTORY)
        defer { close(parent) }
        #expect(sr_remove_tree_at(parent, "tree", 512) == 0)
        #expect(!FileManager.default.fileExists(atPath: tree.path))
        #expect(FileManager.default.fileExists(atPath: canary.appendingPathComponent("sub/file").path))
        // The tree's root itself a link: only the link goes.
        try FileManager.default.createSymbolicLink(at: dir.url.appendingPathComponent("rootlink"), withDestinationURL: canary)
        #expect(sr_remove_tree_at(parent, "rootlink", 512) == 0)
        #expect(FileManager.default.fileExists(atPath: canary.appendingPathComponent("sub/file").path))
    }

    @Test(.enabled(if: geteuid() == 0, "skipped because handing files to another uid needs root"))
    func handOverNeverFollowsALinkOnTheWay() throws {
        let (home, uid) = try LocalJail.makeWorkspace(label: "handover")
        defer { LocalJail.removeWorkspace(home) }
        let dir = try TempDir()
        let canary = dir.url.appendingPathComponent("victim")
        try "root's".write(to: canary, atomically: false, encoding: .utf8)
        // The jail made `a` a link to the host directory; an upload to a/victim must not chown the host file.
        try FileManager.default.createSymbolicLink(at: home.appendingPathComponent("a"), withDestinationURL: dir.url)
        LocalJail.handOver(home.appendingPathComponent("a/victim"), to: uid)
        var st = stat()
        #expect(stat(canary.path, &st) == 0 && st.st_uid == 0)
        // A jail-made look-alike of a workspace, linking to a host directory that has a `home`.
        let decoy = dir.url.appendingPathComponent("decoy/home")
        try FileManager.default.createDirectory(at: decoy, withIntermediateDirectories: true)
        try "root's".write(to: decoy.appendingPathComponent("victim"), atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(at: home.appendingPathComponent("sandbox-runner-x"),
                                                   withDestinationURL: dir.url.appendingPathComponent("decoy"))
        LocalJail.handOver(home.appendingPathComponent("sandbox-runner-x/home/victim"), to: uid)
        #expect(stat(decoy.appendingPathComponent("victim").path, &st) == 0 && st.st_uid == 0)
        // A file really inside is handed over.
        try "mine".write(to: home.appendingPathComponent("upload"), atomically: false, encoding: .utf8)
        LocalJail.handOver(home.appendingPathComponent("upload"), to: uid)
        #expect(lstat(home.appendingPathComponent("upload").path, &st) == 0 && st.st_uid == uid)
        #expect(LocalJail.removeWorkspace(home))
        #expect(!FileManager.default.fileExists(atPath: home.deletingLastPathComponent().path))
        #expect(FileManager.default.fileExists(atPath: canary.path))
    }
}

@Suite("Jail launcher", .serialized, .timeLimit(.minutes(2)))
struct JailLauncherTests {
    @Test func bubblewrapStatusNamesPidOneAndTheExit() {
        var s = BubblewrapStatus()
        let lines = "{ \"child-pid\": 4242, \"cgroup-namespace\": 1 }\n{ \"exit-code\": 127 }\n"
        Array(lines.utf8).withUnsafeBytes { raw in
            s.feed(UnsafeRawBufferPointer(rebasing: raw[0..<10]))
            s.feed(UnsafeRawBufferPointer(rebasing: raw[10...]))
        }
        #expect(s.childPid == 4242)
        #expect(s.exitCode == 127)
    }

    @Test func theArgumentsHoldTheHardenedOptions() {
        var layout = JailLayout(home: .tmpfs(bytes: 1 << 20), network: .none, tmpBytes: 2 << 20, shmBytes: 3 << 20)
        layout.binds = [JailBind(source: "/run/x.sock", destination: "/run/sandbox-runner/egress.sock", readOnly: false)]
        let args = LocalJail.bubblewrapArguments(layout, descriptors: JailDescriptors(seccomp: 3, status: 4, block: 5,
                                                                                       files: [.init(path: "run.py", mode: 0o644, fd: 6)]))
        for flag in ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup", "--unshare-net",
                     "--disable-userns", "--die-with-parent", "--new-session"] {
            #expect(args.contains(flag), "\(flag)")
        }
        let joined = args.joined(separator: " ")
        #expect(joined.contains("--size 1048576 --perms 0700 --tmpfs /home/sandbox"))
        #expect(joined.contains("--perms 0644 --file 6 /home/sandbox/run.py"))
        #expect(joined.contains("--seccomp 3 --json-status-fd 4 --block-fd 5"))
        // The root goes read-only after everything is in place, binds included.
        let ro = args.lastIndex(of: "--remount-ro")!
        #expect(args[ro + 1] == "/")
        #expect(ro > args.firstIndex(of: "/run/sandbox-runner/egress.sock")!)
        #expect(!LocalJail.bubblewrapArguments(JailLayout(home: .tmpfs(bytes: 1), network: .host, tmpBytes: 1, shmBytes: 1),
                                               descriptors: JailDescriptors()).contains("--unshare-net"))
    }

    /// The launcher hands extra descriptors to the jailed command (3, 4, …): the way `out/`
    /// artifacts are meant to come back (a pipe the host reads as untrusted data).
    @Test func extraDescriptorsReachTheCommand() async throws {
        let (home, uid) = try LocalJail.makeWorkspace(label: "fds")
        defer { LocalJail.removeWorkspace(home) }
        var pipe: [Int32] = [-1, -1]
        #expect(sr_pipe_cloexec(&pipe) == 0)
        let outcome = try await LocalJail().runCommand(
            ["/usr/bin/python3", "-c", "import os; os.write(3, b'artifact bytes'); print(sorted(os.listdir('/proc/self/fd')))"],
            workspace: home, mountPoint: "/home/user", workingDirectory: nil, environment: [:], network: .none,
            timeout: .seconds(20), outputLimit: 4096, uid: uid, killer: ProcessKiller(), extraFDs: [pipe[1]])
        close(pipe[1])
        var buf = [UInt8](repeating: 0, count: 64)
        let n = read(pipe[0], &buf, 64)
        close(pipe[0])
        #expect(outcome.exitCode == 0, "\(outcome.stderr.text)")
        #expect(n > 0 && String(decoding: buf[0..<n], as: UTF8.self) == "artifact bytes")
        #expect(outcome.stdout.text == "['0', '1', '2', '3', '4']\n", "only stdio, the passed pipe and the listing's own fd")
    }

    @Test func aJailThatCannotStartIsUnavailableNotTheScripts() async throws {
        // A working directory that does not exist: bubblewrap fails before the command runs.
        let (home, uid) = try LocalJail.makeWorkspace(label: "nostart")
        defer { LocalJail.removeWorkspace(home) }
        do {
            _ = try await LocalJail().runCommand(["/usr/bin/true"], workspace: home, mountPoint: "/home/user",
                                                 workingDirectory: "/nowhere", environment: [:], network: .none, timeout: .seconds(20),
                                                 outputLimit: 4096, uid: uid, killer: ProcessKiller())
            Issue.record("a jail that could not start returned an outcome")
        } catch let e as RunnerError {
            #expect(e.kind == .unavailable)
            #expect(e.message.contains("chdir"), "\(e.message)")
        }
    }

    @Test func cancellingBeforeTheJailStartsLeavesNothing() async throws {
        let killer = ProcessKiller()
        killer.kill(cancelling: true)
        let executor = try Repo.executor()
        let r = await executor.run(RunRequest(source: .script(source: "import time; time.sleep(30)", label: "t.py")), killer: killer)
        #expect(!r.success)
        #expect(r.error?.contains("cancelled") == true, "\(r.error ?? "")")
    }
}
