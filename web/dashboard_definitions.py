"""Dashboard pages for a site's definitions: goals, funnels (with their report) and segments.

Anyone who can read a site reads these pages — a viewer, a shared link, a public dashboard —
and sees the numbers; analysts and admins also get the forms that create, change and delete
(``dashboard_site_analyst``, CSRF-checked like every unsafe dashboard request). The forms are
plain HTML posts answered with a redirect (or the page again, 422, naming what was wrong), so
they work without JavaScript. Every number comes from the same appliance functions the JSON
API calls (:mod:`web.api_definitions`), over the period, filters and segment in the URL
(:class:`~web.dashboard_views.SiteView`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from appliance.definitions.common import DefinitionError
from appliance.definitions.funnels import FOLLOWS, FunnelInput, Step
from appliance.definitions.goals import KINDS, GoalInput
from appliance.definitions.segments import Condition, SegmentInput
from appliance.filters import EVENT_DIMENSIONS, OPERATORS
from appliance.runtime.appliance import Appliance
from web.auth import dashboard_site_analyst, dashboard_site_viewer, principal_of, site_of
from web.charts import Point, funnel_chart
from web.dashboard import _view_options
from web.dashboard_views import SiteView, parse_site_view, viewer_id
from web.dependencies import ApplianceDep, FormDep
from web.pages import page as _page
from web.widgets import TOP_METRICS

MAX_STEPS = 8
FILTER_ROWS = 4
CONDITION_ROWS = 4
WINDOW_UNITS = {"minutes": 60, "hours": 3600, "days": 86400}
GOAL_KIND_LABELS = {"page": "Page visit", "event": "Custom event", "conversion": "Conversion"}
STEP_KIND_LABELS = {"page": "Page", "event": "Event", "goal": "Goal"}
CONDITION_LABELS = {
    "visited_page": "Visited a page", "did_event": "Did an event", "completed_goal": "Completed a goal",
    "min_pageviews": "At least N page views", "min_duration": "Visit longer than (seconds)",
    "channel": "Entry channel is", "visitor_type": "Visitor is (new / returning)",
}
OPERATOR_LABELS = {
    "is": "is", "is_not": "is not", "contains": "contains", "does_not_contain": "does not contain",
    "matches": "matches (*)", "does_not_match": "does not match (*)",
}
SEGMENT_DIMENSIONS = (*EVENT_DIMENSIONS, "entry_page", "exit_page")


def _options() -> dict[str, Any]:
    return {
        "goal_kinds": GOAL_KIND_LABELS, "step_kinds": STEP_KIND_LABELS, "follows": FOLLOWS,
        "window_units": WINDOW_UNITS, "condition_kinds": CONDITION_LABELS, "operators": OPERATOR_LABELS,
        "segment_dimensions": SEGMENT_DIMENSIONS, "max_steps": MAX_STEPS, "filter_rows": FILTER_ROWS,
        "condition_rows": CONDITION_ROWS, **_view_options(),
    }


def _text(form, key: str) -> str:
    value = form.get(key, "")
    return value.strip() if isinstance(value, str) else ""


def _all(form, key: str) -> list[str]:
    return [value.strip() if isinstance(value, str) else "" for value in form.getall(key, [])]


def _redirect(view: SiteView, path: str, **notice: str) -> Redirect:
    """Back to ``path`` under the site with the same view (period, filters, segment, link)."""
    url = view.url(path)
    if notice:
        url += ("&" if "?" in url else "?") + urlencode(notice)
    return Redirect(url, status_code=303)


# -- goals -------------------------------------------------------------------------------------
def goal_form(goal) -> dict[str, str]:
    return {"name": goal.name, "kind": goal.kind, "value": goal.page if goal.kind == "page" else goal.event,
            "prop_key": goal.prop_key, "prop_value": goal.prop_value}


def goal_input(form) -> tuple[dict[str, str], GoalInput]:
    values = {key: _text(form, key) for key in ("name", "kind", "value", "prop_key", "prop_value")}
    kind = values["kind"] if values["kind"] in KINDS else "page"
    data = GoalInput(
        name=values["name"], kind=kind, page=values["value"] if kind == "page" else "",
        event=values["value"] if kind != "page" else "", prop_key=values["prop_key"], prop_value=values["prop_value"],
    )
    return values, data


def _goals_page(request: Request, appliance: Appliance, *, error: str = "", form: dict[str, str] | None = None, editing=None,
                status: int = 200) -> Template:
    view = parse_site_view(request, appliance, "/goals")
    goals = {goal.id: goal for goal in appliance.goals.list(view.site.id)}
    rows = [{**row, "goal": goals[row["goal_id"]]} for row in appliance.goal_reports.report(view.query())]
    if editing is None and request.query_params.get("edit", "").isdigit():
        editing = goals.get(int(request.query_params["edit"]))
    if form is None:
        form = goal_form(editing) if editing is not None else {"kind": "page"}
    return _page(request, "goals.html", site=view.site, view=view, rows=rows, form=form, editing=editing,
                 error=error, status=status, saved=request.query_params.get("saved", ""), **_options())


class GoalPages(Controller):
    """The Goals page: every goal's conversions over the period; the forms for analysts."""

    path = "/sites/{domain:str}/goals"
    include_in_schema = False

    @get("/", guards=[dashboard_site_viewer], summary="A site's goals and their conversions", sync_to_thread=True)
    def goals(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Template:
        return _goals_page(request, appliance)

    @post("/", guards=[dashboard_site_analyst], summary="Create a goal (analysts, admins)", sync_to_thread=True)
    def create_goal(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], form: FormDep) -> Response:
        form = form
        values, data = goal_input(form)
        principal = principal_of(request)
        try:
            goal = appliance.goals.create(site_of(request).id, data, principal.name)
        except DefinitionError as error:
            return _goals_page(request, appliance, error=f"{error.field}: {error.message}", form=values, status=422)
        return _redirect(parse_site_view(request, appliance), "/goals", saved=goal.name)

    @post("/{goal_id:int}", guards=[dashboard_site_analyst], summary="Change a goal (analysts, admins)", sync_to_thread=True)
    def change_goal(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], goal_id: FromPath[int], form: FormDep) -> Response:
        goals = appliance.goals
        editing = _definition(goals.get, site_of(request).id, goal_id)
        values, data = goal_input(form)
        try:
            goal = goals.change(site_of(request).id, goal_id, data)
        except DefinitionError as error:
            return _goals_page(request, appliance, error=f"{error.field}: {error.message}", form=values, editing=editing, status=422)
        return _redirect(parse_site_view(request, appliance), "/goals", saved=goal.name)

    @post("/{goal_id:int}/delete", guards=[dashboard_site_analyst], summary="Delete a goal (analysts, admins)", sync_to_thread=True)
    def delete_goal(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], goal_id: FromPath[int]) -> Response:
        goals = appliance.goals
        _definition(goals.get, site_of(request).id, goal_id)
        goals.delete(site_of(request).id, goal_id)
        return _redirect(parse_site_view(request, appliance), "/goals")


