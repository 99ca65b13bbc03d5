import Foundation

/// One template's outcome in a smoke run.
public struct SmokeOutcome: Sendable {
    public var template: String
    public var result: RunResult
    public var seconds: Double { Double(result.durationMs) / 1000 }
}

/// Runs every template with its example variables, at most `jobs` at a time, reporting each as it ends.
public struct SmokeRunner: Sendable {
    public var executor: Executor
    public var jobs: Int
    public var timeout: Duration?

    public init(executor: Executor, jobs: Int, timeout: Duration? = nil) {
        self.executor = executor
        self.jobs = max(1, jobs)
        self.timeout = timeout
    }

    public func run(templates: [Template], progress: @escaping @Sendable (SmokeOutcome, Int) -> Void) async -> [SmokeOutcome] {
        var outcomes: [SmokeOutcome] = []
        await withTaskGroup(of: SmokeOutcome.self) { group in
            var queue = templates[...]
            func launch() {
                guard let t = queue.popFirst() else { return }
                let request = RunRequest(source: .template(name: t.name, inputs: (t.manifest.example ?? [:]).mapValues { .json($0) }),
                                         timeout: timeout)
                group.addTask { SmokeOutcome(template: t.name, result: await executor.run(request)) }
            }
            for _ in 0..<jobs { launch() }
            while let outcome = await group.next() {
                outcomes.append(outcome)
                progress(outcome, outcomes.count)
                launch()
            }
        }
        let order = Dictionary(uniqueKeysWithValues: templates.enumerated().map { ($1.name, $0) })
        return outcomes.sorted { order[$0.template]! < order[$1.template]! }
    }

    /// A JUnit XML report (one testsuite, a testcase per template) that CI systems render.
    public static func junit(_ outcomes: [SmokeOutcome], suite: String = "sandbox-runner smoke") -> String {
        let failures = outcomes.filter { !$0.result.success }.count
        let total = outcomes.reduce(0.0) { $0 + $1.seconds }
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        xml += "<testsuites name=\"\(escape(suite))\" tests=\"\(outcomes.count)\" failures=\"\(failures)\" errors=\"0\" time=\"\(String(format: "%.3f", total))\">\n"
        xml += "  <testsuite name=\"\(escape(suite))\" tests=\"\(outcomes.count)\" failures=\"\(failures)\" errors=\"0\" skipped=\"0\" time=\"\(String(format: "%.3f", total))\">\n"
        for o in outcomes {
            xml += "    <testcase classname=\"templates\" name=\"\(escape(o.template))\" time=\"\(String(format: "%.3f", o.seconds))\">\n"
            if !o.result.success {
                let kind = o.result.timedOut ? "timeout" : (o.result.errorKind?.rawValue ?? "failed")
                xml += "      <failure message=\"\(escape(o.result.error ?? "failed"))\" type=\"\(kind)\">"
                xml += escape(String(o.result.stderr.suffix(4000))) + "</failure>\n"
            }
            xml += "      <system-out>\(escape(String(o.result.output.prefix(4000))))</system-out>\n"
            xml += "    </testcase>\n"
        }
        xml += "  </testsuite>\n</testsuites>\n"
        return xml
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\n", "\t", "\r": out.unicodeScalars.append(scalar)
            default:
                // XML 1.0 forbids most control characters even escaped.
                if scalar.value < 0x20 || (0xFFFE...0xFFFF).contains(scalar.value) { out += "?" } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out
    }
}
