import CSystemShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The artifacts of runs made for agents (`serve`, `mcp`), kept for a retention period in a
/// private directory of the runner's (`<root>/<run id>/…`, 0700, made fresh unless named), then
/// removed. Only what a run's result listed can be read back, by exact run id and name: a
/// request's path is never joined onto the file system.
public final class ArtifactStore: @unchecked Sendable {
    public let root: ArtifactDirectory
    public let retention: Duration
    /// Bytes kept at most across runs; the oldest runs go first past it.
    public let maxBytes: Int
    private let removeRootAtClose: Bool
    private let parentPath: String
    private let lock = NSLock()
    private struct Entry {
        var created: ContinuousClock.Instant
        var artifacts: [String: Artifact] = [:]
        var bytes = 0
    }
    private var runs: [String: Entry] = [:]

    /// `directory`: where to keep them (made when missing); nil makes a fresh private directory
    /// under $TMPDIR, removed by `close()`.
    public init(directory: String? = nil, retention: Duration = .seconds(600), maxBytes: Int = 4 << 30) throws {
        self.retention = retention
        self.maxBytes = maxBytes
        if let directory {
            root = try ArtifactDirectory.open(directory)
            removeRootAtClose = false
            parentPath = ""
        } else {
            let tmp = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
            var template = Array((tmp + "/sandbox-runner-artifacts-XXXXXX").utf8CString)
            guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
                throw RunnerError(.unavailable, "Could not create a directory for the runs' files under \(tmp) (\(String(cString: strerror(errno)))); "
                    + "set TMPDIR or --artifacts-dir to a writable directory.")
            }
            let path = String(cString: made)
            root = try ArtifactDirectory.open(path)
            removeRootAtClose = true
            parentPath = path
        }
        _ = fchmod(root.fd, 0o700)
    }

    /// Where a run's files go: `<root>/<run id>/`, made when the first file arrives.
    public func output(forRun runId: String, limits: ArtifactLimits) -> ArtifactOutput {
        let root = self.root
        lock.withLock { runs[runId] = Entry(created: .now) }
        return ArtifactOutput(limits: limits) { try root.subdirectory(Self.directoryName(runId), mustBeNew: true) }
    }

    /// Remembers what a finished run handed back (only these can be read), then applies the bounds.
    public func record(_ result: RunResult) {
        lock.withLock {
            var e = runs[result.runId] ?? Entry(created: .now)
            for a in result.artifacts { e.artifacts[a.name] = a }
            e.bytes = result.artifacts.reduce(0) { $0 + $1.bytes }
            runs[result.runId] = e
        }
        evict(now: .now)
    }

    /// The artifacts a run handed back, or nil when the store has no such run.
    public func artifacts(ofRun runId: String) -> [Artifact]? {
        lock.withLock { runs[runId].map { Array($0.artifacts.values).sorted { $0.name < $1.name } } }
    }

    /// Every retained run's artifacts, newest run first.
    public func all() -> [(runId: String, artifacts: [Artifact])] {
        lock.withLock {
            runs.sorted { $0.value.created > $1.value.created }
                .filter { !$0.value.artifacts.isEmpty }
                .map { ($0.key, $0.value.artifacts.values.sorted { $0.name < $1.name }) }
        }
    }

    /// Opens a listed artifact for reading: the descriptor (the caller closes it) and its entry.
    public func open(runId: String, name: String) -> (fd: Int32, artifact: Artifact)? {
        guard let artifact = lock.withLock({ runs[runId]?.artifacts[name] }) else { return nil }
        guard let dir = try? root.subdirectory(Self.directoryName(runId), mustBeNew: false),
              let file = dir.openFile(name) else { return nil }
        guard file.size == artifact.bytes else { Glibc.close(file.fd); return nil }
        return (file.fd, artifact)
    }

    /// Forgets a run and removes its files.
    public func remove(runId: String) {
        let known = lock.withLock { runs.removeValue(forKey: runId) != nil }
        if known { root.removeTree(Self.directoryName(runId)) }
    }

    /// Removes runs past the retention period, then the oldest while the total is over `maxBytes`.
    public func evict(now: ContinuousClock.Instant) {
        var doomed: [String] = []
        lock.withLock {
            for (id, e) in runs where now - e.created >= retention { doomed.append(id) }
            for id in doomed { runs[id] = nil }
            var total = runs.values.reduce(0) { $0 + $1.bytes }
            for (id, e) in runs.sorted(by: { $0.value.created < $1.value.created }) where total > maxBytes {
                total -= e.bytes
                runs[id] = nil
                doomed.append(id)
            }
        }
        for id in doomed { root.removeTree(Self.directoryName(id)) }
    }

    /// Removes every run's files (and the directory, when the store made it).
    public func close() {
        let ids = lock.withLock { () -> [String] in
            let all = Array(runs.keys)
            runs = [:]
            return all
        }
        for id in ids { root.removeTree(Self.directoryName(id)) }
        if removeRootAtClose { _ = rmdir(parentPath) }
    }

    /// A run id as a directory name: run ids are the runner's own UUIDs; anything else is hashed.
    static func directoryName(_ runId: String) -> String {
        let ok = !runId.isEmpty && runId.count <= 64 && runId.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        return ok ? runId : SHA256.hex(Array(runId.utf8))
    }

    /// The MCP URI of an artifact.
    public static func uri(runId: String, name: String) -> String {
        "sandbox-runner://runs/\(runId)/artifacts/" + (Artifact(name: name, bytes: 0, sha256: "", mediaType: "").urlEncodedName)
    }

    /// The run id and name of an MCP artifact URI, or nil.
    public static func parse(uri: String) -> (runId: String, name: String)? {
        let prefix = "sandbox-runner://runs/"
        guard uri.hasPrefix(prefix) else { return nil }
        let rest = uri.dropFirst(prefix.count)
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        let runId = String(rest[..<slash])
        let tail = rest[rest.index(after: slash)...]
        guard tail.hasPrefix("artifacts/") else { return nil }
        guard let name = String(tail.dropFirst("artifacts/".count)).removingPercentEncoding, !name.isEmpty else { return nil }
        return (runId, name)
    }
}
