"""Settings: one msgspec Struct tree, read from TOML, overridden by environment variables.

The appliance runs with no config file at all: every field has a default. A TOML file
(``--config FILE`` or ``FOOTFALL_CONFIG``) overrides the defaults, and environment
variables named ``FOOTFALL_<SECTION>_<SETTING>`` (or ``FOOTFALL_<SETTING>`` for top-level
settings) override both. ``config.example.toml`` documents every setting.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import msgspec


class ServerSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8000
    tls_certificate: str = ""
    tls_private_key: str = ""
    trusted_proxies: list[str] = []
    public_url: str = ""
    switch_interval_ms: float = 1.0


class IngestSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    max_body_bytes: int = 1_048_576
    max_batch_items: int = 1000
    commit_interval_ms: int = 0
    commit_max_events: int = 5000
    aggregate_interval_ms: int = 1000
    aggregate_max_events: int = 20000
    aggregate_slice_events: int = 100
    intake: bool = True  # commits to an LMDB environment of their own, folded beside them (storage/intake.py)
    tracker_first: bool = True  # folds step aside while a tracker request is in flight (appliance/tracker_first.py)
    clock_skew_seconds: int = 300
    rate_limit_per_ip: int = 0
    rate_limit_per_site: int = 0
    rate_limit_burst_seconds: int = 10


class StorageSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    initial_map_mb: int = 64
    grow_when_percent_full: int = 75
    min_free_disk_mb: int = 64
    readahead: bool = True  # off: fewer pages resident while loading, slower first scans (storage/environment.py)
    compaction_helper: bool = True  # large days built in a process of their own (appliance/events/compaction_build.py)


class LiveSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    ring_size: int = 2000


class QuerySettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    time_budget_seconds: float = 10.0
    background_seconds: float = 30.0
    background_finishers: int = 1
    background_workers: int = 1
    computing_requests: int = 1  # requests computing at once; 0: no limit (appliance/turns.py)

    def __post_init__(self) -> None:
        if self.background_seconds < 0 or self.background_finishers < 0:
            raise ValueError("background_seconds and background_finishers must be 0 or more")
        if self.background_workers < 1:
            raise ValueError("background_workers must be 1 or more")
        if self.computing_requests < 0:
            raise ValueError("computing_requests must be 0 or more")


class AuthSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    token_ttl_seconds: int = 86_400
    min_password_length: int = 10
    session_idle_seconds: int = 604_800
    session_max_seconds: int = 2_592_000
    login_burst_per_ip: int = 20
    login_rate_per_ip_per_minute: int = 20
    login_burst_per_username: int = 5
    login_rate_per_username_per_minute: int = 6


class PluginSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    disabled: list[str] = []
    directory: str = ""
    # Each plugin's own table, ``[plugins.NAME]`` in the file, ``FOOTFALL_PLUGIN_NAME_KEY`` in
    # the environment: whatever keys the plugin documents (read with Appliance.plugin_settings).
    tables: dict[str, dict[str, Any]] = {}


class SiteDefaults(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    retention_days: int = 400
    visit_timeout_minutes: int = 30
    max_open_visits: int = 500_000
    max_dimension_values: int = 20_000
    timezone: str = "UTC"


class ReportSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    check_interval_seconds: float = 60.0
    retry_base_seconds: float = 60.0
    max_attempts: int = 6
    test_clock_file: str = ""  # TEST ONLY: the scheduler's "now" is read from this file


class BackupSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = False
    directory: str = ""
    interval_hours: int = 24
    keep_daily: int = 7
    keep_weekly: int = 4
    targets: list[str] = []


class ObservabilitySettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    log_format: str = "text"
    log_level: str = "info"
    metrics_bind: str = ""

    def __post_init__(self) -> None:
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log_format must be text or json, not {self.log_format!r}")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError(f"log_level must be debug, info, warning or error, not {self.log_level!r}")
        if self.metrics_bind and not self.metrics_bind.rpartition(":")[2].isdigit():
            raise ValueError(f"metrics_bind must be host:port, not {self.metrics_bind!r}")


class ReplicationSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    follow: str = ""  # a primary's URL: this server is its standby (read-only) until promoted
    token: str = ""  # an admin API key of the primary (standby side)
    journal_hours: int = 72  # how long the primary keeps rows for a standby to pull
    batch_events: int = 2000  # rows per pull
    poll_wait_seconds: float = 10.0  # a pull with nothing new waits this long on the primary
    sync: bool = False  # primary: acknowledge an event only once the standby holds it
    sync_timeout_ms: int = 2000  # ...or after this long (then the event is acknowledged anyway)
    journal_always: bool = False  # primary: keep the journal even while no standby attached


class MemorySettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    budget_mb: int = 160  # every cache together (appliance/memory.py splits it)
    release_unused_seconds: float = 120.0  # cached blocks unused this long are let go (sketches after 30 s at most); 0: never

    def __post_init__(self) -> None:
        if self.release_unused_seconds < 0:
            raise ValueError("release_unused_seconds must be 0 or more")


class AlertSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    check_interval_seconds: int = 60
    delivery_attempts: int = 3
    delivery_backoff_seconds: float = 2.0
    allow_test_clock: bool = False


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    data_dir: str = "./data"
    demo: bool = False  # ./scripts/run turns it on; a production install starts empty
    demo_days: int = 90
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    ingest: IngestSettings = msgspec.field(default_factory=IngestSettings)
    storage: StorageSettings = msgspec.field(default_factory=StorageSettings)
    live: LiveSettings = msgspec.field(default_factory=LiveSettings)
    query: QuerySettings = msgspec.field(default_factory=QuerySettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    plugins: PluginSettings = msgspec.field(default_factory=PluginSettings)
    replication: ReplicationSettings = msgspec.field(default_factory=ReplicationSettings)
    sites: SiteDefaults = msgspec.field(default_factory=SiteDefaults)
    reports: ReportSettings = msgspec.field(default_factory=ReportSettings)
    backup: BackupSettings = msgspec.field(default_factory=BackupSettings)
    observability: ObservabilitySettings = msgspec.field(default_factory=ObservabilitySettings)
    memory: MemorySettings = msgspec.field(default_factory=MemorySettings)
    alerts: AlertSettings = msgspec.field(default_factory=AlertSettings)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


PLUGIN_ENV_PREFIX = "FOOTFALL_PLUGIN_"


class ConfigError(ValueError):
    """The config file or an environment override names an unknown setting or a bad value."""


def _environment_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """Turn ``FOOTFALL_SECTION_SETTING`` variables into a nested dict of raw strings."""
    overrides: dict[str, Any] = {}
    sections = {
        field.name: {inner.name for inner in msgspec.structs.fields(field.type)}
        for field in msgspec.structs.fields(Settings)
        if isinstance(field.type, type) and issubclass(field.type, msgspec.Struct)
    }
    top_level = {f.name for f in msgspec.structs.fields(Settings)} - set(sections)
    for key, value in environ.items():
        if not key.startswith("FOOTFALL_") or key == "FOOTFALL_CONFIG":
            continue
        if key.startswith(PLUGIN_ENV_PREFIX):
            plugin, _, setting = key.removeprefix(PLUGIN_ENV_PREFIX).lower().partition("_")
            if not plugin or not setting:
                raise ConfigError(f"{key}: write {PLUGIN_ENV_PREFIX}<PLUGIN>_<SETTING>")
            tables = overrides.setdefault("plugins", {}).setdefault("tables", {})
            tables.setdefault(plugin, {})[setting] = value
            continue
        name = key.removeprefix("FOOTFALL_").lower()
        if name in top_level:
            overrides[name] = value
            continue
        for section, settings in sections.items():
            prefix = section + "_"
            if name.startswith(prefix) and name.removeprefix(prefix) in settings:
                overrides.setdefault(section, {})[name.removeprefix(prefix)] = value
                break
        else:
            raise ConfigError(f"{key}: no such setting")
    return overrides


def _plugin_tables(raw: dict[str, Any]) -> dict[str, Any]:
    """``[plugins.NAME]`` tables of the file go under ``plugins.tables``."""
    plugins = raw.get("plugins")
    if not isinstance(plugins, dict):
        return raw
    known = {field.name for field in msgspec.structs.fields(PluginSettings)}
    tables = {name: plugins.pop(name) for name in list(plugins) if name not in known and isinstance(plugins[name], dict)}
    if tables:
        plugins["tables"] = _merge(plugins.get("tables", {}), tables)
    return raw


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _coerce_strings(raw: dict[str, Any], struct_type: type) -> dict[str, Any]:
    """Environment values are strings: convert them to each field's declared type."""
    fields = {f.name: f for f in msgspec.structs.fields(struct_type)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        field = fields.get(key)
        if field is None:
            out[key] = value
        elif isinstance(value, dict):
            is_section = isinstance(field.type, type) and issubclass(field.type, msgspec.Struct)
            out[key] = _coerce_strings(value, field.type) if is_section else value
        elif isinstance(value, str) and field.type is not str:
            if field.type is bool:
                out[key] = value.strip().lower() in {"1", "true", "yes", "on"}
            elif field.type in (int, float):
                try:
                    out[key] = field.type(value)
                except ValueError:
                    kind = "an integer" if field.type is int else "a number"
                    raise ConfigError(f"{key}: expected {kind}, got {value!r}") from None
            else:  # list[str]
                out[key] = [item.strip() for item in value.split(",") if item.strip()]
        else:
            out[key] = value
    return out


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    *,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from defaults, an optional TOML file, the environment and overrides.

    ``overrides`` are top-level settings given on the command line (``data_dir=...``); they
    win over everything else.
    """
    environ = dict(os.environ if environ is None else environ)
    config_file = config_file or environ.get("FOOTFALL_CONFIG") or None
    raw: dict[str, Any] = {}
    if config_file:
        try:
            raw = tomllib.loads(Path(config_file).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {config_file}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{config_file}: {error}") from None
    raw = _merge(_plugin_tables(raw), _coerce_strings(_environment_overrides(environ), Settings))
    raw = _merge(raw, {key: value for key, value in overrides.items() if value is not None})
    try:
        return msgspec.convert(raw, Settings)
    except msgspec.ValidationError as error:
        raise ConfigError(str(error)) from None
