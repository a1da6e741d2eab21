"""The shortest end-to-end path: a page view in, the seed's traffic report out."""

from tests.e2e.conftest import utc_days_since, utc_today


def test_page_view_reaches_traffic_report(server):
    first_day = utc_today()  # before sending: the server stamps the page view on receipt
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
        report = client.get(
            "/api/v1/reports/traffic",
            params={"site": "localhost", **utc_days_since(first_day)},
            headers=server.auth(),
        )
        assert report.status_code == 200, report.text
        data = report.json()["data"]
        assert set(data) >= {"total_visitors", "total_page_views", "traffic_sources"}
        assert data["total_page_views"] >= 1
        assert set(data["traffic_sources"]) == {"direct", "referral", "search", "social"}
        pages = {row["value"] for row in data["dimensions"]["page"]}
        assert "/smoke" in pages
