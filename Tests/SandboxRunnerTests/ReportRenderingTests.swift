import Foundation
import Testing
@testable import SandboxRunner

/// The terminal, CSV and HTML renderers over fixtures of each template's real output (captured
/// with `sandbox-runner run NAME --demo --json` and the manifest's example variables), golden text
/// at a fixed width without colour. SANDBOX_RUNNER_UPDATE_GOLDEN=1 rewrites the golden files
/// (review the diff: they are what an operator sees).
@Suite("Report rendering")
struct ReportRenderingTests {
    static let dir = Repo.fixtures.appendingPathComponent("reports")
    static let templates = TemplateCatalog(builtIn: Repo.locator.templatesDirectory).names

    static func fixture(_ name: String) throws -> RunResult {
        try JSONDecoder().decode(RunResult.self, from: Data(contentsOf: dir.appendingPathComponent("\(name).json")))
    }

    static func view(_ name: String) -> TemplateView? {
        TemplateCatalog(builtIn: Repo.locator.templatesDirectory).templates[name]?.manifest.view
    }

    static func golden(_ text: String, _ file: String) throws {
        let url = dir.appendingPathComponent(file)
        if ProcessInfo.processInfo.environment["SANDBOX_RUNNER_UPDATE_GOLDEN"] == "1" {
            try Data(text.utf8).write(to: url)
        }
        let expected = try String(contentsOf: url, encoding: .utf8)
        #expect(text == expected, "\(file) differs from the golden text; rendered:\n\(text)")
    }

