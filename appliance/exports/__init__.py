"""Exports: query results turned into an :class:`appliance.extensions.Report` (the same planner
the screen reads), the SVG charts every output draws, rendering through the exporter plugins,
and the raw events of a period (:mod:`appliance.exports.raw_events`)."""
