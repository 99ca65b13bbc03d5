import Foundation

/// Runs bundles in E2B sandboxes in two round trips on the critical path: create, then one
/// `process.Process/Start` whose command carries the bundle (base64, in the environment) and
/// unpacks and runs it. The kill comes after the result is handed back, on a cleanup thread
/// that `shutdown()` waits for, so it is never skipped. With a warm pool a reused sandbox needs
/// only the `Start`.
public final class E2BBackend: SandboxBackend, @unchecked Sendable {
    public var name: String { "e2b" }
    public let config: E2BConfiguration
    public let pool: E2BWarmPool?
    let cleanup = E2BCleanup()
    private let statsLock = NSLock()
    private var lastRoundTrips = 0

    public init(config: E2BConfiguration) {
        self.config = config
        self.pool = config.warmPoolSize > 0 ? E2BWarmPool(config: config) : nil
    }

    /// HTTP round trips the last run made before its result was ready (create, start; upload for
    /// an oversized bundle). The kill or the pool's release come after and are not counted.
    public var roundTripsOfLastRun: Int { statsLock.lock(); defer { statsLock.unlock() }; return lastRoundTrips }

    public func run(_ job: SandboxJob, killer: ProcessKiller) async throws -> SandboxOutcome {
        // Refused before anything is created: the plan cannot hold a sandbox for this run.
        _ = try config.sandboxLifetime(forRunTimeout: job.timeout, warm: pool != nil)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<SandboxOutcome, Error>) in
                let thread = Thread {
                    do { cont.resume(returning: try self.runBlocking(job, killer: killer)) } catch { cont.resume(throwing: error) }
                }
                thread.name = "sandbox-runner.e2b"
                thread.start()
            }
        } onCancel: {
            killer.kill(cancelling: true)
        }
    }

    func runBlocking(_ job: SandboxJob, killer: ProcessKiller) throws -> SandboxOutcome {
        let clock = ContinuousClock()
        let start = clock.now
        let client = try E2BClient(config: config)
        killer.onKill { client.cancel() }

        var spec = E2BSandboxSpec(templateID: config.templateID,
                                  lifetime: try config.sandboxLifetime(forRunTimeout: job.timeout, warm: pool != nil))
        spec.metadata = ["sandbox-runner-run": job.runId, "sandbox-runner": "1"]
        spec.network = job.network
        var envs = job.environment
        if job.network == .posthog {
            guard let rules = job.egress else {
                throw RunnerError(.internalError, "A run with the posthog network policy came without its egress settings.")
            }
            let plan = try E2BEgressPlan(rules, sandboxesAreLocal: config.sandboxesAreLocal)
            spec.egress = plan
            envs.merge(plan.environment) { _, plan in plan }
        }
        var warm = pool?.acquire(minimumLifetime: job.timeout + config.lifetimeMargin, networkKey: spec.networkKey)
        let sandbox: E2BSandbox
        if let w = warm {
            sandbox = w.sandbox
        } else {
            sandbox = try client.create(spec)
            warm = pool.map { _ in E2BWarmSandbox(sandbox: sandbox, bundles: [], idleSince: clock.now, networkKey: spec.networkKey) }
        }
        // From here on every path out hands the sandbox to the cleanup thread: killed, or back
        // to the pool when the run ended cleanly.
        var keep = false
        defer {
            statsLock.lock(); lastRoundTrips = client.roundTrips; statsLock.unlock()
            let w = warm, reuse = keep
            if reuse, let w, let pool {
                // Announced before the run returns, so that the next run waits for this sandbox
                // instead of creating another while the return is under way.
                pool.announceReturn(networkKey: w.networkKey)
                cleanup.schedule("return E2B sandbox \(sandbox.id) to the warm pool") { pool.release(w, client: client) }
            } else {
                cleanup.schedule("kill E2B sandbox \(sandbox.id)") { try client.kill(sandbox) }
            }
        }

        let archive = try job.bundle.archive()
        let encoded = archive.withUnsafeBufferPointer { Data(buffer: $0) }.base64EncodedString()
        envs["PYTHONUNBUFFERED"] = "1"
        envs["PYTHONDONTWRITEBYTECODE"] = "1"
        // out/ comes back as one stream file beside the run's directory, read through envd.
        let artifactFile = "/home/user/run-\(job.runId.prefix(8)).artifacts"
        if job.artifacts != nil { envs[ArtifactStream.environmentVariable] = "file:" + artifactFile }
        let script: String
        if encoded.utf8.count <= config.inlineBundleLimit {
            let chunks = Self.chunks(encoded, size: Self.inlineChunkBytes)
            for (i, chunk) in chunks.enumerated() { envs["SANDBOX_RUNNER_BUNDLE_\(i)"] = chunk }
            script = Self.command(runId: job.runId, unpack: .inline(chunks: chunks.count))
        } else {
            // Too big for one process's environment: upload it once (a warm sandbox keeps it).
            let path = "/home/user/bundle-\(job.bundle.sha256.prefix(16)).tar.gz"
            if !(warm?.bundles.contains(job.bundle.sha256) ?? false) {
                try client.upload(sandbox, path: path, bytes: archive)
                warm?.bundles.insert(job.bundle.sha256)
            }
            script = Self.command(runId: job.runId, unpack: .file(path))
        }
        let r = try client.run(sandbox, argv: ["/bin/bash", "-c", script], envs: envs, cwd: "/home/user", timeout: job.timeout,
                               outputLimit: job.outputLimit, onOutput: job.onOutput)
        if r.incomplete && !r.timedOut && !killer.cancelled {
            throw RunnerError(.unavailable, "The E2B sandbox's output stream ended before the script did"
                + (r.streamError.map { " (\($0))" } ?? "") + "; the sandbox was killed.")
        }
        keep = !r.timedOut && !r.incomplete && !killer.cancelled
        var collection: ArtifactCollection?
        if let receiver = job.artifacts {
            // run.py says on its last stderr line when the stream file holds files (no round trip otherwise);
            // a cut stderr may have lost that line, so then the file is fetched anyway.
            if keep && (r.stderr.truncated || r.stderr.text.contains("\n" + ArtifactStream.marker) || r.stderr.text.hasPrefix(ArtifactStream.marker)) {
                try client.download(sandbox, path: artifactFile) { receiver.feed($0) }
            }
            collection = receiver.finish()
        }
        let outcome = ProcessOutcome(exitCode: r.timedOut ? 124 : r.exitCode, signal: r.signalled ? 9 : nil, timedOut: r.timedOut,
                                     cancelled: killer.cancelled, stdout: r.stdout,
                                     stderr: job.artifacts == nil ? r.stderr : Self.withoutMarker(r.stderr), duration: clock.now - start)
        var result = SandboxOutcome(process: outcome, isolation: "e2b", network: job.network)
        result.artifacts = collection
        return result
    }

    /// stderr without run.py's closing marker line (the local jail's stderr has none).
    static func withoutMarker(_ stderr: CappedOutput) -> CappedOutput {
        guard !stderr.truncated else { return stderr }
        var lines = stderr.head.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        guard lines.count >= 2, lines[lines.count - 1].isEmpty,
              lines[lines.count - 2].starts(with: Array(ArtifactStream.marker.utf8)) else { return stderr }
        lines.removeLast(2)
        var out = CappedOutput(limit: stderr.limit)
        let bytes = lines.isEmpty ? [] : Array(lines.joined(separator: [UInt8(ascii: "\n")])) + [UInt8(ascii: "\n")]
        bytes.withUnsafeBytes { out.append($0) }
        return out
    }

    /// Each environment string of a Linux process holds at most 128 KiB (MAX_ARG_STRLEN).
    static let inlineChunkBytes = 96 * 1024

    static func chunks(_ s: String, size: Int) -> [String] {
        let bytes = Array(s.utf8)
        return stride(from: 0, to: max(bytes.count, 1), by: size).map { String(decoding: bytes[$0..<min($0 + size, bytes.count)], as: UTF8.self) }
    }

    enum Unpack { case inline(chunks: Int), file(String) }

    /// The one command of a run: a fresh directory (a reused sandbox never sees the last run's
    /// files), the bundle unpacked into it, then `python3 run.py` in its place. No login shell:
    /// nothing a previous run left in the home's profile files is sourced.
    static func command(runId: String, unpack: Unpack) -> String {
        let dir = "/home/user/run-\(runId.prefix(8))"
        let source: String
        switch unpack {
        case .inline(let n):
            let vars = (0..<n).map { "SANDBOX_RUNNER_BUNDLE_\($0)" }
            source = "printf %s \"" + vars.map { "${\($0)}" }.joined() + "\" | base64 -d | tar -xzf -; unset " + vars.joined(separator: " ")
        case .file(let archive):
            source = "tar -xzf \(archive)"
        }
        return "set -eu -o pipefail; umask 077; rm -rf /home/user/run-*; mkdir -p \(dir); cd \(dir); \(source); "
            + "exec python3 -u -B -s run.py"
    }

    /// Kills every warm sandbox and waits for every pending kill (call before the owning process
    /// ends). Returns what could not be cleaned up (those sandboxes end at their own timeout).
    @discardableResult
    public func shutdown() -> [String] {
        var failures = cleanup.drain()
        pool?.shutdown()
        failures += cleanup.drain()
        return failures
    }
}

