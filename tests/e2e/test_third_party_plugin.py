"""Third-party plugins, the way users add them: a pip-installed package and a plugins folder.

``tests/fixtures/footfall_example_plugin`` is a real distribution (setuptools, entry point
``example`` in the ``footfall`` group). It is pip-installed into a private ``--target``
directory that only the server's ``PYTHONPATH`` names, so nothing leaks into the project's
environment. The tests check that ``footfall plugins`` and ``GET /api/v1/plugins`` list it,
that its hooks run on real events (``enrich_event`` visible in the live view,
``events_committed`` counting every committed event), that a lone ``*.py`` file in
``<data>/plugins`` (or ``FOOTFALL_PLUGINS_DIRECTORY``) is loaded, and that disabled plugins
are not.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, footfall_cli

FIXTURE = ROOT / "tests" / "fixtures" / "footfall_example_plugin"
BUILTINS = {"bots", "geo", "referrers", "useragent"}
DEADLINE_S = 10.0

FOLDER_PLUGIN = '''\
"""A single-file plugin dropped into the plugins folder."""

from appliance.hookspecs import hookimpl


@hookimpl
def enrich_event(event, context):
    return {"props": {**event.props, "folder_plugin": "seen"}}
'''


def wait_for(probe: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}; last probe: {last!r}")


def _builds_without_isolation() -> bool:
    """setuptools builds wheels by itself from 70.1 on; before that it needs ``wheel``."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    version = tuple(int(part) for part in importlib.metadata.version("setuptools").split(".")[:2])
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The example plugin pip-installed into a directory of its own (a ``--target`` site)."""
    work = tmp_path_factory.mktemp("example-plugin")
    source = work / "source"  # builds write build/ and *.egg-info next to the sources
    shutil.copytree(FIXTURE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = work / "site"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site)]
    if _builds_without_isolation():
        command.append("--no-build-isolation")
    result = subprocess.run(
        [*command, str(source)], capture_output=True, text=True, timeout=180, cwd=work
    )
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    assert (site / "footfall_example_plugin.py").is_file()
    assert list(site.glob("footfall_example_plugin-0.1.0.dist-info"))
    return site


def plugin_env(site: Path, log: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    return {"PYTHONPATH": path, "FOOTFALL_EXAMPLE_PLUGIN_LOG": str(log), **extra}


def cli_plugins(data_dir: Path, env: dict[str, str]) -> dict[str, dict]:
    result = footfall_cli("plugins", "--json", data_dir=data_dir, env=env)
    assert result.returncode == 0, result.stderr
    return {plugin["name"]: plugin for plugin in json.loads(result.stdout)}


def post_event(client: httpx.Client, path: str, **metadata: Any) -> httpx.Response:
    return client.post(
        "/api/v1/events",
        json={
            "event_type": "page_view",
            "site": "localhost",
            "metadata": {"page_url": f"http://localhost{path}", **metadata},
        },
    )


def test_pip_installed_plugin_is_listed_and_runs_on_real_events(own_server, plugin_site, tmp_path):
    log = tmp_path / "example-plugin.log"
    env = plugin_env(plugin_site, log)
    data_dir = tmp_path / "data"

    # `footfall plugins` finds the entry point (and is told nothing else about it)
    result = footfall_cli("plugins", data_dir=data_dir, env=env)
    assert result.returncode == 0, result.stderr
    line = next((row for row in result.stdout.splitlines() if row.split()[:1] == ["example"]), None)
    assert line is not None, result.stdout
    assert "footfall-example-plugin 0.1.0" in line
    assert "enrich_event" in line and "events_committed" in line
    listed = cli_plugins(data_dir, env)
    assert set(listed) == BUILTINS | {"example"}
    # without the PYTHONPATH the package is not importable, so it is not loaded
    assert "example" not in cli_plugins(data_dir, {})

    server = own_server(env=env, data_dir=data_dir)
    with server.client() as client:
        assert client.get("/api/v1/plugins").status_code == 401
        answer = client.get("/api/v1/plugins", headers=server.auth())
        assert answer.status_code == 200, answer.text
        plugins = {plugin["name"]: plugin for plugin in answer.json()["data"]}
        assert set(plugins) == BUILTINS | {"example"}
        assert plugins["example"] == {
            "name": "example",
            "builtin": False,
            "package": "footfall-example-plugin 0.1.0",
            "hooks": ["enrich_event", "events_committed"],
        }
        assert all(plugins[name]["builtin"] for name in BUILTINS)

        # real events: singles and one batch
        sent = 0
        for number in range(12):
            response = post_event(client, f"/plugin/{number}", campaign=f"c{number}")
            assert response.status_code == 200, response.text
            sent += 1
        batch = client.post(
            "/api/v1/events",
            json=[
                {"event_type": "page_view", "site": "localhost",
                 "metadata": {"page_url": f"http://localhost/plugin/batch/{number}", "campaign": "batch"}}
                for number in range(8)
            ],
        )
        assert batch.status_code == 200, batch.text
        assert batch.json()["accepted"] == 8
        sent += 8

        # events_committed runs after the commit (and after the answer): one line per batch
        def logged() -> list[int] | None:
            counts = [int(line) for line in log.read_text().split()] if log.exists() else []
            return counts if sum(counts) >= sent else None

        counts = wait_for(logged, f"the events_committed log to count {sent} events")
        assert sum(counts) == sent, counts
        assert all(count > 0 for count in counts)
        assert len(counts) <= 13  # 12 single requests and one batch: never more batches

        # enrich_event's property is on every event, next to the sender's own properties
        def live_items() -> list[dict] | None:
            response = client.get(
                "/api/v1/live", params={"site": "localhost", "limit": 100}, headers=server.auth()
            )
            assert response.status_code == 200, response.text
            items = response.json()["data"]
            return items if len(items) >= sent else None

        items = wait_for(live_items, f"{sent} events in the live view")
        assert len(items) == sent
        for item in items:
            assert item["props"]["example_plugin"] == "seen", item
        campaigns = sorted(item["props"]["campaign"] for item in items)
        assert campaigns == sorted([f"c{number}" for number in range(12)] + ["batch"] * 8)
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("route", ["data-plugins-folder", "FOOTFALL_PLUGINS_DIRECTORY"])
def test_single_file_in_the_plugins_folder_is_loaded(own_server, tmp_path, route):
    data_dir = tmp_path / "data"
    if route == "data-plugins-folder":
        folder = data_dir / "plugins"
        env: dict[str, str] = {}
    else:
        folder = tmp_path / "elsewhere"
        env = {"FOOTFALL_PLUGINS_DIRECTORY": str(folder)}
    folder.mkdir(parents=True)
    (folder / "folder_example.py").write_text(FOLDER_PLUGIN)
    (folder / "notes.txt").write_text("not a plugin")

    result = footfall_cli("plugins", data_dir=data_dir, env=env)
    assert result.returncode == 0, result.stderr
    line = next((row for row in result.stdout.splitlines() if row.startswith("folder_example")), None)
    assert line is not None, result.stdout
    assert "plugins folder" in line and "enrich_event" in line
    listed = cli_plugins(data_dir, env)
    assert set(listed) == BUILTINS | {"folder_example"}
    assert listed["folder_example"]["builtin"] is False
    assert listed["folder_example"]["package"] is None

    server = own_server(env=env, data_dir=data_dir)
    with server.client() as client:
        names = {plugin["name"] for plugin in client.get("/api/v1/plugins", headers=server.auth()).json()["data"]}
        assert "folder_example" in names
        response = post_event(client, "/folder", campaign="folder")
        assert response.status_code == 200, response.text

        def tagged() -> dict | None:
            items = client.get("/api/v1/live", params={"site": "localhost"}, headers=server.auth()).json()["data"]
            return items[0] if items else None

        item = wait_for(tagged, "the event in the live view")
        assert item["props"] == {"campaign": "folder", "folder_plugin": "seen"}


def test_disabled_plugins_are_not_loaded(own_server, plugin_site, tmp_path):
    data_dir = tmp_path / "data"
    log = tmp_path / "example-plugin.log"
    base = plugin_env(plugin_site, log)

    assert set(cli_plugins(data_dir, base)) == BUILTINS | {"example"}
    assert set(cli_plugins(data_dir, {**base, "FOOTFALL_PLUGINS_DISABLED": "geo"})) == (BUILTINS - {"geo"}) | {"example"}
    # a third-party entry point is disabled by its name like a built-in
    assert set(cli_plugins(data_dir, {**base, "FOOTFALL_PLUGINS_DISABLED": "geo,example"})) == BUILTINS - {"geo"}

    result = footfall_cli("plugins", data_dir=data_dir, env={**base, "FOOTFALL_PLUGINS_DISABLED": "geo"})
    assert result.returncode == 0, result.stderr
    assert not any(row.split()[:1] == ["geo"] for row in result.stdout.splitlines()), result.stdout

    # and the server honours it too: no example hook runs on committed events
    server = own_server(env={**base, "FOOTFALL_PLUGINS_DISABLED": "geo,example"}, data_dir=data_dir)
    with server.client() as client:
        names = {plugin["name"] for plugin in client.get("/api/v1/plugins", headers=server.auth()).json()["data"]}
        assert names == BUILTINS - {"geo"}
        assert post_event(client, "/disabled").status_code == 200
        item = wait_for(
            lambda: client.get("/api/v1/live", params={"site": "localhost"}, headers=server.auth()).json()["data"],
            "the event in the live view",
        )[0]
        assert "example_plugin" not in item["props"]
    assert not log.exists()
