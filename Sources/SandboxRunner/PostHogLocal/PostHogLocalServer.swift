import Foundation

/// posthog-local as a child process: the PostHog-compatible server over the generated dataset,
/// started for `--demo` runs and stopped (SIGTERM, then SIGKILL) when they end.
public final class PostHogLocalServer: @unchecked Sendable {
    public static let demoPersonalKey = "phx_demo_personal_key"
    public static let demoProjectKey = "phc_demo_project_key"
    public static let demoProjectId = "1"

    public let url: String
    /// The variables a run needs to reach this server (URL, keys, project id).
    public let environment: [String: String]
    private let process: ChildProcess

    private init(url: String, environment: [String: String], process: ChildProcess) {
        self.url = url
        self.environment = environment
        self.process = process
    }

    /// The interpreter for posthog-local: `SANDBOX_RUNNER_PYTHON`, else the project's `.venv`.
    public static func python(locator: ResourceLocator, environment: [String: String]) -> String {
        if let p = environment["SANDBOX_RUNNER_PYTHON"], !p.isEmpty { return p }
        let venv = locator.home.appendingPathComponent(".venv/bin/python").path
        return FileManager.default.isExecutableFile(atPath: venv) ? venv : "/usr/bin/python3"
    }

    /// Starts the server on a free loopback port and waits until it says where it listens.
    public static func start(locator: ResourceLocator, environment: [String: String], extraArguments: [String] = [],
                             startupTimeout: Duration = .seconds(120)) throws -> PostHogLocalServer {
        let script = locator.posthogLocalDirectory.appendingPathComponent("server.py")
        guard FileManager.default.fileExists(atPath: script.path) else {
            throw RunnerError(.unavailable, "posthog-local is missing (\(script.path)).")
        }
        var env = environment
        env["POSTHOG_PERSONAL_API_KEY"] = nonEmpty(env["POSTHOG_PERSONAL_API_KEY"]) ?? demoPersonalKey
        env["POSTHOG_PROJECT_API_KEY"] = nonEmpty(env["POSTHOG_PROJECT_API_KEY"]) ?? demoProjectKey
        env["POSTHOG_PROJECT_ID"] = nonEmpty(env["POSTHOG_PROJECT_ID"]) ?? demoProjectId
        env["PYTHONUNBUFFERED"] = "1"

        // Our own spawn, not Foundation's Process: that one lets the child inherit the calling
        // thread's blocked signals, and a server that cannot see SIGTERM cannot stop cleanly.
        let python = python(locator: locator, environment: environment)
        let child: ChildProcess
        do {
            child = try ChildProcess.start(executable: python, arguments: [script.path, "--host", "127.0.0.1", "--port", "0"] + extraArguments,
                                           environment: env)
        } catch {
            throw RunnerError(.unavailable, "Could not start posthog-local with \(python): \(error). Run `make setup`.")
        }
        let deadline = ContinuousClock.now + startupTimeout
        while ContinuousClock.now < deadline {
            if let line = child.stdout.firstLine(containing: "listening on "), let r = line.range(of: "http://") {
                let url = String(line[r.lowerBound...]).trimmingCharacters(in: .whitespaces)
                var runEnv = ["POSTHOG_API_URL": url, "POSTHOG_INGEST_URL": url]
                for k in ["POSTHOG_PERSONAL_API_KEY", "POSTHOG_PROJECT_API_KEY", "POSTHOG_PROJECT_ID"] { runEnv[k] = env[k] }
                return PostHogLocalServer(url: url, environment: runEnv, process: child)
            }
            if !child.isRunning { break }
            Thread.sleep(forTimeInterval: 0.01)
        }
        child.stop(grace: .seconds(2))
        let tail = child.stderr.text.split(separator: "\n").suffix(5).joined(separator: " | ")
        let redacted = Redactor(environment: env).redact(tail)
        throw RunnerError(.unavailable, "posthog-local did not start\(redacted.isEmpty ? "" : ": \(redacted)"). Run `make setup` to install its Python packages.")
    }

    public func stop() { process.stop(grace: .seconds(5)) }

    deinit { stop() }

    private static func nonEmpty(_ s: String?) -> String? { s.flatMap { $0.isEmpty ? nil : $0 } }
}

