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
        await #expect(throws: MCPError.self) { try await tools().call(name: "run_script", arguments: ["script": .string("")]) }
    }

    @Test func invalidVariablesAreAToolResultNotAProtocolError() async throws {
        let result = try await tools().call(name: "top_events", arguments: ["days": .int(0)])
        #expect(result.isError == true)
        guard case .text(let text, _, _)? = result.content.first else { Issue.record("no text"); return }
        #expect(text.contains("'days'"))
    }
}
