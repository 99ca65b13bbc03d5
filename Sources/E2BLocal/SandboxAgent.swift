import Foundation

/// The program every sandbox runs as its process 2 (bubblewrap's reaper is 1): e2b-local's
/// stand-in for envd's process and filesystem services, inside the sandbox, as its user. Kept
/// here (not as a resource file) so the binary carries it wherever it is installed; it is handed
/// to `python3 -I -S -c`. The protocol is in `AgentLink`.
enum SandboxAgent {
    static let source = #"""
import errno, json, os, selectors, shutil, signal, socket, stat, subprocess, sys

# e2b-local's agent: process 2 of every sandbox (bubblewrap's reaper is 1), running as the
# sandbox's user inside its namespaces. It starts commands and does file operations *inside* the
# sandbox for the server, over the Unix socket on descriptor 3: JSON messages, descriptors
# attached (SCM_RIGHTS), messages over 48 KiB carried in a memfd. It holds no secret and no
# privilege a script in the sandbox lacks; the server trusts none of its answers beyond the
# sandbox itself (descriptors it sends back are checked, sizes are bounded).

HOME = "/home/user"
LIMIT = 48 * 1024
sock = socket.socket(fileno=3)
os.set_inheritable(3, False)
children = {}   # pid -> Popen
pidfds = {}     # pidfd -> pid
sel = selectors.DefaultSelector()


def send(msg, fds=()):
    data = json.dumps(msg, separators=(",", ":")).encode()
    if len(data) > LIMIT:
        memfd = os.memfd_create("agent-message", os.MFD_CLOEXEC)
        os.write(memfd, data)
        os.lseek(memfd, 0, os.SEEK_SET)
        try:
            socket.send_fds(sock, [b'{"memfd":true}'], [memfd] + list(fds))
        finally:
            os.close(memfd)
    elif fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def receive():
    data, fds, _, _ = socket.recv_fds(sock, 65536, 16)
    if not data:
        return None, []
    msg = json.loads(data)
    if msg.get("memfd"):
        memfd, fds = fds[0], fds[1:]
        with os.fdopen(memfd, "rb") as f:
            msg = json.loads(f.read(64 << 20))
    return msg, fds


def resolve(path):
    """envd's ExpandAndResolve: ~ is the home, relative paths are under it."""
    if not path:
        path = HOME
    if path.startswith("~"):
        if len(path) > 1 and path[1] != "/":
            raise Fail("invalid_argument", "cannot expand user-specific home dir")
        path = HOME + path[1:]
    if not path.startswith("/"):
        path = HOME + "/" + path
    return os.path.normpath(path).replace("//", "/")


class Fail(Exception):
    def __init__(self, code, message, err=0):
        super().__init__(message)
        self.code, self.message, self.errno = code, message, err


def oserror(e, what):
    code = {errno.ENOENT: "not_found", errno.EEXIST: "already_exists", errno.EACCES: "permission_denied",
            errno.EPERM: "permission_denied", errno.EROFS: "permission_denied", errno.ENOSPC: "resource_exhausted",
            errno.EDQUOT: "resource_exhausted", errno.EFBIG: "resource_exhausted", errno.ENOTDIR: "invalid_argument",
            errno.EISDIR: "invalid_argument", errno.ELOOP: "failed_precondition", errno.ENAMETOOLONG: "invalid_argument",
            }.get(e.errno, "internal")
    return Fail(code, f"{what}: {e.strerror}", e.errno or 0)


def go_mode(st):
    """Go's os.FileMode.String(): type letters, then rwxrwxrwx."""
    m = st.st_mode
    t = ""
    if stat.S_ISDIR(m): t += "d"
    if stat.S_ISLNK(m): t += "L"
    if stat.S_ISBLK(m): t += "D"
    if stat.S_ISCHR(m): t += "Dc"
    if stat.S_ISFIFO(m): t += "p"
    if stat.S_ISSOCK(m): t += "S"
    if m & stat.S_ISUID: t += "u"
    if m & stat.S_ISGID: t += "g"
    if m & stat.S_ISVTX: t += "t"
    rwx = "".join(c if m & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))
    return (t or "-") + rwx


def owner(uid):
    return "user" if uid == os.getuid() else ("root" if uid == 0 else str(uid))


