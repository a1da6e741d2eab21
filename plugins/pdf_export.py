"""The PDF exporter (weasyprint): a report as a printed page in the light theme.

The first page says what the report is — title, site, period, filters and when it was
made — then the top line as cards, the charts (the screen's own SVG, from
:mod:`appliance.exports.charts`, drawn as vectors, never as pictures) and the tables, which
repeat their header on every page they run across. Every page carries its number ("3 / 7")
and the site. The text is set in DejaVu Sans (Debian's ``fonts-dejavu-core``; weasyprint
embeds the subset it uses, so the file reads the same on any machine). Nothing is fetched:
the document has no external resources.
"""

from __future__ import annotations

import logging
from html import escape
from typing import BinaryIO

from appliance import hookimpl
from appliance.extensions import Cell, Exporter, Report, Table

# weasyprint reports every CSS property it does not know (the SVG's ``role``/``tabindex``
# attributes are fine) at warning level; keep its chatter out of the server's log.
logging.getLogger("weasyprint").setLevel(logging.ERROR)
logging.getLogger("fontTools").setLevel(logging.ERROR)

STYLE = """
@page {
  size: A4; margin: 16mm 14mm 18mm 14mm;
  @bottom-left { content: "SITE"; font-size: 8pt; color: #6b7280; }
  @bottom-right { content: counter(page) " / " counter(pages); font-size: 8pt; color: #6b7280; }
}
html { font-family: "DejaVu Sans", sans-serif; font-size: 9pt; color: #111827; background: #ffffff; }
h1 { font-size: 17pt; margin: 0 0 2mm 0; }
h2 { font-size: 11.5pt; margin: 6mm 0 2mm 0; break-after: avoid; }
.context { color: #374151; margin: 0 0 4mm 0; }
.context dt { float: left; width: 24mm; color: #6b7280; }
.context dd { margin: 0 0 0.8mm 26mm; }
.cards { display: flex; flex-wrap: wrap; gap: 3mm; margin: 2mm 0 4mm 0; }
.card { border: 0.3mm solid #e5e7eb; border-radius: 1.5mm; padding: 2mm 3mm; width: 54mm; }
.card .label { color: #6b7280; font-size: 8pt; }
.card .value { font-size: 14pt; font-weight: bold; }
.chart { break-inside: avoid; margin: 2mm 0 4mm 0; }
.chart svg { width: 100%; height: auto; }
table { width: 100%; border-collapse: collapse; margin-bottom: 2mm; table-layout: fixed; }
table.labelled th:first-child { width: 34%; }
thead { display: table-header-group; }
th { text-align: left; color: #374151; border-bottom: 0.4mm solid #d1d5db; padding: 1mm 1.5mm; font-size: 8pt; }
td { border-bottom: 0.2mm solid #f3f4f6; padding: 0.9mm 1.5mm; overflow-wrap: anywhere; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr { break-inside: avoid; }
.notes { white-space: pre-wrap; margin: 3mm 0; }
.empty { color: #6b7280; }
"""


def figure(value: Cell) -> str:
    """A number as printed: whole numbers as they are, others to at most two decimals."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{round(value, 2):g}"
    return value


def _table(table: Table) -> str:
    numeric = [
        all(isinstance(row[index], int | float) or row[index] is None for row in table.rows) and bool(table.rows)
        for index in range(len(table.columns))
    ]
    cell_class = ['<td class="number">' if number else "<td>" for number in numeric]
    head = "".join(
        f'<th{" class=number" if numeric[i] else ""}>{escape(column)}</th>' for i, column in enumerate(table.columns)
    )
    if not table.rows:
        body = f'<tr><td class="empty" colspan="{len(table.columns) or 1}">No data for this period.</td></tr>'
    else:
        body = "".join(
            "<tr>"
            + "".join(
                f"{cell_class[i]}{escape(figure(value))}</td>" for i, value in enumerate(row)
            )
            + "</tr>"
            for row in table.rows
        )
    labelled = " class='labelled'" if numeric and not numeric[0] else ""
    return f"<h2>{escape(table.title)}</h2><table{labelled}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(report: Report) -> str:
    """The report as one self-contained HTML document (what weasyprint lays out)."""
    context = [
        ("Site", report.site),
        ("Period", report.period),
        ("Filters", "; ".join(report.filters) or "none"),
        ("Generated", report.generated_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()),
    ]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(report.title)}</title><style>{STYLE.replace('SITE', _css_string(report.site))}</style>",
        f"</head><body><h1>{escape(report.title)}</h1><dl class='context'>",
        *(f"<dt>{escape(label)}</dt><dd>{escape(value)}</dd>" for label, value in context),
        "</dl>",
    ]
    if report.summary:
        parts.append("<div class='cards'>")
        parts.extend(
            f"<div class='card'><div class='label'>{escape(label)}</div><div class='value'>{escape(figure(value))}</div></div>"
            for label, value in report.summary
        )
        parts.append("</div>")
    for chart in report.charts:
        # the SVG is our own drawing (every text in it escaped when it was drawn)
        parts.append(f"<div class='chart'><h2>{escape(chart.title)}</h2>{chart.svg}</div>")
    parts.extend(_table(table) for table in report.tables)
    if report.notes:
        parts.append(f"<h2>Notes</h2><div class='notes'>{escape(report.notes)}</div>")
    parts.append("</body></html>")
    return "".join(parts)


def _css_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def _no_fetch(url: str, *args, **kwargs):
    raise ValueError(f"a report fetches nothing ({url})")


def load_weasyprint():
    """The weasyprint module, imported at the first PDF: importing it (Pango, its fonts and
    user-agent stylesheets) takes about a second that every start of the server and of each
    ``footfall`` command would otherwise pay, and memory an idle server does not need."""
    import weasyprint

    return weasyprint


def render_pdf(report: Report, stream: BinaryIO) -> None:
    document = load_weasyprint().HTML(string=report_html(report), base_url=None, url_fetcher=_no_fetch)
    document.write_pdf(target=stream, pdf_identifier=None)


@hookimpl
def register_exporters(appliance) -> list[Exporter]:
    return [
        Exporter(
            name="pdf", media_type="application/pdf", extension="pdf", render=render_pdf,
            description="A printable PDF (weasyprint): context, top line, vector charts, tables, page numbers",
        )
    ]
