"""The built-in alert kinds, registered through ``register_alert_kinds`` like a third party's.

- ``traffic_change``: the last complete hour's page views against the mean of the same hour
  (168, 336, … hours earlier) over the previous ``weeks`` weeks. A *spike* fires when the hour
  has at least ``factor`` × that mean and at least ``min_pageviews``; a *drop* fires when it
  has at most the mean ÷ ``factor`` while the mean is at least ``min_pageviews`` (so a quiet
  site never "drops").
- ``no_events``: no event at all for ``minutes`` minutes while the site normally has traffic:
  the mean events of the current hour's slot over the previous ``weeks`` weeks is at least
  ``normal_hourly_events`` (the tracker broke, the site is down).
- ``goal_threshold``: a goal's conversions (or revenue in one currency) in a period of local
  days (``today``, ``yesterday``, ``last_7_days``, ``last_30_days``) above or below a threshold.
- ``live_visitors``: more than ``threshold`` distinct visitors in the last ``window_minutes``.

Checks only read the :class:`~appliance.extensions.AlertContext` (hour counters, the live
buffer, day counters of goals): cheap enough to run every minute.
"""

from __future__ import annotations

from datetime import timedelta

from appliance.extensions import AlertKind, AlertParameter, AlertReading
from appliance.hooks.specs import hookimpl

WEEK_HOURS = 168
PERIODS = ("today", "yesterday", "last_7_days", "last_30_days")
WEEKS = AlertParameter("weeks", "integer", "previous weeks the same hour is averaged over", 4, 1, 12)


def same_hour_mean(context, metric: str, hour: int, weeks: int) -> float:
    earlier = [hour - WEEK_HOURS * week for week in range(1, weeks + 1)]
    counts = context.hourly(metric, earlier[-1], earlier[0])
    return sum(counts.get(slot, 0) for slot in earlier) / weeks


def check_traffic_change(context, parameters) -> AlertReading:
    hour = int(context.now // 3600) - 1  # the last complete hour
    current = context.hourly("pageviews", hour, hour).get(hour, 0)
    baseline = same_hour_mean(context, "pageviews", hour, parameters["weeks"])
    factor, floor = parameters["factor"], parameters["min_pageviews"]
    direction = parameters["direction"]
    spike = current >= factor * baseline and current >= floor
    drop = baseline >= floor and current <= baseline / factor
    firing = (spike and direction in ("spike", "either")) or (drop and direction in ("drop", "either"))
    what = "spike" if spike else "drop" if drop else "normal"
    return AlertReading(
        firing,
        f"{context.site}: {current} page views in the last complete hour against a mean of "
        f"{baseline:.1f} in the same hour of the previous {parameters['weeks']} weeks ({what}).",
    )


def check_no_events(context, parameters) -> AlertReading:
    minutes = parameters["minutes"]
    last = context.last_event_at(context.now - minutes * 60)
    normal = same_hour_mean(context, "events", int(context.now // 3600), parameters["weeks"])
    expected = normal >= parameters["normal_hourly_events"]
    firing = last is None and expected
    if last is not None:
        message = f"{context.site}: events are arriving (the latest {context.now - last:.0f} s ago)."
    else:
        message = (
            f"{context.site}: no events for {minutes} minutes; this hour normally has "
            f"{normal:.1f} events (mean of the previous {parameters['weeks']} weeks)."
        )
    return AlertReading(firing, message)


def period_days(context, period: str):
    today = context.today()
    return {
        "today": (today, today),
        "yesterday": (today - timedelta(days=1), today - timedelta(days=1)),
        "last_7_days": (today - timedelta(days=6), today),
        "last_30_days": (today - timedelta(days=29), today),
    }[period]


def check_goal_threshold(context, parameters) -> AlertReading:
    first, last = period_days(context, parameters["period"])
    goal, measure = parameters["goal"], parameters["measure"]
    try:
        conversions, revenue = context.goal_totals(goal, first, last)
    except LookupError:
        return AlertReading(False, f"{context.site}: there is no goal named {goal!r}.")
    if measure == "revenue":
        value = revenue.get(parameters["currency"].upper(), 0.0)
        shown = f"{value:,.2f} {parameters['currency'].upper()} revenue"
    else:
        value = conversions
        shown = f"{conversions} conversions"
    threshold = parameters["threshold"]
    firing = value > threshold if parameters["comparison"] == "above" else value < threshold
    return AlertReading(
        firing,
        f"{context.site}: goal {goal!r} has {shown} ({parameters['period'].replace('_', ' ')}), "
        f"{'above' if value > threshold else 'below' if value < threshold else 'at'} the threshold of {threshold:g}.",
    )


def check_live_visitors(context, parameters) -> AlertReading:
    window = parameters["window_minutes"]
    visitors = context.live_visitors(window * 60)
    threshold = parameters["threshold"]
    return AlertReading(
        visitors > threshold,
        f"{context.site}: {visitors} visitors in the last {window} minutes (alert above {threshold}).",
    )


KINDS = (
    AlertKind(
        name="traffic_change",
        description="Page views of the last complete hour against the same hour of previous weeks",
        parameters=(
            AlertParameter("direction", "choice", "what to watch for", "either", choices=("spike", "drop", "either")),
            AlertParameter("factor", "number", "how many times above (spike) or below (drop) the mean", 3.0, 1.1, 1000),
            AlertParameter("min_pageviews", "integer", "page views the hour (spike) or the mean (drop) must reach", 20, 1),
            WEEKS,
        ),
        check=check_traffic_change,
    ),
    AlertKind(
        name="no_events",
        description="No events for N minutes while the site normally has traffic",
        parameters=(
            AlertParameter("minutes", "integer", "minutes without any event", 30, 5, 1440),
            AlertParameter("normal_hourly_events", "number", "mean events this hour must normally have", 5.0, 0),
            WEEKS,
        ),
        check=check_no_events,
    ),
    AlertKind(
        name="goal_threshold",
        description="A goal's conversions or revenue above or below a threshold in a period",
        parameters=(
            AlertParameter("goal", "string", "the goal's name"),
            AlertParameter("measure", "choice", "what is compared", "conversions", choices=("conversions", "revenue")),
            AlertParameter("comparison", "choice", "fire above or below the threshold", "below", choices=("above", "below")),
            AlertParameter("threshold", "number", "conversions, or revenue in major units", None, 0),
            AlertParameter("period", "choice", "local days counted", "yesterday", choices=PERIODS),
            AlertParameter("currency", "string", "currency of the revenue (ISO 4217)", "USD"),
        ),
        check=check_goal_threshold,
    ),
    AlertKind(
        name="live_visitors",
        description="More than N visitors on the site right now",
        parameters=(
            AlertParameter("threshold", "integer", "visitors", None, 0),
            AlertParameter("window_minutes", "integer", "what 'right now' means, in minutes", 5, 1, 60),
        ),
        check=check_live_visitors,
    ),
)


@hookimpl
def register_alert_kinds(appliance):
    return list(KINDS)
