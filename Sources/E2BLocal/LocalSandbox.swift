import CE2BLocal
import Foundation
import SandboxRunner
#if canImport(Glibc)
import Glibc
#endif

/// One live sandbox: its running jail (`SandboxInstance`), what it was created with, its end
/// time, the commands started in it (running, and the ends of recent ones for late `Connect`s),
/// and its metrics.
final class LocalSandbox: @unchecked Sendable {
    let id: String
    let templateID: String
    let startedAt: Date
    let metadata: [String: String]
    let envVars: [String: String]
    let secure: Bool
    /// What envd calls must send in `X-Access-Token` when `secure`.
    let accessToken: String
    let trafficAccessToken: String
    let network: SandboxNetwork
    let instance: SandboxInstance
    /// The egress proxy bound into the sandbox, when its network allows anything out.
    let egress: EgressProxy?

    private let lock = NSLock()
    private var _endAt: Date
    private var processes: [UInt32: SandboxProcess] = [:]
    /// Exits the agent reported before the command was registered (a very short command).
    private var earlyExits: [UInt32: (Int32?, Int32?)] = [:]
    private var ended: [(pid: UInt32, tag: String?, end: ProcessEnd)] = []
    private var terminated: String?
    private var samples: [MetricSample] = []
    private var lastCPU: (ticks: Int, at: Date)?

    init(id: String, templateID: String, lifetime: Int, metadata: [String: String], envVars: [String: String],
         secure: Bool, network: SandboxNetwork, instance: SandboxInstance, egress: EgressProxy? = nil) {
        self.egress = egress
        self.id = id
        self.templateID = templateID
        self.startedAt = Date()
        self._endAt = startedAt.addingTimeInterval(TimeInterval(lifetime))
        self.metadata = metadata
        self.envVars = envVars
        self.secure = secure
        self.accessToken = Identifiers.token()
        self.trafficAccessToken = Identifiers.token()
        self.network = network
        self.instance = instance
    }

    var endAt: Date { lock.withLock { _endAt } }

    /// The sandbox now ends `seconds` from now.
    func setTimeout(_ seconds: Int) { lock.withLock { _endAt = Date().addingTimeInterval(TimeInterval(seconds)) } }

    /// Extends the end time to at least `seconds` from now (connect, refresh).
    func extend(toAtLeast seconds: Int) {
        lock.withLock { _endAt = max(_endAt, Date().addingTimeInterval(TimeInterval(seconds))) }
    }

    func isExpired(at now: Date) -> Bool { endAt <= now }

    var isTerminated: Bool { lock.withLock { terminated != nil } }

    // MARK: commands

    /// Starts a command through the agent, with fresh pipes for its output (and input). The
    /// returned process is registered and already has `subscriber` attached, so no output is lost.
    func start(config: ProcessConfig, tag: String?, environment: [String: String], cwd: String, stdin: Bool,
               subscribe: Bool) async throws -> (SandboxProcess, SandboxProcess.Subscription?) {
        guard !isTerminated else { throw AgentLink.Failure(code: "unavailable", message: "the sandbox is gone", errno: 0) }
        var out: [Int32] = [-1, -1], err: [Int32] = [-1, -1], input: [Int32] = [-1, -1]
        guard e2bl_pipe(&out) == 0, e2bl_pipe(&err) == 0, !stdin || e2bl_pipe(&input) == 0 else {
            for fd in out + err + input where fd >= 0 { close(fd) }
            throw AgentLink.Failure(code: "resource_exhausted", message: "could not create pipes (errno \(errno))", errno: errno)
        }
        var handed = [out[1], err[1]]
        if stdin { handed.append(input[0]) }
        let reply: AgentLink.Reply
        do {
            reply = try await instance.link.call("spawn", [
                "argv": .array(([config.cmd] + config.args).map(JSONValue.string)),
                "env": .object(environment.mapValues(JSONValue.string)), "cwd": .string(cwd),
            ], fds: handed)
        } catch {
            close(out[0]); close(err[0])
            if stdin { close(input[1]) }
            throw error
        }
        reply.fds.forEach { close($0) }
        guard let raw = reply.json["pid"]?.intValue, raw > 0, raw <= Int(UInt32.max) else {
            close(out[0]); close(err[0])
            if stdin { close(input[1]) }
            throw AgentLink.Failure(code: "internal", message: "the sandbox's agent answered without a pid", errno: 0)
        }
        let pid = UInt32(raw)
        let process = SandboxProcess(pid: pid, config: config, tag: tag, stdinFD: stdin ? input[1] : nil)
        let subscription = subscribe ? process.subscribe() : nil
        let early: (Int32?, Int32?)? = lock.withLock {
            processes[pid] = process
            return earlyExits.removeValue(forKey: pid)
        }
        process.whenEnded { [weak self] end in self?.finished(pid: pid, tag: tag, end: end) }
        process.startReading(stdout: out[0], stderr: err[0])
        if let (code, signal) = early { process.exited(code: code, signal: signal) }
        if isTerminated { process.gone("The sandbox \(id) was killed while the command started.") }
        return (process, subscription)
    }

