"""Exports: query results turned into an :class:`appliance.extensions.Report` (the same planner
the screen reads), the SVG charts every output draws, and rendering through the exporter
plugins."""
