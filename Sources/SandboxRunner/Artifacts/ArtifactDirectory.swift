import CSystemShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A directory on the host that the runner writes artifacts into, held open by descriptor:
/// every operation is relative to it (`openat`, `mkdirat`, `renameat2`), never follows a
/// symbolic link, never replaces an existing name, and never leaves it. No jailed process can
/// reach it (the jail sees no host directory); the checks hold against whatever else was put
/// there before (a pre-seeded link, a name already taken).
public final class ArtifactDirectory: @unchecked Sendable {
    /// The directory's descriptor (`O_DIRECTORY`, close-on-exec); closed when this is released.
    public let fd: Int32
    /// The path it was opened at, for messages and the CLI's listing.
    public let path: String

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    static let dirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC

    /// Opens `path`, creating it when missing. The last component must be a real directory (a
    /// symbolic link there is refused); with `mustBeNew` it must not exist yet. Missing parents are
    /// created (they are the operator's own path).
    public static func open(_ path: String, mustBeNew: Bool = false) throws -> ArtifactDirectory {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        let parent = url.deletingLastPathComponent().path
        let leaf = url.lastPathComponent
        guard !leaf.isEmpty, leaf != "/", leaf != ".", leaf != ".." else {
            throw RunnerError(.badInput, "The output directory \(path) is not a directory name the runner can create; name a directory such as ./out.")
        }
        do {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        } catch {
            throw RunnerError(.badInput, "Could not create the directory \(parent) for the run's files: \(error.localizedDescription)")
        }
        let pfd = Glibc.open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard pfd >= 0 else {
            throw RunnerError(.badInput, "Could not open \(parent) for the run's files (\(String(cString: strerror(errno)))); check the path and its permissions.")
        }
        defer { close(pfd) }
        return try openChild(of: pfd, named: leaf, path: url.path, mustBeNew: mustBeNew)
    }

    /// The default place of a CLI run's files: `./sandbox-runner-out/<run-id>/`, each component
    /// created without following a link, the run's own directory new.
    public static func openDefault(base: String = FileManager.default.currentDirectoryPath, runId: String) throws -> ArtifactDirectory {
        let cwd = Glibc.open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard cwd >= 0 else { throw RunnerError(.badInput, "Could not open the working directory \(base) for the run's files.") }
        defer { close(cwd) }
        let top = try openChild(of: cwd, named: "sandbox-runner-out", path: base + "/sandbox-runner-out", mustBeNew: false)
        return try top.subdirectory(runId, mustBeNew: true)
    }

    /// A directory inside this one (created; `mustBeNew` refuses one that exists).
    public func subdirectory(_ name: String, mustBeNew: Bool) throws -> ArtifactDirectory {
        try Self.openChild(of: fd, named: name, path: path + "/" + name, mustBeNew: mustBeNew)
    }

    static func openChild(of parent: Int32, named name: String, path: String, mustBeNew: Bool) throws -> ArtifactDirectory {
        if mkdirat(parent, name, 0o755) != 0 {
            let e = errno
            if e != EEXIST {
                throw RunnerError(.badInput, "Could not create \(path) (\(String(cString: strerror(e)))); check the path and its permissions.")
            }
            if mustBeNew {
                throw RunnerError(.badInput, "\(path) already exists; the runner writes a run's files only into a directory it creates.")
            }
        }
        let fd = openat(parent, name, dirFlags)
        guard fd >= 0 else {
            let e = errno
            if e == ELOOP || e == ENOTDIR {
                throw RunnerError(.badInput, "\(path) is a symbolic link or not a directory; the runner never writes through a link: "
                    + "remove it or name another directory.")
            }
            throw RunnerError(.badInput, "Could not open \(path) (\(String(cString: strerror(e)))).")
        }
        return ArtifactDirectory(fd: fd, path: path)
    }

    // MARK: writing

