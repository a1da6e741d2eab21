"""The shortest end-to-end path: a page view in, the seed's traffic report out."""

from datetime import UTC, datetime


def test_page_view_reaches_traffic_report(server):
    with server.client() as client:
        sent = client.post(
            "/api/v1/events",
            json={
                "event_type": "page_view",
                "site": "localhost",
                "metadata": {"page_url": "http://localhost/smoke", "referrer_url": "https://www.google.com/"},
            },
        )
        assert sent.status_code == 200, sent.text
        assert sent.json()["status"] == "success"
        assert sent.json()["event_id"].startswith("evt_")
        today = datetime.now(UTC).date().isoformat()
        report = client.get(
            "/api/v1/reports/traffic",
            params={"site": "localhost", "start_date": today, "end_date": today},
            headers=server.auth(),
        )
        assert report.status_code == 200, report.text
        data = report.json()["data"]
        assert set(data) >= {"total_visitors", "total_page_views", "traffic_sources"}
        assert data["total_page_views"] >= 1
        assert set(data["traffic_sources"]) == {"direct", "referral", "search", "social"}
        pages = {row["value"] for row in data["dimensions"]["page"]}
        assert "/smoke" in pages
