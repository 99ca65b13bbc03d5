import Foundation
import Hummingbird
import Logging
import NIOCore
import SandboxRunner
import ServiceLifecycle
import UnixSignals
#if canImport(Glibc)
import Glibc
#endif

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
    /// once the socket is bound (`https://` when TLS is configured).
    public func run(gracefulShutdownSignals: [UnixSignal] = [], onListening: @escaping @Sendable (String) async -> Void = { _ in }) async throws {
        // Writes to a command's stdin whose reader is gone must fail, not end the server.
        signal(SIGPIPE, SIG_IGN)
        let host = configuration.host
        let shown = host.contains(":") ? "[\(host)]" : host
        let address: BindAddress
        var socketDir: String?
        if configuration.tls != nil {
            // Plain HTTP only on a Unix socket in a private directory: the TLS front is the way in.
            var template = Array("\(NSTemporaryDirectory())/e2b-local-XXXXXX".utf8CString)
            guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
                throw RunnerError(.internalError, "Could not create a private directory for e2b-local's socket (errno \(errno)).")
            }
            socketDir = String(cString: p)
            address = .unixDomainSocket(path: socketDir! + "/http.sock")
        } else {
            address = .hostname(host, port: configuration.port)
        }
        defer { if let socketDir { try? FileManager.default.removeItem(atPath: socketDir) } }
        let upstream = socketDir.map { $0 + "/http.sock" }
        let front = LockedBox<TLSFront?>(nil)
        let config = configuration
        let app = Application(
            responder: E2BLocalResponder(state: state),
            configuration: .init(address: address, serverName: nil),
            onServerRunning: { channel in
                guard let tls = config.tls, let upstream else {
                    await onListening("http://\(shown):\(channel.localAddress?.port ?? 0)")
                    return
                }
                do {
                    let f = try TLSFront(host: host, port: config.port, tls: tls, upstream: upstream)
                    front.set(f)
                    await onListening("https://\(shown):\(f.port)")
                } catch {
                    self.state.logger.error("\(error)")
                    await self.shutdown()
                }
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
            front.get()?.stop()
            await state.registry.shutdown()
            throw error
        }
        front.get()?.stop()
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
            var ticks = 0
            while !Task.isCancelled {
                try await Task.sleep(for: interval)
                await state.registry.reapExpired()
                ticks += 1
                // Metrics every 5 s, as E2B samples them.
                if ticks % max(1, Int(5_000 / max(1, interval.milliseconds))) == 0 {
                    let registry = state.registry
                    await Blocking.run { registry.sampleAll() }
                }
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

extension E2BLocalServer {
    /// Makes a CA and a server certificate for `domain` (and `*.domain`, localhost, the loopback
    /// addresses) in `directory`: `ca.pem` for clients, `cert.pem` and `key.pem` for the server.
    public static func makeCertificates(in directory: String, domain: String) throws -> E2BLocalConfiguration.TLSFiles {
        try TLSFront.makeCertificates(in: directory, domain: domain)
    }
}
