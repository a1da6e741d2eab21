"""The Alerts page of a site: its alert rules with their state, the history of fired alerts,
and for analysts and admins the form that creates a rule and the buttons that delete one.

Signed-in users who can read the site see it (not shared links or public visitors: alerts are
the team's business); "Check now" runs the site's checks at once. The forms are plain HTML posts answered with a redirect, or the page
again (422) naming what was wrong. The rule form shows one set of parameter fields per alert
kind, named ``KIND.PARAMETER``; only the chosen kind's are read. The rules and the history
are the same ones the JSON API serves (:mod:`web.api_alerts`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from appliance.alerts.rules import RuleInput
from appliance.errors import DomainError
from appliance.runtime.appliance import Appliance
from web.api_alerts import redacted
from web.auth import dashboard_site_analyst, dashboard_site_member, principal_of, site_of
from web.dependencies import ApplianceDep, FormDep
from web.pages import page


def _when(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def _number(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def rule_input(form, kinds) -> tuple[dict[str, Any], RuleInput]:
    values: dict[str, Any] = {key: (form.get(key) or "").strip() for key in ("name", "kind", "destinations", "cooldown_minutes")}
    values["enabled"] = form.get("enabled") == "on" if "enabled_shown" in form else True
    kind = kinds.get(values["kind"])
    parameters: dict[str, Any] = {}
    if kind is not None:
        for parameter in kind.parameters:
            text = (form.get(f"{kind.name}.{parameter.name}") or "").strip()
            values[f"{kind.name}.{parameter.name}"] = text
            if text:
                parameters[parameter.name] = _number(text) if parameter.type in ("integer", "number") else text
    cooldown = values["cooldown_minutes"]
    data = RuleInput(
        name=values["name"], kind=values["kind"], parameters=parameters,
        destinations=[line.strip() for line in values["destinations"].splitlines() if line.strip()],
        cooldown_minutes=int(cooldown) if cooldown.isdigit() else 60, enabled=values["enabled"],
    )
    return values, data


def rule_form(rule) -> dict[str, Any]:
    """The form's values for changing ``rule``: destinations stay empty (they are not shown;
    left empty, the rule keeps its own)."""
    values: dict[str, Any] = {"name": rule.name, "kind": rule.kind, "destinations": "",
                              "cooldown_minutes": str(rule.cooldown_minutes), "enabled": rule.enabled}
    values |= {f"{rule.kind}.{name}": str(value) for name, value in rule.parameters.items()}
    return values


def _alerts_page(request: Request, appliance: Appliance, *, error: str = "", form: dict[str, Any] | None = None,
                 editing=None, status: int = 200) -> Template:
    site = site_of(request)
    if editing is None and request.query_params.get("edit", "").isdigit():
        editing = next((rule for rule in appliance.alert_rules.list(site.id)
                        if rule.id == int(request.query_params["edit"])), None)
    if form is None and editing is not None:
        form = rule_form(editing)
    rules = []
    for rule in appliance.alert_rules.list(site.id):
        state = appliance.alert_rules.state(rule)
        rules.append({"rule": rule, "state": state, "destinations": [redacted(url) for url in rule.destinations],
                      "checked": _when(state.last_checked_at), "since": _when(state.since)})
    names = {rule["rule"].id: rule["rule"].name for rule in rules}
    history = [
        {"alert": alert, "when": _when(alert.at), "rule": names.get(alert.rule_id, alert.rule_name)}
        for alert in appliance.alert_history.list(site.id, 100)
    ]
    kinds = sorted(appliance.extensions.alert_kinds.values(), key=lambda kind: kind.name)
    return page(request, "alerts.html", site=site, rules=rules, history=history, kinds=kinds,
                form=form or {"cooldown_minutes": "60", "enabled": True}, editing=editing, error=error, status=status,
                saved=request.query_params.get("saved", ""), checked=request.query_params.get("checked", ""))


class AlertPages(Controller):
    path = "/sites/{domain:str}/alerts"
    include_in_schema = False

    @get("/", guards=[dashboard_site_member], summary="A site's alert rules and fired alerts", sync_to_thread=True)
    def alerts(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Template:
        return _alerts_page(request, appliance)

    @post("/", guards=[dashboard_site_analyst], summary="Create an alert rule (analysts, admins)", sync_to_thread=True)
    def create_rule(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], form: FormDep) -> Response:
        values, data = rule_input(form, appliance.extensions.alert_kinds)
        principal = principal_of(request)
        try:
            rule = appliance.alert_rules.create(site_of(request).id, data, principal.name if principal else "")
        except DomainError as error:
            return _alerts_page(request, appliance, error=f"{error.field}: {error.message}", form=values, status=422)
        return Redirect(f"/sites/{domain}/alerts?saved={rule.id}", status_code=303)

    @post("/check", guards=[dashboard_site_analyst], summary="Check the site's rules now (analysts, admins)",
          sync_to_thread=True)
    def check_now(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Response:
        changes = appliance.alerts.check(site=site_of(request))
        return Redirect(f"/sites/{domain}/alerts?checked={len(changes)}", status_code=303)

    @post("/{rule_id:int}", guards=[dashboard_site_analyst], summary="Change an alert rule (analysts, admins)",
          sync_to_thread=True)
    def change_rule(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], rule_id: FromPath[int],
                    form: FormDep) -> Response:
        rules = appliance.alert_rules
        try:
            editing = rules.get(site_of(request).id, rule_id)
        except DomainError as error:
            raise NotFoundException(error.message) from None
        values, data = rule_input(form, appliance.extensions.alert_kinds)
        if not data.destinations:
            data = msgspec.structs.replace(data, destinations=editing.destinations)
        try:
            rules.change(site_of(request).id, rule_id, data)
        except DomainError as error:
            return _alerts_page(request, appliance, error=f"{error.field}: {error.message}", form=values,
                                editing=editing, status=422)
        return Redirect(f"/sites/{domain}/alerts?saved={rule_id}", status_code=303)

    @post("/{rule_id:int}/delete", guards=[dashboard_site_analyst], summary="Delete an alert rule (analysts, admins)",
          sync_to_thread=True)
    def delete_rule(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], rule_id: FromPath[int]) -> Response:
        try:
            appliance.alert_rules.delete(site_of(request).id, rule_id)
        except DomainError as error:
            raise NotFoundException(error.message) from None
        return Redirect(f"/sites/{domain}/alerts", status_code=303)


ALERT_PAGES = [AlertPages]
