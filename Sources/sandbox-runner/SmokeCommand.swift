import ArgumentParser
import Foundation
import SandboxRunner

struct SmokeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "smoke",
        abstract: "Run every template with its example variables, in parallel; exit 1 if any failed.",
        discussion: "Progress goes to stderr, a line per template as it finishes; the summary to stdout. "
            + "Example for CI: sandbox-runner smoke --demo --junit smoke.xml"
    )

    @Option(help: "Templates run at once.") var jobs: Int = 4
    @Option(help: ArgumentHelp("Write a JUnit XML report here.", valueName: "file")) var junit: String?
    @Option(help: ArgumentHelp("Write one self-contained HTML page with every template's answer and pass/fail.", valueName: "file.html"),
            completion: .file(extensions: ["html"]))
    var report: String?
    @Option(help: ArgumentHelp("Only these templates (comma-separated).", valueName: "names")) var only: String?
    @OptionGroup var options: RunOptions
    @OptionGroup var catalogOptions: CatalogOptions

    func validate() throws {
        guard (1...32).contains(jobs) else { throw ValidationError("--jobs must be between 1 and 32.") }
        if let report { try OutputOptions(report: report).check(json: false) }
    }

    func run() async throws {
        let context = try Context.load()
        let catalog = catalogOptions.catalog(context)
        var templates = catalog.names.compactMap { try? catalog.template(named: $0) }
        if let only {
            let wanted = only.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            for name in wanted where catalog.templates[name] == nil { fail(RunnerError(.badInput, "Unknown template '\(name)' in --only.")) }
            templates = templates.filter { wanted.contains($0.name) }
        }
        guard !templates.isEmpty else { fail(RunnerError(.badInput, "No templates to run.")) }

        let setup = RunSetup.make(options: options, catalog: catalog, context: context)
        defer { setup.stop() }
        if let demo = setup.demo { log("posthog-local (demo data) at \(demo.url)") }
        let executor = setup.executor

        let total = templates.count
        let width = templates.map(\.name.count).max() ?? 10
        log("smoke: \(total) templates, \(jobs) at a time, backend \(options.backend)")
        let clock = ContinuousClock()
        let start = clock.now
        let outcomes = await SmokeRunner(executor: executor, jobs: jobs, timeout: options.timeoutDuration).run(templates: templates) { o, done in
            let status = o.result.success ? "ok  " : (o.result.timedOut ? "TIME" : "FAIL")
            let counter = String(repeating: " ", count: String(total).count - String(done).count) + "\(done)/\(total)"
            var line = "[\(counter)] \(status) \(o.template.padding(toLength: width, withPad: " ", startingAt: 0)) \(String(format: "%6.2f s", o.seconds))"
            if let e = o.result.error, !o.result.success { line += "  \(ReportText.clean(e))" }
            log(line)
        }
        let wall = clock.now - start
        let failed = outcomes.filter { !$0.result.success }

        if let junit {
            do { try SmokeRunner.junit(outcomes).write(toFile: junit, atomically: true, encoding: .utf8) } catch {
                fail(RunnerError(.badInput, "Cannot write the JUnit report to \(junit): \(error.localizedDescription)"))
            }
        }
        if let report {
            let pages = outcomes.map { o in
                (report: Report.make(o.result, view: catalog.templates[o.template]?.manifest.view), seconds: o.seconds)
            }
            let html = HTMLReport.renderSmoke(pages, wallSeconds: Double(wall.milliseconds) / 1000)
            do { try Data(html.utf8).write(to: URL(fileURLWithPath: report), options: .atomic) } catch {
                fail(RunnerError(.badInput, "Cannot write the HTML report to \(report): \(error.localizedDescription)"))
            }
        }
        if options.json {
            let doc: JSONValue = .object([
                "schemaVersion": .int(1), "passed": .int(outcomes.count - failed.count), "failed": .int(failed.count),
                "wallMs": .int(Int(wall.milliseconds)),
                "results": .array(outcomes.map { JSONValue.parse(Data($0.result.jsonText(pretty: false).utf8)) ?? .null }),
            ])
            print(doc.jsonText())
        } else {
            print("")
            print("template".padding(toLength: width, withPad: " ", startingAt: 0) + "  result  seconds  note")
            print(String(repeating: "-", count: width + 30))
            for o in outcomes {
                let status = o.result.success ? "ok    " : (o.result.timedOut ? "TIMEOUT" : "FAILED")
                print(o.template.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                      + status.padding(toLength: 7, withPad: " ", startingAt: 0) + String(format: " %7.2f", o.seconds)
                      + "  " + (o.result.success ? "" : ReportText.clean(o.result.error ?? "")))
            }
            print(String(repeating: "-", count: width + 30))
            print("\(outcomes.count - failed.count) passed, \(failed.count) failed in \(String(format: "%.1f", Double(wall.milliseconds) / 1000)) s")
        }
        if !failed.isEmpty { throw ExitCode(1) }
    }

    func log(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
}
