"""The web room: the only code that imports Litestar.

App factory, ingest endpoints (lean ASGI handlers on the hot path), the JSON API, auth guards,
and later the htmx dashboard. Templates and static files (the tracker) live beside it.
"""
