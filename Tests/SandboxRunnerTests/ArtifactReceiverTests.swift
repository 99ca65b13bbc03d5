import CSystemShims
import Foundation
import Testing
@testable import SandboxRunner

/// The artifact stream as `run.py` writes it (ArtifactReceiver.swift documents the format).
enum Stream {
    static func name(_ kind: Character, _ name: String) -> [UInt8] {
        let n = Array(name.utf8)
        return [kind.asciiValue!, UInt8(n.count >> 8), UInt8(n.count & 0xff)] + n
    }
    static func file(_ name: String, _ data: [UInt8]) -> [UInt8] {
        Self.name("F", name) + (0..<8).map { UInt8(truncatingIfNeeded: UInt64(data.count) >> (8 * (7 - $0))) } + data
    }
    static func file(_ name: String, _ text: String) -> [UInt8] { file(name, Array(text.utf8)) }
    static func end(_ count: Int) -> [UInt8] { [UInt8(ascii: "E")] + (0..<4).map { UInt8(truncatingIfNeeded: count >> (8 * (3 - $0))) } }
    static func of(_ records: [[UInt8]], count: Int? = nil) -> [UInt8] {
        ArtifactStream.magic + records.flatMap { $0 } + end(count ?? records.filter { $0.first == UInt8(ascii: "F") }.count)
    }
}

/// A fresh host directory for a test, removed afterwards.
final class ScratchDir {
    let url: URL
    init(_ label: String = "artifacts") {
        url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sr-test-\(label)-\(UUID().uuidString.prefix(8))")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
    var path: String { url.path }
    /// Every entry below, hidden ones included, as relative paths (links listed, never followed).
    func entries() -> [String] {
        var out: [String] = []
        func walk(_ rel: String) {
            let full = rel.isEmpty ? path : path + "/" + rel
            for name in (try? FileManager.default.contentsOfDirectory(atPath: full)) ?? [] {
                let child = rel.isEmpty ? name : rel + "/" + name
                out.append(child)
                let type = (try? FileManager.default.attributesOfItem(atPath: path + "/" + child))?[.type] as? FileAttributeType
                if type == .typeDirectory { walk(child) }
            }
        }
        walk("")
        return out.sorted()
    }
}

func receive(_ bytes: [UInt8], into dir: ArtifactDirectory, limits: ArtifactLimits = ArtifactLimits(), chunk: Int = 7) -> ArtifactCollection {
    let receiver = ArtifactReceiver(output: ArtifactOutput(directory: dir, limits: limits))
    var i = 0
    while i < bytes.count {
        let end = min(bytes.count, i + chunk)
        let ok = bytes[i..<end].withUnsafeBytes { receiver.feed($0) }
        if !ok { break }
        i = end
    }
    return receiver.finish()
}

@Suite("Artifact receiver: the host side of out/")
struct ArtifactReceiverTests {
    @Test func filesArriveWholeWithTheHostsOwnSha256() throws {
        let tmp = ScratchDir()
        let dir = try ArtifactDirectory.open(tmp.path)
        let big = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let c = receive(Stream.of([Stream.file("report.csv", "a,b\n1,2\n"), Stream.file("charts/deep/x.bin", big),
                                   Stream.file("empty.txt", [])]), into: dir, chunk: 4093)
        #expect(c.error == nil, "\(c.error?.message ?? "")")
        #expect(c.artifacts.map(\.name) == ["report.csv", "charts/deep/x.bin", "empty.txt"])
        #expect(c.artifacts[1].sha256 == SHA256.hex(big) && c.artifacts[1].bytes == big.count)
        #expect(c.artifacts[0].mediaType == "text/csv" && c.artifacts[1].mediaType == "application/octet-stream")
        #expect(try Data(contentsOf: tmp.url.appendingPathComponent("charts/deep/x.bin")) == Data(big))
        #expect(tmp.entries() == ["charts", "charts/deep", "charts/deep/x.bin", "empty.txt", "report.csv"], "no temporary left")
    }

