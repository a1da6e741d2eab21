"""A loopback HTTP sink for tests of notifiers and webhooks: it records every POST.

``HttpSink()`` listens on 127.0.0.1 on a free port in a daemon thread; ``sink.url`` is its
base address, ``sink.received`` the requests so far (path, headers, parsed JSON body) and
``sink.wait_for(count)`` waits on a condition (no sleeps) until that many have arrived.
``sink.fail_next(n)`` answers the next ``n`` requests 503, to exercise retries.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any


class HttpSink:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.refused = 0
        self._failures_left = 0
        self._changed = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                with sink._changed:
                    if sink._failures_left > 0:
                        sink._failures_left -= 1
                        sink.refused += 1
                        status = 503
                    else:
                        try:
                            body = json.loads(raw) if raw else None
                        except ValueError:
                            body = raw.decode("utf-8", "replace")
                        sink.received.append(Received(self.path, dict(self.headers), body))
                        status = 200
                    sink._changed.notify_all()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, count: int) -> None:
        with self._changed:
            self._failures_left = count

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least ``count`` requests arrived; returns them all."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"the sink got {len(self.received)} request(s), expected {count}")
            return list(self.received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
