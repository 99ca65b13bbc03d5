import Foundation

/// One run to do: a template with its variables, or an ad hoc script.
public struct RunRequest: Sendable {
    public enum Source: Sendable {
        case template(name: String, inputs: [String: VariableInput])
        case script(source: String, label: String)
    }

    public var source: Source
    /// Wall-clock limit; the template's own default (or 60 s) when nil.
    public var timeout: Duration?
    /// Network for the sandbox; decided from the template (does it talk to PostHog?) when nil.
    public var network: NetworkPolicy?
    public var runId: String
    /// Who asked: errors name parameters in its terms (`--timeout` on the CLI, `timeoutSeconds` in JSON).
    public var surface: RunnerError.Surface = .cli
    /// Called with each chunk of output as it arrives (1 = stdout, 2 = stderr), before capping, on
    /// backends that stream (the local jail): for live event streams. The chunks are not redacted.
    public var onOutput: (@Sendable (Int32, UnsafeRawBufferPointer) -> Void)?
    /// Where the files the script leaves under `out/` are written (nil: they are not collected).
    public var artifacts: ArtifactOutput?
    /// More files for the bundle (path → bytes), beside `template.py` and `run.json`: inputs such
    /// as an extraction's state. Never secrets.
    public var bundleFiles: [String: [UInt8]] = [:]
    /// Ask the driver for progress lines on stderr (`SANDBOX_RUNNER_PROGRESS=1`; `ProgressParser` reads them).
    public var progress = false

    public init(source: Source, timeout: Duration? = nil, network: NetworkPolicy? = nil, runId: String = RunRequest.newRunId(),
                surface: RunnerError.Surface = .cli) {
        self.source = source
        self.timeout = timeout
        self.network = network
        self.runId = runId
        self.surface = surface
    }

    public static func newRunId() -> String { UUID().uuidString.lowercased() }
}


/// Catalog → render → bundle → backend → result. Never throws for a run that reached the
/// sandbox: failures become result documents, with secrets redacted everywhere.
public struct Executor: Sendable {
    public static let defaultTimeout: Duration = .seconds(60)
    public static let maximumTimeout: Duration = .seconds(3600)
    /// The variables passed from the runner's environment into a sandbox.
    public static let passedVariables = ["POSTHOG_API_URL", "POSTHOG_INGEST_URL", "POSTHOG_HOST", "POSTHOG_PERSONAL_API_KEY",
                                         "POSTHOG_PROJECT_API_KEY", "POSTHOG_PROJECT_ID", "POSTHOG_TIMEOUT", "POSTHOG_LOG_LEVEL"]

    public var catalog: TemplateCatalog
    public var assembler: BundleAssembler
    public var backend: any SandboxBackend
    /// The runner's environment (process environment + .env): source of PostHog settings and secrets.
    public var environment: [String: String]
    public var outputLimit: Int = 1 << 20
    /// The network of runs that talk to PostHog (templates that use it; surfaces give scripts
    /// theirs): `posthog` unless the operator chose `host` by flag.
    public var postHogNetwork: NetworkPolicy = .posthog

    public init(catalog: TemplateCatalog, assembler: BundleAssembler, backend: any SandboxBackend, environment: [String: String]) {
        self.catalog = catalog
        self.assembler = assembler
        self.backend = backend
        self.environment = environment
    }

    public var redactor: Redactor { Redactor(environment: environment) }

    /// Validates, renders and bundles; throws `RunnerError(.badInput)` before anything runs.
    public func prepare(_ request: RunRequest) throws -> (RenderedTemplate, RunBundle, TemplateManifest?) {
        let rendered: RenderedTemplate
        var manifest: TemplateManifest?
        switch request.source {
        case .template(let name, let inputs):
            let template = try catalog.template(named: name)
            manifest = template.manifest
            rendered = try TemplateRenderer.render(template, inputs: inputs)
        case .script(let source, let label):
            rendered = RenderedTemplate(name: label, script: source, variables: [:])
        }
        let bundle = try assembler.bundle(templateName: manifest?.name, script: rendered.script, variables: rendered.variables,
                                          extraFiles: request.bundleFiles)
        return (rendered, bundle, manifest)
    }

