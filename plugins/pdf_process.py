"""PDFs laid out in a process of their own, kept while exports follow one another.

weasyprint is Python from the document's parse to the last glyph. In the serving process a
render held the interpreter lock for the whole of it (the seed month's 30-day dashboard:
~0.35 s), taking turns with the tracker's requests, and its import and first render stayed in
the server's heap for good: ~30 MB of Pango, fontconfig, fontTools and stylesheets that an
appliance which exported one PDF then carried until it restarted (docs/performance.md,
twenty-fourth part). So the server writes the document (:func:`plugins.pdf_export.report_html`,
a few milliseconds) and a helper lays it out: a process that reads documents
on its input and answers PDFs on its output (``python -m plugins.pdf_export``: :func:`serve`
with the same code the server ran, :func:`plugins.pdf_export.render_document`).

A helper starts at the first export, serves the exports that follow (its fonts and
stylesheets warm: a warm render costs what one in the server did), and ends once none has come
for :data:`IDLE_S` seconds; the next export starts another (about a second: weasyprint's
import, as the server's first export paid before). Renders at the same time take a helper
each, at most :data:`MAX_HELPERS` (more wait their turn), each at a lower scheduling priority
(:data:`appliance.pipes.HELPER_NICENESS`: while PDFs export, the tracker's requests have the cores first). If a helper cannot start or dies, the
document is laid out in the server as before, and the failure logged: the helper moves the
work, it never decides the PDF.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from appliance.pipes import end_helper, helper_pipes, read_exactly, read_message, send_message

IDLE_S = 10.0  # a helper no export used for this long ends (exports come in bursts)
MAX_HELPERS = 2  # helpers at once: a small server's cores
HELPER_MODULE = "plugins.pdf_export"  # run with -m: the helper (its __main__ calls serve)
_ROOT = Path(__file__).resolve().parents[1]  # the directory holding the plugins package
_OK, _FAILED = b"o", b"e"


class HelperFailed(RuntimeError):
    """The helper could not answer (it did not start, or died): the caller renders in process."""


class RenderFailed(RuntimeError):
    """weasyprint failed on the document (in the helper, as it would have in the server)."""


class Helper:
    """One helper process and its pipes."""

    def __init__(self) -> None:
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), environment.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", HELPER_MODULE],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment, cwd=str(_ROOT),
        )
        self.idle_since = time.monotonic()

    def render(self, document: str) -> bytes:
        try:
            send_message(self.process.stdin, document.encode())
            status = read_exactly(self.process.stdout, 1)
            answer = read_message(self.process.stdout)
        except (OSError, EOFError) as error:
            raise HelperFailed(f"the PDF helper stopped: {error!r}") from error
        if status != _OK:
            raise RenderFailed(answer.decode(errors="replace"))
        return answer

    def close(self) -> None:
        end_helper(self.process)  # end of input: the helper leaves


class PdfHelpers:
    """The helpers of one process: lent one per render, ended when idle (a timer thread)."""

    def __init__(self, idle_s: float = IDLE_S, max_helpers: int = MAX_HELPERS) -> None:
        self.idle_s = idle_s
        self._turns = threading.BoundedSemaphore(max_helpers)
        self._lock = threading.Lock()
        self._idle: list[Helper] = []  # most recently used last
        self._timer: threading.Timer | None = None
        self.started = 0  # helpers started (tests, the bench)
        self.renders = 0  # documents laid out by a helper

    def __len__(self) -> int:
        """Helpers alive and idle."""
        with self._lock:
            return len(self._idle)

    def render(self, document: str) -> bytes:
        """The PDF of ``document``, laid out by a helper. Raises :class:`HelperFailed` when
        no helper could answer, :class:`RenderFailed` when weasyprint failed on it."""
        with self._turns:
            helper = self._borrow()
            try:
                pdf = helper.render(document)
            except RenderFailed:  # the helper answered: it serves the next one
                self._give_back(helper)
                raise
            except BaseException:  # it stopped, or this thread left mid-message
                helper.close()
                raise
            self._give_back(helper, rendered=True)
            return pdf

    def close(self) -> None:
        """End every idle helper now."""
        with self._lock:
            helpers, self._idle = self._idle, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        for helper in helpers:
            helper.close()

    def _borrow(self) -> Helper:
        with self._lock:
            while self._idle:
                helper = self._idle.pop()
                if helper.process.poll() is None:
                    return helper
                helper.close()  # died while idle (killed): start another
        try:
            helper = Helper()
        except OSError as error:
            raise HelperFailed(f"the PDF helper did not start: {error!r}") from error
        with self._lock:
            self.started += 1
        return helper

    def _give_back(self, helper: Helper, rendered: bool = False) -> None:
        helper.idle_since = time.monotonic()
        with self._lock:
            self.renders += rendered
            self._idle.append(helper)
            if self._timer is None:
                self._schedule(self.idle_s)

    def _schedule(self, delay: float) -> None:
        timer = self._timer = threading.Timer(max(delay, 0.01), self._end_idle)
        timer.daemon = True
        timer.start()

    def _end_idle(self) -> None:
        """The timer: end the helpers idle for ``idle_s``, and wait for the next one."""
        now = time.monotonic()
        with self._lock:
            self._timer = None
            ending = [helper for helper in self._idle if now - helper.idle_since >= self.idle_s]
            self._idle = [helper for helper in self._idle if helper not in ending]
            if self._idle:
                self._schedule(min(helper.idle_since for helper in self._idle) + self.idle_s - now)
        for helper in ending:
            helper.close()


def serve(render) -> int:
    """The helper: lays out the documents on stdin with ``render(document, stream)`` until its
    input ends, answering on stdout."""
    requests, answers = helper_pipes()  # (at a lower priority: a report is a user's wait, the tracker's a page's)
    while True:
        try:
            document = read_message(requests).decode()
        except EOFError:
            return 0
        stream = io.BytesIO()
        try:
            render(document, stream)
        except Exception as error:  # noqa: BLE001 - answered: the server raises it as a render's failure
            answers.write(_FAILED)
            send_message(answers, f"{type(error).__name__}: {error}".encode())
            continue
        answers.write(_OK)
        send_message(answers, stream.getvalue())
