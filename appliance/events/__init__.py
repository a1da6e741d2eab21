"""Stored events as a read model: the event log's row codec, per-day column blocks and their
compaction, frames over a time range, and visits rebuilt from events."""
