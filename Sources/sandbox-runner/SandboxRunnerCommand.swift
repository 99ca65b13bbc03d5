import ArgumentParser
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
}
