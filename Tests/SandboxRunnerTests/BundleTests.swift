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
        #expect(try a.archive() == b.archive())
        let c = try assembler.bundle(templateName: "t", script: "print(1)\n", variables: ["days": .int(8)])
        #expect(c.sha256 != a.sha256)
        #expect(a.entries == a.entries.sorted())
        #expect(a.entries.contains("run.py") && a.entries.contains("template.py") && a.entries.contains("run.json"))
        #expect(a.entries.contains("posthog_driver/__init__.py"))
    }

    /// The digest covers names, kinds, sizes and bytes: contents moved from one file to the next,
    /// or a file turned into a directory of the same name, give another digest.
    @Test func digestSeparatesEntries() throws {
        let a = try BundleBuilder.build(files: ["a.py": Array("xy".utf8), "b.py": []])
        let b = try BundleBuilder.build(files: ["a.py": Array("x".utf8), "b.py": Array("y".utf8)])
        let c = try BundleBuilder.build(files: ["a.py/x": []])
        let d = try BundleBuilder.build(files: ["a.py": [], "x": []])
        #expect(Set([a.sha256, b.sha256, c.sha256, d.sha256]).count == 4)
        #expect(c.entries == ["a.py/", "a.py/x"])
    }

    /// The driver's digests, hashed once by the assembler, give the digest hashing every file would.
    @Test func cachedDriverDigestsMatch() throws {
        let assembler = try BundleAssembler(sandboxDirectory: Repo.locator.sandboxDirectory)
        let bundle = try assembler.bundle(templateName: "t", script: "print(2)\n", variables: [:], extraFiles: ["state.json": [1, 2]])
        var files: [String: [UInt8]] = [:]
        for e in bundle.contents where !e.isDirectory { files[e.path] = e.bytes }
        #expect(files.keys.contains("posthog_driver/client.py") && files["state.json"] == [1, 2])
        #expect(try BundleBuilder.build(files: files).sha256 == bundle.sha256)
    }

    /// The archive made on demand holds exactly the entries the local jail is given.
    @Test func archiveMatchesEntries() throws {
        let assembler = try BundleAssembler(sandboxDirectory: Repo.locator.sandboxDirectory)
        let bundle = try assembler.bundle(templateName: "t", script: "print(1)\n", variables: ["days": .int(7)])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bundle-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try BundleBuilder.extract(bundle, into: dir)
        for entry in bundle.contents where !entry.isDirectory {
            #expect(FileManager.default.contents(atPath: dir.appendingPathComponent(entry.path).path) == Data(entry.bytes), "\(entry.path)")
        }
        let packed = FileManager.default.enumerator(atPath: dir.path)?.allObjects.compactMap { $0 as? String } ?? []
        #expect(packed.sorted() == bundle.contents.map(\.path).sorted())
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
        try Data(bundle.archive()).write(to: path)
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
