"""Calls a jailed script must not get, each reported as the errno it got (0 when it worked).

KEY_DESCRIPTION below is replaced by the test with the description of a key it added to the
session keyring the runner was started in.
"""
import ctypes
import json
import mmap
import os
import signal

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
KEY_DESCRIPTION = "sandbox-runner-test-key"


def call(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a & 0xFFFFFFFFFFFFFFFF) for a in args])
    return (0, r) if r >= 0 else (ctypes.get_errno(), r)


def in_child(body):
    """Runs body in a child; returns the signal that killed it, or its exit status as a string."""
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else "exit %d" % os.WEXITSTATUS(status)


out = {}
# keyctl(KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", description, 0), then KEYCTL_READ.
typ, desc = ctypes.c_char_p(b"user"), ctypes.c_char_p(KEY_DESCRIPTION.encode())
r = libc.syscall(ctypes.c_long(250), ctypes.c_long(10), ctypes.c_long(-3), typ, desc, ctypes.c_long(0))
out["keyctl_search"] = 0 if r >= 0 else ctypes.get_errno()
if r >= 0:
    buf = ctypes.create_string_buffer(256)
    n = libc.syscall(ctypes.c_long(250), ctypes.c_long(11), ctypes.c_long(r), buf, ctypes.c_long(256))
    out["key_payload"] = buf.raw[:max(0, n)].decode(errors="replace")
try:  # what the keyrings show without keyctl: only keys this process may view
    with open("/proc/keys") as f:
        out["proc_keys_shows_key"] = KEY_DESCRIPTION in f.read()
except OSError as e:
    out["proc_keys_shows_key"] = "errno %d" % e.errno
out["keyctl_read_own_session"] = call(250, 0, 0xFFFFFFFFFFFFFFFD, 0)[0]  # KEYCTL_GET_KEYRING_ID @s
out["add_key"] = call(248, 0, 0, 0, 0, 0)[0]
out["unshare_user"] = call(272, 0x10000000)[0]
out["unshare_net"] = call(272, 0x40000000)[0]
e, r = call(56, 0x10000000 | signal.SIGCHLD, 0, 0, 0, 0)  # clone: a child that worked leaves at once
if r == 0:
    os._exit(0)
if r > 0:
    os.waitpid(r, 0)
out["clone_newuser"] = e
out["io_uring_setup"] = call(425, 8, 0)[0]
out["mount"] = call(165, 0, 0, 0, 0, 0)[0]
out["bpf"] = call(321, 0, 0, 0)[0]
out["perf_event_open"] = call(298, 0, 0, 0, 0, 0)[0]
out["userfaultfd"] = call(323, 0)[0]
out["personality_no_aslr"] = call(135, 0x0040000)[0]
try:
    with open("/planted", "w") as f:
        f.write("x")
    out["write_root"] = 0
except OSError as e:
    out["write_root"] = e.errno
# Another ABI: an x32 getpid (syscall number with bit 30) must not run around the filter.
out["x32_syscall"] = in_child(lambda: libc.syscall(ctypes.c_long(0x40000000 | 39)))


def int80():
    code = bytes([0xB8, 0x14, 0, 0, 0, 0xCD, 0x80, 0xC3])  # mov eax, 20 (i386 getpid); int 0x80; ret
    m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    m.write(code)
    ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))()


out["i386_syscall"] = in_child(int80)
print(json.dumps(out, sort_keys=True))
