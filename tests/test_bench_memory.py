"""The benchmarks' memory figures for a process group: summed RSS counts a page that two
processes map once a process, the proportional set size (PSS) once in all, each process is
named by its role in ``footfall serve`` (granian's supervisor, the worker, compaction's
helper, the PDF helper), and a copy between its fork and its exec is left out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from benchlib import MemorySampler, group_memory, group_rss_bytes  # noqa: E402

MB = 1 << 20
SIZE_MB = 64

# Each process maps the file and reads every page (64 MB of page cache resident in each);
# "fork" then forks a copy of itself that never execs (what /proc shows between
# subprocess.Popen's fork and its exec: the parent's command line and memory).
READ = """
import mmap, os, sys
with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
total = sum(m[i] for i in range(0, len(m), 4096))
if sys.argv[2] == "fork" and os.fork() == 0:
    sys.stdin.read()
    os._exit(0)
print("ready", flush=True)
sys.stdin.read()
"""

# The group's leader (granian's supervisor's place) writes the file, starts a child named
# like compaction's helper on its command line, one named like the PDF helper, and a worker-like
# child that forks, then reads
# the file itself.
LEADER = f"""
import subprocess, sys
path = sys.argv[1]
with open(path, "wb") as out:
    out.write(b"x" * ({SIZE_MB} * 1024 * 1024))
READ = {READ!r}
children = [subprocess.Popen([sys.executable, "-c", READ, path, name], stdout=subprocess.PIPE,
                             stdin=subprocess.PIPE, text=True) for name in ("compaction_build", "plugins.pdf_export", "fork")]
for child in children:
    child.stdout.readline()
sys.argv.append("leader")
exec(compile(READ, "leader", "exec"))
"""


def test_shared_pages_count_once_in_pss_and_roles_name_each_process(tmp_path):
    leader = subprocess.Popen([sys.executable, "-c", LEADER, str(tmp_path / "map")], stdout=subprocess.PIPE,
                              stdin=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert leader.stdout.readline().strip() == "ready"
        memory = group_memory(leader.pid)
        assert set(memory["roles"]) == {"supervisor", "helper", "pdf", "worker"}
        assert memory["forking"] == 1  # the worker's copy: left out of every sum
        for role in ("supervisor", "helper", "pdf", "worker"):
            assert memory["roles"][role]["file"] > SIZE_MB * MB
        assert memory["total"] == sum(role["total"] for role in memory["roles"].values())
        # summed RSS holds the file's pages four times; PSS once, a quarter in each process
        assert memory["file"] >= 4 * SIZE_MB * MB
        assert memory["pss_file"] < memory["file"] - 3 * SIZE_MB * MB * 0.8
        assert memory["pss"] < memory["total"] - 3 * SIZE_MB * MB * 0.8
        assert memory["pss_anon"] <= memory["anon"] + MB
        summed = group_rss_bytes(leader.pid)
        assert abs(summed["total"] - memory["total"]) < 4 * MB  # the same processes, read again
        assert "pss" not in group_memory(leader.pid, proportional=False)

        with MemorySampler(leader.pid, interval=0.01) as sampler:
            deadline = time.monotonic() + 10
            while len(sampler.samples) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
        summary = sampler.summary()
        assert summary["peak_pss_mb"] < summary["peak_mb"] - 2 * SIZE_MB * 0.8
        roles = {"supervisor", "helper", "pdf", "worker"}
        assert set(summary["role_peak_mb"]) == set(summary["at_peak_mb"]) == set(summary["at_peak_anon_mb"]) == roles
        assert summary["at_peak_mb"]["helper"] > SIZE_MB
        assert summary["forking_seen"] == summary["samples"]
        assert sampler.cpu_seconds > 0
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait(timeout=10)
