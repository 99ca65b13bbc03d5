"""Attacks on e2b-local's sandboxes from inside, through the official SDK."""

from __future__ import annotations

import ctypes
import os

from e2b import Sandbox

from e2b_support import KEY, start_server, stop_server

SYS_ADD_KEY, SYS_KEYCTL = 248, 250          # x86_64
KEY_SPEC_SESSION_KEYRING, KEYCTL_SEARCH, KEYCTL_READ = -3, 10, 11

STEAL = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
kid = libc.syscall(250, 10, ctypes.c_int(-3), b"user", b"e2b-local-keyring-probe", 0)
buf = ctypes.create_string_buffer(64)
n = libc.syscall(250, 11, ctypes.c_long(kid), buf, 64) if kid > 0 else -1
print(buf.raw[:n].decode() if n > 0 else "none")
"""


def test_a_sandbox_cannot_read_the_servers_session_keyring() -> None:
    """The attack: a key in the session keyring of whoever started e2b-local (an operator's
    login, a CI job) is inherited by every process it starts; a script that searches its session
    keyring reads it. Each sandbox must start with a fresh, empty session keyring."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    secret = b"operator-secret-" + os.urandom(4).hex().encode()
    kid = libc.syscall(SYS_ADD_KEY, b"user", b"e2b-local-keyring-probe", secret, len(secret),
                       ctypes.c_int(KEY_SPEC_SESSION_KEYRING))
    assert kid > 0, f"add_key failed (errno {ctypes.get_errno()})"
    srv = start_server()  # inherits this process's session keyring
    saved = {k: os.environ.get(k) for k in ("E2B_API_URL", "E2B_SANDBOX_URL", "E2B_API_KEY")}
    os.environ.update(E2B_API_URL=srv.url, E2B_SANDBOX_URL=srv.url, E2B_API_KEY=KEY)
    try:
        sandbox = Sandbox.create()
        try:
            out = sandbox.commands.run(f"python3 -c '{STEAL}'").stdout.strip()
        finally:
            sandbox.kill()
        assert out == "none", "a script read the key of the server's session keyring"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stop_server(srv)
        libc.syscall(SYS_KEYCTL, 3, ctypes.c_long(kid))  # KEYCTL_REVOKE
