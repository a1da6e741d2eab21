"""Every hook spec is documented and exercised; the plugin manager validates and disables plugins.

As in Datasette's ``tests/test_docs.py``: adding a hook spec without a docstring, or without
teaching the fixture plugin (``conftest.RecordingPlugin``) to implement it and a test to fire
it, fails here.
"""

from __future__ import annotations

import inspect
import sys
import textwrap

import pluggy
import pytest

from appliance.hooks import specs as hookspecs
from appliance.hooks.manager import DEFAULT_PLUGINS, make_plugin_manager, short_name
from appliance.ingest.drafts import Dropped, draft_from_collect_body
from appliance.models import CollectBody, Event, RequestContext

RECEIVED_AT = 1_772_380_800.0  # 2026-03-01T16:00:00Z
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"


def hook_specs() -> dict[str, object]:
    manager = pluggy.PluginManager("footfall")
    return {
        name: function
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if manager.parse_hookspec_opts(hookspecs, name) is not None
    }


SPECS = hook_specs()


def test_the_hook_specs_are_the_ones_this_module_knows():
    assert set(SPECS) >= {"startup", "shutdown", "filter_event", "enrich_event", "events_committed"}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hook_spec_documents_its_arguments_and_return(name):
    function = SPECS[name]
    doc = inspect.getdoc(function)
    assert doc, f"hook spec {name} has no docstring"
    summary = doc.splitlines()[0]
    assert len(summary) > 20, f"{name}: the first line should say what the hook is for"
    for argument in inspect.signature(function).parameters:
        assert f":param {argument}:" in doc, f"{name}: argument {argument!r} is not documented"
    assert ":return:" in doc or "Return value is ignored" in doc, f"{name}: return contract missing"
    options = pluggy.PluginManager("footfall").parse_hookspec_opts(hookspecs, name)
    if options.get("firstresult"):
        assert "firstresult" in doc, f"{name}: say that the first non-None answer wins"


def test_the_fixture_plugin_implements_every_hook_spec(recording_plugin):
    manager = pluggy.PluginManager("footfall")
    manager.add_hookspecs(hookspecs)
    manager.register(recording_plugin, name="recording")
    manager.check_pending()

    implemented = {caller.name for caller in manager.get_hookcallers(recording_plugin)}
    assert implemented == set(SPECS)


def test_every_hook_is_called_over_an_appliances_life(make_appliance, recording_plugin):
    appliance = make_appliance(plugins=[recording_plugin])
    assert [name for name, _ in recording_plugin.calls] == [
        "startup", "register_exporters", "register_notifiers", "register_backup_targets",
        "register_alert_kinds",
    ]
    assert recording_plugin.called("startup")[0]["appliance"] is appliance
    site = appliance.sites.add("hooks.example")
    context = RequestContext(client_ip="198.51.100.4", user_agent=BROWSER, received_at=RECEIVED_AT)
    draft = draft_from_collect_body(CollectBody(k="pageview", u="https://hooks.example/pricing"))

    event = appliance.pipeline.process(draft, context)
    appliance.record_sync([event])
    appliance.close()

    [filtered] = recording_plugin.called("filter_event")
    assert filtered["context"] is context
    assert isinstance(filtered["event"], Event) and filtered["event"].site_id == site.id
    [enriched] = recording_plugin.called("enrich_event")
    assert enriched["event"].path == "/pricing"
    [committed] = recording_plugin.called("events_committed")
    assert committed["appliance"] is appliance
    assert committed["events"] == [event]
    assert recording_plugin.called("shutdown")[0]["appliance"] is appliance
    assert [name for name, _ in recording_plugin.calls][-1] == "shutdown"
    # A new hook spec without a test that fires it fails here.
    assert recording_plugin.hooks_called == set(SPECS)


