"""Shared fixtures: a real Footfall server (granian, real LMDB) on a free loopback port.

``start_server(data_dir)`` runs ``footfall serve`` as a subprocess exactly as a user would,
waits until ``/api/v1/health`` answers, and returns a :class:`ServerHandle` with the admin
password and a bearer token. The session-wide ``server`` fixture shares one for read-mostly
tests; tests that kill or restart a server start their own.
"""

from __future__ import annotations

import pytest

from tests.servers import (  # noqa: F401 - re-exported for tests
    BROWSER_UA,
    FOOTFALL,
    ROOT,
    ServerHandle,
    footfall_cli,
    free_port,
    start_server,
)


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> ServerHandle:
    handle = start_server(tmp_path_factory.mktemp("shared") / "data")
    yield handle
    handle.stop()


@pytest.fixture
def own_server(tmp_path):
    """A server of the test's own, for tests that kill, restart or fill it."""
    handles: list[ServerHandle] = []

    def start(**kwargs) -> ServerHandle:
        handle = start_server(kwargs.pop("data_dir", tmp_path / "data"), **kwargs)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.kill()


@pytest.fixture
def appliance(tmp_path):
    """An opened in-process Appliance on a temporary data dir (no HTTP)."""
    from appliance.config import load_settings
    from appliance.runtime.appliance import Appliance

    settings = load_settings(environ={}, data_dir=str(tmp_path / "data"))
    with Appliance(settings) as opened:
        yield opened
