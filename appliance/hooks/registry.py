"""What plugins registered beyond the ingest hooks: exporters, notifiers, backup targets and
alert kinds, collected once when the appliance opens (``Appliance.extensions``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pluggy

from appliance.errors import DomainError
from appliance.extensions import AlertKind, BackupTarget, Exporter, Notifier


@dataclass
class Extensions:
    exporters: dict[str, Exporter] = field(default_factory=dict)
    notifiers: list[Notifier] = field(default_factory=list)
    backup_targets: dict[str, BackupTarget] = field(default_factory=dict)
    alert_kinds: dict[str, AlertKind] = field(default_factory=dict)

    def exporter(self, name: str) -> Exporter:
        """The exporter called ``name``; a 422 naming ``format`` when there is none."""
        try:
            return self.exporters[name]
        except KeyError:
            known = ", ".join(sorted(self.exporters)) or "none"
            raise DomainError("format", f"unknown export format {name!r} (known: {known})", 422) from None

    def notifier_for(self, url: str) -> Notifier:
        """The notifier for a destination URL: one naming its scheme, else a catch-all."""
        scheme = urlsplit(url).scheme.lower()
        for notifier in self.notifiers:
            if scheme and scheme in notifier.schemes:
                return notifier
        for notifier in self.notifiers:
            if "*" in notifier.schemes:
                return notifier
        raise DomainError("url", f"no notifier handles {scheme or 'this'} URLs", 422)

    def alert_kind(self, name: str) -> AlertKind:
        """The alert kind called ``name``; a 422 naming ``kind`` when there is none."""
        try:
            return self.alert_kinds[name]
        except KeyError:
            known = ", ".join(sorted(self.alert_kinds)) or "none"
            raise DomainError("kind", f"unknown alert kind {name!r} (known: {known})", 422) from None


def collect_extensions(manager: pluggy.PluginManager, appliance: object) -> Extensions:
    """Ask every plugin once; later registrations replace earlier ones of the same name."""
    found = Extensions()
    hook = manager.hook
    for batch in reversed(hook.register_exporters(appliance=appliance)):
        for exporter in batch or ():
            found.exporters[exporter.name] = exporter
    for batch in reversed(hook.register_notifiers(appliance=appliance)):
        found.notifiers.extend(batch or ())
    for batch in reversed(hook.register_backup_targets(appliance=appliance)):
        for target in batch or ():
            found.backup_targets[target.name] = target
    for batch in reversed(hook.register_alert_kinds(appliance=appliance)):
        for kind in batch or ():
            found.alert_kinds[kind.name] = kind
    return found
