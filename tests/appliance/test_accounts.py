"""Users, credentials, the permission matrix, token buckets and the audit log, in process."""

from __future__ import annotations

import time

import pytest

from appliance.accounts.models import AccountError
from appliance.accounts.permissions import ROLE_PERMISSIONS, Permission, Role
from appliance.ratelimit import IngestLimits, LoginThrottle, TokenBucket, retry_after

PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- users ----------------------------------------------------------------------------------------
def test_passwords_are_argon2id_and_checked(appliance):
    accounts = appliance.accounts
    user = accounts.create("Ana", PASSWORD, "analyst", "ana@example.com")
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert accounts.verify_password("ana", PASSWORD).id == user.id
    assert accounts.verify_password("ANA", "wrong password!") is None
    assert accounts.verify_password("nobody", PASSWORD) is None


def test_an_unknown_username_is_checked_against_a_hash_of_the_same_cost(appliance):
    """The stand-in hash an unknown username is verified against has the hasher's own
    parameters (memory, passes, lanes), so its check costs what a real user's does."""
    accounts = appliance.accounts
    real = accounts.create("Bo", PASSWORD, "viewer").password_hash
    stand_in = accounts._dummy_hash
    assert not accounts._hasher.check_needs_rehash(stand_in)
    assert stand_in.split("$")[1:4] == real.split("$")[1:4]  # argon2id, version, m/t/p


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("x", PASSWORD, "viewer"), "username"),
        (("ok-name", "short", "viewer"), "password"),
        (("ok-name", PASSWORD, "owner"), "role"),
        (("ok-name", PASSWORD, "viewer", "not-an-email"), "email"),
    ],
)
def test_create_validates(appliance, args, field):
    with pytest.raises(AccountError) as error:
        appliance.accounts.create(*args)
    assert error.value.field == field


def test_usernames_and_emails_unique_case_insensitively(appliance):
    accounts = appliance.accounts
    accounts.create("Bob", PASSWORD, "viewer", "Bob@Example.com")
    with pytest.raises(AccountError, match="taken"):
        accounts.create("bOB", PASSWORD, "viewer")
    with pytest.raises(AccountError, match="in use"):
        accounts.create("robert", PASSWORD, "viewer", "bob@example.COM")


def test_roles_and_the_last_admin(appliance):
    accounts = appliance.accounts
    accounts.create("root", PASSWORD, "admin")
    with pytest.raises(AccountError) as error:
        accounts.update("root", role="viewer")
    assert error.value.status == 409
    with pytest.raises(AccountError):
        accounts.delete("root")
    accounts.create("second", PASSWORD, "admin")
    assert accounts.update("root", role="viewer").role is Role.VIEWER
    with pytest.raises(AccountError) as missing:
        accounts.update("ghost", role="viewer")
    assert missing.value.status == 404


def test_permission_matrix():
    assert ROLE_PERMISSIONS[Role.ADMIN] == set(Permission)
    assert Permission.DEFINE in ROLE_PERMISSIONS[Role.ANALYST]
    assert Permission.EXPORT_EVENTS in ROLE_PERMISSIONS[Role.ANALYST]
    assert Permission.MANAGE_SITES not in ROLE_PERMISSIONS[Role.ANALYST]
    assert ROLE_PERMISSIONS[Role.VIEWER] == {Permission.VIEW_STATS, Permission.USE_ACCOUNT}


# -- credentials ------------------------------------------------------------------------------------
def test_login_tokens_expire_and_are_stored_as_digests(appliance, monkeypatch):
    accounts = appliance.accounts
    user = accounts.create("tia", PASSWORD, "viewer")
    token = accounts.issue_token(user, 60)
    assert accounts.user_for_token(token).id == user.id
    raw = (appliance.store.path / "data.mdb").read_bytes()
    assert token.encode() not in raw
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert accounts.user_for_token(token) is None
    assert accounts.purge_expired() == 1


def test_api_keys(appliance):
    accounts = appliance.accounts
    user = accounts.create("kai", PASSWORD, "analyst")
    key, record = accounts.create_api_key(user, "ci", read_only=True)
    assert key.startswith("ffk_") and record.prefix == key[:10]
    found_user, found_key = accounts.user_for_api_key(key)
    assert (found_user.id, found_key.read_only) == (user.id, True)
    assert [k.name for k in accounts.api_keys(user.id)] == ["ci"]
    assert accounts.revoke_api_key(record.id, user_id=user.id + 1) is None  # not theirs
    assert accounts.revoke_api_key(record.id, user_id=user.id).id == record.id
    assert accounts.user_for_api_key(key) is None
    with pytest.raises(AccountError):
        accounts.create_api_key(user, "")


