"""The plugin manager: built-ins from ``DEFAULT_PLUGINS``, third parties from entry points.

One manager per :class:`appliance.runtime.appliance.Appliance` (never a module global), so tests can run
several appliances with different plugins side by side. Plugins are disabled by name in
config (``[plugins] disabled = ["geo"]``). Third-party plugins come from the ``footfall``
entry-point group and from ``*.py`` files in ``[plugins] directory``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import operator
import sys
from collections.abc import Sequence
from pathlib import Path

import pluggy

from appliance.hooks import specs as hookspecs

log = logging.getLogger(__name__)

DEFAULT_PLUGINS: tuple[str, ...] = (
    "plugins.bots",
    "plugins.useragent",
    "plugins.referrers",
    "plugins.geo",
    "plugins.csv_export",
    "plugins.json_export",
    "plugins.pdf_export",
    "plugins.notify_apprise",
    "plugins.backups",
    "plugins.alert_kinds",
)
ENTRY_POINT_GROUP = "footfall"


def short_name(module_name: str) -> str:
    return module_name.rsplit(".", 1)[-1]


def make_plugin_manager(
    disabled: list[str] | tuple[str, ...] = (), directory: str = "", extra: Sequence[object] = ()
) -> pluggy.PluginManager:
    """Built-in plugins, then entry-point plugins, then ``*.py`` files of ``directory``, then
    ``extra`` plugin objects (tests, embedding applications); ``disabled`` names are blocked."""
    manager = pluggy.PluginManager("footfall")
    manager.add_hookspecs(hookspecs)
    blocked = set(disabled)
    for name in blocked:
        manager.set_blocked(name)
    for module_name in DEFAULT_PLUGINS:
        name = short_name(module_name)
        if name in blocked:
            continue
        manager.register(importlib.import_module(module_name), name=name)
    manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    if directory:
        for path in sorted(Path(directory).glob("*.py")):
            name = path.stem
            if name in blocked or manager.has_plugin(name):
                continue
            spec = importlib.util.spec_from_file_location(f"footfall_plugin_{name}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            manager.register(module, name=name)
    for plugin in extra:
        manager.register(plugin)
    manager.check_pending()
    return manager


def describe_plugins(manager: pluggy.PluginManager) -> list[dict[str, object]]:
    """Name, source and hooks of every loaded plugin (for ``footfall plugins`` and the API)."""
    described = []
    distributions = {id(plugin): dist for plugin, dist in manager.list_plugin_distinfo()}
    for name, plugin in sorted(manager.list_name_plugin(), key=lambda pair: pair[0]):
        if plugin is None:
            continue
        dist = distributions.get(id(plugin))
        hooks = sorted(caller.name for caller in manager.get_hookcallers(plugin) or [])
        described.append(
            {
                "name": name,
                "builtin": getattr(plugin, "__name__", "") in DEFAULT_PLUGINS,
                "package": f"{dist.project_name} {dist.version}" if dist else None,
                "hooks": hooks,
            }
        )
    return described


def hot_path_calls(hook_caller, positional: tuple[str, ...] | None = None) -> list | None:
    """A hook's implementations in pluggy's call order, as plain ``f(**kwargs)`` callables,
    or, given the hook's argument names in an order (``positional``), as ``f(*args)``
    callables taking them in that order (an implementation that names them in that order is
    called as it is: no wrapper, no keyword dict per call).

    The ingest hooks run for every event; calling the implementations directly skips
    pluggy's per-call bookkeeping (a few microseconds). Returns ``None`` when an
    implementation is a wrapper, in which case the caller must go through pluggy.
    """
    implementations = hook_caller.get_hookimpls()
    if any(impl.hookwrapper or getattr(impl, "wrapper", False) for impl in implementations):
        return None
    calls = []
    for impl in reversed(implementations):  # pluggy calls the last registered first
        names = tuple(impl.argnames)
        if positional is None:
            calls.append(_direct_call(impl.function, names))
        else:
            calls.append(_positional_call(impl.function, tuple(positional.index(name) for name in names),
                                          len(positional)))
    return calls


def _positional_call(function, places: tuple[int, ...], arity: int):
    """``function`` as ``f(*args)``: passed the arguments at ``places`` of ``arity`` given."""
    if places == tuple(range(arity)):
        return function
    if not places:
        return lambda *args: function()
    if len(places) == 1:
        (place,) = places
        return lambda *args: function(args[place])
    pick = operator.itemgetter(*places)
    return lambda *args: function(*pick(args))


def _direct_call(function, names: tuple[str, ...]):
    """``function`` as ``f(**kwargs)``, passing it the arguments it names, in its order (one
    ``itemgetter`` call picks them all: the ingest hooks run for every event)."""
    if not names:
        return lambda **kwargs: function()
    if len(names) == 1:
        (name,) = names
        return lambda **kwargs: function(kwargs[name])
    pick = operator.itemgetter(*names)
    return lambda **kwargs: function(*pick(kwargs))
