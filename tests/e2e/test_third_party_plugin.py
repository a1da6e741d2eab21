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
BUILTINS = {"bots", "geo", "referrers", "useragent", "csv_export", "json_export", "pdf_export"}
DEADLINE_S = 10.0

FOLDER_PLUGIN = '''\
"""A single-file plugin dropped into the plugins folder."""

from appliance.hooks.specs import hookimpl


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
    return {"PYTHONPATH": path, "EXAMPLE_PLUGIN_LOG": str(log), **extra}


def cli_plugins(data_dir: Path, env: dict[str, str]) -> dict[str, str]:
    """``footfall plugins`` as a user runs it: plugin name -> the rest of its line."""
    result = footfall_cli("plugins", data_dir=data_dir, env=env)
    assert result.returncode == 0, result.stderr
    rows = [row.split(None, 1) for row in result.stdout.splitlines() if row.strip()]
    return {row[0]: row[1] if len(row) > 1 else "" for row in rows}


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

    # `footfall plugins` finds the entry point (it is told nothing else about it)
    listed = cli_plugins(data_dir, env)
    assert set(listed) == BUILTINS | {"example"}, listed
    assert listed["example"].split() == [
        "footfall-example-plugin", "0.1.0", "enrich_event,", "events_committed"
    ]

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


def write_folder_plugin(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "folder_example.py").write_text(FOLDER_PLUGIN)
    (folder / "notes.txt").write_text("not a plugin")


def test_single_file_in_the_data_plugins_folder_is_loaded(own_server, tmp_path):
    data_dir = tmp_path / "data"
    write_folder_plugin(data_dir / "plugins")

    listed = cli_plugins(data_dir, {})
    assert set(listed) == BUILTINS | {"folder_example"}, listed
    assert listed["folder_example"].split() == ["plugins", "folder", "enrich_event"]

    server = own_server(data_dir=data_dir)
    with server.client(headers=server.auth()) as client:
        plugins = {plugin["name"]: plugin for plugin in client.get("/api/v1/plugins").json()["data"]}
        assert plugins["folder_example"] == {
            "name": "folder_example", "builtin": False, "package": None, "hooks": ["enrich_event"]
        }
        response = post_event(client, "/folder", campaign="folder")
        assert response.status_code == 200, response.text

        def tagged() -> dict | None:
            items = client.get("/api/v1/live", params={"site": "localhost"}).json()["data"]
            return items[0] if items else None

        item = wait_for(tagged, "the event in the live view")
        assert item["props"] == {"campaign": "folder", "folder_plugin": "seen"}


def test_plugins_directory_setting_names_the_folder(tmp_path):
    folder = tmp_path / "elsewhere"
    write_folder_plugin(folder)
    listed = cli_plugins(tmp_path / "data", {"FOOTFALL_PLUGINS_DIRECTORY": str(folder)})
    assert set(listed) == BUILTINS | {"folder_example"}, listed


def test_disabled_plugins_are_not_loaded(plugin_site, tmp_path):
    data_dir = tmp_path / "data"
    log = tmp_path / "example-plugin.log"
    base = plugin_env(plugin_site, log)

    listed = cli_plugins(data_dir, {**base, "FOOTFALL_PLUGINS_DISABLED": "geo"})
    assert set(listed) == (BUILTINS - {"geo"}) | {"example"}, listed
    # a third-party entry point is disabled by its name like a built-in
    listed = cli_plugins(data_dir, {**base, "FOOTFALL_PLUGINS_DISABLED": "geo,example"})
    assert set(listed) == BUILTINS - {"geo"}, listed
    assert not log.exists()
