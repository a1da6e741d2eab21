"""A records-only session: sites, accounts and the audit log, without the event path.

``footfall user|site add|site list|apikey|audit|plugins`` open this instead of a full
:class:`~appliance.runtime.appliance.Appliance`, so they can run beside a server that owns
the data dir (see :mod:`appliance.runtime.ownership`). It opens the LMDB file and nothing
else: it never replays or aggregates ``pending`` events, starts no writer and no jobs, calls
no plugin hook, and never touches counters, sketches or the event log. LMDB serialises its
few writes with the server's; every write of a site bumps the records generation, so a
running server reloads its cached sites at once (see :class:`appliance.sites.SiteRegistry`);
users and API keys are read from LMDB on every request anyway.
"""

from __future__ import annotations

from pathlib import Path

from appliance.accounts.audit import AuditLog
from appliance.accounts.users import Accounts
from appliance.config import Settings
from appliance.sites import SiteRegistry
from storage import Store
from storage.records import Records


def open_store(settings: Settings) -> Store:
    data = Path(settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    return Store(
        data / "footfall.lmdb",
        initial_map_bytes=settings.storage.initial_map_mb << 20,
        grow_when_fraction=settings.storage.grow_when_percent_full / 100,
        min_free_disk_bytes=settings.storage.min_free_disk_mb << 20,
    )


class RecordsSession:
    """``with RecordsSession(settings) as session``: ``session.sites``, ``.accounts``,
    ``.audit`` and (loaded on first use) ``.plugin_manager``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self._plugin_manager = None

    def open(self) -> RecordsSession:
        settings = self.settings
        self.store = open_store(settings)
        try:
            self.records = Records(self.store)
            self.sites = SiteRegistry(
                self.store, self.records, settings.sites.timezone, settings.sites.retention_days
            )
            self.accounts = Accounts(
                self.store,
                self.records,
                min_password_length=settings.auth.min_password_length,
                token_ttl_seconds=settings.auth.token_ttl_seconds,
                session_idle_seconds=settings.auth.session_idle_seconds,
                session_max_seconds=settings.auth.session_max_seconds,
            )
            self.audit = AuditLog(self.store, self.records)
        except BaseException:
            self.close()
            raise
        return self

    @property
    def plugin_manager(self):
        """The plugins a server on this data dir would load (no hook is called)."""
        if self._plugin_manager is None:
            from appliance.hooks.manager import make_plugin_manager

            directory = self.settings.plugins.directory
            default = Path(self.settings.data_dir) / "plugins"
            if not directory and default.is_dir():
                directory = str(default)
            self._plugin_manager = make_plugin_manager(self.settings.plugins.disabled, directory)
        return self._plugin_manager

    def close(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            store.close()

    def __enter__(self) -> RecordsSession:
        return self.open() if self.store is None else self

    def __exit__(self, *exc) -> None:
        self.close()
