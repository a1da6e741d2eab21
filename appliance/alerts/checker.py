"""The alert checker: every enabled rule of every site, evaluated at one ``now``.

For each rule the kind's ``check`` reads a :class:`~appliance.alerts.context.SiteReadings`
and answers firing or not. The rule's :class:`~appliance.alerts.rules.RuleState` turns
readings into notifications:

- not firing → firing: a "firing" message to every destination, unless the rule was
  notified less than ``cooldown_minutes`` ago (then the history records it, unnotified);
- still firing: nothing, until the cool-down has passed since the last notification, then a
  reminder ("still firing");
- firing → not firing: a "resolved" message, if that episode was notified.

Messages go through the notifier hook (:func:`appliance.hooks.delivery.deliver`, with retry
and back-off) and each change is written to the history with how each delivery went. One run
at a time (a lock): the minute job and "check now" never both notify the same change. The
states of a site's rules are written in one transaction after the sends (one write per site
and minute, not per rule), so a crash in between repeats a notification rather than losing it. ``clock`` and ``sleep`` are injectable: tests drive time, they do not wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from appliance.alerts.history import AlertHistory, Delivery, FiredAlert
from appliance.alerts.rules import AlertRule, AlertRules, RuleState
from appliance.errors import DomainError
from appliance.extensions import AlertContext, Message
from appliance.hooks.delivery import DeliveryFailed, deliver
from appliance.hooks.registry import Extensions
from appliance.models import Site
from appliance.sites import SiteRegistry
from storage import Store

log = logging.getLogger(__name__)


class AlertChecker:
    def __init__(
        self, *, store: Store, sites: SiteRegistry, rules: AlertRules, history: AlertHistory, extensions: Extensions,
        readings: Callable[[Site, float], AlertContext], attempts: int = 3, backoff_seconds: float = 2.0,
        clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._sites = sites
        self._rules = rules
        self._history = history
        self._extensions = extensions
        self._readings = readings
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    def check(self, now: float | None = None, site: Site | None = None) -> list[FiredAlert]:
        """Check every enabled rule (of ``site``, or of every site) at ``now``; returns the
        changes recorded in the history."""
        with self._lock:
            now = self._clock() if now is None else now
            changes: list[FiredAlert] = []
            for each in [site] if site is not None else self._sites.all():
                checked = [self._check_rule(each, rule, now) for rule in self._rules.list(each.id) if rule.enabled]
                if checked:
                    self._store.write(lambda txn, checked=checked: self._save(txn, checked))
                changes.extend(change for _, _, change in checked if change is not None)
            return changes

    def _save(self, txn, checked) -> None:
        """Every checked rule's state and the site's changes, in one transaction per site."""
        for rule, state, change in checked:
            self._rules.put_state(txn, rule, state)
            if change is not None:
                self._history.add(txn, change)

    def _check_rule(self, site: Site, rule: AlertRule, now: float) -> tuple[AlertRule, RuleState, FiredAlert | None]:
        state = self._rules.state(rule)
        state.last_checked_at = now
        kind = self._extensions.alert_kinds.get(rule.kind)
        if kind is None:
            state.last_error = f"no plugin provides the alert kind {rule.kind!r}"
            return rule, state, None
        try:
            reading = kind.check(self._readings(site, now), dict(rule.parameters))
        except Exception as error:  # a plugin's bug must not stop the other rules
            log.exception("alert rule %s (%s) failed to check", rule.id, rule.kind)
            state.last_error = f"the check failed: {error}"
            return rule, state, None
        state.last_error = ""
        state.last_message = reading.message
        change = None
        if reading.firing:
            started = not state.firing
            if started:
                state.firing, state.since, state.notified = True, now, False
            cooled = not state.last_notified_at or now - state.last_notified_at >= rule.cooldown_minutes * 60
            if cooled:
                title = "firing" if started else "still firing"
                deliveries = self._send(site, rule, title, reading.message, state.since)
                state.notified, state.last_notified_at = True, now
                change = self._fired(site, rule, "firing", now, reading.message, True, deliveries)
            elif started:
                change = self._fired(site, rule, "firing", now, reading.message, False, [])
        elif state.firing:
            deliveries = self._send(site, rule, "resolved", reading.message, state.since) if state.notified else []
            change = self._fired(site, rule, "resolved", now, reading.message, state.notified, deliveries)
            state.firing, state.notified = False, False
        return rule, state, change

    @staticmethod
    def _fired(site, rule, state, now, message, notified, deliveries) -> FiredAlert:
        return FiredAlert(
            site_id=site.id, rule_id=rule.id, rule_name=rule.name, kind=rule.kind, state=state, at=now,
            message=message, notified=notified, deliveries=deliveries,
        )

    def _send(self, site: Site, rule: AlertRule, what: str, body: str, since: float) -> list[Delivery]:
        started = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M UTC")
        message = Message(
            title=f"Footfall alert {what}: {rule.name} ({site.domain})",
            body=f"{body}\n\nRule: {rule.name} ({rule.kind}), firing since {started}.",
        )
        outcomes = []
        for index, url in enumerate(rule.destinations):
            try:
                sent = deliver(
                    self._extensions, url, message, attempts=self._attempts, backoff_seconds=self._backoff,
                    sleep=self._sleep,
                )
                outcomes.append(Delivery(destination=index, ok=True, attempts=sent.attempts))
            except DeliveryFailed as failure:
                outcomes.append(Delivery(destination=index, ok=False, attempts=failure.attempts, error=failure.error))
            except DomainError as error:
                outcomes.append(Delivery(destination=index, ok=False, error=error.message))
        return outcomes
