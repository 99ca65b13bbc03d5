import Foundation

/// Finds templates: the built-in ones plus directories of the operator's own.
/// A template is a directory holding `manifest.json` and `template.py`.
public struct TemplateCatalog: Sendable {
    public private(set) var templates: [String: Template] = [:]
    /// Problems found while loading (bad manifests); reported by `doctor` and `list`.
    public private(set) var problems: [String] = []

    public init(builtIn: URL?, custom: [URL] = []) {
        if let builtIn { load(directory: builtIn, isCustom: false) }
        for dir in custom { load(directory: dir, isCustom: true) }
    }

    public var names: [String] { templates.keys.sorted() }

    public func template(named name: String) throws -> Template {
        if let t = templates[name] { return t }
        let close = names.filter { $0.contains(name) || name.contains($0) }
        var message = "Unknown template '\(name)'."
        if !close.isEmpty { message += " Did you mean \(close.joined(separator: ", "))?" }
        message += " Run `sandbox-runner list` to see the templates."
        throw RunnerError(.badInput, message)
    }

    private mutating func load(directory: URL, isCustom: Bool) {
        let fm = FileManager.default
        // Symlinked template directories are common (dotfiles, shared checkouts): follow them.
        let directory = directory.resolvingSymlinksInPath()
        guard let entries = try? fm.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil) else {
            if isCustom { problems.append("Template directory \(directory.path) cannot be read.") }
            return
        }
        for dir in entries.sorted(by: { $0.lastPathComponent < $1.lastPathComponent }) {
            let manifestURL = dir.appendingPathComponent("manifest.json")
            guard fm.fileExists(atPath: manifestURL.path) else { continue }
            do {
                let template = try Self.loadTemplate(at: dir, isCustom: isCustom)
                templates[template.name] = template
            } catch {
                problems.append("\(dir.lastPathComponent): \(error)")
            }
        }
    }

    /// Reads and checks one template directory.
    public static func loadTemplate(at dir: URL, isCustom: Bool) throws -> Template {
        let data = try Data(contentsOf: dir.appendingPathComponent("manifest.json"))
        let manifest: TemplateManifest
        do {
            manifest = try JSONDecoder().decode(TemplateManifest.self, from: data)
        } catch {
            throw RunnerError(.badInput, "manifest.json is not a valid manifest (\(Self.describe(error))).")
        }
        guard manifest.name == dir.lastPathComponent else {
            throw RunnerError(.badInput, "manifest name '\(manifest.name)' differs from its directory name.")
        }
        let script = try String(contentsOf: dir.appendingPathComponent("template.py"), encoding: .utf8)
        try TemplateRenderer.checkTemplate(manifest: manifest, script: script)
        return Template(manifest: manifest, script: script, directory: dir, isCustom: isCustom)
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let ctx):
            return "missing '\(key.stringValue)' at \(ctx.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.typeMismatch(_, let ctx), DecodingError.valueNotFound(_, let ctx):
            return "wrong type at \(ctx.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.dataCorrupted(let ctx):
            let path = ctx.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? "not JSON" : "bad value at \(path)"
        default:
            return "\(error)"
        }
    }
}
