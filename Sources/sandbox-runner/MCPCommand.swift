import AgentServers
import ArgumentParser
import Foundation
import SandboxRunner

struct MCPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract: "Serve the templates as MCP tools on stdin/stdout (one tool per template, plus run_script and list_templates).",
        discussion: "Example client configuration: {\"command\": \"sandbox-runner\", \"args\": [\"mcp\", \"--demo\"]}. "
            + "Only protocol messages go to stdout; logs go to stderr."
    )

    @Flag(help: "Allow --network host (every agent's script then gets the host's network and the personal API key).") var allowHostNetwork = false
    @OptionGroup var options: RunOptions
    @OptionGroup var catalogOptions: CatalogOptions

    func run() async throws {
        let context = try Context.load()
        refuseHostNetwork(options, allowed: allowHostNetwork, command: "mcp")
        let catalog = catalogOptions.catalog(context)
        let setup = RunSetup.make(options: options, catalog: catalog, context: context)
        defer { setup.stop() }
        let executor = setup.executor
        FileHandle.standardError.write(Data("sandbox-runner mcp: \(catalog.names.count) templates on stdio\(options.demo ? " (demo data)" : "")\n".utf8))
        try await MCPStdioServer(tools: TemplateTools(executor: executor), version: SandboxRunnerCommand.configuration.version).run()
    }
}