    /// The attack: the script (same process as run.py) writes its own stream on descriptor 3 and
    /// names files outside out/. Nothing may be written, neither there nor in the directory.
    @Test(arguments: [
        ("../escape.txt", "climbs out of out/"), ("a/../../escape.txt", "climbs out of out/"), ("/etc/cron.d/x", "absolute path"),
        ("a//b", "empty or '.' component"), ("./a", "empty or '.' component"), ("a/", "empty or '.' component"),
        ("x\u{1b}[2Jy", "control character"), ("a\\b", "backslash"), (".sandbox-runner-1.partial", "keeps for its own files"),
        (String(repeating: "d/", count: 9) + "f", "levels deep"), (String(repeating: "n", count: 256), "component over 255"),
    ])
    func namesOutsideOutAreRefused(name: String, why: String) throws {
        let tmp = ScratchDir()
        let sub = tmp.url.appendingPathComponent("out-dir")
        let dir = try ArtifactDirectory.open(sub.path)
        let c = receive(Stream.of([Stream.file("fine.txt", "ok"), Stream.file(name, "pwned")]), into: dir)
        #expect(c.error?.kind == .scriptFailed)
        #expect(c.error?.message.contains(why) == true, "\(c.error?.message ?? "no error")")
        #expect(c.artifacts.isEmpty)
        #expect(tmp.entries() == ["out-dir"], "nothing written: \(tmp.entries())")
        #expect(!FileManager.default.fileExists(atPath: tmp.url.appendingPathComponent("escape.txt").path))
    }

    @Test func linksAndSpecialFilesAreRefusedByName() throws {
        for (record, why) in [(Stream.name("L", "link"), "out/link is a symbolic link"), (Stream.name("L", ""), "out/ itself is a symbolic link"),
                              (Stream.name("S", "pipe"), "out/pipe is not a regular file"),
                              (Stream.name("X", "out/x shrank"), "Collecting out/ failed inside the sandbox: out/x shrank")] {
            let tmp = ScratchDir()
            let c = receive(Stream.of([Stream.file("a.txt", "a"), record]), into: try ArtifactDirectory.open(tmp.path))
            #expect(c.error?.message.hasPrefix(why) == true, "\(c.error?.message ?? "")")
            #expect(tmp.entries().isEmpty)
        }
    }

    @Test func limitsOnCountAndTotalSizeFailTheCollection() throws {
        var limits = ArtifactLimits()
        limits.maxCount = 2
        var tmp = ScratchDir()
        var c = receive(Stream.of((0..<3).map { Stream.file("f\($0)", "x") }), into: try ArtifactDirectory.open(tmp.path), limits: limits)
        #expect(c.error?.message == "The script left more than 2 files under out/ (--max-artifacts); write fewer or raise the limit.")
        #expect(tmp.entries().isEmpty)
        limits = ArtifactLimits()
        limits.maxTotalBytes = 1000
        tmp = ScratchDir()
        c = receive(Stream.of([Stream.file("a", [UInt8](repeating: 1, count: 600)), Stream.file("b", [UInt8](repeating: 2, count: 600))]),
                    into: try ArtifactDirectory.open(tmp.path), limits: limits)
        #expect(c.error?.message.contains("past the limit of 1000 bytes (--max-artifact-bytes)") == true, "\(c.error?.message ?? "")")
        #expect(tmp.entries().isEmpty)
        // A declared size over the limit is refused before a byte of it is read.
        tmp = ScratchDir()
        let header = ArtifactStream.magic + Stream.name("F", "huge") + [0, 0, 0, 1, 0, 0, 0, 0]
        c = receive(header, into: try ArtifactDirectory.open(tmp.path), limits: limits)
        #expect(c.error?.message.contains("(4294967296 bytes)") == true)
        #expect(tmp.entries().isEmpty)
    }

    @Test func aCutOrMalformedStreamPresentsNothing() throws {
        let whole = Stream.of([Stream.file("a.txt", "aaaa"), Stream.file("b.txt", "bbbb")])
        for cut in [5, 20, whole.count - 6, whole.count - 1] {
            let tmp = ScratchDir()
            let c = receive(Array(whole[..<cut]), into: try ArtifactDirectory.open(tmp.path))
            #expect(c.error?.message.contains("ended before it was complete") == true)
            #expect(tmp.entries().isEmpty, "cut at \(cut): \(tmp.entries())")
        }
        let cases: [([UInt8], String)] = [
            (Array("TAR!".utf8) + whole.dropFirst(4), "does not start as run.py's does"),
            (whole + [0x46], "more after the end"),
            (Stream.of([Stream.file("a.txt", "a")], count: 2), "its end counts 2 files, 1 arrived"),
            (Stream.of([Stream.file("a.txt", "a"), Stream.file("a.txt", "b")]), "twice, or as both a file and a directory"),
            (Stream.of([Stream.file("a", "a"), Stream.file("a/b", "b")]), "twice, or as both a file and a directory"),
            (ArtifactStream.magic + [UInt8(ascii: "Q")], "an unknown record"),
        ]
        for (bytes, why) in cases {
            let tmp = ScratchDir()
            let c = receive(bytes, into: try ArtifactDirectory.open(tmp.path))
            #expect(c.error?.message.contains(why) == true, "\(c.error?.message ?? "no error")")
            #expect(tmp.entries().isEmpty)
        }
        // No byte at all: run.py never streamed (the script ended the process itself): no files, no error.
        let tmp = ScratchDir()
        let c = receive([], into: try ArtifactDirectory.open(tmp.path))
        #expect(c.error == nil && !c.started && c.artifacts.isEmpty)
    }