/// Work that follows a run off its critical path (kills, returns to the pool), each on its own
/// thread (blocking libcurl), and waited for by `drain()`.
final class E2BCleanup: @unchecked Sendable {
    private let condition = NSCondition()
    private var pending = 0
    private var failures: [String] = []

    func schedule(_ what: String, _ work: @escaping @Sendable () throws -> Void) {
        condition.lock(); pending += 1; condition.unlock()
        let t = Thread { [self] in
            var failure: String?
            do { try work() } catch { failure = "Could not \(what): \(error). It ends by itself at its timeout." }
            condition.lock()
            if let failure { failures.append(failure) }
            pending -= 1
            condition.broadcast()
            condition.unlock()
        }
        t.name = "sandbox-runner.e2b-cleanup"
        t.start()
    }

    /// Waits until nothing is pending; returns the failures so far and forgets them.
    func drain() -> [String] {
        condition.lock()
        while pending > 0 { condition.wait() }
        let f = failures
        failures = []
        condition.unlock()
        return f
    }
}

/// A warm sandbox and the bundles it already holds.
public struct E2BWarmSandbox: Sendable {
    public var sandbox: E2BSandbox
    public var bundles: Set<String>
    public var idleSince: ContinuousClock.Instant
    /// The create's network fields: a sandbox is reused only for runs with the same.
    public var networkKey: String = ""
}

