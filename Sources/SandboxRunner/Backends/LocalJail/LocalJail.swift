import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How strongly the local backend isolates a run.
public enum IsolationMode: String, Sendable, Codable {
    /// bubblewrap namespaces + rlimits (+ cgroups where available). The default.
    case bubblewrap
    /// rlimits and a private workspace only: the host's files are visible. Opt-in only.
    case weak
}

/// The local process jail: bubblewrap with new user, pid, ipc, uts, cgroup and (by default)
/// network namespaces, read-only system dirs, a fresh workspace as home, a cleared environment,
/// rlimits and an unprivileged uid set by the child between fork and exec, a wall-clock
/// timeout, capped output.
public struct LocalJail: SandboxBackend {
    public var name: String { "local" }
    public var mode: IsolationMode
    public var limits: JailLimits
    public var python: String
    public var tools: JailTools

    /// The cgroup v1 controllers runs get here (empty when not root or not mounted).
    public static var cgroupControllers: [String] { CgroupV1.available }

    /// Where the workspace appears inside the jail.
    public static let home = "/home/sandbox"
    /// The variables a script gets besides the job's own.
    public static func baseEnvironment(home: String) -> [String: String] {
        ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
         "TZ": "UTC", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"]
    }

    public init(mode: IsolationMode = .bubblewrap, limits: JailLimits = JailLimits(), tools: JailTools = .discover()) {
        self.mode = mode
        self.limits = limits
        self.tools = tools
        self.python = tools.python ?? "/usr/bin/python3"
    }

    static func unavailable(_ problem: String) -> RunnerError {
        RunnerError(.unavailable, problem + " Install bubblewrap (apt-get install bubblewrap) and enable user namespaces, "
            + "or pass --allow-weak-isolation to run without namespaces (the script can then read the host's files).")
    }

    public func run(_ job: SandboxJob, killer: ProcessKiller) async throws -> SandboxOutcome {
        if mode == .bubblewrap && tools.bwrap == nil { throw Self.unavailable("bubblewrap (bwrap) is not installed.") }
        guard tools.python != nil else {
            throw RunnerError(.unavailable, "python3 is not installed at /usr/bin/python3; the jail needs it (apt-get install python3).")
        }
        let workspace = try Workspace.create(runId: job.runId)
        defer { workspace.remove() }
        try BundleBuilder.extract(job.bundle, into: workspace.url)
        let uid = try workspace.handOver()

        let cgroup = CgroupV1(runId: job.runId, limits: limits)
        defer { cgroup?.remove() }
        if let cgroup { killer.onKill { cgroup.killAll() } }

        let spec = processSpec(job: job, workspace: workspace.url.path, uid: uid, cgroupProcs: cgroup?.procsFiles ?? [])
        let outcome = try await ProcessRunner.run(spec, killer: killer)
        try checkJailStarted(outcome)
        return SandboxOutcome(process: outcome, isolation: mode == .bubblewrap ? "bubblewrap" : "weak", network: mode == .weak ? .host : job.network)
    }

    /// The launch: fork → [join cgroups, set rlimits, drop to the jail uid] → exec bwrap → python3.
    func processSpec(job: SandboxJob, workspace: String, uid: uid_t?, cgroupProcs: [String]) -> ProcessSpec {
        let inner = mode == .bubblewrap ? Self.home : workspace
        let env = Self.baseEnvironment(home: inner).merging(job.environment) { _, job in job }
        var spec = commandSpec(argv: [python, "-u", "-B", "-s", "run.py"], workspace: workspace, mountPoint: Self.home,
                               workingDirectory: nil, network: job.network, uid: uid, cgroupProcs: cgroupProcs)
        spec.environment = env
        spec.timeout = job.timeout
        spec.outputLimit = job.outputLimit
        spec.onOutput = job.onOutput
        return spec
    }

