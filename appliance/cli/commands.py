"""The ``footfall`` command: serve, users, sites, API keys, the audit log, plugins.

Every command takes ``--data DIR`` and ``--config FILE`` so scripts and tests can point it at
any data dir. ``serve`` runs granian with one worker around ``web.app:make_app``; on the first
start it creates an admin user (and, with the ``demo`` setting, a demo site full of generated
traffic) and prints how to log in and add a site. ``health`` probes a running server's
readiness, ``/ready``, at the address and scheme the settings give (the container's health check).

One process owns a data dir's events (:mod:`appliance.runtime.ownership`): the server, or a
command that writes events (``demo``, ``site delete``) when no server runs; those refuse
while a server runs. ``serve`` and ``health`` are :mod:`appliance.cli.serving`. The commands that manage users, sites, API keys, the audit log and
list plugins open a records-only session (:mod:`appliance.runtime.records`) and work beside
a running server, which sees what they change at once.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys

from appliance.accounts.models import AccountError
from appliance.cli.backup_commands import add_backup_commands
from appliance.cli.demo import DEMO_VISITS_PER_DAY, fill_demo_site, site_is_empty
from appliance.cli.privacy import add_gdpr_commands
from appliance.cli.serving import DEMO_SITE, cmd_health, cmd_serve
from appliance.cli.standby import add_standby_commands
from appliance.cli.transfer import add_transfer_commands
from appliance.config import ConfigError, Settings, load_settings
from appliance.errors import DomainError
from appliance.hooks.manager import describe_plugins
from appliance.runtime.appliance import Appliance
from appliance.runtime.ownership import DataDirBusy
from appliance.runtime.records import RecordsSession
from appliance.sites import SiteError

CLI_ACTOR = "cli"  # the audit log's "who" for command-line changes


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, data_dir=args.data)


def _records(args: argparse.Namespace) -> RecordsSession:
    """Users, sites, API keys and the audit log: usable beside a running server."""
    return RecordsSession(_settings(args))


def _owned(args: argparse.Namespace, command: str) -> Appliance:
    """The full appliance, for commands that write or delete events; raises
    :class:`DataDirBusy` while a server (or another such command) owns the data dir."""
    return Appliance(_settings(args)).open(role=f"footfall {command}")


def _site_ids(session, domains: list[str] | None) -> list[int]:
    ids = []
    for domain in domains or []:
        site = session.sites.get(domain)
        if site is None:
            raise SiteError("site", f"unknown site {domain!r}")
        ids.append(site.id)
    return ids


def _new_password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password from --password, or a generated one (printed once)."""
    if args.password:
        return args.password, False
    return secrets.token_urlsafe(12), True


