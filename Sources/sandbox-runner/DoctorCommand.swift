import ArgumentParser
import Foundation
import SandboxRunner

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check what works here: the jail, python3, limits, credentials, PostHog reachability.",
        discussion: "Exits 0 when runs can be isolated here, 69 when they cannot."
    )

    @Flag(help: "Print JSON for machines.") var json = false
    @Option(help: ArgumentHelp("Seconds PostHog gets to answer each check.", valueName: "seconds")) var timeout = 5
    @OptionGroup var catalogOptions: CatalogOptions
    @Option(help: .hidden) var printBubblewrapArguments: String?

    struct Check: Codable { var name: String; var ok: Bool; var detail: String }

    func run() async throws {
        if let script = printBubblewrapArguments {
            // For the benchmark: the exact jail a run of SCRIPT gets (same options, seccomp filter,
            // bundle files), to time bare bubblewrap against the runner.
            try printJailPlan(script: script)
            return
        }
        let context = try Context.load()
        let env = context.environment
        let tools = JailTools.discover()
        var checks: [Check] = []

        let jailProblem = tools.bubblewrapProblem
        checks.append(Check(name: "bubblewrap", ok: jailProblem == nil,
                            detail: jailProblem ?? "\(tools.bwrap!) creates user, pid, ipc, uts, cgroup and network namespaces, "
                                + "no nested user namespaces, a read-only root and the workspace as a tmpfs inside the jail"))
        checks.append(Check(name: "python3", ok: tools.python != nil,
                            detail: tools.python.map { "\($0) (\(Self.version(of: $0)))" } ?? "missing: apt-get install python3"))
        checks.append(Check(name: "jail user", ok: true,
                            detail: geteuid() == 0 ? "running as root: each run gets its own unprivileged uid, so RLIMIT_NPROC caps that run alone"
                                : "running as uid \(geteuid()): RLIMIT_NPROC counts all of this user's processes"))
        checks.append(Self.cgroupCheck())
        do {
            let bpf = try SeccompFilter.bpf()
            let calls = SeccompFilter.deniedGroups.reduce(0) { $0 + $1.calls.count }
            checks.append(Check(name: "seccomp", ok: true, detail: "every jailed process runs under a filter (\(bpf.count / 8) BPF instructions) "
                + "denying \(calls) calls (ptrace, keyrings, mounts, namespaces, bpf, io_uring, …) with EPERM; other ABIs are killed"))
        } catch {
            checks.append(Check(name: "seccomp", ok: false, detail: "\(error)"))
        }
        let network = Self.networkCheck(env: env)
        checks.append(network)

        let catalog = catalogOptions.catalog(context)
        checks.append(Check(name: "templates", ok: catalog.problems.isEmpty,
                            detail: "\(catalog.names.count) found in \(context.locator.templatesDirectory.path)"
                                + (catalog.problems.isEmpty ? "" : "; problems: " + catalog.problems.joined(separator: "; "))))

        let masked = { (k: String) -> String in
            guard let v = env[k], !v.isEmpty else { return "\(k) not set" }
            return Redactor.isSecretName(k) ? "\(k) set (\(v.prefix(4))…)" : "\(k)=\(v)"
        }
        let creds = ["POSTHOG_API_URL", "POSTHOG_PROJECT_ID", "POSTHOG_PERSONAL_API_KEY", "POSTHOG_PROJECT_API_KEY"]
        let haveCreds = env["POSTHOG_PERSONAL_API_KEY"].map { !$0.isEmpty } ?? false
        checks.append(Check(name: "posthog credentials", ok: true,
                            detail: creds.map(masked).joined(separator: ", ") + (haveCreds ? "" : " (use --demo to run without an account)")))
        // PostHog itself, with a problem category (auth, permission, network, timeout, unknown).
        let posthog = PostHogDiagnosis.check(environment: env, timeout: .seconds(max(1, min(timeout, 120))))
        if haveCreds {
            checks.append(Check(name: "posthog reachability", ok: posthog.ok,
                                detail: posthog.category.map { "\($0.rawValue): " + posthog.message } ?? posthog.message))
        }
        if let key = env["E2B_API_KEY"], !key.isEmpty {
            checks.append(Self.e2bReachability(env: env))
        } else {
            checks.append(Check(name: "e2b", ok: true, detail: "E2B_API_KEY not set: --backend e2b unavailable (the local jail needs no account)"))
        }
        let python = PostHogLocalServer.python(locator: context.locator, environment: env)
        let demoOK = Self.canImport(python: python, modules: "duckdb, sqlglot")
        checks.append(Check(name: "posthog-local (--demo)", ok: demoOK,
                            detail: demoOK ? "\(python) has duckdb and sqlglot" : "\(python) lacks duckdb/sqlglot: run `make setup`"))

        let usable = jailProblem == nil && tools.python != nil
        if json {
            printJSON(["isolation": JSONValue.string(usable ? "bubblewrap" : "unavailable"),
                       "network": .string(NetworkPolicy.posthog.rawValue),
                       "checks": .array(checks.map { .object(["name": .string($0.name), "ok": .bool($0.ok),
                                                              "detail": .string(context.redactor.redact($0.detail))]) }),
                       "posthog": posthog.json],
                      pretty: true)
        } else {
            for c in checks { print("\(c.ok ? "ok  " : "FAIL") \(c.name): \(TerminalText.escape(context.redactor.redact(c.detail)))") }
            print(usable ? "\nRuns are isolated with bubblewrap." : "\nRuns cannot be isolated here: they are refused unless you pass --allow-weak-isolation.")
        }
        if !usable { throw ExitCode(69) }
    }

    func printJailPlan(script: String) throws {
        let context = try Context.load()
        guard let source = FileManager.default.contents(atPath: script) else { fail(RunnerError(.badInput, "Cannot read the script \(script).")) }
        let assembler = try BundleAssembler(sandboxDirectory: context.locator.sandboxDirectory)
        let bundle = try assembler.bundle(templateName: nil, script: String(decoding: source, as: UTF8.self), variables: [:])
        let plan = try LocalJail().plan(bundle: bundle, network: .none)
        printJSON(["command": JSONValue.array(plan.command.map(JSONValue.string)),
                   "descriptors": .array(plan.descriptors.map { .string(Data($0).base64EncodedString()) }),
                   "environment": .object(plan.environment.mapValues(JSONValue.string))], pretty: false)
    }

    /// The network policy of runs that talk to PostHog, and what its egress proxy would allow here.
    static func networkCheck(env: [String: String]) -> Check {
        let others = "; runs that do not talk to PostHog get none (an empty network namespace); host (the host's whole network and the "
            + "personal API key inside the sandbox) only with --network host"
        do {
            let rules = try PostHogEgressRules.from(environment: env)
            return Check(name: "network", ok: true, detail: "policy posthog for runs that talk to PostHog: their own empty network namespace, "
                + "and sandbox-runner's egress proxy (a Unix socket bound into the jail; CONNECT refused) allowing only \(rules.summary)"
                + (rules.hasKey ? ", adding the personal API key to requests for the API host (the key never enters the sandbox)" : "")
                + others)
        } catch {
            return Check(name: "network", ok: false, detail: "policy posthog cannot be set up: \(error)" + others)
        }
    }

    /// Whether runs get per-run cgroups, and what bounds a run when they do not.
    static func cgroupCheck() -> Check {
        let limits = JailLimits()
        let mib = { (b: Int) in "\(b >> 20) MiB" }
        let tmpfs = "workspace \(mib(limits.workspaceBytes)), /tmp \(mib(limits.tmpBytes)), /dev/shm \(mib(limits.shmBytes))"
        let without = "without them a run is bounded per process only: address space \(mib(limits.memoryBytes)) (RLIMIT_AS) "
            + "× up to \(limits.processes) processes (RLIMIT_NPROC\(geteuid() == 0 ? " of the run's own uid" : ", counted across all of this user's processes")), "
            + "tmpfs sizes (\(tmpfs)), CPU seconds, file size and open files; the total memory of a run's tree is not capped"
        if let why = LocalJail.cgroupsUnavailableReason {
            return Check(name: "cgroups", ok: true, detail: "unavailable: \(why); \(without)")
        }
        let controllers = LocalJail.cgroupControllers.joined(separator: ", ")
        if !limits.useCgroups {
            return Check(name: "cgroups", ok: true, detail: "off (SANDBOX_RUNNER_CGROUPS=0; v1 \(controllers) available): \(without)")
        }
        return Check(name: "cgroups", ok: true, detail: "on: each run gets its own cgroup v1 \(controllers): the whole tree holds at most "
            + "\(mib(limits.memoryBytes)) of memory (--memory; its tmpfs files and kernel memory included, no swap) and \(limits.processes) processes; "
            + "tmpfs sizes \(tmpfs)")
    }

    static func version(of python: String) -> String {
        let out = try? ProcessRunner.runBlocking(ProcessSpec(executable: python, arguments: ["--version"], environment: [:],
                                                             timeout: .seconds(5), outputLimit: 256), killer: ProcessKiller())
        return out?.stdout.text.trimmingCharacters(in: .whitespacesAndNewlines) ?? "version unknown"
    }

    static func canImport(python: String, modules: String) -> Bool {
        let out = try? ProcessRunner.runBlocking(ProcessSpec(executable: python, arguments: ["-c", "import \(modules)"], environment: [:],
                                                             timeout: .seconds(20), outputLimit: 4096), killer: ProcessKiller())
        return out?.exitCode == 0
    }

    static func e2bReachability(env: [String: String]) -> Check {
        do {
            let config = try E2BConfiguration.fromEnvironment(env)
            let r = try CurlHTTPClient.request(url: config.apiURL.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + "/v2/sandboxes?limit=1",
                                               headers: ["X-API-Key": config.apiKey], timeout: .seconds(8), options: config.connection)
            switch r.status {
            case 200:
                return Check(name: "e2b", ok: true, detail: "\(config.apiURL) accepted the key; template \(config.templateID); "
                    + "sandboxes live at most \(config.maxSandboxTimeout.components.seconds) s (E2B_MAX_SANDBOX_TIMEOUT)")
            case 401, 403: return Check(name: "e2b", ok: false, detail: "\(config.apiURL) refused E2B_API_KEY (\(r.status))")
            default: return Check(name: "e2b", ok: false, detail: "\(config.apiURL) answered HTTP \(r.status)")
            }
        } catch {
            return Check(name: "e2b", ok: false, detail: "\(error)")
        }
    }
}
