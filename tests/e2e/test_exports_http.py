"""Exports over HTTP, against a real server: the file says what the JSON says.

One server for the module, with a week of generated traffic on the demo site plus page views
whose page path, UTM source and event name are spreadsheet formulas. Checks: the CSV of a
stats route parsed back equals the route's JSON; the PDF's text (pypdf) holds the figures the
API returns and its chart is vector (path operators, no raster image); formula cells come out
neutralised; ``Accept:`` chooses a format; an unknown format is a 422 naming ``format``; a
viewer exports what they can read, through the API and the dashboard's export route.
"""

from __future__ import annotations

import csv
import io
import re
import time

import httpx
import pytest
from pypdf import PdfReader

from tests.e2e.conftest import utc_today
from tests.servers import start_server

SITE = "localhost"
FORMULA_PATH = '/=HYPERLINK("http://evil.example","click")'
FORMULA_SOURCE = "=cmd|' /C calc'!A0"
FORMULA_EVENT = "@SUM(1+1)*cmd|' /C calc'!A0"
PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    handle = start_server(tmp_path_factory.mktemp("exports") / "data", env={"FOOTFALL_DEMO_DAYS": "7"})
    api = handle.client(headers=handle.auth())
    page_url = f"http://localhost{FORMULA_PATH}?utm_source={FORMULA_SOURCE}"
    answer = api.post("/api/v1/events", json={
        "event_type": "page_view", "user_id": "formula-visitor", "session_id": "s1", "site": SITE,
        "metadata": {"page_url": page_url},
    })
    assert answer.status_code in (200, 202), answer.text
    answer = api.post("/api/v1/events", json={
        "event_type": FORMULA_EVENT, "user_id": "formula-visitor", "session_id": "s1", "site": SITE,
        "metadata": {"page_url": "http://localhost/"},
    })
    assert answer.status_code in (200, 202), answer.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # committed once the breakdown shows it
        rows = api.get("/api/v1/stats/breakdown", params={"site": SITE, "property": "utm_source", "limit": 50}).json()
        if any(row["value"] == FORMULA_SOURCE for row in rows["data"]["results"]):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the formula page view was not counted")
    answer = api.post("/api/v1/users", json={"username": "vic", "password": PASSWORD, "role": "viewer", "sites": [SITE]})
    assert answer.status_code == 201, answer.text
    token = httpx.post(f"{handle.url}/api/v1/authenticate", json={"username": "vic", "password": PASSWORD}).json()["token"]
    handle.viewer = {"Authorization": f"Bearer {token}"}
    yield handle
    handle.stop()


def get(server, path: str, headers: dict | None = None, **params) -> httpx.Response:
    with server.client(headers=headers or server.auth()) as client:
        return client.get(path, params={"site": SITE, **params})


def same_days() -> dict[str, str]:
    """The default period (30 days to today) with its last day named: two answers compared row
    by row, dated rows included, are of the same days even if midnight (UTC) passes between."""
    return {"end_date": utc_today().isoformat()}


