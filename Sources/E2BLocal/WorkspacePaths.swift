import Foundation
import SandboxRunner
#if canImport(Glibc)
import Glibc
#endif

/// Maps sandbox paths (`/home/user/x`, `x`, `~/x`) to the host workspace, and keeps every file
/// operation inside it: `..` cannot climb out, and symbolic links the sandbox made are followed
/// only while they stay inside the workspace (the server runs as root; the sandbox does not).
struct WorkspacePaths {
    let workspace: URL
    let uid: uid_t?
    let home = E2BLocalConfiguration.home

    struct Failure: Error {
        var status: Int
        var message: String
    }

    /// The normalised sandbox path of `raw` (relative paths are under /home/user).
    func sandboxPath(_ raw: String) -> String {
        var p = raw
        if p == "~" { p = home } else if p.hasPrefix("~/") { p = home + p.dropFirst(1) }
        if !p.hasPrefix("/") { p = home + "/" + p }
        var parts: [Substring] = []
        for c in p.split(separator: "/") {
            if c == "." { continue }
            if c == ".." { _ = parts.popLast(); continue }
            parts.append(c)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// The path relative to /home/user, or a 400 when the path is elsewhere.
    func relative(_ raw: String) throws -> (sandbox: String, relative: [String]) {
        guard !raw.isEmpty else { throw Failure(status: 400, message: "The path is empty: name a file, e.g. path=/home/user/data.csv.") }
        let p = sandboxPath(raw)
        guard p == home || p.hasPrefix(home + "/") else {
            throw Failure(status: 400, message: "The path \(p) is outside \(home): this local sandbox keeps files only under \(home).")
        }
        return (p, p.dropFirst(home.count).split(separator: "/").map(String.init))
    }

    private var realRoot: String { Self.realpath(workspace.path) ?? workspace.path }

    static func realpath(_ path: String) -> String? {
        guard let r = Glibc.realpath(path, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    private func inside(_ real: String) -> Bool { real == realRoot || real.hasPrefix(realRoot + "/") }

    /// The host path of an existing file or directory, after following links (which must stay inside).
    func existing(_ raw: String) throws -> (host: String, sandbox: String) {
        let (sandbox, rel) = try relative(raw)
        let host = ([workspace.path] + rel).joined(separator: "/")
        guard let real = Self.realpath(host) else {
            throw Failure(status: 404, message: "The path \(sandbox) does not exist in the sandbox.")
        }
        guard inside(real) else {
            throw Failure(status: 400, message: "The path \(sandbox) leads outside \(home) through a symbolic link.")
        }
        return (real, sandbox)
    }

    /// Creates the parent directories of `raw` (owned by the sandbox's user) and returns where to
    /// write the file: its host path (a link at the end is resolved, and must stay inside).
    func prepareFile(_ raw: String) throws -> (host: String, sandbox: String, name: String) {
        let (sandbox, rel) = try relative(raw)
        guard let name = rel.last else { throw Failure(status: 400, message: "The path \(sandbox) is a directory, not a file.") }
        var dir = realRoot
        for component in rel.dropLast() {
            let next = dir + "/" + component
            var st = stat()
            if lstat(next, &st) != 0 {
                guard mkdir(next, 0o755) == 0 || errno == EEXIST else {
                    throw Failure(status: errno == ENOSPC ? 507 : 500, message: "Could not create the directory \(component) for \(sandbox) (errno \(errno)).")
                }
                LocalJail.handOver(URL(fileURLWithPath: next), to: uid)
                dir = next
                continue
            }
            guard let real = Self.realpath(next), inside(real) else {
                throw Failure(status: 400, message: "The path \(sandbox) leads outside \(home) through a symbolic link.")
            }
            var rst = stat()
            guard stat(real, &rst) == 0, (rst.st_mode & S_IFMT) == S_IFDIR else {
                throw Failure(status: 400, message: "Cannot write \(sandbox): \(component) is a file, not a directory.")
            }
            dir = real
        }
        var target = dir + "/" + name
        var st = stat()
        if lstat(target, &st) == 0 {
            if (st.st_mode & S_IFMT) == S_IFLNK {
                guard let real = Self.realpath(target), inside(real) else {
                    throw Failure(status: 400, message: "The path \(sandbox) is a symbolic link that leads outside \(home) or nowhere.")
                }
                target = real
                _ = stat(target, &st)
            }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                throw Failure(status: 400, message: "The path \(sandbox) is a directory, not a file.")
            }
        }
        return (target, sandbox, name)
    }

    /// Opens the file for writing (created or truncated, owned by the sandbox's user).
    func openForWriting(_ host: String, sandbox: String) throws -> Int32 {
        let fd = open(host, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw Failure(status: errno == ENOSPC ? 507 : 500, message: "Could not open \(sandbox) for writing (errno \(errno)).")
        }
        if let uid { fchown(fd, uid, uid) }
        return fd
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, sandbox: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                throw Failure(status: e == ENOSPC || e == EDQUOT || e == EFBIG ? 507 : 500,
                              message: e == ENOSPC || e == EDQUOT || e == EFBIG ? "Not enough space to write \(sandbox)."
                                  : "Could not write \(sandbox) (errno \(e)).")
            }
            offset += n
        }
    }
}
