"""Saved reports and schedules over the real server: CRUD, who may do what, validation errors
that name the field, and a report's run — JSON with the same numbers as the stats API, and
the CSV and PDF the exporter plugins render."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from pypdf import PdfReader

from tests.e2e.test_dashboard_pages import csrf_of, login
from tests.servers import start_server

SITE = "saved-reports.test"
PASSWORD = "report-password-123"


def _event(path: str, user: str, when: datetime, source: str = "") -> dict:
    metadata = {"page_url": f"https://{SITE}{path}"}
    if source:
        metadata["referrer_url"] = f"https://{source}/"
    return {"event_type": "page_view", "user_id": user, "session_id": f"s-{user}", "site": SITE,
            "timestamp": when.isoformat().replace("+00:00", "Z"), "metadata": metadata}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    handle = start_server(tmp_path_factory.mktemp("saved-reports") / "data")
    admin = handle.auth()
    with handle.client() as client:
        assert client.post("/api/v1/sites", json={"domain": SITE}, headers=admin).status_code == 201
        now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        events = [_event("/", f"u{i}", now, "news.example") for i in range(5)]
        events += [_event("/pricing", f"u{i}", now + timedelta(seconds=1)) for i in range(3)]
        answer = client.post("/api/v1/events", json=events, headers=admin)
        assert answer.status_code == 200, answer.text
        tokens = {}
        for role in ("analyst", "viewer"):
            created = client.post("/api/v1/users", headers=admin,
                                  json={"username": f"{role}-r", "password": PASSWORD, "role": role, "sites": [SITE]})
            assert created.status_code == 201, created.text
            token = client.post("/api/v1/authenticate", json={"username": f"{role}-r", "password": PASSWORD}).json()["token"]
            tokens[role] = {"Authorization": f"Bearer {token}"}
        tokens["admin"] = admin
    handle.tokens = tokens
    yield handle
    handle.stop()


REPORT = {"title": "Pages by source", "metrics": ["visitors", "pageviews", "bounce_rate"], "dimensions": ["page"],
          "period": "7d", "comparison": "previous_period", "interval": "day", "chart": True, "notes": "weekly look"}


def test_crud_and_permissions(server):
    base = f"/api/v1/sites/{SITE}/reports"
    analyst, viewer = server.tokens["analyst"], server.tokens["viewer"]
    with server.client() as client:
        assert client.post(base, json=REPORT, headers=viewer).status_code == 403  # viewers run, not write
        made = client.post(base, json=REPORT, headers=analyst)
        assert made.status_code == 201, made.text
        report = made.json()["data"]
        assert report["owner"] == "analyst-r" and report["dimensions"] == ["page"]
        listed = client.get(base, headers=viewer)
        assert listed.status_code == 200 and [r["id"] for r in listed.json()["data"]] == [report["id"]]
        changed = client.put(f"{base}/{report['id']}", json={**REPORT, "title": "Pages"}, headers=analyst)
        assert changed.status_code == 200 and changed.json()["data"]["title"] == "Pages"
        assert client.put(f"{base}/{report['id']}", json=REPORT, headers=viewer).status_code == 403
        assert client.get(f"{base}/{report['id']}", headers=viewer).json()["data"]["title"] == "Pages"
        # errors name the field
        for body, field in (({**REPORT, "metrics": ["visits", "weight"]}, "metrics[1]"),
                            ({**REPORT, "period": "custom"}, "start_date"),
                            ({**REPORT, "dimensions": ["page", "nope"]}, "dimensions[1]")):
            answer = client.post(base, json=body, headers=analyst)
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"]["field"] == field
        assert client.post(base, json={**REPORT, "colour": "red"}, headers=analyst).status_code in (400, 422)
        # schedules: analysts and admins only, reads included; URLs shown masked
        schedules = f"/api/v1/sites/{SITE}/schedules"
        body = {"report_id": report["id"], "frequency": "weekly", "hour": 7, "formats": ["pdf", "csv"],
                "destinations": ["json://user:secret@127.0.0.1:9/hook"]}
        assert client.post(schedules, json=body, headers=viewer).status_code == 403
        assert client.get(schedules, headers=viewer).status_code == 403
        created = client.post(schedules, json=body, headers=analyst)
        assert created.status_code == 201, created.text
        schedule = created.json()["data"]
        assert schedule["destinations"] == ["json://user:***@127.0.0.1:9/hook"]
        assert schedule["next_send_at"] > datetime.now(UTC).timestamp()
        bad = client.post(schedules, json={**body, "hour": 25}, headers=analyst)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "hour"
        bad = client.post(schedules, json={**body, "weekday": 7}, headers=analyst)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "weekday"
        thursday = client.post(schedules, json={**body, "weekday": 3}, headers=analyst).json()["data"]
        assert thursday["weekday"] == 3 and thursday["day"] == 1
        assert datetime.fromtimestamp(thursday["next_send_at"], UTC).weekday() == 3
        assert client.delete(f"{schedules}/{thursday['id']}", headers=analyst).status_code == 200
        kept = client.put(f"{schedules}/{schedule['id']}", json={**{k: v for k, v in body.items() if k != "destinations"},
                                                                  "frequency": "daily"}, headers=analyst)
        assert kept.status_code == 200 and kept.json()["data"]["destinations"] == schedule["destinations"]
        detail = client.get(f"{schedules}/{schedule['id']}", headers=analyst).json()["data"]
        assert detail["status"]["deliveries"] == [] and detail["frequency"] == "daily"
        # deleting the report deletes its schedules
        assert client.delete(f"{base}/{report['id']}", headers=viewer).status_code == 403
        assert client.delete(f"{base}/{report['id']}", headers=analyst).status_code == 200
        assert client.get(f"{base}/{report['id']}", headers=viewer).status_code == 404
        assert client.get(f"{schedules}/{schedule['id']}", headers=analyst).status_code == 404


def test_run_matches_the_stats_api_in_json_csv_and_pdf(server):
    base = f"/api/v1/sites/{SITE}/reports"
    viewer = server.tokens["viewer"]
    with server.client() as client:
        report = client.post(base, json={**REPORT, "title": "Run me"}, headers=server.tokens["admin"]).json()["data"]
        run = client.get(f"{base}/{report['id']}/run", headers=viewer)
        assert run.status_code == 200, run.text
        data = run.json()["data"]
        params = {"site": SITE, "start_date": data["period"]["start_date"], "end_date": data["period"]["end_date"]}
        aggregate = client.get("/api/v1/stats/aggregate", params={**params, "compare": "previous_period"}, headers=viewer).json()
        assert data["totals"] == {m: aggregate["data"][m] for m in REPORT["metrics"]}
        assert data["totals"]["visitors"] == 5 and data["totals"]["pageviews"] == 8
        assert data["comparison"]["change"]["visitors"] == aggregate["comparison"]["change"]["visitors"]
        pages = client.get("/api/v1/stats/breakdown", params={**params, "property": "page"}, headers=viewer).json()["data"]
        assert [(r["value"], r["visitors"]) for r in data["breakdown"]["results"]] == [
            (r["value"], r["visitors"]) for r in pages["results"]]
        assert len(data["timeseries"]) == 7
        as_csv = client.get(f"{base}/{report['id']}/run", params={"format": "csv"}, headers=viewer)
        assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(as_csv.text)))
        assert any("/pricing" in row for row in rows)
        as_pdf = client.get(f"{base}/{report['id']}/run", params={"format": "pdf"}, headers=viewer)
        assert as_pdf.status_code == 200 and as_pdf.content.startswith(b"%PDF")
        text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(as_pdf.content)).pages)
        assert "Run me" in text and "/pricing" in text
        wrong = client.get(f"{base}/{report['id']}/run", params={"format": "docx"}, headers=viewer)
        assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "format"


def test_schedule_edited_on_the_schedules_page(server):
    """The schedules page's edit form changes when and what a schedule sends; left empty, the
    destinations are kept (the page shows them masked only); a bad value answers 422 naming the
    field and changes nothing; a viewer may not post it."""
    schedules = f"/api/v1/sites/{SITE}/schedules"
    analyst = server.tokens["analyst"]
    with server.client() as client:
        body = {"frequency": "weekly", "hour": 7, "formats": ["pdf"], "destinations": ["json://user:secret@127.0.0.1:9/edit"]}
        schedule = client.post(schedules, json=body, headers=analyst).json()["data"]
    page_url = f"/sites/{SITE}/schedules"
    browser = login(server.url, "analyst-r", PASSWORD)
    try:
        page = browser.get(page_url)
        assert page.status_code == 200
        assert f'data-schedule-edit="{schedule["id"]}"' in page.text and "json://user:***@127.0.0.1:9/edit" in page.text
        assert "secret" not in page.text
        token = csrf_of(page.text)
        form = {"csrf": token, "frequency": "monthly", "hour": "18", "formats": ["pdf", "csv"], "destinations": "",
                "title": "Month end", "weekday": "4", "day": "3"}
        answer = browser.post(f"{page_url}/{schedule['id']}", data=form)
        assert answer.status_code == 303 and answer.headers["location"].endswith("notice=changed"), answer.text
        with server.client() as client:
            changed = client.get(f"{schedules}/{schedule['id']}", headers=analyst).json()["data"]
        assert (changed["frequency"], changed["hour"], changed["formats"], changed["title"], changed["day"]) == (
            "monthly", 18, ["pdf", "csv"], "Month end", 3)
        shown = browser.get(page_url).text
        assert "Monthly on day 3 at 18:00" in shown
        assert re.search(r'name="day"[^>]*>(?:<option[^>]*>\d+</option>)*<option value="3" selected>', shown)
        assert changed["destinations"] == ["json://user:***@127.0.0.1:9/edit"]  # kept
        answer = browser.post(f"{page_url}/{schedule['id']}", data={**form, "destinations": "json://127.0.0.1:9/new"})
        assert answer.status_code == 303
        bad = browser.post(f"{page_url}/{schedule['id']}", data={**form, "hour": "", "frequency": "daily"})
        assert bad.status_code == 422 and "hour: 0 to 23" in bad.text
        bad = browser.post(f"{page_url}/{schedule['id']}", data={**form, "day": "31"})
        assert bad.status_code == 422 and "day: 1 to 28" in bad.text
        assert browser.post(f"{page_url}/999999", data=form).status_code == 404
        with server.client() as client:
            changed = client.get(f"{schedules}/{schedule['id']}", headers=analyst).json()["data"]
        assert changed["destinations"] == ["json://127.0.0.1:9/new"] and changed["frequency"] == "monthly"
    finally:
        browser.close()
    viewer = login(server.url, "viewer-r", PASSWORD)
    try:
        token = csrf_of(viewer.get(f"/sites/{SITE}/reports").text)
        refused = viewer.post(f"{page_url}/{schedule['id']}", data={"csrf": token, "frequency": "daily", "hour": "1"})
        assert refused.status_code in (403, 404)
    finally:
        viewer.close()