/// Live sandboxes kept between runs, keyed by the backend's configuration (one pool per
/// backend). Idle ones are killed after the TTL by a reaper thread; `shutdown` kills all.
public final class E2BWarmPool: @unchecked Sendable {
    let config: E2BConfiguration
    private let condition = NSCondition()
    private var idle: [E2BWarmSandbox] = []
    /// Sandboxes on their way back to the pool (announced, not yet released), by network key.
    private var returning: [String: Int] = [:]
    /// Acquires waiting for one of those, by network key.
    private var waiting: [String: Int] = [:]
    private var stopped = false
    /// How long an acquire waits for a returning sandbox before the run creates its own.
    static let returnWait: TimeInterval = 5
    private var reaper: Thread?

    init(config: E2BConfiguration) {
        self.config = config
    }

    public var idleCount: Int { condition.lock(); defer { condition.unlock() }; return idle.count }

    func acquire(minimumLifetime: Duration, networkKey: String) -> E2BWarmSandbox? {
        condition.lock()
        var expired: [E2BWarmSandbox] = []
        var found: E2BWarmSandbox?
        let deadline = Date(timeIntervalSinceNow: Self.returnWait)
        var counted = false
        while true {
            var others: [E2BWarmSandbox] = []
            while let w = idle.popLast() {
                if w.sandbox.endsAt - .now <= minimumLifetime { expired.append(w); continue }
                if w.networkKey == networkKey { found = w; break }
                others.append(w)
            }
            idle += others.reversed()
            // A run that just ended is handing its sandbox back: taking it is one round trip
            // where a create would be two (and would leave the pool with a spare). One waiter
            // per returning sandbox; the others create at once.
            guard found == nil, !stopped, returning[networkKey, default: 0] > waiting[networkKey, default: 0] - (counted ? 1 : 0) else { break }
            if !counted { waiting[networkKey, default: 0] += 1; counted = true }
            if !condition.wait(until: deadline) { break }
        }
        if counted {
            waiting[networkKey, default: 1] -= 1
            if waiting[networkKey] == 0 { waiting[networkKey] = nil }
        }
        condition.unlock()
        kill(expired)
        return found
    }

