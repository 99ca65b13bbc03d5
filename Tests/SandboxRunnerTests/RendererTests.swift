import Foundation
import Testing
@testable import SandboxRunner

@Suite("Variable validation and rendering")
struct RendererTests {
    let template: Template = try! Repo.catalog().template(named: "echo_vars")

    func render(_ vars: [String: String]) throws -> RenderedTemplate {
        try TemplateRenderer.render(template, inputs: vars.mapValues { .text($0) })
    }

    func expectRefused(_ vars: [String: String], naming name: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try render(vars)
            Issue.record("accepted \(vars)", sourceLocation: sourceLocation)
        } catch let e as RunnerError {
            #expect(e.kind == .badInput, sourceLocation: sourceLocation)
            #expect(e.exitCode == 64, sourceLocation: sourceLocation)
            #expect(e.message.contains("'\(name)'"), "message should name \(name): \(e.message)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func defaultsAndRequired() throws {
        let r = try render(["who": "u1"])
        #expect(r.variables["days"] == .int(7))
        #expect(r.variables["steps"] == .array([.string("a"), .string("b")]))
        expectRefused([:], naming: "who")
    }

    @Test func unknownVariable() { expectRefused(["who": "u", "dayz": "3"], naming: "dayz") }

    @Test(arguments: [
        ("days", "abc"), ("days", "0"), ("days", "91"), ("days", "7.5"), ("days", "1e3"), ("days", "7; import os"),
        ("ratio", "2"), ("ratio", "nan"), ("mode", "month"), ("flag", "maybe"), ("since", "2026-02-30"),
        ("since", "yesterday"), ("event", "x' OR '1'='1"), ("event", "a\"b"), ("event", "{days}"),
        ("steps", "a,b,c,d,e,f"), ("steps", "ok,bad'name"),
    ])
    func refusesBadValues(name: String, value: String) {
        expectRefused(["who": "u1", name: value], naming: name)
    }

    @Test func labelTooLong() { expectRefused(["who": "u1", "label": String(repeating: "x", count: 201)], naming: "label") }

