import ArgumentParser
import Dispatch
import Foundation
import SandboxRunner

/// The `posthog` policy's egress proxy on its own, for the driver's tests and the benchmark: the
/// same proxy a run gets, with the allowlist and key from the environment (POSTHOG_*,
/// SANDBOX_RUNNER_EGRESS_*). Prints where its socket is; on SIGTERM, SIGINT or the end of stdin
/// it stops and prints its log as JSON.
struct EgressProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "egress-proxy",
        abstract: "Serve the posthog policy's egress proxy on a Unix socket until stopped (for tests and benchmarks).",
        shouldDisplay: false
    )

    func run() async throws {
        let context = try Context.load()
        let proxy: EgressProxy
        do {
            let rules = try PostHogEgressRules.from(environment: context.environment)
            proxy = try EgressProxy.start(rules: rules, limits: try EgressLimits.from(environment: context.environment))
        } catch let e as RunnerError {
            fail(e)
        }
        FileHandle.standardOutput.write(Data("egress-proxy listening on \(proxy.socketPath)\n".utf8))
        let done = DispatchSemaphore(value: 0)
        let sources = [SIGINT, SIGTERM].map { sig -> DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler { done.signal() }
            src.resume()
            return src
        }
        let stdin = Thread {
            _ = FileHandle.standardInput.readDataToEndOfFile()
            done.signal()
        }
        stdin.start()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async { done.wait(); c.resume() }
        }
        sources.forEach { $0.cancel() }
        printJSON(["egress": proxy.stop()], pretty: false)
        finish(0)
    }
}
