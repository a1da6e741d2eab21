"""Shared pieces of Footfall's benchmark scripts (``scripts/bench``, ``scripts/bench_ingest``).

Servers on loopback (``footfall serve`` and the bare-ASGI ceiling app, each in its own process
group), wrk runs with ``scripts/wrk/ingest.lua`` and their figures, the lost-event check (the
events wrk saw acknowledged against ``/api/v1/health`` and the stats), the on-disk size of
each LMDB database, CPU and resident memory of a server's process group read from ``/proc``,
a dashboard login, and the machine and package versions every result file carries.

Standard library only at import time: the scripts import this module before re-executing
themselves under the project's ``.venv`` (:func:`reexec_under_venv`).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PYTHON = str(VENV / "bin" / "python") if (VENV / "bin" / "python").exists() else sys.executable
FOOTFALL = VENV / "bin" / "footfall"
LUA = ROOT / "scripts" / "wrk" / "ingest.lua"
PACED_LUA = ROOT / "scripts" / "wrk" / "paced.lua"  # ingest.lua with a pause between requests
CEILING_APP = ROOT / "scripts" / "bench_ceiling_app.py"
SITE = "localhost"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PACKAGES = ("litestar", "granian", "msgspec", "lmdb", "hyperloglog", "numpy", "ua-parser")


class BenchError(RuntimeError):
    """Setup failed (a server would not start, wrk printed nothing usable...)."""


def reexec_under_venv(script: str, flag: str) -> None:
    """Run ``script`` again under the project's virtualenv (granian, lmdb and the app live
    there) unless it already runs there; ``flag`` names the variable that stops a loop."""
    if Path(sys.prefix).resolve() == VENV.resolve() or not (VENV / "bin" / "python").exists():
        return
    if os.environ.get(flag):
        sys.exit(f"{Path(script).name}: re-exec under .venv did not take effect")
    os.environ[flag] = "1"
    python = str(VENV / "bin" / "python")
    os.execv(python, [python, str(Path(script).resolve()), *sys.argv[1:]])


def ensure_py_spy() -> Path:
    """py-spy for ``--profile`` runs: the project's ``profile`` extra, installed into .venv
    by scripts/setup the first time a profile is asked for (it is no dependency of the app)."""
    spy = VENV / "bin" / "py-spy"
    if not spy.exists():
        subprocess.run([str(ROOT / "scripts" / "setup"), "profile"], check=True)
    return spy


# -- small helpers ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(method: str, url: str, body: dict | None = None, token: str = "", timeout: float = 10) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("User-Agent", "footfall-bench")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _group_members(pgid: int) -> list[tuple[str, list[str]]]:
    """(pid, /proc/PID/stat fields from field 3 on) of every live process in group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is field 3 (state): pgrp is field 5, utime 14, stime 15
        if int(fields[2]) == pgid:
            members.append((entry, fields))
    return members


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid``."""
    return sum(int(fields[11]) + int(fields[12]) for _, fields in _group_members(pgid)) / CLK_TCK


def _status_memory(pid: str) -> dict[str, int]:
    """One process's ``total`` resident memory and its ``anon`` (heap) and ``file`` parts
    (file-backed pages: the LMDB map, shared libraries) from /proc/PID/status, in bytes."""
    figures = {"total": 0, "anon": 0, "file": 0}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "RssAnon:", "RssFile:", "RssShmem:")):
                name, value = line.split(":", 1)
                key = {"VmRSS": "total", "RssAnon": "anon"}.get(name, "file")
                figures[key] += int(value.split()[0]) * 1024
    return figures


def group_rss_bytes(pgid: int) -> dict[str, int]:
    """Resident memory of process group ``pgid``, summed over its processes but a copy between
    its fork and its exec (:func:`group_roles`): ``total`` and its ``anon`` (heap) and ``file``
    parts (file-backed pages: the LMDB map, shared libraries)."""
    totals = {"total": 0, "anon": 0, "file": 0}
    for pid, role in group_roles(pgid):
        if role != FORKING:
            for key, value in _status_memory(pid).items():
                totals[key] += value
    return totals


_ROLLUP = {"Pss": "pss", "Pss_Anon": "pss_anon", "Pss_File": "pss_file"}


def process_pss(pid: str) -> dict[str, int]:
    """One process's proportional set size from /proc/PID/smaps_rollup, in bytes: ``pss``
    (each resident page shared with other processes counted as 1/n of it) and its
    ``pss_anon`` and ``pss_file`` parts. Empty when the process is gone. Reading it walks the
    process's page tables: milliseconds for a big map, so samplers read it less often."""
    figures: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            name, _, value = line.partition(":")
            if name in _ROLLUP:
                figures[_ROLLUP[name]] = int(value.split()[0]) * 1024
    return figures


