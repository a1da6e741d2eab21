"""``footfall gdpr export|delete --site D --user-id U``: a person's rights from the command line.

Both open the full appliance (:mod:`appliance.operations.erasure` needs the write path), so
they refuse while a server owns the data dir: use the admin API then
(``GET|DELETE /api/v1/sites/{domain}/people/{user_id}``). ``export`` prints the person's
events as JSON lines; ``delete`` erases them, rebuilds the days they were in and writes an
audit entry (the user id is recorded only as its keyed hash).
"""

from __future__ import annotations

import argparse
import sys

import msgspec

from appliance.config import load_settings
from appliance.runtime.appliance import Appliance
from appliance.sites import SiteError

CLI_ACTOR = "cli"


def _open(args: argparse.Namespace) -> Appliance:
    settings = load_settings(args.config, data_dir=args.data)
    return Appliance(settings).open(role=f"footfall gdpr {args.action}")


def cmd_gdpr_export(args: argparse.Namespace) -> int:
    with _open(args) as appliance:
        site = appliance.sites.get(args.site)
        if site is None:
            raise SiteError("site", f"unknown site {args.site!r}", 404)
        events = appliance.personal.export(site, args.user_id)
        appliance.audit.record(CLI_ACTOR, "gdpr.export", site.domain, events=len(events),
                               visitor=f"{appliance.personal.visitor_of(site, args.user_id):016x}")
    for key, event in events:
        sys.stdout.write(msgspec.json.encode({"event_id": f"evt_{key}", **msgspec.to_builtins(event)}).decode() + "\n")
    print(f"{len(events)} events", file=sys.stderr)
    return 0


def cmd_gdpr_delete(args: argparse.Namespace) -> int:
    with _open(args) as appliance:
        site = appliance.sites.get(args.site)
        if site is None:
            raise SiteError("site", f"unknown site {args.site!r}", 404)
        erasure = appliance.personal.erase(site, args.user_id)
        appliance.audit.record(CLI_ACTOR, "gdpr.delete", site.domain, events=erasure.events, days=erasure.days,
                               visitor=f"{appliance.personal.visitor_of(site, args.user_id):016x}")
    print(f"deleted {erasure.events} events; rebuilt {len(erasure.days)} days")
    return 0


def add_gdpr_commands(commands, common: argparse.ArgumentParser) -> None:
    """``footfall gdpr export|delete`` (added to the ``footfall`` parser)."""
    gdpr = commands.add_parser("gdpr", help="a person's data: export or delete (sites that send user_id)")
    actions = gdpr.add_subparsers(dest="action", required=True)
    for action, func, text in (
        ("export", cmd_gdpr_export, "print every stored event of a user id as JSON lines"),
        ("delete", cmd_gdpr_delete, "delete every event of a user id and rebuild the days they were in"),
    ):
        sub = actions.add_parser(action, parents=[common], help=text)
        sub.add_argument("--site", required=True, help="the site's domain")
        sub.add_argument("--user-id", required=True, help="the user_id the site sent")
        sub.set_defaults(func=func)
