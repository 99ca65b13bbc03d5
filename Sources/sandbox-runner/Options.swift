import ArgumentParser
import Foundation
import SandboxRunner

/// Where templates come from.
struct CatalogOptions: ParsableArguments {
    @Option(name: .customLong("templates-dir"),
            help: ArgumentHelp("A directory of your own templates (repeatable; also SANDBOX_RUNNER_TEMPLATES, colon-separated).", valueName: "dir"))
    var templateDirectories: [String] = []

    func catalog(_ context: Context) -> TemplateCatalog {
        var dirs = templateDirectories
        if let env = context.environment["SANDBOX_RUNNER_TEMPLATES"], !env.isEmpty {
            dirs += env.split(separator: ":").map(String.init)
        }
        return TemplateCatalog(builtIn: context.locator.templatesDirectory, custom: dirs.map { URL(fileURLWithPath: $0) })
    }
}

/// Options shared by every command that runs something.
struct RunOptions: ParsableArguments {
    @Option(help: "Where to run: local (the bubblewrap jail) or e2b (E2B cloud sandboxes; needs E2B_API_KEY).")
    var backend: String = "local"

    @Option(help: ArgumentHelp("E2B only: keep up to N sandboxes warm between runs of this command.", valueName: "N"))
    var warmPool: Int = 0

    @Flag(help: "E2B only: the PostHog URL given to the sandbox is reachable from E2B's cloud (a tunnel or public address); without it --demo refuses a cloud E2B.")
    var sandboxReachesPosthog = false

    @Option(help: ArgumentHelp("Wall-clock limit in seconds (default: the template's, or 60).", valueName: "seconds"))
    var timeout: Int?

    @Flag(help: "Run against posthog-local with the generated demo dataset (needs no PostHog account).")
    var demo = false

    @Flag(help: "Print the result document as one line of JSON.")
    var json = false

    @Option(help: ArgumentHelp("The network of runs that talk to PostHog: posthog (the default: only the PostHog hosts, through the egress proxy, which holds the personal API key), host (the host's whole network and the key inside the sandbox) or none.", valueName: "policy"))
    var network: NetworkPolicy?

    @Flag(help: "Run without namespaces where bubblewrap cannot work (the script can then read the host's files).")
    var allowWeakIsolation = false

    @Option(help: ArgumentHelp("Memory limit of the sandbox in MiB.", valueName: "MiB"))
    var memory: Int = 1024

    @Option(help: ArgumentHelp("Bytes kept of stdout and of stderr each; the rest is counted and dropped.", valueName: "bytes"))
    var outputLimit: Int = 1 << 20

    @Option(help: ArgumentHelp("Files a run may leave under out/ at most; past it the run fails.", valueName: "N"))
    var maxArtifacts: Int = 100

    @Option(help: ArgumentHelp("Bytes of all the files a run leaves under out/ at most; past it the run fails.", valueName: "bytes"))
    var maxArtifactBytes: Int = 256 << 20

    func validate() throws {
        guard ["local", "e2b"].contains(backend) else {
            throw ValidationError("Unknown backend '\(backend)'. Available: local, e2b.")
        }
        guard (0...20).contains(warmPool) else { throw ValidationError("--warm-pool must be between 0 and 20.") }
        if let t = timeout, !(1...3600).contains(t) { throw ValidationError("--timeout must be between 1 and 3600 seconds.") }
        guard (64...65536).contains(memory) else { throw ValidationError("--memory must be between 64 and 65536 MiB.") }
        guard (1024...(256 << 20)).contains(outputLimit) else { throw ValidationError("--output-limit must be between 1 KiB and 256 MiB.") }
        guard (0...10_000).contains(maxArtifacts) else { throw ValidationError("--max-artifacts must be between 0 and 10000.") }
        guard (0...(64 << 30)).contains(maxArtifactBytes) else { throw ValidationError("--max-artifact-bytes must be between 0 and 64 GiB.") }
    }

    var artifactLimits: ArtifactLimits {
        var l = ArtifactLimits()
        l.maxCount = maxArtifacts
        l.maxTotalBytes = maxArtifactBytes
        return l
    }

