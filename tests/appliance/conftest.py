"""Fixtures for the appliance room: a fixture plugin implementing every hook, and appliances to order.

``make_appliance(plugins=[...], **environment)`` opens an Appliance on a fresh data dir with
settings given as ``FOOTFALL_*`` environment variables and extra plugin objects registered on
its plugin manager before ``open()`` calls ``startup``. ``RecordingPlugin`` implements every
hook spec and records each call, so a test can see that every hook fires.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from appliance.config import load_settings
from appliance.hooks.specs import hookimpl
from appliance.runtime.appliance import Appliance
from storage import Store


class RecordingPlugin:
    """Implements every hook in :mod:`appliance.hooks.specs`; records ``(hook, arguments)``."""

    def __init__(
        self, drop_reason: str | None = None, enrich: dict[str, Any] | None = None
    ) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.drop_reason = drop_reason
        self.enrich = enrich

    def called(self, hook: str) -> list[dict[str, Any]]:
        return [arguments for name, arguments in self.calls if name == hook]

    @property
    def hooks_called(self) -> set[str]:
        return {name for name, _ in self.calls}

    @hookimpl
    def startup(self, appliance):
        self.calls.append(("startup", {"appliance": appliance}))

    @hookimpl
    def shutdown(self, appliance):
        self.calls.append(("shutdown", {"appliance": appliance}))

    @hookimpl
    def filter_event(self, event, context):
        self.calls.append(("filter_event", {"event": event, "context": context}))
        return self.drop_reason

    @hookimpl
    def enrich_event(self, event, context):
        self.calls.append(("enrich_event", {"event": event, "context": context}))
        return self.enrich

    @hookimpl
    def events_committed(self, appliance, events):
        self.calls.append(("events_committed", {"appliance": appliance, "events": list(events)}))

    @hookimpl
    def register_exporters(self, appliance):
        self.calls.append(("register_exporters", {"appliance": appliance}))

    @hookimpl
    def register_notifiers(self, appliance):
        self.calls.append(("register_notifiers", {"appliance": appliance}))

    @hookimpl
    def register_backup_targets(self, appliance):
        self.calls.append(("register_backup_targets", {"appliance": appliance}))

    @hookimpl
    def register_alert_kinds(self, appliance):
        self.calls.append(("register_alert_kinds", {"appliance": appliance}))


@pytest.fixture
def recording_plugin() -> RecordingPlugin:
    return RecordingPlugin()


@pytest.fixture
def make_recording_plugin():
    """``make_recording_plugin(drop_reason=..., enrich={...})``: a fixture plugin that answers."""
    return RecordingPlugin


@pytest.fixture
def make_appliance(tmp_path):
    """Open appliances with chosen settings and extra plugins; all are closed after the test."""
    opened: list[Appliance] = []
    numbers = itertools.count()

    def make(plugins=(), data_dir=None, **environment: str) -> Appliance:
        environ = {f"FOOTFALL_{name.upper()}": str(value) for name, value in environment.items()}
        directory = data_dir or tmp_path / f"data-{next(numbers)}"
        appliance = Appliance(load_settings(environ=environ, data_dir=str(directory)), plugins=plugins).open()
        opened.append(appliance)
        return appliance

    yield make
    for appliance in opened:
        appliance.close()


@pytest.fixture
def store(tmp_path):
    """A bare LMDB environment (for parts tested below the appliance)."""
    opened = Store(tmp_path / "lmdb")
    yield opened
    opened.close()
