import Foundation

/// Finds the files sandbox-runner ships beside its binary: `Templates/`, `sandbox/` and
/// `tools/posthog-local/`. Order: `SANDBOX_RUNNER_HOME`, then the directories above the real
/// executable (a source checkout), then `<prefix>/share/sandbox-runner`.
public struct ResourceLocator: Sendable {
    public var home: URL

    public var templatesDirectory: URL { home.appendingPathComponent("Templates") }
    public var sandboxDirectory: URL { home.appendingPathComponent("sandbox") }
    public var posthogLocalDirectory: URL { home.appendingPathComponent("tools/posthog-local") }

    public init(home: URL) { self.home = home }

    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ResourceLocator {
        if let h = environment["SANDBOX_RUNNER_HOME"], !h.isEmpty {
            let url = URL(fileURLWithPath: h)
            guard isHome(url) else {
                throw RunnerError(.badInput, "SANDBOX_RUNNER_HOME=\(h) does not hold Templates/ and sandbox/.")
            }
            return ResourceLocator(home: url)
        }
        var candidates: [URL] = []
        let exe = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        for _ in 0..<6 {
            candidates.append(dir)
            candidates.append(dir.appendingPathComponent("share/sandbox-runner"))
            dir = dir.deletingLastPathComponent()
        }
        candidates += ["/usr/local/share/sandbox-runner", "/usr/share/sandbox-runner"].map { URL(fileURLWithPath: $0) }
        if let found = candidates.first(where: isHome) { return ResourceLocator(home: found) }
        throw RunnerError(.unavailable, "Cannot find sandbox-runner's Templates/ and sandbox/ directories. "
            + "Set SANDBOX_RUNNER_HOME to the directory that holds them (a checkout, or <prefix>/share/sandbox-runner).")
    }

    static func isHome(_ url: URL) -> Bool {
        var isDir: ObjCBool = false
        let fm = FileManager.default
        return fm.fileExists(atPath: url.appendingPathComponent("Templates").path, isDirectory: &isDir) && isDir.boolValue
            && fm.fileExists(atPath: url.appendingPathComponent("sandbox/run.py").path)
    }
}
