import Foundation

/// Gathers a bundle's files: the in-sandbox driver and entry point from `sandbox/`, the rendered
/// script, and `run.json` (template and variable values; never a secret). The run id travels as
/// `SANDBOX_RUNNER_RUN_ID` instead, so the same template and variables give the same bytes and
/// a sandbox that already holds a bundle need not receive it again.
public struct BundleAssembler: Sendable {
    public var sandboxDirectory: URL
    private let driverFiles: [String: [UInt8]]
    /// SHA-256 of each driver file, hashed once here rather than at every run.
    private let driverDigests: [String: [UInt8]]

    public init(sandboxDirectory: URL) throws {
        self.sandboxDirectory = sandboxDirectory
        var files: [String: [UInt8]] = [:]
        let fm = FileManager.default
        let runPy = sandboxDirectory.appendingPathComponent("run.py")
        guard let run = fm.contents(atPath: runPy.path) else {
            throw RunnerError(.unavailable, "The sandbox entry point \(runPy.path) is missing.")
        }
        files["run.py"] = Array(run)
        let driver = sandboxDirectory.appendingPathComponent("posthog_driver")
        if let e = fm.enumerator(atPath: driver.path) {
            while let rel = e.nextObject() as? String {
                guard rel.hasSuffix(".py"), !rel.contains("__pycache__") else { continue }
                if let data = fm.contents(atPath: driver.appendingPathComponent(rel).path) {
                    files["posthog_driver/" + rel] = Array(data)
                }
            }
        }
        driverFiles = files
        driverDigests = files.mapValues { SHA256.digest($0) }
    }

    /// `extraFiles`: more inputs for the run (an extraction's state), beside the script; they may
    /// not replace the driver, the script or `run.json`.
    public func bundle(templateName: String?, script: String, variables: [String: JSONValue],
                       extraFiles: [String: [UInt8]] = [:]) throws -> RunBundle {
        var files = driverFiles
        for (path, bytes) in extraFiles {
            guard files[path] == nil, !["template.py", "run.json", "run.py"].contains(path), !path.hasPrefix("posthog_driver/") else {
                throw RunnerError(.internalError, "A bundle input may not replace \(path).")
            }
            files[path] = bytes
        }
        files["template.py"] = Array(script.utf8)
        let runJSON: JSONValue = .object([
            "template": templateName.map(JSONValue.string) ?? .null,
            "variables": .object(variables),
        ])
        files["run.json"] = Array(runJSON.jsonText(pretty: true).utf8)
        return try BundleBuilder.build(files: files, knownDigests: driverDigests)
    }
}
