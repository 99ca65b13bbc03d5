import CSystemShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What to extract (`sandbox-runner extract`).
public struct ExtractionSettings: Sendable {
    public static let resources = ["cohorts", "events", "feature_flags", "persons"]

    public var resource: String
    /// Only these events (events only; empty: all).
    public var events: [String] = []
    /// Where a first run starts (ISO 8601, UTC).
    public var since: String
    /// Where every run stops (exclusive): the runner's clock when it starts, so an event stamped in
    /// the future waits for its time.
    public var until: String
    public var lookbackMinutes = 15
    public var format = "jsonl"
    public var gzip = false
    public var pageSize = 10_000
    /// Stop after this many rows (the state continues from there); nil: no bound.
    public var maxRows: Int?
    /// Bytes the data file may reach (it must fit in the sandbox's workspace and under the run's
    /// artifact limit): the run ends as partial ("size") before, and the next continues. nil: no bound.
    public var maxFileBytes: Int?
    /// Seconds one PostHog call may wait out throttling before the run ends early (partial).
    public var maxWaitSeconds = 10
    public var timeout: Duration = .seconds(900)
    /// `--list`: discover the resources and their columns instead.
    public var list = false

    public init(resource: String, since: String, until: String) {
        self.resource = resource
        self.since = since
        self.until = until
    }

    /// The run's `extract.json`.
    var config: JSONValue {
        let margin = max(5, min(30, Int(timeout.components.seconds) / 10))
        return .object([
            "resource": .string(resource), "events": .array(events.sorted().map(JSONValue.string)), "since": .string(since),
            "until": .string(until), "lookback_minutes": .int(lookbackMinutes), "format": .string(format), "gzip": .bool(gzip),
            "page_size": .int(pageSize), "max_rows": maxRows.map(JSONValue.int) ?? .null, "max_bytes": maxFileBytes.map(JSONValue.int) ?? .null,
            "max_wait": .int(maxWaitSeconds),
            // The script ends by itself (with what it has, a consistent state) before the run's timeout kills it.
            "deadline_seconds": .int(max(5, Int(timeout.components.seconds) - margin)), "list": .bool(list),
        ])
    }

    /// The data file's name the run must hand back.
    func dataName(runId: String) -> String {
        "\(resource)-\(runId.prefix(36)).\(format)" + (gzip ? ".gz" : "")
    }

    /// The instant text the state uses (`2026-11-30T08:00:00.000000Z`), for now or an offset from it.
    public static func iso(_ date: Date) -> String {
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded(.down))
        var seconds = time_t(micros / 1_000_000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                      Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(micros % 1_000_000))
    }
}

/// What an extract run came to (the CLI prints it).
public struct ExtractionReport: Sendable {
    public var success = false
    public var resource: String
    public var runId: String
    public var rows = 0
    public var partial = false
    public var reason: String?
    public var skippedDuplicates = 0
    public var watermark: JSONValue = .null
    /// The delivered data file (absolute path, bytes, sha256), once it is in place.
    public var file: JSONValue = .null
    public var statePath: String
    /// Whether the state file now describes this run.
    public var stateCommitted = false
    /// A previous run's data file this run moved into place first (that run died after committing).
    public var recovered: String?
    public var error: String?
    public var errorKind: RunnerError.Kind?
    public var durationMs = 0
    public var sandboxPeakRssKiB: Int?
    public var runnerPeakRssKiB = 0
    public var data: JSONValue = .null
    public var run: RunResult?

