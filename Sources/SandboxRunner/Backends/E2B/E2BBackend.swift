import Foundation

/// Runs bundles in E2B sandboxes: create → upload the bundle → start `python3 run.py` with the
/// secrets as `envs` → kill, on every path out. With a warm pool, a reused sandbox skips create,
/// and skips the upload when it already holds the bundle.
public final class E2BBackend: SandboxBackend, @unchecked Sendable {
    public var name: String { "e2b" }
    public let config: E2BConfiguration
    public let pool: E2BWarmPool?
    private let statsLock = NSLock()
    private var lastRoundTrips = 0

    public init(config: E2BConfiguration) {
        self.config = config
        self.pool = config.warmPoolSize > 0 ? E2BWarmPool(config: config) : nil
    }

    /// HTTP round trips the last run made (create, upload, start, kill…).
    public var roundTripsOfLastRun: Int { statsLock.lock(); defer { statsLock.unlock() }; return lastRoundTrips }

    public func run(_ job: SandboxJob, killer: ProcessKiller) async throws -> SandboxOutcome {
        try await withTaskCancellationHandler {
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
        defer { statsLock.lock(); lastRoundTrips = client.roundTrips; statsLock.unlock() }

        var warm = pool?.acquire(minimumLifetime: job.timeout + config.lifetimeMargin)
        let sandbox: E2BSandbox
        if let w = warm {
            sandbox = w.sandbox
        } else {
            let lifetime = job.timeout + config.lifetimeMargin + (pool != nil ? config.warmIdleTTL : .zero)
            sandbox = try client.create(lifetime: lifetime, metadata: ["sandbox-runner-run": job.runId, "sandbox-runner": "1"])
            warm = pool.map { _ in E2BWarmSandbox(sandbox: sandbox, bundles: [], idleSince: clock.now) }
        }
        var keep = false
        defer {
            if keep, let w = warm, let pool { pool.release(w, client: client) } else { try? client.kill(sandbox) }
        }

        let archive = "/home/user/bundle-\(job.bundle.sha256.prefix(16)).tar.gz"
        if !(warm?.bundles.contains(job.bundle.sha256) ?? false) {
            try client.upload(sandbox, path: archive, bytes: job.bundle.bytes)
            warm?.bundles.insert(job.bundle.sha256)
        }
        // A fresh directory per run: a reused sandbox never sees the last run's files.
        let dir = "/home/user/run-\(job.runId.prefix(8))"
        let command = "rm -rf /home/user/run-* && mkdir -p \(dir) && cd \(dir) && tar -xzf \(archive) && exec python3 -u -B -s run.py"
        var envs = job.environment
        envs["PYTHONUNBUFFERED"] = "1"
        envs["PYTHONDONTWRITEBYTECODE"] = "1"
        let r = try client.run(sandbox, command: command, envs: envs, cwd: "/home/user", timeout: job.timeout, outputLimit: job.outputLimit)
        if r.incomplete && !r.timedOut && !killer.cancelled {
            throw RunnerError(.unavailable, "The E2B sandbox's output stream ended before the script did"
                + (r.streamError.map { " (\($0))" } ?? "") + "; the sandbox was killed.")
        }
        keep = !r.timedOut && !r.incomplete && !killer.cancelled
        let outcome = ProcessOutcome(exitCode: r.timedOut ? 124 : r.exitCode, signal: r.signalled ? 9 : nil, timedOut: r.timedOut,
                                     cancelled: killer.cancelled, stdout: r.stdout, stderr: r.stderr, duration: clock.now - start)
        return SandboxOutcome(process: outcome, isolation: "e2b", network: .host)
    }

    /// Kills every warm sandbox (call before the owning process ends).
    public func shutdown() { pool?.shutdown() }
}

/// A warm sandbox and the bundles it already holds.
public struct E2BWarmSandbox: Sendable {
    public var sandbox: E2BSandbox
    public var bundles: Set<String>
    public var idleSince: ContinuousClock.Instant
}

/// Live sandboxes kept between runs, keyed by the backend's configuration (one pool per
/// backend). Idle ones are killed after the TTL by a reaper thread; `shutdown` kills all.
public final class E2BWarmPool: @unchecked Sendable {
    let config: E2BConfiguration
    private let condition = NSCondition()
    private var idle: [E2BWarmSandbox] = []
    private var stopped = false
    private var reaper: Thread?

    init(config: E2BConfiguration) {
        self.config = config
    }

    public var idleCount: Int { condition.lock(); defer { condition.unlock() }; return idle.count }

    func acquire(minimumLifetime: Duration) -> E2BWarmSandbox? {
        condition.lock()
        var expired: [E2BWarmSandbox] = []
        var found: E2BWarmSandbox?
        while let w = idle.popLast() {
            if w.sandbox.endsAt - .now > minimumLifetime { found = w; break }
            expired.append(w)
        }
        condition.unlock()
        kill(expired)
        return found
    }

    func release(_ w: E2BWarmSandbox, client: E2BClient) {
        var w = w
        w.idleSince = .now
        // Keep it alive for the idle TTL plus one more run; E2B kills it by itself after that.
        if w.sandbox.endsAt - .now < config.warmIdleTTL + config.lifetimeMargin {
            do { try client.extend(&w.sandbox, lifetime: config.warmIdleTTL + config.lifetimeMargin * 4) } catch {
                try? client.kill(w.sandbox)
                return
            }
        }
        condition.lock()
        if stopped || idle.count >= config.warmPoolSize {
            condition.unlock()
            try? client.kill(w.sandbox)
            return
        }
        idle.append(w)
        startReaperIfNeeded()
        condition.signal()
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
