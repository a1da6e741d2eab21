"""Exports: raw events of a period (:mod:`appliance.exports.raw_events`) and, from the
reports issue, report exporters."""
