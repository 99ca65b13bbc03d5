import Foundation
import Testing
@testable import SandboxRunner

/// out/ coming back from the real jail (bubblewrap, run.py, the pipe on descriptor 3) and from
/// E2B (e2b-local, the stream file read through envd).
@Suite("Artifacts from the sandboxes", .serialized, .timeLimit(.minutes(3)))
struct ArtifactJailTests {
    static let writer = """
        import os, json
        os.makedirs("out/charts", exist_ok=True)
        open("out/report.csv", "w").write("a,b\\n1,2\\n")
        big = bytes(range(256)) * 40000
        open("out/charts/big.bin", "wb").write(big)
        print(json.dumps({"ok": True}))
        """

    func run(_ script: String, into output: ArtifactOutput?, backend: (any SandboxBackend)? = nil,
             timeout: Duration = .seconds(30)) async throws -> RunResult {
        var executor = try Repo.executor()
        if let backend { executor.backend = backend }
        var request = RunRequest(source: .script(source: script, label: "t.py"), timeout: timeout)
        request.artifacts = output
        return await executor.run(request)
    }

    func check(_ r: RunResult, in dir: String) throws {
        #expect(r.success, "\(r.error ?? "") \(r.stderr)")
        #expect(r.artifacts.map(\.name).sorted() == ["charts/big.bin", "report.csv"])
        for a in r.artifacts {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + a.name))
            #expect(a.bytes == bytes.count && a.sha256 == SHA256.hex(bytes), "\(a.name)")
        }
        #expect(r.artifacts.first { $0.name == "charts/big.bin" }?.bytes == 256 * 40000)
    }

    @Test func theLocalJailHandsOutBack() async throws {
        let tmp = ScratchDir()
        let r = try await run(Self.writer, into: ArtifactOutput(directory: try ArtifactDirectory.open(tmp.path + "/out")))
        try check(r, in: tmp.path + "/out")
        #expect(r.isolation == "bubblewrap")
        // A run that leaves nothing in out/ makes no directory.
        let base = tmp.path
        let quiet = try await run("print('{}')", into: ArtifactOutput { try ArtifactDirectory.openDefault(base: base, runId: "quiet") })
        #expect(quiet.success && quiet.artifacts.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: tmp.path + "/sandbox-runner-out"))
        // Not asked for: out/ stays in the sandbox.
        let unasked = try await run(Self.writer, into: nil)
        #expect(unasked.success && unasked.artifacts.isEmpty)
    }

    @Test func weakModeHandsOutBackToo() async throws {
        let tmp = ScratchDir()
        let r = try await run(Self.writer, into: ArtifactOutput(directory: try ArtifactDirectory.open(tmp.path)),
                              backend: LocalJail(mode: .weak))
        try check(r, in: tmp.path)
        #expect(r.isolation == "weak")
    }

    /// A run killed while its stream is under way presents nothing: the file is cut, so it is not there.
    @Test func aTimeoutMidStreamLeavesNoFile() async throws {
        let tmp = ScratchDir()
        let script = """
            import os, struct, time
            os.write(3, b"SRA1F" + struct.pack(">H", 8) + b"half.bin" + struct.pack(">Q", 10_000_000) + b"x" * 70000)
            time.sleep(60)
            """
        let r = try await run(script, into: ArtifactOutput(directory: try ArtifactDirectory.open(tmp.path)), timeout: .seconds(2))
        #expect(r.timedOut && !r.success && r.errorKind == .timeout)
        #expect(r.artifacts.isEmpty)
        #expect(tmp.entries().isEmpty, "\(tmp.entries())")
    }

    @Test func e2bHandsOutBackThroughEnvd() async throws {
        let server = try E2BLocalProcess()
        let backend = E2BBackend(config: server.config())
        defer { backend.shutdown() }
        let tmp = ScratchDir()
        let r = try await run(Self.writer, into: ArtifactOutput(directory: try ArtifactDirectory.open(tmp.path)), backend: backend)
        try check(r, in: tmp.path)
        #expect(r.backend == "e2b" && r.stderr.isEmpty, "run.py's marker line is not shown: \(r.stderr)")
        #expect(backend.roundTripsOfLastRun == 3, "create, Start, then the one download")
        #expect(try server.requests("GET /files") == 1)
        let quiet = try await run("print('{}')", into: ArtifactOutput(directory: try ArtifactDirectory.open(tmp.path + "/q")), backend: backend)
        #expect(quiet.success && quiet.artifacts.isEmpty)
        #expect(backend.roundTripsOfLastRun == 2, "no files, no download")

        // The same untrusted stream rules: a forged stream file naming a path outside out/.
        let forged = """
            import os, struct, sys
            name = b"/home/user/.bashrc"
            open(os.environ["SANDBOX_RUNNER_ARTIFACTS"][5:], "wb").write(b"SRA1F" + struct.pack(">H", len(name)) + name
                + struct.pack(">Q", 5) + b"pwned" + b"E" + struct.pack(">I", 1))
            sys.stderr.write("sandbox-runner-artifacts: 1 5\\n")
            os._exit(0)
            """
        let bad = try await run(forged, into: ArtifactOutput(directory: try ArtifactDirectory.open(tmp.path + "/f")), backend: backend)
        #expect(!bad.success && bad.errorKind == .scriptFailed)
        #expect(bad.error?.contains("an absolute path") == true, "\(bad.error ?? "")")
        #expect(ScratchDir.list(tmp.path + "/f").isEmpty)
    }
}