def parsed_csv(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    assert "\r\n" in response.text  # RFC 4180 line ends
    return list(csv.DictReader(io.StringIO(response.text, newline="")))


def same_row(csv_row: dict[str, str], json_row: dict) -> bool:
    for key, value in json_row.items():
        text = csv_row[key]
        if value is None:
            if text != "":
                return False
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if float(text) != float(value):
                return False
        elif text != str(value) and text != "'" + str(value):
            return False
    return set(csv_row) == set(json_row)


@pytest.mark.parametrize(("path", "params"), [
    ("/api/v1/stats/breakdown", {"property": "page", "limit": 20}),
    ("/api/v1/stats/breakdown", {"property": "utm_source", "filters": "page!=/pricing"}),
    ("/api/v1/stats/timeseries", {"interval": "day"}),
    ("/api/v1/stats/entry-pages", {}),
    ("/api/v1/stats/events", {}),
])
def test_csv_parsed_equals_the_json(server, path, params):
    params = {**params, **same_days()}
    data = get(server, path, **params).json()["data"]
    rows = data["results"] if isinstance(data, dict) else data
    exported = parsed_csv(get(server, path, format="csv", **params))
    assert len(exported) == len(rows) > 0
    assert all(same_row(line, row) for line, row in zip(exported, rows, strict=True)), (exported, rows)


def test_aggregate_csv_is_one_row_of_the_totals(server):
    totals = get(server, "/api/v1/stats/aggregate").json()["data"]
    (row,) = parsed_csv(get(server, "/api/v1/stats/aggregate", format="csv"))
    assert same_row(row, totals)


def test_formula_cells_are_neutralised(server):
    text = get(server, "/api/v1/stats/breakdown", format="csv", property="utm_source", limit=50).text
    assert f"'{FORMULA_SOURCE}" in text
    assert not re.search(r"(^|,|\")=cmd", text, re.MULTILINE)
    events = get(server, "/api/v1/stats/events", format="csv").text
    assert f"'{FORMULA_EVENT}" in events and not re.search(r"(^|,|\")@SUM", events, re.MULTILINE)
    # a page path starts with "/": shown as it is, and no spreadsheet runs it
    pages = parsed_csv(get(server, "/api/v1/stats/breakdown", format="csv", property="page", limit=100))
    assert FORMULA_PATH in {row["value"] for row in pages}


def test_accept_header_chooses_the_format(server):
    answer = get(server, "/api/v1/stats/breakdown", headers={**server.auth(), "Accept": "text/csv"}, property="browser")
    assert answer.headers["content-type"].startswith("text/csv")
    answer = get(server, "/api/v1/stats/breakdown", headers={**server.auth(), "Accept": "application/json"})
    assert answer.json()["status"] == "success"


def test_json_export_is_the_report_document(server):
    period = same_days()
    series = get(server, "/api/v1/stats/timeseries", **period).json()["data"]
    document = get(server, "/api/v1/stats/timeseries", format="json", **period).json()
    assert document["site"] == SITE and document["tables"][0]["rows"] == series


def test_unknown_format_is_a_422_naming_format(server):
    answer = get(server, "/api/v1/stats/aggregate", format="xlsx")
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "format"


def pdf_text_and_operators(content: bytes) -> tuple[str, bytes, int]:
    assert content.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(content))
    text = "\n".join(page.extract_text() for page in reader.pages)
    streams = b"".join(page.get_contents().get_data() for page in reader.pages)
    images = sum(len(page.images) for page in reader.pages)
    return text, streams, images


def test_pdf_holds_the_api_figures_and_vector_charts(server):
    period = same_days()
    series = get(server, "/api/v1/stats/timeseries", **period).json()["data"]
    answer = get(server, "/api/v1/stats/timeseries", format="pdf", **period)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/pdf"
    text, streams, images = pdf_text_and_operators(answer.content)
    words = set(text.split())
    for row in series:
        assert row["date"] in words and str(row["pageviews"]) in words
    pages = len(PdfReader(io.BytesIO(answer.content)).pages)
    assert "Time series" in text and SITE in text and f"1 / {pages}" in text  # title, site, page numbers
    assert images == 0  # the chart is drawn, not pictured
    assert re.search(rb"\d [ml]\b", streams) and b" re" in streams  # moveto/lineto paths and rectangles


def test_dashboard_pdf_has_pages_and_every_widget(server):
    totals = get(server, "/api/v1/stats/aggregate").json()["data"]
    top_page = get(server, "/api/v1/stats/breakdown", property="page").json()["data"]["results"][0]
    # the dashboard's export route, as a viewer's session would call it: a shared link here
    admin = server.client(headers=server.auth())
    token = admin.post(f"/api/v1/sites/{SITE}/shared-link").json()["token"]
    answer = server.client().get(f"/sites/{SITE}/export", params={"report": "dashboard", "format": "pdf", "auth": token})
    assert answer.status_code == 200, answer.text
    text, _, images = pdf_text_and_operators(answer.content)
    reader = PdfReader(io.BytesIO(answer.content))
    assert len(reader.pages) >= 2 and images == 0
    assert f"1 / {len(reader.pages)}" in text
    for title in ("Channel", "Page", "Entry page", "Country", "Browser", "Custom events", "Unique visitors"):
        assert title in text
    assert str(totals["visitors"]) in text and str(totals["pageviews"]) in text and top_page["value"] in text


def test_dashboard_export_route_widget_and_details(server):
    with server.client(headers=server.auth()) as admin:
        token = admin.post(f"/api/v1/sites/{SITE}/shared-link").json()["token"]
    visitor = server.client()
    pages = get(server, "/api/v1/stats/breakdown", property="page", limit=9).json()["data"]["results"]
    widget = visitor.get(f"/sites/{SITE}/export", params={"report": "widget", "widget": "pages", "format": "csv", "auth": token})
    rows = parsed_csv(widget)
    assert [(row["page"], int(row["visitors"])) for row in rows] == [(row["value"], row["visitors"]) for row in pages]
    details = visitor.get(f"/sites/{SITE}/export", params={"report": "details", "dimension": "browser", "format": "json", "auth": token})
    browsers = get(server, "/api/v1/stats/breakdown", property="browser", limit=1000).json()["data"]["results"]
    assert [row["browser"] for row in details.json()["tables"][0]["rows"]] == [row["value"] for row in browsers]
    unknown = visitor.get(f"/sites/{SITE}/export", params={"report": "dashboard", "format": "doc", "auth": token})
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "format"


