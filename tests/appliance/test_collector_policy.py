"""The writing process's garbage-collector policy (appliance/runtime/collector.py)."""

from __future__ import annotations

import gc

import pytest

from appliance.runtime import collector


@pytest.fixture
def thresholds():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_an_opened_appliance_collects_the_young_generation_less_often(thresholds, make_appliance):
    gc.set_threshold(700, 10, 10)
    make_appliance()
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, 10, 10)


@pytest.mark.parametrize("young", [0, collector.YOUNG_THRESHOLD * 5])
def test_a_disabled_or_higher_threshold_is_left_alone(thresholds, young):
    gc.set_threshold(young, 7, 3)
    assert collector.apply() == (young, 7, 3)
