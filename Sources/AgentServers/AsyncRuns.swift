import Foundation
import SandboxRunner

/// Redacts a stream of output that arrives in chunks: a secret split across chunks is still
/// caught, because the last (longest secret − 1) characters are held back until more arrives.
struct StreamRedactor {
    let redactor: Redactor
    private var bytes: [UInt8] = []
    private var held = ""

    init(redactor: Redactor) { self.redactor = redactor }

    private var holdBack: Int { max(0, (redactor.secrets.map { $0.unicodeScalars.count }.max() ?? 0) - 1) }
    private var secretHeads: [[Unicode.Scalar]] { redactor.secrets.map { Array($0.unicodeScalars) } }

    /// Takes a chunk; answers the redacted text that is safe to pass on now.
    mutating func feed(_ chunk: UnsafeRawBufferPointer) -> String {
        bytes.append(contentsOf: chunk)
        // Decode only whole UTF-8 sequences; keep a cut one for the next chunk.
        var cut = bytes.count
        var back = 0
        while back < 4 && cut > 0 && (bytes[cut - 1] & 0xC0) == 0x80 { cut -= 1; back += 1 }
        if cut > 0 {
            let lead = bytes[cut - 1]
            let need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
            if need > back + 1 { cut -= 1 } else { cut = bytes.count }
        }
        let text = String(decoding: bytes[..<cut], as: UTF8.self)
        bytes.removeFirst(cut)
        let all = redactor.redact(held + text)
        let scalars = Array(all.unicodeScalars)
        // Hold back only the longest tail that could be the start of a secret.
        var keep = 0
        for k in stride(from: min(holdBack, scalars.count), through: 1, by: -1) {
            let tail = scalars[(scalars.count - k)...]
            if secretHeads.contains(where: { $0.starts(with: tail) }) { keep = k; break }
        }
        held = String(String.UnicodeScalarView(scalars[(scalars.count - keep)...]))
        return String(String.UnicodeScalarView(scalars[..<(scalars.count - keep)]))
    }

    /// The rest, at the end of the stream.
    mutating func flush() -> String {
        let rest = redactor.redact(held + String(decoding: bytes, as: UTF8.self))
        held = ""
        bytes = []
        return rest
    }
}

/// One event of a run's stream (`GET /v1/runs/{id}/events`).
struct RunEvent: Sendable {
    var id: Int
    var name: String
    var data: String

    /// Server-Sent Events framing: every line of `data` gets its own `data:` field.
    var sse: String {
        var s = "id: \(id)\nevent: \(name)\n"
        for line in data.split(separator: "\n", omittingEmptySubsequences: false) { s += "data: \(line)\n" }
        return s + "\n"
    }
}

/// The state of an async run.
enum RunState: String, Sendable, CaseIterable {
    case queued, running, succeeded, failed, cancelled

    var finished: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// Async runs (`POST /v1/runs` with `"wait": false`): started in the background, polled, streamed
/// as events, cancelled. Finished runs are kept for `retention`, at most `maxRetained` of them and
/// `maxRetainedBytes` of result documents; the oldest go first.
final class RunStore: @unchecked Sendable {
    final class Record: @unchecked Sendable {
        let id: String
        let template: String?
        let created = Date()
        var started: Date?
        var finished: Date?
        var finishedAt: ContinuousClock.Instant?
        var state: RunState = .queued
        var result: RunResult?
        var resultBytes = 0
        let killer = ProcessKiller()
        var cancelRequested = false
        var events: [RunEvent] = []
        var eventBytes = 0
        var nextEventId = 1
        var subscribers: [UUID: AsyncStream<RunEvent>.Continuation] = [:]
        var done: [CheckedContinuation<Void, Never>] = []
        init(id: String, template: String?) { self.id = id; self.template = template }
    }

    struct Job: Sendable {
        let record: Record
        let request: RunRequest
    }

    let maxActive: Int
    let retention: Duration
    let maxRetained: Int
    let maxRetainedBytes: Int
    let eventBytesLimit: Int
    private let lock = NSLock()
    private var records: [String: Record] = [:]
    private var closed = false
    private let jobs: AsyncStream<Job>
    private let jobsIn: AsyncStream<Job>.Continuation

