import ArgumentParser
import Foundation
import SandboxRunner

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the templates, one line each.")

    @Flag(help: "Print JSON for machines.") var json = false
    @OptionGroup var catalogOptions: CatalogOptions

    struct Entry: Codable { var name: String; var description: String; var readOnly: Bool; var custom: Bool; var variables: [String] }

    func run() async throws {
        let context = try Context.load()
        let catalog = catalogOptions.catalog(context)
        let templates = catalog.names.compactMap { try? catalog.template(named: $0) }
        if json {
            printJSON(["schemaVersion": JSONValue.int(1),
                       "templates": .array(templates.map { t in
                           .object(["name": .string(t.name), "description": .string(t.manifest.description),
                                    "readOnly": .bool(t.manifest.isReadOnly), "custom": .bool(t.isCustom),
                                    "variables": .array(t.manifest.variables.map { .string($0.name) })])
                       }),
                       "problems": .array(catalog.problems.map(JSONValue.string))], pretty: false)
            return
        }
        let width = templates.map(\.name.count).max() ?? 0
        for t in templates {
            let tags = (t.manifest.isReadOnly ? "" : " [writes]") + (t.isCustom ? " [custom]" : "")
            let summary = t.manifest.title ?? String(t.manifest.description.split(separator: ".").first ?? "")
            print(t.name.padding(toLength: width + 2, withPad: " ", startingAt: 0) + summary + tags)
        }
        for p in catalog.problems { FileHandle.standardError.write(Data("warning: template skipped: \(p)\n".utf8)) }
    }
}

struct ShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a template's description and variables.")

    @Argument(help: "The template's name.", completion: Completion.templateNames) var name: String
    @Flag(help: "Print the manifest as JSON.") var json = false
    @OptionGroup var catalogOptions: CatalogOptions

    func run() async throws {
        let context = try Context.load()
        let template: Template
        do { template = try catalogOptions.catalog(context).template(named: name) } catch let e as RunnerError { fail(e) }
        let m = template.manifest
        if json {
            // The manifest plus the derived schemas agents use (the same as MCP's and the HTTP API's).
            var doc = (JSONValue.parse((try? JSONEncoder().encode(m)) ?? Data()) ?? .null).objectValue ?? [:]
            doc["inputSchema"] = TemplateSchema.input(m)
            doc["resultSchema"] = TemplateSchema.result(dataSchema: m.output)
            printJSON(JSONValue.object(doc), pretty: true)
            return
        }
        print("\(m.name)\(m.isReadOnly ? "" : "  [writes to PostHog]")")
        print("  \(m.description)")
        print("")
        print("Variables:")
        for v in m.variables {
            var facts = [v.type.rawValue]
            if let values = v.values { facts.append(values.joined(separator: "|")) }
            if let lo = v.minimum { facts.append("min \(VariableDisplay.number(lo))") }
            if let hi = v.maximum { facts.append("max \(VariableDisplay.number(hi))") }
            if let d = v.default { facts.append("default \(d.display)") } else if v.isRequired { facts.append("required") }
            print("  \(v.name) (\(facts.joined(separator: ", ")))")
            print("      \(v.description)")
        }
        if let ex = m.example, !ex.isEmpty {
            print("")
            print("Example:")
            let args = ex.keys.sorted().map { k -> String in
                let v = ex[k]!
                let text: String
                if case .array(let items) = v {
                    // a,b,c unless an item holds a comma: then the JSON list, which --var also takes.
                    text = items.contains { $0.display.contains(",") } ? v.jsonText() : items.map(\.display).joined(separator: ",")
                } else {
                    text = v.display
                }
                return "--var \(shellQuote(k + "=" + text))"
            }
            print("  sandbox-runner run \(shellQuote(m.name)) \(args.joined(separator: " "))")
            print("")
            print("Add --demo to run it against the demo dataset, --json for the result document, --report FILE.html for a page.")
        } else {
            print("")
            print("Example:")
            let required = m.variables.filter(\.isRequired).map { "--var \($0.name)=…" }
            print("  sandbox-runner run \(([shellQuote(m.name)] + required).joined(separator: " "))")
        }
    }
}

enum VariableDisplay {
    static func number(_ d: Double) -> String { d.rounded() == d ? String(Int(d)) : String(d) }
}

func shellQuote(_ s: String) -> String {
    if s.range(of: #"^[A-Za-z0-9_.,:/@%+=-]+$"#, options: .regularExpression) != nil { return s }
    return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