FORKING = "forking"


def _cmdline(pid: str) -> bytes | None:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return cmdline.read()
    return None


def group_roles(pgid: int) -> list[tuple[str, str]]:
    """(pid, role) of every live process of ``footfall serve``'s group ``pgid``: granian's
    ``supervisor`` (the group's leader), its serving ``worker``, compaction's ``helper`` and
    the PDF helper ``pdf`` (by their command lines), or ``forking``: a child of a process other than the leader that still
    has its parent's command line, between ``subprocess.Popen``'s fork and its exec, which
    /proc shows with its parent's memory (it shares it: counted, it would add the worker's
    whole RSS again to a sum; docs/performance.md, twenty-first part)."""
    roles = []
    for pid, fields in _group_members(pgid):
        parent, command = fields[1], _cmdline(pid)
        if int(pid) == pgid:
            roles.append((pid, "supervisor"))
        elif command and b"compaction_build" in command:
            roles.append((pid, "helper"))
        elif command and b"plugins.pdf_export" in command:
            roles.append((pid, "pdf"))
        elif int(parent) != pgid and command is not None and command == _cmdline(parent):
            roles.append((pid, FORKING))
        else:
            roles.append((pid, "worker"))
    return roles


def group_memory(pgid: int, proportional: bool = True) -> dict:
    """:func:`group_rss_bytes` of the group, each role's RSS and heap (``roles``: role ->
    ``{"total", "anon", "file"}``), and when ``proportional`` the group's proportional set
    size (``pss``, ``pss_anon``, ``pss_file``): pages two of its processes both map, such as
    the LMDB map's pages the worker and a helper both read, counted once in all, not once a
    process. A copy between its fork and its exec is left out and counted in ``forking``."""
    totals: dict = {"total": 0, "anon": 0, "file": 0, "roles": {}}
    if proportional:
        totals.update(pss=0, pss_anon=0, pss_file=0)
    for pid, name in group_roles(pgid):
        if name == FORKING:
            totals["forking"] = totals.get("forking", 0) + 1
            continue
        status = _status_memory(pid)
        if not status["total"]:
            continue
        role = totals["roles"].setdefault(name, {"total": 0, "anon": 0, "file": 0})
        for key, value in status.items():
            totals[key] += value
            role[key] += value
        if proportional:
            for key, value in process_pss(pid).items():
                totals[key] += value
    return totals


