import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import SandboxRunner

/// Counts JUnit elements with a real XML parser: the report must be well-formed.
final class JUnitCounter: NSObject, XMLParserDelegate {
    var testcases: [String] = []
    var failures = 0
    var suiteAttributes: [String: String] = [:]

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        switch name {
        case "testcase": testcases.append(attributes["name"] ?? "")
        case "failure": failures += 1
        case "testsuite": suiteAttributes = attributes
        default: break
        }
    }

    static func parse(_ path: String) throws -> JUnitCounter {
        let counter = JUnitCounter()
        let parser = try #require(XMLParser(contentsOf: URL(fileURLWithPath: path)))
        parser.delegate = counter
        #expect(parser.parse(), "JUnit report is not well-formed XML: \(String(describing: parser.parserError))")
        return counter
    }
}

@Suite("smoke", .serialized, .timeLimit(.minutes(3)))
struct SmokeTests {
    @Test func passingRunWritesJUnitAndExits0() throws {
        let report = FileManager.default.temporaryDirectory.appendingPathComponent("smoke-\(UUID().uuidString).xml").path
        defer { try? FileManager.default.removeItem(atPath: report) }
        let r = try runCLI(["smoke", "--demo", "--only", "identify_churn_risk,echo_vars", "--templates-dir", Repo.fixtureTemplates.path,
                            "--jobs", "2", "--junit", report])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stderr.contains("[1/2]") && r.stderr.contains("[2/2]"))
        #expect(r.stdout.contains("2 passed, 0 failed"))
        let junit = try JUnitCounter.parse(report)
        #expect(junit.testcases.sorted() == ["echo_vars", "identify_churn_risk"])
        #expect(junit.failures == 0)
        #expect(junit.suiteAttributes["tests"] == "2")
    }

    @Test func aFailingTemplateFailsTheRun() throws {
        let report = FileManager.default.temporaryDirectory.appendingPathComponent("smoke-\(UUID().uuidString).xml").path
        defer { try? FileManager.default.removeItem(atPath: report) }
        let failing = Repo.fixtures.appendingPathComponent("failing-templates").path
        let r = try runCLI(["smoke", "--only", "always_fails,echo_vars", "--templates-dir", failing,
                            "--templates-dir", Repo.fixtureTemplates.path, "--junit", report, "--json"])
        #expect(r.status == 1)
        let doc = try #require(r.json)
        #expect(doc["passed"] == .int(1))
        #expect(doc["failed"] == .int(1))
        let junit = try JUnitCounter.parse(report)
        #expect(junit.failures == 1)
        #expect(try String(contentsOfFile: report, encoding: .utf8).contains("about to fail &lt;&amp;&gt;"))
    }

    @Test func unknownTemplateInOnlyIsBadInput() throws {
        let r = try runCLI(["smoke", "--only", "nope"])
        #expect(r.status == 64)
    }
}
