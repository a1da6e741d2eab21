"""The server's log lines: plain text or one JSON object per line, each with its request id.

The web room sets :data:`request_id` for each request (the caller's ``X-Request-ID`` when it is
a sensible token, else a new one); :class:`RequestIdFilter` copies it onto every record logged
while the request is answered, in whatever thread (the context variable follows the request
into its worker thread). :func:`configure_logging` installs one handler on the root logger,
replacing the one it installed before (an app built twice in one process logs once).
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import os
import re
import sys
from datetime import UTC, datetime

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("footfall_request_id", default="")
_ACCEPTABLE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
_MARK = "_footfall_handler"


# A fresh id is this process's random prefix and a counter, 32 hex digits: unique, and much
# cheaper on the tracker's hot path than a UUID (no system call, no UUID object per request).
_ID_PREFIX = os.urandom(8).hex()
_ID_NUMBERS = itertools.count(1)


def new_request_id(offered: str | None = None) -> str:
    """The caller's id when it is a short token (no spaces, no control characters: it is
    written into log lines), else a fresh one (see ``_ID_PREFIX``)."""
    if offered and _ACCEPTABLE_ID.match(offered):
        return offered
    return f"{_ID_PREFIX}{next(_ID_NUMBERS):016x}"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id"[, "traceback"]}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["traceback"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log_format: str = "text", level: str = "info", stream=None) -> logging.Handler:
    """One handler on the root logger: ``text`` or ``json`` lines with request ids."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _MARK, True)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    for chatty in _CHATTY:  # libraries that log their own progress at info level
        logging.getLogger(chatty).setLevel(logging.ERROR)
    return handler


#: weasyprint logs each stylesheet it parses (at import too) and every CSS property it does
#: not know; fontTools logs its font subsetting
_CHATTY = ("weasyprint", "weasyprint.progress", "fontTools")
