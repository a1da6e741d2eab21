"""``footfall promote``: tell a running standby to take over as the primary.

The standby answers ``POST /api/v1/replication/promote`` (an admin's API key or token: the
primary's users and keys are on the standby too); it stops following, writes that down, and
accepts writes from then on. ``footfall replication-status`` prints a server's role and lag.
"""

from __future__ import annotations

import argparse
import json
import sys

from appliance.cli.serving import health_url
from appliance.config import load_settings


def _base_url(args: argparse.Namespace) -> str:
    if args.url:
        return args.url.rstrip("/")
    return health_url(load_settings(args.config, data_dir=args.data), args.port).removesuffix("/api/v1/health")


def _call(args: argparse.Namespace, method: str, path: str) -> int:
    import httpx  # the only HTTP client call of the CLI: not loaded for every other command

    url = _base_url(args) + path
    try:
        answer = httpx.request(method, url, headers={"Authorization": f"Bearer {args.token}"}, timeout=60, verify=False)
    except httpx.HTTPError as error:
        print(f"footfall: {url}: {error}", file=sys.stderr)
        return 1
    body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else answer.text
    if answer.status_code != 200:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else body
        print(f"footfall: {url} answered {answer.status_code}: {message}", file=sys.stderr)
        return 2
    print(json.dumps(body["data"], indent=2, sort_keys=True))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    return _call(args, "POST", "/api/v1/replication/promote")


def cmd_replication_status(args: argparse.Namespace) -> int:
    return _call(args, "GET", "/api/v1/replication/status")


def add_standby_commands(commands, common: argparse.ArgumentParser) -> None:
    for name, func, text in (
        ("promote", cmd_promote, "turn the running standby into the primary"),
        ("replication-status", cmd_replication_status, "a running server's replication role and lag"),
    ):
        sub = commands.add_parser(name, parents=[common], help=text)
        sub.add_argument("--url", help="the server (default: this host, at the [server] port setting)")
        sub.add_argument("--port", type=int, help="default: the [server] port setting")
        sub.add_argument("--token", required=True, help="an admin API key or token")
        sub.set_defaults(func=func)
