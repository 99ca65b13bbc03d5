import CArchive
import Foundation

/// The archive shipped to a sandbox: `run.py`, `posthog_driver/…`, `template.py`, `run.json`.
/// Deterministic: the same inputs give the same bytes and the same sha256.
public struct RunBundle: Sendable {
    public var bytes: [UInt8]
    public var sha256: String
    /// Entry paths in archive order.
    public var entries: [String]
}

/// Builds bundles with libarchive: sorted entries, fixed mtime/owner/mode, gzip without a timestamp.
public enum BundleBuilder {
    /// 2000-01-01T00:00:00Z: a fixed mtime for every entry.
    static let fixedMTime = 946_684_800

    /// Files of the bundle as path → contents.
    public static func build(files: [String: [UInt8]]) throws -> RunBundle {
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

        var dirs = Set<String>()
        for path in files.keys {
            var parts = path.split(separator: "/").dropLast()
            while !parts.isEmpty { dirs.insert(parts.joined(separator: "/")); parts = parts.dropLast() }
        }
        let all = (dirs.map { ($0 + "/", true) } + files.keys.map { ($0, false) }).sorted { $0.0 < $1.0 }
        var names: [String] = []
        for (path, isDir) in all {
            guard let entry = archive_entry_new() else { throw RunnerError(.internalError, "libarchive could not allocate an entry.") }
            defer { archive_entry_free(entry) }
            archive_entry_set_pathname(entry, path)
            archive_entry_set_mtime(entry, time_t(fixedMTime), 0)
            archive_entry_set_uid(entry, 0)
            archive_entry_set_gid(entry, 0)
            if isDir {
                archive_entry_set_filetype(entry, 0o040000)
                archive_entry_set_perm(entry, 0o755)
                archive_entry_set_size(entry, 0)
                try check(archive_write_header(a, entry), a, "write \(path)")
            } else {
                let data = files[path]!
                archive_entry_set_filetype(entry, 0o100000)
                archive_entry_set_perm(entry, 0o644)
                archive_entry_set_size(entry, la_int64_t(data.count))
                try check(archive_write_header(a, entry), a, "write \(path)")
                let written = data.withUnsafeBytes { archive_write_data(a, $0.baseAddress, $0.count) }
                guard written == data.count else { throw RunnerError(.internalError, "libarchive could not write \(path).") }
            }
            names.append(path)
        }
        try check(archive_write_close(a), a, "finish the archive")
        return RunBundle(bytes: sink.bytes, sha256: SHA256.hex(sink.bytes), entries: names)
    }

    /// Extracts a bundle into `directory`, refusing absolute paths, `..` and symlinks that escape.
    public static func extract(_ bundle: RunBundle, into directory: URL) throws {
        guard let r = archive_read_new(), let w = archive_write_disk_new() else {
            throw RunnerError(.internalError, "libarchive could not allocate a reader.")
        }
        defer { archive_read_free(r); archive_write_free(w) }
        archive_read_support_format_tar(r)
        archive_read_support_filter_gzip(r)
        // Entry names are checked below (relative, no `..`) before being placed under `directory`.
        let flags = ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_PERM
        archive_write_disk_set_options(w, flags)
        try bundle.bytes.withUnsafeBytes { raw in
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
