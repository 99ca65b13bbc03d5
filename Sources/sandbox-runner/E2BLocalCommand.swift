import ArgumentParser
import E2BLocal
import Foundation
import Logging
import SandboxRunner

struct E2BLocalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "e2b-local",
        abstract: "Serve an E2B-compatible API and envd on one port, each sandbox a bubblewrap jail with its own filesystem (foreground).",
        discussion: """
        Point E2B_API_URL and E2B_SANDBOX_URL at the printed URL. The accepted key is E2B_API_KEY \
        (\(E2BLocalConfiguration.demoAPIKey) when unset). Stops on SIGTERM/SIGINT, killing every sandbox. \
        With --tls-dir it serves HTTPS with its own CA (printed), sandboxes at 49983-<id>.<domain>. \
        Fault SPECs are described in Sources/E2BLocal/README.md.
        """
    )

    @Option(help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(help: "Port to listen on (0 picks a free one; the real port is printed).") var port: Int = 0
    @Option(help: ArgumentHelp("Inject a fault (repeatable), e.g. create-429:count=2 or stream-cut:after=3.", valueName: "spec"))
    var fault: [String] = []
    @Option(help: ArgumentHelp("Live sandboxes at most; creates past it get a 429.", valueName: "N")) var maxSandboxes: Int = 20
    @Option(help: ArgumentHelp("Another template name to accept besides base (repeatable).", valueName: "name")) var template: [String] = []
    @Option(help: ArgumentHelp("Memory limit of each process in a sandbox, in MiB.", valueName: "MiB")) var memory: Int = 1024
    @Option(help: ArgumentHelp("Size of each sandbox's /home/user, in MiB (a tmpfs; /tmp is 64 MiB more).", valueName: "MiB"))
    var disk: Int = 256
    @Option(help: ArgumentHelp("The plan's longest sandbox lifetime, in hours (E2B Hobby: 1, Pro: 24).", valueName: "hours"))
    var maxSandboxHours: Int = 1
    @Option(help: ArgumentHelp("The domain sandboxes are reported under (envd answers as 49983-<id>.<domain>).", valueName: "domain"))
    var domain: String?
    @Option(help: ArgumentHelp("Serve HTTPS: a directory holding cert.pem and key.pem, or where to make them (and ca.pem) when absent.",
                               valueName: "dir"))
    var tlsDir: String?
    @Flag(help: "Refuse what E2B accepts but a careful client never sends: X-API-Key on envd calls, the deprecated POST /sandboxes.")
    var strict = false
    @Flag(help: "Log every sandbox created and killed to stderr.") var verbose = false
    @Option(help: ArgumentHelp("An internal address sandboxes may still reach through their egress, as E2B's ALLOW_SANDBOX_INTERNAL_CIDRS (repeatable): CIDR, ADDRESS or ADDRESS:PORT, e.g. 127.0.0.1:8010 for a PostHog on this machine (E2B refuses loopback and private addresses otherwise).", valueName: "cidr"))
    var allowInternalEgress: [String] = []

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be from 0 to 65535.") }
        guard (1...1000).contains(maxSandboxes) else { throw ValidationError("--max-sandboxes must be from 1 to 1000.") }
        guard (64...65536).contains(memory) else { throw ValidationError("--memory must be from 64 to 65536 MiB.") }
        guard (1...65536).contains(disk) else { throw ValidationError("--disk must be from 1 to 65536 MiB.") }
        guard (1...720).contains(maxSandboxHours) else { throw ValidationError("--max-sandbox-hours must be from 1 to 720.") }
        if let d = domain, d.isEmpty || d.contains("/") || d.contains(":") { throw ValidationError("--domain must be a DNS name such as e2b-local.test.") }
        for f in fault {
            do { _ = try FaultSpec(parsing: f) } catch let e as RunnerError { throw ValidationError(e.message) }
        }
        for a in allowInternalEgress where E2BLocalConfiguration.internalEgressIsValid(a) == false {
            throw ValidationError("--allow-internal-egress takes a CIDR, an address or ADDRESS:PORT (such as 127.0.0.1:8010); got '\(a)'.")
        }
    }

    func run() async throws {
        LazyLibrary.preloadAll()
        var config = E2BLocalConfiguration()
        config.host = host
        config.port = port
        config.maxSandboxes = maxSandboxes
        config.templates.formUnion(template)
        config.limits.memoryBytes = memory << 20
        config.diskBytes = disk << 20
        config.maxSandboxHours = maxSandboxHours
        config.strict = strict
        config.internalEgress = allowInternalEgress
        if let hosts = ProcessInfo.processInfo.environment["SANDBOX_RUNNER_EGRESS_HOSTS"], !hosts.isEmpty {
            do { config.egressHosts = try EgressResolver.hostsFile(hosts) } catch let e as RunnerError { fail(e) }
        }
        config.faults = try fault.map(FaultSpec.init(parsing:))
        config.domain = domain ?? (tlsDir != nil ? "e2b-local.test" : "localhost")
        let env = ProcessInfo.processInfo.environment
        let keyFromEnv = env["E2B_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        config.apiKey = keyFromEnv ?? E2BLocalConfiguration.demoAPIKey
        if let problem = JailTools.discover().bubblewrapProblem {
            fail(RunnerError(.unavailable, "e2b-local needs bubblewrap for its sandboxes: \(problem) Install bubblewrap and enable user namespaces."))
        }
        var caFile: String?
        if let dir = tlsDir {
            do {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                let cert = dir + "/cert.pem", key = dir + "/key.pem"
                if FileManager.default.fileExists(atPath: cert) && FileManager.default.fileExists(atPath: key) {
                    config.tls = .init(certificateChain: cert, privateKey: key)
                } else {
                    config.tls = try E2BLocalServer.makeCertificates(in: dir, domain: config.domain)
                }
                caFile = FileManager.default.fileExists(atPath: dir + "/ca.pem") ? dir + "/ca.pem" : nil
            } catch let e as RunnerError {
                fail(e)
            } catch {
                fail(RunnerError(.badInput, "Cannot use --tls-dir \(dir): \(error.localizedDescription)"))
            }
        }

        var logger = Logger(label: "e2b-local") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = verbose ? .info : .warning
        let server = E2BLocalServer(configuration: config, logger: logger)
        let keySource = keyFromEnv == nil ? "the demo key; set E2B_API_KEY to choose one" : "from E2B_API_KEY"
        do {
            try await server.run(gracefulShutdownSignals: [.sigterm, .sigint]) { [config, caFile] url in
                var lines = "e2b-local listening on \(url)\n"
                    + "api key: \(E2BLocalConfiguration.mask(config.apiKey)) (\(keySource))\n"
                    + "templates: \(config.templates.sorted().joined(separator: ", ")); domain: \(config.domain); "
                    + "max sandboxes: \(config.maxSandboxes); max lifetime: \(config.maxSandboxHours) h"
                    + (config.strict ? "; strict" : "") + "\n"
                if let caFile { lines += "ca: \(caFile)\n" }
                FileHandle.standardOutput.write(Data(lines.utf8))
            }
        } catch let e as RunnerError {
            fail(e)
        } catch {
            fail(RunnerError(.internalError, "e2b-local could not serve on \(host):\(port): \(error). Pick another --port or --host."))
        }
    }
}
