import ArgumentParser
import Dispatch
import Foundation
import SandboxRunner

/// How `run` and `exec` print their result.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json, csv
}

/// Output choices of `run` and `exec`.
struct OutputOptions: ParsableArguments {
    @Option(help: ArgumentHelp("table (for people; the default on a terminal), json (the result document; the default otherwise) or csv (the main table).",
                               valueName: "format"))
    var format: OutputFormat?

    @Option(help: ArgumentHelp("Also write the result as one self-contained HTML page (charts as inline SVG, nothing loaded from the network).",
                               valueName: "file.html"),
            completion: .file(extensions: ["html"]))
    var report: String?

    init() {}
    init(report: String?) { self.report = report }

    func check(json: Bool) throws {
        if json, let format, format != .json {
            throw ValidationError("--json prints the result document; it cannot be combined with --format \(format.rawValue).")
        }
        if let report {
            let dir = (report as NSString).deletingLastPathComponent
            guard access(dir.isEmpty ? "." : dir, W_OK) == 0 else {
                throw ValidationError("--report \(report): the directory \(dir.isEmpty ? "." : dir) does not exist or is not writable; choose another path.")
            }
        }
    }
}

/// What the terminal is: a terminal or not, its width, whether colour may be used.
enum Terminal {
    static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// The terminal's columns: TIOCGWINSZ on `fd`, else COLUMNS, else 80.
    static func width(_ fd: Int32, environment: [String: String]) -> Int {
        var size = winsize()
        if ioctl(fd, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        if let c = environment["COLUMNS"].flatMap(Int.init), c > 0 { return c }
        return 80
    }

    /// Colour only on a terminal, never with NO_COLOR (any value, https://no-color.org) or TERM=dumb.
    static func colour(_ fd: Int32, environment: [String: String]) -> Bool {
        isTerminal(fd) && (environment["NO_COLOR"] ?? "").isEmpty && environment["TERM"] != "dumb"
    }
}

/// Prints a result in the chosen form and writes the HTML report.
struct Presentation {
    enum Mode { case jsonLine, jsonPretty, table, csv }
    var mode: Mode
    var colour: Bool
    var width: Int
    var reportPath: String?
    var view: TemplateView?

    init(json: Bool, output: OutputOptions, view: TemplateView?, environment: [String: String]) {
        let env = environment
        if json {
            mode = .jsonLine
        } else {
            switch output.format {
            case .json?: mode = .jsonPretty
            case .csv?: mode = .csv
            case .table?: mode = .table
            case nil: mode = Terminal.isTerminal(1) ? .table : .jsonPretty
            }
        }
        colour = mode == .table && Terminal.colour(1, environment: env)
        width = Terminal.width(1, environment: env)
        reportPath = output.report
        self.view = view
    }

    /// Progress on stderr: only when stderr is a terminal and the result is not `--json`.
    var wantsProgress: Bool { mode != .jsonLine && Terminal.isTerminal(2) }

    func write(_ result: RunResult) {
        let out = FileHandle.standardOutput
        switch mode {
        case .jsonLine:
            out.write(Data((result.jsonText(pretty: false) + "\n").utf8))
        case .jsonPretty:
            out.write(Data((TerminalText.escapeJSON(result.jsonText(pretty: true)) + "\n").utf8))
            if !result.success, let error = result.error {
                FileHandle.standardError.write(Data("error: \(TerminalText.escape(error))\n".utf8))
            }
        case .table:
            let report = Report.make(result, view: view)
            out.write(Data(TerminalReport(width: width, colour: colour).render(report).utf8))
        case .csv:
            if let error = result.error, !result.success {
                FileHandle.standardError.write(Data("error: \(TerminalText.escape(error))\n".utf8))
            } else if let csv = CSVReport.render(Report.make(result, view: view)) {
                out.write(Data(csv.utf8))
            } else {
                FileHandle.standardError.write(Data("error: This answer has no table to write as CSV; use --json for the whole document.\n".utf8))
            }
        }
        if mode != .jsonLine && !result.artifacts.isEmpty {
            // For a person: where the files went, on stderr (stdout stays the answer).
            var lines = "artifacts: \(result.artifacts.count) file\(result.artifacts.count == 1 ? "" : "s")\n"
            for a in result.artifacts {
                lines += "  \(TerminalText.escape(a.path ?? a.name))  (\(a.bytes) bytes, sha256 \(a.sha256.prefix(12))…)\n"
            }
            FileHandle.standardError.write(Data(lines.utf8))
        }
        if let path = reportPath {
            let html = HTMLReport.render(Report.make(result, view: view))
            do { try Data(html.utf8).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
                FileHandle.standardError.write(Data("error: Cannot write the report to \(TerminalText.escape(path)): \(error.localizedDescription); choose another path.\n".utf8))
                finish(RunnerError.Kind.badInput.exitCode)
            }
        }
    }
}

/// One updating line on stderr while a run goes: elapsed time and what the driver reports.
/// Drawn every 0.2 s from the first 0.3 s on (a quick run shows none); cleared before the result.
final class ProgressDisplay: @unchecked Sendable {
    private let lock = NSLock()
    private var state = ProgressState()
    private var parser = ProgressParser()
    private let start = ContinuousClock.now
    private var timer: DispatchSourceTimer?
    private var drawn = false
    private let label: String
    private let width: Int
    private let redactor: Redactor
    private let colour: Bool

    init(label: String, redactor: Redactor, environment: [String: String]) {
        self.label = ReportText.clean(label)
        self.redactor = redactor
        width = Terminal.width(2, environment: environment)
        colour = Terminal.colour(2, environment: environment)
    }

    var elapsed: Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// Takes a chunk of the run's live output; stderr is searched for progress lines.
    func feed(_ fd: Int32, _ chunk: UnsafeRawBufferPointer) {
        guard fd == 2 else { return }
        lock.lock()
        let docs = parser.feed(chunk)
        let now = elapsed
        for d in docs { state.apply(d, at: now) }
        lock.unlock()
    }

    func begin() {
        let t = DispatchSource.makeTimerSource(queue: .global())
        t.schedule(deadline: .now() + .milliseconds(300), repeating: .milliseconds(200))
        t.setEventHandler { [weak self] in self?.draw() }
        timer = t
        t.resume()
    }

    private static let spinner = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"]

    private func draw() {
        lock.lock(); defer { lock.unlock() }
        guard timer != nil else { return }
        let now = elapsed
        let frame = Self.spinner[Int(now * 5) % Self.spinner.count]
        let text = "\(frame) \(label) · " + state.line(elapsed: now) { [redactor] in ReportText.clean(redactor.redact($0)) }
        let line = ReportText.truncate(text, to: max(10, width - 1))
        FileHandle.standardError.write(Data(("\r\u{1B}[2K" + (colour ? "\u{1B}[2m\(line)\u{1B}[0m" : line)).utf8))
        drawn = true
    }

    /// Stops drawing and clears the line.
    func end() {
        lock.lock(); defer { lock.unlock() }
        timer?.cancel()
        timer = nil
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8)) }
    }
}
