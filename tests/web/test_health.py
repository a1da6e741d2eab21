"""``/api/v1/health``: 200 while the appliance is ok, 503 with the same report once degraded."""

from __future__ import annotations

from litestar.testing import TestClient

from appliance.config import load_settings
from web.app import create_app


def test_health_answers_503_with_its_report_while_degraded(tmp_path):
    app = create_app(load_settings(environ={}, data_dir=str(tmp_path / "data")))
    with TestClient(app) as client:
        ok = client.get("/api/v1/health")
        assert ok.status_code == 200, ok.text
        assert ok.json()["status"] == "ok" and ok.json()["last_error"] is None

        writer = app.state.appliance.writer
        writer.last_error = "StorageFullError: the map is full"  # what a failed commit leaves
        for path in ("/api/v1/health", "/api/v1/healthz"):
            degraded = client.get(path)
            assert degraded.status_code == 503, degraded.text
            assert degraded.headers["content-type"].startswith("application/json")
            report = degraded.json()
            assert report["status"] == "degraded"
            assert report["last_error"] == "StorageFullError: the map is full"
            assert {"events_accepted", "drops", "storage", "sites"} <= set(report)

        writer.last_error = None  # the next commit succeeded
        assert client.get("/api/v1/health").status_code == 200

        answers = client.get("/schema/openapi.json").json()["paths"]["/api/v1/health"]["get"]["responses"]
        assert {"200", "503"} <= set(answers)
