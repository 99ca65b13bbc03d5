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
    @Option(help: ArgumentHelp("Where runs' out/ files are kept for the session (default: a fresh private directory, removed at exit).",
                               valueName: "dir")) var artifactsDir: String?
    @Option(help: ArgumentHelp("Seconds a run's out/ files stay readable (resources/read).", valueName: "seconds"))
    var artifactsRetention = 3600

    func run() async throws {
        LazyLibrary.preloadAll()
        let context = try Context.load()
        refuseHostNetwork(options, allowed: allowHostNetwork, command: "mcp")
        let catalog = catalogOptions.catalog(context)
        let setup = RunSetup.make(options: options, catalog: catalog, context: context)
        defer { setup.stop() }
        let executor = setup.executor
        FileHandle.standardError.write(Data("sandbox-runner mcp: \(catalog.names.count) templates on stdio\(options.demo ? " (demo data)" : "")\n".utf8))
        guard (1...604_800).contains(artifactsRetention) else { fail(RunnerError(.badInput, "--artifacts-retention must be 1 to 604800 seconds.")) }
        let store: ArtifactStore
        do { store = try ArtifactStore(directory: artifactsDir, retention: .seconds(artifactsRetention)) } catch let e as RunnerError { fail(e) }
        defer { store.close() }
        var tools = TemplateTools(executor: executor, artifacts: store)
        tools.artifactLimits = options.artifactLimits
        try await MCPStdioServer(tools: tools, version: SandboxRunnerCommand.configuration.version).run()
    }
}
