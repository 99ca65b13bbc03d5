import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Finds templates: the built-in ones plus directories of the operator's own.
/// A template is a directory holding `manifest.json` and `template.py`.
public struct TemplateCatalog: Sendable {
    public private(set) var templates: [String: Template] = [:]
    /// Problems found while loading (bad manifests); reported by `doctor` and `list`.
    public private(set) var problems: [String] = []
    /// Why a template directory of that name could not be loaded: asked for by name, it is refused with this.
    private var failures: [String: RunnerError] = [:]

    public init(builtIn: URL?, custom: [URL] = []) {
        if let builtIn { load(directory: builtIn, isCustom: false) }
        for dir in custom { load(directory: dir, isCustom: true) }
    }

    public var names: [String] { templates.keys.sorted() }

    public func template(named name: String) throws -> Template {
        if let t = templates[name] { return t }
        if let failure = failures[name] { throw failure }
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
            // Any entry named manifest.json makes it a template directory, a link too: it is then refused by name.
            var st = stat()
            guard lstat(dir.appendingPathComponent("manifest.json").path, &st) == 0 else { continue }
            do {
                let template = try Self.loadTemplate(at: dir, isCustom: isCustom)
                templates[template.name] = template
                failures[template.name] = nil
            } catch {
                problems.append("\(dir.lastPathComponent): \(error)")
                if templates[dir.lastPathComponent] == nil {
                    let why = (error as? RunnerError)?.message ?? "\(error)"
                    failures[dir.lastPathComponent] = RunnerError(.badInput, "Template '\(dir.lastPathComponent)' cannot be used: \(why)")
                }
            }
        }
    }

    /// Largest manifest.json and template.py read.
    static let maximumFileBytes = 1 << 20

    /// Reads and checks one template directory. `manifest.json` and `template.py` must be regular
    /// files in it: they are opened relative to the directory without following a link (the
    /// runner reads them, often as root, outside any jail).
    public static func loadTemplate(at dir: URL, isCustom: Bool) throws -> Template {
        let dirFD = open(dir.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirFD >= 0 else {
            throw RunnerError(.badInput, "The template directory \(dir.lastPathComponent) cannot be opened (errno \(errno)).")
        }
        defer { close(dirFD) }
        let data = try readRegularFile("manifest.json", in: dirFD, template: dir.lastPathComponent)
        let manifest: TemplateManifest
        do {
            manifest = try JSONDecoder().decode(TemplateManifest.self, from: data)
        } catch {
            throw RunnerError(.badInput, "manifest.json is not a valid manifest (\(Self.describe(error))).")
        }
        guard manifest.name == dir.lastPathComponent else {
            throw RunnerError(.badInput, "manifest name '\(manifest.name)' differs from its directory name.")
        }
        guard let script = String(data: try readRegularFile("template.py", in: dirFD, template: dir.lastPathComponent), encoding: .utf8) else {
            throw RunnerError(.badInput, "template.py of \(dir.lastPathComponent) is not UTF-8 text.")
        }
        try TemplateRenderer.checkTemplate(manifest: manifest, script: script)
        try manifest.view?.validate(against: manifest.output)
        return Template(manifest: manifest, script: script, directory: dir, isCustom: isCustom)
    }

    /// The contents of `name` inside the directory `dirFD`, refused unless it is a regular file there.
    static func readRegularFile(_ name: String, in dirFD: Int32, template: String) throws -> Data {
        // O_NONBLOCK: a FIFO must not hang the open; O_NOFOLLOW: a link is refused, not read.
        let fd = openat(dirFD, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            if e == ELOOP {
                throw RunnerError(.badInput, "\(name) of template \(template) is a symbolic link; it must be a regular file inside the template directory.")
            }
            throw RunnerError(.badInput, "\(name) of template \(template) cannot be opened (\(String(cString: strerror(e)))).")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw RunnerError(.badInput, "\(name) of template \(template) is not a regular file; it must be one, inside the template directory.")
        }
        guard Int(st.st_size) <= maximumFileBytes else {
            throw RunnerError(.badInput, "\(name) of template \(template) is larger than \(maximumFileBytes >> 20) MiB.")
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var got = 0
        while got < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, $0.count - got) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            got += n
        }
        return Data(bytes[0..<got])
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
