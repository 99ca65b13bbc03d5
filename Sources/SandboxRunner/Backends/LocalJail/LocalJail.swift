import CSystemShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How strongly the local backend isolates a run.
public enum IsolationMode: String, Sendable, Codable {
    /// bubblewrap namespaces + seccomp + rlimits (+ cgroups where available). The default.
    case bubblewrap
    /// rlimits, seccomp, cgroups and a private workspace only: the host's files are visible. Opt-in only.
    case weak
}

/// The local process jail: bubblewrap with new user, pid, ipc, uts, cgroup and (by default)
/// network namespaces, a seccomp filter, no nested user namespaces, a read-only root with
/// read-only system dirs, the workspace as a size-capped tmpfs inside the jail (the bundle put in
/// by bubblewrap from memory), a cleared environment, rlimits, per-run cgroups and an
/// unprivileged uid set by the child between fork and exec, a wall-clock timeout, capped output.
/// Nothing of a run outlives it: the jail's pid 1 is killed through a pidfd and its pid namespace
/// (and cgroup) confirmed empty before the result is returned.
public struct LocalJail: SandboxBackend {
    public var name: String { "local" }
    public var mode: IsolationMode
    public var limits: JailLimits
    public var python: String
    public var tools: JailTools
    /// Caps of the egress proxy of a `posthog` run.
    public var egressLimits = EgressLimits()

    /// The cgroup v1 controllers runs get here (empty when not root or not mounted).
    public static var cgroupControllers: [String] { CgroupV1.available }
    /// Why runs get no cgroups here, or nil when they do (when `JailLimits.useCgroups` is on).
    public static var cgroupsUnavailableReason: String? { CgroupV1.unavailableReason }

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

    /// A fresh unprivileged uid for one run (when the runner is root).
    static func freshUid() -> uid_t { uid_t(200_000 + Int.random(in: 0..<800_000)) }

    public func run(_ job: SandboxJob, killer: ProcessKiller) async throws -> SandboxOutcome {
        if mode == .bubblewrap && tools.bwrap == nil { throw Self.unavailable("bubblewrap (bwrap) is not installed.") }
        guard tools.python != nil else {
            throw RunnerError(.unavailable, "python3 is not installed at /usr/bin/python3; the jail needs it (apt-get install python3).")
        }
        let argv = [python, "-u", "-B", "-s", "run.py"]
        switch mode {
        case .bubblewrap:
            let bundle = try BundleFiles.read(job.bundle)
            var layout = JailLayout(home: .tmpfs(bytes: limits.workspaceBytes), network: job.network,
                                    tmpBytes: limits.tmpBytes, shmBytes: limits.shmBytes)
            layout.directories = bundle.entries.filter(\.isDirectory).map(\.path)
            let files = bundle.entries.filter { !$0.isDirectory }.map { (path: $0.path, bytes: $0.bytes) }
            var env = Self.baseEnvironment(home: Self.home).merging(job.environment) { _, job in job }
            // `posthog`: the jail keeps its empty network namespace; the only way out is the
            // egress proxy's socket, bound in. The proxy ends with the run and its log is the result's.
            var proxy: EgressProxy?
            let uid = geteuid() == 0 ? Self.freshUid() : nil
            if job.network == .posthog {
                guard let rules = job.egress else {
                    throw RunnerError(.internalError, "A run with the posthog network policy came without its egress settings.")
                }
                let p = try EgressProxy.start(rules: rules, limits: egressLimits, owner: uid)
                proxy = p
                layout.binds.append(JailBind(source: p.socketPath, destination: EgressProxy.sandboxPath, readOnly: true))
                env["POSTHOG_EGRESS_SOCKET"] = EgressProxy.sandboxPath
            }
            defer { proxy?.stop() }
            let collector = try ArtifactPipe(job.artifacts)
            if collector != nil { env[ArtifactStream.environmentVariable] = "fd:3" }
            let outcome: ProcessOutcome
            do {
                outcome = try await launch(argv, layout: layout, files: files, environment: env, timeout: job.timeout,
                                           outputLimit: job.outputLimit, uid: uid,
                                           runId: job.runId, killer: killer, onOutput: job.onOutput, extraFDs: collector.map { [$0.writeEnd] } ?? [])
            } catch {
                _ = await collector?.finish()
                throw error
            }
            var result = SandboxOutcome(process: outcome, isolation: "bubblewrap", network: job.network)
            result.egress = proxy?.stop()
            result.artifacts = await collector?.finish()
            return result
        case .weak:
            let workspace = try Workspace.create(label: job.runId)
            var removable = true
            defer {
                // Only once nothing of the run can still write there (or, not root, nothing it could gain).
                if removable || geteuid() != 0 { workspace.remove() }
            }
            try BundleBuilder.extract(job.bundle, into: workspace.home)
            let uid = try workspace.handOver()
            var env = Self.baseEnvironment(home: workspace.home.path).merging(job.environment) { _, job in job }
            if job.network == .posthog, let rules = job.egress {
                // Without namespaces the script shares the host's network and files (.env among
                // them): no egress policy can hold, so it runs as `host` would, and says so.
                env["POSTHOG_AUTH"] = nil
                env["POSTHOG_PERSONAL_API_KEY"] = rules.authorization.map { String($0.dropFirst("Bearer ".count)) }
            }
            let collector = try ArtifactPipe(job.artifacts)
            if collector != nil { env[ArtifactStream.environmentVariable] = "fd:3" }
            let outcome: ProcessOutcome
            do {
                outcome = try await launchWeak(argv, workspace: workspace.home.path, workingDirectory: nil, environment: env,
                                               timeout: job.timeout, outputLimit: job.outputLimit, uid: uid, runId: job.runId,
                                               killer: killer, onOutput: job.onOutput, extraFDs: collector.map { [$0.writeEnd] } ?? [])
            } catch {
                _ = await collector?.finish()
                throw error
            }
            removable = outcome.everythingEnded
            if uid != nil { try checkEnded(outcome) }
            var result = SandboxOutcome(process: outcome, isolation: "weak", network: .host)
            result.artifacts = await collector?.finish()
            return result
        }
    }

