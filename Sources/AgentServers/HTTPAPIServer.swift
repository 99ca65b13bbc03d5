import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SandboxRunner
import ServiceLifecycle
import UnixSignals

/// Settings of `sandbox-runner serve`.
public struct HTTPAPIConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 0
    /// Bearer token; nil only when explicitly allowed on loopback.
    public var token: String?
    public var maxConcurrent = 4
    public var queueLength = 16
    public var maxBodyBytes = 1 << 20
    /// How long a SIGTERM waits for running sandboxes before killing them.
    public var shutdownGrace: Duration = .seconds(20)
    /// Header, body and idle deadlines of a connection.
    public var timeouts = ConnectionTimeouts()
    /// Open connections at most (lowered to what the file-descriptor limit allows).
    public var maxConnections = 512
    /// How long finished async runs are kept, and how many and how much of them at most.
    public var retention: Duration = .seconds(600)
    public var maxRetainedRuns = 256
    public var maxRetainedBytes = 64 << 20
    /// MCP sessions over HTTP at most, and how long an idle one lives.
    public var maxMCPSessions = 64
    public var mcpSessionIdle: Duration = .seconds(1800)
    public var version = "0"
    public init() {}
}

/// The HTTP API for agents: templates with their JSON Schema, runs (sync and async, with events),
/// MCP over Streamable HTTP, health, OpenAPI. Every error is one `Error` document
/// (`{error, errorKind, status, field?, runId?}`).
public final class HTTPAPIServer: Sendable {
    let config: HTTPAPIConfiguration
    let tools: TemplateTools
    let gate: RunGate
    let running = RunningRuns()
    let runs: RunStore
    let mcp: MCPHTTPSessions
    let connections: ConnectionGuard

    public init(config: HTTPAPIConfiguration, tools: TemplateTools) {
        self.config = config
        self.tools = tools
        let gate = RunGate(maxConcurrent: config.maxConcurrent, queueLength: config.queueLength)
        self.gate = gate
        self.runs = RunStore(maxActive: config.maxConcurrent + config.queueLength, retention: config.retention,
                             maxRetained: config.maxRetainedRuns, maxRetainedBytes: config.maxRetainedBytes,
                             eventBytesLimit: 2 * tools.executor.outputLimit + 64 * 1024)
        var service = MCPService(tools: tools, version: config.version)
        service.admit = { await gate.enter() }
        service.release = { gate.leave() }
        let loopback = ["127.0.0.1", "::1", "localhost"].contains(config.host)
        self.mcp = MCPHTTPSessions(service: service, maxSessions: config.maxMCPSessions, idleLimit: config.mcpSessionIdle,
                                   loopbackOnly: loopback)
        self.connections = ConnectionGuard(maxConnections: Self.connectionCap(config), timeouts: config.timeouts)
    }

