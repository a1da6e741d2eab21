"""Footfall's domain: config, models, plugins, the ingest pipeline, queries and the CLI.

Framework-free: nothing here imports Litestar. The web room drives an
:class:`appliance.core.Appliance` and renders what it returns.
"""
