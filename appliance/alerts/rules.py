"""Alert rules: what a site's analysts asked to be told about, stored in LMDB.

A rule names an alert kind (registered by a plugin through ``register_alert_kinds``), its
parameters (checked against the kind's schema, defaults filled in), the destination URLs
(one per notifier, e.g. apprise's ``mailto://`` or ``json://``) and a cool-down: two
"firing" notifications of one rule are at least ``cooldown_minutes`` apart. Next to each rule
its :class:`RuleState` (firing or not, since when, last notified) is kept by the checker
(:mod:`appliance.alerts.checker`). Records are keyed ``site/rule`` so a site's rules are one
prefix and go with the site.
"""

from __future__ import annotations

import math
import time
from typing import Any

import msgspec

from appliance.errors import DomainError
from appliance.extensions import AlertKind
from appliance.hooks.registry import Extensions
from appliance.identifiers import control_character, normalised
from storage import Store
from storage.records import Records

RULE_RECORD = "alert_rule"
STATE_RECORD = "alert_state"
MAX_RULES_PER_SITE = 100
MAX_DESTINATIONS = 10


class RuleInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    kind: str
    parameters: dict[str, Any] = {}
    destinations: list[str] = []
    cooldown_minutes: int = 60
    enabled: bool = True


class AlertRule(msgspec.Struct, kw_only=True):
    id: int
    site_id: int
    name: str
    kind: str
    parameters: dict[str, Any]
    destinations: list[str]
    cooldown_minutes: int
    enabled: bool
    created_at: float
    created_by: str = ""


class RuleState(msgspec.Struct, kw_only=True):
    firing: bool = False
    since: float = 0.0
    notified: bool = False  # this firing episode was notified (so its end is, too)
    last_notified_at: float = 0.0
    last_checked_at: float = 0.0
    last_message: str = ""
    last_error: str = ""


def _key(site_id: int, rule_id: int) -> str:
    return f"{site_id:010d}/{rule_id:010d}"