    func announceReturn(networkKey: String) {
        condition.lock(); returning[networkKey, default: 0] += 1; condition.unlock()
    }

    /// Ends an announced return, whatever became of the sandbox; wakes runs waiting for it.
    private func returned(networkKey: String) {
        returning[networkKey, default: 1] -= 1
        if returning[networkKey] == 0 { returning[networkKey] = nil }
        condition.broadcast()
    }

    /// Takes back a sandbox announced with `announceReturn`.
    func release(_ w: E2BWarmSandbox, client: E2BClient) {
        var w = w
        w.idleSince = .now
        // Keep it alive for the idle TTL plus one more run; E2B kills it by itself after that.
        if w.sandbox.endsAt - .now < config.warmIdleTTL + config.lifetimeMargin {
            do { try client.extend(&w.sandbox, lifetime: min(config.warmIdleTTL + config.lifetimeMargin * 4, config.maxSandboxTimeout)) } catch {
                condition.lock(); returned(networkKey: w.networkKey); condition.unlock()
                try? client.kill(w.sandbox)
                return
            }
        }
        condition.lock()
        returned(networkKey: w.networkKey)
        if stopped || idle.count >= config.warmPoolSize {
            condition.unlock()
            try? client.kill(w.sandbox)
            return
        }
        idle.append(w)
        startReaperIfNeeded()
        condition.unlock()
    }

    private func startReaperIfNeeded() {
        guard reaper == nil else { return }
        let t = Thread { [weak self] in self?.reap() }
        t.name = "sandbox-runner.e2b-pool"
        reaper = t
        t.start()
    }

    private func reap() {
        condition.lock()
        while !stopped {
            let now = ContinuousClock.now
            let (old, fresh) = idle.reduce(into: ([E2BWarmSandbox](), [E2BWarmSandbox]())) { acc, w in
                if now - w.idleSince >= config.warmIdleTTL { acc.0.append(w) } else { acc.1.append(w) }
            }
            idle = fresh
            if !old.isEmpty {
                condition.unlock()
                kill(old)
                condition.lock()
                continue
            }
            let next = idle.map { w in w.idleSince + config.warmIdleTTL }.min()
            let wait = next.map { Double(max(1, ($0 - now).milliseconds)) / 1000 } ?? 3600
            _ = condition.wait(until: Date(timeIntervalSinceNow: wait))
        }
        condition.unlock()
    }

    public func shutdown() {
        condition.lock()
        stopped = true
        let all = idle
        idle = []
        condition.broadcast()
        condition.unlock()
        kill(all)
    }

    private func kill(_ sandboxes: [E2BWarmSandbox]) {
        guard !sandboxes.isEmpty, let client = try? E2BClient(config: config) else { return }
        for w in sandboxes { try? client.kill(w.sandbox) }
    }
}
