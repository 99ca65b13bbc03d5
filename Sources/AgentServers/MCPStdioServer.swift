import Foundation
import MCP
import SandboxRunner

/// `sandbox-runner mcp`: the template tools over MCP on stdin/stdout (see `MCPService`).
/// Closing stdin ends the server and kills what still runs.
public struct MCPStdioServer: Sendable {
    public var service: MCPService

    public init(tools: TemplateTools, version: String) {
        self.service = MCPService(tools: tools, version: version)
    }

    public func run() async throws {
        let runs = SessionRuns()
        let initialized = InitializedFlag()
        let server = await service.makeServer(runs: runs, initialized: initialized)
        try await MCPService.start(server, transport: StdioTransport(), initialized: initialized)
        await server.waitUntilCompleted()
        runs.close()
    }
}
