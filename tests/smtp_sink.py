"""A loopback SMTP sink for tests of scheduled e-mail: aiosmtpd on 127.0.0.1, in its own thread.

``sink.messages`` holds every message received (parsed with :mod:`email`); ``wait_for(count)``
waits on a condition (no sleeps) until that many arrived. ``refuse_next(n)`` answers the next
``n`` messages ``451`` (a temporary failure: the sender retries); ``hold()`` makes the sink
record a message and then keep the SMTP transaction open, unanswered, until ``release()`` —
so a test can kill the sender in the middle of a send.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from email.message import EmailMessage

from aiosmtpd.controller import Controller


class SmtpSink:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refused = 0
        self._refuse = 0
        self._held = threading.Event()
        self._held.set()
        self._changed = threading.Condition()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        with self._changed:
            if self._refuse > 0:
                self._refuse -= 1
                self.refused += 1
                self._changed.notify_all()
                return "451 4.3.0 try again later"
            self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
            self._changed.notify_all()
        if not self._held.is_set():
            await asyncio.get_running_loop().run_in_executor(None, self._held.wait, 60)
        return "250 OK"

    def url(self, to: str = "team@example.test") -> str:
        """An apprise ``mailto://`` URL that sends to this sink (plain SMTP, no login)."""
        return f"mailto://127.0.0.1:{self.port}?from=reports@footfall.test&to={to}&mode=insecure"

    def refuse_next(self, count: int) -> None:
        with self._changed:
            self._refuse = count

    def hold(self) -> None:
        self._held.clear()

    def release(self) -> None:
        self._held.set()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[EmailMessage]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"the SMTP sink got {len(self.messages)} message(s), expected {count}")
            return list(self.messages)

    def stop(self) -> None:
        self.release()
        self._controller.stop()
