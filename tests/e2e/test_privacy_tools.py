"""Privacy tools against a real server: GPC and DNT, a person's export and erasure, the notice.

One server for the module. The privacy signals are checked at ingest with the site's settings
(GPC honoured by default, DNT only when switched on) and counted as drop reasons in
``/api/v1/health``. A person sent with a ``user_id`` is exported and erased through the admin
API, with audit entries that never hold the raw id. Last, after all of it (tracker, server-side
events with forwarded addresses, erasure, exports), the whole data dir is read byte for byte:
no raw IP address, user id or User-Agent string may be in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.servers import footfall_cli, start_server

SITE = "privacy.test"
DISTINCTIVE_IP = "203.0.113.91"
DISTINCTIVE_FORWARDED = "198.51.100.207"
DISTINCTIVE_USER = "erin.distinctive-5d1c@example.org"
OTHER_USER = "frank.distinctive-88aa@example.org"
AGENT_MARK = "PrivacyProbe/4.3.2"
AGENT = f"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/126.0 {AGENT_MARK}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    handle = start_server(tmp_path_factory.mktemp("privacy") / "data")
    try:
        with handle.client(headers=handle.auth()) as admin:
            assert admin.post("/api/v1/sites", json={"domain": SITE}).status_code == 201
        yield handle
    finally:
        handle.stop()


def _collect(client, **headers):
    return client.post(
        "/api/v1/collect", content=f'{{"u":"https://{SITE}/signals"}}', headers={"content-type": "text/plain", **headers}
    )


def _drops(client) -> dict[str, int]:
    return client.get("/api/v1/health").json()["drops"]


def test_gpc_honoured_by_default_dnt_when_switched_on(server):
    with server.client(headers=server.auth()) as client:
        before = _drops(client)
        gpc = _collect(client, **{"sec-gpc": "1"})
        assert gpc.status_code == 202 and gpc.headers["x-footfall-ignored"] == "global_privacy_control"
        dnt = _collect(client, dnt="1")
        assert dnt.status_code == 202 and "x-footfall-ignored" not in dnt.headers  # DNT is off by default
        assert client.patch(f"/api/v1/sites/{SITE}", json={"honour_dnt": True, "honour_gpc": False}).status_code == 200
        assert _collect(client, dnt="1").headers["x-footfall-ignored"] == "do_not_track"
        assert "x-footfall-ignored" not in _collect(client, **{"sec-gpc": "1"}).headers
        after = _drops(client)
        assert after.get("global_privacy_control", 0) == before.get("global_privacy_control", 0) + 1
        assert after.get("do_not_track", 0) == before.get("do_not_track", 0) + 1
        # the notice and the snippet follow the settings
        notice = client.get(f"/api/v1/sites/{SITE}/privacy-notice").json()["data"]["markdown"]
        assert "Do-Not-Track are not counted" in notice and "Global Privacy Control signal is not used" in notice
        assert "400 days" in notice
        assert client.patch(f"/api/v1/sites/{SITE}", json={"honour_dnt": False, "honour_gpc": True}).status_code == 200
        notice = client.get(f"/api/v1/sites/{SITE}/privacy-notice").json()["data"]["markdown"]
        assert "Global Privacy Control signal are not counted" in notice


def _person_events(client, user: str, count: int, **extra) -> None:
    for index in range(count):
        body = {
            "event_type": "page_view", "user_id": user, "site": SITE,
            "metadata": {"page_url": f"https://{SITE}/account/{index}", "user_agent": AGENT, **extra},
        }
        answer = client.post("/api/v1/events", json=body)
        assert answer.status_code == 200, answer.text


def _pageviews(client) -> int:
    answer = client.get("/api/v1/stats/aggregate", params={"site": SITE, "period": "7d"})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["pageviews"] if "data" in answer.json() else answer.json()["pageviews"]


def test_export_and_erase_one_person(server):
    with server.client(headers=server.auth()) as client:
        _person_events(client, DISTINCTIVE_USER, 4, ip=DISTINCTIVE_IP)
        _person_events(client, OTHER_USER, 3)
        before = _pageviews(client)
        exported = client.get(f"/api/v1/sites/{SITE}/people/{DISTINCTIVE_USER}")
        assert exported.status_code == 200
        events = exported.json()["data"]["events"]
        assert exported.json()["data"]["count"] == 4 == len(events)
        assert sorted(e["path"] for e in events) == [f"/account/{i}" for i in range(4)]
        assert all(e["user_hashed"] for e in events)

        erased = client.delete(f"/api/v1/sites/{SITE}/people/{DISTINCTIVE_USER}")
        assert erased.status_code == 200 and erased.json()["data"]["events"] == 4
        assert client.get(f"/api/v1/sites/{SITE}/people/{DISTINCTIVE_USER}").json()["data"]["count"] == 0
        assert client.get(f"/api/v1/sites/{SITE}/people/{OTHER_USER}").json()["data"]["count"] == 3
        assert _pageviews(client) == before - 4

        audit = client.get("/api/v1/audit", params={"action": "gdpr.delete"}).json()
        text = str(audit)
        assert "gdpr.delete" in text and DISTINCTIVE_USER not in text
        # an unknown site
        assert client.get(f"/api/v1/sites/nowhere.test/people/{OTHER_USER}").status_code in (403, 404)


def test_no_raw_ip_user_id_or_user_agent_on_disk(server, tmp_path):
    """After the varied load above plus tracker and forwarded server-side events."""
    with server.client(headers=server.auth()) as client:
        for path in ("/a", "/b"):
            answer = client.post(
                "/api/v1/collect", content=f'{{"u":"https://{SITE}{path}-disk-probe"}}',
                headers={"content-type": "text/plain", "user-agent": AGENT, "x-forwarded-for": DISTINCTIVE_FORWARDED},
            )
            assert answer.status_code == 202
        # a trusted server forwarding its visitor's address
        answer = client.post(
            "/api/v1/events",
            json={"event_type": "signup", "user_id": OTHER_USER, "site": SITE,
                  "metadata": {"page_url": f"https://{SITE}/forwarded-probe", "user_agent": AGENT}},
            headers={"x-forwarded-for": DISTINCTIVE_FORWARDED},
        )
        assert answer.status_code == 200
        assert client.get(f"/api/v1/sites/{SITE}/people/{OTHER_USER}").json()["data"]["count"] == 4
        client.get("/api/v1/stats/aggregate", params={"site": SITE, "period": "day"})  # settles the aggregates
        exported = {  # the raw-event export in both formats
            kind: client.get(f"/api/v1/sites/{SITE}/events/export", params={"format": kind}).content
            for kind in ("ndjson", "csv")
        }
    backup = tmp_path / "backup"  # and a backup of the running server
    assert footfall_cli("backup", str(backup), data_dir=server.data_dir).returncode == 0
    for place, data in (
        ("data dir", _bytes_under(Path(server.data_dir))),
        ("backup", _bytes_under(backup)),
        ("NDJSON export", exported["ndjson"]),
        ("CSV export", exported["csv"]),
    ):
        assert b"/forwarded-probe" in data and b"-disk-probe" in data, place  # the events really are there
        for secret in (DISTINCTIVE_IP, DISTINCTIVE_FORWARDED, DISTINCTIVE_USER, OTHER_USER, AGENT_MARK):
            assert secret.encode() not in data, (place, secret)


def _bytes_under(folder: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file())
