"""``[server] switch_interval_ms``: the serving process's GIL hand-over interval."""

from __future__ import annotations

import sys

import pytest

from appliance.config import load_settings
from web.interpreter import set_switch_interval


@pytest.fixture
def restore_interval():
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_the_setting_sets_the_interpreters_switch_interval(restore_interval, tmp_path):
    settings = load_settings(environ={"FOOTFALL_SERVER_SWITCH_INTERVAL_MS": "2.5"}, data_dir=str(tmp_path))
    assert settings.server.switch_interval_ms == 2.5
    set_switch_interval(settings.server.switch_interval_ms)
    assert sys.getswitchinterval() == pytest.approx(0.0025)


def test_zero_keeps_the_interval_and_the_default_is_one_millisecond(restore_interval, tmp_path):
    sys.setswitchinterval(0.005)
    set_switch_interval(0)
    assert sys.getswitchinterval() == pytest.approx(0.005)
    assert load_settings(environ={}, data_dir=str(tmp_path)).server.switch_interval_ms == 1.0