def cmd_user_create(args: argparse.Namespace) -> int:
    password, generated = _new_password(args)
    with _records(args) as session:
        user = session.accounts.create(
            args.username, password, args.role, args.email or "", _site_ids(session, args.site)
        )
        session.audit.record(CLI_ACTOR, "user.create", user.username, role=args.role, sites=args.site or [])
    print(f"created {args.role} {user.username} (user{user.id})")
    if generated:
        print(f"password: {password}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    with _records(args) as session:
        for user in session.accounts.list():
            sites = ",".join(site.domain for site in map(session.sites.by_id, user.sites) if site) or "-"
            sites = "*" if user.role == "admin" else sites
            print(f"{user.username}\t{user.role}\t{user.email or '-'}\t{sites}")
    return 0


def cmd_user_set_role(args: argparse.Namespace) -> int:
    with _records(args) as session:
        sites = _site_ids(session, args.site) if args.site is not None else None
        user = session.accounts.update(args.username, role=args.role, sites=sites)
        session.audit.record(CLI_ACTOR, "user.update", user.username, role=args.role, sites=args.site)
    print(f"{user.username} is now {user.role}")
    return 0


def cmd_user_reset_password(args: argparse.Namespace) -> int:
    password, generated = _new_password(args)
    with _records(args) as session:
        user = session.accounts.set_password(args.username, password)
        session.audit.record(CLI_ACTOR, "user.reset_password", user.username)
    print(f"password of {user.username} changed; their login tokens and sessions ended")
    if generated:
        print(f"password: {password}")
    return 0


def cmd_user_delete(args: argparse.Namespace) -> int:
    with _records(args) as session:
        user = session.accounts.delete(args.username)
        session.audit.record(CLI_ACTOR, "user.delete", user.username)
    print(f"deleted {user.username} with their tokens, sessions and API keys")
    return 0


def cmd_site_add(args: argparse.Namespace) -> int:
    with _records(args) as session:
        site = session.sites.add(
            args.domain, name=args.name or "", timezone=args.timezone, retention_days=args.retention_days,
            umami_website_id=args.umami_website_id or "", plausible_site_id=args.plausible_site_id or "",
        )
        session.audit.record(CLI_ACTOR, "site.create", site.domain, timezone=site.timezone)
    print(f"added {site.domain} (site {site.id}, {site.timezone})")
    return 0


def cmd_site_alias(args: argparse.Namespace) -> int:
    """Set the other tools' names of a site (an empty value removes one)."""
    with _records(args) as session:
        site = session.sites.change(
            args.domain, umami_website_id=args.umami_website_id, plausible_site_id=args.plausible_site_id
        )
        session.audit.record(CLI_ACTOR, "site.update", site.domain, umami_website_id=site.umami_website_id,
                             plausible_site_id=site.plausible_site_id)
    print(f"{site.domain}: umami_website_id={site.umami_website_id or '-'} plausible_site_id={site.plausible_site_id or '-'}")
    return 0


def cmd_site_list(args: argparse.Namespace) -> int:
    with _records(args) as session:
        for site in session.sites.all():
            public = "\tpublic" if site.public else ""
            print(f"{site.domain}\t{site.timezone}\tretention {site.retention_days} days{public}")
    return 0


def cmd_site_delete(args: argparse.Namespace) -> int:
    if not args.yes:
        print(f"footfall: this deletes {args.domain} and all its data; add --yes to confirm", file=sys.stderr)
        return 2
    with _owned(args, "site delete") as appliance:
        site = appliance.delete_site(args.domain)
        if site is None:
            raise SiteError("domain", f"unknown site {args.domain!r}")
        appliance.audit.record(CLI_ACTOR, "site.delete", site.domain, site_id=site.id)
    print(f"deleted {site.domain} and its data")
    return 0


def cmd_apikey_create(args: argparse.Namespace) -> int:
    with _records(args) as session:
        user = session.accounts.get(args.username)
        if user is None:
            raise AccountError("username", f"no such user: {args.username!r}")
        key, record = session.accounts.create_api_key(
            user, args.name, read_only=args.read_only, expires_in_days=args.expires_in_days
        )
        session.audit.record(CLI_ACTOR, "apikey.create", f"{user.username}/{record.id}", name=record.name,
                               read_only=record.read_only)
    print(f"API key {record.id} '{record.name}' for {user.username}{' (read-only)' if record.read_only else ''}")
    print(f"key: {key}")
    print("(shown only now: store it somewhere safe)")
    return 0


def cmd_apikey_list(args: argparse.Namespace) -> int:
    with _records(args) as session:
        user_id = None
        if args.username:
            user = session.accounts.get(args.username)
            if user is None:
                raise AccountError("username", f"no such user: {args.username!r}")
            user_id = user.id
        for key in session.accounts.api_keys(user_id):
            mode = "read-only" if key.read_only else "full"
            print(f"{key.id}\t{key.username}\t{key.name}\t{key.prefix}...\t{mode}")
    return 0


def cmd_apikey_revoke(args: argparse.Namespace) -> int:
    with _records(args) as session:
        key = session.accounts.revoke_api_key(args.key_id)
        if key is None:
            raise AccountError("key_id", f"no API key {args.key_id}")
        session.audit.record(CLI_ACTOR, "apikey.revoke", f"{key.username}/{key.id}", name=key.name)
    print(f"revoked API key {key.id} '{key.name}' of {key.username}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    with _records(args) as session:
        for entry in session.audit.latest(args.limit, args.action):
            when = datetime.fromtimestamp(entry.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
            details = json.dumps(entry.details, sort_keys=True) if entry.details else ""
            print(f"{when}\t{entry.actor}\t{entry.action}\t{entry.target}\t{details}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Fill a site (created if missing) with generated traffic; refused while a server runs
    on the data dir (it writes events, which only the data dir's owner may do)."""
    with _owned(args, "demo") as appliance:
        site = appliance.sites.get(args.site) or appliance.sites.add(args.site, name="Demo site")
        if not site_is_empty(appliance, site) and not args.force:
            print(f"footfall: {site.domain} already has events; add --force to add demo traffic anyway",
                  file=sys.stderr)
            return 1
        report = fill_demo_site(appliance, site, days=args.days, visits_per_day=args.visits_per_day,
                                seed=args.seed)
    print(f"{site.domain}: {report.visits} visits, {report.events} events over {args.days} days "
          f"in {report.seconds} s")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    with _records(args) as session:
        plugins = describe_plugins(session.plugin_manager)
    if args.json:
        print(json.dumps(plugins, indent=2))
    else:
        for plugin in plugins:
            origin = "built-in" if plugin["builtin"] else plugin["package"] or "plugins folder"
            print(f"{plugin['name']:<16} {origin:<24} {', '.join(plugin['hooks'])}")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    """pip install plugin packages (names or local paths) into the environment Footfall runs in."""
    options = ["--no-deps"] if args.no_deps else []
    return subprocess.call([sys.executable, "-m", "pip", "install", *options, *args.packages])


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", help="data directory (default ./data or FOOTFALL_DATA_DIR)")
    common.add_argument("--config", help="TOML config file (default: none, or FOOTFALL_CONFIG)")

    parser = argparse.ArgumentParser(prog="footfall", description="Footfall web analytics appliance")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", parents=[common], help="run the server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--follow", metavar="URL", help="run as a read-only standby of the primary at URL")
    serve.add_argument("--token", metavar="KEY", help="an admin API key of the primary (for --follow)")
    serve.set_defaults(func=cmd_serve)

    health = commands.add_parser(
        "health", parents=[common],
        help="probe a running server's readiness, /ready (exit 0 ready, 1 not): the container's health check",
    )
    health.add_argument("--port", type=int, help="default: the [server] port setting")
    health.add_argument("--url", help="probe this URL instead of the one the settings give")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    health.set_defaults(func=cmd_health)

    roles = ["admin", "analyst", "viewer"]
    user = commands.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    create = user.add_parser("create", parents=[common], help="create a user")
    create.add_argument("username")
    create.add_argument("--role", choices=roles, default="viewer")
    create.add_argument("--password", help="default: generate one and print it")
    create.add_argument("--email")
    create.add_argument("--site", action="append", help="grant a site (repeatable)")
    create.set_defaults(func=cmd_user_create)
    user.add_parser("list", parents=[common], help="list users").set_defaults(func=cmd_user_list)
    set_role = user.add_parser("set-role", parents=[common], help="change a user's role (and site grants)")
    set_role.add_argument("username")
    set_role.add_argument("role", choices=roles)
    set_role.add_argument("--site", action="append", help="replace the site grants (repeatable)")
    set_role.set_defaults(func=cmd_user_set_role)
    reset = user.add_parser("reset-password", parents=[common], help="set a new password")
    reset.add_argument("username")
    reset.add_argument("--password", help="default: generate one and print it")
    reset.set_defaults(func=cmd_user_reset_password)
    remove = user.add_parser("delete", parents=[common], help="delete a user and their credentials")
    remove.add_argument("username")
    remove.set_defaults(func=cmd_user_delete)

    site = commands.add_parser("site", help="manage sites").add_subparsers(dest="action", required=True)
    add = site.add_parser("add", parents=[common], help="add a site")
    add.add_argument("domain")
    add.add_argument("--name")
    add.add_argument("--timezone")
    add.add_argument("--retention-days", type=int)
    add.add_argument("--umami-website-id", help="the Umami website id (UUID) its Umami snippet sends")
    add.add_argument("--plausible-site-id", help="the domain its Plausible snippet names, if not DOMAIN")
    add.set_defaults(func=cmd_site_add)
    alias = site.add_parser("alias", parents=[common], help="set a site's Umami website id or Plausible site id")
    alias.add_argument("domain")
    alias.add_argument("--umami-website-id", help="a UUID; empty to remove")
    alias.add_argument("--plausible-site-id", help="a domain; empty to remove")
    alias.set_defaults(func=cmd_site_alias)
    site.add_parser("list", parents=[common], help="list sites").set_defaults(func=cmd_site_list)
    drop = site.add_parser("delete", parents=[common], help="delete a site and all its data")
    drop.add_argument("domain")
    drop.add_argument("--yes", action="store_true", help="confirm: the data cannot be recovered")
    drop.set_defaults(func=cmd_site_delete)

    apikey = commands.add_parser("apikey", help="manage API keys").add_subparsers(dest="action", required=True)
    make = apikey.add_parser("create", parents=[common], help="create an API key for a user (printed once)")
    make.add_argument("username")
    make.add_argument("--name", required=True)
    make.add_argument("--read-only", action="store_true")
    make.add_argument("--expires-in-days", type=int)
    make.set_defaults(func=cmd_apikey_create)
    keys = apikey.add_parser("list", parents=[common], help="list API keys (never the keys themselves)")
    keys.add_argument("--user", dest="username")
    keys.set_defaults(func=cmd_apikey_list)
    revoke = apikey.add_parser("revoke", parents=[common], help="revoke an API key by id")
    revoke.add_argument("key_id", type=int)
    revoke.set_defaults(func=cmd_apikey_revoke)

    audit = commands.add_parser("audit", parents=[common], help="show the audit log, newest first")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--action", help="only this action or prefix, e.g. user or site.delete")
    audit.set_defaults(func=cmd_audit)

    demo = commands.add_parser("demo", parents=[common], help="fill a site with generated demo traffic")
    demo.add_argument("--site", default=DEMO_SITE, help=f"the site's domain (default {DEMO_SITE}; created if missing)")
    demo.add_argument("--days", type=int, default=90, help="days of history ending now (default 90)")
    demo.add_argument("--visits-per-day", type=int, default=DEMO_VISITS_PER_DAY, help="average visits per weekday")
    demo.add_argument("--seed", type=int, default=1, help="random seed (the same seed gives the same traffic)")
    demo.add_argument("--force", action="store_true", help="add demo traffic to a site that already has events")
    demo.set_defaults(func=cmd_demo)

    plugins = commands.add_parser("plugins", parents=[common], help="list loaded plugins")
    plugins.add_argument("--json", action="store_true")
    plugins.set_defaults(func=cmd_plugins)

    install = commands.add_parser("install", help="pip install plugin packages into this environment")
    install.add_argument("packages", nargs="+", help="package names, or paths of plugin source folders")
    install.add_argument("--no-deps", action="store_true", help="do not install the packages' dependencies")
    install.set_defaults(func=cmd_install)

    add_transfer_commands(commands, site, common, _owned)
    add_backup_commands(commands, common)
    add_gdpr_commands(commands, common)
    add_standby_commands(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DomainError as error:
        print(f"footfall: {error.field}: {error.message}" if error.field else f"footfall: {error.message}", file=sys.stderr)
        return 2
    except (ConfigError, DataDirBusy) as error:
        print(f"footfall: {error}", file=sys.stderr)
        return 2