    public init(resource: String, runId: String, statePath: String) {
        self.resource = resource
        self.runId = runId
        self.statePath = statePath
    }

    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "success": .bool(success), "resource": .string(resource), "runId": .string(runId), "rows": .int(rows),
            "partial": .bool(partial), "reason": reason.map(JSONValue.string) ?? .null, "skippedDuplicates": .int(skippedDuplicates),
            "watermark": watermark, "file": file, "state": .string(statePath), "stateCommitted": .bool(stateCommitted),
            "recovered": recovered.map(JSONValue.string) ?? .null, "error": error.map(JSONValue.string) ?? .null,
            "errorKind": errorKind.map { .string($0.rawValue) } ?? .null, "durationMs": .int(durationMs),
            "peakRssKiB": .object(["sandbox": sandboxPeakRssKiB.map(JSONValue.int) ?? .null, "runner": .int(runnerPeakRssKiB)]),
        ]
        if case .object(let d) = data {
            for k in ["columns", "fingerprint", "from", "until", "seenInWindow", "retryAfter"] { o[k] = d[k] ?? .null }
        }
        if let run, let doc = JSONValue.parse(Data(run.jsonText(pretty: false).utf8)) {
            o["run"] = .object((doc.objectValue ?? [:]).filter { ["exitCode", "stderr", "durationMs", "timedOut", "isolation", "backend"].contains($0.key) })
        }
        return .object(o)
    }

    /// The CLI's exit status.
    public var exitStatus: Int32 {
        if success { return 0 }
        return errorKind?.exitCode ?? 1
    }
}

/// One incremental extraction run: the state file's last committed run finished if it died
/// half-way, the state handed to the sandbox, the data and the new state handed back as
/// artifacts into a staging directory inside the output directory, both checked, then committed:
///
///  1. the new state, naming the staged data file as `pending`, replaces the state file (atomic);
///  2. the data file is renamed from staging into the output directory (never replacing anything);
///  3. the state is written again without `pending`.
///
/// A crash before 1 leaves the old state (the staged file is never presented: its directory is
/// hidden, and nothing names it); after 1, the next run finishes 2 and 3 before anything else. So
/// a data file with its final name exists exactly when the state file counts it: rerunning after
/// any failure repeats nothing and loses nothing.
public struct Extraction: Sendable {
    public var executor: Executor
    public var settings: ExtractionSettings
    public var state: StateFile
    /// The output directory (made when first needed).
    public var outputDirectory: @Sendable () throws -> ArtifactDirectory
    public var limits = ArtifactLimits()
    /// `SANDBOX_RUNNER_FAILPOINT=extract:NAME`: the runner SIGKILLs itself at NAME (tests of the
    /// commit protocol): before-commit, after-commit, after-move.
    public var failpoint: String?

    public init(executor: Executor, settings: ExtractionSettings, state: StateFile,
                outputDirectory: @escaping @Sendable () throws -> ArtifactDirectory) {
        self.executor = executor
        self.settings = settings
        self.state = state
        self.outputDirectory = outputDirectory
    }

    static let script = "from posthog_driver.extract import main\n\nmain()\n"

