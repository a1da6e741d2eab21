"""``footfall serve``'s start: a production start is empty, a stop during start-up is prompt
(even as PID 1 of a PID namespace, as in a container), Ctrl-C stops the worker through
granian's main process, and ``footfall health`` probes it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from appliance.runtime.ownership import WriterLock
from tests.servers import FOOTFALL, ROOT, footfall_cli, free_port

sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import group_roles  # noqa: E402  (the bench's roles of footfall serve's processes)


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without any FOOTFALL_* setting: the built-in defaults, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FOOTFALL_")}
    return {**env, **extra}


def _serve(data: Path, port: int, env: dict[str, str], prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    log = open(data.parent / f"serve-{port}.log", "wb")  # noqa: SIM115 - the child keeps it
    try:
        return subprocess.Popen([*prefix, *FOOTFALL, "serve", "--data", str(data), "--port", str(port)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    finally:
        log.close()


def _log(data: Path, port: int) -> str:
    return (data.parent / f"serve-{port}.log").read_text(errors="replace")


def _wait_healthy(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("the server did not become healthy")


def _wait_for_bootstrap(data: Path, process: subprocess.Popen, seconds: float = 30) -> None:
    """Until the start-up holds the data dir's lock (inside the bootstrap)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        lock = data / "footfall.lock"
        if lock.exists() and lock.read_text().strip():
            return
        time.sleep(0.01)
    raise AssertionError("the start-up never took the lock")


def test_first_start_creates_the_admin_only_and_says_how_to_add_a_site(tmp_path):
    data, port = tmp_path / "data", free_port()
    process = _serve(data, port, _clean_env())  # no FOOTFALL_DEMO: the default is a production start
    try:
        _wait_healthy(port, process)
        health = httpx.get(f"http://127.0.0.1:{port}/api/v1/health").json()
        assert (health["sites"], health["events_accepted"]) == (0, 0), health
        assert footfall_cli("site", "list", data_dir=data, env=_clean_env()).stdout == ""
        log = _log(data, port)
        password = (data / "first-admin-password.txt").read_text().strip()
        assert f"Admin login: admin / {password}" in log
        assert "No sites yet" in log and "docker exec CONTAINER footfall site add example.com" in log, log
        assert 'data-site="YOUR-DOMAIN"' in log and "demo" not in log.lower(), log
        assert oct((data / "first-admin-password.txt").stat().st_mode & 0o777) == "0o600"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def test_demo_setting_still_makes_the_demo_site(tmp_path):
    """What ./scripts/run turns on for development."""
    data, port = tmp_path / "data", free_port()
    process = _serve(data, port, _clean_env(FOOTFALL_DEMO="true", FOOTFALL_DEMO_DAYS="1"))
    try:
        _wait_healthy(port, process)
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/health").json()["sites"] == 1
        log = _log(data, port)
        assert "Created the demo site 'localhost'" in log and "No sites yet" not in log, log
        assert 'data-site="localhost"' in log
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert "FOOTFALL_DEMO=\"${FOOTFALL_DEMO:-true}\"" in (ROOT / "scripts" / "run").read_text()


def _stop_during_start_up(tmp_path: Path, prefix: tuple[str, ...]) -> tuple[int, float, str]:
    """Start with a long bootstrap (90 days of demo traffic), SIGTERM the footfall process
    once it holds the lock; (exit status, seconds to exit, log)."""
    data, port = tmp_path / "data", free_port()
    process = _serve(data, port, _clean_env(FOOTFALL_DEMO="true", FOOTFALL_DEMO_DAYS="90"), prefix)
    try:
        _wait_for_bootstrap(data, process)
        target = process.pid
        if prefix:  # unshare --fork: footfall is unshare's child, PID 1 inside
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
            target = int(children[0])
        began = time.monotonic()
        os.kill(target, signal.SIGTERM)
        try:
            status = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"SIGTERM ignored during start-up:\n{_log(data, port)}")
        seconds = time.monotonic() - began
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    WriterLock(data, "test").acquire().release()  # the lock was released: the data dir is free
    return status, seconds, _log(data, port)


