"""Charts as SVG: the main line chart, the funnel's bars and the site list's sparklines.

One module draws every chart Footfall shows, in the appliance rather than the web room, so
the browser, the PDF exporter and a scheduled report rendered by the job runner (no web room
there) draw the very same markup; :mod:`web.charts` re-exports it for the templates. The SVG
stands alone: colours and sizes are presentation attributes (a PDF renderer needs no
stylesheet), and the dashboard's CSS overrides them by class for dark mode and for hover.
Hover values need no JavaScript: each point is a group with a ``<title>`` (the browser's
tooltip, read by screen readers) and a label that CSS shows on ``:hover`` / ``:focus``; a
printed chart (``interactive=False``) leaves those out. Output is
:class:`markupsafe.Markup` (a ``str``), every text escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

from markupsafe import Markup, escape

from appliance.periods import zone

LINE = "#4f46e5"
COMPARE = "#9ca3af"
GRID = "#e5e7eb"
TEXT = "#6b7280"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"


@dataclass(frozen=True)
class Point:
    label: str  # the x value as shown ("Mon 3 Jun", "14:00")
    value: float
    tick: str = ""  # a shorter axis label; "" = use label


def nice_ceiling(value: float, lines: int = 4) -> float:
    """The axis maximum: ``lines`` × a 1, 2 or 5 × 10ⁿ step (at least 1, as counts are
    whole numbers), at or above ``value``."""
    if value <= 0:
        return float(lines)
    raw = max(value / lines, 1.0)
    exponent = math.floor(math.log10(raw))
    for base in (1, 2, 5, 10):
        step = base * 10**exponent
        if step >= raw:
            return float(step * lines)
    return float(10 ** (exponent + 1) * lines)


def compact_number(value: float) -> str:
    """1234 → "1.2k", 2500000 → "2.5M"; small numbers unchanged."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            scaled = value / limit
            text = f"{scaled:.1f}".rstrip("0").rstrip(".") if scaled < 100 else f"{scaled:.0f}"
            return f"{sign}{text}{suffix}"
    if value == int(value):
        return f"{sign}{int(value)}"
    return f"{sign}{value:.1f}"


def _f(number: float) -> str:
    return f"{number:.1f}".rstrip("0").rstrip(".")