    /// A run's bubblewrap command line and the contents of the descriptors it names (descriptor
    /// 3 + i holds `descriptors[i]`), without the runner's supervision (status, block, cgroups,
    /// uid): the benchmark's floor, bare bubblewrap with the same options.
    public struct Plan: Sendable {
        public var command: [String]
        public var descriptors: [[UInt8]]
        public var environment: [String: String]
    }

    public func plan(bundle: RunBundle, network: NetworkPolicy) throws -> Plan {
        let files = try BundleFiles.read(bundle)
        var layout = JailLayout(home: .tmpfs(bytes: limits.workspaceBytes), network: network, tmpBytes: limits.tmpBytes, shmBytes: limits.shmBytes)
        layout.directories = files.entries.filter(\.isDirectory).map(\.path)
        var contents: [[UInt8]] = [try SeccompFilter.bpf()]
        var descriptors = JailDescriptors(seccomp: 3)
        for f in files.entries where !f.isDirectory {
            contents.append(f.bytes)
            descriptors.files.append(.init(path: f.path, mode: 0o644, fd: Int32(2 + contents.count)))
        }
        let command = [tools.bwrap ?? "/usr/bin/bwrap"] + Self.bubblewrapArguments(layout, descriptors: descriptors)
            + ["--", python, "-u", "-B", "-s", "run.py"]
        return Plan(command: command, descriptors: contents, environment: Self.baseEnvironment(home: Self.home))
    }

    /// Runs any command in a jail over an existing host workspace (bound at `mountPoint`), which
    /// outlives the command: what e2b-local's sandboxes are made of. The caller owns the workspace.
    /// `extraFDs` are handed to the command as descriptors 3, 4, … (the caller keeps its own copies).
    public func runCommand(_ argv: [String], workspace: URL, mountPoint: String, workingDirectory: String?,
                           environment: [String: String], network: NetworkPolicy, timeout: Duration, outputLimit: Int,
                           uid: uid_t?, killer: ProcessKiller,
                           onOutput: (@Sendable (Int32, UnsafeRawBufferPointer) -> Void)? = nil,
                           extraFDs: [Int32] = []) async throws -> ProcessOutcome {
        if mode == .bubblewrap && tools.bwrap == nil { throw Self.unavailable("bubblewrap (bwrap) is not installed.") }
        let runId = RunRequest.newRunId()
        if mode == .weak {
            let wd = workingDirectory.map { wd in wd.hasPrefix(mountPoint) ? workspace.path + wd.dropFirst(mountPoint.count) : workspace.path }
            let env = Self.baseEnvironment(home: workspace.path).merging(environment) { _, e in e }
            let outcome = try await launchWeak(argv, workspace: workspace.path, workingDirectory: wd, environment: env, timeout: timeout,
                                               outputLimit: outputLimit, uid: uid, runId: runId, killer: killer, onOutput: onOutput)
            if uid != nil { try checkEnded(outcome) }
            return outcome
        }
        var layout = JailLayout(home: .bind(hostPath: workspace.path), network: network, tmpBytes: limits.tmpBytes, shmBytes: limits.shmBytes)
        layout.mountPoint = mountPoint
        layout.workingDirectory = workingDirectory
        let env = Self.baseEnvironment(home: mountPoint).merging(environment) { _, e in e }
        return try await launch(argv, layout: layout, files: [], environment: env, timeout: timeout, outputLimit: outputLimit,
                                uid: uid, runId: runId, killer: killer, onOutput: onOutput, extraFDs: extraFDs)
    }