    /// Runs any command in a jail over an existing workspace (mounted at `mountPoint`), which
    /// outlives the command: what e2b-local's sandboxes are made of. The caller owns the workspace.
    public func runCommand(_ argv: [String], workspace: URL, mountPoint: String, workingDirectory: String?,
                           environment: [String: String], network: NetworkPolicy, timeout: Duration, outputLimit: Int,
                           uid: uid_t?, killer: ProcessKiller,
                           onOutput: (@Sendable (Int32, UnsafeRawBufferPointer) -> Void)? = nil) async throws -> ProcessOutcome {
        if mode == .bubblewrap && tools.bwrap == nil { throw Self.unavailable("bubblewrap (bwrap) is not installed.") }
        let runId = RunRequest.newRunId()
        let cgroup = CgroupV1(runId: runId, limits: limits)
        defer { cgroup?.remove() }
        if let cgroup { killer.onKill { cgroup.killAll() } }
        var spec = commandSpec(argv: argv, workspace: workspace.path, mountPoint: mountPoint, workingDirectory: workingDirectory,
                               network: network, uid: uid, cgroupProcs: cgroup?.procsFiles ?? [])
        spec.environment = Self.baseEnvironment(home: mode == .bubblewrap ? mountPoint : workspace.path).merging(environment) { _, e in e }
        spec.timeout = timeout
        spec.outputLimit = outputLimit
        spec.onOutput = onOutput
        let outcome = try await ProcessRunner.run(spec, killer: killer)
        try checkJailStarted(outcome)
        return outcome
    }

    /// bubblewrap failing to set up looks like a script failing: when a run fails with bwrap's own
    /// message and no output, probe the jail (not before: the probe costs a process start).
    func checkJailStarted(_ outcome: ProcessOutcome) throws {
        guard mode == .bubblewrap, outcome.exitCode != 0, outcome.stdout.totalBytes == 0,
              outcome.stderr.text.hasPrefix("bwrap:") else { return }
        if let problem = JailTools.probe(tools) { throw Self.unavailable(problem) }
    }

    /// Creates a workspace directory owned by a fresh jail uid (when root); remove it with `removeWorkspace`.
    public static func makeWorkspace(label: String) throws -> (URL, uid_t?) {
        let ws = try Workspace.create(runId: label)
        return (ws.url, try ws.handOver())
    }

    /// Gives files written into a workspace from outside (uploads) to the workspace's jail uid.
    public static func handOver(_ path: URL, to uid: uid_t?) {
        guard let uid else { return }
        lchown(path.path, uid, uid)
    }

    public static func removeWorkspace(_ url: URL) { Workspace(url: url).remove() }

    func commandSpec(argv: [String], workspace: String, mountPoint: String, workingDirectory: String?, network: NetworkPolicy,
                     uid: uid_t?, cgroupProcs: [String]) -> ProcessSpec {
        // Limits, the jail uid and the cgroups are set up by the child itself between fork and exec
        // (sr_spawn_jailed): no shell, setpriv or prlimit process in the chain.
        var chain: [String] = []
        if mode == .bubblewrap {
            var args = Self.bubblewrapArguments(workspace: workspace, network: network, tmpBytes: limits.tmpBytes, mountPoint: mountPoint)
            if let wd = workingDirectory, let i = args.lastIndex(of: "--chdir") { args[i + 1] = wd }
            chain += [tools.bwrap ?? "/usr/bin/bwrap"] + args
        }
        chain += argv
        var spec = ProcessSpec(executable: chain[0], arguments: Array(chain.dropFirst()), environment: [:],
                               timeout: Executor.defaultTimeout, outputLimit: 1 << 20)
        spec.jail = JailSetup(limits: limits, uid: uid, cgroupProcs: cgroupProcs)
        if mode != .bubblewrap {
            spec.workingDirectory = workingDirectory.map { wd in
                wd.hasPrefix(mountPoint) ? workspace + wd.dropFirst(mountPoint.count) : workspace
            } ?? workspace
        }
        return spec
    }

