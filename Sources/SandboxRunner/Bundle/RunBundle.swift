import CArchive
import Foundation

/// What is shipped to a sandbox: `run.py`, `posthog_driver/…`, `template.py`, `run.json`.
/// Deterministic: the same inputs give the same entries, the same archive bytes and the same sha256.
///
/// The local jail takes the entries as they are (bubblewrap puts them into the jail's tmpfs from
/// memory); the gzip'd tar is made only when asked for (`archive()`: E2B uploads it, weak mode
/// unpacks it), once per bundle. `sha256` identifies the contents, not the archive bytes: it is
/// the SHA-256 of the entries in archive order (see `contentDigest`), so a local run never gzips.
public struct RunBundle: Sendable {
    public struct Entry: Sendable, Equatable {
        /// Relative path, without a trailing slash.
        public var path: String
        public var isDirectory: Bool
        public var bytes: [UInt8]
    }

    /// Every directory and file, in archive order.
    public let contents: [Entry]
    public let sha256: String
    private let cache = ArchiveCache()

    /// Entry paths in archive order (directories with a trailing slash).
    public var entries: [String] { contents.map { $0.isDirectory ? $0.path + "/" : $0.path } }

    init(contents: [Entry], knownDigests: [String: [UInt8]] = [:]) {
        self.contents = contents
        self.sha256 = Self.contentDigest(contents, knownDigests: knownDigests)
    }

    /// The bundle as a gzip'd tar (libarchive): sorted entries, fixed mtime/owner/mode, gzip
    /// without a timestamp. Made on first use and kept.
    public func archive() throws -> [UInt8] {
        try cache.get { try BundleBuilder.archive(contents) }
    }

    /// SHA-256 of a canonical encoding of the entries: a version line, then per entry its path,
    /// NUL, `d` (directory) or `f<size>` (file), NUL, and for a file the SHA-256 of its bytes.
    /// Names cannot hold NUL and every field has a fixed or marked end, so two different bundles
    /// never encode alike. `knownDigests` (path → SHA-256 of those bytes) spares hashing files
    /// that do not change between runs (the driver: BundleAssembler hashes it once).
    static func contentDigest(_ contents: [Entry], knownDigests: [String: [UInt8]] = [:]) -> String {
        var h = SHA256()
        h.update(Array("sandbox-runner bundle 1\n".utf8))
        for e in contents {
            h.update(Array(e.path.utf8) + [0])
            h.update(Array((e.isDirectory ? "d" : "f\(e.bytes.count)").utf8) + [0])
            if !e.isDirectory { h.update(knownDigests[e.path] ?? SHA256.digest(e.bytes)) }
        }
        return h.finalizeHex()
    }
}

/// The archive of one bundle, made at most once (a bundle is shared between threads).
private final class ArchiveCache: @unchecked Sendable {
    private let lock = NSLock()
    private var bytes: [UInt8]?

    func get(_ make: () throws -> [UInt8]) throws -> [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        if let bytes { return bytes }
        let made = try make()
        bytes = made
        return made
    }
}

/// Builds bundles: the entries of a file map, and their archive with libarchive.
public enum BundleBuilder {
    /// 2000-01-01T00:00:00Z: a fixed mtime for every entry.
    static let fixedMTime = 946_684_800

    /// Files of the bundle as path → contents; the directories they need are added.
    /// `knownDigests`: SHA-256 of some of those files' bytes, already known (see `RunBundle.contentDigest`).
    public static func build(files: [String: [UInt8]], knownDigests: [String: [UInt8]] = [:]) throws -> RunBundle {
        var dirs = Set<String>()
        for path in files.keys {
            var parts = path.split(separator: "/").dropLast()
            while !parts.isEmpty { dirs.insert(parts.joined(separator: "/")); parts = parts.dropLast() }
        }
        // Archive order: sorted by the archive's names (directories end in a slash).
        let all = (dirs.map { ($0 + "/", true) } + files.keys.map { ($0, false) }).sorted { $0.0 < $1.0 }
        let contents = all.map { name, isDir in
            isDir ? RunBundle.Entry(path: String(name.dropLast()), isDirectory: true, bytes: [])
                : RunBundle.Entry(path: name, isDirectory: false, bytes: files[name]!)
        }
        return RunBundle(contents: contents, knownDigests: knownDigests)
    }