def _definition(getter, *args):
    """A goal, funnel or segment by id, or 404."""
    try:
        return getter(*args)
    except DefinitionError as error:
        raise NotFoundException(error.message) from None


# -- funnels -----------------------------------------------------------------------------------
def funnel_form(funnel) -> dict[str, Any]:
    window = funnel.window_seconds
    unit = next((name for name, size in reversed(WINDOW_UNITS.items()) if window and window % size == 0), "minutes")
    return {
        "name": funnel.name,
        "steps": [{"kind": s.kind, "value": s.value, "follows": s.follows, "name": s.name} for s in funnel.steps],
        "mode": "window" if window else "visit",
        "window_value": str(window // WINDOW_UNITS[unit]) if window else "",
        "window_unit": unit,
    }


def funnel_input(form, goals, site_id: int) -> tuple[dict[str, Any], FunnelInput]:
    kinds, values, follows, names = (_all(form, key) for key in ("step_kind", "step_value", "step_follows", "step_name"))
    steps, shown = [], []
    for index, value in enumerate(values[:MAX_STEPS]):
        kind = kinds[index] if index < len(kinds) and kinds[index] in STEP_KIND_LABELS else "page"
        follow = follows[index] if index < len(follows) and follows[index] in FOLLOWS else "eventually"
        name = names[index] if index < len(names) else ""
        shown.append({"kind": kind, "value": value, "follows": follow, "name": name})
        if not value:
            continue
        if kind == "goal" and not value.isdigit():  # a goal may be named rather than numbered
            goal = goals.by_name(site_id, value)
            if goal is None:
                raise DefinitionError(f"steps[{len(steps)}].value", f"no goal named {value!r}")
            value = str(goal.id)
        steps.append(Step(kind=kind, value=value, follows=follow, name=name))
    values_shown = {
        "name": _text(form, "name"), "steps": shown, "mode": "window" if _text(form, "mode") == "window" else "visit",
        "window_value": _text(form, "window_value"), "window_unit": _text(form, "window_unit") or "minutes",
    }
    window = None
    if values_shown["mode"] == "window":
        unit = WINDOW_UNITS.get(values_shown["window_unit"], 60)
        if not values_shown["window_value"].isdigit():
            raise DefinitionError("window_seconds", "a window across visits needs a whole number")
        window = int(values_shown["window_value"]) * unit
    return values_shown, FunnelInput(name=values_shown["name"], steps=steps, window_seconds=window)


def _funnels_page(request: Request, appliance: Appliance, *, error: str = "", form: dict[str, Any] | None = None, editing=None,
                  status: int = 200) -> Template:
    view = parse_site_view(request, appliance, "/funnels")
    funnels = appliance.funnels.list(view.site.id)
    if editing is None and request.query_params.get("edit", "").isdigit():
        editing = next((f for f in funnels if f.id == int(request.query_params["edit"])), None)
    goals = appliance.goals.list(view.site.id)
    if form is None:
        form = funnel_form(editing) if editing is not None else {"mode": "visit", "window_unit": "days", "steps": []}
        names = {str(goal.id): goal.name for goal in goals}
        form["steps"] = [{**step, "value": names.get(step["value"], step["value"]) if step["kind"] == "goal" else step["value"]}
                         for step in form["steps"]]
    steps = list(form.get("steps", []))
    steps += [{"kind": "page", "value": "", "follows": "eventually", "name": ""}] * (MAX_STEPS - len(steps))
    form = {**form, "steps": steps}
    return _page(request, "funnels.html", site=view.site, view=view, funnels=funnels, form=form, editing=editing,
                 goals=goals, goal_names={str(goal.id): goal.name for goal in goals}, error=error, status=status,
                 **_options())


class FunnelPages(Controller):
    """The Funnels page (list, forms) and each funnel's report over the view in the URL."""

    path = "/sites/{domain:str}/funnels"
    include_in_schema = False

    @get("/", guards=[dashboard_site_viewer], summary="A site's funnels", sync_to_thread=True)
    def funnels(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Template:
        return _funnels_page(request, appliance)

    @post("/", guards=[dashboard_site_analyst], summary="Create a funnel (analysts, admins)", sync_to_thread=True)
    def create_funnel(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], form: FormDep) -> Response:
        site = site_of(request)
        form = form
        values: dict[str, Any] | None = None
        try:
            values, data = funnel_input(form, appliance.goals, site.id)
            funnel = appliance.funnels.create(site.id, data, principal_of(request).name)
        except DefinitionError as error:
            return _funnels_page(request, appliance, error=f"{error.field}: {error.message}", form=values or _raw_funnel(form),
                                 status=422)
        return _redirect(parse_site_view(request, appliance), f"/funnels/{funnel.id}")

    @get("/{funnel_id:int}", guards=[dashboard_site_viewer], sync_to_thread=True,
         summary="A funnel's report: visitors, drop-off and time per step")
    def funnel_report(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], funnel_id: FromPath[int]) -> Template:
        funnels = appliance.funnels
        funnel = _definition(funnels.get, site_of(request).id, funnel_id)
        view = parse_site_view(request, appliance, f"/funnels/{funnel_id}")
        report = appliance.stats.funnel(view.query(), funnel)
        names = _goal_names(request, appliance)
        for step, row in zip(funnel.steps, report["steps"], strict=True):
            if step.kind == "goal" and not step.name:
                row["name"] = f"goal: {names.get(step.value, step.value)}"
        points = [Point(label=step["name"], value=step["visitors"]) for step in report["steps"]]
        title = f"{funnel.name}: visitors per step, {view.label}"
        chart = funnel_chart(points, title=title)
        chart_narrow = funnel_chart(points, title=title, width=360, height=260)  # shown on phones instead
        segments = appliance.segments.list(view.site.id, viewer_id(request))
        return _page(request, "funnel.html", site=view.site, view=view, funnel=funnel, report=report, chart=chart,
                     chart_narrow=chart_narrow, segments=segments, **_options())

    @post("/{funnel_id:int}", guards=[dashboard_site_analyst], summary="Change a funnel (analysts, admins)", sync_to_thread=True)
    def change_funnel(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], funnel_id: FromPath[int], form: FormDep) -> Response:
        site = site_of(request)
        funnels = appliance.funnels
        editing = _definition(funnels.get, site.id, funnel_id)
        form = form
        values: dict[str, Any] | None = None
        try:
            values, data = funnel_input(form, appliance.goals, site.id)
            funnels.change(site.id, funnel_id, data)
        except DefinitionError as error:
            return _funnels_page(request, appliance, error=f"{error.field}: {error.message}", form=values or _raw_funnel(form),
                                 editing=editing, status=422)
        return _redirect(parse_site_view(request, appliance), f"/funnels/{funnel_id}")

    @post("/{funnel_id:int}/delete", guards=[dashboard_site_analyst], summary="Delete a funnel (analysts, admins)", sync_to_thread=True)
    def delete_funnel(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], funnel_id: FromPath[int]) -> Response:
        funnels = appliance.funnels
        _definition(funnels.get, site_of(request).id, funnel_id)
        funnels.delete(site_of(request).id, funnel_id)
        return _redirect(parse_site_view(request, appliance), "/funnels")


