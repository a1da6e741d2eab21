"""The web room: the only code that imports Litestar.

The app factory (:mod:`web.app`) and its dependencies (:mod:`web.dependencies`); the ingest
endpoints as lean raw ASGI handlers on the hot path; the JSON API and the OpenAPI schema; the
guards, logins and sessions; and the server-rendered htmx dashboard with its site pages,
definitions pages, admin pages and live view. Templates and static files (the tracker
included) live beside it.
"""
