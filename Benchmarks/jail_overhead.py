#!/usr/bin/env python3
"""Runner overhead over the bare floor, measured in one run, with the hardened defaults.

Times, over >= 20 runs each (median, interleaved so drift hits all alike), a trivial script:
  plain          python3 script.py
  bwrap-bare     bwrap with the runner's options but no seccomp filter (to price seccomp)
  bwrap          bare bwrap with exactly a run's options: the same namespaces, read-only root,
                 tmpfs workspace with the bundle put in from memfds, the seccomp filter on a
                 descriptor, the same rlimits and an unprivileged uid (`doctor
                 --print-bubblewrap-arguments` prints them); no supervision, no cgroups
  runner         sandbox-runner exec script.py (validate, bundle, jail, pidfd kill of the jail's
                 init, cgroups where the machine has them, result)
  runner-nocg    the same with SANDBOX_RUNNER_CGROUPS=0 (to price the cgroups)
  cli-start      sandbox-runner --version (the CLI's own start-up, part of every runner figure)
and the runner's peak RSS while a script prints 1 GiB.
Targets: runner - bwrap <= 15 ms median; runner peak RSS <= 64 MiB during the flood.
Exits 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JAIL_UID = 300_000
HIGH_FD = 200  # where the floor's descriptors wait before the child moves them to 3, 4, ...


def timed(argv: list[str], cwd: str | None = None, env: dict | None = None, **kw) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, **kw)
    return (time.perf_counter() - start) * 1000


class Floor:
    """Bare bubblewrap with a run's options: fresh memfds per start, placed at 3, 4, ... in the child."""

    def __init__(self, plan: dict, seccomp: bool):
        self.command = list(plan["command"])
        self.contents = [base64.b64decode(d) for d in plan["descriptors"]]
        self.env = plan["environment"]
        if not seccomp:  # descriptor 3 is the filter: drop the option, keep the numbering
            i = self.command.index("--seccomp")
            del self.command[i:i + 2]
        limits = {"memory": 1 << 30, "cpu": 120, "nproc": 64, "fsize": 256 << 20, "nofile": 256}
        self.limits = limits

    def run(self) -> float:
        start = time.perf_counter()
        fds = []
        for i, data in enumerate(self.contents):
            fd = os.memfd_create("bench", os.MFD_CLOEXEC)
            os.write(fd, data)
            os.lseek(fd, 0, os.SEEK_SET)
            os.dup2(fd, HIGH_FD + i, inheritable=False)
            os.close(fd)
            fds.append(HIGH_FD + i)
        n, lim = len(fds), self.limits
        uid = JAIL_UID + random.randrange(500_000)  # a fresh uid per run, as the runner does (RLIMIT_NPROC counts per uid)

        def child() -> None:
            for i in range(n):
                os.dup2(HIGH_FD + i, 3 + i)  # inheritable
            for res, value in ((resource.RLIMIT_AS, lim["memory"]), (resource.RLIMIT_CPU, lim["cpu"]),
                               (resource.RLIMIT_NPROC, lim["nproc"]), (resource.RLIMIT_FSIZE, lim["fsize"]),
                               (resource.RLIMIT_NOFILE, lim["nofile"]), (resource.RLIMIT_CORE, 0)):
                resource.setrlimit(res, (value, value))
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)

        try:
            r = subprocess.run(self.command, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=child, close_fds=False, cwd="/")  # Python's own descriptors are not inheritable
            if r.returncode != 0:
                raise RuntimeError(f"the floor (bare bwrap) failed with {r.returncode}: {r.stderr.decode(errors='replace')[-500:]}")
        finally:
            for fd in fds:
                os.close(fd)
        return (time.perf_counter() - start) * 1000


def peak_rss_kib(argv: list[str]) -> tuple[int, float, dict]:
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        result = json.loads(out.read())
    return usage.ru_maxrss, time.perf_counter() - start, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build/release/sandbox-runner"))
    args = ap.parse_args()
    binary = args.binary
    if not os.path.exists(binary):
        print(f"build first: {binary} is missing (make release)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("run as root: the floor drops to an unprivileged uid the way the runner does", file=sys.stderr)
        return 2

    work = tempfile.mkdtemp(prefix="jail-bench-")
    os.chmod(work, 0o755)
    failed = False
    try:
        script = os.path.join(work, "script.py")
        with open(script, "w") as f:
            f.write("print('ok')\n")
        flood = os.path.join(work, "flood.py")
        with open(flood, "w") as f:
            f.write("import sys\nb = b'y' * 65536\nfor _ in range(16384):\n    sys.stdout.buffer.write(b)\n")
        plan = json.loads(subprocess.check_output([binary, "doctor", "--print-bubblewrap-arguments", script]))
        floor, bare = Floor(plan, seccomp=True), Floor(plan, seccomp=False)
        plain = ["/usr/bin/python3", "-u", "-B", "-s", script]
        runner = [binary, "exec", script, "--json"]
        env_nocg = dict(os.environ, SANDBOX_RUNNER_CGROUPS="0")
        cases = {
            "plain": lambda: timed(plain, cwd=work),
            "bwrap-bare": bare.run,
            "bwrap": floor.run,
            "runner": lambda: timed(runner, cwd=work),
            "runner-nocg": lambda: timed(runner, cwd=work, env=env_nocg),
            "cli-start": lambda: timed([binary, "--version"], cwd=work),
        }
        cgroups_on = "cgroups: on" in subprocess.run([binary, "doctor"], capture_output=True, text=True).stdout
        for run in cases.values():  # warm caches
            run()
        samples: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.runs):
            for k, run in cases.items():
                samples[k].append(run())
        med = {k: statistics.median(v) for k, v in samples.items()}
        overhead = med["runner"] - med["bwrap"]
        load = os.getloadavg()[0]
        print(f"trivial script, median of {args.runs} runs each (cgroups {'on' if cgroups_on else 'unavailable'}; "
              f"load average {load:.1f} on {os.cpu_count()} CPUs):")
        for k in cases:
            print(f"  {k:12s} {med[k]:7.1f} ms")
        ok = overhead <= 15
        failed |= not ok
        print(f"  runner over bare bwrap (same options): {overhead:+.1f} ms  ({med['runner'] / med['bwrap']:.2f}x)  "
              f"target <= 15 ms: {'PASS' if ok else 'FAIL'}")
        print(f"  seccomp filter (bwrap - bwrap-bare):   {med['bwrap'] - med['bwrap-bare']:+.1f} ms")
        print(f"  cgroups (runner - runner-nocg):        {med['runner'] - med['runner-nocg']:+.1f} ms")
        print(f"  of the overhead, CLI start-up:         {med['cli-start']:+.1f} ms; the run path itself: "
              f"{overhead - med['cli-start']:+.1f} ms")
        print(f"  bwrap over plain python:               {med['bwrap'] - med['plain']:+.1f} ms  ({med['bwrap'] / med['plain']:.2f}x)")

        rss, secs, result = peak_rss_kib([binary, "exec", flood, "--json", "--timeout", "120"])
        if not (result["success"] and result["truncated"]):
            print(f"  the flood run did not complete: {result['error']}", file=sys.stderr)
            return 1
        ok = rss <= 64 * 1024
        failed |= not ok
        print(f"1 GiB of output: runner peak RSS {rss / 1024:.1f} MiB in {secs:.1f} s (kept {len(result['output'])} bytes, "
              f"truncated)  target <= 64 MiB: {'PASS' if ok else 'FAIL'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
