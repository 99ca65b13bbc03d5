import Foundation
import Logging
import SandboxRunner
#if canImport(Glibc)
import Glibc
#endif

/// The live sandboxes of a server: created, looked up, killed, expired, all torn down at shutdown.
/// A killed sandbox leaves the table at once; its commands are killed and its workspace removed
/// before the kill returns.
final class SandboxRegistry: @unchecked Sendable {
    struct Counters: Sendable {
        var created = 0
        var killed = 0
        var expired = 0
    }

    /// Why a create was refused.
    struct Refusal: Error {
        var status: Int
        var message: String
    }

    let maxSandboxes: Int
    private let lock = NSLock()
    private var sandboxes: [String: LocalSandbox] = [:]
    private var reserved = 0
    private var counters = Counters()
    private var closed = false

    let logger: Logger

    init(maxSandboxes: Int, logger: Logger) {
        self.maxSandboxes = maxSandboxes
        self.logger = logger
    }

    var liveCount: Int {
        lock.lock(); defer { lock.unlock() }
        return sandboxes.count
    }

    var stats: Counters {
        lock.lock(); defer { lock.unlock() }
        return counters
    }

    func get(_ id: String) -> LocalSandbox? {
        lock.lock(); defer { lock.unlock() }
        return sandboxes[id]
    }

    var all: [LocalSandbox] {
        lock.lock(); defer { lock.unlock() }
        return sandboxes.values.sorted { ($0.startedAt, $0.id) < ($1.startedAt, $1.id) }
    }

    /// Makes a workspace and adds the sandbox, or refuses (429 past the limit, 503 when shutting down).
    func create(templateID: String, lifetime: Int, metadata: [String: String], envVars: [String: String],
                secure: Bool, network: NetworkPolicy) throws -> LocalSandbox {
        lock.lock()
        if closed {
            lock.unlock()
            throw Refusal(status: 503, message: "The server is shutting down; no new sandboxes are created.")
        }
        guard sandboxes.count + reserved < maxSandboxes else {
            lock.unlock()
            throw Refusal(status: 429, message: "You have reached the maximum number of concurrent sandboxes (\(maxSandboxes)). "
                + "Kill a sandbox or wait for one to time out, then retry.")
        }
        reserved += 1
        lock.unlock()

        let id = Identifiers.sandboxID()
        let made = Result { try LocalJail.makeWorkspace(label: id) }
        lock.lock()
        reserved -= 1
        guard case .success(let (url, uid)) = made else {
            lock.unlock()
            throw Refusal(status: 500, message: "Could not create the sandbox's workspace: \(made.failure.map { "\($0)" } ?? "unknown error")")
        }
        if closed {
            lock.unlock()
            LocalJail.removeWorkspace(url)
            throw Refusal(status: 503, message: "The server is shutting down; no new sandboxes are created.")
        }
        let sandbox = LocalSandbox(id: id, templateID: templateID, workspace: url, uid: uid, lifetime: lifetime,
                                   metadata: metadata, envVars: envVars, secure: secure, network: network)
        sandboxes[id] = sandbox
        counters.created += 1
        lock.unlock()
        return sandbox
    }

    /// Kills a sandbox: takes it out of the table, kills its commands, removes its workspace.
    /// False when there was no such sandbox.
    @discardableResult
    func kill(_ id: String, expired: Bool = false) async -> Bool {
        let removed: LocalSandbox? = lock.withLock {
            guard let s = sandboxes.removeValue(forKey: id) else { return nil }
            if expired { counters.expired += 1 } else { counters.killed += 1 }
            return s
        }
        guard let sandbox = removed else { return false }
        await tearDown(sandbox, reason: expired ? "reached its end of life" : "was killed")
        return true
    }

    /// Kills every sandbox past its end time.
    func reapExpired(now: Date = Date()) async {
        let due = all.filter { $0.isExpired(at: now) }
        for s in due { await kill(s.id, expired: true) }
    }

    /// Refuses new sandboxes and kills every live one.
    func shutdown() async {
        let everything: [LocalSandbox] = lock.withLock {
            closed = true
            let all = Array(sandboxes.values)
            sandboxes = [:]
            counters.killed += all.count
            return all
        }
        await withTaskGroup(of: Void.self) { group in
            for s in everything { group.addTask { await self.tearDown(s, reason: "was killed (the server shut down)") } }
        }
    }

    private func tearDown(_ sandbox: LocalSandbox, reason: String) async {
        sandbox.terminate(reason: "The sandbox \(sandbox.id) \(reason) while the command ran.")
        await sandbox.waitForProcesses(limit: .seconds(5))
        LocalJail.removeWorkspace(sandbox.workspace)
        logger.info("sandbox \(reason)", metadata: ["sandbox": .string(sandbox.id)])
    }
}

extension Result {
    var failure: Failure? { if case .failure(let e) = self { return e }; return nil }
}