    @Test func jsonInputsAreTyped() throws {
        let r = try TemplateRenderer.render(template, inputs: ["who": .json(.string("u")), "days": .json(.int(30)), "flag": .json(.bool(true)),
                                                               "steps": .json(.array([.string("x")]))])
        #expect(r.variables["days"] == .int(30))
        #expect(r.variables["flag"] == .bool(true))
        #expect(throws: RunnerError.self) {
            try TemplateRenderer.render(template, inputs: ["who": .json(.string("u")), "days": .json(.string("30"))])
        }
    }

    /// Hostile strings become literals that Python reads back exactly: nothing executes.
    @Test(arguments: ["plain", "quote \" and ' and \\", "\"\"\"; import os; os.system('id') #", "new\nline\ttab\r",
                      "unicode é ☃ 😀 \u{2028}", "{{ days }}", "\\x00\\u0000"])
    func literalsRoundTripThroughPython(_ s: String) throws {
        let literal = TemplateRenderer.pythonLiteral(.string(s))
        let out = try ProcessRunner.runBlocking(
            ProcessSpec(executable: "/usr/bin/python3", arguments: ["-c", "import sys; sys.stdout.write(\(literal))"],
                        environment: ["PYTHONIOENCODING": "utf-8"], timeout: .seconds(10), outputLimit: 1 << 16), killer: ProcessKiller())
        #expect(out.exitCode == 0)
        #expect(out.stdout.text == s)
    }

    @Test func substitutionWritesLiteralsOnly() throws {
        let r = try render(["who": "x\" + __import__('os').getcwd() + \"", "days": "30", "steps": "[\"$pageview\", \"signed_up\"]"])
        #expect(r.script.contains("\"days\": 30,"))
        #expect(r.script.contains(#""who": "x\" + __import__('os').getcwd() + \"","#))
        #expect(r.script.contains(#"["$pageview", "signed_up"]"#))
        #expect(!r.script.contains("{{"))
    }

    @Test func manifestChecksCatchTemplateBugs() {
        let m = TemplateManifest(name: "t", title: nil, description: "d", readOnly: true, needsPostHog: false,
                                 variables: [VariableSpec(name: "n", type: .integer, description: "", default: .int(500), maximum: 10)],
                                 example: nil, output: nil, timeoutSeconds: nil)
        #expect(throws: RunnerError.self) { try TemplateRenderer.checkTemplate(manifest: m, script: "print({{ n }})") }
        var ok = m
        ok.variables[0].default = .int(5)
        #expect(throws: RunnerError.self) { try TemplateRenderer.checkTemplate(manifest: ok, script: "print({{ other }})") }
        #expect(throws: Never.self) { try TemplateRenderer.checkTemplate(manifest: ok, script: "print({{ n }})") }
    }

    @Test(arguments: [("2026-10-01", "2026-10-01T00:00:00Z"), ("2026-10-01T12:30:00+02:00", "2026-10-01T10:30:00Z"),
                      ("2026-10-01 23:59", "2026-10-01T23:59:00Z")])
    func datetimesNormaliseToUTC(input: String, expected: String) {
        #expect(VariableValidator.parseDateTime(input) == expected)
    }

    /// Issue 11: the renderer cut datetimes to whole seconds, so an export from `…:00.500Z` began at
    /// `…:00Z` (an event before `start` was exported) and a 1 ms window `[…:00.001Z, …:00.002Z)`
    /// became empty and was refused. PostHog keeps microseconds (`DateTime64(6)`): so do we, across
    /// an offset and a day boundary.
    @Test(arguments: [("2026-10-01T12:30:00.123Z", "2026-10-01T12:30:00.123000Z"),
                      ("2026-10-01T12:30:00.000001Z", "2026-10-01T12:30:00.000001Z"),
                      ("2026-10-01T00:30:59.999999+01:00", "2026-09-30T23:30:59.999999Z"),
                      ("2026-10-01 23:59:59.5-04:00", "2026-10-02T03:59:59.500000Z"),
                      ("2026-10-01T12:30:00.000Z", "2026-10-01T12:30:00.000000Z")])
    func datetimesKeepSubSecondPrecision(input: String, expected: String) {
        #expect(VariableValidator.parseDateTime(input) == expected)
    }

    @Test func aOneMillisecondWindowRendersTwoDistinctInstants() throws {
        let spec = VariableSpec(name: "start", type: .datetime, description: "", default: nil)
        let start = try VariableValidator.validate(.text("2026-10-25T00:00:00.001Z"), spec: spec)
        let end = try VariableValidator.validate(.text("2026-10-25T00:00:00.002Z"), spec: spec)
        #expect(start == .string("2026-10-25T00:00:00.001000Z") && end == .string("2026-10-25T00:00:00.002000Z"))
        #expect(VariableValidator.parseDateTime("2026-10-01T12:30:00.1234567Z") == nil)  // finer than PostHog keeps
    }
}

@Suite("Support")
struct SupportTests {
    @Test(arguments: [("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
                      ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
                      (String(repeating: "a", count: 1000), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")])
    func sha256(input: String, digest: String) {
        #expect(SHA256.hex(Array(input.utf8)) == digest)
    }

    @Test func dotenv() {
        let env = DotEnv.parse("""
        # comment
        export A=1
        B = "two words\\nline"
        C='lit $x # not a comment'
        D=value # comment
        bad line
        E=
        """)
        #expect(env == ["A": "1", "B": "two words\nline", "C": "lit $x # not a comment", "D": "value", "E": ""])
    }

    @Test func realEnvironmentWinsOverDotenv() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "X=fromfile\nY=fromfile\n".write(to: dir.appendingPathComponent(".env"), atomically: true, encoding: .utf8)
        let env = DotEnv.environment(loadingFrom: dir, base: ["X": "real"])
        #expect(env["X"] == "real")
        #expect(env["Y"] == "fromfile")
    }

    @Test func redactor() {
        let r = Redactor(environment: ["POSTHOG_PERSONAL_API_KEY": "phx_secretvalue123", "MY_TOKEN": "tok-abcdef", "PLAIN": "phx_secretvalue123x", "SHORT_KEY": "ab"])
        #expect(r.redact("key=phx_secretvalue123 and tok-abcdef") == "key=[REDACTED] and [REDACTED]")
        #expect(r.redact("ab stays") == "ab stays")
        #expect(r.redact("cut at phx_secr", truncated: true) == "cut at [REDACTED]")
    }

    @Test func cappedOutputKeepsHeadAndCounts() {
        var c = CappedOutput(limit: 5)
        let bytes: [UInt8] = Array("0123456789".utf8)
        bytes.withUnsafeBytes { c.append($0) }
        bytes.withUnsafeBytes { c.append($0) }
        #expect(c.text == "01234")
        #expect(c.totalBytes == 20)
        #expect(c.truncated)
    }
}