def line_chart(
    points: Sequence[Point],
    *,
    compare: Sequence[float] | None = None,
    title: str = "",
    metric: str = "Visitors",
    width: int = 800,
    height: int = 260,
    value_text: Callable[[float], str] = compact_number,
    focusable_limit: int = 62,
    interactive: bool = True,
) -> Markup:
    """A line chart with an area fill, a y grid, x ticks and hover labels.

    ``compare`` (optional, same length or shorter) is drawn as a dashed line: the compared
    period aligned point by point. ``interactive=False`` leaves out the hover targets (a
    printed chart: the same drawing, a fraction of the markup).
    """
    left, right, top, bottom = 44, 12, 14, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    count = len(points)
    values = [p.value for p in points]
    highest = max([*values, *(compare or []), 0])
    ceiling = nice_ceiling(highest)
    step_x = plot_w / (count - 1) if count > 1 else 0

    def x(index: int) -> float:
        return left + (index * step_x if count > 1 else plot_w / 2)

    def y(value: float) -> float:
        return top + plot_h - (value / ceiling) * plot_h

    summary = f"{metric}: " + ", ".join(f"{p.label} {value_text(p.value)}" for p in points[:3])
    if count > 3:
        summary += f" … {points[-1].label} {value_text(points[-1].value)}"
    parts = _svg_open("chart-svg", width, height, title or metric, summary)
    parts.extend(_value_grid(y, ceiling, left, width - right, value_text))
    # x ticks: about seven, always the first and last
    if count:
        every = max(1, math.ceil(count / 7))
        for index in range(0, count, every):
            anchor = "start" if index == 0 else "end" if index == count - 1 else "middle"
            parts.append(
                f'<text class="axis" x="{_f(x(index))}" y="{height - 8}" text-anchor="{anchor}" fill="{TEXT}">'
                f"{escape(points[index].tick or points[index].label)}</text>"
            )
    if count:
        line = " ".join(f"{_f(x(i))},{_f(y(v))}" for i, v in enumerate(values))
        area = f"{_f(x(0))},{_f(y(0))} {line} {_f(x(count - 1))},{_f(y(0))}"
        parts.append(f'<polygon class="area" points="{area}" fill="{LINE}" fill-opacity="0.08"/>')
        if compare:
            compared = " ".join(f"{_f(x(i))},{_f(y(v))}" for i, v in enumerate(compare[:count]))
            parts.append(
                f'<polyline class="compare" points="{compared}" fill="none" stroke="{COMPARE}" '
                f'stroke-width="2" stroke-dasharray="5 4"/>'
            )
        parts.append(
            f'<polyline class="line" points="{line}" fill="none" stroke="{LINE}" stroke-width="2.5" '
            f'stroke-linejoin="round" stroke-linecap="round"/>'
        )
        # hover targets: one column per point, with a label shown by CSS
        column = step_x if count > 1 else plot_w
        focusable = count <= focusable_limit
        for index, point in enumerate(points if interactive else ()):
            px, py = x(index), y(point.value)
            text = f"{point.label}: {value_text(point.value)}"
            if compare and index < len(compare):
                text += f" (was {value_text(compare[index])})"
            label_w = 7.2 * len(text) + 16
            label_x = min(max(px - label_w / 2, left), width - right - label_w)
            label_y = py - 34 if py - 34 > 0 else py + 12
            tab = ' tabindex="0"' if focusable else ""
            parts.append(
                f'<g class="point"{tab} aria-label="{escape(text)}"><title>{escape(text)}</title>'
                f'<rect class="hit" x="{_f(px - column / 2)}" y="{top}" width="{_f(column)}" height="{plot_h}" '
                f'fill="transparent"/>'
                f'<g class="tip" visibility="hidden">'
                f'<line x1="{_f(px)}" y1="{top}" x2="{_f(px)}" y2="{top + plot_h}" stroke="{COMPARE}" stroke-width="1"/>'
                f'<circle cx="{_f(px)}" cy="{_f(py)}" r="4" fill="{LINE}"/>'
                f'<rect class="tip-box" x="{_f(label_x)}" y="{_f(label_y)}" width="{_f(label_w)}" height="22" rx="4" '
                f'fill="#111827" fill-opacity="0.9"/>'
                f'<text class="tip-text" x="{_f(label_x + 8)}" y="{_f(label_y + 15)}" fill="#ffffff">{escape(text)}</text>'
                f"</g></g>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def sparkline(values: Sequence[float], *, width: int = 120, height: int = 32, label: str = "") -> Markup:
    """A tiny line of ``values`` (the site list's last 30 days)."""
    highest = max(values, default=0) or 1
    count = len(values)
    pad = 2

    def x(index: int) -> float:
        return pad + (index * (width - 2 * pad) / (count - 1) if count > 1 else (width - 2 * pad) / 2)

    def y(value: float) -> float:
        return height - pad - value / highest * (height - 2 * pad)

    line = " ".join(f"{_f(x(i))},{_f(y(v))}" for i, v in enumerate(values))
    area = f"{_f(x(0))},{height - pad} {line} {_f(x(count - 1))},{height - pad}" if count else ""
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="sparkline" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>"
        + (f'<polygon class="area" points="{area}" fill="{LINE}" fill-opacity="0.1"/>' if count else "")
        + (f'<polyline class="line" points="{line}" fill="none" stroke="{LINE}" stroke-width="1.5"/>' if count else "")
        + "</svg>"
    )


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


