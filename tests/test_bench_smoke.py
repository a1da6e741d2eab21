"""The ingest benchmark runs end to end in quick mode and loses no event.

Runs ``scripts/bench_ingest --quick --json <tmp>`` (a ceiling app and a real Footfall server
under wrk, two seconds per scenario) and checks the figures it writes. Skipped without wrk.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.servers import run_benchmark

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "scripts" / "bench_ingest"
LIMIT_SECONDS = 60

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


@pytest.mark.timeout(LIMIT_SECONDS + 30)
def test_quick_benchmark_reports_figures_and_loses_nothing(tmp_path):
    results, printed = run_benchmark(
        "bench_ingest", "--quick", results_path=tmp_path / "results.json", limit_seconds=LIMIT_SECONDS
    )
    assert results["timestamp"]

    rows = results["scenarios"]
    ceiling = [row for row in rows if row["target"] == "ceiling"]
    footfall = [row for row in rows if row["target"] == "footfall"]
    assert ceiling and ceiling[0]["requests_per_s"] > 0
    assert {row["mode"] for row in footfall} >= {"single", "batch"}
    for row in footfall:
        assert row["requests"] > 0, row
        assert row["requests_per_s"] > 0, row
        assert row["events_per_s"] > 0, row
        assert 0 < row["latency_ms"]["p50"] <= row["latency_ms"]["p99"], row
        assert row["ratio_to_ceiling"] > 0, row
        assert row["errors"] == 0, row
        assert row["lost_events"] == 0, row
        assert row["ok"] is True, row
        # every acknowledged event is stored and counted as a page view
        assert row["stored_events"] >= row["acknowledged_events"] > 0, row
        assert row["pageviews_increase"] == row["stored_events"], row
    batch = next(row for row in footfall if row["mode"] == "batch")
    assert batch["batch_size"] == 100
    assert batch["acknowledged_events"] == 100 * batch["statuses"]["200"]

    storage = results["storage"]
    total_stored = sum(row["stored_events"] for row in footfall)
    assert storage["events"] == total_stored
    for name in ("counters", "sketches", "events", "strings"):
        assert storage["databases"][name]["bytes"] > 0, name
        assert storage["databases"][name]["bytes_per_event"] > 0, name
    assert storage["data_mdb_bytes"] >= storage["named_databases_bytes"]
    assert storage["data_mdb_bytes_per_event"] > 0