    func backend(_ context: Context) throws -> any SandboxBackend {
        if backend == "e2b" {
            var config = try E2BConfiguration.fromEnvironment(context.environment)
            config.warmPoolSize = warmPool
            if demo && !config.sandboxesAreLocal && !sandboxReachesPosthog {
                throw RunnerError(.badInput, "--demo serves PostHog on this machine's loopback, which an E2B cloud sandbox cannot reach: "
                    + "use --demo with --backend local or with e2b-local (E2B_API_URL=http://127.0.0.1:PORT), or pass "
                    + "--sandbox-reaches-posthog if the PostHog URL given to the sandbox is reachable from E2B.")
            }
            return E2BBackend(config: config)
        }
        var limits = JailLimits()
        limits.memoryBytes = memory << 20
        return LocalJail(mode: allowWeakIsolation ? .weak : .bubblewrap, limits: limits)
    }
}

/// What every command needs: the environment (with .env) and where the shipped files are.
struct Context {
    var environment: [String: String]
    var locator: ResourceLocator

    static func load() throws -> Context {
        let env = DotEnv.environment(loadingFrom: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        do {
            return Context(environment: env, locator: try ResourceLocator.locate(environment: env))
        } catch let e as RunnerError {
            fail(e)
        }
    }

    var redactor: Redactor { Redactor(environment: environment) }
}

/// Prints a one-sentence error to stderr and exits with the error's code.
func fail(_ error: RunnerError) -> Never {
    FileHandle.standardError.write(Data("error: \(TerminalText.escape(error.message))\n".utf8))
    finish(error.exitCode)
}

func printJSON<T: Encodable>(_ value: T, pretty: Bool) {
    let e = JSONEncoder()
    e.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
    let data = (try? e.encode(value)) ?? Data("null".utf8)
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

/// `serve` and `mcp` run every agent's script: `--network host` would hand each of them the
/// host's network and the personal API key, so it needs `--allow-host-network` too.
func refuseHostNetwork(_ options: RunOptions, allowed: Bool, command: String) {
    if options.network == .host && !allowed {
        fail(RunnerError(.badInput, "\(command) refuses --network host (every agent's script would get the host's whole network and the personal API key) "
            + "unless it is started with --allow-host-network."))
    }
}

/// What a long-lived command (smoke, mcp, serve) runs with: the executor over the chosen
/// backend, and with `--demo` the posthog-local it started. `stop()` ends both.
struct RunSetup {
    var executor: Executor
    var backend: any SandboxBackend
    var demo: PostHogLocalServer?

    /// Builds it, or exits with the error's code and sentence.
    static func make(options: RunOptions, catalog: TemplateCatalog, context: Context) -> RunSetup {
        do {
            let assembler = try BundleAssembler(sandboxDirectory: context.locator.sandboxDirectory)
            let backend = try options.backend(context)
            var env = context.environment
            var demo: PostHogLocalServer?
            if options.demo {
                demo = try PostHogLocalServer.start(locator: context.locator, environment: env)
                env.merge(demo!.environment) { _, d in d }
            }
            var executor = Executor(catalog: catalog, assembler: assembler, backend: backend, environment: env)
            executor.outputLimit = options.outputLimit
            executor.postHogNetwork = options.network ?? .posthog
            return RunSetup(executor: executor, backend: backend, demo: demo)
        } catch let e as RunnerError {
            fail(e)
        } catch {
            fail(RunnerError(.internalError, "\(error)"))
        }
    }

    func stop() {
        stopBackend(backend)
        demo?.stop()
    }
}

/// Where a CLI run's `out/` files go.
struct OutputDirectoryOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Where the files the script leaves under out/ are written (default ./sandbox-runner-out/<run-id>/, "
        + "made only when there are files).", valueName: "dir"))
    var outDir: String?

    /// The run's output: `--out-dir` (made when missing; the last component never a link), else
    /// `./sandbox-runner-out/<run-id>/` (new).
    func output(runId: String, limits: ArtifactLimits) -> ArtifactOutput {
        let dir = outDir
        return ArtifactOutput(limits: limits) {
            if let dir { return try ArtifactDirectory.open(dir) }
            return try ArtifactDirectory.openDefault(runId: runId)
        }
    }
}