def test_a_filter_reason_drops_the_event_and_is_counted(make_appliance, make_recording_plugin):
    spam_filter = make_recording_plugin(drop_reason="spam")
    appliance = make_appliance(plugins=[spam_filter])
    appliance.sites.add("hooks.example")
    context = RequestContext(client_ip="198.51.100.4", user_agent=BROWSER, received_at=RECEIVED_AT)
    draft = draft_from_collect_body(CollectBody(k="pageview", u="https://hooks.example/"))

    with pytest.raises(Dropped) as dropped:
        appliance.pipeline.process(draft, context)

    assert dropped.value.reason == "spam"
    assert appliance.pipeline.drop_counts()["spam"] == 1
    assert spam_filter.called("enrich_event") == []  # dropped before enrichment


def test_an_enricher_sets_fields_and_the_later_plugin_wins(make_appliance, make_recording_plugin):
    first = make_recording_plugin(enrich={"country": "FR", "language": "fr"})
    second = make_recording_plugin(enrich={"country": "DE"})
    appliance = make_appliance(plugins=[first, second], plugins_disabled="geo")
    appliance.sites.add("hooks.example")
    context = RequestContext(client_ip="198.51.100.4", user_agent=BROWSER, received_at=RECEIVED_AT)
    draft = draft_from_collect_body(CollectBody(k="pageview", u="https://hooks.example/"))

    event = appliance.pipeline.process(draft, context)

    assert (event.country, event.language) == ("DE", "fr")


# -- the plugin manager ------------------------------------------------------------------


def write_plugin(directory, name: str, source: str):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def plugin_modules():
    """Forget modules the plugin manager loads from a plugins folder."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("footfall_plugin_"):
            del sys.modules[name]


def test_check_pending_refuses_a_misspelled_hook(tmp_path, plugin_modules):
    write_plugin(
        tmp_path / "plugins",
        "typo_plugin",
        """
        from appliance.hooks.specs import hookimpl

        @hookimpl
        def enrich_evnt(event, context):
            return {"country": "XX"}
        """,
    )

    with pytest.raises(pluggy.PluginValidationError, match="enrich_evnt"):
        make_plugin_manager(directory=str(tmp_path / "plugins"))


def test_a_plugin_from_the_plugins_folder_is_registered(tmp_path, plugin_modules):
    write_plugin(
        tmp_path / "plugins",
        "folder_plugin",
        """
        from appliance.hooks.specs import hookimpl

        @hookimpl
        def filter_event(event, context):
            return None
        """,
    )

    manager = make_plugin_manager(directory=str(tmp_path / "plugins"))

    plugin = manager.get_plugin("folder_plugin")
    assert plugin is not None
    assert [caller.name for caller in manager.get_hookcallers(plugin)] == ["filter_event"]


def test_disabled_plugins_are_not_registered(tmp_path, plugin_modules):
    write_plugin(
        tmp_path / "plugins",
        "folder_plugin",
        """
        from appliance.hooks.specs import hookimpl

        @hookimpl
        def filter_event(event, context):
            return "everything"
        """,
    )
    builtin_names = [short_name(module) for module in DEFAULT_PLUGINS]

    manager = make_plugin_manager(
        disabled=["geo", "bots", "folder_plugin"], directory=str(tmp_path / "plugins")
    )

    registered = {name for name, plugin in manager.list_name_plugin() if plugin is not None}
    assert (
        "geo" not in registered and "bots" not in registered and "folder_plugin" not in registered
    )
    assert registered >= set(builtin_names) - {"geo", "bots"}
    assert manager.is_blocked("geo")
    assert all(
        getattr(impl.plugin, "__name__", "") not in ("plugins.geo", "plugins.bots")
        for impl in manager.hook.enrich_event.get_hookimpls()
        + manager.hook.filter_event.get_hookimpls()
    )


def test_an_appliance_with_a_disabled_bot_filter_keeps_bot_events(make_appliance):
    appliance = make_appliance(plugins_disabled="bots")
    appliance.sites.add("hooks.example")
    crawler = RequestContext(
        client_ip="198.51.100.4",
        user_agent="Googlebot/2.1 (+http://www.google.com/bot.html)",
        received_at=RECEIVED_AT,
    )
    draft = draft_from_collect_body(CollectBody(k="pageview", u="https://hooks.example/"))

    assert appliance.plugin_manager.get_plugin("bots") is None
    assert appliance.pipeline.process(draft, crawler).path == "/"
