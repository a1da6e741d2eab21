"""Footfall's built-in plugins: the bot filter, user-agent parsing, referrer and channel
classification, and geolocation. Each module is a small set of ``@hookimpl`` functions, listed
in :data:`appliance.hooks.manager.DEFAULT_PLUGINS` and registered through the same plugin manager as
third-party plugins, so any of them can be disabled by name or replaced by an outside plugin.
"""