    /// The attack on the host side: the output directory holds a link, planted before the run,
    /// where an artifact will land. It must not be followed (the victim keeps its bytes) nor
    /// replaced, and the run's other files are not presented either.
    @Test func aLinkPlantedInTheOutputDirectoryIsNeverFollowed() throws {
        let tmp = ScratchDir()
        let victim = tmp.url.appendingPathComponent("victim.txt")
        try Data("precious".utf8).write(to: victim)
        let out = tmp.url.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: out.appendingPathComponent("report.csv").path, withDestinationPath: victim.path)
        try FileManager.default.createSymbolicLink(atPath: out.appendingPathComponent("sub").path, withDestinationPath: tmp.path)
        for name in ["report.csv", "sub/victim.txt"] {
            let c = receive(Stream.of([Stream.file("first.txt", "1"), Stream.file(name, "overwritten")]), into: try ArtifactDirectory.open(out.path))
            #expect(c.error != nil, "\(name) was written through a link")
            #expect(c.artifacts.isEmpty)
            #expect(try String(contentsOf: victim, encoding: .utf8) == "precious")
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: out.appendingPathComponent("report.csv").path) == victim.path)
            #expect(tmp.entries().filter { $0.hasPrefix("out/") }.sorted() == ["out/report.csv", "out/sub"], "\(tmp.entries())")
        }
        // The output directory itself, or the default one's parent, as a link: refused.
        let linked = tmp.url.appendingPathComponent("linked")
        try FileManager.default.createSymbolicLink(atPath: linked.path, withDestinationPath: out.path)
        #expect(throws: RunnerError.self) { try ArtifactDirectory.open(linked.path) }
        let cwd = ScratchDir("cwd")
        try FileManager.default.createSymbolicLink(atPath: cwd.url.appendingPathComponent("sandbox-runner-out").path, withDestinationPath: tmp.path)
        #expect(throws: RunnerError.self) { try ArtifactDirectory.openDefault(base: cwd.path, runId: "r1") }
        let again = try ArtifactDirectory.openDefault(base: tmp.path, runId: "r2")
        #expect(throws: RunnerError.self) { try ArtifactDirectory.openDefault(base: tmp.path, runId: "r2") }
        #expect(again.path.hasSuffix("/sandbox-runner-out/r2"))
    }

    @Test func theStoreServesOnlyListedFilesByExactName() throws {
        let tmp = ScratchDir()
        let store = try ArtifactStore(directory: tmp.path + "/store", retention: .seconds(60))
        let output = store.output(forRun: "run-1", limits: ArtifactLimits())
        let receiver = ArtifactReceiver(output: output)
        let bytes = Stream.of([Stream.file("a/b.txt", "hello")])
        _ = bytes.withUnsafeBytes { receiver.feed($0) }
        let c = receiver.finish()
        var result = RunResult(success: true, output: "", error: nil, data: nil, exitCode: 0, durationMs: 0, template: nil, backend: "local",
                               runId: "run-1", stderr: "", truncated: false)
        result.artifacts = c.artifacts
        store.record(result)
        #expect(store.open(runId: "run-1", name: "a/b.txt").map { close($0.fd); return $0.artifact.bytes } == 5)
        for (run, name) in [("run-1", "a/../a/b.txt"), ("run-1", "../store/run-1/a/b.txt"), ("run-2", "a/b.txt"), ("run-1", "a")] {
            #expect(store.open(runId: run, name: name) == nil, "\(run) \(name)")
        }
        #expect(ArtifactStore.parse(uri: ArtifactStore.uri(runId: "run-1", name: "a b/c%.txt"))! == ("run-1", "a b/c%.txt"))
        store.remove(runId: "run-1")
        #expect(store.open(runId: "run-1", name: "a/b.txt") == nil)
        #expect(!FileManager.default.fileExists(atPath: tmp.path + "/store/run-1"))
    }
}
