"""``footfall serve``'s worker applies ``[server] switch_interval_ms`` (web/interpreter.py)."""

from __future__ import annotations


def test_the_served_worker_sets_the_default_switch_interval(server):
    assert "GIL switch interval: 1.00 ms" in server.log()
