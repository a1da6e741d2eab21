"""The ``footfall`` command: serve, users, sites, API keys, plugins, demo data, audit."""
