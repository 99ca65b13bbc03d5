import ArgumentParser
import CLazyConformances
import Foundation
import SandboxRunner

@main
struct SandboxRunnerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox-runner",
        abstract: "Run PostHog analytics templates and scripts in a sandbox: a local bubblewrap jail or E2B.",
        discussion: """
        Exit codes: 0 success, 1 the script ran and failed, 64 bad input, 69 the sandbox could not be had, \
        124 the run hit its timeout. Settings come from the environment and from .env in the working directory.
        """,
        version: "0.1.0",
        subcommands: [ListCommand.self, ShowCommand.self, RunCommand.self, ExecCommand.self, ExtractCommand.self, DoctorCommand.self,
                      PostHogLocalCommand.self, SmokeCommand.self, E2BLocalCommand.self, MCPCommand.self, ServeCommand.self,
                      EgressProxyCommand.self]
    )

    /// The commands that never run code of the server modules (Hummingbird, NIO, MCP, e2b-local):
    /// for them the runtime never sees those modules' conformance records, so that each of their
    /// failed conformance lookups (argument parsing makes dozens) scans a third fewer. Anything
    /// else (serve, mcp, e2b-local, help about them, completion scripts, an unknown word) has the
    /// records registered before parsing. See Sources/CLazyConformances.
    static let withoutServerModules: Set<String> = [
        "list", "show", "run", "exec", "extract", "doctor", "posthog-local", "smoke", "egress-proxy", "--version",
    ]

    static func main() async {
        let first = CommandLine.arguments.dropFirst().first
        if first.map({ !withoutServerModules.contains($0) }) ?? true {
            _ = sr_register_lazy_conformances()
        }
        await main(nil)
    }
}
