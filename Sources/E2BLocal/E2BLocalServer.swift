import Foundation
import Hummingbird
import Logging
import NIOCore
import SandboxRunner
import ServiceLifecycle
import UnixSignals

/// An E2B-compatible server on one port: control plane and envd, sandboxes made of local jail
/// workspaces. `run` serves until its task is cancelled, `shutdown()` is called or (when asked)
/// SIGTERM/SIGINT arrives; on the way out every sandbox is killed and its workspace removed.
public final class E2BLocalServer: Sendable {
    public let configuration: E2BLocalConfiguration
    let state: E2BLocalState
    private let group = LockedBox<ServiceGroup?>(nil)

    public init(configuration: E2BLocalConfiguration, logger: Logger = Logger(label: "e2b-local")) {
        self.configuration = configuration
        self.state = E2BLocalState(config: configuration, logger: logger)
    }

    /// Serves until cancelled or shut down. `onListening` gets the base URL with the real port,
    /// once the socket is bound.
    public func run(gracefulShutdownSignals: [UnixSignal] = [], onListening: @escaping @Sendable (String) async -> Void = { _ in }) async throws {
        let host = configuration.host
        let app = Application(
            responder: E2BLocalResponder(state: state),
            configuration: .init(address: .hostname(host, port: configuration.port), serverName: nil),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                let shown = host.contains(":") ? "[\(host)]" : host
                await onListening("http://\(shown):\(port)")
            },
            logger: state.logger
        )
        let serviceGroup = ServiceGroup(configuration: .init(
            services: [.init(service: app), .init(service: SandboxReaper(state: state))],
            gracefulShutdownSignals: gracefulShutdownSignals,
            logger: state.logger))
        group.set(serviceGroup)
        defer { group.set(nil) }
        do {
            try await serviceGroup.run()
        } catch {
            await state.registry.shutdown()
            throw error
        }
        await state.registry.shutdown()
    }

    /// Starts a graceful shutdown of a running server: sandboxes are killed, then the listener closes.
    public func shutdown() async {
        await group.get()?.triggerGracefulShutdown()
    }

    /// Sandboxes alive now.
    public var liveSandboxCount: Int { state.registry.liveCount }

    /// What `GET /_local/stats` answers.
    public var stats: JSONValue { E2BLocalResponder(state: state).statsJSON }
}

/// Kills sandboxes past their end time; at shutdown (graceful or cancelled) kills them all,
/// before the HTTP server stops, so open command streams end.
struct SandboxReaper: Service {
    let state: E2BLocalState

    func run() async throws {
        let interval = state.config.reapInterval
        try? await cancelWhenGracefulShutdown { [state] in
            while !Task.isCancelled {
                try await Task.sleep(for: interval)
                await state.registry.reapExpired()
            }
        }
        await state.registry.shutdown()
    }
}

/// A value behind a lock.
final class LockedBox<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func get() -> Value { lock.lock(); defer { lock.unlock() }; return value }
    func set(_ v: Value) { lock.lock(); value = v; lock.unlock() }
}