    public func run(runId: String = RunRequest.newRunId(), killer: ProcessKiller = ProcessKiller()) async -> ExtractionReport {
        let clock = ContinuousClock()
        let start = clock.now
        var report = ExtractionReport(resource: settings.resource, runId: runId, statePath: state.path)
        func done(_ r: inout ExtractionReport) -> ExtractionReport {
            r.durationMs = Int((clock.now - start).milliseconds)
            r.runnerPeakRssKiB = sr_peak_rss_kib()
            return r
        }
        func failed(_ e: RunnerError) -> ExtractionReport {
            report.error = e.message
            report.errorKind = e.kind
            return done(&report)
        }

        // The state as the operator keeps it; a committed run's data file that never got moved comes first.
        var current: [UInt8]
        do {
            current = try state.read() ?? []
            if !current.isEmpty {
                let (bytes, recovered) = try Self.finishPending(current, state: state)
                current = bytes
                report.recovered = recovered
            }
        } catch let e as RunnerError {
            return failed(e)
        } catch {
            return failed(RunnerError(.internalError, "\(error)"))
        }
        let old = current.isEmpty ? nil : JSONValue.parse(Data(current))
        if !current.isEmpty {
            guard let old, old["version"]?.intValue == 1 else {
                return failed(RunnerError(.badInput, "The state file \(state.path) is not an extraction state (version 1); name another --state file."))
            }
            guard old["resource"]?.stringValue == settings.resource,
                  old["filter"] == .object(["events": .array(settings.events.sorted().map(JSONValue.string))]) else {
                return failed(RunnerError(.badInput, "The state file \(state.path) belongs to another extraction (resource \(old["resource"]?.display ?? "?"), "
                    + "filter \(old["filter"]?.display ?? "?")); give this one its own --state file."))
            }
        }
        if let lookback = old?["lookback_minutes"]?.intValue, lookback != settings.lookbackMinutes {
            // The ids the state keeps are those of one window: another window would repeat or lose events.
            return failed(RunnerError(.badInput, "The state file \(state.path) was made with a \(lookback)-minute lookback; pass "
                + "--lookback-minutes \(lookback), or start a new --state file for another window."))
        }
        report.watermark = old?["watermark"] ?? .null

        // The run: the state goes in as a bundle file; data and the new state come back as artifacts.
        let staging = ".sandbox-runner-staging-" + runId
        let outputDirectory = self.outputDirectory
        let stagingBox = DirectoryBox()
        let output = ArtifactOutput(limits: limits) {
            let dir = try outputDirectory().subdirectory(staging, mustBeNew: true)
            stagingBox.set(dir)
            return dir
        }
        var request = RunRequest(source: .script(source: Self.script, label: "extract.py"), timeout: settings.timeout, network: .host,
                                 runId: runId)
        request.bundleFiles = ["extract.json": Array(settings.config.jsonText().utf8), "state.json": current]
        request.artifacts = output
        let result = await executor.run(request, killer: killer)
        report.run = result
        let discard = { () -> Void in
            // Only when the run made its staging directory (the output directory exists then).
            if stagingBox.get() != nil, let dir = try? outputDirectory() { dir.removeTree(staging) }
        }
        guard result.success, case .object(let summary)? = result.data else {
            discard()
            report.error = result.error ?? "The extraction printed no summary; see its stderr."
            report.errorKind = result.errorKind ?? .scriptFailed
            return done(&report)
        }
        report.data = result.data ?? .null
        report.rows = summary["rows"]?.intValue ?? 0
        report.partial = summary["partial"]?.boolValue ?? false
        report.reason = summary["reason"]?.stringValue
        report.skippedDuplicates = summary["skippedDuplicates"]?.intValue ?? 0
        report.sandboxPeakRssKiB = summary["peakRssKiB"]?.intValue
        if summary["file"] == nil || summary["file"] == .null {
            // Nothing new: no file, and the state stays as it is.
            guard result.artifacts.isEmpty else {
                discard()
                return failed(RunnerError(.scriptFailed, "The extraction reported no rows but handed back files; nothing was committed."))
            }
            report.success = true
            return done(&report)
        }

        // Check what came back against what was asked and what was sent, before anything is committed.
        let verified: (state: JSONValue, data: Artifact)
        do {
            guard let dir = stagingBox.get() else { throw RunnerError(.scriptFailed, "The extraction handed back no files; nothing was committed.") }
            verified = try Self.verify(result.artifacts, in: dir, sent: current, old: old, settings: settings, runId: runId)
        } catch let e as RunnerError {
            discard()
            return failed(e)
        } catch {
            discard()
            return failed(RunnerError(.internalError, "\(error)"))
        }
        guard let outDir = try? outputDirectory(), let stagingDir = stagingBox.get() else {
            discard()
            return failed(RunnerError(.internalError, "The output directory could not be opened again; nothing was committed."))
        }
        let dataName = verified.data.name
        let finalPath = outDir.path + "/" + dataName
        let stagedPath = stagingDir.path + "/" + dataName

        // 1. Commit: the new state, naming the staged file as pending.
        hit("before-commit")
        var committed = verified.state.objectValue ?? [:]
        committed["pending"] = .object(["staged": .string(stagedPath), "final": .string(finalPath), "sha256": .string(verified.data.sha256)])
        do {
            try state.replace(with: Array(JSONValue.object(committed).jsonText().utf8))
        } catch let e as RunnerError {
            discard()
            return failed(e)
        } catch {
            discard()
            return failed(RunnerError(.internalError, "\(error)"))
        }
        report.stateCommitted = true
        report.watermark = verified.state["watermark"] ?? .null
        hit("after-commit")
        // 2. The data file into place; 3. the state without pending.
        do {
            _ = try outDir.move(dataName, from: stagingDir, to: dataName)
            outDir.sync()
            hit("after-move")
            committed["pending"] = nil
            try state.replace(with: Array(JSONValue.object(committed).jsonText().utf8))
        } catch let e as RunnerError {
            // The state already counts this run: the next run finishes the move (or says what is missing).
            report.error = e.message + " The state counts this run; the next extract finishes moving its file into place."
            report.errorKind = e.kind
            return done(&report)
        } catch {
            report.error = "\(error)"
            report.errorKind = .internalError
            return done(&report)
        }
        outDir.removeTree(staging)
        report.file = .object(["path": .string(finalPath), "bytes": .int(verified.data.bytes), "sha256": .string(verified.data.sha256)])
        report.success = true
        return done(&report)
    }