    public func run(_ request: RunRequest, killer: ProcessKiller = ProcessKiller()) async -> RunResult {
        let clock = ContinuousClock()
        let start = clock.now
        let templateName: String? = { if case .template(let n, _) = request.source { return n }; return nil }()
        let redactor = self.redactor
        var timings: [String: Int] = [:]

        let prepared: (RenderedTemplate, RunBundle, TemplateManifest?)
        do {
            if let t = request.timeout, t <= .zero || t > Self.maximumTimeout {
                throw RunnerError(.badInput, phrase: "\(subject: .timeout) must be between 1 and \(Self.maximumTimeout.components.seconds) seconds.",
                                  parameter: .timeout)
            }
            prepared = try prepare(request)
        } catch {
            return failure(error, request: request, template: templateName, redactor: redactor)
        }
        let (rendered, bundle, manifest) = prepared
        timings["prepareMs"] = Int((clock.now - start).milliseconds)

        let timeout = request.timeout ?? manifest?.timeoutSeconds.map { .seconds($0) } ?? Self.defaultTimeout
        let network = request.network ?? ((manifest?.usesPostHog ?? false) ? postHogNetwork : .none)
        let egress: PostHogEgressRules?
        do {
            egress = try checkPostHogSettings(network: network, template: manifest)
        } catch {
            var r = failure(error, request: request, template: templateName, redactor: redactor)
            r.durationMs = Int((clock.now - start).milliseconds)
            return r
        }
        var env = sandboxEnvironment(runId: request.runId, network: network, egress: egress)
        if request.progress { env["SANDBOX_RUNNER_PROGRESS"] = "1" }

        var job = SandboxJob(runId: request.runId, bundle: bundle, environment: env, timeout: timeout, network: network, outputLimit: outputLimit)
        job.egress = egress
        job.onOutput = request.onOutput
        job.artifacts = request.artifacts.map { ArtifactReceiver(output: $0) }
        let sandboxStart = clock.now
        let outcome: SandboxOutcome
        do {
            outcome = try await backend.run(job, killer: killer)
        } catch {
            var r = failure(error, request: request, template: templateName, redactor: redactor)
            r.bundleSha256 = bundle.sha256
            r.variables = rendered.variables.mapValues(redactor.redact)
            r.durationMs = Int((clock.now - start).milliseconds)
            return r
        }
        timings["sandboxMs"] = Int((clock.now - sandboxStart).milliseconds)

        let p = outcome.process
        // Redaction on the bytes of each stream, then `data` parsed from what was redacted and
        // every string in it redacted again (JSON escapes are decoded by then).
        let stdout = redactor.redact(p.stdout.text, truncated: p.stdout.truncated)
        let stderr = redactor.redact(p.stderr.text, truncated: p.stderr.truncated)
        let data = p.stdout.truncated ? nil : JSONValue.parse(Data(stdout.utf8)).map(redactor.redact)
        var success = p.exitCode == 0 && !p.timedOut && !p.cancelled
        var error: String?
        var kind: RunnerError.Kind?
        if !success {
            let e = Self.explain(p, stderr: stderr, timeout: timeout)
            (kind, error) = (e.kind, e.message(for: request.surface))
        }
        // out/: what the host collected, or why not (a refusal fails a run that otherwise succeeded).
        let collection = outcome.artifacts ?? job.artifacts?.finish()
        if success, let refused = collection?.error {
            success = false
            (kind, error) = (refused.kind, refused.message(for: request.surface))
        }
        // Like timeout(1): a run stopped by its deadline exits 124, whatever signal ended it.
        let exitCode = p.timedOut ? 124 : p.exitCode
        return RunResult(success: success, output: stdout, error: error.map(redactor.redact), data: data, exitCode: exitCode,
                         durationMs: Int((clock.now - start).milliseconds), template: templateName, backend: backend.name,
                         runId: request.runId, stderr: stderr, truncated: p.stdout.truncated || p.stderr.truncated,
                         timedOut: p.timedOut, isolation: outcome.isolation, network: outcome.network.rawValue,
                         bundleSha256: bundle.sha256, variables: rendered.variables.mapValues(redactor.redact), timings: timings,
                         errorKind: kind, egress: outcome.egress, artifacts: collection?.artifacts ?? [])
    }

