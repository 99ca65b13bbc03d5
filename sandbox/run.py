"""Entry point inside the sandbox: runs template.py and turns failures into one short line.

The working directory holds run.py, posthog_driver/, template.py (the rendered template or an
ad hoc script) and run.json (template name and variables). Exit 0 on success; on an error, the
traceback (for unexpected errors) and a last stderr line `sandbox-runner-error: <sentence>`, exit 1.
SystemExit passes through (a script's own exit code or message).

Files the script leaves under out/ go back to the host after it ends (`_send_artifacts`): on the
descriptor or into the file SANDBOX_RUNNER_ARTIFACTS names (`fd:3`, `file:PATH`), in the stream
format of Sources/SandboxRunner/Artifacts/ArtifactReceiver.swift. Only regular files are sent;
links and other special files are reported by name (the host refuses the run's files then) and
never opened or followed.

Kept tiny: nothing is imported unless the script needs it. Logging: the driver sends its records
to stderr at POSTHOG_LOG_LEVEL (default WARNING) by itself; only when POSTHOG_LOG_LEVEL is set does
run.py configure `logging` for the whole script (stderr, that level).
"""
import os
import sys

_SECRETS = ("POSTHOG_PERSONAL_API_KEY", "POSTHOG_PROJECT_API_KEY")


def _fail(message: str) -> "NoReturn":  # type: ignore[name-defined]  # noqa: F821
    line = " ".join(message.split())
    for name in _SECRETS:
        secret = os.environ.get(name) or ""
        if len(secret) >= 4:
            line = line.replace(secret, "[REDACTED]")
    if len(line) > 500:
        line = line[:499] + "…"
    sys.stderr.write("sandbox-runner-error: " + line + "\n")
    sys.stderr.flush()
    raise SystemExit(1)


def _setup_logging() -> None:
    level = (os.environ.get("POSTHOG_LOG_LEVEL") or "").strip().upper()
    if not level:
        return
    import logging

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("posthog_driver").setLevel(int(level) if level.isdigit() else
                                                 getattr(logging, level, logging.WARNING))


_MAX_DEPTH = 8


class _Cut(Exception):
    """The artifact stream cannot go on (a file changed mid-send): it ends unfinished."""


def _send_artifacts() -> None:
    """Streams out/ to the host (see the module docstring); a no-op unless the host asked."""
    target = os.environ.get("SANDBOX_RUNNER_ARTIFACTS") or ""
    if not (target.startswith("fd:") or target.startswith("file:")):
        return
    import stat
    import struct

    if target.startswith("fd:"):
        out_fd = int(target[3:])
        try:
            os.set_inheritable(out_fd, False)
        except OSError:
            return
    else:
        out_fd = os.open(target[5:], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    files = sent = 0

    def put(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(out_fd, view):]

    def named(kind: bytes, name: str) -> None:
        raw = name.encode("utf-8", "surrogateescape")[:65535]
        put(kind + struct.pack(">H", len(raw)) + raw)

    def send_file(dir_fd: int, entry: str, name: str) -> None:
        nonlocal files, sent
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                named(b"S", name)
                return
            size = info.st_size
            named(b"F", name)
            put(struct.pack(">Q", size))
            left = size
            while left:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    # The framing cannot be kept: the stream ends here, unfinished (the host refuses it).
                    raise _Cut(f"out/{name} shrank while it was being sent; leave out/ alone once the script ends")
                put(chunk)
                left -= len(chunk)
            files += 1
            sent += size
        finally:
            os.close(fd)

    def walk(dir_fd: int, prefix: str, depth: int) -> None:
        for entry in sorted(os.listdir(dir_fd)):
            name = prefix + entry
            info = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                named(b"L", name)
            elif stat.S_ISDIR(info.st_mode):
                if depth >= _MAX_DEPTH:
                    raise OSError(f"out/{name} is nested deeper than {_MAX_DEPTH} levels")
                sub = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                try:
                    walk(sub, name + "/", depth + 1)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(info.st_mode):
                send_file(dir_fd, entry, name)
            else:
                named(b"S", name)

    try:
        put(b"SRA1")
        try:
            root = os.open("out", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            root = -1
        except OSError:
            # ELOOP or ENOTDIR: out is a link or not a directory.
            if os.path.islink("out"):
                named(b"L", "")
            else:
                named(b"X", "out is not a directory; write the run's files into a directory named out")
            root = -1
        if root >= 0:
            try:
                walk(root, "", 1)
            except _Cut:
                raise
            except OSError as error:
                named(b"X", str(error) if str(error).startswith("out/") else f"reading out/ failed: {error.strerror or error}")
            finally:
                os.close(root)
        put(b"E" + struct.pack(">I", files))
    except BrokenPipeError:
        return  # the host stopped reading: it refused something and says what
    except _Cut as cut:
        sys.stderr.write(f"sandbox-runner: {cut}\n")
        return
    finally:
        os.close(out_fd)
    if target.startswith("file:") and files:
        # The host downloads the file only when told it holds something (one round trip saved).
        sys.stderr.write(f"sandbox-runner-artifacts: {files} {sent}\n")
        sys.stderr.flush()


def main() -> None:
    _setup_logging()
    with open("template.py", "rb") as f:
        source = f.read()
    code = compile(source, "template.py", "exec")
    scope = {"__name__": "__main__", "__file__": "template.py", "__builtins__": __builtins__}
    sys.argv = ["template.py"] + sys.argv[1:]
    try:
        exec(code, scope)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        _fail("The script was interrupted.")
    except MemoryError:
        _fail("The script ran out of memory (the sandbox's memory limit); work on less data at once.")
    except BaseException as error:  # noqa: BLE001 - the sandbox boundary reports every failure
        driver = sys.modules.get("posthog_driver.errors")
        base = getattr(driver, "PostHogError", None) if driver else None
        if base is not None and isinstance(error, base):
            _fail(str(error))
        import traceback

        traceback.print_exc()
        detail = str(error).strip().rstrip(".")
        _fail(f"The script failed: {type(error).__name__}" + (f": {detail}" if detail else "") + ".")
    finally:
        sys.stdout.flush()
        try:
            _send_artifacts()
        except OSError as error:  # the script closed or broke the descriptor: the host sees a cut stream
            sys.stderr.write(f"sandbox-runner: out/ could not be sent: {error.strerror or error}\n")


if __name__ == "__main__":
    main()