    /// `extract --list`: the resources with their columns and a deterministic fingerprint.
    public static func discover(executor: Executor, settings: ExtractionSettings, killer: ProcessKiller = ProcessKiller()) async -> RunResult {
        var s = settings
        s.list = true
        var request = RunRequest(source: .script(source: script, label: "extract.py"), timeout: settings.timeout, network: .host)
        request.bundleFiles = ["extract.json": Array(s.config.jsonText().utf8)]
        return await executor.run(request, killer: killer)
    }

    func hit(_ name: String) {
        if failpoint == "extract:" + name {
            FileHandle.standardError.write(Data("sandbox-runner: failpoint extract:\(name): SIGKILL\n".utf8))
            kill(getpid(), SIGKILL)
        }
    }

    /// Checks the files a run handed back: exactly the data file it had to write and `state.json`;
    /// the state for this extraction, derived from the state that was sent (its sha256), not
    /// moving the watermark back, and naming the data file with the size and sha256 the host
    /// computed. Returns the new state and the data file's entry.
    static func verify(_ artifacts: [Artifact], in dir: ArtifactDirectory, sent: [UInt8], old: JSONValue?,
                       settings: ExtractionSettings, runId: String) throws -> (state: JSONValue, data: Artifact) {
        let dataName = settings.dataName(runId: runId)
        let names = Set(artifacts.map(\.name))
        guard names == ["state.json", dataName], let data = artifacts.first(where: { $0.name == dataName }),
              let stateEntry = artifacts.first(where: { $0.name == "state.json" }) else {
            throw RunnerError(.scriptFailed, "The extraction handed back \(artifacts.map(\.name).sorted().joined(separator: ", ")) instead of "
                + "\(dataName) and state.json; nothing was committed.")
        }
        guard let file = dir.openFile("state.json"), file.size == stateEntry.bytes else {
            throw RunnerError(.internalError, "The new state could not be read back; nothing was committed.")
        }
        var bytes = [UInt8](repeating: 0, count: file.size)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(file.fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            offset += n
        }
        close(file.fd)
        guard offset == bytes.count, SHA256.hex(bytes) == stateEntry.sha256, let new = JSONValue.parse(Data(bytes)),
              case .object(let s) = new else {
            throw RunnerError(.scriptFailed, "The new state the extraction handed back is not JSON; nothing was committed.")
        }
        func refuse(_ why: String) -> RunnerError {
            RunnerError(.scriptFailed, "The new state the extraction handed back \(why); nothing was committed and the old state stands.")
        }
        guard s["version"]?.intValue == 1, s["resource"]?.stringValue == settings.resource,
              s["filter"] == .object(["events": .array(settings.events.sorted().map(JSONValue.string))]) else {
            throw refuse("is for another extraction")
        }
        guard s["previous"]?.stringValue == SHA256.hex(sent) else { throw refuse("was not derived from the state this run was given") }
        guard case .object(let d)? = s["data"], d["file"]?.stringValue == dataName, d["sha256"]?.stringValue == data.sha256,
              d["bytes"]?.intValue == data.bytes else {
            throw refuse("does not describe the data file that arrived (name, size or sha256 differ)")
        }
        guard s["pending"] == nil || s["pending"] == .null else { throw refuse("claims a pending move") }
        if ExtractionSettings.incremental(settings.resource) {
            guard s["lookback_minutes"]?.intValue == settings.lookbackMinutes else { throw refuse("has another lookback window") }
            guard case .object(let w)? = s["watermark"], let t = w["time"]?.stringValue, let i = w["id"]?.stringValue, isInstant(t) else {
                throw refuse("has no watermark")
            }
            if case .object(let ow)? = old?["watermark"], let ot = ow["time"]?.stringValue, let oi = ow["id"]?.stringValue {
                guard (t, i) >= (ot, oi) else { throw refuse("moves the watermark back (\(t) before \(ot))") }
            }
            guard case .array(let seen)? = s["seen"], seen.allSatisfy({ e in
                guard case .array(let pair) = e, pair.count == 2, let pt = pair[0].stringValue, pair[1].stringValue != nil else { return false }
                return isInstant(pt) && pt <= t
            }) else {
                throw refuse("has a malformed list of the ids seen inside the lookback window")
            }
        }
        return (new, data)
    }

