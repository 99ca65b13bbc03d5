import CSystemShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A host directory for the runs that need one: weak mode (no namespaces) and e2b-local's
/// sandboxes (which outlive one command). The default bubblewrap run has none: its workspace is
/// a tmpfs inside the jail.
///
/// Layout: a container `…/sandbox-runner-<label>-XXXXXX` owned by the runner (mode 0711) holding
/// `home`, owned by the run's jail uid. The jailed user can write inside `home` but can neither
/// rename nor replace the container, so the runner reaches `home` through a directory only it
/// controls; below that, every host-side step (chown, removal) is relative to a descriptor
/// opened with O_NOFOLLOW, and the removal runs only once the run's processes are gone.
struct Workspace {
    let container: URL
    var home: URL { container.appendingPathComponent("home") }

    static let prefix = "sandbox-runner-"
    /// How deep a tree the removal follows (descriptors held open at once).
    static let maxDepth: Int32 = 512

    static func create(label: String) throws -> Workspace {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        let safeLabel = String(label.prefix(8).filter { $0.isLetter || $0.isNumber || $0 == "-" })
        var template = Array("\(base)/\(prefix)\(safeLabel)-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw RunnerError(.unavailable, "Could not create a workspace under \(base) (errno \(errno)); check that it exists and is writable.")
        }
        let ws = Workspace(container: URL(fileURLWithPath: String(cString: p)))
        guard chmod(ws.container.path, 0o711) == 0, mkdir(ws.home.path, 0o700) == 0 else {
            let e = errno
            ws.remove()
            throw RunnerError(.unavailable, "Could not create a workspace under \(base) (errno \(e)).")
        }
        return ws
    }

    /// When running as root, gives `home` and everything in it to a fresh unprivileged uid and
    /// returns it: the script then runs without root and RLIMIT_NPROC counts only its own
    /// processes. Only call it before any process of that uid exists.
    func handOver() throws -> uid_t? {
        guard geteuid() == 0 else { return nil }
        let uid = LocalJail.freshUid()
        let root = open(home.path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard root >= 0 else { throw RunnerError(.internalError, "Could not open the workspace (errno \(errno)).") }
        defer { close(root) }
        var relatives = [""]
        if let e = FileManager.default.enumerator(atPath: home.path) {
            while let p = e.nextObject() as? String { relatives.append(p) }
        }
        for rel in relatives {
            let rc = sr_chown_beneath(root, rel, uid, uid)
            guard rc == 0 else { throw RunnerError(.internalError, "Could not hand the workspace to the jail user (errno \(rc)).") }
        }
        return uid
    }

    /// Removes the container and everything in it without following a link. False when
    /// something could not be removed.
    @discardableResult
    func remove() -> Bool {
        let parent = open(container.deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard parent >= 0 else { return false }
        defer { close(parent) }
        let name = container.lastPathComponent
        let fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return errno == ENOENT }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_uid == geteuid() else { close(fd); return false }
        let inner = sr_remove_tree_at(fd, "home", Self.maxDepth)
        close(fd)
        return inner == 0 && (unlinkat(parent, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
    }

    /// The workspace whose `home` is `url`, when `url` has this layout.
    static func owning(home url: URL) -> Workspace? {
        let container = url.deletingLastPathComponent()
        guard url.lastPathComponent == "home", container.lastPathComponent.hasPrefix(prefix) else { return nil }
        return Workspace(container: container)
    }

    /// The outermost workspace on `path`'s way from the root: a name inside a workspace that
    /// merely looks like one (`…/home/sandbox-runner-x/home/…`) is the jail's and never trusted.
    static func outermost(containing path: URL) -> Workspace? {
        let parts = path.standardizedFileURL.pathComponents
        guard parts.count > 2 else { return nil }
        for i in 1..<(parts.count - 1) where parts[i].hasPrefix(prefix) && parts[i + 1] == "home" {
            return Workspace(container: URL(fileURLWithPath: NSString.path(withComponents: Array(parts[0...i]))))
        }
        return nil
    }

    /// A descriptor of `home`, reached through a container the runner owns (opened without
    /// following a link, checked to be the runner's and writable by nobody else).
    func openHome() -> Int32? {
        let c = open(container.path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard c >= 0 else { return nil }
        defer { close(c) }
        var st = stat()
        guard fstat(c, &st) == 0, st.st_uid == geteuid(), st.st_mode & 0o022 == 0 else { return nil }
        let h = openat(c, "home", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        return h >= 0 ? h : nil
    }

    /// chown of `path` (inside `home`) without following links on the way.
    func chown(_ path: URL, to uid: uid_t) -> Int32 {
        let homeParts = home.standardizedFileURL.pathComponents
        let parts = path.standardizedFileURL.pathComponents
        guard parts.count >= homeParts.count, Array(parts[0..<homeParts.count]) == homeParts else { return EINVAL }
        guard let root = openHome() else { return EPERM }
        defer { close(root) }
        return sr_chown_beneath(root, parts.dropFirst(homeParts.count).joined(separator: "/"), uid, uid)
    }
}
