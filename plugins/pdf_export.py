"""The PDF exporter (weasyprint): a report as a printed page in the light theme.

The first page says what the report is — title, site, period, filters and when it was
made — then the top line as cards, the charts (the screen's own SVG, from
:mod:`appliance.exports.charts`, drawn as vectors, never as pictures) and the tables, which
repeat their header on every page they run across. Every page carries its number ("3 / 7")
and the site. The text is set in DejaVu Sans (Debian's ``fonts-dejavu-core``; weasyprint
embeds the subset it uses, so the file reads the same on any machine). Nothing is fetched:
the document has no external resources.

What a render costs: weasyprint lays out every table cell on its own (its style, boxes, a
Pango line, then the drawing), about 0.4 ms of CPU per cell here, and the 30-day dashboard's
~900 cells are nine tenths of its render. Around that work, the document is written as
well-formed XML and read by the standard library's C parser instead of weasyprint's pure-Python
HTML5 one (:func:`parsed_document_type`), and the fonts' configuration is kept warm from one
export to the next (:class:`FontConfigurations`). The layout runs in a helper process
(:mod:`plugins.pdf_process`): the server writes the document, the helper answers the PDF.
"""

from __future__ import annotations

import functools
import logging
import queue
import re
import sys
from contextlib import contextmanager
from html import escape
from typing import BinaryIO
from xml.etree import ElementTree

from appliance import hookimpl
from appliance.extensions import Cell, Exporter, Report, Table
from plugins.pdf_process import HelperFailed, PdfHelpers, serve

log = logging.getLogger(__name__)

# weasyprint reports every CSS property it does not know (the SVG's ``role``/``tabindex``
# attributes are fine) at warning level; keep its chatter out of the server's log.
logging.getLogger("weasyprint").setLevel(logging.ERROR)
logging.getLogger("fontTools").setLevel(logging.ERROR)

#: characters XML does not allow (controls, lone surrogates, two non-characters): a page path
#: or a UTM value from the public may hold one; printed as U+FFFD
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

STYLE = """
@page {
  size: A4; margin: 16mm 14mm 18mm 14mm;
  @bottom-left { content: string(site); font-size: 8pt; color: #6b7280; }
  @bottom-right { content: counter(page) " / " counter(pages); font-size: 8pt; color: #6b7280; }
}
html { font-family: "DejaVu Sans", sans-serif; font-size: 9pt; color: #111827; background: #ffffff; }
h1 { font-size: 17pt; margin: 0 0 2mm 0; }
h2 { font-size: 11.5pt; margin: 6mm 0 2mm 0; break-after: avoid; }
.context { color: #374151; margin: 0 0 4mm 0; }
.context dt { float: left; width: 24mm; color: #6b7280; }
.context dd { margin: 0 0 0.8mm 26mm; }
.context .site { string-set: site content(); }
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

#: The user-agent stylesheet of a report: the rules of weasyprint's own (``html5_ua.css``) that
#: apply to the elements :func:`report_html` writes, and nothing else. weasyprint matches every
#: element against every rule of its stylesheet for all of HTML (forms, lists, ``[dir]``
#: variants, pseudo-elements), ~11 % of a dashboard's render; with these the PDF is the same,
#: byte for byte (``tests/plugins/test_pdf_export.py`` holds it to weasyprint's own). A new
#: element in the document needs its rules here (that test lists the elements it knows).
USER_AGENT_STYLE = """
head, meta, style, title { display: none }
body, dd, div, dl, dt, h1, h2, html { display: block }
table { display: table }
thead { display: table-header-group }
tbody { display: table-row-group }
tr { display: table-row }
td, th { display: table-cell }
dl { margin-top: 1em; margin-bottom: 1em }
body { margin: 8px }
h1 { margin-top: .67em; margin-bottom: .67em }
h2 { margin-top: .83em; margin-bottom: .83em }
dd { margin-left: 40px }
table { border-spacing: 2px; border-collapse: separate }
td, th { padding: 1px }
thead, tbody { vertical-align: middle }
tr, td, th { vertical-align: inherit }
html { color-scheme: light }
th { font-weight: bold }
h1 { font-size: 2em; font-weight: bold }
h2 { font-size: 1.5em; font-weight: bold }
table, td, th { border-color: gray }
thead, tbody, tr { border-color: inherit }
table { text-indent: initial }
svg { overflow: hidden }
table { box-sizing: border-box }
h1 { bookmark-level: 1 }
h2 { bookmark-level: 2 }
h1, h2 { bookmark-label: content(text) }
h1, h2 { hyphens: manual; break-after: avoid; break-inside: avoid }
@page {
  margin: 75px;
  @top-left-corner     { text-align: right;  vertical-align: middle }
  @top-left            { text-align: left;   vertical-align: middle }
  @top-center          { text-align: center; vertical-align: middle }
  @top-right           { text-align: right;  vertical-align: middle }
  @top-right-corner    { text-align: left;   vertical-align: middle }
  @left-top            { text-align: center; vertical-align: top    }
  @left-middle         { text-align: center; vertical-align: middle }
  @left-bottom         { text-align: center; vertical-align: bottom }
  @right-top           { text-align: center; vertical-align: top    }
  @right-middle        { text-align: center; vertical-align: middle }
  @right-bottom        { text-align: center; vertical-align: bottom }
  @bottom-left-corner  { text-align: right;  vertical-align: middle }
  @bottom-left         { text-align: left;   vertical-align: middle }
  @bottom-center       { text-align: center; vertical-align: middle }
  @bottom-right        { text-align: right;  vertical-align: middle }
  @bottom-right-corner { text-align: left;   vertical-align: middle }
}
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
    head_class = ['<th class="number">' if number else "<th>" for number in numeric]
    # a metric's key as words ("views per visit"): a header may wrap instead of running into
    # its neighbour (the CSV and JSON exports keep the keys)
    head = "".join(f"{head_class[i]}{escape(column.replace('_', ' '))}</th>" for i, column in enumerate(table.columns))
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
    """The report as one self-contained document (what weasyprint lays out): HTML that is also
    well-formed XML, so :func:`render_pdf` reads it with the standard library's XML parser."""
    context = [
        ("Site", " class='site'", report.site),  # also the footer of every page (string-set)
        ("Period", "", report.period),
        ("Filters", "", "; ".join(report.filters) or "none"),
        ("Generated", "", report.generated_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()),
    ]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'/>",
        f"<title>{escape(report.title)}</title><style>{STYLE}</style>",
        f"</head><body><h1>{escape(report.title)}</h1><dl class='context'>",
        *(f"<dt>{escape(label)}</dt><dd{css_class}>{escape(value)}</dd>" for label, css_class, value in context),
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
    return NOT_XML.sub("\ufffd", "".join(parts))


