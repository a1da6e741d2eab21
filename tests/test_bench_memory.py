"""The benchmarks' memory figures for a process group: summed RSS counts a page that two
processes map once a process, the proportional set size (PSS) once in all, and each process
is named by its role in ``footfall serve`` (granian's supervisor, the worker, compaction's
helper)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from benchlib import MemorySampler, group_memory  # noqa: E402

MB = 1 << 20
SIZE_MB = 64

# The group's leader maps a file and reads every page, then starts a child (named like
# compaction's helper on its command line) that maps and reads the same file: 64 MB of page
# cache resident in both.
LEADER = f"""
import mmap, subprocess, sys
path = sys.argv[1]
with open(path, "wb") as out:
    out.write(b"x" * ({SIZE_MB} * 1024 * 1024))
READ = '''
import mmap, sys
with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
total = sum(m[i] for i in range(0, len(m), 4096))
print("ready", flush=True)
sys.stdin.read()
'''
child = subprocess.Popen([sys.executable, "-c", READ, path, "compaction_build"],
                         stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
exec(compile(READ.replace('print("ready", flush=True)', 'child.stdout.readline(); print("ready", flush=True)'),
             "leader", "exec"))
"""


def test_shared_pages_count_once_in_pss_and_roles_name_each_process(tmp_path):
    leader = subprocess.Popen([sys.executable, "-c", LEADER, str(tmp_path / "map")], stdout=subprocess.PIPE,
                              stdin=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert leader.stdout.readline().strip() == "ready"
        memory = group_memory(leader.pid)
        assert set(memory["roles"]) == {"supervisor", "helper"}
        assert memory["roles"]["supervisor"]["file"] > SIZE_MB * MB
        assert memory["roles"]["helper"]["file"] > SIZE_MB * MB
        assert memory["total"] == sum(role["total"] for role in memory["roles"].values())
        # summed RSS holds the file's pages twice; PSS once, half in each process
        assert memory["file"] >= 2 * SIZE_MB * MB
        assert memory["pss_file"] < memory["file"] - SIZE_MB * MB * 0.8
        assert memory["pss"] < memory["total"] - SIZE_MB * MB * 0.8
        assert memory["pss_anon"] <= memory["anon"] + MB

        assert "pss" not in group_memory(leader.pid, proportional=False)

        with MemorySampler(leader.pid, interval=0.01) as sampler:
            deadline = time.monotonic() + 10
            while len(sampler.samples) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
        summary = sampler.summary()
        assert summary["peak_pss_mb"] < summary["peak_mb"] - SIZE_MB * 0.8
        assert set(summary["role_peak_mb"]) == set(summary["at_peak_mb"]) == {"supervisor", "helper"}
        assert summary["at_peak_mb"]["helper"] > SIZE_MB
        assert set(summary["at_peak_anon_mb"]) == {"supervisor", "helper"}
        assert sampler.cpu_seconds > 0
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait(timeout=10)
