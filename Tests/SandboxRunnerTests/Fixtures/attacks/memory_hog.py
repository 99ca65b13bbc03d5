"""Eight processes each take 400 MB at once; reports how many held it at the same time."""
import json
import os
import select
import signal
import time

N, SIZE = 8, 400 << 20
r, w = os.pipe()
kids = []
for _ in range(N):
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            block = b"x" * SIZE  # every page touched
            os.write(w, b"1")
            time.sleep(60)
        except MemoryError:
            os.write(w, b"0")
        os._exit(0)
    kids.append(pid)
os.close(w)
holders, dead = set(), set()
deadline = time.time() + 30
order = []
while time.time() < deadline and len(holders | dead) < N:
    ready, _, _ = select.select([r], [], [], 0.1)
    if ready:
        order.append(os.read(r, 64))
    for pid in kids:
        if pid in dead:
            continue
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            dead.add(pid)
    reported = sum(chunk.count(b"1") for chunk in order)
    alive = [p for p in kids if p not in dead]
    if reported >= len(alive) and reported > 0 and len(dead) + reported >= N:
        break
time.sleep(0.5)
for pid in kids:  # who is still alive now, holding its 400 MB
    if pid not in dead and os.waitpid(pid, os.WNOHANG)[0]:
        dead.add(pid)
alive = [p for p in kids if p not in dead]
print(json.dumps({"aliveHolding": len(alive), "reported": sum(c.count(b"1") for c in order), "killed": len(dead)}))
for pid in alive:
    os.kill(pid, signal.SIGKILL)
