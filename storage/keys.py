"""Key layouts. Fixed-width big-endian integers so that byte order is numeric order.

A counter or sketch key is ``site u32 | granularity u8 | metric u16 | bucket u32 | dimension u32``
(15 bytes): for one site, granularity and metric, a range of buckets is one contiguous cursor
scan, and within a bucket the dimension values follow each other.
An event-log key is ``site u32 | timestamp_ms u64 | sequence u32`` (16 bytes).
"""

from __future__ import annotations

import struct

HOUR = 0
DAY = 1
WEEK = 2  # rollups of day buckets (storage.rollups): bucket = the Monday's day number
MONTH = 3  # bucket = the day number of the month's 1st

_BUCKET_KEY = struct.Struct(">IBHII")
_EVENT_KEY = struct.Struct(">IQI")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

pack_bucket_key = _BUCKET_KEY.pack
unpack_bucket_key = _BUCKET_KEY.unpack
pack_event_key = _EVENT_KEY.pack
unpack_event_key = _EVENT_KEY.unpack
BUCKET_KEY_SIZE = _BUCKET_KEY.size
EVENT_KEY_SIZE = _EVENT_KEY.size


def bucket_prefix(site: int, granularity: int, metric: int) -> bytes:
    return _BUCKET_KEY.pack(site, granularity, metric, 0, 0)[:7]


def pack_u32(value: int) -> bytes:
    return _U32.pack(value)


def unpack_u32(data: bytes) -> int:
    return _U32.unpack(data)[0]


def pack_u64(value: int) -> bytes:
    return _U64.pack(value)


def unpack_u64(data: bytes) -> int:
    return _U64.unpack(data)[0]
