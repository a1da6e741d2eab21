"""The example third-party plugin (examples/footfall-webhook) installed the way a user does it,
into a fresh virtual environment with ``footfall install PATH``, and shown working: the server
started from that environment posts every committed batch of real events to a loopback sink,
retrying with back-off when the sink refuses.

To keep the test quick and offline, the fresh environment is made without pip and sees the
worktree's environment (Footfall, its dependencies, pip and setuptools) through a ``.pth``
file — what ``--system-site-packages`` does for a base interpreter. Only the plugin is
installed into it (``--no-deps``: its dependencies, Footfall and msgspec, are already there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import uuid

import httpx
import pytest

from tests.servers import BROWSER_UA, ROOT, free_port
from tests.sinks import HttpSink

EXAMPLE = ROOT / "examples" / "footfall-webhook"


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    work = tmp_path_factory.mktemp("webhook-venv")
    source = work / "footfall-webhook"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    environment = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True, timeout=60)
    python = environment / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    host = sysconfig.get_paths()["purelib"]
    (work / "venv" / purelib.removeprefix(str(environment) + "/") / "footfall-host.pth").write_text(
        f"import site; site.addsitedir({host!r})\n"
    )
    installed = subprocess.run(
        [str(python), "-m", "appliance.cli", "install", "--no-deps", str(source)],
        capture_output=True, text=True, timeout=180, cwd=work,
        env={**os.environ, "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert list((environment / purelib.removeprefix(str(environment) + "/")).glob("footfall_webhook-0.1.0.dist-info"))
    return work, python


@pytest.fixture(scope="module")
def sink():
    server = HttpSink()
    yield server
    server.close()


@pytest.fixture(scope="module")
def server(venv, sink):
    work, python = venv
    port = free_port()
    log_path = work / "server.log"
    env = {
        **os.environ, "FOOTFALL_DEMO": "true", "FOOTFALL_DEMO_DAYS": "0",
        "FOOTFALL_PLUGIN_WEBHOOK_URL": f"{sink.url}/batches", "FOOTFALL_PLUGIN_WEBHOOK_BACKOFF_SECONDS": "0.05",
    }
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [str(python), "-m", "appliance.cli", "serve", "--data", str(work / "data"), "--port", str(port)],
            cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)  # polling the server's start, as tests/servers.py does
    else:
        process.kill()
        pytest.fail(f"the server did not start:\n{log_path.read_text()}")
    yield url, log_path, work
    os.killpg(process.pid, 2)
    process.wait(timeout=30)


def send(url: str, count: int, tag: str) -> None:
    batch = [
        {"event_type": "page_view", "site": "localhost", "user_id": uuid.uuid4().hex,
         "metadata": {"page_url": f"http://localhost/{tag}/{number}"}}
        for number in range(count)
    ]
    answer = httpx.post(f"{url}/api/v1/events", json=batch, headers={"user-agent": BROWSER_UA})
    assert answer.status_code == 200 and answer.json()["accepted"] == count, answer.text


def paths(received) -> list[str]:
    return [event["path"] for item in received for event in item.body["events"]]


def test_the_installed_plugin_posts_every_committed_batch(server, sink, venv):
    url, log_path, work = server
    _, python = venv
    listed = subprocess.run([str(python), "-m", "appliance.cli", "plugins", "--data", str(work / "other")],
                            capture_output=True, text=True, timeout=60)
    assert "webhook          footfall-webhook 0.1.0   events_committed, shutdown, startup" in listed.stdout

    send(url, 5, "first")
    send(url, 3, "second")

    def arrived(count: int):
        received = sink.wait_for(1)
        while len(paths(received)) < count:
            received = sink.wait_for(len(received) + 1)
        return received

    received = arrived(8)
    assert sorted(paths(received)) == sorted([f"/first/{n}" for n in range(5)] + [f"/second/{n}" for n in range(3)])
    assert all(item.path == "/batches" for item in received)
    assert all(item.body["site_ids"] == [item.body["events"][0]["site_id"]] for item in received)
    first = received[0].body["events"][0]
    assert "ip" not in first and "user_agent" not in first  # what Footfall stores: no address, no UA

    # a refusing endpoint: the batch is retried with back-off and arrives once
    sink.fail_next(2)
    send(url, 2, "retried")
    received = arrived(10)
    assert sink.refused == 2
    assert sorted(path for path in paths(received) if path.startswith("/retried")) == ["/retried/0", "/retried/1"]
    assert "Traceback" not in log_path.read_text()