    /// The bubblewrap launch: fork → [join cgroups, place descriptors, set rlimits, drop to the
    /// jail uid, fresh keyring, clean signals] → exec bwrap → (pid 1 waits until the runner holds a
    /// pidfd of it) → the command under seccomp. Returns once every process of it is gone.
    func launch(_ argv: [String], layout: JailLayout, files: [(path: String, bytes: [UInt8])], environment: [String: String],
                timeout: Duration, outputLimit: Int, uid: uid_t?, runId: String, killer: ProcessKiller,
                onOutput: (@Sendable (Int32, UnsafeRawBufferPointer) -> Void)? = nil, extraFDs: [Int32] = []) async throws -> ProcessOutcome {
        let cgroup = CgroupV1(runId: runId, limits: limits)
        // Everything the child gets, in order: extra descriptors first (3, 4, … for the command),
        // then bubblewrap's status and block pipes; from the spawn on the runner closes them, until
        // then we do. Then the seccomp program and the bundle's files, which the child itself
        // writes into memfds: the runner holds no descriptor per file (a server near its
        // descriptor limit still starts runs).
        var passed: [Int32] = []
        var statusRead: Int32 = -1
        var blockWrite: Int32 = -1
        var descriptors = JailDescriptors()
        var blobs: [[UInt8]] = []
        do {
            for fd in extraFDs {
                let copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)
                guard copy >= 0 else { throw RunnerError(.internalError, "Could not pass a descriptor into the jail (errno \(errno)).") }
                passed.append(copy)
            }
            var status: [Int32] = [-1, -1]
            var block: [Int32] = [-1, -1]
            guard sr_pipe_cloexec(&status) == 0 else { throw RunnerError(.internalError, "Could not create a pipe (errno \(errno)).") }
            statusRead = status[0]
            passed.append(status[1])
            descriptors.status = Int32(2 + passed.count)
            guard sr_pipe_cloexec(&block) == 0 else { throw RunnerError(.internalError, "Could not create a pipe (errno \(errno)).") }
            blockWrite = block[1]
            passed.append(block[0])
            descriptors.block = Int32(2 + passed.count)
            blobs.append(try SeccompFilter.bpf())
            descriptors.seccomp = Int32(2 + passed.count + blobs.count)
            for f in files {
                blobs.append(f.bytes)
                descriptors.files.append(.init(path: f.path, mode: 0o644, fd: Int32(2 + passed.count + blobs.count)))
            }
        } catch {
            for fd in passed + [statusRead, blockWrite] where fd >= 0 { close(fd) }
            _ = cgroup?.killAndAwaitEmpty()
            throw error
        }