    /// The connection cap, lowered so that connections can never exhaust the file descriptors the
    /// runs themselves need (pipes, the bundle, posthog-local).
    static func connectionCap(_ config: HTTPAPIConfiguration) -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return config.maxConnections }
        let reserve = 64 + 16 * config.maxConcurrent
        let available = Int(min(limit.rlim_cur, 1 << 20)) - reserve
        return max(8, min(config.maxConnections, available))
    }

    /// The cap on open connections in force (the flag, lowered to what RLIMIT_NOFILE allows).
    public var maxConnections: Int { connections.maxConnections }

    /// Serves until SIGTERM/SIGINT (or cancellation). On the signal it stops accepting at once and
    /// starts no new run (503), lets running sandboxes finish within the grace period, kills the
    /// rest, ends the MCP sessions and event streams, then returns.
    public func run(onListening: @escaping @Sendable (String) async -> Void) async throws {
        var logger = Logger(label: "sandbox-runner.serve")
        logger.logLevel = .warning
        let host = config.host
        let app = Application(
            responder: APIResponder(server: self),
            server: .http1(configuration: .init(additionalChannelHandlers: [ConnectionDeadlineHandler(guarded: self.connections)])),
            configuration: .init(address: .hostname(host, port: config.port), serverName: nil, backlog: 256,
                                 availableConnectionsDelegate: GuardedConnections(guarded: connections)),
            onServerRunning: { channel in await onListening("http://\(host):\(channel.localAddress?.port ?? 0)") },
            logger: logger)
        let group = ServiceGroup(services: [app], gracefulShutdownSignals: [], cancellationSignals: [], logger: logger)
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        enum Done { case app, workers, housekeeping, deadline }
        try await withThrowingTaskGroup(of: Done.self) { tasks in
            tasks.addTask { try await group.run(); return .app }
            tasks.addTask { await self.runs.runWorkers { job in await self.execute(job) }; return .workers }
            tasks.addTask { await self.housekeeping(); return .housekeeping }
            tasks.addTask {
                for await _ in signals { break }
                try Task.checkCancellation()
                await self.shutdown(group)
                // What is left (a connection that will not close) gets a few seconds, then is cut.
                try await Task.sleep(for: .seconds(5))
                return .deadline
            }
            while let done = try await tasks.next() {
                if done == .app || done == .deadline { break }
            }
            tasks.cancelAll()
        }
        running.killAll()
        runs.killAll()
        await mcp.closeAll()
    }

    /// SIGTERM: refuse new work first, then drain within the grace period, then kill.
    func shutdown(_ group: ServiceGroup) async {
        gate.drain()
        runs.close()
        await group.triggerGracefulShutdown()
        let deadline = ContinuousClock.now + config.shutdownGrace
        while gate.inFlight > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        running.killAll()
        runs.killAll()
        await mcp.closeAll()
    }

    func housekeeping() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(1)) } catch { return }
            runs.evict(now: .now)
            tools.artifacts?.evict(now: .now)
            await mcp.expire(now: .now)
        }
    }

    /// An async run: waits for a slot, runs with its output streamed to subscribers, keeps the result.
    func execute(_ job: RunStore.Job) async {
        let record = job.record
        let backend = tools.executor.backend.name
        if let refusal = await gate.enter(bounded: false, killer: record.killer) {
            runs.finish(record, RunResult.failure(refusal, surface: .http, runId: record.id, template: record.template, backend: backend))
            return
        }
        guard runs.start(record) else {
            gate.leave()
            runs.finish(record, RunResult.failure(RunGate.cancelledWhileQueued, surface: .http, runId: record.id,
                                                  template: record.template, backend: backend))
            return
        }
        let streams = OutputStreams(redactor: tools.executor.redactor) { [runs] name, text in runs.emit(record, name, text) }
        var request = job.request
        request.onOutput = { fd, chunk in streams.feed(fd, chunk) }
        running.add(record.id, record.killer)
        let result = tools.recorded(await tools.executor.run(request, killer: record.killer), urls: true)
        running.remove(record.id)
        streams.flush()
        gate.leave()
        runs.finish(record, result)
    }
}

/// stdout and stderr of one run, redacted as they stream.
final class OutputStreams: @unchecked Sendable {
    private let lock = NSLock()
    private var out: StreamRedactor
    private var err: StreamRedactor
    private let emit: @Sendable (String, String) -> Void

    init(redactor: Redactor, emit: @escaping @Sendable (String, String) -> Void) {
        out = StreamRedactor(redactor: redactor)
        err = StreamRedactor(redactor: redactor)
        self.emit = emit
    }

    func feed(_ fd: Int32, _ chunk: UnsafeRawBufferPointer) {
        lock.lock()
        let text = fd == 1 ? out.feed(chunk) : err.feed(chunk)
        lock.unlock()
        emit(fd == 1 ? "stdout" : "stderr", text)
    }

    func flush() {
        lock.lock()
        let (o, e) = (out.flush(), err.flush())
        lock.unlock()
        emit("stdout", o)
        emit("stderr", e)
    }
}

/// The runs in flight, so shutdown can kill their sandboxes.
final class RunningRuns: @unchecked Sendable {
    private let lock = NSLock()
    private var killers: [String: ProcessKiller] = [:]
    func add(_ id: String, _ k: ProcessKiller) { lock.lock(); killers[id] = k; lock.unlock() }
    func remove(_ id: String) { lock.lock(); killers[id] = nil; lock.unlock() }
    func killAll() {
        lock.lock(); let all = Array(killers.values); lock.unlock()
        for k in all { k.kill(cancelling: true) }
    }
}

/// Kills a sync run's sandbox when its client hangs up, until disarmed.
final class DisconnectWatch: @unchecked Sendable {
    private let lock = NSLock()
    private var armed = true
    let killer: ProcessKiller
    init(killer: ProcessKiller) { self.killer = killer }
    func fire() {
        lock.lock(); let go = armed; armed = false; lock.unlock()
        if go { killer.kill(cancelling: true) }
    }
    func disarm() { lock.lock(); armed = false; lock.unlock() }
}

/// A request context that keeps the connection, to notice a client that hangs up.
struct APIContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel
    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}
