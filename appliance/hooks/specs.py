"""Footfall's hook specifications: the surface that built-in and third-party plugins implement.

Grouped by phase. Built-in plugins (``plugins/``) use exactly these hooks, registered through
the same plugin manager as third-party plugins from the ``footfall`` entry-point group.
Implement a hook with ``@hookimpl`` (``from appliance import hookimpl``) in a module and
register that module under the ``footfall`` entry-point group, or drop it in the plugins
folder.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

from appliance.config import Settings
from appliance.extensions import AlertKind, BackupTarget, Exporter, Notifier
from appliance.models import Event, RequestContext


class Appliance(Protocol):
    """What a hook may rely on of the running appliance: its settings, and a plugin's own
    table of them (``[plugins.NAME]`` in the config file, ``FOOTFALL_PLUGIN_NAME_KEY`` in the
    environment). The object passed is :class:`appliance.runtime.appliance.Appliance`."""

    settings: Settings

    def plugin_settings(self, name: str) -> dict[str, Any]: ...

hookspec = pluggy.HookspecMarker("footfall")
hookimpl = pluggy.HookimplMarker("footfall")


# -- lifecycle ----------------------------------------------------------------------------
@hookspec
def startup(appliance: Appliance) -> None:
    """Called once when the appliance has opened its storage, before it serves any request.

    :param appliance: the running :class:`appliance.runtime.appliance.Appliance`; a plugin may keep a
        reference to read settings (``appliance.settings``) or query stats.
    Return value is ignored.
    """


@hookspec
def shutdown(appliance: Appliance) -> None:
    """Called once when the appliance closes, after the last batch was committed.

    :param appliance: the appliance being closed. Return value is ignored.
    """


# -- ingest -------------------------------------------------------------------------------
@hookspec(firstresult=True)
def filter_event(event: Event, context: RequestContext) -> str | None:
    """Decide whether an incoming event is dropped, before it is enriched.

    Runs on the request's hot path: keep it fast and free of I/O.

    :param event: the validated event (site resolved, not yet enriched).
    :param context: the request: client IP (never stored), user agent, query parameters.
    :return: ``None`` to keep the event, or a short reason string (for example ``"bot"``)
        to drop it; the reason is counted in ``/api/v1/health``. ``firstresult``: the first
        plugin that returns a reason wins.
    """


@hookspec
def enrich_event(event: Event, context: RequestContext) -> dict[str, Any] | None:
    """Add derived fields to an event (browser, source, channel, country, ...).

    Runs on the request's hot path: keep it fast, cache expensive lookups.

    :param event: the event as validated; fields set by other enrichers are not visible
        (enrichers run independently and their answers are merged).
    :param context: the request: client IP (never stored), user agent, query parameters.
    :return: a dict of :class:`appliance.models.Event` field names to values, or ``None``.
        When two plugins set the same field, the one registered later wins.
    """


# -- after commit -------------------------------------------------------------------------
@hookspec
def events_committed(appliance: Appliance, events: list[Event]) -> None:
    """Called once per committed batch, after the write transaction is durable.

    Runs on the writer thread: a plugin that sends events elsewhere should hand slow work
    (network calls) to its own thread or queue. An exception is logged and does not affect ingestion.

    :param appliance: the running appliance.
    :param events: the events of the batch, in commit order.
    Return value is ignored.
    """


# -- exports, notifications, alerts, backups -----------------------------------------------
@hookspec
def register_exporters(appliance: Appliance) -> list[Exporter] | None:
    """File formats reports can be exported to (the built-in CSV, JSON and PDF are plugins
    registering through this hook).

    :param appliance: the running appliance (read settings or plugin settings here).
    :return: a list of :class:`appliance.extensions.Exporter`; names must be unique (a later
        plugin with the same name replaces an earlier one).
    """


@hookspec
def register_notifiers(appliance: Appliance) -> list[Notifier] | None:
    """Channels that deliver a message with attachments (scheduled reports, alerts).

    :param appliance: the running appliance (read settings or plugin settings here).
    :return: a list of :class:`appliance.extensions.Notifier`, chosen by the destination
        URL's scheme.
    """


@hookspec
def register_backup_targets(appliance: Appliance) -> list[BackupTarget] | None:
    """Places a finished backup is shipped to after it is written.

    :param appliance: the running appliance (read settings or plugin settings here).
    :return: a list of :class:`appliance.extensions.BackupTarget`.
    """


@hookspec
def register_alert_kinds(appliance: Appliance) -> list[AlertKind] | None:
    """Conditions alert rules can watch (the built-in traffic, no-events, goal and live-visitor
    kinds are a plugin registering through this hook).

    Each kind's ``check(context, parameters)`` runs every minute per enabled rule, on the job
    thread, over a read-only :class:`appliance.extensions.AlertContext`; it must not do I/O.

    :param appliance: the running appliance (read settings or plugin settings here).
    :return: a list of :class:`appliance.extensions.AlertKind`; names must be unique (a later
        plugin with the same name replaces an earlier one).
    """