def _goal_names(request: Request, appliance: Appliance) -> dict[str, str]:
    return {str(goal.id): goal.name for goal in appliance.goals.list(site_of(request).id)}


def _raw_funnel(form) -> dict[str, Any]:
    """What was typed, when it could not even be read into a funnel."""
    kinds, values, follows, names = (_all(form, key) for key in ("step_kind", "step_value", "step_follows", "step_name"))
    steps = [{"kind": k, "value": v, "follows": f, "name": n} for k, v, f, n in zip(kinds, values, follows, names, strict=False)]
    return {"name": _text(form, "name"), "steps": steps, "mode": _text(form, "mode") or "visit",
            "window_value": _text(form, "window_value"), "window_unit": _text(form, "window_unit") or "days"}


# -- segments ----------------------------------------------------------------------------------
def segment_form(segment) -> dict[str, Any]:
    return {
        "name": segment.name, "visibility": segment.visibility,
        "filters": [{"operator": f.operator, "dimension": f.dimension, "value": "|".join(f.values)} for f in segment.filters],
        "conditions": [{"kind": c.kind, "value": c.value} for c in segment.conditions],
    }


def segment_input(form) -> tuple[dict[str, Any], SegmentInput]:
    dimensions, operators, values = (_all(form, key) for key in ("filter_dimension", "filter_operator", "filter_value"))
    kinds, condition_values = _all(form, "condition_kind"), _all(form, "condition_value")
    filters, shown_filters = [], []
    for dimension, operator, value in zip(dimensions, operators, values, strict=False):
        shown_filters.append({"dimension": dimension, "operator": operator, "value": value})
        if value:
            filters.append([operator if operator in OPERATORS else "is", dimension, value.split("|")])
    conditions, shown_conditions = [], []
    for kind, value in zip(kinds, condition_values, strict=False):
        shown_conditions.append({"kind": kind, "value": value})
        if value:
            conditions.append(Condition(kind=kind, value=value))
    visibility = "private" if _text(form, "visibility") == "private" else "site"
    shown = {"name": _text(form, "name"), "visibility": visibility, "filters": shown_filters, "conditions": shown_conditions}
    return shown, SegmentInput(name=shown["name"], filters=filters, conditions=conditions, visibility=visibility)


