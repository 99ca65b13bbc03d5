import Foundation
@testable import SandboxRunner

/// Paths of the checkout the tests run in.
enum Repo {
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        }
        fatalError("no Package.swift above \(#filePath)")
    }()
    static let fixtures = root.appendingPathComponent("Tests/SandboxRunnerTests/Fixtures")
    static let fixtureTemplates = fixtures.appendingPathComponent("templates")
    /// The CLI under test; SANDBOX_RUNNER_TEST_BINARY points the CLI tests at another build
    /// (e.g. main's, to see the attack tests fail on the code before a fix).
    static let binary = ProcessInfo.processInfo.environment["SANDBOX_RUNNER_TEST_BINARY"].map { URL(fileURLWithPath: $0) }
        ?? root.appendingPathComponent(".build/debug/sandbox-runner")
    static let attacks = fixtures.appendingPathComponent("attacks")
    static var locator: ResourceLocator { ResourceLocator(home: root) }

    static func catalog() -> TemplateCatalog {
        TemplateCatalog(builtIn: locator.templatesDirectory, custom: [fixtureTemplates])
    }

    static func executor(limits: JailLimits = JailLimits(), environment: [String: String] = [:]) throws -> Executor {
        Executor(catalog: catalog(), assembler: try BundleAssembler(sandboxDirectory: locator.sandboxDirectory),
                 backend: LocalJail(limits: limits), environment: environment)
    }
}

/// Runs the built CLI and returns its exit status, stdout and stderr.
struct CLIResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var json: JSONValue? { JSONValue.parse(Data(stdout.utf8)) }
}

func runCLI(_ args: [String], environment: [String: String] = [:], in directory: String = "/",
            timeout: Duration = .seconds(120)) throws -> CLIResult {
    var env = ["PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory()]
    env.merge(environment) { _, new in new }
    var spec = ProcessSpec(executable: Repo.binary.path, arguments: args, environment: env, timeout: timeout, outputLimit: 8 << 20)
    spec.workingDirectory = directory
    let out = try ProcessRunner.runBlocking(spec, killer: ProcessKiller())
    return CLIResult(status: out.exitCode, stdout: out.stdout.text, stderr: out.stderr.text)
}
