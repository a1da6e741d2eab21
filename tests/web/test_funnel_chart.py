"""The funnel's bar chart (web/charts.py: funnel_chart)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from web.charts import Point, funnel_chart

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup) -> ET.Element:
    return ET.fromstring(str(markup))


def test_one_bar_per_step_scaled_to_the_axis_with_drop_off_behind():
    steps = [Point(label="Home", value=80), Point(label="Pricing", value=40), Point(label="Signup", value=10)]
    root = parse(funnel_chart(steps, title="Signup funnel"))
    assert root.get("role") == "img" and root.get("aria-label") == "Signup funnel"
    groups = root.findall(f"{SVG}g[@class='bar-group']")
    assert len(groups) == 3
    heights = [float(g.find(f"{SVG}rect[@class='bar-value']").get("height")) for g in groups]
    assert heights[0] > heights[1] > heights[2] > 0
    assert abs(heights[0] / heights[1] - 2) < 0.01 and abs(heights[1] / heights[2] - 4) < 0.01
    # the previous step is drawn pale behind each later step: the gap is the drop-off
    assert groups[0].find(f"{SVG}rect[@class='bar-previous']") is None
    behind = groups[1].find(f"{SVG}rect[@class='bar-previous']")
    assert float(behind.get("height")) == heights[0]
    titles = [g.find(f"{SVG}title").text for g in groups]
    assert titles[0] == "Step 1 · Home: 80 visitors"
    assert titles[1] == "Step 2 · Pricing: 40 visitors (50% of step 1; 40 dropped off)"
    assert titles[2] == "Step 3 · Signup: 10 visitors (25% of step 2; 30 dropped off)"
    values = [t.text for t in root.findall(f".//{SVG}text[@class='bar-label']")]
    assert values == ["80 · 100%", "40 · 50%", "10 · 12%"]
    assert all(g.get("tabindex") == "0" for g in groups)  # keyboard users reach every step
    # colours are attributes, so the chart draws the same without our stylesheet (a PDF)
    assert groups[0].find(f"{SVG}rect[@class='bar-value']").get("fill").startswith("#")


def test_long_labels_are_shortened_on_the_axis_but_whole_in_the_tooltip():
    name = "/a/very/long/page/pattern/that/does/not/fit/*"
    steps = [Point(label=name, value=5)] + [Point(label=f"Step {i}", value=5 - i) for i in range(1, 8)]
    root = parse(funnel_chart(steps))
    axis = [t.text for t in root.findall(f".//{SVG}g[@class='bar-group']/{SVG}text[@class='axis']")]
    assert len(axis) == 8 and axis[0].endswith("…") and len(axis[0]) < len(name)
    assert name in root.find(f"{SVG}g[@class='bar-group']/{SVG}title").text


def test_empty_funnels_and_escaping():
    root = parse(funnel_chart([Point(label="<b>&", value=0), Point(label="x", value=0)], title="a <b>"))
    assert root.find(f"{SVG}title").text == "a <b>"
    assert "<b>&" in root.find(f"{SVG}g[@class='bar-group']/{SVG}title").text
    assert [t.text for t in root.findall(f".//{SVG}text[@class='bar-label']")] == ["0 · 0%", "0 · 0%"]
    assert parse(funnel_chart([])).find(f"{SVG}g") is None