def _padded(rows: list[dict[str, str]], count: int, blank: dict[str, str]) -> list[dict[str, str]]:
    return [*rows, *([blank] * max(0, count - len(rows)))]


def _segments_page(request: Request, appliance: Appliance, *, error: str = "", form: dict[str, Any] | None = None, editing=None,
                   status: int = 200) -> Template:
    view = parse_site_view(request, appliance, "/segments")
    segments = appliance.segments.list(view.site.id, viewer_id(request))
    if editing is None and request.query_params.get("edit", "").isdigit():
        editing = next((s for s in segments if s.id == int(request.query_params["edit"])), None)
    if form is None:
        form = segment_form(editing) if editing is not None else {"visibility": "site"}
    form = {
        **form,
        "filters": _padded(form.get("filters", []), FILTER_ROWS, {"dimension": "page", "operator": "is", "value": ""}),
        "conditions": _padded(form.get("conditions", []), CONDITION_ROWS, {"kind": "visited_page", "value": ""}),
    }
    return _page(request, "segments.html", site=view.site, view=view, segments=segments, form=form, editing=editing,
                 goals=appliance.goals.list(view.site.id), error=error, status=status, **_options())


def _segment_error(error: DefinitionError | ValueError) -> str:
    if isinstance(error, DefinitionError):
        return f"{error.field}: {error.message}"
    return str(error)


