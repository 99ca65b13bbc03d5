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

    @OptionGroup var options: RunOptions
    @OptionGroup var catalogOptions: CatalogOptions

    func run() async throws {
        let context = try Context.load()
        let catalog = catalogOptions.catalog(context)
        let assembler: BundleAssembler
        do { assembler = try BundleAssembler(sandboxDirectory: context.locator.sandboxDirectory) } catch let e as RunnerError { fail(e) }
        var env = context.environment
        var server: PostHogLocalServer?
        if options.demo {
            do { server = try PostHogLocalServer.start(locator: context.locator, environment: env) } catch let e as RunnerError { fail(e) }
            env.merge(server!.environment) { _, demo in demo }
        }
        defer { server?.stop() }
        let backend: any SandboxBackend
        do { backend = try options.backend(context) } catch let e as RunnerError { fail(e) }
        defer { (backend as? E2BBackend)?.shutdown() }
        var executor = Executor(catalog: catalog, assembler: assembler, backend: backend, environment: env)
        executor.outputLimit = options.outputLimit
        FileHandle.standardError.write(Data("sandbox-runner mcp: \(catalog.names.count) templates on stdio\(options.demo ? " (demo data)" : "")\n".utf8))
        try await MCPStdioServer(tools: TemplateTools(executor: executor), version: SandboxRunnerCommand.configuration.version).run()
    }
}