    /// A new file under a name nobody else uses (`O_EXCL`, `O_NOFOLLOW`), to be renamed into place
    /// once complete and checked. Returns the descriptor and the temporary name.
    func createTemporary() throws -> (fd: Int32, name: String) {
        for _ in 0..<8 {
            let name = ".sandbox-runner-" + UUID().uuidString.lowercased() + ".partial"
            let f = openat(fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
            if f >= 0 { return (f, name) }
            if errno != EEXIST {
                throw RunnerError(.internalError, "Could not create a file in \(path) (\(String(cString: strerror(errno)))); check its permissions and free space.")
            }
        }
        throw RunnerError(.internalError, "Could not find a free temporary name in \(path).")
    }

    /// Removes a name in this directory (a temporary or a file this run put there).
    func unlink(_ name: String) { _ = unlinkat(fd, name, 0) }

    /// Moves the temporary `temp` (in this directory) to `name` (a relative path; directories on
    /// the way are made, never followed), refusing to replace anything. Returns the directories it
    /// created (outermost first) so a rollback can remove them.
    func place(_ temp: String, as name: String) throws -> [String] {
        try move(temp, from: self, to: name)
    }

    /// Moves `source` (a name in `from`, on the same file system) to `name` here, making the
    /// directories on the way and refusing to replace anything.
    public func move(_ source: String, from: ArtifactDirectory, to name: String) throws -> [String] {
        let parts = name.split(separator: "/").map(String.init)
        var created: [String] = []
        var dir = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard dir >= 0 else { throw RunnerError(.internalError, "Could not duplicate a descriptor (errno \(errno)).") }
        defer { close(dir) }
        var prefix = ""
        var done = false
        defer { if !done { for d in created.reversed() { removeCreatedDirectory(d) } } }
        for part in parts.dropLast() {
            prefix += (prefix.isEmpty ? "" : "/") + part
            if mkdirat(dir, part, 0o755) == 0 { created.append(prefix) } else if errno != EEXIST {
                throw RunnerError(.internalError, "Could not create \(path)/\(prefix) (\(String(cString: strerror(errno)))).")
            }
            let next = openat(dir, part, Self.dirFlags)
            guard next >= 0 else {
                throw RunnerError(.badInput, "\(path)/\(prefix) is already there and is not a directory the runner may write into "
                    + "(a file or a symbolic link); write the run's files into an empty directory.")
            }
            close(dir)
            dir = next
        }
        if sr_renameat_noreplace(from.fd, source, dir, parts.last ?? name) != 0 {
            let e = errno
            if e == EEXIST {
                throw RunnerError(.badInput, "\(path)/\(name) already exists; the runner never replaces a file: write the run's files into "
                    + "an empty directory (--out-dir).")
            }
            throw RunnerError(.internalError, "Could not move a file into place as \(path)/\(name) (\(String(cString: strerror(e)))).")
        }
        done = true
        return created
    }

    /// Removes `name` (a relative path this run placed) without following links on the way.
    func removePlaced(_ name: String) {
        let parts = name.split(separator: "/").map(String.init)
        guard let leaf = parts.last else { return }
        if parts.count == 1 { _ = unlinkat(fd, leaf, 0); return }
        guard let dir = openRelativeDirectory(parts.dropLast()) else { return }
        _ = unlinkat(dir, leaf, 0)
        close(dir)
    }

    /// Removes an (empty) directory this run created.
    func removeCreatedDirectory(_ name: String) {
        let parts = name.split(separator: "/").map(String.init)
        guard let leaf = parts.last else { return }
        if parts.count == 1 { _ = unlinkat(fd, leaf, AT_REMOVEDIR); return }
        guard let dir = openRelativeDirectory(parts.dropLast()) else { return }
        _ = unlinkat(dir, leaf, AT_REMOVEDIR)
        close(dir)
    }

    /// Makes what was placed here durable (the directory entries of renames).
    public func sync() { _ = fsync(fd) }

    /// Removes this directory's entry `name` and everything under it, descriptor-relative.
    public func removeTree(_ name: String) { _ = sr_remove_tree_at(fd, name, 16) }

    // MARK: reading

    /// Opens the regular file at `name` (a relative path) for reading, never following a link;
    /// nil when there is no such regular file. The caller closes the descriptor.
    public func openFile(_ name: String) -> (fd: Int32, size: Int)? {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard let leaf = parts.last, !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else { return nil }
        var dir = fd
        var owned = false
        if parts.count > 1 {
            guard let d = openRelativeDirectory(parts.dropLast()) else { return nil }
            dir = d
            owned = true
        }
        defer { if owned { close(dir) } }
        let f = openat(dir, leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard f >= 0 else { return nil }
        var st = stat()
        guard fstat(f, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { close(f); return nil }
        return (f, Int(st.st_size))
    }

    /// The directory at a relative path inside this one, opened component by component with
    /// `O_NOFOLLOW`; nil when any step is missing or not a directory.
    func openRelativeDirectory<S: Sequence>(_ parts: S) -> Int32? where S.Element == String {
        var dir = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard dir >= 0 else { return nil }
        for part in parts {
            let next = openat(dir, part, Self.dirFlags)
            close(dir)
            guard next >= 0 else { return nil }
            dir = next
        }
        return dir
    }
}
