import Foundation

/// Whether a sandbox may reach the network.
public enum NetworkPolicy: String, Sendable, Codable, CaseIterable {
    /// Its own empty network namespace: no network at all.
    case none
    /// Its own empty network namespace, and an egress proxy on the host side reached through a
    /// Unix socket bound into the jail: only the PostHog hosts, with the personal API key added
    /// by the proxy (it never enters the sandbox). On E2B: `network.allowOut` = the PostHog
    /// hosts, everything else denied, the key injected by E2B's egress rules.
    case posthog
    /// The host's network, and the personal API key in the sandbox's environment: only by an
    /// explicit operator flag.
    case host
}

/// Everything a backend needs to run one bundle.
public struct SandboxJob: Sendable {
    public var runId: String
    public var bundle: RunBundle
    /// Variables given to `python3 run.py` at process start (configuration and secrets).
    public var environment: [String: String]
    public var timeout: Duration
    public var network: NetworkPolicy
    /// Under `posthog`: the allowlist and the key the egress (our proxy, E2B's rules) applies.
    public var egress: PostHogEgressRules?
    /// Bytes kept of stdout and of stderr each.
    public var outputLimit: Int
    /// Called with each chunk of output as it arrives (1 = stdout, 2 = stderr), where the backend streams.
    public var onOutput: (@Sendable (Int32, UnsafeRawBufferPointer) -> Void)?
    /// Where the files the script leaves under `out/` go (nil: they are not collected). The backend
    /// feeds it `run.py`'s artifact stream and reports what came of it in `SandboxOutcome.artifacts`.
    public var artifacts: ArtifactReceiver?

    public init(runId: String, bundle: RunBundle, environment: [String: String], timeout: Duration, network: NetworkPolicy, outputLimit: Int) {
        self.runId = runId
        self.bundle = bundle
        self.environment = environment
        self.timeout = timeout
        self.network = network
        self.outputLimit = outputLimit
    }
}

/// What a backend reports besides the process outcome.
public struct SandboxOutcome: Sendable {
    public var process: ProcessOutcome
    /// A short description of the isolation actually used ("bubblewrap", "weak").
    public var isolation: String
    public var network: NetworkPolicy
    /// What the egress proxy saw (the `posthog` policy on the local jail), or nil.
    public var egress: [EgressEntry]? = nil
    /// The collection of `out/`, when the job asked for it.
    public var artifacts: ArtifactCollection?
}

/// A place to run bundles: the local jail, E2B.
public protocol SandboxBackend: Sendable {
    var name: String { get }
    func run(_ job: SandboxJob, killer: ProcessKiller) async throws -> SandboxOutcome
}
