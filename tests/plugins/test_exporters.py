"""The built-in exporters (CSV, JSON, PDF) and the README's example exporter, on reports built
from a real appliance's stats: registered through ``register_exporters`` like any plugin,
tables equal to the stats they come from, formula cells neutralised, a vector PDF.
"""

from __future__ import annotations

import csv
import io
import re
import sys
import types
from datetime import UTC, date, datetime

import pytest
from pypdf import PdfReader

from appliance.config import load_settings
from appliance.exports.building import dashboard_report, export, report_from_query
from appliance.extensions import Report, Table
from appliance.models import Event, EventKind
from appliance.query.spec import Query
from appliance.runtime.appliance import Appliance
from plugins.csv_export import neutralised
from tests.servers import ROOT

DAY = date(2026, 3, 2)
PATHS = ("/", "/pricing", "/=1+2", "/blog")


def at(hour: int) -> float:
    return datetime(DAY.year, DAY.month, DAY.day, hour, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    settings = load_settings(environ={}, data_dir=str(tmp_path_factory.mktemp("exporters") / "data"))
    with Appliance(settings) as appliance:
        site = appliance.sites.add("export.example", timezone="UTC")
        events = [
            Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=at(1 + visitor % 20), name="pageview",
                  visitor_id=1000 + visitor, hostname="export.example", path=PATHS[visitor % len(PATHS)],
                  browser=("Firefox", "Chrome")[visitor % 2], channel="Direct",
                  utm_source="=cmd|' /C calc'!A0" if visitor == 3 else "")
            for visitor in range(24)
        ]
        appliance.record_sync(events)
        yield appliance, site, Query(site=site, date_from=DAY, date_to=DAY)


def test_builtin_exporters_are_registered_plugins(recorded):
    appliance, _, _ = recorded
    assert {"csv", "json", "pdf"} <= set(appliance.extensions.exporters)
    loaded = {name for name, _ in appliance.plugin_manager.list_name_plugin()}
    assert {"csv_export", "json_export", "pdf_export"} <= loaded


def test_neutralised_cells():
    for dangerous in ("=1+2", "+1", "-1+2", "@SUM(A1)", "\t=1", "\r=1"):
        assert neutralised(dangerous) == "'" + dangerous
    assert neutralised("/=1+2") == "/=1+2"
    assert neutralised(-3.5) == -3.5 and neutralised(7) == 7


def test_report_csv_equals_the_stats(recorded):
    appliance, site, query = recorded
    report = report_from_query(appliance, site, query, metrics=["visitors", "pageviews"], dimensions=["page"],
                               title="Pages", chart=False)
    body, media_type, filename = export(appliance, report, "csv")
    assert media_type.startswith("text/csv") and filename.endswith(".csv")
    sections = body.decode("utf-8").split("\r\n\r\n")
    totals = list(csv.DictReader(io.StringIO(sections[0].split("\r\n", 1)[1])))
    assert totals == [{"visitors": "24", "pageviews": "24"}]
    pages = list(csv.DictReader(io.StringIO(sections[1].split("\r\n", 1)[1])))
    expected = appliance.stats.breakdown(query, "page", 10)["results"]
    assert [(row["page"], int(row["visitors"]), int(row["pageviews"])) for row in pages] == [
        (row["value"], row["visitors"], row["pageviews"]) for row in expected
    ]


def test_two_dimensions_make_one_table(recorded):
    appliance, site, query = recorded
    report = report_from_query(appliance, site, query, metrics=["visitors"], dimensions=["browser", "page"],
                               title="Browsers by page", chart=False)
    table = report.tables[-1]
    assert table.columns == ("browser", "page", "visitors")
    assert sum(row[2] for row in table.rows) == 24  # every visitor once: one page, one browser each


def test_dashboard_report_pdf_is_vector_with_embedded_fonts(recorded):
    appliance, site, query = recorded
    report = dashboard_report(appliance, site, query)
    assert [table.title for table in report.tables][:3] == ["Totals", "Time series", "Channel"]
    body, media_type, _ = export(appliance, report, "pdf")
    assert media_type == "application/pdf"
    reader = PdfReader(io.BytesIO(body))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "Dashboard of export.example" in text and "/pricing" in text and "Firefox" in text
    assert sum(len(page.images) for page in reader.pages) == 0
    content = reader.pages[0].get_contents().get_data()
    assert re.search(rb"\d [ml]\b", content)  # the chart's lines are paths
    descriptors = [
        font.get_object()["/FontDescriptor"].get_object()
        for page in reader.pages
        for font in page["/Resources"]["/Font"].values()
        for font in [font.get_object()["/DescendantFonts"][0] if "/DescendantFonts" in font.get_object() else font]
    ]
    assert descriptors and all({"/FontFile", "/FontFile2", "/FontFile3"} & set(d) for d in descriptors)


def test_formula_cells_in_the_csv(recorded):
    appliance, site, query = recorded
    body, _, _ = export(appliance, report_from_query(appliance, site, query, metrics=["visitors"],
                                                     dimensions=["utm_source"], title="UTM", chart=False), "csv")
    text = body.decode()
    assert "'=cmd|' /C calc'!A0" in text and "\n=cmd" not in text


def readme_exporter() -> types.ModuleType:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Write an exporter"):]
    source = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    module = types.ModuleType("footfall_markdown")
    sys.modules.setdefault("footfall_markdown", module)
    exec(compile(source, "README.md", "exec"), module.__dict__)  # noqa: S102 - our own README
    return module


def test_the_readme_exporter_works(tmp_path):
    settings = load_settings(environ={}, data_dir=str(tmp_path / "data"))
    with Appliance(settings, plugins=[readme_exporter()]) as appliance:
        assert "md" in appliance.extensions.exporters
        markdown = appliance.extensions.exporter("md")
    report = Report(title="Pages", site="a.example", period="2026-03-02", generated_at=datetime.now(UTC),
                    tables=(Table("Top pages", ("value", "visitors"), (("/", 3), ("/a", None))),))
    stream = io.BytesIO()
    markdown.render(report, stream)
    body = stream.getvalue()
    assert markdown.media_type == "text/markdown" and markdown.extension == "md"
    assert "| value | visitors |" in body.decode() and "| / | 3 |" in body.decode()