    /// The agent's `exit` event for one of its commands.
    func agentReportedExit(pid: UInt32, code: Int32?, signal: Int32?) {
        let p: SandboxProcess? = lock.withLock {
            if let p = processes[pid] { return p }
            earlyExits[pid] = (code, signal)
            return nil
        }
        p?.exited(code: code, signal: signal)
    }

    private func finished(pid: UInt32, tag: String?, end: ProcessEnd) {
        lock.withLock {
            processes[pid] = nil
            ended.append((pid, tag, end))
            if ended.count > 100 { ended.removeFirst(ended.count - 100) }
        }
    }

    func process(pid: UInt32?, tag: String?) -> SandboxProcess? {
        lock.withLock {
            if let pid { return processes[pid] }
            if let tag { return processes.values.first { $0.tag == tag } }
            return nil
        }
    }

    /// The end of a command that already finished (envd keeps them for late `Connect`s).
    func endedProcess(pid: UInt32?, tag: String?) -> (UInt32, ProcessEnd)? {
        lock.withLock {
            if let pid { return ended.last { $0.pid == pid }.map { ($0.pid, $0.end) } }
            if let tag { return ended.last { $0.tag == tag }.map { ($0.pid, $0.end) } }
            return nil
        }
    }

    var runningProcesses: [SandboxProcess] {
        lock.withLock { processes.values.sorted { $0.pid < $1.pid } }
    }

    /// Signals a command's process group through the agent.
    func signal(_ process: SandboxProcess, _ sig: Int32) async throws {
        _ = try await instance.link.call("signal", ["pid": .int(Int(process.pid)), "signal": .int(Int(sig))])
    }

    /// Marks the sandbox gone: no command starts any more, every stream ends with `reason`. The
    /// caller then kills the instance.
    func terminate(reason: String) {
        let running: [SandboxProcess] = lock.withLock {
            if terminated == nil { terminated = reason }
            return Array(processes.values)
        }
        for p in running { p.gone(reason) }
    }

    // MARK: metrics

    /// Takes a sample now (at most one a second) and returns the samples between the times. The
    /// first sample has no interval behind it: its CPU use is 0.
    func metrics(from start: Date?, to end: Date?) -> [MetricSample] {
        sample()
        return lock.withLock {
            samples.filter { s in (start.map { s.timestamp >= $0.addingTimeInterval(-1) } ?? true) && (end.map { s.timestamp <= $0 } ?? true) }
        }
    }

    /// Measures CPU, memory and storage of the sandbox now.
    func sample(memoryTotal: Int? = nil) {
        let now = Date()
        if let last = lock.withLock({ samples.last }), now.timeIntervalSince(last.timestamp) < 1 { return }
        guard !isTerminated, !instance.isReaped else { return }
        let tree = instance.processTreeUsage()
        let storage = instance.storageUsage()
        let cpus = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        lock.withLock {
            var pct = 0.0
            if let last = lastCPU {
                let wall = max(0.001, now.timeIntervalSince(last.at))
                pct = min(100, max(0, Double(tree.ticks - last.ticks) / hz / wall / Double(cpus) * 100))
            }
            lastCPU = (tree.ticks, now)
            samples.append(MetricSample(timestamp: now, cpuCount: cpus, cpuUsedPct: (pct * 100).rounded() / 100,
                                        memUsed: tree.rssBytes, memTotal: memoryLimit, memCache: storage.used,
                                        diskUsed: storage.used, diskTotal: storage.total))
            if samples.count > 720 { samples.removeFirst(samples.count - 720) }
        }
    }

    /// The per-process memory limit the sandbox's processes run under (reported as memTotal).
    var memoryLimit = 0
}

/// One metrics sample, as `GET /sandboxes/{id}/metrics` lists it.
struct MetricSample: Sendable {
    var timestamp: Date
    var cpuCount: Int
    var cpuUsedPct: Double
    var memUsed: Int
    var memTotal: Int
    var memCache: Int
    var diskUsed: Int
    var diskTotal: Int

    var json: JSONValue {
        .object(["timestamp": .string(timestamp.rfc3339), "timestampUnix": .int(Int(timestamp.timeIntervalSince1970)),
                 "cpuCount": .int(cpuCount), "cpuUsedPct": .double(cpuUsedPct), "memUsed": .int(memUsed), "memTotal": .int(memTotal),
                 "memCache": .int(memCache), "diskUsed": .int(diskUsed), "diskTotal": .int(diskTotal)])
    }
}

/// What a sandbox's network is: the host's (`internet`), or its own empty namespace with an
/// egress proxy for what `allowOut`/`denyOut`/`rules` still allow; and the `network` object it
/// was created with.
struct SandboxNetwork: Sendable {
    var internet: Bool
    var config: JSONValue?
    var allowOut: [String] = []
    /// With `0.0.0.0/0` added when internet access was turned off.
    var denyOut: [String] = []
    var rules: JSONValue?

    /// Whether anything may leave the sandbox's own namespace (through the egress proxy).
    var needsProxy: Bool { !internet && (!allowOut.isEmpty || !denyOut.contains(NetworkOptions.allTraffic)) }
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

/// Random identifiers shaped like E2B's: lowercase letters and digits.
enum Identifiers {
    private static let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")

    static func sandboxID() -> String { String((0..<20).map { _ in alphabet.randomElement()! }) }

    static func token() -> String { String((0..<32).map { _ in alphabet.randomElement()! }) }
}