        let args = Self.bubblewrapArguments(layout, descriptors: descriptors) + ["--"] + argv
        var spec = ProcessSpec(executable: tools.bwrap ?? "/usr/bin/bwrap", arguments: args, environment: environment,
                               timeout: timeout, outputLimit: outputLimit)
        spec.onOutput = onOutput
        var setup = JailSetup(limits: limits, uid: uid)
        setup.passedFDs = passed
        setup.blobs = blobs
        setup.bubblewrapStatus = statusRead
        setup.bubblewrapBlock = blockWrite
        setup.cgroup = cgroup
        spec.jail = setup
        let outcome: ProcessOutcome
        do {
            outcome = try await ProcessRunner.run(spec, killer: killer)
        } catch {
            _ = cgroup?.killAndAwaitEmpty()
            throw error
        }
        try checkEnded(outcome)
        if outcome.jailStarted == false && !outcome.timedOut && !outcome.cancelled && outcome.signal == nil {
            // bubblewrap ended without starting the command: its own message says why.
            let why = outcome.stderr.text.split(separator: "\n").last { $0.hasPrefix("bwrap:") }.map(String.init)
            throw Self.unavailable("The jail did not start (\(why ?? "bubblewrap exited with \(outcome.exitCode)")).")
        }
        return outcome
    }

    /// The weak launch: no namespaces; the same limits, uid, keyring, cgroups and seccomp filter.
    /// The caller checks `everythingEnded` before it touches the workspace.
    func launchWeak(_ argv: [String], workspace: String, workingDirectory: String?, environment: [String: String],
                    timeout: Duration, outputLimit: Int, uid: uid_t?, runId: String, killer: ProcessKiller,
                    onOutput: (@Sendable (Int32, UnsafeRawBufferPointer) -> Void)?, extraFDs: [Int32] = []) async throws -> ProcessOutcome {
        let bpf = try SeccompFilter.bpf()
        var passed: [Int32] = []
        for fd in extraFDs {
            let copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)
            guard copy >= 0 else {
                for p in passed { close(p) }
                throw RunnerError(.internalError, "Could not pass a descriptor to the run (errno \(errno)).")
            }
            passed.append(copy)
        }
        let cgroup = CgroupV1(runId: runId, limits: limits)
        var spec = ProcessSpec(executable: argv[0], arguments: Array(argv.dropFirst()),
                               environment: environment, timeout: timeout, outputLimit: outputLimit)
        spec.workingDirectory = workingDirectory ?? workspace
        spec.onOutput = onOutput
        var setup = JailSetup(limits: limits, uid: uid)
        setup.passedFDs = passed
        setup.cgroup = cgroup
        setup.killByUid = uid != nil
        setup.seccomp = bpf
        spec.jail = setup
        let outcome: ProcessOutcome
        do {
            outcome = try await ProcessRunner.run(spec, killer: killer)
        } catch {
            _ = cgroup?.killAndAwaitEmpty()
            throw error
        }
        return outcome
    }

    func checkEnded(_ outcome: ProcessOutcome) throws {
        guard outcome.everythingEnded else {
            throw RunnerError(.internalError, "Processes of the run could not be ended (they did not exit after SIGKILL); "
                + "nothing of the run was cleaned up. Check the machine for processes stuck in the kernel (ps -eo stat,pid,cmd).")
        }
    }

    /// Creates a workspace directory owned by a fresh jail uid (when root); remove it with `removeWorkspace`.
    public static func makeWorkspace(label: String) throws -> (URL, uid_t?) {
        let ws = try Workspace.create(label: label)
        do {
            return (ws.home, try ws.handOver())
        } catch {
            ws.remove()
            throw error
        }
    }

    /// Gives a file written into a workspace from outside (uploads) to the workspace's jail uid:
    /// fchownat relative to the workspace, never following a link on the way.
    public static func handOver(_ path: URL, to uid: uid_t?) {
        guard let uid, let ws = Workspace.outermost(containing: path) else { return }
        _ = ws.chown(path, to: uid)
    }

    /// Removes a workspace made by `makeWorkspace` with descriptor-relative calls only (no link is
    /// ever followed). Call it once no command of it runs.
    @discardableResult
    public static func removeWorkspace(_ url: URL) -> Bool {
        Workspace.owning(home: url)?.remove() ?? false
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

    /// Starts an empty jail with the full set of options once: the only sure test that they work here.
    static func probe(_ t: JailTools) -> String? {
        guard let bwrap = t.bwrap else { return "bubblewrap (bwrap) is not installed." }
        let layout = JailLayout(home: .tmpfs(bytes: 1 << 20), network: .none, tmpBytes: 1 << 20, shmBytes: 1 << 20)
        let bpf: [UInt8]
        do { bpf = try SeccompFilter.bpf() } catch { return "\(error)" }
        var args = LocalJail.bubblewrapArguments(layout, descriptors: JailDescriptors(seccomp: 3))
        args += ["--", "/usr/bin/true"]
        var spec = ProcessSpec(executable: bwrap, arguments: args, environment: ["PATH": "/usr/bin:/bin"],
                               timeout: .seconds(10), outputLimit: 4096)
        var setup = JailSetup(limits: nil, uid: geteuid() == 0 ? 65534 : nil)
        setup.blobs = [bpf]
        spec.jail = setup
        guard let outcome = try? ProcessRunner.runBlocking(spec, killer: ProcessKiller()) else { return "bubblewrap could not be started." }
        if outcome.exitCode == 0 { return nil }
        let why = outcome.stderr.text.trimmingCharacters(in: .whitespacesAndNewlines)
        return "bubblewrap cannot create namespaces here (\(why.isEmpty ? "exit \(outcome.exitCode)" : why))."
    }
}