    init(maxActive: Int, retention: Duration, maxRetained: Int, maxRetainedBytes: Int, eventBytesLimit: Int) {
        self.maxActive = maxActive
        self.retention = retention
        self.maxRetained = max(1, maxRetained)
        self.maxRetainedBytes = maxRetainedBytes
        self.eventBytesLimit = eventBytesLimit
        (jobs, jobsIn) = AsyncStream<Job>.makeStream()
    }

    /// Registers the run and queues it for the workers; a refusal when too many are active.
    func submit(_ request: RunRequest, template: String?) -> Result<Record, RunnerError> {
        lock.lock()
        if closed { lock.unlock(); return .failure(RunGate.shuttingDown) }
        let active = records.values.filter { !$0.state.finished }.count
        guard active < maxActive else { lock.unlock(); return .failure(RunGate.full) }
        let r = Record(id: request.runId, template: template)
        records[r.id] = r
        lock.unlock()
        jobsIn.yield(Job(record: r, request: request))
        return .success(r)
    }

    /// Registers a sync run (already admitted by the caller's own bounds): no worker runs it.
    func register(_ request: RunRequest, template: String?) -> Record {
        let r = Record(id: request.runId, template: template)
        lock.withLock { records[r.id] = r }
        return r
    }

    /// Drops a run that never started (refused).
    func forget(_ r: Record) {
        lock.withLock { records[r.id] = nil }
    }

    func record(_ id: String) -> Record? {
        lock.lock(); defer { lock.unlock() }
        return records[id]
    }

    /// The run's state and, once it has finished, its result.
    func snapshot(_ r: Record) -> (RunState, RunResult?) {
        lock.lock(); defer { lock.unlock() }
        return (r.state, r.result)
    }

    /// The run's status document.
    func status(_ r: Record) -> JSONValue {
        lock.lock(); defer { lock.unlock() }
        return Self.statusDocument(r)
    }

    static func statusDocument(_ r: Record) -> JSONValue {
        let iso = ISO8601DateFormatter()
        iso.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var doc: [String: JSONValue] = [
            "runId": .string(r.id), "state": .string(r.state.rawValue), "template": r.template.map(JSONValue.string) ?? .null,
            "createdAt": .string(iso.string(from: r.created)),
            "startedAt": r.started.map { .string(iso.string(from: $0)) } ?? .null,
            "finishedAt": r.finished.map { .string(iso.string(from: $0)) } ?? .null,
            "links": .object(["self": .string("/v1/runs/\(r.id)"), "events": .string("/v1/runs/\(r.id)/events"),
                              "report": .string("/v1/runs/\(r.id)/report")]),
            "result": .null,
        ]
        if let result = r.result { doc["result"] = JSONValue.parse(Data(result.jsonText(pretty: false).utf8)) ?? .null }
        return .object(doc)
    }

    /// Cancels the run (queued: it never starts; running: its sandbox is killed), waits until it
    /// has finished, forgets it and answers its final status; nil when there is no such run.
    func delete(_ id: String) async -> JSONValue? {
        guard let r = record(id) else { return nil }
        let finished = lock.withLock { () -> Bool in
            r.cancelRequested = true
            return r.state.finished
        }
        if !finished {
            r.killer.kill(cancelling: true)
            await waitFinished(r)
        }
        return lock.withLock {
            records[id] = nil
            return Self.statusDocument(r)
        }
    }

