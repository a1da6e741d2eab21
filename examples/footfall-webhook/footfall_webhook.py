"""footfall-webhook: post every committed batch of events to a URL, with retry and back-off.

Settings (``[plugins.webhook]`` in Footfall's config file, or ``FOOTFALL_PLUGIN_WEBHOOK_<KEY>``):

- ``url`` (required): where each batch is POSTed as JSON ``{"site_ids": [...], "events": [...]}``;
- ``timeout_seconds`` (default 5): per request;
- ``max_attempts`` (default 5): tries per batch before it is given up (and counted);
- ``backoff_seconds`` (default 1): the first wait after a failure, doubled each time (at most 60 s);
- ``queue_batches`` (default 1000): batches waiting at most; past it the oldest is dropped (and
  counted), so a dead endpoint never grows memory without bound;
- ``authorization`` (optional): sent as the ``Authorization`` header.

``events_committed`` runs on Footfall's writer thread, so it only puts the batch on a queue;
a thread of this plugin's own does the network calls. At shutdown the queue is drained for at
most ``timeout_seconds``. Events are sent as Footfall stores them: no IP address or user agent
(Footfall never keeps them), a salted visitor hash.
"""

from __future__ import annotations

import collections
import logging
import threading
import urllib.request

import msgspec

from appliance import hookimpl

log = logging.getLogger("footfall_webhook")


class WebhookExporter:
    def __init__(self, settings: dict) -> None:
        self.url = str(settings["url"])
        self.timeout = float(settings.get("timeout_seconds", 5))
        self.max_attempts = int(settings.get("max_attempts", 5))
        self.backoff = float(settings.get("backoff_seconds", 1))
        self.authorization = str(settings.get("authorization", ""))
        self.queue: collections.deque = collections.deque(maxlen=int(settings.get("queue_batches", 1000)))
        self.sent_batches = 0
        self.failed_batches = 0
        self.dropped_batches = 0
        self._ready = threading.Condition()
        self._stopping = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="footfall-webhook", daemon=True)
        self._thread.start()

    def put(self, events: list) -> None:
        """Queue a batch (never blocks the writer)."""
        body = msgspec.json.encode({"site_ids": sorted({event.site_id for event in events}), "events": events})
        with self._ready:
            if len(self.queue) == self.queue.maxlen:
                self.dropped_batches += 1
            self.queue.append(body)
            self._ready.notify()

    def _post(self, body: bytes) -> None:
        headers = {"content-type": "application/json", "user-agent": "footfall-webhook/0.1"}
        if self.authorization:
            headers["authorization"] = self.authorization
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:
            answer.read()

    def _deliver(self, body: bytes) -> None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                self._post(body)
                self.sent_batches += 1
                return
            except Exception as error:  # HTTP errors, refused connections, timeouts
                log.warning("webhook: attempt %d of %d failed: %s", attempt, self.max_attempts, error)
                if attempt < self.max_attempts:
                    with self._ready:  # a wait that shutdown can cut short
                        if self._ready.wait_for(lambda: self._stopping, min(60.0, self.backoff * 2 ** (attempt - 1))):
                            break
        self.failed_batches += 1

    def _run(self) -> None:
        while True:
            with self._ready:
                self._busy = False
                self._ready.notify_all()
                self._ready.wait_for(lambda: self.queue or self._stopping)
                if not self.queue:
                    return
                body = self.queue.popleft()
                self._busy = True
            self._deliver(body)

    def stop(self) -> None:
        """Drain the queue for at most ``timeout_seconds``, then stop the thread."""
        with self._ready:
            self._ready.wait_for(lambda: not self.queue and not self._busy, self.timeout)
            self._stopping = True
            self._ready.notify_all()
        self._thread.join(timeout=self.timeout)


_exporters: dict[int, WebhookExporter] = {}


@hookimpl
def startup(appliance):
    settings = appliance.plugin_settings("webhook")
    if not settings.get("url"):
        log.warning("webhook: no [plugins.webhook] url set; nothing is sent")
        return
    _exporters[id(appliance)] = WebhookExporter(settings)


@hookimpl
def events_committed(appliance, events):
    exporter = _exporters.get(id(appliance))
    if exporter is not None:
        exporter.put(list(events))


@hookimpl
def shutdown(appliance):
    exporter = _exporters.pop(id(appliance), None)
    if exporter is not None:
        exporter.stop()
