import ArgumentParser
import Dispatch
import Foundation
import SandboxRunner

struct ExtractCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract",
        abstract: "Extract PostHog data incrementally into files, with the state kept in a file of yours.",
        discussion: """
        Each run reads from the state's watermark minus the lookback window (or from --since on a first run), skips what \
        was already delivered, writes <resource>-<run-id>.jsonl|csv[.gz] into --out-dir, and replaces --state atomically \
        only once that file is complete and checked. Rerun it after any failure: nothing is repeated or lost. \
        Example: sandbox-runner extract events --state ./events.state.json --demo
        """
    )

    @Argument(help: "What to extract: events, persons, cohorts or feature_flags (see --list).")
    var resource: String?

    @Flag(help: "List the resources with their columns and a fingerprint of that schema, and extract nothing.")
    var list = false

    @Option(help: ArgumentHelp("The state file (made on the first run, replaced atomically after each).", valueName: "file"))
    var state: String?

    @Option(help: ArgumentHelp("Only these events (events only; comma-separated).", valueName: "names"))
    var events: String?

    @Option(help: ArgumentHelp("Where a first run starts: an ISO 8601 time, or an age such as 30d or 12h.", valueName: "when"))
    var since = "30d"

    @Option(help: ArgumentHelp("Minutes before the watermark each run reads again, for events that arrive late.", valueName: "minutes"))
    var lookbackMinutes = 15

    @Option(help: "File format: jsonl or csv.") var format = "jsonl"
    @Flag(help: "Compress the data file with gzip.") var gzip = false
    @Option(help: ArgumentHelp("Rows per PostHog query.", valueName: "N")) var pageSize = 10_000
    @Option(help: ArgumentHelp("Stop after N rows; the next run continues from there.", valueName: "N")) var maxRows: Int?
    @Option(help: ArgumentHelp("Seconds one PostHog call may wait out throttling; past it the run ends early (partial) with what it has.",
                               valueName: "seconds"))
    var maxWait = 10

    @OptionGroup var options: RunOptions
    @OptionGroup var output: OutputDirectoryOptions

    func validate() throws {
        if !list {
            guard let resource else { throw ValidationError("Name what to extract (events, persons, cohorts, feature_flags), or pass --list.") }
            guard ExtractionSettings.resources.contains(resource) else {
                throw ValidationError("Unknown resource '\(resource)'. Available: \(ExtractionSettings.resources.joined(separator: ", ")).")
            }
            guard state != nil else { throw ValidationError("--state FILE is required: the extraction's state lives there, outside the sandbox.") }
            if events != nil && resource != "events" { throw ValidationError("--events filters events only.") }
        }
        guard ["jsonl", "csv"].contains(format) else { throw ValidationError("--format must be jsonl or csv.") }
        guard (0...10_080).contains(lookbackMinutes) else { throw ValidationError("--lookback-minutes must be 0 to 10080 (a week).") }
        guard (1...50_000).contains(pageSize) else { throw ValidationError("--page-size must be 1 to 50000 (PostHog's cap).") }
        if let m = maxRows, m < 1 { throw ValidationError("--max-rows must be at least 1.") }
        guard (0...3600).contains(maxWait) else { throw ValidationError("--max-wait must be 0 to 3600 seconds.") }
        if let names = events {
            for n in names.split(separator: ",") where n.isEmpty || n.count > 200 || n.unicodeScalars.contains(where: { TerminalText.isControl($0) }) {
                throw ValidationError("--events takes event names separated by commas.")
            }
        }
        _ = try Self.parseSince(since, now: Date())
    }

    /// `30d`, `12h`, `90m` before now, or an ISO 8601 time; as the state's instant text.
    static func parseSince(_ text: String, now: Date) throws -> String {
        if let unit = text.last, let n = Int(text.dropLast()), n >= 0, let seconds = ["d": 86_400, "h": 3_600, "m": 60][String(unit)] {
            return ExtractionSettings.iso(now.addingTimeInterval(-Double(n * seconds)))
        }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let g = ISO8601DateFormatter()
        if let d = f.date(from: text) ?? g.date(from: text) { return ExtractionSettings.iso(d) }
        throw ValidationError("--since takes an age such as 30d, 12h or 90m, or an ISO 8601 time such as 2026-11-01T00:00:00Z.")
    }

    func run() async throws {
        let context = try Context.load()
        let now = Date()
        var settings = ExtractionSettings(resource: resource ?? "events", since: try Self.parseSince(since, now: now),
                                          until: ExtractionSettings.iso(now))
        settings.events = (events ?? "").split(separator: ",").map(String.init)
        settings.lookbackMinutes = lookbackMinutes
        settings.format = format
        settings.gzip = gzip
        settings.pageSize = pageSize
        settings.maxRows = maxRows
        // Room for the state file and the bundle beside the data file: an eighth (16 MiB at most)
        // of the smaller of the artifact limit and (local jail) the workspace.
        let room = options.backend == "local" ? min(options.artifactLimits.maxTotalBytes, JailLimits().workspaceBytes)
                                               : options.artifactLimits.maxTotalBytes
        settings.maxFileBytes = max(1 << 20, room - min(16 << 20, room / 8))
        settings.maxWaitSeconds = maxWait
        settings.timeout = options.timeoutDuration ?? .seconds(900)

        let setup = RunSetup.make(options: options, catalog: TemplateCatalog(builtIn: nil), context: context)
        let killer = ProcessKiller()
        let signals = killOnSignals(killer)
        defer { signals.forEach { $0.cancel() } }

        if list {
            let result = await Extraction.discover(executor: setup.executor, settings: settings, killer: killer)
            setup.stop()
            if !result.success || result.data == nil {
                if options.json { printJSON(result, pretty: false) }
                fail(RunnerError(result.errorKind ?? .scriptFailed, result.error ?? "Discovery printed nothing; see its stderr."))
            }
            if options.json {
                FileHandle.standardOutput.write(Data((result.data!.jsonText() + "\n").utf8))
            } else {
                for r in result.data?["resources"]?.arrayValue ?? [] {
                    let cols = r["columns"]?.arrayValue?.compactMap(\.stringValue) ?? []
                    print("\(r["name"]?.display ?? "?")  (\(r["kind"]?.display ?? "?"); \(cols.count) columns)  \(TerminalText.escape(r["description"]?.display ?? ""))")
                    print("  " + TerminalText.escape(cols.joined(separator: ", ")))
                }
                print("fingerprint \(result.data?["fingerprint"]?.display ?? "?")")
            }
            finish(0)
        }

        let runId = RunRequest.newRunId()
        let stateFile: StateFile
        do { stateFile = try StateFile(path: state!) } catch let e as RunnerError {
            setup.stop()
            if options.json {
                var report = ExtractionReport(resource: settings.resource, runId: runId, statePath: state!)
                report.error = e.message
                report.errorKind = e.kind
                FileHandle.standardOutput.write(Data((report.json.jsonText() + "\n").utf8))
                finish(e.exitCode)
            }
            fail(e)
        }
        let out = LazyDirectory(outDir: output.outDir, runId: runId)
        var extraction = Extraction(executor: setup.executor, settings: settings, state: stateFile) { try out.get() }
        extraction.limits = options.artifactLimits
        extraction.limits.maxCount = max(extraction.limits.maxCount, 2)
        extraction.failpoint = context.environment["SANDBOX_RUNNER_FAILPOINT"]
        let report = await extraction.run(runId: runId, killer: killer)
        setup.stop()
        if options.json {
            FileHandle.standardOutput.write(Data((report.json.jsonText() + "\n").utf8))
        } else {
            var lines: [String] = []
            if let recovered = report.recovered { lines.append("finished the last run's delivery: \(recovered)") }
            let partial = report.partial ? " (partial: \(report.reason ?? "stopped early"); run again to continue)" : ""
            if case .object(let f) = report.file {
                lines.append("\(report.resource): \(report.rows) rows\(partial) -> \(f["path"]?.display ?? "?") (\(f["bytes"]?.display ?? "?") bytes, "
                    + "sha256 \(f["sha256"]?.display.prefix(12) ?? "?")…)")
            } else if report.success {
                lines.append("\(report.resource): nothing new\(partial)")
            }
            if report.skippedDuplicates > 0 { lines.append("skipped \(report.skippedDuplicates) already delivered (the lookback window)") }
            if report.stateCommitted {
                lines.append("state: \(report.statePath) (watermark \(report.watermark["time"]?.display ?? "-"))")
            } else {
                lines.append("state: \(report.statePath) unchanged")
            }
            print(TerminalText.escape(lines.joined(separator: "\n")))
            if let error = report.error { FileHandle.standardError.write(Data("error: \(TerminalText.escape(error))\n".utf8)) }
        }
        finish(report.exitStatus)
    }
}

/// The extraction's output directory, made on first use and the same one after.
final class LazyDirectory: @unchecked Sendable {
    private let lock = NSLock()
    private var dir: ArtifactDirectory?
    let outDir: String?
    let runId: String
    init(outDir: String?, runId: String) {
        self.outDir = outDir
        self.runId = runId
    }
    func get() throws -> ArtifactDirectory {
        try lock.withLock {
            if let dir { return dir }
            let d = try outDir.map { try ArtifactDirectory.open($0) } ?? ArtifactDirectory.openDefault(runId: runId)
            dir = d
            return d
        }
    }
}