    /// `2026-11-30T08:00:00.000000Z`: the one instant format the state uses, so instants compare as text.
    static func isInstant(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard b.count == 27 else { return false }
        let digits: Set<Int> = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25]
        for (i, c) in b.enumerated() {
            switch i {
            case 4, 7: if c != UInt8(ascii: "-") { return false }
            case 10: if c != UInt8(ascii: "T") { return false }
            case 13, 16: if c != UInt8(ascii: ":") { return false }
            case 19: if c != UInt8(ascii: ".") { return false }
            case 26: if c != UInt8(ascii: "Z") { return false }
            default: if !digits.contains(i) || !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) { return false }
            }
        }
        return true
    }

    /// A state whose last run died after committing (it names a `pending` data file): the file is
    /// moved into place (or found there) and the state rewritten without it. Returns the state's
    /// bytes and the final path when something was finished.
    static func finishPending(_ bytes: [UInt8], state: StateFile) throws -> ([UInt8], String?) {
        guard case .object(var s)? = JSONValue.parse(Data(bytes)), case .object(let p)? = s["pending"] else { return (bytes, nil) }
        guard let staged = p["staged"]?.stringValue, let final = p["final"]?.stringValue, let sha = p["sha256"]?.stringValue else {
            throw RunnerError(.badInput, "The state file \(state.path) names a pending data file without its paths; restore the state file from a backup.")
        }
        let finalURL = URL(fileURLWithPath: final)
        let stagedURL = URL(fileURLWithPath: staged)
        let outDir = try ArtifactDirectory.open(finalURL.deletingLastPathComponent().path)
        let leaf = finalURL.lastPathComponent
        if let f = outDir.openFile(leaf) {
            let digest = hashFile(f.fd)
            close(f.fd)
            guard digest == sha else {
                throw RunnerError(.badInput, "\(final) is not the data file the state counts (its sha256 differs); move it away and extract again.")
            }
        } else {
            let stagingDir: ArtifactDirectory
            do { stagingDir = try ArtifactDirectory.open(stagedURL.deletingLastPathComponent().path) } catch {
                throw missing(final, staged)
            }
            guard let f = stagingDir.openFile(stagedURL.lastPathComponent) else { throw missing(final, staged) }
            let digest = hashFile(f.fd)
            close(f.fd)
            guard digest == sha else { throw missing(final, staged) }
            _ = try outDir.move(stagedURL.lastPathComponent, from: stagingDir, to: leaf)
            outDir.sync()
        }
        outDir.removeTree(stagedURL.deletingLastPathComponent().lastPathComponent)
        s["pending"] = nil
        let fresh = Array(JSONValue.object(s).jsonText().utf8)
        try state.replace(with: fresh)
        return (fresh, final)
    }

    static func missing(_ final: String, _ staged: String) -> RunnerError {
        RunnerError(.badInput, "The state counts a data file that is neither at \(final) nor at \(staged); restore it there, "
            + "or, to accept losing those rows, delete the \"pending\" entry from the state file.")
    }

    static func hashFile(_ fd: Int32) -> String {
        var h = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            buffer.withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        return h.finalizeHex()
    }
}

extension ExtractionSettings {
    static func incremental(_ resource: String) -> Bool { resource == "events" || resource == "persons" }
}

/// The staging directory once the first file made it.
final class DirectoryBox: @unchecked Sendable {
    private let lock = NSLock()
    private var dir: ArtifactDirectory?
    func set(_ d: ArtifactDirectory) { lock.withLock { dir = d } }
    func get() -> ArtifactDirectory? { lock.withLock { dir } }
}