    /// bubblewrap's arguments: what the jail sees of the host.
    public static func bubblewrapArguments(workspace: String, network: NetworkPolicy, tmpBytes: Int, mountPoint: String = home) -> [String] {
        var args = ["--unshare-all"]
        if network == .host { args.append("--share-net") }
        args += ["--die-with-parent", "--new-session", "--hostname", "sandbox",
                 "--ro-bind", "/usr", "/usr"]
        for dir in ["/lib", "/lib64", "/lib32", "/bin", "/sbin"] {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: dir) {
                args += ["--symlink", target, dir]
            } else if FileManager.default.fileExists(atPath: dir) {
                args += ["--ro-bind", dir, dir]
            }
        }
        // Only what Python, DNS and TLS need from /etc; never the whole of it.
        for path in ["/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates",
                     "/etc/localtime", "/etc/mime.types"] {
            args += ["--ro-bind-try", path, path]
        }
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--size", String(tmpBytes), "--tmpfs", "/tmp",
                 "--bind", workspace, mountPoint, "--chdir", mountPoint, "--"]
        return args
    }
}

/// Paths of the programs the jail's launch chain uses, found once.
public struct JailTools: Sendable {
    public var bwrap: String?
    public var python: String?
    /// Why bubblewrap cannot isolate here, or nil when it can (probed on first use: it costs a process start).
    public var bubblewrapProblem: String? { JailTools.probe(self) }

    public static func discover() -> JailTools {
        func find(_ names: [String]) -> String? { names.first { access($0, X_OK) == 0 } }
        var t = JailTools()
        t.bwrap = find(["/usr/bin/bwrap", "/usr/local/bin/bwrap"])
        t.python = find(["/usr/bin/python3"])
        return t
    }

    /// Starts an empty jail once: the only sure test that namespaces work here.
    static func probe(_ t: JailTools) -> String? {
        guard let bwrap = t.bwrap else { return "bubblewrap (bwrap) is not installed." }
        var args = LocalJail.bubblewrapArguments(workspace: "/usr", network: .none, tmpBytes: 1 << 20)
        args.append("/usr/bin/true")
        var spec = ProcessSpec(executable: bwrap, arguments: args, environment: ["PATH": "/usr/bin:/bin"],
                               timeout: .seconds(10), outputLimit: 4096)
        spec.jail = JailSetup(limits: nil, uid: geteuid() == 0 ? 65534 : nil, cgroupProcs: [])
        guard let outcome = try? ProcessRunner.runBlocking(spec, killer: ProcessKiller()) else { return "bubblewrap could not be started." }
        if outcome.exitCode == 0 { return nil }
        let why = outcome.stderr.text.trimmingCharacters(in: .whitespacesAndNewlines)
        return "bubblewrap cannot create namespaces here (\(why.isEmpty ? "exit \(outcome.exitCode)" : why))."
    }
}

/// A run's private directory, handed to the jail's own uid and removed afterwards.
struct Workspace {
    let url: URL

    static func create(runId: String) throws -> Workspace {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/sandbox-runner-\(runId.prefix(8))-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw RunnerError(.unavailable, "Could not create a workspace under \(base) (errno \(errno)).")
        }
        return Workspace(url: URL(fileURLWithPath: String(cString: p)))
    }

    /// When running as root, gives the workspace to a fresh unprivileged uid and returns it:
    /// the script then runs without root and RLIMIT_NPROC counts only its own processes.
    func handOver() throws -> uid_t? {
        guard geteuid() == 0 else { return nil }
        let uid = uid_t(200_000 + Int.random(in: 0..<800_000))
        let fm = FileManager.default
        var paths = [url.path]
        if let e = fm.enumerator(atPath: url.path) { while let p = e.nextObject() as? String { paths.append(url.appendingPathComponent(p).path) } }
        for p in paths where lchown(p, uid, uid) != 0 {
            throw RunnerError(.internalError, "Could not hand the workspace to the jail user (errno \(errno)).")
        }
        chmod(url.path, 0o700)
        return uid
    }

    func remove() { try? FileManager.default.removeItem(at: url) }
}