def test_sessions_and_what_ends_them(appliance):
    accounts = appliance.accounts
    user = accounts.create("sam", PASSWORD, "viewer")
    session_id, session = accounts.create_session(user)
    assert accounts.session(session_id)[1].csrf_token == session.csrf_token
    assert accounts.session("forged") is None
    assert accounts.end_session(session_id)
    assert accounts.session(session_id) is None
    # a password change ends sessions and login tokens, not API keys
    session_id, _ = accounts.create_session(user)
    token = accounts.issue_token(user)
    key, _ = accounts.create_api_key(user, "k")
    accounts.set_password("sam", "another long password")
    assert accounts.session(session_id) is None and accounts.user_for_token(token) is None
    assert accounts.user_for_api_key(key) is not None
    # deleting the user ends everything, and a namesake inherits nothing
    token = accounts.issue_token(user)
    accounts.delete("sam")
    accounts.create("sam", PASSWORD, "viewer")
    assert accounts.user_for_token(token) is None and accounts.user_for_api_key(key) is None


def test_deleting_a_site_removes_grants_and_data(appliance):
    site = appliance.sites.add("gone.test")
    user = appliance.accounts.create("gia", PASSWORD, "viewer", sites=[site.id])
    assert user.can_read_site(site.id)
    token = appliance.sites.create_share_token(site)
    assert appliance.sites.site_for_share_token(token).id == site.id
    assert appliance.delete_site("gone.test").id == site.id
    assert appliance.accounts.get("gia").sites == []
    assert appliance.sites.site_for_share_token(token) is None
    assert appliance.delete_site("gone.test") is None


# -- token buckets ------------------------------------------------------------------------------------
def test_token_bucket_refills_at_its_rate():
    clock = Clock()
    bucket = TokenBucket(2, 4, clock)  # 2 per second, burst 4
    assert [bucket.take("a") for _ in range(4)] == [0.0] * 4
    assert bucket.take("a") == pytest.approx(0.5)
    assert bucket.take("b") == 0.0  # keys are independent
    clock.now += 0.5
    assert bucket.take("a") == 0.0
    assert bucket.take("a") > 0
    clock.now += 100
    assert [bucket.take("a") for _ in range(5)][-1] > 0  # never more than the burst
    assert retry_after(0.01) == 1 and retry_after(2.2) == 3


def test_login_throttle_counts_failures_per_username_and_every_attempt_per_ip():
    clock = Clock()
    throttle = LoginThrottle(10, 60, 3, 6, clock)  # username: 3 failures, then one per 10 s
    for _ in range(3):
        assert throttle.check("1.1.1.1", "Ana") == 0.0
        throttle.failed("Ana")
    assert throttle.check("2.2.2.2", "ana") == pytest.approx(10)  # any IP, any case
    assert throttle.check("1.1.1.1", "bob") == 0.0
    clock.now += 10
    assert throttle.check("1.1.1.1", "ana") == 0.0
    throttle.succeeded("ana")
    assert throttle.per_username.check("ana") == 0.0
    ip_only = LoginThrottle(2, 60, 100, 60, clock)
    assert [ip_only.check("9.9.9.9", f"user{i}") > 0 for i in range(3)] == [False, False, True]


def test_ingest_limits_are_off_by_default():
    limits = IngestLimits(0, 0, 10)
    assert limits.per_ip is None and limits.per_site is None
    limits = IngestLimits(5, 100, 2)
    assert limits.per_ip.burst == 10 and limits.per_site.burst == 200


def test_forgotten_buckets_bound_memory(monkeypatch):
    import appliance.ratelimit as ratelimit

    monkeypatch.setattr(ratelimit, "_FORGET_AFTER_KEYS", 100)
    clock = Clock()
    bucket = TokenBucket(1, 1, clock)
    for i in range(100):
        bucket.take(i)
    clock.now += 5  # every bucket has refilled
    bucket.take("new")
    assert len(bucket) == 1


# -- audit ------------------------------------------------------------------------------------------------
def test_audit_log_newest_first_and_filtered(appliance):
    audit = appliance.audit
    audit.record("admin", "user.create", "ana", role="analyst")
    audit.record("cli", "site.delete", "x.test")
    audit.record("admin", "user.delete", "ana")
    latest = audit.latest()
    assert [e.action for e in latest] == ["user.delete", "site.delete", "user.create"]
    assert latest[-1].details == {"role": "analyst"}
    assert [e.action for e in audit.latest(action="user")] == ["user.delete", "user.create"]
    assert len(audit.latest(limit=1)) == 1


