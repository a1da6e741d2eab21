"""The built-in notifier: apprise, one URL per destination (``mailto://``, ``json://``,
``slack://``, ``tgram://`` and the rest of its 100+ services).

Registered through ``register_notifiers`` like any third-party notifier, with ``schemes=("*",)``
so a plugin naming a scheme of its own is chosen first. Policy:

- One ``Apprise`` object per send. Apprise throttles per object (its email plugin sleeps about
  5.5 s between two messages on the same object); a fresh object per message never waits on an
  earlier one, and sends never share state across threads.
- ``send`` blocks (network, SMTP) and runs in a worker thread, never on the event loop; the
  caller (:mod:`appliance.hooks.delivery`) retries with back-off.
- Attachments are written to a private temporary directory under their own file names, handed
  to apprise as an ``AppriseAttachment`` and deleted when the send returns.
- Failure raises :class:`NotificationFailed` with what apprise logged, so the caller can show
  the reason: an URL apprise does not understand, or a service that refused the message.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from appliance.extensions import Message, Notifier
from appliance.hooks.specs import hookimpl

SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class NotificationFailed(RuntimeError):
    """Apprise refused the URL or could not deliver the message."""


def redact(url: str) -> str:
    """The URL without credentials, for error messages (``scheme://host/…``)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("@")[-1].split("/")[0].split("?")[0]
    return f"{scheme}://{host}/…" if rest else url


def safe_filename(name: str, index: int) -> str:
    cleaned = SAFE_NAME.sub("_", Path(name).name).strip("._")
    return cleaned or f"attachment-{index}"


def load_apprise():
    """The apprise module, imported at the first send: importing it loads its 100+ service
    plugins (about 0.7 s), which every start of the server and the CLI would otherwise pay."""
    import apprise

    return apprise


def send(url: str, message: Message) -> None:
    """Deliver ``message`` to one apprise URL; raises :class:`NotificationFailed`."""
    apprise = load_apprise()
    with apprise.LogCapture(level=apprise.logging.WARNING, fmt="%(message)s") as captured:
        destination = apprise.Apprise()
        if not destination.add(url):
            raise NotificationFailed(f"apprise does not understand the URL {redact(url)}")
        with tempfile.TemporaryDirectory(prefix="footfall-notify-") as directory:
            attachments = None
            if message.attachments:
                attachments = apprise.AppriseAttachment()
                for index, attachment in enumerate(message.attachments):
                    path = Path(directory) / safe_filename(attachment.filename, index)
                    path.write_bytes(attachment.data)
                    attachments.add(str(path))
            delivered = destination.notify(
                title=message.title, body=message.body, body_format=apprise.NotifyFormat.TEXT,
                attach=attachments,
            )
        if not delivered:
            logged = captured.getvalue().strip().splitlines()
            reason = logged[-1] if logged else "the service refused the message"
            raise NotificationFailed(f"sending to {redact(url)} failed: {reason}")


@hookimpl
def register_notifiers(appliance):
    return [
        Notifier(
            name="apprise",
            schemes=("*",),
            send=send,
            description="Any apprise URL: mailto://, json://, slack://, tgram://, …",
        )
    ]