def _no_fetch(url: str, *args, **kwargs):
    raise ValueError(f"a report fetches nothing ({url})")


def load_weasyprint():
    """The weasyprint module, imported at the first PDF: importing it (Pango, its fonts and
    user-agent stylesheets) takes about a second that every start of the server and of each
    ``footfall`` command would otherwise pay, and memory an idle server does not need."""
    import weasyprint

    return weasyprint


class FontConfigurations:
    """weasyprint font configurations kept warm across exports, one per concurrent render.

    Left to itself, weasyprint makes a new ``FontConfiguration`` for every document: it loads
    fontconfig's configuration again and starts a new Pango font map, whose fonts, fontsets and
    metrics then fill again from nothing during the layout. A configuration is not safe to
    share between threads that render at the same time, so each render borrows one from this
    pool (or makes one when all are lent) and gives it back; the pool holds at most as many as
    have rendered at once. The report's stylesheet has no ``@font-face``, so a configuration
    never holds anything from one report that could show in the next."""

    def __init__(self) -> None:
        self._idle: queue.SimpleQueue = queue.SimpleQueue()

    def __len__(self) -> int:
        """How many configurations are idle (made so far, less those lent now)."""
        return self._idle.qsize()

    @contextmanager
    def borrowed(self):
        try:
            configuration = self._idle.get_nowait()
        except queue.Empty:
            configuration = load_weasyprint().text.fonts.FontConfiguration()
        try:
            yield configuration
        finally:
            self._idle.put(configuration)


FONT_CONFIGURATIONS = FontConfigurations()
PDF_HELPERS = PdfHelpers()  # the server's PDF helper processes (plugins/pdf_process.py)


@functools.cache
def parsed_document_type() -> type:
    """weasyprint's ``HTML`` document, made from a tree that is already parsed.

    ``weasyprint.HTML(string=...)`` reads its text with a pure-Python HTML5 parser, ~7 % of a
    dashboard's render (a 30 KB document of ~1,000 elements); :func:`report_html` writes
    well-formed XML, which the standard library's C parser reads in a few milliseconds into
    the same tree (HTML elements without a namespace, the chart's in SVG's). The document
    keeps what ``HTML.__init__`` would have set from it: no base URL (nothing is fetched),
    print media; and its user-agent stylesheet is :data:`USER_AGENT_STYLE`."""
    weasyprint = load_weasyprint()
    from cssselect2 import ElementWrapper

    user_agent = [weasyprint.CSS(string=USER_AGENT_STYLE)]

    class ParsedHTML(weasyprint.HTML):
        def __init__(self, root: ElementTree.Element) -> None:
            self.base_url = None
            self.url_fetcher = _no_fetch
            self.media_type = "print"
            self.wrapper_element = ElementWrapper.from_html_root(root, content_language=None)
            self.etree_element = self.wrapper_element.etree_element

        def _ua_stylesheets(self, *args, **kwargs):
            # where weasyprint asks a document for its user-agent stylesheets (if a later version
            # stops asking, it uses its own: the same PDF, only slower)
            return user_agent

    return ParsedHTML


def render_pdf(report: Report, stream: BinaryIO) -> None:
    """The exporter: the document written here, laid out by a helper process
    (:mod:`plugins.pdf_process`), or here if no helper could answer."""
    document = report_html(report)
    try:
        stream.write(PDF_HELPERS.render(document))
    except HelperFailed:
        log.exception("the PDF helper failed: laid out in the server instead")
        render_document(document, stream)


def render_document(document: str, stream: BinaryIO) -> None:
    """Lay out a :func:`report_html` document with weasyprint, in this process (the helper's
    work, and the server's when no helper answers)."""
    with FONT_CONFIGURATIONS.borrowed() as fonts:
        try:
            html = parsed_document_type()(ElementTree.fromstring(document))
        except ElementTree.ParseError:  # a chart's SVG that is HTML but not XML: weasyprint's parser reads it
            html = load_weasyprint().HTML(string=document, base_url=None, url_fetcher=_no_fetch)
        html.write_pdf(target=stream, pdf_identifier=None, font_config=fonts)


@hookimpl
def register_exporters(appliance) -> list[Exporter]:
    return [
        Exporter(
            name="pdf", media_type="application/pdf", extension="pdf", render=render_pdf,
            description="A printable PDF (weasyprint): context, top line, vector charts, tables, page numbers",
        )
    ]


if __name__ == "__main__":  # a PDF helper process (plugins/pdf_process.py)
    sys.exit(serve(render_document))