class SegmentPages(Controller):
    """The Segments page (list, forms) and the side-by-side comparison of two segments."""

    path = "/sites/{domain:str}/segments"
    include_in_schema = False

    @get("/", guards=[dashboard_site_viewer], summary="A site's segments", sync_to_thread=True)
    def segments(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Template:
        return _segments_page(request, appliance)

    @post("/", guards=[dashboard_site_analyst], summary="Save a segment (analysts, admins)", sync_to_thread=True)
    def create_segment(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], form: FormDep) -> Response:
        values, data = segment_input(form)
        principal = principal_of(request)
        try:
            segment = appliance.segments.create(
                site_of(request).id, data, viewer_id(request), principal.name)
        except (DefinitionError, msgspec.ValidationError) as error:
            return _segments_page(request, appliance, error=_segment_error(error), form=values, status=422)
        return Redirect(parse_site_view(request, appliance).url("", segment=segment.id), status_code=303)

    @get("/compare", guards=[dashboard_site_viewer], sync_to_thread=True,
         summary="Two segments (or a segment and everyone) side by side")
    def compare_segments(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Template:
        view = parse_site_view(request, appliance, "/segments/compare")
        registry = appliance.segments
        visible = {str(s.id): s for s in registry.list(view.site.id, viewer_id(request))}
        chosen = []
        for key, default in (("a", next(iter(visible), "everyone")), ("b", "everyone")):
            value = request.query_params.get(key, default)
            chosen.append(value if value in visible or value == "everyone" else "everyone")
        unsegmented = replace(view, segment=None, segment_name="")
        columns = appliance.stats.compare_segments(unsegmented.query(), chosen)
        rows = []
        for key, label, lower_is_better in TOP_METRICS:
            first, second = columns[0]["results"].get(key, 0), columns[1]["results"].get(key, 0)
            difference = None if not second else round(100 * (first - second) / second, 1)
            good = None if not difference else (difference < 0) == lower_is_better
            rows.append({"key": key, "label": label, "values": [first, second], "difference": difference, "good": good})
        names = [column.get("name") or "Everyone" for column in columns]
        return _page(request, "compare.html", site=view.site, view=view, choices=list(visible.values()),
                     chosen=chosen, names=names, rows=rows, **_options())

    @post("/{segment_id:int}", guards=[dashboard_site_analyst], summary="Change a segment (analysts, admins)", sync_to_thread=True)
    def change_segment(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], segment_id: FromPath[int], form: FormDep) -> Response:
        registry = appliance.segments
        site = site_of(request)
        editing = _definition(registry.get, site.id, segment_id, viewer_id(request))
        values, data = segment_input(form)
        try:
            registry.change(site.id, segment_id, data, viewer_id(request))
        except (DefinitionError, msgspec.ValidationError) as error:
            return _segments_page(request, appliance, error=_segment_error(error), form=values, editing=editing, status=422)
        return _redirect(parse_site_view(request, appliance), "/segments")

    @post("/{segment_id:int}/delete", guards=[dashboard_site_analyst], summary="Delete a segment (analysts, admins)", sync_to_thread=True)
    def delete_segment(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], segment_id: FromPath[int]) -> Response:
        registry = appliance.segments
        _definition(registry.get, site_of(request).id, segment_id, viewer_id(request))
        registry.delete(site_of(request).id, segment_id, viewer_id(request))
        view = parse_site_view(request, appliance)
        return _redirect(view if view.segment != segment_id else replace(view, segment=None), "/segments")


DEFINITION_PAGES = [GoalPages, FunnelPages, SegmentPages]
