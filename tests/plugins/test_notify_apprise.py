"""The built-in apprise notifier and the appliance's delivery with retry and back-off,
against a real loopback HTTP sink (apprise's ``json://``)."""

from __future__ import annotations

import base64

import pytest

from appliance.config import load_settings
from appliance.errors import DomainError
from appliance.extensions import Attachment, Message, Notifier
from appliance.hooks.delivery import DeliveryFailed, deliver
from appliance.hooks.registry import Extensions
from appliance.runtime.appliance import Appliance
from plugins import notify_apprise
from tests.sinks import HttpSink


@pytest.fixture
def sink():
    server = HttpSink()
    yield server
    server.close()


def apprise_only() -> Extensions:
    return Extensions(notifiers=list(notify_apprise.register_notifiers(appliance=None)))


def test_a_message_with_attachments_arrives_at_a_json_url(sink):
    message = Message(
        title="Weekly report",
        body="Visitors 1,204 (+12%)",
        attachments=(
            Attachment("report.csv", "text/csv", b"page,views\n/,3\n"),
            Attachment("../../etc/evil name.pdf", "application/pdf", b"%PDF-1.7 fake"),
        ),
    )

    notify_apprise.send(f"json://127.0.0.1:{sink.port}/hook", message)

    [received] = sink.wait_for(1)
    assert received.path == "/hook"
    assert received.body["title"] == "Weekly report"
    assert received.body["message"] == "Visitors 1,204 (+12%)"
    files = {item["filename"]: base64.b64decode(item["base64"]) for item in received.body["attachments"]}
    assert files == {"report.csv": b"page,views\n/,3\n", "evil_name.pdf": b"%PDF-1.7 fake"}


def test_an_unknown_url_and_a_refusing_service_raise():
    with pytest.raises(notify_apprise.NotificationFailed, match="does not understand"):
        notify_apprise.send("nosuchservice://user:secret@example.org", Message("t", "b"))
    closed_port = HttpSink()
    port = closed_port.port
    closed_port.close()
    with pytest.raises(notify_apprise.NotificationFailed, match="failed") as failure:
        notify_apprise.send(f"json://user:secret@127.0.0.1:{port}/", Message("t", "b"))
    assert "secret" not in str(failure.value)


def test_the_builtin_is_the_catch_all_and_a_named_scheme_wins():
    sent = []
    custom = Notifier(name="custom", schemes=("json",), send=lambda url, message: sent.append(url))
    extensions = Extensions(notifiers=[*apprise_only().notifiers, custom])

    assert extensions.notifier_for("json://127.0.0.1/").name == "custom"
    assert extensions.notifier_for("mailto://user:pass@example.org").name == "apprise"


def test_delivery_retries_with_back_off_then_succeeds(sink):
    sink.fail_next(2)
    waits: list[float] = []

    delivered = deliver(
        apprise_only(), f"json://127.0.0.1:{sink.port}/", Message("t", "b"),
        attempts=3, backoff_seconds=1.5, sleep=waits.append,
    )

    assert (delivered.notifier, delivered.attempts) == ("apprise", 3)
    assert waits == [1.5, 3.0]
    assert sink.refused == 2 and len(sink.wait_for(1)) == 1


def test_delivery_gives_up_after_its_attempts(sink):
    sink.fail_next(10)
    waits: list[float] = []

    with pytest.raises(DeliveryFailed) as failure:
        deliver(apprise_only(), f"json://127.0.0.1:{sink.port}/", Message("t", "b"), attempts=2, sleep=waits.append)

    assert failure.value.attempts == 2 and waits == [2.0]
    assert sink.refused == 2 and sink.received == []


def test_a_url_no_notifier_handles_is_refused_at_once():
    with pytest.raises(DomainError) as refused:
        deliver(Extensions(), "json://127.0.0.1/", Message("t", "b"), sleep=pytest.fail)
    assert refused.value.field == "url"


def test_the_appliance_registers_the_apprise_notifier(tmp_path):
    appliance = Appliance(load_settings(environ={}, data_dir=str(tmp_path))).open()
    try:
        assert appliance.extensions.notifier_for("tgram://bottoken/ChatID").name == "apprise"
    finally:
        appliance.close()
