import Foundation
import Testing
@testable import SandboxRunner

/// The runner's side of an extraction's state: the file replaced atomically and locked, and the
/// state a sandbox hands back checked before it is committed (the sandbox is not trusted to have
/// derived it from what it was given, nor to describe the data that arrived).
@Suite("Extraction state")
struct ExtractionStateTests {
    @Test func theStateFileIsReplacedWholeAndLocked() throws {
        let dir = ScratchDir("state")
        let path = dir.path + "/nested/events.state.json"
        let file = try StateFile(path: path)
        #expect(try file.read() == nil)
        try file.replace(with: Array("{\"v\":1}".utf8))
        try file.replace(with: Array("{\"v\":2}".utf8))
        #expect(try file.read() == Array("{\"v\":2}".utf8))
        #expect(ScratchDir.list(dir.path + "/nested") == ["events.state.json", "events.state.json.lock"], "no temporary left")
        // A second extract on the same state is refused while the first holds it.
        #expect(throws: RunnerError.self) { try StateFile(path: path) }
        // A link where the state should be is not read through.
        let link = dir.path + "/link.state"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: path)
        #expect(throws: RunnerError.self) { try StateFile(path: link).read() }
    }

    @Test func aStateFileReleasedByItsHolderCanBeTakenAgain() throws {
        let dir = ScratchDir("state")
        do { _ = try StateFile(path: dir.path + "/s.json") }
        _ = try StateFile(path: dir.path + "/s.json")
    }

    // MARK: what the sandbox hands back

    struct Handed {
        let dir: ArtifactDirectory
        let artifacts: [Artifact]
    }

    let settings = ExtractionSettings(resource: "events", since: "2026-11-01T00:00:00.000000Z", until: "2026-11-30T00:00:00.000000Z")
    let runId = "11111111-2222-3333-4444-555555555555"
    let sent = Array("{\"version\":1,\"resource\":\"events\",\"filter\":{\"events\":[]},\"watermark\":{\"time\":\"2026-11-29T10:00:00.000000Z\",\"id\":\"b\"}}".utf8)

    /// The data file and a state.json as a sandbox would write them into the staging directory.
    func hand(_ tmp: ScratchDir, state: (inout [String: JSONValue]) -> Void, data: String = "{\"uuid\":\"c\"}\n",
              extra: [String: String] = [:]) throws -> Handed {
        let dir = try ArtifactDirectory.open(tmp.path)
        let dataName = settings.dataName(runId: runId)
        var s: [String: JSONValue] = [
            "version": 1, "resource": "events", "filter": .object(["events": .array([])]), "previous": .string(SHA256.hex(sent)),
            "watermark": .object(["time": "2026-11-29T12:00:00.000000Z", "id": "c"]),
            "seen": .array([.array(["2026-11-29T12:00:00.000000Z", "c"])]), "lookback_minutes": 15,
            "data": .object(["file": .string(dataName), "sha256": .string(SHA256.hex(Array(data.utf8))), "bytes": .int(data.utf8.count)]),
        ]
        state(&s)
        var files = ["state.json": JSONValue.object(s).jsonText(), dataName: data]
        files.merge(extra) { a, _ in a }
        var artifacts: [Artifact] = []
        for (name, text) in files {
            try Data(text.utf8).write(to: tmp.url.appendingPathComponent(name))
            artifacts.append(Artifact(name: name, bytes: text.utf8.count, sha256: SHA256.hex(Array(text.utf8)), mediaType: Artifact.mediaType(of: name)))
        }
        return Handed(dir: dir, artifacts: artifacts)
    }

    func verify(_ h: Handed) throws -> JSONValue {
        try Extraction.verify(h.artifacts, in: h.dir, sent: sent, old: JSONValue.parse(Data(sent)), settings: settings, runId: runId).state
    }

    @Test func aConsistentStateIsAccepted() throws {
        let tmp = ScratchDir("handed")
        let state = try verify(try hand(tmp) { _ in })
        #expect(state["watermark"]?["time"] == "2026-11-29T12:00:00.000000Z")
    }

    /// The attacks: a script (or a sandbox it took over) hands back a state that would lose or
    /// repeat events. None may be committed.
    @Test(arguments: [
        ("a state not derived from the one sent", "was not derived from the state this run was given"),
        ("a watermark moved back", "moves the watermark back"),
        ("a data file other than the one that arrived", "does not describe the data file that arrived"),
        ("another extraction's state", "is for another extraction"),
        ("a claimed pending move", "claims a pending move"),
        ("ids seen after the watermark", "malformed list of the ids seen"),
        ("a watermark in another format", "has no watermark"),
        ("another lookback window", "has another lookback window"),
    ])
    func aForgedStateIsRefused(attack: String, refusal: String) throws {
        let tmp = ScratchDir("handed")
        let h = try hand(tmp) { s in
            switch attack {
            case "a state not derived from the one sent": s["previous"] = .string(SHA256.hex(Array("{}".utf8)))
            case "a watermark moved back": s["watermark"] = .object(["time": "2026-11-28T00:00:00.000000Z", "id": "z"])
            case "a data file other than the one that arrived":
                if case .object(var d)? = s["data"] {
                    d["sha256"] = .string(String(repeating: "0", count: 64))
                    s["data"] = .object(d)
                }
            case "another extraction's state": s["filter"] = .object(["events": .array(["$pageview"])])
            case "a claimed pending move": s["pending"] = .object(["staged": "/etc/passwd", "final": "/tmp/x", "sha256": "0"])
            case "ids seen after the watermark": s["seen"] = .array([.array(["2026-11-30T00:00:00.000000Z", "d"])])
            case "another lookback window": s["lookback_minutes"] = 1
            default: s["watermark"] = .object(["time": "2026-11-29 12:00", "id": "c"])
            }
        }
        do {
            _ = try verify(h)
            Issue.record("\(attack) was accepted")
        } catch let e as RunnerError {
            #expect(e.message.contains(refusal), "\(e.message)")
            #expect(e.message.contains("nothing was committed"))
        }
    }

    @Test func onlyTheExpectedFilesMayComeBack() throws {
        let tmp = ScratchDir("handed")
        let h = try hand(tmp, state: { _ in }, extra: ["more.json": "{}"])
        #expect(throws: RunnerError.self) { try verify(h) }
    }
}