    /// The PostHog settings a run needs, checked before any sandbox starts: a template that
    /// talks to PostHog needs a personal key and a project id; any run with network needs URLs
    /// that parse (the `posthog` policy's allowlist is made of them). Returns that allowlist for
    /// the `posthog` policy.
    public func checkPostHogSettings(network: NetworkPolicy, template: TemplateManifest?) throws -> PostHogEgressRules? {
        guard network != .none else { return nil }
        if let template, template.usesPostHog {
            func missing(_ name: String, _ what: String) -> RunnerError {
                RunnerError(.badInput, "The template \(template.name) talks to PostHog, but \(name) is not set; set it (\(what)) in the environment or .env, or run with --demo.")
            }
            guard let key = environment["POSTHOG_PERSONAL_API_KEY"], !key.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw missing("POSTHOG_PERSONAL_API_KEY", "a phx_ personal API key")
            }
            guard let project = environment["POSTHOG_PROJECT_ID"]?.trimmingCharacters(in: .whitespaces), !project.isEmpty else {
                throw missing("POSTHOG_PROJECT_ID", "the numeric id of the project")
            }
            guard project.allSatisfy({ $0.isASCII && $0.isNumber }) || project == "@current" else {
                throw RunnerError(.badInput, "POSTHOG_PROJECT_ID must be the numeric id of the project (or @current).")
            }
        }
        let rules = try PostHogEgressRules.from(environment: environment)
        return network == .posthog ? rules : nil
    }

    /// What the sandbox's process gets: the run id and the PostHog settings; under `posthog`
    /// the URLs as the proxy allows them, `POSTHOG_AUTH=egress` and never the personal key.
    func sandboxEnvironment(runId: String, network: NetworkPolicy, egress: PostHogEgressRules?) -> [String: String] {
        var env: [String: String] = ["SANDBOX_RUNNER_RUN_ID": runId]
        for name in Self.passedVariables { if let v = environment[name], !v.isEmpty { env[name] = v } }
        if network == .posthog, let egress {
            env["POSTHOG_PERSONAL_API_KEY"] = nil
            env["POSTHOG_HOST"] = nil
            env["POSTHOG_API_URL"] = egress.endpoints.apiURL
            env["POSTHOG_INGEST_URL"] = egress.endpoints.ingestURL
            env["POSTHOG_AUTH"] = "egress"
        }
        return env
    }

    /// A short sentence for a failed process: the driver's own line when it wrote one.
    static func explain(_ p: ProcessOutcome, stderr: String, timeout: Duration) -> RunnerError {
        if p.timedOut {
            return RunnerError(.timeout, phrase: "The run hit its \(timeout.components.seconds) s timeout and was killed; partial output is kept. "
                + "Raise \(name: .timeout) (up to \(maximumTimeout.components.seconds)) or narrow the work.", parameter: .timeout)
        }
        if p.cancelled { return RunnerError(.cancelled, "The run was cancelled and its sandbox killed.") }
        // Exit codes are the script's own (125–127 included): a jail that did not start is the
        // backend's error, thrown before a result exists.
        if p.memoryLimitHit {
            return RunnerError(.scriptFailed, "A process of the run was killed by the sandbox's memory limit (the whole process tree, "
                + "its files in /tmp and the workspace included); work on less data at once or raise the memory limit.")
        }
        let marker = "sandbox-runner-error: "
        if let line = stderr.split(separator: "\n").last(where: { $0.hasPrefix(marker) }) {
            return RunnerError(.scriptFailed, String(line.dropFirst(marker.count)))
        }
        if let sig = p.signal {
            let name = sig == 9 ? "SIGKILL (often the memory or CPU limit)" : sig == 24 ? "SIGXCPU (the CPU-time limit)" : "signal \(sig)"
            return RunnerError(.scriptFailed, "The script was killed by \(name).")
        }
        if p.exitCode == 137 { return RunnerError(.scriptFailed, "The script was killed by SIGKILL (often the memory or CPU limit).") }
        if p.exitCode == 152 { return RunnerError(.scriptFailed, "The script exceeded its CPU-time limit and was killed.") }
        return RunnerError(.scriptFailed, "The script exited with status \(p.exitCode); see stderr.")
    }

    private func failure(_ error: Error, request: RunRequest, template: String?, redactor: Redactor) -> RunResult {
        var re = (error as? RunnerError) ?? RunnerError(.internalError, "The run failed inside sandbox-runner: \(error).")
        re.phrase = re.phrase.mapText(redactor.redact)
        return RunResult.failure(re, surface: request.surface, runId: request.runId, template: template, backend: backend.name)
    }
}