def test_sigterm_during_start_up_stops_at_once_and_cleanly(tmp_path):
    status, seconds, log = _stop_during_start_up(tmp_path, ())
    assert status == 0, log
    assert seconds < 3, (seconds, log)
    assert "SIGTERM during start-up: stopping" in log, log
    assert "Traceback" not in log, log


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux's unshare")
def test_sigterm_during_start_up_stops_pid_1_of_a_pid_namespace(tmp_path):
    """A container's PID 1 ignores every signal it has no handler for: this is what made
    `docker stop` during start-up wait 10 s and end in SIGKILL."""
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a PID namespace here: {probe.stderr.decode().strip()}")
    status, seconds, log = _stop_during_start_up(tmp_path, ("unshare", "--pid", "--fork"))
    assert status == 0, log
    assert seconds < 3, (seconds, log)
    assert "SIGTERM during start-up: stopping" in log, log


def _signals(pid: int, field: str) -> int:
    """A signal mask of ``/proc/PID/status`` (``SigIgn``, ``SigCgt``): bit N-1 for signal N."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_ctrl_c_stops_the_worker_through_granian_and_closes_cleanly(tmp_path):
    """Ctrl-C sends SIGINT to the whole process group, granian's worker included, and granian's
    main process then sends the worker SIGTERM: two stop signals close together left granian's
    worker stuck (4 of ~66 group stops of a smoke server), killed 8 s later without the
    appliance's close. The worker ignores SIGINT, so its one stop signal is the main process's
    SIGTERM. The race itself is too rare to fail this test every time; the signal masks are not."""
    data, port = tmp_path / "data", free_port()
    process = _serve(data, port, _clean_env(FOOTFALL_DEMO="true", FOOTFALL_DEMO_DAYS="0"))
    try:
        _wait_healthy(port, process)
        (worker,) = [int(pid) for pid, role in group_roles(process.pid) if role == "worker"]
        assert _signals(worker, "SigIgn") & 1 << (signal.SIGINT - 1), "the worker still takes SIGINT"
        assert _signals(worker, "SigCgt") & 1 << (signal.SIGTERM - 1), "the worker lost its SIGTERM handler"
        assert not _signals(process.pid, "SigIgn") & 1 << (signal.SIGINT - 1), "granian's main ignores SIGINT"
        sent = httpx.post(f"http://127.0.0.1:{port}/api/event", content='{"n":"pageview","u":"http://localhost/a","d":"localhost"}',
                          headers={"content-type": "text/plain", "user-agent": "Mozilla/5.0 (X11; Linux x86_64) "
                                   "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"})
        assert sent.status_code == 202, sent.text
        os.killpg(process.pid, signal.SIGINT)
        status = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    log = _log(data, port)
    assert status == 0, log
    assert "refused to gracefully stop" not in log, log
    assert "Traceback" not in log, log
    WriterLock(data, "test").acquire().release()  # the data dir is free


def test_footfall_health_probes_the_server_the_settings_describe(own_server, tmp_path):
    server = own_server()
    healthy = footfall_cli("health", "--port", str(server.port), data_dir=server.data_dir)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.strip() == (
        f"healthy: http://127.0.0.1:{server.port}/ready answered 200, status ok"
    )
    # the port from the settings, as in the container (FOOTFALL_SERVER_PORT)
    by_setting = footfall_cli("health", data_dir=server.data_dir, env={"FOOTFALL_SERVER_PORT": str(server.port)})
    assert by_setting.returncode == 0, by_setting.stdout
    nobody = footfall_cli("health", "--port", str(free_port()), data_dir=server.data_dir)
    assert nobody.returncode == 1 and nobody.stdout.startswith("unhealthy: http://127.0.0.1:"), nobody.stdout
    bad_setting = footfall_cli("health", data_dir=server.data_dir, env={"FOOTFALL_NO_SUCH": "1"})
    assert bad_setting.returncode == 1 and "unhealthy" in bad_setting.stdout  # Docker reserves 2
