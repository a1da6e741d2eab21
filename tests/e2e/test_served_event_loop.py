"""``footfall serve``'s worker runs on uvloop (appliance/cli/serving.py ``event_loop``), unless
``GRANIAN_LOOP`` names another loop."""

from __future__ import annotations

from appliance.cli.serving import event_loop


def test_the_served_worker_runs_on_uvloop(server):
    assert "event loop uvloop.Loop" in server.log()


def test_granian_loop_in_the_environment_wins(monkeypatch):
    monkeypatch.delenv("GRANIAN_LOOP", raising=False)
    assert event_loop() == "uvloop"
    monkeypatch.setenv("GRANIAN_LOOP", "asyncio")
    assert event_loop() == "asyncio"
