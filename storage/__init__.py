"""LMDB storage: one environment, named databases, counters, sketches, the event log, records.

This room imports nothing else of Footfall's. Keys are fixed-width big-endian integers so
that byte order is time order and a time range is one cursor scan.
"""

from storage.environment import StorageFullError, Store

__all__ = ["Store", "StorageFullError"]
