import Foundation
import SandboxRunner
#if canImport(Glibc)
import Glibc
#endif

/// One live sandbox: a jail workspace mounted at /home/user, what it was created with, its end
/// time and the commands running in it.
final class LocalSandbox: @unchecked Sendable {
    let id: String
    let templateID: String
    let workspace: URL
    /// The unprivileged uid owning the workspace (nil when not running as root).
    let uid: uid_t?
    let startedAt: Date
    let metadata: [String: String]
    let envVars: [String: String]
    let secure: Bool
    /// What envd calls must send in `X-Access-Token` when `secure`.
    let accessToken: String
    let trafficAccessToken: String
    let network: NetworkPolicy

    private let lock = NSLock()
    private var _endAt: Date
    private var processes: [UInt32: RunningProcess] = [:]
    private var nextPid: UInt32 = 1000
    private var terminated: String?

    init(id: String, templateID: String, workspace: URL, uid: uid_t?, lifetime: Int, metadata: [String: String],
         envVars: [String: String], secure: Bool, network: NetworkPolicy) {
        self.id = id
        self.templateID = templateID
        self.workspace = workspace
        self.uid = uid
        self.startedAt = Date()
        self._endAt = startedAt.addingTimeInterval(TimeInterval(lifetime))
        self.metadata = metadata
        self.envVars = envVars
        self.secure = secure
        self.accessToken = Identifiers.token()
        self.trafficAccessToken = Identifiers.token()
        self.network = network
    }

    var endAt: Date {
        lock.lock(); defer { lock.unlock() }
        return _endAt
    }

    /// The sandbox now ends `seconds` from now.
    func setTimeout(_ seconds: Int) {
        lock.lock(); defer { lock.unlock() }
        _endAt = Date().addingTimeInterval(TimeInterval(seconds))
    }

    /// Extends the end time to at least `seconds` from now (connect, refresh).
    func extend(toAtLeast seconds: Int) {
        lock.lock(); defer { lock.unlock() }
        _endAt = max(_endAt, Date().addingTimeInterval(TimeInterval(seconds)))
    }

    func isExpired(at now: Date) -> Bool { endAt <= now }

    /// Adds a command; nil when the sandbox was killed meanwhile.
    func register(config: ProcessConfig, tag: String?) -> RunningProcess? {
        lock.lock(); defer { lock.unlock() }
        guard terminated == nil else { return nil }
        nextPid += 1
        let p = RunningProcess(pid: nextPid, config: config, tag: tag)
        processes[p.pid] = p
        return p
    }

    func unregister(_ pid: UInt32) {
        lock.lock(); defer { lock.unlock() }
        processes[pid] = nil
    }

    func process(pid: UInt32?, tag: String?) -> RunningProcess? {
        lock.lock(); defer { lock.unlock() }
        if let pid { return processes[pid] }
        if let tag { return processes.values.first { $0.tag == tag } }
        return nil
    }

    var runningProcesses: [RunningProcess] {
        lock.lock(); defer { lock.unlock() }
        return processes.values.sorted { $0.pid < $1.pid }
    }

    /// Kills every command with the sandbox gone as the reason; later `register` calls fail.
    func terminate(reason: String) {
        lock.lock()
        if terminated == nil { terminated = reason }
        let running = Array(processes.values)
        lock.unlock()
        for p in running { p.end(.sandboxGone(reason)) }
    }

    /// Waits until every command has finished (their streams report it), at most `limit`.
    func waitForProcesses(limit: Duration) async {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            let n = lock.withLock { processes.count }
            if n == 0 { return }
            await sleepThroughCancellation(milliseconds: 20)
        }
    }
}

/// The process config as E2B's process.proto has it.
struct ProcessConfig: Sendable {
    var cmd: String
    var args: [String]
    var envs: [String: String]
    var cwd: String?

    var json: JSONValue {
        var o: [String: JSONValue] = ["cmd": .string(cmd), "args": .array(args.map(JSONValue.string)),
                                      "envs": .object(envs.mapValues(JSONValue.string))]
        if let cwd { o["cwd"] = .string(cwd) }
        return .object(o)
    }
}

/// A command running in a sandbox: its virtual pid (what clients see and signal), the killer of
/// its process tree, and why it was ended early, if it was.
final class RunningProcess: @unchecked Sendable {
    enum EndReason: Sendable, Equatable {
        /// SendSignal: reported as `signal: killed` / `signal: terminated`.
        case signal(Int32)
        /// The Connect deadline passed.
        case deadline
        /// The sandbox was killed or expired: the stream ends with `unavailable`, no end event.
        case sandboxGone(String)
        /// The client went away or a fault cut the stream.
        case disconnected
    }

    let pid: UInt32
    let config: ProcessConfig
    let tag: String?
    let killer = ProcessKiller()
    private let lock = NSLock()
    private var _reason: EndReason?
    private var onEnd: [@Sendable () -> Void] = []

    init(pid: UInt32, config: ProcessConfig, tag: String?) {
        self.pid = pid
        self.config = config
        self.tag = tag
    }

    /// The first reason it was ended for, if it was.
    var reason: EndReason? {
        lock.lock(); defer { lock.unlock() }
        return _reason
    }

    /// Runs `action` when the process is ended early (at once if it already was).
    func whenEnded(_ action: @escaping @Sendable () -> Void) {
        lock.lock()
        if _reason != nil { lock.unlock(); action(); return }
        onEnd.append(action)
        lock.unlock()
    }

    /// Kills the process tree (SIGKILL: the jail has no gentler way to stop a bubblewrap tree).
    func end(_ reason: EndReason) {
        lock.lock()
        if _reason == nil { _reason = reason }
        let actions = onEnd
        onEnd = []
        lock.unlock()
        killer.kill()
        for a in actions { a() }
    }
}

/// Random identifiers shaped like E2B's: lowercase letters and digits.
enum Identifiers {
    private static let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")

    static func sandboxID() -> String { String((0..<20).map { _ in alphabet.randomElement()! }) }

    static func token() -> String { String((0..<32).map { _ in alphabet.randomElement()! }) }
}
