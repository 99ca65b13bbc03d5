import Foundation
import Testing
@testable import AgentServers
@testable import SandboxRunner

/// The one error vocabulary: each kind's exit code and HTTP status, and sentences that name the
/// caller's parameter in its own terms.
@Suite("Error vocabulary")
struct ErrorVocabularyTests {
    @Test func everyKindHasOneExitCodeAndOneStatus() {
        let expected: [RunnerError.Kind: (Int32, Int)] = [
            .badInput: (64, 400), .notFound: (64, 404), .unauthorized: (64, 401), .methodNotAllowed: (64, 405),
            .tooLarge: (64, 413), .rateLimited: (75, 429), .unavailable: (69, 503), .scriptFailed: (1, 200),
            .timeout: (124, 200), .cancelled: (130, 200), .internalError: (70, 500),
        ]
        #expect(Set(expected.keys) == Set(RunnerError.Kind.allCases))
        for (kind, (code, status)) in expected {
            #expect(kind.exitCode == code, "\(kind)")
            #expect(kind.httpStatus == status, "\(kind)")
        }
        #expect(RunnerError.Kind.internalError.rawValue == "internal")
    }

    @Test func aVariableIsNamedInEachSurfacesTerms() throws {
        let spec = VariableSpec(name: "distinct_id", type: .string, description: "Who.", required: true)
        let template = Template(manifest: TemplateManifest(name: "t", title: nil, description: "d", readOnly: true, needsPostHog: false,
                                                           variables: [spec], example: nil, output: nil, timeoutSeconds: nil),
                                script: "x = {{ distinct_id }}", directory: URL(fileURLWithPath: "/"), isCustom: false)
        do {
            _ = try TemplateRenderer.render(template, inputs: [:])
            Issue.record("rendered without a required variable")
        } catch let e as RunnerError {
            #expect(e.parameter == .variable("distinct_id"))
            #expect(e.message(for: .cli).contains("--var distinct_id=…"))
            #expect(e.message(for: .http).contains("variables.distinct_id") && !e.message(for: .http).contains("--var"))
            #expect(e.message(for: .mcp).contains("'distinct_id'") && !e.message(for: .mcp).contains("--var"))
            #expect(e.parameter?.field(for: .http) == "variables.distinct_id")
        }
    }

    @Test func timeoutAdviceNamesTheCallersParameter() {
        let p = ProcessOutcome(exitCode: 137, signal: 9, timedOut: true, cancelled: false, stdout: CappedOutput(limit: 10),
                               stderr: CappedOutput(limit: 10), duration: .seconds(1))
        let e = Executor.explain(p, stderr: "", timeout: .seconds(5))
        #expect(e.kind == .timeout)
        #expect(e.message(for: .cli).contains("Raise --timeout"))
        #expect(e.message(for: .mcp).contains("Raise timeoutSeconds") && !e.message(for: .mcp).contains("--timeout"))
        #expect(e.message(for: .http).contains("Raise timeoutSeconds"))
    }

    /// A secret printed in pieces across writes is still redacted in the live event stream.
    @Test func streamRedactionCatchesASecretSplitAcrossChunks() {
        let secret = "phx_secret_value_0123456789"
        var r = StreamRedactor(redactor: Redactor(secrets: [secret]))
        var out = ""
        let text = "before \(secret) middle é \(secret)"
        let bytes = Array(text.utf8)
        var i = 0
        for size in [3, 5, 1, 7, 2, 11, 4, 9, 6, 13, 8, 100] where i < bytes.count {
            let chunk = Array(bytes[i..<min(bytes.count, i + size)])
            out += chunk.withUnsafeBytes { r.feed($0) }
            i += size
        }
        out += r.flush()
        #expect(out == "before [REDACTED] middle é [REDACTED]")
    }
}
