"""The JSON exporter: a report as one JSON document — what was asked (title, site, period,
filters, generation time), the top line, and each table as a list of records keyed by its
column names (the API's own keys, numbers as numbers). Charts are left out: they are
drawings of the tables' numbers."""

from __future__ import annotations

from typing import BinaryIO

import msgspec

from appliance import hookimpl
from appliance.extensions import Exporter, Report


def report_document(report: Report) -> dict[str, object]:
    return {
        "title": report.title,
        "site": report.site,
        "period": report.period,
        "filters": list(report.filters),
        "generated_at": report.generated_at.isoformat(),
        "summary": dict(report.summary),
        "tables": [
            {
                "title": table.title,
                "columns": list(table.columns),
                "rows": [dict(zip(table.columns, row, strict=True)) for row in table.rows],
            }
            for table in report.tables
        ],
        "notes": report.notes,
    }


def render_json(report: Report, stream: BinaryIO) -> None:
    stream.write(msgspec.json.format(msgspec.json.encode(report_document(report)), indent=2))
    stream.write(b"\n")


@hookimpl
def register_exporters(appliance) -> list[Exporter]:
    return [
        Exporter(
            name="json", media_type="application/json", extension="json", render=render_json,
            description="One JSON document: the report's context and its tables as records",
        )
    ]
