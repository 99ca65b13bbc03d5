import Foundation
import SandboxRunner

/// Admission control: at most `maxConcurrent` runs at once, at most `queueLength` waiting (past
/// that, 429); once draining (SIGTERM) nothing more is admitted and the waiting are refused (503).
final class RunGate: @unchecked Sendable {
    let maxConcurrent: Int
    let queueLength: Int
    private let lock = NSLock()
    private var running = 0
    private var draining = false
    private var waiters: [(id: UInt64, resume: CheckedContinuation<RunnerError?, Never>)] = []
    private var nextId: UInt64 = 0

    init(maxConcurrent: Int, queueLength: Int) {
        self.maxConcurrent = max(1, maxConcurrent)
        self.queueLength = max(0, queueLength)
    }

    static let full = RunnerError(.rateLimited, "Too many runs in progress and queued; retry in a few seconds (see Retry-After).")
    static let shuttingDown = RunnerError(.unavailable, "The server is shutting down and starts no new runs; retry against another instance.")
    static let cancelledWhileQueued = RunnerError(.cancelled, "The run was cancelled while it waited for a slot; it never started.")

    /// nil when admitted (call `leave` after the run); else why not. `bounded: false` waits
    /// whatever the queue's length (async runs, already counted when submitted).
    /// Killing `killer` (DELETE, client gone) while waiting withdraws from the queue.
    func enter(bounded: Bool = true, killer: ProcessKiller? = nil) async -> RunnerError? {
        if killer?.cancelled == true { return Self.cancelledWhileQueued }
        enum First { case admitted, refused(RunnerError), wait(UInt64) }
        let first = lock.withLock { () -> First in
            if draining { return .refused(Self.shuttingDown) }
            if running < maxConcurrent && waiters.isEmpty { running += 1; return .admitted }
            if bounded && waiters.count >= queueLength { return .refused(Self.full) }
            nextId += 1
            return .wait(nextId)
        }
        let id: UInt64
        switch first {
        case .admitted: return nil
        case .refused(let e): return e
        case .wait(let i): id = i
        }
        killer?.onKill { [weak self] in self?.withdraw(id) }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<RunnerError?, Never>) in
                lock.lock()
                if draining { lock.unlock(); c.resume(returning: Self.shuttingDown); return }
                if Task.isCancelled || killer?.cancelled == true {
                    lock.unlock(); c.resume(returning: Self.cancelledWhileQueued); return
                }
                if running < maxConcurrent && waiters.isEmpty { running += 1; lock.unlock(); c.resume(returning: nil); return }
                waiters.append((id, c))
                lock.unlock()
            }
        } onCancel: {
            withdraw(id)
        }
    }

    private func withdraw(_ id: UInt64) {
        lock.lock()
        let i = waiters.firstIndex { $0.id == id }
        let w = i.map { waiters.remove(at: $0) }
        lock.unlock()
        w?.resume.resume(returning: Self.cancelledWhileQueued)
    }

    func leave() {
        lock.lock()
        if draining || waiters.isEmpty {
            running -= 1
            lock.unlock()
        } else {
            let next = waiters.removeFirst()
            lock.unlock()
            next.resume.resume(returning: nil)
        }
    }

    /// Refuses everything from now on, the waiting included.
    func drain() {
        lock.lock()
        draining = true
        let all = waiters
        waiters = []
        lock.unlock()
        for w in all { w.resume.resume(returning: Self.shuttingDown) }
    }

    var isDraining: Bool { lock.lock(); defer { lock.unlock() }; return draining }
    var inFlight: Int { lock.lock(); defer { lock.unlock() }; return running }
}