def checked_parameters(kind: AlertKind, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` checked against the kind's schema, with defaults filled in."""
    known = {parameter.name for parameter in kind.parameters}
    for name in given:
        if name not in known:
            raise DomainError(f"parameters.{name}", f"not a parameter of {kind.name} (known: {', '.join(sorted(known))})")
    checked: dict[str, Any] = {}
    for parameter in kind.parameters:
        field = f"parameters.{parameter.name}"
        value = given.get(parameter.name, parameter.default)
        if value is None:
            raise DomainError(field, "required")
        if parameter.type in ("integer", "number"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DomainError(field, f"must be a {parameter.type}")
            if parameter.type == "integer" and value != int(value):
                raise DomainError(field, "must be a whole number")
            if not math.isfinite(value):
                raise DomainError(field, "must be finite")
            value = int(value) if parameter.type == "integer" else float(value)
            if parameter.minimum is not None and value < parameter.minimum:
                raise DomainError(field, f"at least {parameter.minimum:g}")
            if parameter.maximum is not None and value > parameter.maximum:
                raise DomainError(field, f"at most {parameter.maximum:g}")
        elif parameter.type == "choice":
            if value not in parameter.choices:
                raise DomainError(field, f"one of {', '.join(parameter.choices)}")
        else:
            if not isinstance(value, str) or not 1 <= len(value.strip()) <= 200:
                raise DomainError(field, "a text of 1 to 200 characters")
            value = value.strip()
        checked[parameter.name] = value
    return checked


def checked_input(data: RuleInput, extensions: Extensions) -> RuleInput:
    name = normalised(data.name)
    if not 1 <= len(name) <= 120:
        raise DomainError("name", "1 to 120 characters")
    if problem := control_character(name):
        raise DomainError("name", problem)
    kind = extensions.alert_kind(data.kind)
    parameters = checked_parameters(kind, data.parameters)
    if not 1 <= len(data.destinations) <= MAX_DESTINATIONS:
        raise DomainError("destinations", f"1 to {MAX_DESTINATIONS} destination URLs")
    for index, url in enumerate(data.destinations):
        if not isinstance(url, str) or "://" not in url or len(url) > 2000 or control_character(url):
            raise DomainError(f"destinations[{index}]", "a notifier URL such as mailto://… or json://…")
        try:
            extensions.notifier_for(url)
        except DomainError as error:
            raise DomainError(f"destinations[{index}]", error.message) from None
    if not 0 <= data.cooldown_minutes <= 7 * 24 * 60:
        raise DomainError("cooldown_minutes", "0 to 10080 minutes (a week)")
    return msgspec.structs.replace(data, name=name, parameters=parameters)


class AlertRules:
    """The alert rules of every site and the checker's state of each."""

    def __init__(self, store: Store, records: Records, extensions: Extensions) -> None:
        self._store = store
        self._records = records
        self._extensions = extensions

    def list(self, site_id: int) -> list[AlertRule]:
        prefix = f"{site_id:010d}/"
        return [
            msgspec.msgpack.decode(raw, type=AlertRule)
            for key, raw in self._records.scan(RULE_RECORD)
            if key.startswith(prefix)
        ]

    def get(self, site_id: int, rule_id: int) -> AlertRule:
        raw = self._records.get(RULE_RECORD, _key(site_id, rule_id))
        if raw is None:
            raise DomainError("rule_id", f"no alert rule {rule_id} on this site", 404)
        return msgspec.msgpack.decode(raw, type=AlertRule)

    def create(self, site_id: int, data: RuleInput, author: str = "") -> AlertRule:
        data = checked_input(data, self._extensions)
        if len(self.list(site_id)) >= MAX_RULES_PER_SITE:
            raise DomainError("rules", f"at most {MAX_RULES_PER_SITE} alert rules per site")
        made: list[AlertRule] = []

        def write(txn):
            made.clear()
            rule = AlertRule(
                id=self._records.next_id(txn, "alert_rule"), site_id=site_id, created_at=time.time(),
                created_by=author, **msgspec.structs.asdict(data),
            )
            self._records.put(txn, RULE_RECORD, _key(site_id, rule.id), msgspec.msgpack.encode(rule))
            made.append(rule)

        self._store.write(write)
        return made[0]

    def change(self, site_id: int, rule_id: int, data: RuleInput) -> AlertRule:
        old = self.get(site_id, rule_id)
        data = checked_input(data, self._extensions)
        rule = AlertRule(
            id=old.id, site_id=site_id, created_at=old.created_at, created_by=old.created_by,
            **msgspec.structs.asdict(data),
        )

        def write(txn):
            self._records.put(txn, RULE_RECORD, _key(site_id, rule_id), msgspec.msgpack.encode(rule))
            if (old.kind, old.parameters) != (rule.kind, rule.parameters):
                self._records.delete(txn, STATE_RECORD, _key(site_id, rule_id))  # a new condition

        self._store.write(write)
        return rule

    def delete(self, site_id: int, rule_id: int) -> AlertRule:
        rule = self.get(site_id, rule_id)

        def write(txn):
            self._records.delete(txn, RULE_RECORD, _key(site_id, rule_id))
            self._records.delete(txn, STATE_RECORD, _key(site_id, rule_id))

        self._store.write(write)
        return rule

    def state(self, rule: AlertRule) -> RuleState:
        raw = self._records.get(STATE_RECORD, _key(rule.site_id, rule.id))
        return msgspec.msgpack.decode(raw, type=RuleState) if raw else RuleState()

    def put_state(self, txn, rule: AlertRule, state: RuleState) -> None:
        self._records.put(txn, STATE_RECORD, _key(rule.site_id, rule.id), msgspec.msgpack.encode(state))

    def delete_site(self, txn, site_id: int) -> None:
        for kind in (RULE_RECORD, STATE_RECORD):
            self._records.delete_prefixed(txn, kind, f"{site_id:010d}/")