def entry(path, name=None):
    """envd's entryInfo: lstat, a symlink's type and mode taken from its target."""
    try:
        st = os.lstat(path)
    except OSError as e:
        raise oserror(e, f"file not found: {path}" if e.errno == errno.ENOENT else f"error getting file info for {path}")
    info = {"name": name or os.path.basename(path) or "/", "path": path, "size": st.st_size,
            "permissions": go_mode(st), "owner": owner(st.st_uid), "group": owner(st.st_gid),
            "modifiedTime": st.st_mtime_ns}
    target_st = st
    if stat.S_ISLNK(st.st_mode):
        target = os.path.realpath(path)
        info["symlinkTarget"] = target
        try:
            target_st = os.stat(path)
        except OSError:
            target_st = None
    if target_st is None:
        info["type"], info["mode"] = "unknown", 0
    else:
        tm = target_st.st_mode
        info["type"] = "dir" if stat.S_ISDIR(tm) else "file" if stat.S_ISREG(tm) else "symlink" if stat.S_ISLNK(tm) else "unknown"
        info["mode"] = stat.S_IMODE(tm) & 0o777
    return info


def ensure_dirs(path):
    """envd's EnsureDirs: every missing directory on the way, 0755; a file on the way is an error."""
    parts = path.strip("/").split("/")
    cur = ""
    for p in parts:
        cur += "/" + p
        try:
            st = os.stat(cur)
        except FileNotFoundError:
            try:
                os.mkdir(cur, 0o755)
            except FileExistsError:
                pass
            except OSError as e:
                raise oserror(e, f"failed to create directory {cur}")
            continue
        except OSError as e:
            raise oserror(e, f"failed to stat directory {cur}")
        if not stat.S_ISDIR(st.st_mode):
            raise Fail("invalid_argument", f"path is a file: {cur}")


