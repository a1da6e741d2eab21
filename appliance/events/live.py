"""The live ring buffer: the last N committed events, in memory, for the live view.

Appended by the writer thread after each commit; read by the API and by SSE subscribers, who
are woken through per-subscriber asyncio queues.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

from appliance.models import Event


class LiveBuffer:
    def __init__(self, size: int) -> None:
        self._events: deque[tuple[str, Event]] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()

    def extend(self, events: list[tuple[str, Event]]) -> None:
        with self._lock:
            self._events.extend(events)
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, events)
            except RuntimeError:  # loop closed
                self._subscribers.discard((loop, queue))

    def latest(self, limit: int = 100, site_id: int | None = None) -> list[tuple[str, Event]]:
        with self._lock:
            items = list(self._events)
        if site_id is not None:
            items = [item for item in items if item[1].site_id == site_id]
        return items[-limit:][::-1]

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=1000)
        with self._lock:
            self._subscribers.add((asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._subscribers = {item for item in self._subscribers if item[1] is not queue}
