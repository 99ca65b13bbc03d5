import Foundation
import Logging
import SandboxRunner
#if canImport(Glibc)
import Glibc
#endif

/// The live sandboxes of a server: created, looked up, killed, expired, all torn down at shutdown.
/// A killed sandbox leaves the table at once; its kill returns only once every one of its
/// processes is verifiably gone (there is nothing on the host's disk to clean up after it).
final class SandboxRegistry: @unchecked Sendable {
    struct Counters: Sendable {
        var created = 0
        var killed = 0
        var expired = 0
        /// Sandboxes that ended by themselves (their agent was killed from inside).
        var died = 0
    }

    /// Why a create was refused.
    struct Refusal: Error {
        var status: Int
        var message: String
    }

    let config: E2BLocalConfiguration
    private let lock = NSLock()
    private var sandboxes: [String: LocalSandbox] = [:]
    private var usedUIDs: Set<uid_t> = []
    private var reserved = 0
    private var counters = Counters()
    private var closed = false
    private var idempotent: [String: IdempotentCreate] = [:]
    /// The egress logs of recently ended sandboxes (for `/_local/sandboxes/{id}/egress`).
    private var endedEgress: [(id: String, metadata: [String: String], log: [EgressEntry])] = []
    let logger: Logger
    let tools = JailTools.discover()

    /// A create remembered by its Idempotency-Key: in progress, or its answer.
    enum IdempotentCreate {
        case inProgress(fingerprint: String)
        case done(fingerprint: String, answer: JSONValue, at: Date)
    }