    /// The gzip'd tar of the entries.
    static func archive(_ contents: [RunBundle.Entry]) throws -> [UInt8] {
        try LazyLibrary.require(.archive)
        guard let a = archive_write_new() else { throw RunnerError(.internalError, "libarchive could not allocate a writer.") }
        defer { archive_write_free(a) }
        let sink = ByteSink()
        try check(archive_write_set_format_pax_restricted(a), a, "set the tar format")
        try check(archive_write_add_filter_gzip(a), a, "add gzip")
        try check(archive_write_set_filter_option(a, "gzip", "timestamp", nil), a, "drop the gzip timestamp")
        try check(archive_write_set_bytes_in_last_block(a, 1), a, "set block padding")
        let opaque = Unmanaged.passUnretained(sink).toOpaque()
        try check(archive_write_open2(a, opaque, nil, { _, ctx, buf, len in
            guard let ctx, let buf else { return -1 }
            let sink = Unmanaged<ByteSink>.fromOpaque(ctx).takeUnretainedValue()
            sink.bytes.append(contentsOf: UnsafeRawBufferPointer(start: buf, count: len))
            return la_ssize_t(len)
        }, nil, nil), a, "open the archive")

        for item in contents {
            let path = item.isDirectory ? item.path + "/" : item.path
            guard let entry = archive_entry_new() else { throw RunnerError(.internalError, "libarchive could not allocate an entry.") }
            defer { archive_entry_free(entry) }
            archive_entry_set_pathname(entry, path)
            archive_entry_set_mtime(entry, time_t(fixedMTime), 0)
            archive_entry_set_uid(entry, 0)
            archive_entry_set_gid(entry, 0)
            if item.isDirectory {
                archive_entry_set_filetype(entry, 0o040000)
                archive_entry_set_perm(entry, 0o755)
                archive_entry_set_size(entry, 0)
                try check(archive_write_header(a, entry), a, "write \(path)")
            } else {
                let data = item.bytes
                archive_entry_set_filetype(entry, 0o100000)
                archive_entry_set_perm(entry, 0o644)
                archive_entry_set_size(entry, la_int64_t(data.count))
                try check(archive_write_header(a, entry), a, "write \(path)")
                let written = data.withUnsafeBytes { archive_write_data(a, $0.baseAddress, $0.count) }
                guard written == data.count else { throw RunnerError(.internalError, "libarchive could not write \(path).") }
            }
        }
        try check(archive_write_close(a), a, "finish the archive")
        return sink.bytes
    }

    /// Extracts a bundle into `directory`, refusing absolute paths, `..` and symlinks that escape.
    public static func extract(_ bundle: RunBundle, into directory: URL) throws {
        let bytes = try bundle.archive()
        guard let r = archive_read_new(), let w = archive_write_disk_new() else {
            throw RunnerError(.internalError, "libarchive could not allocate a reader.")
        }
        defer { archive_read_free(r); archive_write_free(w) }
        archive_read_support_format_tar(r)
        archive_read_support_filter_gzip(r)
        // Entry names are checked below (relative, no `..`) before being placed under `directory`.
        let flags = ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_PERM
        archive_write_disk_set_options(w, flags)
        try bytes.withUnsafeBytes { raw in
            try check(archive_read_open_memory(r, raw.baseAddress, raw.count), r, "read the bundle")
            var entry: OpaquePointer?
            while true {
                let rc = archive_read_next_header(r, &entry)
                if rc == ARCHIVE_EOF { break }
                try check(rc, r, "read an entry")
                guard let entry else { break }
                let name = String(cString: archive_entry_pathname(entry))
                guard !name.hasPrefix("/"), !name.split(separator: "/").contains("..") else {
                    throw RunnerError(.badInput, "The bundle holds an unsafe path: \(name).")
                }
                let type = archive_entry_filetype(entry) & 0o170000
                guard type == 0o100000 || type == 0o040000 else {
                    throw RunnerError(.badInput, "The bundle holds something other than files and directories: \(name).")
                }
                archive_entry_set_pathname(entry, directory.appendingPathComponent(name).path)
                try check(archive_write_header(w, entry), w, "extract \(name)")
                var buf: UnsafeRawPointer?
                var size = 0
                var offset: la_int64_t = 0
                while true {
                    let drc = archive_read_data_block(r, &buf, &size, &offset)
                    if drc == ARCHIVE_EOF { break }
                    try check(drc, r, "read \(name)")
                    guard archive_write_data_block(w, buf, size, offset) >= 0 else {
                        throw RunnerError(.internalError, "Could not write \(name) into the workspace.")
                    }
                }
                try check(archive_write_finish_entry(w), w, "finish \(name)")
            }
        }
    }

    private static func check(_ rc: Int32, _ a: OpaquePointer, _ what: String) throws {
        guard rc >= ARCHIVE_WARN else {
            let msg = archive_error_string(a).map { String(cString: $0) } ?? "error \(rc)"
            throw RunnerError(.internalError, "libarchive could not \(what): \(msg).")
        }
    }
}

private final class ByteSink {
    var bytes: [UInt8] = []
}
