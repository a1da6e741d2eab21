"""Starting real Footfall servers for tests: ``footfall serve`` on a free loopback port.

``start_server(data_dir)`` runs the CLI as a subprocess exactly as a user would, waits until
``/api/v1/health`` answers, and returns a :class:`ServerHandle` with the admin password and
a bearer token. Imported by ``tests/conftest.py`` and by tests that need module-scoped servers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
FOOTFALL = [sys.executable, "-m", "appliance.cli"]
BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerHandle:
    data_dir: Path
    port: int
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    password: str = ""
    token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kwargs) -> httpx.Client:
        headers = {"user-agent": BROWSER_UA, **kwargs.pop("headers", {})}
        return httpx.Client(base_url=self.url, headers=headers, **{"timeout": 30, **kwargs})

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the whole process group (granian's main process and its worker)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGINT)


def footfall_cli(*args: str, data_dir: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*FOOTFALL, *args, "--data", str(data_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def start_server(data_dir: Path, env: dict[str, str] | None = None, port: int | None = None) -> ServerHandle:
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"server-{data_dir.name}-{port}.log"
    # The demo site, but empty: tests count exactly what they send (FOOTFALL_DEMO_DAYS=30
    # in ``env`` gives a server a month of generated traffic).
    full_env = {**os.environ, "FOOTFALL_DEMO": "true", "FOOTFALL_DEMO_DAYS": "0", **(env or {})}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [*FOOTFALL, "serve", "--data", str(data_dir), "--port", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
    handle = ServerHandle(data_dir=data_dir, port=port, process=process, log_path=log_path, env=full_env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{handle.log()}")
        try:
            if httpx.get(f"{handle.url}/api/v1/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    else:
        handle.kill()
        raise RuntimeError(f"server did not become healthy:\n{handle.log()}")
    handle.password = (data_dir / "first-admin-password.txt").read_text().strip()
    response = httpx.post(
        f"{handle.url}/api/v1/authenticate", json={"username": "admin", "password": handle.password}
    )
    response.raise_for_status()
    handle.token = response.json()["token"]
    return handle


def run_benchmark(
    script: str, *arguments: str, results_path: Path, limit_seconds: int
) -> tuple[dict, str]:
    """Run ``scripts/<script>`` with its results file, require exit 0 and no lost event, and
    return the figures it wrote and its printed table (killed past ``limit_seconds``)."""
    import json

    result = subprocess.run(
        [str(ROOT / "scripts" / script), *arguments, "--json", str(results_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=limit_seconds,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "lost events: 0" in result.stdout, output
    results = json.loads(results_path.read_text())
    assert results["ok"] is True
    assert results["lost_events"] == 0
    environment = results["environment"]
    assert environment["cpu_count"] >= 1
    assert environment["python"]
    for package in ("litestar", "granian", "msgspec", "lmdb"):
        assert environment["packages"][package], package
    return results, result.stdout
