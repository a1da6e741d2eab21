"""The JSON API for a site's alerts: rules (CRUD), the kinds they may watch, the history of
fired alerts, and "check now".

Analysts and admins create, change, delete and check rules (``define``); every signed-in
user who can read the site reads rules and history (``view_stats``, not open to shared links
or anonymous visitors of a public site: alerts are the team's business). Destination URLs
often carry credentials (a bot token, an SMTP password): answers show them redacted to
``scheme://host/…``, and a change gives the full list again. The rules live in LMDB
(:mod:`appliance.alerts.rules`); the minute job checks them (:mod:`appliance.alerts.checker`).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.accounts.permissions import Permission
from appliance.alerts.rules import AlertRule, RuleInput
from appliance.errors import DomainError
from appliance.runtime.appliance import Appliance
from web.auth import Guard, can_define, principal_of, site_of
from web.dependencies import ApplianceDep

can_read_alerts = Guard(Permission.VIEW_STATS, site=True, links=False)


class CheckInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    now: float | None = None  # only with [alerts] allow_test_clock (tests drive the clock)


def redacted(url: str) -> str:
    scheme, _, rest = url.partition("://")
    host = rest.split("@")[-1].split("/")[0].split("?")[0]
    return f"{scheme}://{host}/…"


def rule_view(appliance: Appliance, rule: AlertRule) -> dict[str, Any]:
    view = msgspec.to_builtins(rule)
    view["destinations"] = [redacted(url) for url in rule.destinations]
    state = appliance.alert_rules.state(rule)
    view["state"] = {
        "firing": state.firing,
        "since": state.since or None,
        "last_notified_at": state.last_notified_at or None,
        "last_checked_at": state.last_checked_at or None,
        "last_message": state.last_message,
        "last_error": state.last_error,
    }
    return view


class AlertController(Controller):
    path = "/api/v1/sites/{domain:str}/alerts"
    tags = ["alerts"]

    @get("/", guards=[can_read_alerts], summary="The site's alert rules, each with its current state", sync_to_thread=True)
    def list_rules(self, request: Request, appliance: ApplianceDep) -> dict[str, Any]:
        rules = appliance.alert_rules.list(site_of(request).id)
        return {"status": "success", "data": [rule_view(appliance, rule) for rule in rules]}

    @post("/", guards=[can_define], status_code=HTTP_201_CREATED, sync_to_thread=True,
          summary="Create an alert rule (analysts and admins)")
    def create_rule(self, request: Request, appliance: ApplianceDep, data: JSONBody[RuleInput]) -> dict[str, Any]:
        principal = principal_of(request)
        rule = appliance.alert_rules.create(site_of(request).id, data, principal.name if principal else "")
        return {"status": "success", "data": rule_view(appliance, rule)}

    @get("/kinds", guards=[can_read_alerts], summary="The alert kinds plugins provide, with their parameters",
         sync_to_thread=True)
    def list_kinds(self, request: Request, appliance: ApplianceDep) -> dict[str, Any]:
        kinds = sorted(appliance.extensions.alert_kinds.values(), key=lambda kind: kind.name)
        return {
            "status": "success",
            "data": [
                {
                    "name": kind.name,
                    "description": kind.description,
                    "parameters": [
                        {
                            "name": parameter.name, "type": parameter.type, "description": parameter.description,
                            "default": parameter.default, "minimum": parameter.minimum,
                            "maximum": parameter.maximum, "choices": list(parameter.choices),
                        }
                        for parameter in kind.parameters
                    ],
                }
                for kind in kinds
            ],
        }

    @get("/history", guards=[can_read_alerts], summary="Fired and resolved alerts, newest first", sync_to_thread=True)
    def history(
        self, request: Request, appliance: ApplianceDep,
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=500)] = 100,
        rule_id: Annotated[int | None, QueryParameter(name="rule_id", ge=1)] = None,
    ) -> dict[str, Any]:
        alerts = appliance.alert_history.list(site_of(request).id, limit, rule_id)
        return {"status": "success", "data": [msgspec.to_builtins(alert) for alert in alerts]}

    @post("/check", guards=[can_define], status_code=HTTP_200_OK, sync_to_thread=True,
          summary="Check the site's rules now and notify what changed (analysts and admins)")
    def check_now(self, request: Request, appliance: ApplianceDep, data: JSONBody[CheckInput]) -> dict[str, Any]:
        if data.now is not None and not appliance.settings.alerts.allow_test_clock:
            raise DomainError("now", "only accepted when [alerts] allow_test_clock is on (tests)")
        changes = appliance.alerts.check(now=data.now, site=site_of(request))
        return {"status": "success", "data": [msgspec.to_builtins(change) for change in changes]}

    @get("/{rule_id:int}", guards=[can_read_alerts], summary="One alert rule", sync_to_thread=True)
    def get_rule(self, request: Request, appliance: ApplianceDep, rule_id: FromPath[int]) -> dict[str, Any]:
        return {"status": "success", "data": rule_view(appliance, appliance.alert_rules.get(site_of(request).id, rule_id))}

    @put("/{rule_id:int}", guards=[can_define], sync_to_thread=True,
         summary="Change an alert rule (analysts and admins; give every destination again)")
    def change_rule(self, request: Request, appliance: ApplianceDep, rule_id: FromPath[int], data: JSONBody[RuleInput]) -> dict[str, Any]:
        rule = appliance.alert_rules.change(site_of(request).id, rule_id, data)
        return {"status": "success", "data": rule_view(appliance, rule)}

    @delete("/{rule_id:int}", guards=[can_define], status_code=HTTP_200_OK, summary="Delete an alert rule",
            sync_to_thread=True)
    def delete_rule(self, request: Request, appliance: ApplianceDep, rule_id: FromPath[int]) -> dict[str, Any]:
        appliance.alert_rules.delete(site_of(request).id, rule_id)
        return {"status": "success"}


ALERT_CONTROLLERS = [AlertController]
