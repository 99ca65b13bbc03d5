"""Weak mode: races the runner's removal of the workspace. A daemon (setsid, deaf to SIGTERM and
SIGHUP, its descriptors closed) keeps swapping the workspace's directories for symbolic links to
CANARY, a host directory the jail user cannot write; the script itself exits at once."""
import json
import os
import signal
import time

CANARY = "/nonexistent-canary"
os.mkdir("t")
names = []
for i in range(500):
    d = os.path.join(os.getcwd(), "t", "d%d" % i)
    os.mkdir(d)
    with open(os.path.join(d, "precious"), "w") as f:
        f.write("x")
    names.append(d)
print(json.dumps({"workspace": os.getcwd(), "uid": os.getuid()}), flush=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        os.closerange(0, 1024)
        end = time.time() + 15
        while time.time() < end:
            for d in names:
                try:
                    os.rename(d, d + ".x")
                    os.symlink(CANARY, d)
                except OSError:
                    pass
            for d in names:
                try:
                    os.unlink(d)
                    os.rename(d + ".x", d)
                except OSError:
                    pass
        os._exit(0)
    os._exit(0)
os.wait()