extension ScratchDir {
    static func list(_ path: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }
}

/// The attacks on the artifact path, through the CLI as an operator runs it (the default output
/// directory in the working directory). Each fails on the code before artifacts existed
/// (SANDBOX_RUNNER_TEST_BINARY=/work/main/.build/debug/sandbox-runner): there, these runs
/// succeeded and nothing was checked.
@Suite("Artifact attacks through the CLI", .serialized, .timeLimit(.minutes(3)))
struct ArtifactAttackTests {
    func exec(_ script: String, in dir: ScratchDir) throws -> CLIResult {
        let file = dir.url.appendingPathComponent("attack.py")
        try Data(script.utf8).write(to: file)
        return try runCLI(["exec", file.path, "--json"], in: dir.path)
    }

    /// Every file now under the working directory's sandbox-runner-out/.
    func delivered(_ dir: ScratchDir) -> [String] { dir.entries().filter { $0.hasPrefix("sandbox-runner-out/") } }

    @Test func aSymlinkInOutIsRefusedNotFollowed() throws {
        let dir = ScratchDir("cli")
        let r = try exec("import os\nos.makedirs('out')\nopen('out/ok.txt','w').write('ok')\nos.symlink('/etc/hostname', 'out/host')\n", in: dir)
        #expect(r.status == 1, "\(r.stdout)")
        #expect(r.json?["error"]?.stringValue == "out/host is a symbolic link; the runner collects regular files only: write the file itself into out/.")
        #expect(r.json?["artifacts"] == .array([]))
        #expect(delivered(dir).allSatisfy { !$0.hasSuffix("host") && !$0.hasSuffix("ok.txt") }, "\(delivered(dir))")
    }

    @Test func aFIFOInOutIsRefusedAndNeverOpened() throws {
        let dir = ScratchDir("cli")
        let clock = ContinuousClock()
        let start = clock.now
        let r = try exec("import os\nos.makedirs('out')\nos.mkfifo('out/pipe')\n", in: dir)
        #expect(r.status == 1)
        #expect(r.json?["error"]?.stringValue == "out/pipe is not a regular file (a FIFO, socket or device); the runner collects regular files only.")
        #expect(clock.now - start < .seconds(30), "a FIFO opened for reading would block until the timeout")
    }

    /// The script writes its own stream on descriptor 3 (it runs in run.py's process) naming
    /// files outside out/, then exits before run.py streams.
    @Test(arguments: ["../escape.txt", "/tmp/escape.txt", "../../../../../../../../tmp/escape.txt"])
    func aForgedNameOutsideOutIsRefused(name: String) throws {
        let dir = ScratchDir("cli")
        let r = try exec("""
            import os, struct
            name = \(JSONValue.string(name).jsonText()).encode()
            os.write(3, b"SRA1F" + struct.pack(">H", len(name)) + name + struct.pack(">Q", 5) + b"pwned" + b"E" + struct.pack(">I", 1))
            os._exit(0)
            """, in: dir)
        #expect(r.status == 1, "\(r.stdout)")
        let error = r.json?["error"]?.stringValue ?? ""
        #expect(error.contains("climbs out of out/") || error.contains("an absolute path"), "\(error)")
        #expect(dir.entries() == ["attack.py"], "\(dir.entries())")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/escape.txt"))
    }

