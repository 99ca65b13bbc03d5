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
    private let process: Process

    private init(url: String, environment: [String: String], process: Process) {
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

        let process = Process()
        process.executableURL = URL(fileURLWithPath: python(locator: locator, environment: environment))
        process.arguments = [script.path, "--host", "127.0.0.1", "--port", "0"] + extraArguments
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch {
            throw RunnerError(.unavailable, "Could not start posthog-local with \(process.executableURL!.path): \(error.localizedDescription). Run `make setup`.")
        }

        let lines = LineCollector()
        let errTail = LineCollector()
        out.fileHandleForReading.readabilityHandler = { h in
            let d = h.availableData
            if d.isEmpty { h.readabilityHandler = nil } else { lines.add(d) }
        }
        err.fileHandleForReading.readabilityHandler = { h in
            let d = h.availableData
            if d.isEmpty { h.readabilityHandler = nil } else { errTail.add(d) }
        }
        let deadline = ContinuousClock.now + startupTimeout
        while ContinuousClock.now < deadline {
            if let line = lines.firstLine(containing: "listening on "),
               let r = line.range(of: "http://") {
                let url = String(line[r.lowerBound...]).trimmingCharacters(in: .whitespaces)
                var runEnv = ["POSTHOG_API_URL": url, "POSTHOG_INGEST_URL": url]
                for k in ["POSTHOG_PERSONAL_API_KEY", "POSTHOG_PROJECT_API_KEY", "POSTHOG_PROJECT_ID"] { runEnv[k] = env[k] }
                return PostHogLocalServer(url: url, environment: runEnv, process: process)
            }
            if !process.isRunning { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        if process.isRunning { process.terminate() }
        let tail = errTail.text.split(separator: "\n").suffix(5).joined(separator: " | ")
        let redacted = Redactor(environment: env).redact(tail)
        throw RunnerError(.unavailable, "posthog-local did not start\(redacted.isEmpty ? "" : ": \(redacted)"). Run `make setup` to install its Python packages.")
    }

    public func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = ContinuousClock.now + .seconds(5)
        while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Runs `body` with a server that is stopped on every way out.
    public static func with<T>(locator: ResourceLocator, environment: [String: String], _ body: (PostHogLocalServer) async throws -> T) async throws -> T {
        let server = try start(locator: locator, environment: environment)
        defer { server.stop() }
        return try await body(server)
    }

    deinit { stop() }

    private static func nonEmpty(_ s: String?) -> String? { s.flatMap { $0.isEmpty ? nil : $0 } }
}

/// Accumulates a child's output (bounded) from readability handlers.
final class LineCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = Data()

    func add(_ d: Data) {
        lock.lock(); defer { lock.unlock() }
        buffer.append(d)
        if buffer.count > 256 * 1024 { buffer.removeFirst(buffer.count - 128 * 1024) }
    }

    var text: String { lock.lock(); defer { lock.unlock() }; return String(decoding: buffer, as: UTF8.self) }

    func firstLine(containing s: String) -> String? {
        text.split(separator: "\n").first { $0.contains(s) }.map(String.init)
    }
}
