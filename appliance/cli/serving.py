"""Serving: ``footfall serve`` (first-start bootstrap, then granian around ``web.app:make_app``)
and ``footfall health`` (probes a running server's readiness, ``/ready``, at the address and
scheme the settings give: the container's health check).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import signal
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

from appliance.cli.demo import fill_demo_site
from appliance.config import ConfigError, Settings, load_settings
from appliance.heap import SERVER_MMAP_THRESHOLD
from appliance.operations.backups import BackupError
from appliance.operations.following import promoted_at, refusal_to_follow
from appliance.operations.seeding import needs_seed, seed_standby
from appliance.runtime.appliance import Appliance
from appliance.runtime.ownership import SERVER_ROLE
from appliance.runtime.records import open_store

FIRST_PASSWORD_FILE = "first-admin-password.txt"
DEMO_SITE = "localhost"
BOOTSTRAP_LOCK_WAIT_SECONDS = 5.0  # a server that was just stopped may still be closing


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, data_dir=args.data)


WORKER_KILL_SECONDS = 8  # inside `docker stop`'s 10 s grace period, with granian's own exit after it


def event_loop() -> str:
    """The served worker's event loop: ``GRANIAN_LOOP`` when set (benchmarks compare loops
    with it), else uvloop when installed (a dependency), else asyncio.

    uvloop against asyncio, alternately on one checkout (``scripts/bench_single`` and
    ``scripts/bench_paced``, 2026-12-04, load 2-8): single events at 64 connections 1.14x the
    throughput and 0.87x the server CPU per event (three rounds, medians), paced 1,000/s p99
    alone 0.84x and under dashboard reads 1.01x; see docs/architecture.md.
    """
    chosen = os.environ.get("GRANIAN_LOOP")
    if chosen:
        return chosen
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def _public_url(settings: Settings, host: str, port: int) -> str:
    if settings.server.public_url:
        return settings.server.public_url.rstrip("/")
    scheme = "https" if settings.server.tls_certificate else "http"
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"{scheme}://{shown}:{port}"


def _write_secret(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read, from the first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    path.chmod(0o600)  # an existing file keeps its mode through O_CREAT


def standby_refusal(settings: Settings) -> str:
    """Why this data dir cannot follow a primary ("" when it can): it was promoted."""
    store = open_store(settings)
    try:
        when = promoted_at(store)
    finally:
        store.close()
    return refusal_to_follow(when) if when is not None else ""


def bootstrap(settings: Settings) -> tuple[list[str], str | None]:
    """First start: an admin, and the demo site when ``settings.demo`` is on. Returns the
    lines to print (every start) and the domain to show in the tracking snippet (None when
    there is no site yet)."""
    lines = []
    data = Path(settings.data_dir)
    password_file = data / FIRST_PASSWORD_FILE
    with Appliance(settings).open(lock_wait=BOOTSTRAP_LOCK_WAIT_SECONDS, role=SERVER_ROLE) as appliance:
        users = appliance.accounts.list()
        # No admin at all (a fresh store, or only users made with `footfall user create`):
        # make one, unless the name is taken by a non-admin. The password is on disk before
        # the user exists, so a start stopped in between never leaves an admin nobody can use.
        if not any(user.role == "admin" for user in users) and appliance.accounts.get("admin") is None:
            password = secrets.token_urlsafe(12)
            _write_secret(password_file, password + "\n")
            appliance.accounts.create("admin", password, "admin")
            lines.append("Created the first admin user.")
        if settings.demo and appliance.sites.get(DEMO_SITE) is None:
            demo_site = appliance.sites.add(DEMO_SITE, name="Demo site")
            lines.append(f"Created the demo site '{DEMO_SITE}'.")
            if settings.demo_days > 0:
                report = fill_demo_site(appliance, demo_site, days=settings.demo_days)
                lines.append(
                    f"Filled it with {settings.demo_days} days of generated traffic "
                    f"({report.visits} visits, {report.events} events, {report.seconds} s)."
                )
        sites = appliance.sites.all()
        demo = appliance.sites.get(DEMO_SITE) if settings.demo else None
        snippet_site = demo.domain if demo else (sites[0].domain if sites else None)
    if password_file.exists():
        lines.append(f"Admin login: admin / {password_file.read_text().strip()}")
        lines.append(f"  (stored in {password_file}; delete the file once you have changed it)")
    else:
        lines.append("Admin login: your existing admin user.")
    if not sites:
        lines.append("No sites yet. Add one in the dashboard (Sites, \"Add a site\") or with")
        lines.append("  footfall site add example.com --timezone Europe/Berlin")
        lines.append("  (in a container: docker exec CONTAINER footfall site add example.com)")
    return lines, snippet_site


class _Stopped(SystemExit):
    """SIGTERM or SIGINT before granian took over the signals: leave quietly, cleaning up."""


def _stop_during_start_up(signum: int, frame: object) -> None:
    print(f"footfall: {signal.Signals(signum).name} during start-up: stopping", file=sys.stderr, flush=True)
    raise _Stopped(0)


def cmd_serve(args: argparse.Namespace) -> int:
    # First of all: a container's PID 1 ignores SIGTERM unless it has a handler, and the
    # bootstrap (a first admin, perhaps demo traffic) and granian's start take seconds. The
    # exception unwinds through the open appliance (its lock and LMDB close cleanly). granian
    # installs its own handlers once it starts and stops the worker gracefully.
    signal.signal(signal.SIGTERM, _stop_during_start_up)
    signal.signal(signal.SIGINT, _stop_during_start_up)
    if getattr(args, "follow", None):  # the granian worker reads its settings from the environment
        os.environ["FOOTFALL_REPLICATION_FOLLOW"] = args.follow
    if getattr(args, "token", None):
        os.environ["FOOTFALL_REPLICATION_TOKEN"] = args.token
    settings = _settings(args)
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    if settings.replication.follow and needs_seed(settings.data_dir):  # a new standby: seed it if need be
        try:
            manifest = seed_standby(settings.data_dir, settings.replication.follow, settings.replication.token)
        except BackupError as error:
            print(f"footfall: could not seed this standby: {error}", file=sys.stderr)
            return 2
        if manifest is not None:
            print(f"Seeded from a copy of the primary's store ({manifest['event_count']} events); following from there")
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    if settings.replication.follow and (refused := standby_refusal(settings)):
        print(f"footfall: {refused}", file=sys.stderr)
        return 2
    if settings.replication.follow:  # a standby gets its users and sites from the primary
        lines = [f"Following {settings.replication.follow} as a read-only standby (footfall promote takes over)"]
        snippet_site = None
    else:
        lines, snippet_site = bootstrap(settings)
    for line in lines:
        print(line)
    url = _public_url(settings, host, port)
    print("Tracking snippet for your pages:")
    print(f'  <script defer src="{url}/js/footfall.js" data-site="{snippet_site or "YOUR-DOMAIN"}"></script>')
    print(f"Dashboard: {url}/   API schema: {url}/schema   Health: {url}/api/v1/health")
    sys.stdout.flush()

    os.environ["FOOTFALL_DATA_DIR"] = str(Path(settings.data_dir).resolve())
    if args.config:
        os.environ["FOOTFALL_CONFIG"] = str(Path(args.config).resolve())
    # Replace this process with a lean granian: the bootstrap above imported and opened the
    # whole appliance, and granian's main process (which only supervises its worker) would
    # keep all of that resident for the server's life. exec keeps the process id (a
    # container's PID 1 stays granian) and the environment; nothing of the appliance is open.
    command = [
        sys.executable, "-m", "granian", "--interface", "asgi", "--host", host, "--port", str(port),
        "--workers", "1", "--factory", "--no-access-log", "--backlog", "2048",
        # A worker that dies (the kernel's OOM killer, a crash in native code) is started
        # again, which opens the data dir and recovers from the event log as after a restart;
        # without this granian's main process stops the whole server with it.
        "--respawn-failed-workers",
        # A worker that does not stop within this many seconds of a stop signal is killed
        # (granian waits forever by default; seen once in the test suite under load, the
        # worker never began its shutdown). Every acknowledged event is already committed;
        # aggregation that was cut short is redone from the event log at the next start.
        "--workers-kill-timeout", str(WORKER_KILL_SECONDS),
        "--loop", event_loop(),
    ]
    if settings.server.tls_certificate and settings.server.tls_private_key:
        command += [
            "--ssl-certificate", str(Path(settings.server.tls_certificate)),
            "--ssl-keyfile", str(Path(settings.server.tls_private_key)),
        ]
    command.append("web.app:make_app")
    # glibc gives each thread that allocates its own malloc arena (up to 8 per core), and
    # memory freed in one is kept there: with query worker threads, numpy scans and the
    # writer, two arenas kept the heap after the query suite 0.87x as large (scripts/bench
    # --scale 0.03, one pair). Read at process start, so set before the exec; a value the
    # operator set wins.
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    # A fixed mmap threshold: glibc raises it (up to 32 MB) each time a large block is freed,
    # so a query's big numpy arrays soon come from the heap, and what they leave behind stays
    # resident. Fixed at 256 KiB they are mapped and unmapped: after the same filtered queries
    # over the seed's month, anonymous memory 257 against 411 MB (bench_filters data, in process, one pair).
    # Compaction's helper process is started without it (appliance.heap.helper_environment).
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", SERVER_MMAP_THRESHOLD)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execv(sys.executable, command)
    return 0


def health_url(settings: Settings, port: int | None = None) -> str:
    """Where a server started with these settings answers its readiness check (``/ready``:
    storage writable, last commit fine), seen from the
    same host: the scheme follows the TLS settings, an all-interfaces bind is probed on the
    loopback address."""
    tls = bool(settings.server.tls_certificate and settings.server.tls_private_key)
    host = settings.server.host
    if host in ("", "0.0.0.0", "localhost"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port or settings.server.port}/ready"


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the server answers 200 with status ok, 1 otherwise (what Docker's
    HEALTHCHECK wants: it reserves 2). The certificate is not verified: this asks a local
    server whether it is up, not who it is, and its certificate names the public host."""
    try:
        url = args.url or health_url(_settings(args), args.port)
    except ConfigError as error:
        print(f"unhealthy: {error}")
        return 1
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=args.timeout, context=context) as response:
            code, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        code, body = error.code, error.read()
    except (OSError, ValueError) as error:
        print(f"unhealthy: {url}: {getattr(error, 'reason', None) or error}")
        return 1
    try:
        report = json.loads(body)
    except ValueError:
        report = {}
    status = report.get("status", "?") if isinstance(report, dict) else "?"
    last_error = report.get("last_error") if isinstance(report, dict) else None
    healthy = code == 200 and status == "ok"
    detail = f" ({last_error})" if last_error else ""
    print(f"{'healthy' if healthy else 'unhealthy'}: {url} answered {code}, status {status}{detail}")
    return 0 if healthy else 1