# -- identifiers (security review, issue 11) --------------------------------------------------------
@pytest.mark.parametrize("username", ["viewer1\n", "view\ner1", "viewer1\x00", "\tviewer1", "viewer1\u202e"])
def test_no_look_alike_username(appliance, username):
    accounts = appliance.accounts
    accounts.create("viewer1", PASSWORD, "viewer")
    with pytest.raises(AccountError) as raised:
        accounts.create(username, PASSWORD, "admin")
    assert raised.value.field == "username"
    assert [user.username for user in accounts.list()].count("viewer1") == 1
    assert all(user.username.isprintable() for user in accounts.list())


def test_usernames_are_normalised_before_checking(appliance):
    user = appliance.accounts.create("  ｆｕｌｌwidth  ", PASSWORD, "viewer")
    assert user.username == "fullwidth"


@pytest.mark.parametrize("email", ["a@b.test\n", "a@b.te\x00st", "a\x1b@b.test"])
def test_emails_with_control_characters_are_refused(appliance, email):
    accounts = appliance.accounts
    with pytest.raises(AccountError) as raised:
        accounts.create("mailer", PASSWORD, "viewer", email.replace("\n", "\nx"))
    assert raised.value.field == "email"
    user = accounts.create("mailer", PASSWORD, "viewer")
    with pytest.raises(AccountError) as raised:
        accounts.update("mailer", email=email.replace("\n", "\nx"))
    assert raised.value.field == "email"
    assert accounts.update("mailer", email=" a@b.test\n").email == "a@b.test"
    assert user.id == accounts.get("mailer").id


@pytest.mark.parametrize("name", ["ci\nkey", "ci\x1b[2J", "key\u200b\u202e"])
def test_api_key_names_with_control_characters_are_refused(appliance, name):
    user = appliance.accounts.create("keyed", PASSWORD, "admin")
    with pytest.raises(AccountError) as raised:
        appliance.accounts.create_api_key(user, name)
    assert raised.value.field == "name"


@pytest.mark.parametrize(
    ("domain", "field"),
    [("other.com\n/", None), ("other.com\n", None), ("oth\ner.com", "domain"), ("other.com\x00", "domain")],
)
def test_no_look_alike_site(appliance, domain, field):
    from appliance.sites import SiteError

    sites = appliance.sites
    sites.add("other.com")
    with pytest.raises(SiteError) as raised:
        sites.add(domain)
    assert raised.value.field == "domain"
    assert [site.domain for site in sites.all()].count("other.com") == 1
    assert all(site.domain.isprintable() for site in sites.all())


def test_site_names_and_hostnames_are_checked(appliance):
    from appliance.sites import SiteError

    sites = appliance.sites
    site = sites.add(" ＥＸＡＭＰＬＥ.test ", name=" Shop ", allowed_hostnames=["a.example.test\n"])
    assert (site.domain, site.name, site.allowed_hostnames) == ("example.test", "Shop", ["a.example.test"])
    for kwargs, field in (({"name": "Shop\x00"}, "name"), ({"name": "Sh\nop"}, "name"),
                          ({"allowed_hostnames": ["a.test\nb.test"]}, "allowed_hostnames")):
        with pytest.raises(SiteError) as raised:
            sites.add("more.test", **kwargs)
        assert raised.value.field == field
        with pytest.raises(SiteError) as raised:
            sites.change("example.test", **kwargs)
        assert raised.value.field == field
    with pytest.raises(SiteError) as raised:
        sites.change("example.test", new_domain="example2.test\n/x")
    assert raised.value.field == "domain"


def test_definition_names_with_control_characters_are_refused(appliance):
    from appliance.definitions.common import DefinitionError
    from appliance.definitions.funnels import FunnelInput, Step
    from appliance.definitions.goals import GoalInput
    from appliance.definitions.segments import SegmentInput

    site = appliance.sites.add("defs.test")
    bad = "Sign\x00up"
    attempts = [
        lambda: appliance.goals.create(site.id, GoalInput(name=bad, kind="event", event="signup")),
        lambda: appliance.funnels.create(site.id, FunnelInput(
            name=bad, steps=[Step(kind="page", value="/"), Step(kind="page", value="/b")])),
        lambda: appliance.funnels.create(site.id, FunnelInput(
            name="ok", steps=[Step(kind="page", value="/", name="x\ny"), Step(kind="page", value="/b")])),
        lambda: appliance.segments.create(site.id, SegmentInput(
            name=bad, filters=[["is", "page", ["/"]]])),
    ]
    for attempt in attempts:
        with pytest.raises(DefinitionError) as raised:
            attempt()
        assert raised.value.field in ("name", "steps[0].name")
    goal = appliance.goals.create(site.id, GoalInput(name=" Ｓignup ", kind="event", event="signup"))
    assert goal.name == "Signup"