class MemoryCap:
    """A memory control group with a hard limit, for a server started inside it
    (:meth:`wrap`): what a small server's memory allows. The kernel charges the group its
    processes' heap and the page cache their files bring in (the LMDB map's pages), and
    reclaims that page cache within the limit, so a run inside it says whether the server
    works in that much memory, not only what it keeps resident when nothing presses it.
    Needs root and the cgroup v1 memory controller or cgroup v2 (``available`` says which)."""

    V1 = Path("/sys/fs/cgroup/memory")
    V2 = Path("/sys/fs/cgroup")

    def __init__(self, limit_mb: int) -> None:
        self.limit_mb = limit_mb
        name = f"footfall-bench-{os.getpid()}-{time.monotonic_ns()}"
        if (self.V1 / "memory.limit_in_bytes").exists():
            self.version, self.path = 1, self.V1 / name
        elif (self.V2 / "cgroup.controllers").exists() and "memory" in (self.V2 / "cgroup.controllers").read_text():
            self.version, self.path = 2, self.V2 / name
        else:
            raise BenchError("no memory control group here (cgroup v1 memory controller or cgroup v2)")
        self.path.mkdir()
        limit = str(limit_mb << 20)
        if self.version == 1:
            (self.path / "memory.limit_in_bytes").write_text(limit)
            swap = self.path / "memory.memsw.limit_in_bytes"
            if swap.exists():
                swap.write_text(limit)  # no swap beyond it either
        else:
            (self.path / "memory.max").write_text(limit)
            (self.path / "memory.swap.max").write_text("0")

    def wrap(self, command: list[str]) -> list[str]:
        """``command`` started inside the group (its children follow it there)."""
        procs = str(self.path / "cgroup.procs")
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', procs, *command]

    def figures(self) -> dict:
        """The group's peak charge (heap plus page cache) in MB, whether it reached the limit
        (the kernel then reclaimed page cache to stay under it; cgroup v1's ``failcnt`` stays 0
        while reclaim succeeds, so the peak is what tells), and processes the kernel killed
        for memory in it."""
        def read(name: str) -> str:
            path = self.path / name
            return path.read_text() if path.exists() else ""
        if self.version == 1:
            oom = dict(line.split() for line in read("memory.oom_control").splitlines() if line.strip())
            peak, kills = int(read("memory.max_usage_in_bytes") or 0), int(oom.get("oom_kill", 0))
        else:
            events = dict(line.split() for line in read("memory.events").splitlines() if line.strip())
            peak, kills = int(read("memory.peak") or 0), int(events.get("oom_kill", 0))
        return {"limit_mb": self.limit_mb, "peak_charged_mb": round(peak / 2**20, 1),
                "at_limit": peak >= (self.limit_mb - 1) << 20, "oom_kills": kills}

    def remove(self) -> None:
        for _ in range(50):  # once its processes have exited
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