def test_a_viewer_exports_what_they_can_read(server):
    assert get(server, "/api/v1/stats/aggregate", headers=server.viewer, format="csv").status_code == 200
    answer = get(server, "/api/v1/segments/compare", headers=server.viewer, format="csv", segments="everyone")
    (row,) = parsed_csv(answer)
    (column,) = get(server, "/api/v1/segments/compare", headers=server.viewer, segments="everyone").json()["data"]
    assert row["segment"] == "everyone" and int(row["visitors"]) == column["results"]["visitors"]
    # another site's stats stay closed, exported or not
    assert get(server, "/api/v1/stats/aggregate", headers=server.viewer, format="csv", site="nope.example").status_code in (403, 404)


def test_funnel_and_goal_exports_equal_their_json(server):
    with server.client(headers=server.auth()) as admin:
        steps = [{"kind": "page", "value": "/"}, {"kind": "page", "value": "/pricing"}]
        answer = admin.post("/api/v1/funnels", params={"site": SITE}, json={"name": "Home to pricing", "steps": steps})
        assert answer.status_code == 201, answer.text
        funnel = answer.json()["data"]["id"]
        answer = admin.post("/api/v1/goals", params={"site": SITE}, json={"name": "Pricing", "kind": "page", "page": "/pricing"})
        assert answer.status_code == 201, answer.text
        goal = answer.json()["data"]["id"]
    report = get(server, f"/api/v1/funnels/{funnel}/report").json()["data"]
    exported = parsed_csv(get(server, f"/api/v1/funnels/{funnel}/report", format="csv"))
    assert len(exported) == len(report["steps"]) == 2
    assert all(same_row(line, row) for line, row in zip(exported, report["steps"], strict=True)), (exported, report)
    pdf_text, _, _ = pdf_text_and_operators(get(server, f"/api/v1/funnels/{funnel}/report", format="pdf").content)
    assert "Funnel: Home to pricing" in pdf_text and str(report["steps"][0]["visitors"]) in pdf_text
    by_source = get(server, f"/api/v1/goals/{goal}/stats", property="browser").json()["data"]["breakdown"]["results"]
    exported = parsed_csv(get(server, f"/api/v1/goals/{goal}/stats", property="browser", format="csv"))
    assert all(same_row(line, row) for line, row in zip(exported, by_source, strict=True)) and len(exported) == len(by_source)


def test_dashboard_exports_of_goals_funnels_and_segment_comparison(server):
    with server.client(headers=server.auth()) as admin:
        token = admin.post(f"/api/v1/sites/{SITE}/shared-link").json()["token"]
        steps = [{"kind": "page", "value": "/"}, {"kind": "page", "value": "/features"}]
        funnel = admin.post("/api/v1/funnels", params={"site": SITE}, json={"name": "Features", "steps": steps}).json()["data"]["id"]
    visitor = server.client()

    def export(**params) -> httpx.Response:
        return visitor.get(f"/sites/{SITE}/export", params={"auth": token, "period": "30d", **params})

    steps_json = get(server, f"/api/v1/funnels/{funnel}/report").json()["data"]["steps"]
    rows = parsed_csv(export(report="funnel", funnel=str(funnel), format="csv"))
    assert [int(row["visitors"]) for row in rows] == [step["visitors"] for step in steps_json]
    compared = get(server, "/api/v1/segments/compare", segments="everyone").json()["data"]
    (row,) = parsed_csv(export(report="segments", segments="everyone", format="csv"))
    assert int(row["visitors"]) == compared[0]["results"]["visitors"]
    goals = export(report="goals", format="json").json()["tables"][0]
    assert goals["title"] in ("Goals", "Conversions") and goals["rows"]
    assert export(report="funnel", funnel="99999", format="csv").status_code == 404
    assert export(report="details", dimension="nope", format="csv").json()["error"]["field"] == "dimension"
    assert export(report="everything", format="csv").json()["error"]["field"] == "report"
