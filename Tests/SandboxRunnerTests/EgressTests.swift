import Foundation
import Testing
@testable import SandboxRunner

/// The `posthog` network policy's pieces that need no jail: the settings checked before any
/// sandbox starts, the allowlist the driver's URLs become, the address classes the proxy refuses.
@Suite("Egress policy", .timeLimit(.minutes(2)))
struct EgressTests {
    /// A backend that only counts: the point is that it is never reached.
    final class CountingBackend: SandboxBackend, @unchecked Sendable {
        var name: String { "counting" }
        private let lock = NSLock()
        private var count = 0
        var runs: Int { lock.withLock { count } }
        func run(_ job: SandboxJob, killer: ProcessKiller) async throws -> SandboxOutcome {
            lock.withLock { count += 1 }
            throw RunnerError(.unavailable, "not a sandbox")
        }
    }

    static let complete = ["POSTHOG_API_URL": "https://eu.posthog.com", "POSTHOG_PERSONAL_API_KEY": "phx_settings_test_key_123456",
                           "POSTHOG_PROJECT_ID": "42"]

    /// Issue 10: a template that needs PostHog with no personal key, no project id or an
    /// unparsable URL is refused at once (exit 64, naming the setting) instead of starting a
    /// jail that fails 200 ms later. Before, each of these started a sandbox.
    @Test(arguments: [
        ("POSTHOG_PERSONAL_API_KEY", nil as String?),
        ("POSTHOG_PROJECT_ID", nil),
        ("POSTHOG_PROJECT_ID", "phx_pasted_in_the_wrong_place"),
        ("POSTHOG_API_URL", "ftp://posthog.example"),
        ("POSTHOG_API_URL", "https://posthog.example:99999"),
        ("POSTHOG_API_URL", "https://user:pw@posthog.example"),
        ("POSTHOG_INGEST_URL", "https://posthog example"),
        ("SANDBOX_RUNNER_EGRESS_ALLOW", "https://extra.example/with/a/path"),
    ])
    func badSettingsAreRefusedBeforeAnySandboxStarts(setting: String, value: String?) async throws {
        var env = Self.complete
        env[setting] = value
        let backend = CountingBackend()
        let executor = Executor(catalog: Repo.catalog(), assembler: try BundleAssembler(sandboxDirectory: Repo.locator.sandboxDirectory),
                                backend: backend, environment: env)
        let r = await executor.run(RunRequest(source: .template(name: "top_events", inputs: [:])))
        #expect(backend.runs == 0, "a sandbox was started with \(setting) unusable")
        #expect(r.errorKind == .badInput && r.exitStatus == 64)
        #expect(r.error?.contains(setting) == true, "\(r.error ?? "")")
        #expect(r.error?.contains("phx_pasted") != true, "the error echoed the value")
        // The same settings complete: the run reaches the backend.
        let ok = Executor(catalog: Repo.catalog(), assembler: try BundleAssembler(sandboxDirectory: Repo.locator.sandboxDirectory),
                          backend: backend, environment: Self.complete)
        _ = await ok.run(RunRequest(source: .template(name: "top_events", inputs: [:])))
        #expect(backend.runs == 1)
    }

    @Test func thePersonalKeyStaysOutOfThePosthogSandboxOnly() throws {
        let executor = Executor(catalog: Repo.catalog(), assembler: try BundleAssembler(sandboxDirectory: Repo.locator.sandboxDirectory),
                                backend: CountingBackend(), environment: Self.complete.merging(["POSTHOG_HOST": "us"]) { a, _ in a })
        let rules = try #require(try executor.checkPostHogSettings(network: .posthog, template: nil))
        let posthog = executor.sandboxEnvironment(runId: "r", network: .posthog, egress: rules)
        #expect(posthog["POSTHOG_PERSONAL_API_KEY"] == nil && posthog["POSTHOG_HOST"] == nil)
        #expect(posthog["POSTHOG_AUTH"] == "egress")
        #expect(posthog["POSTHOG_API_URL"] == "https://eu.posthog.com" && posthog["POSTHOG_INGEST_URL"] == "https://eu.i.posthog.com")
        #expect(!posthog.values.contains { $0.contains("phx_settings_test_key") })
        let host = executor.sandboxEnvironment(runId: "r", network: .host, egress: nil)
        #expect(host["POSTHOG_PERSONAL_API_KEY"] == Self.complete["POSTHOG_PERSONAL_API_KEY"])
    }

    /// The hosts the proxy allows must be the hosts the driver calls: the driver, given the
    /// runner's normalized URLs, keeps them as they are, and derives the same from the raw ones.
    @Test func theAllowlistIsWhatTheDriverCalls() throws {
        let cases: [[String: String]] = [
            [:], ["POSTHOG_API_URL": "us"], ["POSTHOG_API_URL": "EU"], ["POSTHOG_API_URL": "https://us.i.posthog.com/"],
            ["POSTHOG_HOST": "app.posthog.com"], ["POSTHOG_API_URL": "http://127.0.0.1:8010"],
            ["POSTHOG_API_URL": "https://ph.example.com/prefix/", "POSTHOG_INGEST_URL": "ingest.example.com:8443"],
            ["POSTHOG_API_URL": "http://[::1]:9000"], ["POSTHOG_API_URL": "eu.posthog.com", "POSTHOG_INGEST_URL": "eu.posthog.com"],
        ]
        for env in cases {
            let e = try PostHogEndpoints.from(environment: env)
            for input in [env, ["POSTHOG_API_URL": e.apiURL, "POSTHOG_INGEST_URL": e.ingestURL]] {
                let driver = try Self.driverURLs(input)
                #expect(driver.api == e.apiURL && driver.ingest == e.ingestURL, "\(input): driver \(driver), runner \(e.apiURL) \(e.ingestURL)")
            }
        }
    }

