import Foundation

/// One file a run handed back from `out/`, as the host received and checked it.
public struct Artifact: Sendable, Equatable, Codable {
    /// The path relative to `out/` ("report.csv", "charts/a.png").
    public var name: String
    public var bytes: Int
    /// sha256 of the bytes, computed by the host as they arrived (hex).
    public var sha256: String
    public var mediaType: String
    /// Where the CLI wrote it (absolute host path); set by the CLI only.
    public var path: String?
    /// Where the HTTP API serves it (`/v1/runs/{id}/artifacts/{name}`); set by `serve` only.
    public var url: String?
    /// Its MCP resource URI (`sandbox-runner://runs/{id}/artifacts/{name}`); set by the MCP servers only.
    public var uri: String?

    public init(name: String, bytes: Int, sha256: String, mediaType: String) {
        self.name = name
        self.bytes = bytes
        self.sha256 = sha256
        self.mediaType = mediaType
    }

    /// The media type of a name, by its extension (what `Content-Type` and MCP's `mimeType` say).
    public static func mediaType(of name: String) -> String {
        let lower = name.lowercased()
        let ext = lower.split(separator: ".").last.map(String.init) ?? ""
        guard lower.contains(".") else { return "application/octet-stream" }
        switch ext {
        case "json": return "application/json"
        case "jsonl", "ndjson": return "application/x-ndjson"
        case "csv": return "text/csv"
        case "tsv": return "text/tab-separated-values"
        case "txt", "log": return "text/plain"
        case "md": return "text/markdown"
        case "html", "htm": return "text/html"
        case "xml": return "application/xml"
        case "gz": return "application/gzip"
        case "zip": return "application/zip"
        case "parquet": return "application/vnd.apache.parquet"
        case "png": return "image/png"
        case "jpg", "jpeg": return "image/jpeg"
        case "gif": return "image/gif"
        case "svg": return "image/svg+xml"
        case "pdf": return "application/pdf"
        default: return "application/octet-stream"
        }
    }

    /// Text types an MCP client can be handed inline (`text` rather than a base64 `blob`).
    public var isText: Bool {
        mediaType.hasPrefix("text/") || ["application/json", "application/x-ndjson", "application/xml"].contains(mediaType)
    }

    /// The name with `/` kept and everything else outside `[A-Za-z0-9._~-]` percent-encoded: a URL path tail.
    public var urlEncodedName: String {
        name.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn:
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/")) ?? name
    }
}

/// Bounds on what one run may hand back (flags `--max-artifacts`, `--max-artifact-bytes`).
public struct ArtifactLimits: Sendable, Equatable {
    /// Files at most.
    public var maxCount = 100
    /// Bytes of all files together at most.
    public var maxTotalBytes = 256 << 20
    /// Directory levels under `out/` at most.
    public var maxDepth = 8
    /// Bytes of one name (a path relative to `out/`) at most, and of one of its components.
    public var maxNameBytes = 1024
    public var maxComponentBytes = 255

    public init() {}
}

/// Where a run's `out/` files go on the host, and how much of them it may hand back. The
/// directory is made (or opened) only when the first file arrives: a run that leaves nothing in
/// `out/` creates nothing.
public final class ArtifactOutput: @unchecked Sendable {
    public let limits: ArtifactLimits
    private let make: @Sendable () throws -> ArtifactDirectory
    private let lock = NSLock()
    private var opened: ArtifactDirectory?

    public init(limits: ArtifactLimits = ArtifactLimits(), directory make: @escaping @Sendable () throws -> ArtifactDirectory) {
        self.limits = limits
        self.make = make
    }

    /// An output into a directory already open.
    public convenience init(directory: ArtifactDirectory, limits: ArtifactLimits = ArtifactLimits()) {
        self.init(limits: limits) { directory }
    }

    /// The directory, made on first use.
    public func directory() throws -> ArtifactDirectory {
        lock.lock(); defer { lock.unlock() }
        if let opened { return opened }
        let d = try make()
        opened = d
        return d
    }

    /// The directory if a file made it exist.
    public var openedDirectory: ArtifactDirectory? { lock.lock(); defer { lock.unlock() }; return opened }
}
