"""Tries every trick to keep a process of the run alive after the run returns.

1. ptrace the jail's pid 1 and make it call prctl(PR_SET_PDEATHSIG, 0), so it no longer dies
   with bubblewrap (on x86-64: a syscall injected at the `syscall` instruction it waits in);
2. double fork, setsid, ignore SIGTERM/SIGHUP/SIGINT, close every descriptor;
3. the daemon then sleeps; the script itself exits at once.
Prints the pid namespace, the uid and whether the ptrace worked, as JSON.
"""
import ctypes
import json
import os
import signal
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long

NAMES = ("r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss "
         "fs_base gs_base ds es fs gs").split()


class Regs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ulonglong) for n in NAMES]


def clear_parent_death_signal(pid: int) -> str:
    if libc.ptrace(16, pid, None, None) != 0:  # PTRACE_ATTACH
        return "attach errno %d" % ctypes.get_errno()
    os.waitpid(pid, 0x40000000)  # __WALL
    regs = Regs()
    libc.ptrace(12, pid, None, ctypes.byref(regs))  # PTRACE_GETREGS
    saved = Regs.from_buffer_copy(regs)
    word = libc.ptrace(1, pid, ctypes.c_void_p(regs.rip - 2), None) & 0xFFFF  # PTRACE_PEEKTEXT
    if word != 0x050F:
        libc.ptrace(17, pid, None, None)
        return "no syscall instruction"
    regs.rip -= 2
    regs.orig_rax = 0xFFFFFFFFFFFFFFFF
    regs.rax, regs.rdi, regs.rsi = 157, 1, 0  # prctl(PR_SET_PDEATHSIG, 0)
    libc.ptrace(13, pid, None, ctypes.byref(regs))  # PTRACE_SETREGS
    libc.ptrace(9, pid, None, None)  # PTRACE_SINGLESTEP
    os.waitpid(pid, 0x40000000)
    libc.ptrace(12, pid, None, ctypes.byref(regs))
    result = regs.rax
    libc.ptrace(13, pid, None, ctypes.byref(saved))
    libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
    return "prctl returned %d" % ctypes.c_longlong(result).value


report = {"ns": os.readlink("/proc/self/ns/pid"), "uid": os.getuid()}
try:
    report["ptrace"] = clear_parent_death_signal(1)
except OSError as e:
    report["ptrace"] = "error %s" % e
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        os.closerange(0, 1024)
        time.sleep(120)
    os._exit(0)
os.wait()
time.sleep(0.2)
print(json.dumps(report))