    /// The host side: the default output directory's parent, planted as a link to a directory of
    /// the attacker's choosing before the run. The runner must not write through it.
    @Test func aLinkPlantedAsTheOutputDirectoryIsNotFollowed() throws {
        let dir = ScratchDir("cli")
        let victim = ScratchDir("victim")
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/sandbox-runner-out", withDestinationPath: victim.path)
        let r = try exec("import os\nos.makedirs('out')\nopen('out/report.csv','w').write('a,b')\nprint('{}')\n", in: dir)
        #expect(r.status == 64 || r.status == 1, "\(r.stdout)")
        #expect(r.json?["success"] == .bool(false))
        #expect(r.json?["error"]?.stringValue?.contains("is a symbolic link or not a directory") == true, "\(r.stdout)")
        #expect(victim.entries().isEmpty, "written through the link: \(victim.entries())")
    }

    @Test func overTheLimitsTheRunFailsClearly() throws {
        let dir = ScratchDir("cli")
        let file = dir.url.appendingPathComponent("many.py")
        try Data("import os\nos.makedirs('out')\nfor i in range(4): open(f'out/f{i}', 'w').write('x' * 100)\n".utf8).write(to: file)
        var r = try runCLI(["exec", file.path, "--json", "--max-artifacts", "3"], in: dir.path)
        #expect(r.status == 1)
        #expect(r.json?["error"]?.stringValue == "The script left more than 3 files under out/ (--max-artifacts); write fewer or raise the limit.")
        r = try runCLI(["exec", file.path, "--json", "--max-artifact-bytes", "250"], in: dir.path)
        #expect(r.status == 1)
        #expect(r.json?["error"]?.stringValue?.contains("past the limit of 250 bytes (--max-artifact-bytes)") == true)
        #expect(delivered(dir).filter { !$0.hasSuffix("-out") && $0.split(separator: "/").count > 2 }.isEmpty, "\(delivered(dir))")
        // Within them: the files, and where they went (stderr for a person, `path` in the document).
        r = try runCLI(["exec", file.path, "--out-dir", dir.path + "/mine"], in: dir.path)
        #expect(r.status == 0)
        #expect(r.stderr.contains("artifacts: 4 files\n  \(dir.path)/mine/f0  (100 bytes, sha256 "), "\(r.stderr)")
        r = try runCLI(["exec", file.path, "--json", "--out-dir", dir.path + "/mine2"], in: dir.path)
        #expect(r.json?["artifacts"]?.arrayValue?.first?["path"] == .string(dir.path + "/mine2/f0"))
    }

    /// A file bigger than the pipe's buffer past the byte limit: the receiver stopped reading but
    /// kept the pipe open, so run.py blocked on a full pipe and the run ended by its timeout
    /// (60 s, "timeout") instead of the limit's sentence. Now the refusal closes the pipe at once.
    @Test func pastTheByteLimitABigFileEndsTheRunAtOnceNotByTimeout() throws {
        let dir = ScratchDir("cli")
        let file = dir.url.appendingPathComponent("big.py")
        try Data("import os\nos.makedirs('out')\nopen('out/big.bin', 'wb').write(b'x' * (8 << 20))\n".utf8).write(to: file)
        let r = try runCLI(["exec", file.path, "--json", "--max-artifact-bytes", "\(1 << 20)", "--timeout", "30"], in: dir.path)
        #expect(r.status == 1, "\(r.stdout)")
        #expect(r.json?["timedOut"] == .bool(false), "\(r.stdout)")
        #expect(r.json?["error"]?.stringValue?.contains("past the limit of 1048576 bytes (--max-artifact-bytes)") == true, "\(r.stdout)")
        #expect(delivered(dir).filter { $0.hasSuffix("big.bin") }.isEmpty, "\(delivered(dir))")
    }
}
