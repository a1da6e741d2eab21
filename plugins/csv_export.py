"""The CSV exporter: a report's tables as RFC 4180 text, UTF-8, a header row of stable column
names and unformatted numbers (``1234``, ``41.56``; no thousands separators, no units).

A report of one table is one plain CSV table. A report of several (the dashboard) writes them
one after another, each introduced by a row holding its title and followed by an empty line,
so every section is itself an RFC 4180 table.

Formula injection: page paths, event names, referrers and UTM values come from the public,
and a spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or
carriage return, which some import dialogs strip first) as a formula. Every *text* cell that
starts with one of them is written with a leading apostrophe (``'=HYPERLINK(...)``), the
OWASP recommendation: the spreadsheet shows the text, runs nothing, and the apostrophe
reveals the cell was neutralised. Numbers are never touched (``-3.5`` stays a number).
"""

from __future__ import annotations

import csv
import io
from typing import BinaryIO

from appliance import hookimpl
from appliance.extensions import Cell, Exporter, Report, Table

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralised(value: Cell) -> Cell:
    """A text cell that a spreadsheet would run as a formula, with a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _cell(value: Cell) -> Cell:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)  # "3.0": still the float the JSON has
    return neutralised(value)


def _write_table(writer, table: Table) -> None:
    writer.writerow([neutralised(column) for column in table.columns])
    for row in table.rows:
        writer.writerow([_cell(value) for value in row])


def render_csv(report: Report, stream: BinaryIO) -> None:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text, lineterminator="\r\n")
    tables = report.tables or (Table("Summary", ("metric", "value"), tuple(report.summary)),)
    if len(tables) == 1:
        _write_table(writer, tables[0])
    else:
        for index, table in enumerate(tables):
            if index:
                text.write("\r\n")
            writer.writerow([neutralised(table.title)])
            _write_table(writer, table)
    text.detach()  # leave the caller's stream open


@hookimpl
def register_exporters(appliance) -> list[Exporter]:
    return [
        Exporter(
            name="csv", media_type="text/csv; charset=utf-8", extension="csv", render=render_csv,
            description="RFC 4180 CSV, UTF-8, header row; formula cells neutralised",
        )
    ]