    init(config: E2BLocalConfiguration, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    var liveCount: Int { lock.withLock { sandboxes.count } }

    /// A sandbox's egress log: live, or kept a while after it ended; nil when it had no proxy.
    func egressLog(_ id: String) -> [EgressEntry]? {
        if let live = get(id)?.egress { return live.entries }
        return lock.withLock { endedEgress.last { $0.id == id }?.log }
    }

    /// Every egress log held: the live sandboxes' and the recently ended ones'.
    var egressLogs: [(id: String, metadata: [String: String], log: [EgressEntry])] {
        let live = all.compactMap { s in s.egress.map { (s.id, s.metadata, $0.entries) } }
        return lock.withLock { endedEgress } + live
    }
    var stats: Counters { lock.withLock { counters } }
    func get(_ id: String) -> LocalSandbox? { lock.withLock { sandboxes[id] } }

    var all: [LocalSandbox] {
        lock.withLock { sandboxes.values.sorted { ($0.startedAt, $0.id) < ($1.startedAt, $1.id) } }
    }

    // MARK: idempotency

    /// Claims an Idempotency-Key for a create with this body: nil to go ahead, or the answer to
    /// give instead (the remembered 201, 409 while the first is in progress, 422 for another body).
    func claim(key: String, fingerprint: String) -> (status: Int, body: JSONValue)? {
        lock.withLock {
            let now = Date()
            idempotent = idempotent.filter { _, v in
                if case .done(_, _, let at) = v { return now.timeIntervalSince(at) < 86_400 }
                return true
            }
            switch idempotent[key] {
            case nil:
                idempotent[key] = .inProgress(fingerprint: fingerprint)
                return nil
            case .inProgress(let f)?:
                return f == fingerprint
                    ? (409, Reply.errorBody(409, "A sandbox create with this Idempotency-Key is still in progress: retry shortly."))
                    : (422, Reply.errorBody(422, "This Idempotency-Key was already used with a different request body."))
            case .done(let f, let answer, _)?:
                return f == fingerprint ? (201, answer)
                    : (422, Reply.errorBody(422, "This Idempotency-Key was already used with a different request body."))
            }
        }
    }

    func settle(key: String, fingerprint: String, answer: JSONValue?) {
        lock.withLock {
            if let answer { idempotent[key] = .done(fingerprint: fingerprint, answer: answer, at: Date()) } else { idempotent[key] = nil }
        }
    }

    // MARK: create

    /// Starts a sandbox (its jail and agent) and adds it, or refuses (429 past the limit, 503 when
    /// shutting down or when the jail cannot start).
    func create(templateID: String, lifetime: Int, metadata: [String: String], envVars: [String: String],
                secure: Bool, network: SandboxNetwork) async throws -> LocalSandbox {
        let uid: uid_t? = try lock.withLock {
            if closed { throw Refusal(status: 503, message: "The server is shutting down; no new sandboxes are created.") }
            guard sandboxes.count + reserved < config.maxSandboxes else {
                throw Refusal(status: 429, message: "You have reached the maximum number of concurrent E2B sandboxes (\(config.maxSandboxes)). "
                    + "Kill a sandbox or wait for one to time out, then retry.")
            }
            reserved += 1
            guard geteuid() == 0 else { return nil }
            var u: uid_t
            repeat { u = uid_t(200_000 + Int.random(in: 0..<800_000)) } while usedUIDs.contains(u)
            usedUIDs.insert(u)
            return u
        }
        let id = Identifiers.sandboxID()
        var settings = SandboxLauncher.Settings(limits: config.limits, homeBytes: config.diskBytes, tmpBytes: config.limits.tmpBytes,
                                                internet: network.internet, python: tools.python ?? "/usr/bin/python3",
                                                bwrap: tools.bwrap ?? "/usr/bin/bwrap")
        var egress: EgressProxy?
        if network.needsProxy {
            let rules = E2BEgressRules(allowOut: network.allowOut, denyOut: network.denyOut, rules: network.rules,
                                       exceptions: config.internalEgress.compactMap(E2BEgressRules.InternalException.init),
                                       hosts: config.egressHosts)
            do {
                egress = try EgressProxy.start(rules: rules, limits: config.egressLimits, owner: uid)
            } catch {
                lock.withLock {
                    reserved -= 1
                    if let uid { usedUIDs.remove(uid) }
                }
                throw Refusal(status: 503, message: "Could not start the sandbox's egress proxy: \(error)")
            }
            settings.egressSocket = egress?.socketPath
        }
        let cgroup = CgroupV1(runId: "e2b-local-\(id)", limits: config.limits)
        let launchSettings = settings
        let box = SandboxBox()
        let launched: Result<SandboxInstance, Error> = await Blocking.result {
            try SandboxLauncher.launch(launchSettings, uid: uid, cgroup: cgroup, onEvent: { message, fds in
                fds.forEach { close($0) }
                guard message["event"] == .string("exit"), let pid = message["pid"]?.intValue, pid > 0, pid <= Int(UInt32.max) else { return }
                box.get()?.agentReportedExit(pid: UInt32(pid), code: message["code"]?.intValue.map(Int32.init),
                                             signal: message["signal"]?.intValue.map(Int32.init))
            }, onAgentGone: {
                // The agent died (a script killed it): the sandbox is over; its streams end now and
                // the reaper takes it out of the table.
                box.get()?.terminate(reason: "The sandbox \(id) ended: its agent is gone.")
            })
        }
        guard case .success(let instance) = launched else {
            egress?.stop()
            _ = cgroup?.killAndAwaitEmpty()
            lock.withLock {
                reserved -= 1
                if let uid { usedUIDs.remove(uid) }
            }
            let why = launched.failure.map { "\($0)" } ?? "unknown error"
            throw Refusal(status: 503, message: "Could not start the sandbox: \(why) Check `sandbox-runner doctor` (bubblewrap, user namespaces).")
        }
        let sandbox = LocalSandbox(id: id, templateID: templateID, lifetime: lifetime, metadata: metadata, envVars: envVars,
                                   secure: secure, network: network, instance: instance, egress: egress)
        sandbox.memoryLimit = config.limits.memoryBytes
        let added: Bool = lock.withLock {
            reserved -= 1
            guard !closed else { return false }
            sandboxes[id] = sandbox
            counters.created += 1
            return true
        }
        guard added else {
            await tearDown(sandbox, reason: "was killed (the server shut down)")
            throw Refusal(status: 503, message: "The server is shutting down; no new sandboxes are created.")
        }
        box.set(sandbox)
        sandbox.sample()
        return sandbox
    }

    // MARK: kill

    /// Kills a sandbox: takes it out of the table, ends its streams, kills every process in it
    /// and waits until that is verified. False when there was no such sandbox.
    @discardableResult
    func kill(_ id: String, expired: Bool = false, died: Bool = false) async -> Bool {
        let removed: LocalSandbox? = lock.withLock {
            guard let s = sandboxes.removeValue(forKey: id) else { return nil }
            if died { counters.died += 1 } else if expired { counters.expired += 1 } else { counters.killed += 1 }
            return s
        }
        guard let sandbox = removed else { return false }
        await tearDown(sandbox, reason: died ? "ended (its agent is gone)" : expired ? "reached its end of life" : "was killed")
        return true
    }

    /// Kills every sandbox past its end time, and takes out those that ended by themselves.
    func reapExpired(now: Date = Date()) async {
        for s in all {
            if s.isTerminated || s.instance.isReaped {
                await kill(s.id, died: true)
            } else if s.isExpired(at: now) {
                await kill(s.id, expired: true)
            }
        }
    }

    func sampleAll() {
        for s in all { s.sample() }
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
        let instance = sandbox.instance
        _ = await Blocking.run { instance.killAndWait() }
        if let proxy = sandbox.egress {
            let log = await Blocking.run { proxy.stop() }
            lock.withLock {
                endedEgress.append((sandbox.id, sandbox.metadata, log))
                if endedEgress.count > 100 { endedEgress.removeFirst(endedEgress.count - 100) }
            }
        }
        if let uid = instance.uid { lock.withLock { _ = usedUIDs.remove(uid) } }
        logger.info("sandbox \(reason)", metadata: ["sandbox": .string(sandbox.id)])
    }
}

private final class SandboxBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: LocalSandbox?
    func set(_ v: LocalSandbox) { lock.withLock { value = v } }
    func get() -> LocalSandbox? { lock.withLock { value } }
}

/// Blocking work (forks, waits, file descriptors) on a thread of its own, never on the
/// cooperative pool or an event loop.
enum Blocking {
    static func result<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async -> Result<T, Error> {
        await withCheckedContinuation { (c: CheckedContinuation<Result<T, Error>, Never>) in
            let t = Thread { c.resume(returning: Result { try work() }) }
            t.name = "e2b-local.blocking"
            t.start()
        }
    }

    static func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
            let t = Thread { c.resume(returning: work()) }
            t.name = "e2b-local.blocking"
            t.start()
        }
    }
}

extension Result {
    var failure: Failure? { if case .failure(let e) = self { return e }; return nil }
}
