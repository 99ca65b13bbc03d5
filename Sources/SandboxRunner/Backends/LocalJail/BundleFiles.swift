import CArchive
import Foundation

/// The entries of a bundle read into memory, to be put into a jail's tmpfs by bubblewrap
/// (`--dir`, `--file FD`) without the host ever unpacking them.
struct BundleFiles {
    struct Entry {
        var path: String
        var isDirectory: Bool
        var bytes: [UInt8]
    }

    var entries: [Entry] = []

    /// Reads the archive, refusing absolute paths, `..` and anything but files and directories.
    static func read(_ bundle: RunBundle) throws -> BundleFiles {
        guard let r = archive_read_new() else { throw RunnerError(.internalError, "libarchive could not allocate a reader.") }
        defer { archive_read_free(r) }
        archive_read_support_format_tar(r)
        archive_read_support_filter_gzip(r)
        var out = BundleFiles()
        try bundle.bytes.withUnsafeBytes { raw in
            guard archive_read_open_memory(r, raw.baseAddress, raw.count) == ARCHIVE_OK else {
                throw RunnerError(.internalError, "libarchive could not read the bundle.")
            }
            var entry: OpaquePointer?
            while true {
                let rc = archive_read_next_header(r, &entry)
                if rc == ARCHIVE_EOF { break }
                guard rc >= ARCHIVE_WARN, let entry else { throw RunnerError(.internalError, "The bundle could not be read (libarchive \(rc)).") }
                var name = String(cString: archive_entry_pathname(entry))
                while name.hasSuffix("/") { name.removeLast() }
                let parts = name.split(separator: "/", omittingEmptySubsequences: false)
                guard !name.isEmpty, !name.hasPrefix("/"), !parts.contains(where: { $0.isEmpty || $0 == ".." || $0 == "." }) else {
                    throw RunnerError(.badInput, "The bundle holds an unsafe path: \(name).")
                }
                let type = archive_entry_filetype(entry) & 0o170000
                if type == 0o040000 {
                    out.entries.append(Entry(path: name, isDirectory: true, bytes: []))
                    continue
                }
                guard type == 0o100000 else {
                    throw RunnerError(.badInput, "The bundle holds something other than files and directories: \(name).")
                }
                let size = Int(archive_entry_size(entry))
                var bytes = [UInt8](repeating: 0, count: max(0, size))
                if size > 0 {
                    let n = bytes.withUnsafeMutableBytes { archive_read_data(r, $0.baseAddress, size) }
                    guard n == size else { throw RunnerError(.internalError, "The bundle entry \(name) could not be read.") }
                }
                out.entries.append(Entry(path: name, isDirectory: false, bytes: bytes))
            }
        }
        return out
    }
}