    /// What `sandbox/posthog_driver/config.py` makes of these settings.
    static func driverURLs(_ env: [String: String]) throws -> (api: String, ingest: String) {
        let code = "import json, os, sys; sys.path.insert(0, os.environ['SANDBOX']); from posthog_driver.config import Settings; "
            + "s = Settings.resolve(env=json.loads(os.environ['ENV'])); print(s.api_url); print(s.ingest_url)"
        let env = ["SANDBOX": Repo.locator.sandboxDirectory.path, "ENV": JSONValue.object(env.mapValues(JSONValue.string)).jsonText()]
        let out = try ProcessRunner.runBlocking(ProcessSpec(executable: "/usr/bin/python3", arguments: ["-c", code], environment: env,
                                                            timeout: .seconds(20), outputLimit: 4096), killer: ProcessKiller())
        let lines = out.stdout.text.split(separator: "\n").map(String.init)
        try #require(out.exitCode == 0 && lines.count == 2, "\(out.stderr.text)")
        return (lines[0], lines[1])
    }

    @Test(arguments: [
        ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"),
        ("172.31.255.255", "private"), ("192.168.1.1", "private"), ("169.254.169.254", "link-local"),
        ("100.64.0.1", "shared (carrier-grade NAT)"), ("0.0.0.0", "this-network"), ("224.0.0.1", "multicast"),
        ("255.255.255.255", "reserved"), ("::1", "loopback"), ("::", "unspecified"), ("fe80::1", "link-local"),
        ("fd00::5", "private (unique local)"), ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a9fe:a9fe", "link-local"), ("2002:0a00:0001::", "private"), ("ff02::1", "multicast"),
    ])
    func internalAddressesAreRecognisedInEveryDisguise(address: String, kind: String) throws {
        let a = try #require(EgressAddress(address))
        #expect(a.internalKind == kind)
    }

    @Test(arguments: ["1.1.1.1", "172.32.0.1", "100.128.0.1", "192.169.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
    func publicAddressesPass(address: String) throws {
        #expect(try #require(EgressAddress(address)).internalKind == nil)
    }

    @Test func aRefusalNamesTheAllowedHostsAndNeverTheKey() throws {
        let rules = try PostHogEgressRules.from(environment: Self.complete.merging(["SANDBOX_RUNNER_EGRESS_ALLOW": "extra.example:8443"]) { a, _ in a })
        #expect(rules.summary == "https://eu.posthog.com:443, https://eu.i.posthog.com:443, https://extra.example:8443")
        guard case .refuse(let why) = rules.decide(EgressTarget(scheme: "https", host: "evil.example", port: 443)) else {
            Issue.record("an unlisted host was allowed")
            return
        }
        #expect(why.contains("eu.posthog.com") && !why.contains("phx_"))
        // The API host on another port or scheme is another destination.
        for t in [EgressTarget(scheme: "https", host: "eu.posthog.com", port: 8443), EgressTarget(scheme: "http", host: "eu.posthog.com", port: 443)] {
            guard case .refuse = rules.decide(t) else { Issue.record("\(t) was allowed"); return }
        }
    }

    /// E2B's create body under `posthog` (OpenAPI `SandboxNetworkConfig`): the PostHog hosts in
    /// allowOut, all else denied, the key only in the API host's rule and never in `envVars`.
    @Test func theE2BCreateBodyKeepsTheKeyInTheRulesAndTheSandboxInTheAllowlist() throws {
        let rules = try PostHogEgressRules.from(environment: Self.complete)
        var spec = E2BSandboxSpec(templateID: "base", lifetime: .seconds(60))
        spec.network = .posthog
        spec.egress = try E2BEgressPlan(rules, sandboxesAreLocal: false)
        spec.envVars = ["POSTHOG_AUTH": "egress"]
        let body = spec.body
        #expect(body["network"]?["allowOut"] == .array(["eu.posthog.com", "eu.i.posthog.com"]))
        #expect(body["network"]?["denyOut"] == .array(["0.0.0.0/0"]))
        #expect(body["network"]?["rules"] == .object(["eu.posthog.com": .array([.object(["transform": .object(["headers": .object([
            "Authorization": .string("Bearer phx_settings_test_key_123456")])])])])]))
        #expect(body["envVars"]?.jsonText().contains("phx_") == false)
        #expect(body["allow_internet_access"] == .bool(true))
        // --demo against e2b-local: the loopback address becomes a name E2B's rules can key on.
        let demo = try PostHogEgressRules.from(environment: Self.complete.merging(["POSTHOG_API_URL": "http://127.0.0.1:8010"]) { _, b in b })
        let plan = try E2BEgressPlan(demo, sandboxesAreLocal: true)
        #expect(plan.environment["POSTHOG_API_URL"] == "http://localhost:8010")
        #expect(plan.network["allowOut"] == .array(["localhost"]) && plan.network["rules"]?["localhost"] != nil)
        // What E2B cannot enforce is refused before anything is created.
        #expect(throws: RunnerError.self) { try E2BEgressPlan(demo, sandboxesAreLocal: false) }
        let ip = try PostHogEgressRules.from(environment: Self.complete.merging(["POSTHOG_API_URL": "https://10.0.0.5"]) { _, b in b })
        #expect(throws: RunnerError.self) { try E2BEgressPlan(ip, sandboxesAreLocal: false) }
        // A warm sandbox is reused only by a run that would have created it alike.
        var host = spec
        host.network = .host
        #expect(host.networkKey != spec.networkKey)
    }
}
