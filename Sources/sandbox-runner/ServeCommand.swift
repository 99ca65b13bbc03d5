import AgentServers
import ArgumentParser
import Foundation
import SandboxRunner

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the HTTP API for agents: templates with their schemas, runs, /healthz, /openapi.json.",
        discussion: "Needs SANDBOX_RUNNER_TOKEN (bearer auth) unless bound to loopback with --no-auth. "
            + "SIGTERM stops accepting, lets running sandboxes finish within --grace seconds, then kills them."
    )

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port (0 picks a free one; the real one is printed).") var port = 8080
    @Flag(help: "Serve without a token (only allowed on a loopback address).") var noAuth = false
    @Option(help: "Runs at once.") var maxConcurrent = 4
    @Option(help: "Runs waiting for a slot; past it, 429 with Retry-After.") var queue = 16
    @Option(help: ArgumentHelp("Seconds running sandboxes get to finish on SIGTERM.", valueName: "seconds")) var grace = 20
    @OptionGroup var options: RunOptions
    @OptionGroup var catalogOptions: CatalogOptions

    func validate() throws {
        guard (1...64).contains(maxConcurrent), (0...1000).contains(queue), (0...600).contains(grace) else {
            throw ValidationError("--max-concurrent 1–64, --queue 0–1000, --grace 0–600.")
        }
    }

    func run() async throws {
        let context = try Context.load()
        let token = context.environment["SANDBOX_RUNNER_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        let loopback = ["127.0.0.1", "::1", "localhost"].contains(host)
        if token == nil && !(noAuth && loopback) {
            fail(RunnerError(.badInput, noAuth ? "--no-auth is only allowed on a loopback address (127.0.0.1, ::1)."
                : "Set SANDBOX_RUNNER_TOKEN (the bearer token clients must send), or pass --no-auth on loopback."))
        }
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
        try await HTTPAPIServer(config: config, tools: TemplateTools(executor: executor)).run { url in
            FileHandle.standardOutput.write(Data("serve listening on \(url)\n".utf8))
            FileHandle.standardOutput.write(Data("auth: \(token == nil ? "none (loopback only)" : "bearer token from SANDBOX_RUNNER_TOKEN")\n".utf8))
        }
    }
}
