import CSystemShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The operator's extraction state file (`extract --state FILE`): read, locked against a second
/// extract on the same file, and replaced atomically — a temporary in the same directory
/// (`O_EXCL`), written, fsync'd, renamed over the file, and the directory fsync'd — so after a
/// crash at any instant the file holds either the old state or the new one, whole.
public final class StateFile: @unchecked Sendable {
    public let path: String
    private let directoryFD: Int32
    private let leaf: String
    private let lockFD: Int32

    /// Opens (or prepares) the state file at `path` and takes its lock (`FILE.lock`, flock);
    /// refuses when another extract holds it.
    public init(path: String) throws {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        self.path = url.path
        leaf = url.lastPathComponent
        let dir = url.deletingLastPathComponent().path
        guard !leaf.isEmpty, leaf != "/" else {
            throw RunnerError(.badInput, "--state must name a file, such as ./events.state.json.")
        }
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw RunnerError(.badInput, "Could not create \(dir) for the state file: \(error.localizedDescription)")
        }
        directoryFD = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryFD >= 0 else {
            throw RunnerError(.badInput, "Could not open \(dir), the state file's directory (\(String(cString: strerror(errno)))).")
        }
        lockFD = openat(directoryFD, leaf + ".lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard lockFD >= 0 else {
            let e = errno
            close(directoryFD)
            throw RunnerError(.badInput, "Could not open the lock file \(self.path).lock (\(String(cString: strerror(e)))).")
        }
        guard flock(lockFD, LOCK_EX | LOCK_NB) == 0 else {
            close(lockFD)
            close(directoryFD)
            throw RunnerError(.badInput, "Another extract is using \(self.path) (it holds \(self.path).lock); wait for it to finish, "
                + "or give this one its own --state file.")
        }
    }

    deinit {
        close(lockFD)  // releases the lock
        close(directoryFD)
    }

    /// The file's bytes, or nil when it does not exist yet (a first run). It must be a regular file.
    public func read(maxBytes: Int = 512 << 20) throws -> [UInt8]? {
        let fd = openat(directoryFD, leaf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw RunnerError(.badInput, "Could not read the state file \(path) (\(String(cString: strerror(errno)))); "
                + "it must be a regular file (not a link).")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw RunnerError(.badInput, "The state file \(path) is not a regular file.")
        }
        guard Int(st.st_size) <= maxBytes else {
            throw RunnerError(.badInput, "The state file \(path) is over \(maxBytes >> 20) MiB; it cannot be an extraction state.")
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw RunnerError(.internalError, "Could not read the state file \(path) to its end.") }
            offset += n
        }
        return bytes
    }

    /// Replaces the file with `bytes`, atomically and durably (see the type's comment).
    public func replace(with bytes: [UInt8]) throws {
        let temp = "." + leaf + ".tmp-" + UUID().uuidString.lowercased()
        let fd = openat(directoryFD, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw RunnerError(.internalError, "Could not write a new state next to \(path) (\(String(cString: strerror(errno)))); "
                + "check that directory's permissions and free space. The old state is unchanged.")
        }
        var ok = true
        var offset = 0
        while offset < bytes.count && ok {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { ok = false } else { offset += n }
        }
        ok = ok && fsync(fd) == 0
        close(fd)
        guard ok, renameat(directoryFD, temp, directoryFD, leaf) == 0 else {
            let e = errno
            _ = unlinkat(directoryFD, temp, 0)
            throw RunnerError(.internalError, "Could not replace the state file \(path) (\(String(cString: strerror(e)))); the old state is unchanged.")
        }
        guard fsync(directoryFD) == 0 else {
            throw RunnerError(.internalError, "The new state is in place at \(path) but its directory could not be synced "
                + "(\(String(cString: strerror(errno)))); a power loss now could bring the old one back.")
        }
    }
}
