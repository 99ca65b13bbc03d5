import ArgumentParser
import E2BLocal
import Foundation
import Logging
import SandboxRunner

struct E2BLocalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "e2b-local",
        abstract: "Serve an E2B-compatible API and envd on one loopback port, with local jail workspaces as sandboxes (foreground).",
        discussion: """
        Point E2B_API_URL and E2B_SANDBOX_URL at the printed URL. The accepted key is E2B_API_KEY \
        (\(E2BLocalConfiguration.demoAPIKey) when unset). Stops on SIGTERM/SIGINT, killing every sandbox. \
        Fault SPECs are described in Sources/E2BLocal/README.md.
        """
    )

    @Option(help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(help: "Port to listen on (0 picks a free one; the real port is printed).") var port: Int = 0
    @Option(help: ArgumentHelp("Inject a fault (repeatable), e.g. create-429:count=2 or stream-cut:after=3.", valueName: "spec"))
    var fault: [String] = []
    @Option(help: ArgumentHelp("Live sandboxes at most; creates past it get a 429.", valueName: "N")) var maxSandboxes: Int = 20
    @Option(help: ArgumentHelp("Another template name to accept besides base (repeatable).", valueName: "name")) var template: [String] = []
    @Option(help: ArgumentHelp("Memory limit of each command in MiB.", valueName: "MiB")) var memory: Int = 1024
    @Flag(help: "Run commands without namespaces where bubblewrap cannot work (they can then read the host's files).")
    var allowWeakIsolation = false
    @Flag(help: "Log every sandbox created and killed to stderr.") var verbose = false

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be from 0 to 65535.") }
        guard (1...1000).contains(maxSandboxes) else { throw ValidationError("--max-sandboxes must be from 1 to 1000.") }
        guard (64...65536).contains(memory) else { throw ValidationError("--memory must be from 64 to 65536 MiB.") }
        for f in fault {
            do { _ = try FaultSpec(parsing: f) } catch let e as RunnerError { throw ValidationError(e.message) }
        }
    }

    func run() async throws {
        var config = E2BLocalConfiguration()
        config.host = host
        config.port = port
        config.maxSandboxes = maxSandboxes
        config.templates.formUnion(template)
        config.limits.memoryBytes = memory << 20
        config.faults = try fault.map(FaultSpec.init(parsing:))
        let env = ProcessInfo.processInfo.environment
        let keyFromEnv = env["E2B_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        config.apiKey = keyFromEnv ?? E2BLocalConfiguration.demoAPIKey
        if allowWeakIsolation && JailTools.discover().bubblewrapProblem != nil { config.isolation = .weak }

        var logger = Logger(label: "e2b-local") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = verbose ? .info : .warning
        let server = E2BLocalServer(configuration: config, logger: logger)
        let keySource = keyFromEnv == nil ? "the demo key; set E2B_API_KEY to choose one" : "from E2B_API_KEY"
        do {
            try await serve(server, config: config, keySource: keySource)
        } catch {
            fail(RunnerError(.internalError, "e2b-local could not serve on \(host):\(port): \(error). Pick another --port or --host."))
        }
    }

    private func serve(_ server: E2BLocalServer, config: E2BLocalConfiguration, keySource: String) async throws {
        try await server.run(gracefulShutdownSignals: [.sigterm, .sigint]) { [config] url in
            let lines = "e2b-local listening on \(url)\n"
                + "api key: \(E2BLocalConfiguration.mask(config.apiKey)) (\(keySource))\n"
                + "templates: \(config.templates.sorted().joined(separator: ", ")); isolation: \(config.isolation.rawValue); "
                + "max sandboxes: \(config.maxSandboxes)\n"
            FileHandle.standardOutput.write(Data(lines.utf8))
        }
    }
}