def funnel_chart(
    steps: Sequence[Point],
    *,
    title: str = "Funnel",
    metric: str = "Visitors",
    width: int = 800,
    height: int = 280,
    value_text: Callable[[float], str] = compact_number,
) -> Markup:
    """A funnel as vertical bars: one per step, each over a pale bar of the step before it, so
    the gap between the two is the drop-off. Bars scale to step 1 (100 %); above each bar its
    value and its share of step 1, below it the step's (shortened) label. Hovering or focusing
    a bar shows the full label, the value, the share of the previous step and the drop-off.
    """
    left, right, top, bottom = 44, 12, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    count = len(steps)
    first = steps[0].value if count else 0
    ceiling = nice_ceiling(max([p.value for p in steps] + [0]))
    slot = plot_w / count if count else plot_w
    bar_w = min(120.0, slot * 0.62)

    def y(value: float) -> float:
        return top + plot_h - (value / ceiling) * plot_h

    def share(part: float, whole: float) -> str:
        return f"{100 * part / whole:.0f}%" if whole else "0%"

    summary = f"{metric}: " + ", ".join(f"{p.label} {value_text(p.value)}" for p in steps)
    parts = _svg_open("chart-svg funnel-svg", width, height, title, summary)
    parts.extend(_value_grid(y, ceiling, left, width - right, value_text))
    label_chars = max(4, int(slot / 7.5))
    for index, step in enumerate(steps):
        centre = left + slot * (index + 0.5)
        x0 = centre - bar_w / 2
        previous = steps[index - 1].value if index else None
        text = f"Step {index + 1} · {step.label}: {value_text(step.value)} {metric.lower()}"
        if previous is not None:
            dropped = max(0.0, previous - step.value)
            text += f" ({share(step.value, previous)} of step {index}; {value_text(dropped)} dropped off)"
        parts.append(f'<g class="bar-group" tabindex="0" aria-label="{escape(text)}"><title>{escape(text)}</title>')
        if previous is not None and previous > step.value:
            parts.append(
                f'<rect class="bar-previous" x="{_f(x0)}" y="{_f(y(previous))}" width="{_f(bar_w)}" '
                f'height="{_f(y(0) - y(previous))}" rx="3" fill="{LINE}" fill-opacity="0.15"/>'
            )
        parts.append(
            f'<rect class="bar-value" x="{_f(x0)}" y="{_f(y(step.value))}" width="{_f(bar_w)}" '
            f'height="{_f(y(0) - y(step.value))}" rx="3" fill="{LINE}"/>'
        )
        parts.append(
            f'<text class="bar-label" x="{_f(centre)}" y="{_f(y(step.value) - 8)}" text-anchor="middle" '
            f'fill="{TEXT}" font-weight="600">{escape(value_text(step.value))} · {share(step.value, first)}</text>'
        )
        parts.append(
            f'<text class="axis" x="{_f(centre)}" y="{height - 22}" text-anchor="middle" fill="{TEXT}">'
            f"{escape(_shortened(f'{index + 1}. {step.tick or step.label}', label_chars))}</text>"
        )
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))


def _svg_open(css_class: str, width: int, height: int, label: str, summary: str) -> list[str]:
    """The opening of an accessible chart: the <svg> element, its title and description."""
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}" '
        f'font-family="{FONT}" font-size="12">',
        f"<title>{escape(label)}</title><desc>{escape(summary)}</desc>",
    ]


def _value_grid(y, ceiling: float, left: float, right_edge: float, value_text) -> list[str]:
    """Horizontal grid lines and value labels at 0, ¼, ½, ¾ and all of ``ceiling``."""
    parts = []
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        gy = y(ceiling * fraction)
        parts.append(
            f'<line class="grid" x1="{left}" y1="{_f(gy)}" x2="{right_edge}" y2="{_f(gy)}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        parts.append(
            f'<text class="axis" x="{left - 6}" y="{_f(gy + 4)}" text-anchor="end" fill="{TEXT}">'
            f"{escape(value_text(ceiling * fraction))}</text>"
        )
    return parts


@lru_cache(maxsize=2048)  # a pure function of its arguments; strftime is slow per call
def _point_label(text: str, interval: str, timezone: str) -> tuple[str, str]:
    if interval == "hour":
        moment = datetime.fromisoformat(text).astimezone(zone(timezone))
        return f"{moment:%a %-d %b, %H:00}", f"{moment:%H:00}"
    day = date.fromisoformat(text)
    if interval == "week":
        return f"Week of {day:%-d %b %Y}", f"{day:%-d %b}"
    if interval == "month":
        return f"{day:%B %Y}", f"{day:%b %y}"
    return f"{day:%a %-d %b %Y}", f"{day:%-d %b}"


def chart_points(series: Sequence[dict], metric: str, interval: str, timezone: str) -> list[Point]:
    """A stats time series (rows with ``date`` and the metrics) as the points of one metric,
    labelled in the site's time zone."""
    points = []
    for row in series:
        label, tick = _point_label(str(row["date"]), interval, timezone)
        points.append(Point(label=label, tick=tick, value=float(row.get(metric, 0) or 0)))
    return points
