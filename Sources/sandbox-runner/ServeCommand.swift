import AgentServers
import ArgumentParser
import Foundation
import SandboxRunner

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the HTTP API for agents: templates with their schemas, runs, /healthz, /openapi.json.",
        discussion: "Needs SANDBOX_RUNNER_TOKEN (bearer auth) unless bound to loopback with --no-auth. MCP over Streamable HTTP "
            + "is served at /mcp with the same token. SIGTERM stops accepting and starting runs at once, lets running sandboxes "
            + "finish within --grace seconds, then kills them."
    )

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port (0 picks a free one; the real one is printed).") var port = 8080
    @Flag(help: "Serve without a token (only allowed on a loopback address).") var noAuth = false
    @Option(help: "Runs at once.") var maxConcurrent = 4
    @Option(help: "Runs waiting for a slot; past it, 429 with Retry-After.") var queue = 16
    @Option(help: ArgumentHelp("Seconds running sandboxes get to finish on SIGTERM.", valueName: "seconds")) var grace = 20
    @Option(help: ArgumentHelp("Seconds a connection gets to send its request head.", valueName: "seconds")) var headerTimeout = 10
    @Option(help: ArgumentHelp("Seconds a request gets to send its body.", valueName: "seconds")) var bodyTimeout = 30
    @Option(help: ArgumentHelp("Seconds a kept-alive connection may stay idle.", valueName: "seconds")) var idleTimeout = 60
    @Option(help: ArgumentHelp("Open connections at most (past it, the oldest idle one is closed).", valueName: "N")) var maxConnections = 512
    @Option(help: ArgumentHelp("Seconds finished async runs are kept.", valueName: "seconds")) var retention = 600
    @Option(help: ArgumentHelp("Finished async runs kept at most.", valueName: "N")) var maxRetained = 256
    @Option(help: ArgumentHelp("MCP sessions over HTTP at most.", valueName: "N")) var maxMcpSessions = 64
    @Flag(help: "Allow --network host (every agent's script then gets the host's network and the personal API key).") var allowHostNetwork = false
    @Option(help: ArgumentHelp("Where runs' out/ files are kept for --retention seconds (default: a fresh private directory, removed at exit).",
                               valueName: "dir")) var artifactsDir: String?
    @OptionGroup var options: RunOptions
    @OptionGroup var catalogOptions: CatalogOptions

    func validate() throws {
        guard (1...64).contains(maxConcurrent), (0...1000).contains(queue), (0...600).contains(grace) else {
            throw ValidationError("--max-concurrent must be 1–64, --queue 0–1000 and --grace 0–600.")
        }
        guard (1...600).contains(headerTimeout), (1...3600).contains(bodyTimeout), (1...3600).contains(idleTimeout) else {
            throw ValidationError("--header-timeout must be 1–600 seconds, --body-timeout and --idle-timeout 1–3600.")
        }
        guard (8...100_000).contains(maxConnections), (1...86_400).contains(retention), (1...100_000).contains(maxRetained),
              (1...10_000).contains(maxMcpSessions) else {
            throw ValidationError("--max-connections must be 8–100000, --retention 1–86400 seconds, --max-retained 1–100000 "
                + "and --max-mcp-sessions 1–10000.")
        }
    }

    func run() async throws {
        LazyLibrary.preloadAll()
        let context = try Context.load()
        let token = context.environment["SANDBOX_RUNNER_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        let loopback = ["127.0.0.1", "::1", "localhost"].contains(host)
        if token == nil && !(noAuth && loopback) {
            fail(RunnerError(.badInput, noAuth ? "--no-auth is only allowed on a loopback address (127.0.0.1, ::1)."
                : "Set SANDBOX_RUNNER_TOKEN (the bearer token clients must send), or pass --no-auth on loopback."))
        }
        refuseHostNetwork(options, allowed: allowHostNetwork, command: "serve")
        let catalog = catalogOptions.catalog(context)
        let setup = RunSetup.make(options: options, catalog: catalog, context: context)
        defer { setup.stop() }
        let executor = setup.executor
        var config = HTTPAPIConfiguration()
        config.host = host
        config.port = port
        config.token = token
        config.maxConcurrent = maxConcurrent
        config.queueLength = queue
        config.shutdownGrace = .seconds(grace)
        config.timeouts.header = .seconds(headerTimeout)
        config.timeouts.body = .seconds(bodyTimeout)
        config.timeouts.idle = .seconds(idleTimeout)
        config.maxConnections = maxConnections
        config.retention = .seconds(retention)
        config.maxRetainedRuns = maxRetained
        config.maxMCPSessions = maxMcpSessions
        config.version = SandboxRunnerCommand.configuration.version
        let store: ArtifactStore
        do { store = try ArtifactStore(directory: artifactsDir, retention: .seconds(retention)) } catch let e as RunnerError { fail(e) }
        defer { store.close() }
        var tools = TemplateTools(executor: executor, artifacts: store)
        tools.artifactLimits = options.artifactLimits
        let server = HTTPAPIServer(config: config, tools: tools)
        try await server.run { url in
            FileHandle.standardOutput.write(Data("serve listening on \(url)\n".utf8))
            FileHandle.standardOutput.write(Data("auth: \(token == nil ? "none (loopback only)" : "bearer token from SANDBOX_RUNNER_TOKEN")\n".utf8))
            FileHandle.standardOutput.write(Data("mcp: \(url)/mcp (Streamable HTTP); connections at most \(server.maxConnections)\n".utf8))
        }
    }
}
