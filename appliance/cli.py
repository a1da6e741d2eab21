"""The ``footfall`` command: serve, users, sites, plugins.

Every command takes ``--data DIR`` and ``--config FILE`` so scripts and tests can point it at
any data dir. ``serve`` runs granian with one worker around ``web.app:make_app``; on the first
start it creates an admin user and a demo site and prints how to use them.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from appliance.accounts import AccountError
from appliance.config import ConfigError, Settings, load_settings
from appliance.core import Appliance
from appliance.plugins import describe_plugins
from appliance.sites import SiteError

FIRST_PASSWORD_FILE = "first-admin-password.txt"
DEMO_SITE = "localhost"


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, data_dir=args.data)


def _public_url(settings: Settings, host: str, port: int) -> str:
    if settings.server.public_url:
        return settings.server.public_url.rstrip("/")
    scheme = "https" if settings.server.tls_certificate else "http"
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"{scheme}://{shown}:{port}"


def bootstrap(settings: Settings) -> list[str]:
    """First start: an admin and the demo site. Returns lines to print (every start)."""
    lines = []
    data = Path(settings.data_dir)
    password_file = data / FIRST_PASSWORD_FILE
    with Appliance(settings) as appliance:
        if appliance.accounts.count() == 0:
            password = secrets.token_urlsafe(12)
            appliance.accounts.create("admin", password, "admin")
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
            lines.append("Created the first admin user.")
        if settings.demo and appliance.sites.get(DEMO_SITE) is None:
            appliance.sites.add(DEMO_SITE, name="Demo site")
            lines.append(f"Created the demo site '{DEMO_SITE}'.")
    if password_file.exists():
        lines.append(f"Admin login: admin / {password_file.read_text().strip()}")
        lines.append(f"  (stored in {password_file}; delete the file once you have changed it)")
    else:
        lines.append("Admin login: your existing admin user.")
    return lines


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    for line in bootstrap(settings):
        print(line)
    url = _public_url(settings, host, port)
    print("Tracking snippet for your pages:")
    print(f'  <script defer src="{url}/js/footfall.js" data-site="{DEMO_SITE}"></script>')
    print(f"Dashboard: {url}/   API schema: {url}/schema   Health: {url}/api/v1/health")
    sys.stdout.flush()

    os.environ["FOOTFALL_DATA_DIR"] = str(Path(settings.data_dir).resolve())
    if args.config:
        os.environ["FOOTFALL_CONFIG"] = str(Path(args.config).resolve())
    from granian import Granian
    from granian.constants import Interfaces

    options = {}
    if settings.server.tls_certificate and settings.server.tls_private_key:
        options["ssl_cert"] = Path(settings.server.tls_certificate)
        options["ssl_key"] = Path(settings.server.tls_private_key)
    Granian(
        "web.app:make_app",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        factory=True,
        log_access=False,
        backlog=2048,
        **options,
    ).serve()
    return 0


def cmd_user_create(args: argparse.Namespace) -> int:
    password = args.password or secrets.token_urlsafe(12)
    with Appliance(_settings(args)) as appliance:
        user = appliance.accounts.create(args.username, password, args.role, args.email or "")
        if args.site:
            for domain in args.site:
                site = appliance.sites.get(domain)
                if site is None:
                    raise SiteError("site", f"unknown site {domain!r}")
                user.sites.append(site.id)
            appliance.accounts.save(user)
    print(f"created {args.role} {user.username} (user{user.id})")
    if not args.password:
        print(f"password: {password}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    with Appliance(_settings(args)) as appliance:
        for user in appliance.accounts.list():
            print(f"{user.username}\t{user.role}\t{user.email}")
    return 0


def cmd_site_add(args: argparse.Namespace) -> int:
    with Appliance(_settings(args)) as appliance:
        site = appliance.sites.add(args.domain, timezone=args.timezone)
    print(f"added {site.domain} (site {site.id}, {site.timezone})")
    return 0


def cmd_site_list(args: argparse.Namespace) -> int:
    with Appliance(_settings(args)) as appliance:
        for site in appliance.sites.all():
            print(f"{site.domain}\t{site.timezone}\tretention {site.retention_days} days")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    with Appliance(_settings(args)) as appliance:
        plugins = describe_plugins(appliance.plugin_manager)
    if args.json:
        print(json.dumps(plugins, indent=2))
    else:
        for plugin in plugins:
            origin = "built-in" if plugin["builtin"] else plugin["package"] or "plugins folder"
            print(f"{plugin['name']:<16} {origin:<24} {', '.join(plugin['hooks'])}")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    return subprocess.call([sys.executable, "-m", "pip", "install", *args.packages])


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", help="data directory (default ./data or FOOTFALL_DATA_DIR)")
    common.add_argument("--config", help="TOML config file (default: none, or FOOTFALL_CONFIG)")

    parser = argparse.ArgumentParser(prog="footfall", description="Footfall web analytics appliance")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", parents=[common], help="run the server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)

    user = commands.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    create = user.add_parser("create", parents=[common])
    create.add_argument("username")
    create.add_argument("--role", choices=["admin", "analyst", "viewer"], default="viewer")
    create.add_argument("--password")
    create.add_argument("--email")
    create.add_argument("--site", action="append", help="grant a site (repeatable)")
    create.set_defaults(func=cmd_user_create)
    user.add_parser("list", parents=[common]).set_defaults(func=cmd_user_list)

    site = commands.add_parser("site", help="manage sites").add_subparsers(dest="action", required=True)
    add = site.add_parser("add", parents=[common])
    add.add_argument("domain")
    add.add_argument("--timezone")
    add.set_defaults(func=cmd_site_add)
    site.add_parser("list", parents=[common]).set_defaults(func=cmd_site_list)

    plugins = commands.add_parser("plugins", parents=[common], help="list loaded plugins")
    plugins.add_argument("--json", action="store_true")
    plugins.set_defaults(func=cmd_plugins)

    install = commands.add_parser("install", help="pip install plugin packages into this environment")
    install.add_argument("packages", nargs="+")
    install.set_defaults(func=cmd_install)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, AccountError, SiteError) as error:
        print(f"footfall: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
