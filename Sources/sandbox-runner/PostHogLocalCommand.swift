import ArgumentParser
import Foundation
import SandboxRunner

struct PostHogLocalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "posthog-local",
        abstract: "Serve the PostHog-compatible local server over the generated dataset (foreground).",
        discussion: "Keys and project id come from POSTHOG_PERSONAL_API_KEY, POSTHOG_PROJECT_API_KEY and POSTHOG_PROJECT_ID (demo defaults when unset)."
    )

    @Option(help: "Port on 127.0.0.1 (0 picks a free one).") var port: Int = 8010
    @Option(help: ArgumentHelp("Dataset directory (generated on first use).", valueName: "dir")) var data: String?
    @Option(help: ArgumentHelp("Inject a fault (repeatable), e.g. 429:count=2:retry_after=1.", valueName: "spec")) var fault: [String] = []

    func run() async throws {
        let context = try Context.load()
        let python = PostHogLocalServer.python(locator: context.locator, environment: context.environment)
        var args = [context.locator.posthogLocalDirectory.appendingPathComponent("server.py").path, "--port", String(port)]
        if let data { args += ["--data", data] }
        for f in fault { args += ["--fault", f] }
        var env = context.environment
        env["PYTHONUNBUFFERED"] = "1"
        // Foreground: the server owns the terminal; its exit status is ours.
        let argv = [python] + args
        let cArgs = argv.map { strdup($0) } + [nil]
        for (k, v) in env { setenv(k, v, 1) }
        // The runtime blocks and ignores signals on its threads: the server must see SIGTERM.
        ProcessRunner.resetSignalsForExec()
        execv(python, cArgs)
        fail(RunnerError(.unavailable, "Could not start \(python): \(String(cString: strerror(errno))). Run `make setup`."))
    }
}
