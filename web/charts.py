"""The dashboard's charts: the SVG drawing lives in :mod:`appliance.exports.charts`, so the
PDF exporter and scheduled reports (which run without the web room) draw the same markup as
the screen. Re-exported here for the web room's modules and templates."""

from appliance.exports.charts import (
    COMPARE,
    FONT,
    GRID,
    LINE,
    TEXT,
    Point,
    chart_points,
    compact_number,
    funnel_chart,
    line_chart,
    nice_ceiling,
    sparkline,
)

__all__ = [
    "COMPARE",
    "FONT",
    "GRID",
    "LINE",
    "TEXT",
    "Point",
    "chart_points",
    "compact_number",
    "funnel_chart",
    "line_chart",
    "nice_ceiling",
    "sparkline",
]
