import Foundation
import MCP
import SandboxRunner

/// `server/discover` (MCP 2026-07-28): answered so that clients of the newest revision learn at
/// once that this server speaks the handshake revisions (the MCP Swift SDK's), and fall back to
/// `initialize` on an explicit advertisement rather than on "method not found". Nothing runs.
enum Discover: MCP.Method {
    static let name = "server/discover"
    typealias Parameters = Value
    typealias Result = Value
}

/// The runs of one MCP connection or session, so closing it kills their sandboxes.
final class SessionRuns: @unchecked Sendable {
    private let lock = NSLock()
    private var killers: [ObjectIdentifier: ProcessKiller] = [:]
    private var closed = false

    /// False once the session is closed: the run must not start.
    func add(_ k: ProcessKiller) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard !closed else { return false }
        killers[ObjectIdentifier(k)] = k
        return true
    }

    func remove(_ k: ProcessKiller) { lock.lock(); killers[ObjectIdentifier(k)] = nil; lock.unlock() }

    var count: Int { lock.lock(); defer { lock.unlock() }; return killers.count }

    /// Kills every run and refuses new ones.
    func close() {
        lock.lock(); closed = true; let all = Array(killers.values); lock.unlock()
        for k in all { k.kill(cancelling: true) }
    }
}

/// Whether `initialize` has happened on a connection: nothing runs before it.
final class InitializedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}

/// Builds the MCP server both transports serve: the template tools, progress while a run goes
/// on, cancellation that kills the sandbox, `server/discover`, and nothing before `initialize`.
public struct MCPService: Sendable {
    public var tools: TemplateTools
    public var version: String
    /// Gate for runs (the HTTP server's admission control); nil on stdio.
    var admit: (@Sendable () async -> RunnerError?)?
    var release: (@Sendable () async -> Void)?

    public init(tools: TemplateTools, version: String) {
        self.tools = tools
        self.version = version
    }

    static let instructions = "Each tool runs one analytics template in an isolated sandbox and answers with a result "
        + "document (success, data, error, errorKind). Read-only tools never write to PostHog. A failed call is a result "
        + "with isError and a sentence saying what to change. Files a run writes (export_events, scripts writing into out/) "
        + "come back as resource links, readable with resources/read."

    /// A server whose `start` must be given `initializeHook: flag.set` (see `start`).
    func makeServer(runs: SessionRuns, initialized: InitializedFlag) async -> Server {
        let server = Server(name: "sandbox-runner", version: version, title: "sandbox-runner: PostHog analytics in a sandbox",
                            instructions: Self.instructions,
                            capabilities: .init(resources: tools.artifacts == nil ? nil : .init(subscribe: false, listChanged: false),
                                                tools: .init(listChanged: false)))
        let tools = self.tools
        let admit = self.admit, release = self.release
        await server.withMethodHandler(Discover.self) { _ in
            .object([
                "supportedVersions": .array(Version.supported.sorted().map { .string($0) }),
                "capabilities": .object(["tools": .object(["listChanged": .bool(false)])]),
                "instructions": .string(Self.instructions),
                "ttlMs": .int(0), "cacheScope": .string("private"), "resultType": .string("complete"),
            ])
        }
        if tools.artifacts != nil {
            // The files runs left in out/: listed, and read by the URIs tool results link to.
            await server.withMethodHandler(ListResources.self) { _ in
                guard initialized.isSet else { throw Self.notInitialized }
                return ListResources.Result(resources: tools.listResources())
            }
            await server.withMethodHandler(ReadResource.self) { params in
                guard initialized.isSet else { throw Self.notInitialized }
                guard let content = tools.readResource(uri: params.uri) else {
                    throw MCPError.serverError(code: -32002, message: "Resource not found: \(params.uri.prefix(300)) is not a file a run of this "
                        + "server kept (it may have expired), or it is over \(TemplateTools.readLimit >> 20) MiB (read it over the HTTP API).")
                }
                return ReadResource.Result(contents: [content])
            }
        }
        await server.withMethodHandler(ListTools.self) { _ in
            guard initialized.isSet else { throw Self.notInitialized }
            return ListTools.Result(tools: tools.tools())
        }
        await server.withMethodHandler(CallTool.self) { [weak server] params in
            guard initialized.isSet else { throw Self.notInitialized }
            let killer = ProcessKiller()
            let runsSomething = params.name != TemplateTools.listTemplates
            if runsSomething {
                if let admit, let refusal = await admit() {
                    return tools.failure(refusal, template: nil)
                }
                guard runs.add(killer) else {
                    await release?()
                    return tools.failure(RunnerError(.unavailable, "The session is closing; open a new one and call again."), template: nil)
                }
            }
            defer { if runsSomething { runs.remove(killer) } }
            let result: CallTool.Result
            do {
                result = try await Self.callWithProgress(server: server, tools: tools, params: params, killer: killer,
                                                         progress: runsSomething)
            } catch {
                if runsSomething { await release?() }
                throw error
            }
            if runsSomething { await release?() }
            // A cancelled call gets no answer (the SDK drops it); its sandbox is already killed.
            try Task.checkCancellation()
            return result
        }
        return server
    }

    static func callWithProgress(server: Server?, tools: TemplateTools, params: CallTool.Parameters, killer: ProcessKiller,
                                 progress: Bool) async throws -> CallTool.Result {
            let token = params._meta?.progressToken
            return try await withThrowingTaskGroup(of: CallTool.Result?.self) { group in
                group.addTask { try await tools.call(name: params.name, arguments: params.arguments, killer: killer) }
                if let token, let server, progress {
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

    static let notInitialized = MCPError.invalidRequest(
        "The session is not initialized: send initialize (and notifications/initialized) before any other request.")

    /// Starts `server` on `transport` with the hook that lets requests through after `initialize`.
    static func start(_ server: Server, transport: any Transport, initialized: InitializedFlag) async throws {
        try await server.start(transport: transport) { _, _ in initialized.set() }
    }
}