    func waitFinished(_ r: Record) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            lock.lock()
            if r.state.finished { lock.unlock(); c.resume(); return }
            r.done.append(c)
            lock.unlock()
        }
    }

    /// The run's events: what it printed so far, then live, then its result; nil when no such run.
    func subscribe(_ id: String) -> AsyncStream<RunEvent>? {
        lock.lock(); defer { lock.unlock() }
        guard let r = records[id] else { return nil }
        let (stream, cont) = AsyncStream<RunEvent>.makeStream(bufferingPolicy: .bufferingNewest(4096))
        if r.state.finished {
            cont.yield(resultEvent(r))
            cont.finish()
            return stream
        }
        cont.yield(RunEvent(id: 0, name: "state", data: JSONValue.object(["state": .string(r.state.rawValue)]).jsonText()))
        for e in r.events { cont.yield(e) }
        let key = UUID()
        r.subscribers[key] = cont
        cont.onTermination = { [weak self, weak r] _ in
            guard let self, let r else { return }
            self.lock.lock(); r.subscribers[key] = nil; self.lock.unlock()
        }
        return stream
    }

    private func resultEvent(_ r: Record) -> RunEvent {
        RunEvent(id: r.nextEventId, name: "result", data: r.result?.jsonText(pretty: false) ?? "null")
    }

    /// Appends an output event (kept for late subscribers up to the byte limit, then only sent live).
    func emit(_ r: Record, _ name: String, _ text: String) {
        guard !text.isEmpty else { return }
        lock.lock()
        let data = JSONValue.object(["text": .string(text)]).jsonText()
        let e = RunEvent(id: r.nextEventId, name: name, data: data)
        r.nextEventId += 1
        if r.eventBytes + data.utf8.count <= eventBytesLimit {
            r.events.append(e)
            r.eventBytes += data.utf8.count
        }
        let subs = Array(r.subscribers.values)
        lock.unlock()
        for s in subs { s.yield(e) }
    }

    /// The workers: every queued job runs as a child task; returns once the store is closed and
    /// every job has finished.
    func runWorkers(_ execute: @escaping @Sendable (Job) async -> Void) async {
        await withDiscardingTaskGroup { group in
            for await job in jobs {
                group.addTask { await execute(job) }
            }
        }
    }

    /// Marks the run started; false when it was cancelled before it could start.
    func start(_ r: Record) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard !r.cancelRequested else { return false }
        r.state = .running
        r.started = Date()
        for s in r.subscribers.values { s.yield(RunEvent(id: 0, name: "state", data: JSONValue.object(["state": "running"]).jsonText())) }
        return true
    }

    func finish(_ r: Record, _ result: RunResult) {
        lock.lock()
        r.result = result
        r.resultBytes = result.jsonText(pretty: false).utf8.count
        r.state = result.success ? .succeeded : (result.errorKind == .cancelled ? .cancelled : .failed)
        r.finished = Date()
        r.finishedAt = .now
        r.events = []
        r.eventBytes = 0
        let subs = Array(r.subscribers.values)
        r.subscribers = [:]
        let waiting = r.done
        r.done = []
        let final = resultEvent(r)
        lock.unlock()
        for s in subs { s.yield(final); s.finish() }
        for w in waiting { w.resume() }
        evict(now: .now)
    }

    /// Drops finished runs past the retention period, then the oldest past the count and byte bounds.
    func evict(now: ContinuousClock.Instant) {
        lock.lock(); defer { lock.unlock() }
        var finished = records.values.filter { $0.state.finished }.sorted { $0.finishedAt! < $1.finishedAt! }
        for r in finished where now - r.finishedAt! >= retention { records[r.id] = nil }
        finished.removeAll { records[$0.id] == nil }
        var bytes = finished.reduce(0) { $0 + $1.resultBytes }
        while !finished.isEmpty && (finished.count > maxRetained || bytes > maxRetainedBytes) {
            let r = finished.removeFirst()
            bytes -= r.resultBytes
            records[r.id] = nil
        }
    }

    /// No more runs: queued ones are cancelled (they never start); the workers end after the running ones.
    func close() {
        lock.lock()
        closed = true
        let queued = records.values.filter { $0.state == .queued }
        for r in queued { r.cancelRequested = true }
        lock.unlock()
        jobsIn.finish()
    }

    func killAll() {
        lock.lock(); let all = records.values.filter { !$0.state.finished }; lock.unlock()
        for r in all { r.killer.kill(cancelling: true) }
    }

    var count: Int { lock.lock(); defer { lock.unlock() }; return records.count }
}