class MemorySampler:
    """Samples a process group's resident memory every ``interval`` seconds on a thread;
    :meth:`mark` starts a named phase so peaks and medians can be read per phase."""

    def __init__(self, pgid: int, interval: float = 0.25, pss_interval: float = 1.0) -> None:
        self.pgid = pgid
        self.interval = interval
        self.pss_interval = pss_interval
        self.samples: list[tuple[float, str, dict]] = []  # (when, phase, group_memory)
        self.phase = ""
        self.cpu_seconds = 0.0  # the sampler's own CPU (reading smaps_rollup walks page tables)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def mark(self, phase: str) -> None:
        self.phase = phase

    def _run(self) -> None:
        last_pss, highs = 0.0, {}
        while not self._stop.is_set():
            began, now = time.process_time(), time.monotonic()
            summed = group_rss_bytes(self.pgid)["total"]
            # the proportional figures once a second, and whenever the summed RSS reaches a
            # new high of its phase, so the peaks are read and the page walks stay cheap
            proportional = now - last_pss >= self.pss_interval or summed > highs.get(self.phase, 0)
            rss = group_memory(self.pgid, proportional)
            if proportional:
                last_pss = now
                highs[self.phase] = max(highs.get(self.phase, 0), rss["total"])
            self.cpu_seconds += time.process_time() - began
            if rss["total"]:
                self.samples.append((now, self.phase, rss))
            self._stop.wait(self.interval)

    def summary(self, phases: tuple[str, ...] | None = None) -> dict:
        """Peak and median (MB) of the samples in ``phases`` (all when None); ``steady`` is
        the median over the second half of those samples (after warm-up growth)."""
        chosen = [rss for _, phase, rss in self.samples if phases is None or phase in phases]
        if not chosen:
            return {}
        mb = 1 << 20
        second_half = chosen[len(chosen) // 2 :]
        peak = max(chosen, key=lambda rss: rss["total"])
        return {
            "samples": len(chosen),
            "peak_mb": round(peak["total"] / mb, 1),
            "peak_anon_mb": round(max(rss["anon"] for rss in chosen) / mb, 1),
            "peak_file_mb": round(max(rss["file"] for rss in chosen) / mb, 1),
            "steady_mb": round(statistics.median(rss["total"] for rss in second_half) / mb, 1),
            "steady_anon_mb": round(statistics.median(rss["anon"] for rss in second_half) / mb, 1),
            # proportional set size (pages the group's processes share counted once), from
            # the samples that read it; each role's own peak RSS, and the roles' RSS and heap
            # in the sample of the summed peak
            **self._proportional(chosen),
            "role_peak_mb": {role: round(max(rss["roles"].get(role, {}).get("total", 0) for rss in chosen) / mb, 1)
                             for role in sorted({role for rss in chosen for role in rss["roles"]})},
            "at_peak_mb": {role: round(part["total"] / mb, 1) for role, part in sorted(peak["roles"].items())},
            "at_peak_anon_mb": {role: round(part["anon"] / mb, 1) for role, part in sorted(peak["roles"].items())},
            "forking_seen": sum(1 for rss in chosen if rss.get("forking")),
        }

    @staticmethod
    def _proportional(chosen: list[dict]) -> dict:
        read = [rss for rss in chosen if "pss" in rss]
        if not read:
            return {}
        mb = 1 << 20
        return {
            "peak_pss_mb": round(max(rss["pss"] for rss in read) / mb, 1),
            "peak_pss_anon_mb": round(max(rss["pss_anon"] for rss in read) / mb, 1),
            "peak_pss_file_mb": round(max(rss["pss_file"] for rss in read) / mb, 1),
            "steady_pss_mb": round(statistics.median(rss["pss"] for rss in read[len(read) // 2 :]) / mb, 1),
        }


def filesystem_of(path: Path) -> str:
    """The file system type of the mount holding ``path`` (fsync cost depends on it)."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            parts = line.split()
            if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (``fraction`` 0.95 for p95): the smallest
    value with at least ``fraction`` of the values at or below it, so the p95 of 20 runs is the
    19th, not the slowest."""
    if not sorted_values:
        return float("nan")
    rank = math.ceil(round(fraction * len(sorted_values), 9))  # round: 0.95 * 20 is 18.999999...
    return sorted_values[max(1, min(len(sorted_values), rank)) - 1]


def timing_summary(milliseconds: list[float]) -> dict:
    ordered = sorted(milliseconds)
    return {
        "runs": len(ordered),
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(percentile(ordered, 0.95), 2),
        "p99_ms": round(percentile(ordered, 0.99), 2),
        "min_ms": round(ordered[0], 2),
        "max_ms": round(ordered[-1], 2),
    }


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    log_path: Path
    data_dir: Path | None = None
    token: str = ""
    password: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.process.pid)

    def rss(self) -> dict[str, int]:
        return group_rss_bytes(self.process.pid)

    def worker_pids(self) -> list[int]:
        """Every process of the server's group (granian's main process and its worker)."""
        return [int(pid) for pid, _ in _group_members(self.process.pid)]

    def stop(self, timeout: float = 30) -> None:
        """SIGINT to the process group (granian commits the open batch and exits)."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            raise BenchError(f"{self.name} did not stop within {timeout} s") from None


def start_process(name: str, command: list[str], port: int, log_path: Path, env: dict[str, str],
                  ready: str, limit: float = 60, cwd: Path = ROOT) -> Server:
    """Start ``command`` in ``cwd`` (another checkout's own root when timing that checkout:
    ``python -m granian`` imports the app from the working directory first)."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = Server(name=name, port=port, process=process, log_path=log_path)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{name} exited early:\n{server.log()}")
        try:
            request = urllib.request.Request(server.url + ready, method="GET")
            with urllib.request.urlopen(request, timeout=1):
                return server
        except urllib.error.HTTPError:
            return server  # it answers: good enough for the ceiling app
        except (urllib.error.URLError, OSError):
            time.sleep(0.02)
    server.stop()
    raise BenchError(f"{name} did not answer within {limit:.0f} s:\n{server.log()}")


def start_ceiling(log_path: Path) -> Server:
    """The bare ASGI app answering 202, on ``footfall serve``'s granian settings."""
    port = free_port()
    return start_process(
        "ceiling app", [PYTHON, str(CEILING_APP), "--port", str(port)], port, log_path, dict(os.environ), "/"
    )


# -- wrk ---------------------------------------------------------------------------------------
def find_wrk(install: bool = False) -> str | None:
    """The wrk binary; with ``install``, apt-get installs Debian's ``wrk`` when it is missing
    (needs root, as ``scripts/system-packages`` does)."""
    found = shutil.which("wrk") or ("/usr/bin/wrk" if Path("/usr/bin/wrk").exists() else None)
    if found or not install:
        return found
    if shutil.which("apt-get") is None:
        return None
    print("wrk is missing: installing Debian's wrk with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None:
        return None
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"]):
        if subprocess.run([*prefix, *command], env=env).returncode != 0:
            return None
    return shutil.which("wrk")


def wrk_version(wrk: str) -> str:
    result = subprocess.run([wrk, "-v"], capture_output=True, text=True)
    match = re.search(r"wrk (\S+)", result.stdout + result.stderr)
    return match.group(1) if match else "unknown"


def run_wrk(wrk: str, url: str, connections: int, duration: int, lua_args: list[str], script: Path = LUA) -> dict:
    command = [
        wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "60s", "--latency",
        "-s", str(script), url, "--", *lua_args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=duration + 120)
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            figures = json.loads(line.removeprefix("BENCH_JSON "))
            figures["command"] = " ".join(command)
            return figures
    raise BenchError(f"wrk gave no figures (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")


# -- Footfall ----------------------------------------------------------------------------------
def start_footfall(data_dir: Path, log_path: Path, env: dict[str, str] | None = None, limit: float = 60) -> Server:
    """``footfall serve`` on a free port with the demo site, empty (so the store holds only
    what the benchmark sent), and 127.0.0.1 as a trusted proxy (wrk's X-Forwarded-For is the
    client address); logs in as the first admin."""
    port = free_port()
    full_env = {
        **os.environ,
        "FOOTFALL_DEMO": "true",
        "FOOTFALL_DEMO_DAYS": "0",
        "FOOTFALL_SERVER_TRUSTED_PROXIES": "127.0.0.1",
        **(env or {}),
    }
    full_env.pop("FOOTFALL_CONFIG", None)
    command = [str(FOOTFALL), "serve", "--data", str(data_dir), "--port", str(port)]
    server = start_process("footfall", command, port, log_path, full_env, "/api/v1/health", limit)
    server.data_dir = data_dir
    server.password = (data_dir / "first-admin-password.txt").read_text().strip()
    answer = http_json("POST", server.url + "/api/v1/authenticate", {"username": "admin", "password": server.password})
    server.token = answer["token"]
    return server


class Answer:
    """A response read to its end: ``status_code``, ``headers``, ``content``, ``text``, ``json()``."""

    def __init__(self, status: int, headers: list[tuple[str, str]], content: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.content)


class Client:
    """A keep-alive HTTP/1.1 client for one loopback server (the standard library's
    http.client, so the benchmarks need nothing beyond Footfall's own dependencies): default
    headers, session cookies kept from ``Set-Cookie``, redirects not followed, and a
    line-by-line reader for Server-Sent Events on a connection of its own."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, timeout: float = 300) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = {"User-Agent": "footfall-bench", **(headers or {})}
        self.timeout = timeout
        self.cookies: dict[str, str] = {}
        self._connection: http.client.HTTPConnection | None = None
        self._streams: list[http.client.HTTPConnection] = []

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {**self.headers, **(extra or {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        return headers

    def _remember_cookies(self, headers: list[tuple[str, str]]) -> None:
        for name, value in headers:
            if name.lower() == "set-cookie":
                pair = value.split(";", 1)[0]
                if "=" in pair:
                    key, _, cookie = pair.partition("=")
                    self.cookies[key.strip()] = cookie.strip()

    def request(self, method: str, path: str, params: dict | None = None, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        if params:
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(params)
        for attempt in (1, 2):  # a keep-alive connection the server closed is opened again once
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._connection.request(method, path, body, self._headers(headers))
                response = self._connection.getresponse()
                content = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._connection.close()
                self._connection = None
                if attempt == 2:
                    raise
                continue
            answer = Answer(response.status, response.getheaders(), content)
            self._remember_cookies(answer.headers)
            if response.will_close:
                self._connection.close()
                self._connection = None
            return answer
        raise AssertionError("unreachable")

    def get(self, path: str, params: dict | None = None, headers: dict[str, str] | None = None) -> Answer:
        return self.request("GET", path, params, headers=headers)

    def post(self, path: str, json_body=None, form: dict | None = None, headers: dict[str, str] | None = None) -> Answer:
        extra = dict(headers or {})
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            extra.setdefault("Content-Type", "application/x-www-form-urlencoded")
        else:
            body = json.dumps(json_body).encode()
            extra.setdefault("Content-Type", "application/json")
        return self.request("POST", path, body=body, headers=extra)

    def stream_lines(self, path: str, read_timeout: float = 60):
        """Yield the decoded lines of a streaming GET (SSE) until the server ends it or
        :meth:`close` is called from another thread."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=read_timeout)
        self._streams.append(connection)
        connection.request("GET", path, headers=self._headers({"Accept": "text/event-stream"}))
        response = connection.getresponse()
        if response.status != 200:
            raise BenchError(f"GET {path}: {response.status}")
        while True:
            line = response.readline()
            if not line:
                return
            yield line.decode("utf-8", errors="replace").rstrip("\r\n")

    def close(self) -> None:
        for connection in [self._connection, *self._streams]:
            if connection is not None and connection.sock is not None:
                with contextlib.suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked on it
                connection.close()
        self._connection = None
        self._streams.clear()


def dashboard_login(client: Client, password: str, username: str = "admin") -> None:
    """Log ``client`` in through the login form, as a browser does: the session cookie then
    opens dashboard pages and the live stream."""
    form = client.get("/login")
    match = re.search(r'name="csrf" value="([^"]+)"', form.text)
    if match is None:
        raise BenchError(f"no CSRF field on /login ({form.status_code})")
    answer = client.post("/login", form={"username": username, "password": password, "csrf": match.group(1)})
    if answer.status_code != 303:
        raise BenchError(f"dashboard login failed: {answer.status_code} {answer.text[:200]}")


@dataclass
class Counts:
    events_accepted: int
    batches_committed: int
    pageviews: int
    drops: dict[str, int] = field(default_factory=dict)


def read_counts(server: Server) -> Counts:
    health = http_json("GET", server.url + "/api/v1/health")
    today = datetime.now(UTC).date()
    query = (
        f"site={SITE}&start_date={(today - timedelta(days=1)).isoformat()}"
        f"&end_date={(today + timedelta(days=1)).isoformat()}"
    )
    aggregate = http_json("GET", f"{server.url}/api/v1/stats/aggregate?{query}", token=server.token)
    return Counts(
        events_accepted=health["events_accepted"],
        batches_committed=health["batches_committed"],
        pageviews=aggregate["data"]["pageviews"],
        drops=dict(health.get("drops") or {}),
    )


#: the gauges of the caches [memory] budget_mb bounds, and what else grows with traffic
CACHE_GAUGES = ("footfall_column_cache_bytes", "footfall_sketch_cache_bytes", "footfall_sketch_cache_entries",
                "footfall_report_memo_bytes", "footfall_open_visits", "footfall_string_table_entries")


def cache_gauges(server: Server) -> dict[str, float]:
    """The caches' gauges from ``/metrics`` (:data:`CACHE_GAUGES`), by name."""
    request = urllib.request.Request(server.url + "/metrics", headers={"Authorization": f"Bearer {server.token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read().decode()
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in CACHE_GAUGES:
            found[name] = float(value)
    return found


def settled_counts(server: Server, quiet_seconds: float = 0.5, limit: float = 20) -> Counts:
    """Counts once events_accepted stopped moving (requests still in flight when wrk stopped
    are processed and committed by the server after wrk has gone)."""
    deadline = time.monotonic() + limit
    last = read_counts(server)
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        current = read_counts(server)
        if current.events_accepted != last.events_accepted or current.pageviews != last.pageviews:
            last, stable_since = current, time.monotonic()
        elif time.monotonic() - stable_since >= quiet_seconds:
            return current
    return last


# -- wrk scenarios -----------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    target: str  # "ceiling" or "footfall"
    mode: str  # single, batch, collect
    connections: int
    batch: int = 1
    path: str = "/api/v1/events"

    def lua_args(self, seed: int) -> list[str]:
        args = [f"mode={self.mode}", f"seed={seed}", f"site={SITE}", f"host={SITE}"]
        if self.mode == "batch":
            args += [f"batch={self.batch}", "bodies=8"]
        return args


def summarise(scenario: Scenario, wrk: dict, cpu_server: float, cpu_wrk: float) -> dict:
    seconds = wrk["duration_us"] / 1e6
    latency = wrk["latency_us"]
    statuses = {int(code): count for code, count in wrk["statuses"].items()}
    non_2xx = sum(count for code, count in statuses.items() if not 200 <= code < 300)
    socket_errors = sum(wrk["errors"][kind] for kind in ("connect", "read", "write", "timeout"))
    row = {
        "name": scenario.name,
        "target": scenario.target,
        "mode": scenario.mode,
        "path": scenario.path,
        "connections": scenario.connections,
        "batch_size": scenario.batch,
        "duration_s": round(seconds, 3),
        "requests": wrk["requests"],
        "requests_per_s": round(wrk["requests"] / seconds, 1),
        "latency_ms": {
            key: round(latency[key] / 1000, 3) for key in ("min", "mean", "p50", "p75", "p90", "p99", "p999", "max")
        },
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
        "non_2xx": non_2xx,
        "socket_errors": {kind: wrk["errors"][kind] for kind in ("connect", "read", "write", "timeout")},
        "errors": non_2xx + socket_errors,
        "ignored": wrk["ignored"],
        "sent": wrk["sent"],
        "answered": wrk["answered"],
        "in_flight_at_stop": max(0, wrk["sent"] - wrk["answered"]),
        "server_cpu_percent": round(100 * cpu_server / seconds, 1),
        "wrk_cpu_percent": round(100 * cpu_wrk / seconds, 1),
        "wrk_command": wrk["command"],
    }
    if scenario.target == "footfall":
        row["acknowledged_events"] = wrk["accepted"]
        row["events_per_s"] = round(wrk["accepted"] / seconds, 1)
    return row


def check_counts(row: dict, before: Counts, after: Counts, batch: int) -> None:
    """Acknowledged events must all be stored; stored - acknowledged may only be the events of
    requests wrk left in flight at its deadline (committed, answer never read)."""
    acknowledged = row["acknowledged_events"]
    stored = after.events_accepted - before.events_accepted
    pageviews = after.pageviews - before.pageviews
    unacknowledged_limit = row["in_flight_at_stop"] * batch
    lost = max(0, acknowledged - stored, acknowledged - pageviews)
    problems = []
    if lost:
        problems.append(f"{lost} acknowledged events missing")
    if row["errors"] or row["ignored"]:
        problems.append(f"{row['errors']} errors, {row['ignored']} ignored answers")
    if pageviews != stored:
        problems.append(f"pageviews rose by {pageviews} but events_accepted by {stored}")
    if stored - acknowledged > unacknowledged_limit:
        problems.append(
            f"{stored - acknowledged} more events stored than acknowledged, but only "
            f"{row['in_flight_at_stop']} requests were in flight"
        )
    commits = after.batches_committed - before.batches_committed
    drops = {
        reason: after.drops.get(reason, 0) - before.drops.get(reason, 0)
        for reason in after.drops
        if after.drops.get(reason, 0) != before.drops.get(reason, 0)
    }
    row.update(
        {
            "stored_events": stored,
            "pageviews_increase": pageviews,
            "unacknowledged_stored": stored - acknowledged,
            "lost_events": lost,
            "commits": commits,
            "events_per_commit": round(stored / commits, 1) if commits else 0,
            "drops": drops,
            "check": "ok" if not problems else "; ".join(problems),
            "ok": not problems,
        }
    )


def measure(wrk: str, server: Server, scenario: Scenario, duration: int, seed: int) -> dict:
    """One wrk run against ``server``, summarised; Footfall runs are checked for lost events."""
    before = settled_counts(server) if scenario.target == "footfall" else None
    load = os.getloadavg()[0]
    cpu_server = server.cpu_seconds()
    cpu_wrk = children_cpu_seconds()
    figures = run_wrk(wrk, server.url + scenario.path, scenario.connections, duration, scenario.lua_args(seed))
    cpu_wrk = children_cpu_seconds() - cpu_wrk
    cpu_server = server.cpu_seconds() - cpu_server
    row = summarise(scenario, figures, cpu_server, cpu_wrk)
    row["loadavg_1m_before"] = round(load, 2)
    if before is not None:
        check_counts(row, before, settled_counts(server), scenario.batch)
    return row


# -- storage -----------------------------------------------------------------------------------
def storage_figures(data_dir: Path) -> dict:
    """Open the stopped server's store in a separate process and read page counts."""
    code = r"""
import json, sys
from storage.environment import DATABASES, Store
store = Store(sys.argv[1])
info, stat = store.env.info(), store.env.stat()
out = {
    "databases": {name.decode(): {"bytes": store.database_bytes(name), "entries": store.entries(name)}
                  for name in DATABASES},
    "page_size": stat["psize"],
    "used_bytes": (info["last_pgno"] + 1) * stat["psize"],
    "map_bytes": info["map_size"],
}
store.close()
print(json.dumps(out))
"""
    path = data_dir / "footfall.lmdb"
    result = subprocess.run([PYTHON, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise BenchError(f"could not read the store:\n{result.stderr}")
    figures = json.loads(result.stdout)
    events = figures["databases"]["events"]["entries"]
    data_file = path / "data.mdb"
    stat = data_file.stat()
    figures["events"] = events
    figures["data_mdb_bytes"] = stat.st_size
    figures["data_mdb_disk_bytes"] = stat.st_blocks * 512
    per = (lambda value: round(value / events, 1)) if events else (lambda value: None)
    for item in figures["databases"].values():
        item["bytes_per_event"] = per(item["bytes"])
    figures["data_mdb_bytes_per_event"] = per(stat.st_size)
    figures["used_bytes_per_event"] = per(figures["used_bytes"])
    figures["named_databases_bytes"] = sum(item["bytes"] for item in figures["databases"].values())
    # LMDB's free pages (copy-on-write leaves them behind), the main DB and the meta pages
    figures["other_bytes"] = figures["used_bytes"] - figures["named_databases_bytes"]
    return figures


# -- output ------------------------------------------------------------------------------------
def environment(wrk: str) -> dict:
    """The machine and the versions a result was measured with."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": packages,
        "wrk": wrk_version(wrk),
    }