def open_file(path, write):
    p = resolve(path)
    if write:
        ensure_dirs(os.path.dirname(p))
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    else:
        flags = os.O_RDONLY
    try:
        fd = os.open(p, flags | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno == errno.EISDIR:
            raise Fail("invalid_argument", f"path is a directory: {p}", e.errno)
        raise oserror(e, f"error opening {p}")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Fail("invalid_argument", f"path is a directory: {p}" if stat.S_ISDIR(st.st_mode) else f"not a regular file: {p}")
    os.set_blocking(fd, True)
    return fd, p, st.st_size


def walk(requested, real, depth):
    out = []
    def visit(dirpath, rel, level):
        try:
            with os.scandir(dirpath) as it:
                items = sorted(it, key=lambda d: d.name)
        except OSError as e:
            raise oserror(e, f"error reading directory {dirpath}")
        for d in items:
            try:
                info = entry(os.path.join(dirpath, d.name), d.name)
            except Fail as f:
                if f.code == "not_found":
                    continue
                raise
            info["rel"] = (rel + "/" if rel else "") + d.name
            info["path"] = requested.rstrip("/") + "/" + info["rel"]
            out.append(info)
            if level < depth and d.is_dir(follow_symlinks=False):
                visit(os.path.join(dirpath, d.name), (rel + "/" if rel else "") + d.name, level + 1)
            if len(out) > 100_000:
                raise Fail("resource_exhausted", "the listing has over 100000 entries: list a smaller directory or less deep")
    visit(real, "", 1)
    return out


def handle(msg, fds):
    op = msg.get("op")
    if op == "spawn":
        out_fd, err_fd = fds[0], fds[1]
        in_fd = fds[2] if len(fds) > 2 else subprocess.DEVNULL
        cwd = resolve(msg.get("cwd") or HOME)
        try:
            p = subprocess.Popen(msg["argv"], env=msg.get("env") or {}, cwd=cwd, stdin=in_fd, stdout=out_fd, stderr=err_fd,
                                 start_new_session=True, close_fds=True)
        except FileNotFoundError as e:
            missing = e.filename if e.filename else msg["argv"][0]
            raise Fail("invalid_argument", f"error starting process: {missing}: no such file or directory", errno.ENOENT)
        except NotADirectoryError:
            raise Fail("invalid_argument", f"error starting process: chdir {cwd}: not a directory", errno.ENOTDIR)
        except OSError as e:
            raise oserror(e, "error starting process")
        finally:
            for fd in fds:
                os.close(fd)
        children[p.pid] = p
        pidfd = os.pidfd_open(p.pid)
        pidfds[pidfd] = p.pid
        sel.register(pidfd, selectors.EVENT_READ, "child")
        return {"pid": p.pid}
    for fd in fds:
        os.close(fd)
    if op == "signal":
        pid = int(msg["pid"])
        if pid not in children:
            raise Fail("not_found", f"process with pid {pid} not found")
        try:
            os.killpg(pid, int(msg["signal"]))
        except ProcessLookupError:
            try:
                os.kill(pid, int(msg["signal"]))
            except ProcessLookupError:
                pass
        return {}
    if op in ("read", "write"):
        fd, path, size = open_file(msg["path"], op == "write")
        return ({"path": path, "name": os.path.basename(path), "size": size}, [fd])
    if op == "stat":
        return {"entry": entry(resolve(msg["path"]))}
    if op == "list":
        requested = resolve(msg["path"])
        try:
            real = os.path.realpath(requested, strict=True)
        except OSError as e:
            raise oserror(e, f"path not found: {requested}")
        if not os.path.isdir(real):
            raise Fail("invalid_argument", f"path is not a directory: {requested}")
        return {"entries": walk(requested, real, max(1, int(msg.get("depth") or 1)))}
    if op == "mkdir":
        p = resolve(msg["path"])
        try:
            st = os.stat(p)
            if stat.S_ISDIR(st.st_mode):
                raise Fail("already_exists", f"directory already exists: {p}")
            raise Fail("invalid_argument", f"path already exists but it is not a directory: {p}")
        except FileNotFoundError:
            pass
        except OSError as e:
            raise oserror(e, f"error getting file info for {p}")
        ensure_dirs(p)
        return {"entry": entry(p)}
    if op == "remove":
        p = resolve(msg["path"])
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise oserror(e, f"error removing {p}")
        try:
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(p)
            else:
                os.unlink(p)
        except OSError as e:
            raise oserror(e, f"error removing file or directory {p}")
        return {}
    if op == "move":
        src, dst = resolve(msg["source"]), resolve(msg["destination"])
        ensure_dirs(os.path.dirname(dst))
        try:
            try:
                os.rename(src, dst)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                # /home/user and /tmp are two filesystems here, one in an E2B sandbox.
                if os.path.isdir(src) and not os.path.islink(src):
                    shutil.copytree(src, dst, symlinks=True)
                    shutil.rmtree(src)
                else:
                    shutil.copy2(src, dst, follow_symlinks=False)
                    os.unlink(src)
        except FileNotFoundError as e:
            raise Fail("not_found", f"source file not found: {src}", e.errno)
        except OSError as e:
            raise oserror(e, "error renaming")
        return {"entry": entry(dst)}
    raise Fail("unimplemented", f"unknown operation {op!r}")


def reap(pidfd):
    pid = pidfds.pop(pidfd)
    sel.unregister(pidfd)
    os.close(pidfd)
    p = children.pop(pid)
    code = p.wait()
    send({"event": "exit", "pid": pid, "code": code if code >= 0 else None, "signal": -code if code < 0 else None})


def main():
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    os.umask(0o022)
    sel.register(3, selectors.EVENT_READ, "control")
    send({"event": "ready", "pid": os.getpid(), "uid": os.getuid()})
    while True:
        for key, _ in sel.select():
            if key.data == "child":
                reap(key.fd)
                continue
            msg, fds = receive()
            if msg is None:
                return
            rid = msg.get("id")
            try:
                result = handle(msg, fds)
                extra = []
                if isinstance(result, tuple):
                    result, extra = result
                result["id"] = rid
                result["ok"] = True
                try:
                    send(result, extra)
                finally:
                    for fd in extra:
                        os.close(fd)
            except Fail as f:
                send({"id": rid, "ok": False, "code": f.code, "message": f.message, "errno": f.errno})
            except Exception as e:  # a bug here must not end the sandbox
                send({"id": rid, "ok": False, "code": "internal", "message": f"{type(e).__name__}: {e}", "errno": 0})


main()
"""#
}
