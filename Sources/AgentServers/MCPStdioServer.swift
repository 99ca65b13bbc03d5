import Foundation
import MCP
import SandboxRunner

/// `sandbox-runner mcp`: the template tools over MCP on stdin/stdout. Progress notifications
/// while a run goes on (when the call carries a progress token); a cancelled call's task is
/// cancelled, which kills its sandbox.
public struct MCPStdioServer: Sendable {
    public var tools: TemplateTools
    public var version: String

    public init(tools: TemplateTools, version: String) {
        self.tools = tools
        self.version = version
    }

    public func run() async throws {
        let server = Server(name: "sandbox-runner", version: version, title: "sandbox-runner: PostHog analytics in a sandbox",
                            instructions: "Each tool runs one analytics template in an isolated sandbox and answers with a result "
                                + "document (success, data, error). Read-only tools never write to PostHog.",
                            capabilities: .init(tools: .init(listChanged: false)))
        let tools = self.tools
        await server.withMethodHandler(ListTools.self) { _ in ListTools.Result(tools: tools.tools()) }
        await server.withMethodHandler(CallTool.self) { [weak server] params in
            let token = params._meta?.progressToken
            return try await withThrowingTaskGroup(of: CallTool.Result?.self) { group in
                group.addTask { try await tools.call(name: params.name, arguments: params.arguments) }
                if let token, let server {
                    group.addTask {
                        // A heartbeat while the sandbox runs: seconds elapsed.
                        var seconds = 0.0
                        while !Task.isCancelled {
                            try await Task.sleep(for: .seconds(1))
                            seconds += 1
                            try? await server.notify(ProgressNotification.message(
                                .init(progressToken: token, progress: seconds, total: nil, message: "running (\(Int(seconds)) s)")))
                        }
                        return nil
                    }
                }
                defer { group.cancelAll() }
                while let next = try await group.next() {
                    if let result = next { return result }
                }
                throw CancellationError()
            }
        }
        try await server.start(transport: StdioTransport())
        await server.waitUntilCompleted()
    }
}
