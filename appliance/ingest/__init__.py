"""The way in: events are built and checked by the pipeline, given a daily-salted visitor id,
committed by the group-commit writer, folded into counters, sketches, open visits and goals
by the aggregation step, and shown in the live buffer."""
