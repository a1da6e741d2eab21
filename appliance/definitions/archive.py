"""A site's settings and definitions as a portable manifest: the heart of a site archive.

``footfall site export`` writes a zip of ``manifest.json`` (this) and ``events.ndjson`` (the
raw events, :mod:`appliance.events.interchange`); ``footfall site import`` reads it back on
another installation (:mod:`appliance.exports.site_archive`, :mod:`appliance.imports.site_archive`).
The manifest is versioned (``format``, ``version``) and holds the site's settings (domain,
name, time zone, retention, allowed hostnames, public), its goals, funnels and site-wide
segments. Ids are local to an installation, so :func:`restore` creates the definitions anew
and rewrites every reference: a funnel's goal steps, a segment's ``completed_goal`` conditions and its
``segment`` filters. Private segments belong to a user of the old installation and are left
out (the manifest counts them).
"""

from __future__ import annotations

import msgspec

from appliance.definitions.common import DefinitionError
from appliance.definitions.funnels import FunnelInput, Funnels
from appliance.definitions.goals import GoalInput, Goals
from appliance.definitions.segments import SegmentInput, Segments
from appliance.models import Site

FORMAT = "footfall-site"
VERSION = 1


class SiteSettings(msgspec.Struct, kw_only=True):
    domain: str
    name: str = ""
    timezone: str = "UTC"
    retention_days: int = 400
    allowed_hostnames: list[str] = []
    public: bool = False


class GoalRecord(msgspec.Struct, kw_only=True):
    id: int
    definition: GoalInput


class FunnelRecord(msgspec.Struct, kw_only=True):
    id: int
    definition: FunnelInput


class SegmentRecord(msgspec.Struct, kw_only=True):
    id: int
    definition: SegmentInput


class Manifest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    format: str
    version: int
    site: SiteSettings
    goals: list[GoalRecord] = []
    funnels: list[FunnelRecord] = []
    segments: list[SegmentRecord] = []
    private_segments_left_out: int = 0
    events: int = 0
    exported_at: float = 0.0


def manifest_of(site: Site, goals: Goals, funnels: Funnels, segments: Segments) -> Manifest:
    """The manifest of a site as it is now (``events`` is filled in by the archive writer)."""
    every_segment = segments.list(site.id)
    shared = [segment for segment in every_segment if segment.visibility == "site"]
    return Manifest(
        format=FORMAT,
        version=VERSION,
        site=SiteSettings(domain=site.domain, name=site.name, timezone=site.timezone,
                          retention_days=site.retention_days, allowed_hostnames=list(site.allowed_hostnames),
                          public=site.public),
        goals=[
            GoalRecord(id=goal.id, definition=GoalInput(name=goal.name, kind=goal.kind, page=goal.page,
                                                        event=goal.event, prop_key=goal.prop_key,
                                                        prop_value=goal.prop_value))
            for goal in goals.list(site.id)
        ],
        funnels=[
            FunnelRecord(id=funnel.id, definition=FunnelInput(name=funnel.name, steps=list(funnel.steps),
                                                              window_seconds=funnel.window_seconds))
            for funnel in funnels.list(site.id)
        ],
        segments=[
            SegmentRecord(id=segment.id, definition=SegmentInput(
                name=segment.name, filters=[list(msgspec.to_builtins(f)) for f in segment.filters],
                conditions=list(segment.conditions), visibility="site", materialised=segment.materialised))
            for segment in shared
        ],
        private_segments_left_out=len(every_segment) - len(shared),
    )


def check(manifest: Manifest) -> None:
    if manifest.format != FORMAT:
        raise DefinitionError("manifest.format", f"not a Footfall site archive ({manifest.format!r})")
    if manifest.version != VERSION:
        raise DefinitionError("manifest.version", f"site archive version {manifest.version} is not supported ({VERSION} is)")


def restore(site: Site, manifest: Manifest, goals: Goals, funnels: Funnels, segments: Segments, author: str) -> dict[str, int]:
    """Create the manifest's definitions for ``site`` (ids rewritten); returns how many of each."""
    goal_ids: dict[str, str] = {}
    for record in manifest.goals:
        goal_ids[str(record.id)] = str(goals.create(site.id, record.definition, author).id)

    def goal(value: str, field: str) -> str:
        if value not in goal_ids:
            raise DefinitionError(field, f"refers to goal {value}, which the archive does not hold")
        return goal_ids[value]

    for record in manifest.funnels:
        steps = [
            msgspec.structs.replace(step, value=goal(step.value, "funnels.steps")) if step.kind == "goal" else step
            for step in record.definition.steps
        ]
        funnels.create(site.id, msgspec.structs.replace(record.definition, steps=steps), author)
    segment_ids: dict[str, str] = {}
    for record in manifest.segments:
        definition = record.definition
        conditions = [
            msgspec.structs.replace(c, value=goal(c.value, "segments.conditions")) if c.kind == "completed_goal" else c
            for c in definition.conditions
        ]
        filters = [
            [operator, dimension, [segment_ids.get(str(v), str(v)) for v in values]] if dimension == "segment" else [operator, dimension, values]
            for operator, dimension, values in definition.filters
        ]
        made = segments.create(site.id, msgspec.structs.replace(definition, conditions=conditions, filters=filters),
                               owner=author)
        segment_ids[str(record.id)] = str(made.id)
    return {"goals": len(manifest.goals), "funnels": len(manifest.funnels), "segments": len(manifest.segments)}
