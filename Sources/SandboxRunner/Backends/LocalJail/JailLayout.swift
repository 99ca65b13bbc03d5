import Foundation

/// What a jail shows its command, turned into bubblewrap arguments by
/// `LocalJail.bubblewrapArguments(_:descriptors:)`. Public so e2b-local builds its jails the same way.
public struct JailLayout: Sendable, Equatable {
    public enum Home: Sendable, Equatable {
        /// A size-capped tmpfs made for the run inside the jail: nothing of it is on the host,
        /// and nothing is left to clean up there.
        case tmpfs(bytes: Int)
        /// A host directory bound read-write (e2b-local's sandboxes, which outlive one command).
        case bind(hostPath: String)
    }

    public var home: Home
    /// Where the home appears inside the jail.
    public var mountPoint: String = LocalJail.home
    /// The command's working directory inside the jail (the home when nil).
    public var workingDirectory: String?
    public var network: NetworkPolicy
    public var tmpBytes: Int
    public var shmBytes: Int
    /// Directories to make under the home (relative paths, parents first).
    public var directories: [String] = []
    /// More host paths bound in before the root is made read-only: e.g. an egress proxy's Unix
    /// socket at /run/sandbox-runner/egress.sock for a `posthog` network policy.
    public var binds: [JailBind] = []

    public init(home: Home, network: NetworkPolicy, tmpBytes: Int, shmBytes: Int) {
        self.home = home
        self.network = network
        self.tmpBytes = tmpBytes
        self.shmBytes = shmBytes
    }
}

/// A host path bound into the jail.
public struct JailBind: Sendable, Equatable {
    public var source: String
    public var destination: String
    public var readOnly: Bool

    public init(source: String, destination: String, readOnly: Bool) {
        self.source = source
        self.destination = destination
        self.readOnly = readOnly
    }
}

/// Descriptor numbers as bubblewrap sees them (the launcher places them at 3, 4, … in the child).
public struct JailDescriptors: Sendable, Equatable {
    /// A file put into the jail: `path` is relative to the home.
    public struct File: Sendable, Equatable {
        public var path: String
        public var mode: Int
        public var fd: Int32
        public init(path: String, mode: Int, fd: Int32) {
            self.path = path
            self.mode = mode
            self.fd = fd
        }
    }

    /// The seccomp program (`--seccomp`).
    public var seccomp: Int32?
    /// Where bubblewrap writes its JSON status (`--json-status-fd`): the jail's pid 1 and the command's exit.
    public var status: Int32?
    /// What the jail's pid 1 waits on before it starts the command (`--block-fd`).
    public var block: Int32?
    public var files: [File] = []

    public init(seccomp: Int32? = nil, status: Int32? = nil, block: Int32? = nil, files: [File] = []) {
        self.seccomp = seccomp
        self.status = status
        self.block = block
        self.files = files
    }
}

extension LocalJail {
    /// bubblewrap's arguments for `layout` (everything before `--`): new user, pid, ipc, uts,
    /// cgroup and (unless the network is `host`) network namespaces, no nested user namespaces,
    /// read-only /usr and a few files of /etc, private /proc, /dev (read-only but /dev/shm),
    /// size-capped tmpfs /tmp, /dev/shm and home, then the root made read-only.
    public static func bubblewrapArguments(_ layout: JailLayout, descriptors: JailDescriptors) -> [String] {
        var args = ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup"]
        if layout.network != .host { args.append("--unshare-net") }
        args += ["--disable-userns", "--die-with-parent", "--new-session", "--hostname", "sandbox",
                 "--ro-bind", "/usr", "/usr"]
        for dir in ["/lib", "/lib64", "/lib32", "/bin", "/sbin"] {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: dir) {
                args += ["--symlink", target, dir]
            } else if FileManager.default.fileExists(atPath: dir) {
                args += ["--ro-bind", dir, dir]
            }
        }
        // Only what Python, DNS and TLS need from /etc; never the whole of it.
        for path in ["/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates",
                     "/etc/localtime", "/etc/mime.types"] {
            args += ["--ro-bind-try", path, path]
        }
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--size", String(layout.shmBytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
                 "--size", String(layout.tmpBytes), "--tmpfs", "/tmp"]
        let mp = layout.mountPoint
        switch layout.home {
        case .tmpfs(let bytes): args += ["--size", String(bytes), "--perms", "0700", "--tmpfs", mp]
        case .bind(let host): args += ["--bind", host, mp]
        }
        for dir in layout.directories { args += ["--dir", mp + "/" + dir] }
        for f in descriptors.files { args += ["--perms", "0" + String(f.mode, radix: 8), "--file", String(f.fd), mp + "/" + f.path] }
        for b in layout.binds { args += [b.readOnly ? "--ro-bind" : "--bind", b.source, b.destination] }
        args += ["--remount-ro", "/"]
        if let fd = descriptors.seccomp { args += ["--seccomp", String(fd)] }
        if let fd = descriptors.status { args += ["--json-status-fd", String(fd)] }
        if let fd = descriptors.block { args += ["--block-fd", String(fd)] }
        args += ["--chdir", layout.workingDirectory ?? mp]
        return args
    }
}
