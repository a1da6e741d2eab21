"""The PDF exporter's document and its rendering: well-formed XML read by the standard
library's parser (whatever text the public sent), weasyprint's own parser for a chart that is
only HTML, the report's trimmed user-agent stylesheet printing the same bytes as weasyprint's
own, the site on every page, and font configurations reused across exports without one
report's text showing in the next. (The helper process the layout runs in:
``test_pdf_process.py``.)
"""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime
from xml.etree import ElementTree

import pytest
from pypdf import PdfReader

from appliance.exports.charts import chart_points, line_chart
from appliance.extensions import Chart, Report, Table
from plugins.pdf_export import (
    FONT_CONFIGURATIONS,
    FontConfigurations,
    load_weasyprint,
    render_document,
    render_pdf,
    report_html,
)

GENERATED = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def report(site: str = "pdf.example", page: str = "/pricing", rows: int = 3, charts: tuple[Chart, ...] = ()) -> Report:
    return Report(
        title=f"Pages of {site}", site=site, period="2026-03-02", generated_at=GENERATED,
        summary=(("Unique visitors", 12), ("Bounce rate (%)", 41.5)),
        tables=(Table(title="Page", columns=("page", "visitors"), rows=tuple((f"{page}/{n}", n) for n in range(rows))),),
        charts=charts,
    )


def pdf_pages(content: bytes) -> list[str]:
    assert content.startswith(b"%PDF-")
    return [page.extract_text() for page in PdfReader(io.BytesIO(content)).pages]


def rendered(a_report: Report) -> list[str]:
    stream = io.BytesIO()
    render_pdf(a_report, stream)
    return pdf_pages(stream.getvalue())


def test_the_document_is_well_formed_xml_whatever_the_public_sent():
    # markup, entities, quotes and control characters (which XML forbids) in a page path
    awkward = "/a<b>&amp;\"q\"'s\x01\x0b\x1f"
    document = report_html(report(page=awkward))
    root = ElementTree.fromstring(document)
    cells = [cell.text for cell in root.iter("td")]
    assert "/a<b>&amp;\"q\"'s\ufffd\ufffd\ufffd/0" in cells
    assert [th.get("class") for th in root.iter("th")] == [None, "number"]
    text = "\n".join(rendered(report(page=awkward)))
    assert "/a<b>&amp;\"q\"'s" in text and "Pages of pdf.example" in text


def test_a_chart_that_is_only_html_is_read_by_weasyprint_s_parser():
    loose = Chart(title="Loose markup", svg="<svg viewBox='0 0 10 10' width=100 height=100><rect width=10 height=10></svg>")
    with pytest.raises(ElementTree.ParseError):
        ElementTree.fromstring(report_html(report(charts=(loose,))))
    text = "\n".join(rendered(report(charts=(loose,))))
    assert "Loose markup" in text and "/pricing/2" in text


def test_every_page_carries_the_site_and_its_number():
    pages = rendered(report(site="long.example", rows=120))
    assert len(pages) >= 2
    for number, text in enumerate(pages, start=1):
        assert text.rstrip().endswith(f"long.example {number} / {len(pages)}")


def test_font_configurations_are_lent_one_per_render_at_a_time():
    pool = FontConfigurations()
    with pool.borrowed() as first, pool.borrowed() as second:
        assert first is not second and len(pool) == 0  # two renders at once never share one
    assert len(pool) == 2
    with pool.borrowed() as again:
        assert again in (first, second) and len(pool) == 1  # kept for the next render


def rendered_here(a_report: Report) -> list[str]:
    """Laid out in this process (a helper's work, and the server's when no helper answers)."""
    stream = io.BytesIO()
    render_document(report_html(a_report), stream)
    return pdf_pages(stream.getvalue())


def test_a_reused_font_configuration_prints_each_report_s_own_text():
    first = rendered_here(report(site="first.example", page="/alpha"))
    idle = len(FONT_CONFIGURATIONS)
    second = rendered_here(report(site="second.example", page="/beta"))
    assert idle >= 1 and len(FONT_CONFIGURATIONS) == idle  # the second render made none: it reused one
    assert "/alpha/0" in first[0] and "first.example 1 / 1" in first[0]
    assert "/beta/0" in second[0] and "second.example 1 / 1" in second[0]
    assert "first.example" not in second[0] and "/alpha" not in second[0]


#: the HTML elements USER_AGENT_STYLE has weasyprint's rules for
KNOWN_ELEMENTS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "dl", "dt", "dd", "div",
                  "table", "thead", "tbody", "tr", "th", "td"}


def everything_report() -> Report:
    """A report with every part a report can have: cards, a chart, tables over several pages,
    an empty table, filters and notes."""
    points = chart_points([{"date": f"2026-03-{day:02d}", "visitors": day * 7} for day in range(1, 31)],
                          "visitors", "day", "UTC")
    chart = Chart(title="Visitors per day", svg=str(line_chart(points, title="Visitors per day", interactive=False)))
    return Report(
        title="Everything", site="all.example", period="2026-03-01 – 2026-03-30", generated_at=GENERATED,
        filters=("source is Google", "device is Mobile"), summary=(("Unique visitors", 1234), ("Bounce rate (%)", 41.56)),
        tables=(
            Table(title="Time series", columns=("date", "visitors"), rows=tuple((f"2026-03-{d:02d}", d * 7) for d in range(1, 31))),
            Table(title="Page", columns=("page", "visitors", "bounce_rate"),
                  rows=tuple((f"/a/rather/long/path/{n}?with=query&and=more" * (1 + n % 3), n, n / 3) for n in range(60))),
            Table(title="Region", columns=("region", "visitors"), rows=()),
        ),
        charts=(chart,), notes="Line one\n  indented line two",
    )


def test_the_report_user_agent_stylesheet_prints_what_weasyprint_s_own_does():
    report_ = everything_report()
    document = report_html(report_)
    root = ElementTree.fromstring(document)
    assert {element.tag for element in root.iter() if not element.tag.startswith("{")} <= KNOWN_ELEMENTS
    ours = io.BytesIO()
    render_pdf(report_, ours)  # (laid out in a helper process)
    # weasyprint's own way: its HTML5 parser and its whole user-agent stylesheet
    own = load_weasyprint().HTML(string=document, base_url=None).write_pdf(pdf_identifier=None)
    assert len(pdf_pages(ours.getvalue())) >= 2
    assert ours.getvalue() == own


def test_a_metric_s_key_is_printed_as_words_so_a_header_can_wrap():
    # "views_per_visit" was one unbreakable word and ran into "bounce_rate" beside it
    totals = Table(title="Totals", columns=("visitors", "views_per_visit", "bounce_rate", "visit_duration"),
                   rows=((1234, 2.5, 41.5, 123),))
    with_totals = dataclasses.replace(report(), tables=(totals,))
    headers = [th.text for th in ElementTree.fromstring(report_html(with_totals)).iter("th")]
    assert headers == ["visitors", "views per visit", "bounce rate", "visit duration"]
    assert "views per visit" in " ".join(rendered(with_totals)[0].split())
