import Foundation
import Testing
@testable import SandboxRunner

@Suite("Schemas derived from manifests")
struct TemplateSchemaTests {
    @Test func echoVarsSchema() throws {
        let t = try Repo.catalog().template(named: "echo_vars")
        let s = TemplateSchema.input(t.manifest)
        #expect(s["type"] == .string("object"))
        #expect(s["additionalProperties"] == .bool(false))
        #expect(s["required"] == .array([.string("who")]))
        let days = try #require(s["properties"]?["days"])
        // Optional variables also take null (their default), as the renderer does.
        #expect(days["type"] == .array([.string("integer"), .string("null")]))
        #expect(days["minimum"] == .int(1))
        #expect(days["maximum"] == .int(90))
        #expect(days["default"] == .int(7))
        #expect(days["description"] == .string("A bounded integer."))
        #expect(s["properties"]?["mode"]?["enum"] == .array([.string("day"), .string("week"), .null]))
        #expect(s["properties"]?["steps"]?["type"] == .array([.string("array"), .string("null")]))
        #expect(s["properties"]?["who"]?["type"] == .string("string"))  // required: no null
        #expect(s["properties"]?["steps"]?["maxItems"] == .int(5))
        #expect(s["properties"]?["since"]?["format"] == .string("date"))
        #expect(s["properties"]?["event"]?["pattern"] == .string(VariableValidator.identifierPattern))
    }

    /// Every shipped template: a valid manifest, a schema whose defaults and example pass validation.
    @Test func everyBuiltInTemplateIsConsistent() throws {
        let catalog = TemplateCatalog(builtIn: Repo.locator.templatesDirectory)
        #expect(catalog.problems.isEmpty, "\(catalog.problems)")
        #expect(!catalog.names.isEmpty)
        for name in catalog.names {
            let t = try catalog.template(named: name)
            #expect(t.manifest.example != nil, "\(name) has no example")
            #expect(t.manifest.output != nil, "\(name) describes no output")
            let rendered = try TemplateRenderer.render(t, inputs: (t.manifest.example ?? [:]).mapValues { .json($0) })
            #expect(!rendered.script.contains("{{"), "\(name) left a marker")
            #expect(TemplateSchema.input(t.manifest)["type"] == .string("object"))
        }
    }
}
