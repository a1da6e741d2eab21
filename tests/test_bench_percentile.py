"""The benchmarks' nearest-rank percentile: the figures every bench script reports."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from benchlib import percentile  # noqa: E402


def test_p95_of_twenty_runs_is_the_nineteenth_not_the_slowest():
    runs = [float(value) for value in range(1, 21)]
    assert percentile(runs, 0.95) == 19.0
    assert percentile(runs, 0.5) == 10.0


@pytest.mark.parametrize(("count", "fraction", "rank"), [
    (100, 0.99, 99), (100, 0.95, 95), (101, 0.99, 100), (1, 0.99, 1), (3, 0.5, 2), (7, 0.0, 1), (7, 1.0, 7),
])
def test_nearest_rank(count, fraction, rank):
    assert percentile([float(value) for value in range(1, count + 1)], fraction) == rank


def test_no_values_give_nan():
    assert math.isnan(percentile([], 0.95))
