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
    /// The jail's hostname.
    public var hostname = "sandbox"
    /// The uid and gid the command has inside (bubblewrap's `--uid`/`--gid`); the caller's
    /// mapped id when nil. e2b-local's sandboxes are user 1000, as E2B's are.
    public var user: (uid: Int, gid: Int)?
    /// More host files bound read-only when present, besides the few of /etc every jail gets.
    public var extraSystemFiles: [String] = []
    /// Permissions of the home (a tmpfs) and of /tmp and /dev/shm (bubblewrap's default when nil).
    public var homePermissions = "0700"
    public var tmpPermissions: String?

    public static func == (a: JailLayout, b: JailLayout) -> Bool {
        a.home == b.home && a.mountPoint == b.mountPoint && a.workingDirectory == b.workingDirectory && a.network == b.network
            && a.tmpBytes == b.tmpBytes && a.shmBytes == b.shmBytes && a.directories == b.directories && a.binds == b.binds
            && a.hostname == b.hostname && a.user?.uid == b.user?.uid && a.user?.gid == b.user?.gid
            && a.extraSystemFiles == b.extraSystemFiles && a.homePermissions == b.homePermissions && a.tmpPermissions == b.tmpPermissions
    }

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

    /// Read-only files made from descriptors (`--ro-bind-data FD PATH`): absolute paths.
    public struct DataFile: Sendable, Equatable {
        public var path: String
        public var fd: Int32
        public init(path: String, fd: Int32) {
            self.path = path
            self.fd = fd
        }
    }

    /// The seccomp program (`--seccomp`).
    public var seccomp: Int32?
    /// Where bubblewrap writes the jail's pid 1 and namespaces (`--info-fd`).
    public var info: Int32?
    public var data: [DataFile] = []
    /// Where bubblewrap writes its JSON status (`--json-status-fd`): the jail's pid 1 and the command's exit.
    public var status: Int32?
    /// What the jail's pid 1 waits on before it starts the command (`--block-fd`).
    public var block: Int32?
    public var files: [File] = []

    public init(seccomp: Int32? = nil, status: Int32? = nil, block: Int32? = nil, files: [File] = [], info: Int32? = nil,
                data: [DataFile] = []) {
        self.info = info
        self.data = data
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
        args.append("--disable-userns")
        if let user = layout.user { args += ["--uid", String(user.uid), "--gid", String(user.gid)] }
        args += ["--die-with-parent", "--new-session", "--hostname", layout.hostname,
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
                     "/etc/localtime", "/etc/mime.types"] + layout.extraSystemFiles {
            args += ["--ro-bind-try", path, path]
        }
        for d in descriptors.data { args += ["--ro-bind-data", String(d.fd), d.path] }
        let tmpPerms = layout.tmpPermissions.map { ["--perms", $0] } ?? []
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += tmpPerms + ["--size", String(layout.shmBytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
        args += tmpPerms + ["--size", String(layout.tmpBytes), "--tmpfs", "/tmp"]
        let mp = layout.mountPoint
        switch layout.home {
        case .tmpfs(let bytes): args += ["--size", String(bytes), "--perms", layout.homePermissions, "--tmpfs", mp]
        case .bind(let host): args += ["--bind", host, mp]
        }
        for dir in layout.directories { args += ["--dir", mp + "/" + dir] }
        for f in descriptors.files { args += ["--perms", "0" + String(f.mode, radix: 8), "--file", String(f.fd), mp + "/" + f.path] }
        for b in layout.binds { args += [b.readOnly ? "--ro-bind" : "--bind", b.source, b.destination] }
        args += ["--remount-ro", "/"]
        if let fd = descriptors.seccomp { args += ["--seccomp", String(fd)] }
        if let fd = descriptors.status { args += ["--json-status-fd", String(fd)] }
        if let fd = descriptors.block { args += ["--block-fd", String(fd)] }
        if let fd = descriptors.info { args += ["--info-fd", String(fd)] }
        args += ["--chdir", layout.workingDirectory ?? mp]
        return args
    }
}
