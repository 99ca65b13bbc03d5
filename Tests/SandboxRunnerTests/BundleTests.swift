import Foundation
import Testing
@testable import SandboxRunner

@Suite("Bundle")
struct BundleTests {
    @Test func sameInputsSameBytes() throws {
        let assembler = try BundleAssembler(sandboxDirectory: Repo.locator.sandboxDirectory)
        let a = try assembler.bundle(templateName: "t", script: "print(1)\n", variables: ["days": .int(7)])
        let b = try assembler.bundle(templateName: "t", script: "print(1)\n", variables: ["days": .int(7)])
        #expect(a.sha256 == b.sha256)
        #expect(a.bytes == b.bytes)
        let c = try assembler.bundle(templateName: "t", script: "print(1)\n", variables: ["days": .int(8)])
        #expect(c.sha256 != a.sha256)
        #expect(a.entries == a.entries.sorted())
        #expect(a.entries.contains("run.py") && a.entries.contains("template.py") && a.entries.contains("run.json"))
        #expect(a.entries.contains("posthog_driver/__init__.py"))
    }

    @Test func extractsWhatWasPacked() throws {
        let files: [String: [UInt8]] = ["run.py": Array("print('hi')\n".utf8), "pkg/sub/mod.py": Array("x = 1\n".utf8)]
        let bundle = try BundleBuilder.build(files: files)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bundle-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try BundleBuilder.extract(bundle, into: dir)
        #expect(FileManager.default.contents(atPath: dir.appendingPathComponent("pkg/sub/mod.py").path) == Data("x = 1\n".utf8))
        // Python's tarfile reads it: fixed mtimes, root owner, sorted names.
        let path = dir.appendingPathComponent("b.tgz")
        try Data(bundle.bytes).write(to: path)
        let out = try ProcessRunner.runBlocking(ProcessSpec(executable: "/usr/bin/python3", arguments: ["-c", """
            import tarfile, sys
            t = tarfile.open(sys.argv[1], mode='r:gz')
            print(";".join(f"{m.name},{m.mtime},{m.uid},{oct(m.mode)}" for m in t.getmembers()))
            """, path.path], environment: [:], timeout: .seconds(10), outputLimit: 1 << 16), killer: ProcessKiller())
        #expect(out.stdout.text.trimmingCharacters(in: .whitespacesAndNewlines)
            == "pkg,946684800,0,0o755;pkg/sub,946684800,0,0o755;pkg/sub/mod.py,946684800,0,0o644;run.py,946684800,0,0o644")
    }

    @Test func refusesUnsafePaths() throws {
        let evil = try BundleBuilder.build(files: ["../escape.py": Array("x".utf8)])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bundle-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(throws: RunnerError.self) { try BundleBuilder.extract(evil, into: dir) }
    }
}
