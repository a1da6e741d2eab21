"""The history of fired alerts: one record per notification-worthy change of a rule (it
fired, it fired again after its cool-down, it resolved), kept per site, newest first, at most
:data:`HISTORY_PER_SITE` records (the oldest go first)."""

from __future__ import annotations

import msgspec

from storage import Store
from storage.records import Records

HISTORY_RECORD = "alert_fired"
HISTORY_PER_SITE = 500


class Delivery(msgspec.Struct, kw_only=True):
    destination: int  # index into the rule's destinations (URLs may hold secrets: not copied)
    ok: bool
    attempts: int = 0
    error: str = ""


class FiredAlert(msgspec.Struct, kw_only=True):
    site_id: int
    rule_id: int
    rule_name: str
    kind: str
    state: str  # "firing" or "resolved"
    at: float
    message: str
    notified: bool  # False: within the rule's cool-down, nobody was told
    deliveries: list[Delivery] = []


def _key(alert: FiredAlert) -> str:
    return f"{alert.site_id:010d}/{int(alert.at * 1000):016d}/{alert.rule_id:010d}/{alert.state}"


class AlertHistory:
    def __init__(self, store: Store, records: Records) -> None:
        self._store = store
        self._records = records

    def add(self, txn, alert: FiredAlert) -> None:
        self._records.put(txn, HISTORY_RECORD, _key(alert), msgspec.msgpack.encode(alert))
        prefix = f"{alert.site_id:010d}/"
        keys = [key for key, _ in self._records.scan(HISTORY_RECORD, txn) if key.startswith(prefix)]
        for key in keys[: max(0, len(keys) - HISTORY_PER_SITE)]:
            self._records.delete(txn, HISTORY_RECORD, key)

    def list(self, site_id: int, limit: int = 100, rule_id: int | None = None) -> list[FiredAlert]:
        prefix = f"{site_id:010d}/"
        found = [
            msgspec.msgpack.decode(raw, type=FiredAlert)
            for key, raw in self._records.scan(HISTORY_RECORD)
            if key.startswith(prefix)
        ]
        if rule_id is not None:
            found = [alert for alert in found if alert.rule_id == rule_id]
        return found[::-1][:limit]

    def delete_site(self, txn, site_id: int) -> None:
        self._records.delete_prefixed(txn, HISTORY_RECORD, f"{site_id:010d}/")
