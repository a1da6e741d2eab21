"""Footfall's domain, framework-free: nothing here imports Litestar.

Rooms, with imports flowing one way (a module imports only from rooms above it in this list):

- leaves — ``errors``, ``budget``, ``config``, ``models``, ``dimensions``, ``channels``,
  ``periods``, ``filters``, ``ratelimit``, ``sites``: vocabulary every other room shares;
- ``hooks`` — the plugin hook specifications and the plugin manager;
- ``events`` — the stored event log as a read model: the row codec, column blocks, frames,
  rebuilt visits;
- ``accounts`` — users, credentials, permissions, the audit log;
- ``definitions`` — goals, funnels, segments and their back-fills;
- ``query`` — the stats vocabulary over counters, materialised segments and scans;
- ``ingest`` — the pipeline, visitor ids, open visits, the writer, the aggregation step, the
  live buffer;
- ``runtime`` — the :class:`~appliance.runtime.appliance.Appliance` that composes the parts,
  and the background jobs;
- ``cli`` — the ``footfall`` command.

Plugins write ``from appliance import hookimpl``.
"""

from appliance.hooks.specs import hookimpl

__all__ = ["hookimpl"]