    @Test(arguments: templates)
    func goldenTerminalText(name: String) throws {
        let result = try Self.fixture(name)
        #expect(result.success && result.data != nil, "the fixture of \(name) is not a successful run")
        let report = Report.make(result, view: Self.view(name))
        // Every block of the view shows (an empty block says "(none)").
        #expect(report.sections.count == (Self.view(name)?.blocks ?? []).count)
        let text = TerminalReport(width: 100, colour: false).render(report)
        try Self.golden(text, "\(name).txt")
        for line in text.split(separator: "\n") { #expect(ReportText.width(String(line)) <= 100, "\(name): \(line)") }
        #expect(!text.contains("\u{1B}"))
    }

    @Test(arguments: templates)
    func narrowTerminalsGetFittedLines(name: String) throws {
        let report = Report.make(try Self.fixture(name), view: Self.view(name))
        for width in [40, 60] {
            let text = TerminalReport(width: width, colour: false).render(report)
            for line in text.split(separator: "\n") {
                #expect(ReportText.width(String(line)) <= width, "\(name) at \(width): \(line)")
            }
        }
    }

    @Test func colourOnlyWhenAsked() throws {
        let report = Report.make(try Self.fixture("retention_cohorts"), view: Self.view("retention_cohorts"))
        let coloured = TerminalReport(width: 100, colour: true).render(report)
        #expect(coloured.contains("\u{1B}[32m✓"))
        #expect(coloured.contains("\u{1B}[38;5;"))  // the matrix's shading
        // Without the escapes it is the plain text.
        let stripped = coloured.replacingOccurrences(of: #"\x{1B}\[[0-9;]*m"#, with: "", options: .regularExpression)
        #expect(stripped == TerminalReport(width: 100, colour: false).render(report))
    }

    @Test func longListsAreCutWithACount() throws {
        let items: [JSONValue] = (0..<250).map { .object(["user": .string("u\($0)"), "events": .int($0)]) }
        let result = Self.result(data: .object(["users": .array(items), "count": .int(250)]))
        let text = TerminalReport(width: 80, colour: false).render(Report.make(result, view: nil))
        #expect(text.contains("… 230 more"))
        #expect(text.contains("count  250"))
        #expect(!text.contains("u20 "))
    }

    @Test func widthComesFromWideCharactersToo() {
        #expect(ReportText.width("日本語") == 6)
        #expect(ReportText.width("e\u{301}") == 1)
        #expect(ReportText.width(ReportText.truncate("日本語のテキスト", to: 7)) <= 7)
    }

    static func result(data: JSONValue?, output: String? = nil, stderr: String = "", success: Bool = true) -> RunResult {
        RunResult(success: success, output: output ?? (data?.jsonText() ?? ""), error: success ? nil : "The script exited with status 1; see stderr.",
                  data: data, exitCode: success ? 0 : 1, durationMs: 1234, template: nil, backend: "local", runId: "r-1",
                  stderr: stderr, truncated: false, isolation: "bubblewrap", network: "none", variables: [:],
                  errorKind: success ? nil : .scriptFailed)
    }

    /// The attack: a script's values carry terminal escapes (clear screen, the one-byte CSI,
    /// an OSC title), a bidi override, newlines and tabs. None reaches the terminal raw and every
    /// table row stays one line.
    @Test func scriptValuesCannotDriveTheTerminal() {
        let evil = "a\u{1B}[2J\u{9B}31m\u{1B}]0;pwned\u{07}\u{202E}gnp.exe\nrow2\tcol"
        let data: JSONValue = .object(["title": .string(evil), "rows": .array([.object(["name": .string(evil), "n": .int(1)]),
                                                                            .object([evil: .string("key"), "n": .int(2)])])])
        let failed = Self.result(data: data, stderr: "boom \u{1B}[31m\nsandbox-runner-progress: {\"rows\": 1}\nlast \u{9B}2J", success: false)
        let report = Report.make(failed, view: nil)
        let text = TerminalReport(width: 120, colour: false).render(report)
        for bad in ["\u{1B}", "\u{9B}", "\u{07}", "\u{202E}", "\t"] { #expect(!text.contains(bad), "raw \(bad.unicodeScalars.first!.value)") }
        #expect(text.contains(#"\u{1B}[2J"#) && text.contains(#"\u{202E}"#))
        // The table's rows: one line each.
        let rows = text.split(separator: "\n").filter { $0.contains("row2") }
        #expect(rows.count >= 2)
        // The stderr tail is shown, without the driver's progress lines.
        #expect(text.contains("boom") && !text.contains("sandbox-runner-progress"))
        let html = HTMLReport.render(report)
        for bad in ["\u{1B}", "\u{9B}", "\u{07}", "\u{202E}"] { #expect(!html.contains(bad)) }
    }

    @Test func csvIsTheMainTableRFC4180() throws {
        let data: JSONValue = .object(["rows": .array([
            .object(["name": .string("plain"), "n": .int(1)]),
            .object(["name": .string("comma, \"quoted\"\nnewline"), "n": .double(2.5)]),
        ])])
        let csv = try #require(CSVReport.render(Report.make(Self.result(data: data), view: nil)))
        #expect(csv == "n,name\r\n1,plain\r\n2.5,\"comma, \"\"quoted\"\"\nnewline\"\r\n")
        // A view's main table: retention's counts per week.
        let retention = try #require(CSVReport.render(Report.make(try Self.fixture("retention_cohorts"), view: Self.view("retention_cohorts"))))
        #expect(retention.hasPrefix("Cohort week,Users,Week 0,Week 1,"))
        // An answer with no table has no CSV.
        #expect(CSVReport.render(Report.make(try Self.fixture("new_user_activation"), view: Self.view("new_user_activation"))) == nil)
    }

    @Test func htmlHasAnSVGPerChartAndEscapesValues() throws {
        for name in Self.templates {
            let report = Report.make(try Self.fixture(name), view: Self.view(name))
            let html = HTMLReport.render(report)
            let charts = report.sections.filter { $0.chart != nil }.count
            #expect(html.components(separatedBy: "<svg ").count - 1 == charts, "\(name)")
            #expect(!html.contains("<script"))
            // Links stay inside the page (the smoke page's #run-N); nothing has a src.
            let refs = html.matches(of: try Regex(#"(?:src|href|xlink:href)\s*=\s*"([^"]*)""#)).map { String($0.output[1].substring ?? "") }
            #expect(refs.allSatisfy { $0.hasPrefix("#") }, "\(name): \(refs)")
        }
        let page = HTMLReport.render(Report.make(Self.result(data: .object(["x": .string("<b>&\"'</b>")])), view: nil))
        #expect(page.contains("&lt;b&gt;&amp;&quot;&#39;&lt;/b&gt;"))
        #expect(!page.contains("<b>"))
    }

    @Test func progressLinesAreParsedFromAnyChunking() {
        let stream = Array("noise\nsandbox-runner-progress: {\"queries\": 2, \"note\": \"x\"}\nsandbox-runner-progress: {\"rows\": 10000, \"waitSeconds\": 30}\nsandbox-runner-progress: not json\n".utf8)
        for size in [1, 3, 7, stream.count] {
            var parser = ProgressParser()
            var docs: [[String: JSONValue]] = []
            var i = 0
            while i < stream.count {
                let chunk = Array(stream[i..<min(stream.count, i + size)])
                chunk.withUnsafeBytes { docs += parser.feed($0) }
                i += size
            }
            #expect(docs.count == 2)
            var state = ProgressState()
            for d in docs { state.apply(d, at: 1) }
            #expect(state.line(elapsed: 11, clean: { $0 }) == "11 s · 2 queries · 10,000 rows · waiting 20 s (x)")
        }
    }
}
