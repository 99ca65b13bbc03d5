import Foundation
import MCP
import Testing
@testable import AgentServers
@testable import SandboxRunner

/// The MCP tool surface, straight from the library (the stdio protocol is tested in Tests/mcp).
@Suite("Template tools")
struct TemplateToolsTests {
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { url.deleteLastPathComponent() }
        return url
    }()

    func tools() throws -> TemplateTools {
        let locator = ResourceLocator(home: Self.root)
        let executor = Executor(catalog: TemplateCatalog(builtIn: locator.templatesDirectory),
                                assembler: try BundleAssembler(sandboxDirectory: locator.sandboxDirectory),
                                backend: LocalJail(), environment: [:])
        return TemplateTools(executor: executor)
    }

    @Test func everyTemplateIsAToolWithTruthfulAnnotations() throws {
        let list = try tools().tools()
        let byName = Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
        #expect(list.count == 16)
        #expect(byName["run_script"] != nil && byName["list_templates"] != nil)
        #expect(byName["identify_churn_risk"]?.annotations.readOnlyHint == true)
        #expect(byName["create_churn_cohort"]?.annotations.readOnlyHint == false)
        #expect(byName["run_script"]?.annotations.destructiveHint == true)
        #expect(byName["top_events"]?.outputSchema != nil)
    }

    @Test func unknownToolIsAProtocolError() async throws {
        await #expect(throws: MCPError.self) { try await tools().call(name: "no_such_tool", arguments: [:]) }
    }

    /// Every input problem of every tool is a result the model can act on: isError, a sentence
    /// first naming the argument as the tool spells it, errorKind in the document. On main,
    /// run_script's problems were JSON-RPC -32602 errors and the sentences named CLI flags.
    @Test(arguments: [
        ("run_script", ["script": Value.string("")], "Argument 'script'", "badInput"),
        ("run_script", [:], "Argument 'script'", "badInput"),
        ("run_script", ["script": .string("print(1)"), "timeoutSeconds": .int(0)], "Argument 'timeoutSeconds'", "badInput"),
        ("run_script", ["script": .string("print(1)"), "timeoutSeconds": .string("5")], "Argument 'timeoutSeconds'", "badInput"),
        ("run_script", ["script": .string("print(1)"), "bogus": .int(1)], "'bogus'", "badInput"),
        ("run_script", ["script": .string(String(repeating: "#", count: TemplateTools.maxScriptCharacters + 1))], "Argument 'script'", "badInput"),
        ("list_templates", ["x": .int(1)], "'x'", "badInput"),
        ("top_events", ["days": .int(0)], "Argument 'days'", "badInput"),
        ("top_events", ["days": .int(7), "timeoutSeconds": .int(99999)], "Argument 'timeoutSeconds'", "badInput"),
        ("identify_churn_risk", ["nope": .int(1)], "Argument 'nope'", "badInput"),
    ] as [(String, [String: Value], String, String)])
    func inputProblemsAreToolResults(tool: String, arguments: [String: Value], mentions: String, kind: String) async throws {
        let result = try await tools().call(name: tool, arguments: arguments)
        #expect(result.isError == true)
        guard case .text(let text, _, _)? = result.content.first else { Issue.record("no text"); return }
        #expect(text.hasPrefix(mentions) || text.contains(mentions), "\(text)")
        #expect(!text.contains("--var") && !text.contains("--timeout"), "names a CLI flag: \(text)")
        #expect(result.structuredContent?.objectValue?["errorKind"]?.stringValue == kind)
    }

    /// One definition of the result document's schema: the MCP output schema, the HTTP API's and
    /// `show --json`'s all come from RunResult.jsonSchema, and a real result validates its keys.
    @Test func resultSchemaIsOneDefinition() throws {
        let t = try tools()
        let churn = try #require(t.tools().first { $0.name == "identify_churn_risk" })
        let manifest = try #require(t.executor.catalog.templates["identify_churn_risk"]).manifest
        #expect(churn.outputSchema == t.value(RunResult.jsonSchema(dataSchema: manifest.output)))
        #expect(TemplateSchema.result(dataSchema: manifest.output) == RunResult.jsonSchema(dataSchema: manifest.output))
        let doc = OpenAPIDocument.make(tools: t)
        #expect(doc["components"]?["schemas"]?["RunResult"] == RunResult.jsonSchema())
        // Every key a result document can carry is in the schema (additionalProperties is false).
        var r = RunResult.failure(RunnerError(.timeout, "x"), runId: "r", template: "t", backend: "local")
        r.isolation = "bubblewrap"; r.network = "none"; r.bundleSha256 = "00"; r.variables = [:]
        let keys = Set(try #require(JSONValue.parse(Data(r.jsonText().utf8))?.objectValue).keys)
        let props = Set(try #require(RunResult.jsonSchema()["properties"]?.objectValue).keys)
        #expect(keys.isSubset(of: props), "not in the schema: \(keys.subtracting(props))")
    }

    @Test func invalidVariablesAreAToolResultNotAProtocolError() async throws {
        let result = try await tools().call(name: "top_events", arguments: ["days": .int(0)])
        #expect(result.isError == true)
        guard case .text(let text, _, _)? = result.content.first else { Issue.record("no text"); return }
        #expect(text.contains("'days'"))
    }
}
