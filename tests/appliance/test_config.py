"""Settings loading, and ``config.example.toml`` documenting every setting with its default."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import msgspec
import pytest

from appliance.config import ConfigError, Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "config.example.toml"

KEY_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=")
SECTION_LINE = re.compile(r"^\[([A-Za-z_][A-Za-z0-9_.]*)\]\s*(#.*)?$")
PLUGIN_TABLES = "plugins.tables"  # a container of the plugins' own tables, not one setting


def _is_section(field: msgspec.structs.FieldInfo) -> bool:
    return isinstance(field.type, type) and issubclass(field.type, msgspec.Struct)


def all_settings() -> list[tuple[str | None, str, msgspec.structs.FieldInfo]]:
    """Every leaf setting as (section or None for top-level, key, field)."""
    leaves: list[tuple[str | None, str, msgspec.structs.FieldInfo]] = []
    for field in msgspec.structs.fields(Settings):
        if _is_section(field):
            for inner in msgspec.structs.fields(field.type):
                if dotted(field.name, inner.name) != PLUGIN_TABLES:
                    leaves.append((field.name, inner.name, inner))
        else:
            leaves.append((None, field.name, field))
    return leaves


def dotted(section: str | None, key: str) -> str:
    return key if section is None else f"{section}.{key}"


def env_name(section: str | None, key: str) -> str:
    return f"FOOTFALL_{key}".upper() if section is None else f"FOOTFALL_{section}_{key}".upper()


def documented_keys() -> dict[str, list[str]]:
    """``section.key`` -> the comment lines directly above it in the example file."""
    comments: dict[str, list[str]] = {}
    section: str | None = None
    block: list[str] = []
    for line in EXAMPLE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped)
            continue
        if match := SECTION_LINE.match(stripped):
            section = match.group(1)
        elif (match := KEY_LINE.match(line)) and not (section or "").startswith("plugins."):
            comments[dotted(section, match.group(1))] = block
        block = []
    return comments


def parsed_example_keys() -> set[str]:
    data = tomllib.loads(EXAMPLE.read_text())
    keys = set()
    for name, value in data.items():
        if isinstance(value, dict):
            # a plugin's own table ([plugins.NAME]) is the plugin's to document
            keys.update(f"{name}.{inner}" for inner, setting in value.items() if not isinstance(setting, dict))
        else:
            keys.add(name)
    return keys


SETTINGS = all_settings()
SETTING_IDS = [dotted(section, key) for section, key, _ in SETTINGS]


# -- the example file -------------------------------------------------------------------


def test_example_loads_to_exact_defaults():
    loaded = load_settings(EXAMPLE, environ={})
    assert loaded.plugins.tables == {"geo": {"city_database": ""}, "backups": {"directory": ""}}  # the example plugin tables
    loaded.plugins.tables = {}
    assert loaded == Settings()


def test_plugin_tables_come_from_the_file_and_the_environment(tmp_path):
    config = tmp_path / "footfall.toml"
    config.write_text('[plugins]\ndisabled = ["bots"]\n\n[plugins.slack_alerts]\nchannel = "#stats"\nlimit = 5\n')
    settings = load_settings(
        config, environ={"FOOTFALL_PLUGIN_GEO_CITY_DATABASE": "/data/city.mmdb", "FOOTFALL_PLUGIN_SLACK_LIMIT": "7"}
    )
    assert settings.plugins.disabled == ["bots"]
    assert settings.plugins.tables == {
        "slack_alerts": {"channel": "#stats", "limit": 5},
        "geo": {"city_database": "/data/city.mmdb"},
        "slack": {"limit": "7"},  # the first word after FOOTFALL_PLUGIN_ names the plugin
    }
    with pytest.raises(ConfigError, match="FOOTFALL_PLUGIN_"):
        load_settings(environ={"FOOTFALL_PLUGIN_GEO": "x"})


def test_the_appliance_hands_a_plugin_its_table(tmp_path):
    from appliance.runtime.appliance import Appliance

    settings = load_settings(environ={"FOOTFALL_PLUGIN_GEO_CITY_DATABASE": "/nowhere.mmdb"}, data_dir=str(tmp_path))
    appliance = Appliance(settings)
    assert appliance.plugin_settings("geo") == {"city_database": "/nowhere.mmdb"}
    assert appliance.plugin_settings("nobody") == {}


def test_no_config_at_all_gives_defaults():
    assert load_settings(environ={}) == Settings()


@pytest.mark.parametrize(("section", "key", "field"), SETTINGS, ids=SETTING_IDS)
def test_example_documents_every_setting(section, key, field):
    assert dotted(section, key) in parsed_example_keys(), (
        f"{dotted(section, key)} is not documented in config.example.toml"
    )


def test_example_has_nothing_but_settings():
    assert parsed_example_keys() == set(SETTING_IDS)


def test_line_scan_finds_the_same_keys_as_tomllib():
    # Guards the comment check below: it must see every key tomllib sees.
    assert set(documented_keys()) == parsed_example_keys()


@pytest.mark.parametrize(("section", "key", "field"), SETTINGS, ids=SETTING_IDS)
def test_each_setting_has_a_comment_naming_its_env_var(section, key, field):
    comment = documented_keys().get(dotted(section, key))
    assert comment, f"{dotted(section, key)} has no comment line directly above it"
    text = " ".join(comment)
    assert re.search(rf"\b{env_name(section, key)}\b", text), (
        f"the comment above {dotted(section, key)} does not name {env_name(section, key)}"
    )
    assert "Default:" in text, f"the comment above {dotted(section, key)} gives no default"
    assert "Unit:" in text, f"the comment above {dotted(section, key)} gives no unit"


def _env_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


@pytest.mark.parametrize(("section", "key", "field"), SETTINGS, ids=SETTING_IDS)
def test_documented_env_var_is_accepted(section, key, field):
    """Each env var name the example gives is real: setting it to the default changes nothing."""
    defaults = Settings()
    default = getattr(defaults if section is None else getattr(defaults, section), key)
    environ = {env_name(section, key): _env_text(default)}
    assert load_settings(environ=environ) == defaults


# -- environment overrides --------------------------------------------------------------


def test_env_overrides_an_int_in_a_section():
    settings = load_settings(environ={"FOOTFALL_INGEST_COMMIT_INTERVAL_MS": "10"})
    assert settings.ingest.commit_interval_ms == 10
    assert settings.ingest.commit_max_events == Settings().ingest.commit_max_events


def test_env_overrides_a_top_level_setting():
    settings = load_settings(environ={"FOOTFALL_DATA_DIR": "/srv/footfall"})
    assert settings.data_dir == "/srv/footfall"
    assert settings.data_path == Path("/srv/footfall")


def test_env_list_is_comma_separated():
    settings = load_settings(environ={"FOOTFALL_PLUGINS_DISABLED": "a,b"})
    assert settings.plugins.disabled == ["a", "b"]
    settings = load_settings(environ={"FOOTFALL_PLUGINS_DISABLED": " geo , , bots "})
    assert settings.plugins.disabled == ["geo", "bots"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("false", False)],
)
def test_env_bool(text, expected):
    assert load_settings(environ={"FOOTFALL_DEMO": text}).demo is expected


def test_env_wins_over_file_and_keywords_win_over_env(tmp_path):
    config = tmp_path / "footfall.toml"
    config.write_text('data_dir = "/from/file"\n[ingest]\ncommit_interval_ms = 50\n')
    settings = load_settings(config, environ={"FOOTFALL_INGEST_COMMIT_INTERVAL_MS": "10"})
    assert settings.ingest.commit_interval_ms == 10
    assert settings.data_dir == "/from/file"
    settings = load_settings(
        config, environ={"FOOTFALL_DATA_DIR": "/from/env"}, data_dir="/from/cli"
    )
    assert settings.data_dir == "/from/cli"
    assert settings.ingest.commit_interval_ms == 50
    # A keyword given as None (an omitted command-line option) does not override.
    assert load_settings(config, environ={}, data_dir=None).data_dir == "/from/file"


def test_file_and_env_merge_within_a_section(tmp_path):
    config = tmp_path / "footfall.toml"
    config.write_text("[server]\nport = 9000\n")
    settings = load_settings(config, environ={"FOOTFALL_SERVER_HOST": "0.0.0.0"})
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 9000)


def test_footfall_config_env_names_the_file(tmp_path):
    config = tmp_path / "footfall.toml"
    config.write_text("[live]\nring_size = 7\n")
    assert load_settings(environ={"FOOTFALL_CONFIG": str(config)}).live.ring_size == 7


def test_unrelated_env_vars_are_ignored():
    assert load_settings(environ={"HOME": "/root", "FOOTFALLX": "1"}) == Settings()


@pytest.mark.parametrize("name", ["FOOTFALL_NOPE", "FOOTFALL_SERVER_NOPE", "FOOTFALL_SERVER"])
def test_unknown_env_var_is_an_error(name):
    with pytest.raises(ConfigError, match=name):
        load_settings(environ={name: "1"})


def test_env_bad_int_is_an_error():
    with pytest.raises(ConfigError, match="port"):
        load_settings(environ={"FOOTFALL_SERVER_PORT": "eighty"})


# -- config file errors -----------------------------------------------------------------


def test_unknown_key_in_a_section_is_an_error_naming_it(tmp_path):
    config = tmp_path / "footfall.toml"
    config.write_text("[ingest]\ncommit_interval_ms = 10\nbogus_setting = 1\n")
    with pytest.raises(ConfigError, match="bogus_setting"):
        load_settings(config, environ={})


def test_unknown_top_level_key_is_an_error_naming_it(tmp_path):
    config = tmp_path / "footfall.toml"
    config.write_text("bogus_setting = 1\n")
    with pytest.raises(ConfigError, match="bogus_setting"):
        load_settings(config, environ={})


def test_unknown_section_is_an_error_naming_it(tmp_path):
    config = tmp_path / "footfall.toml"
    config.write_text("[bogus_section]\nx = 1\n")
    with pytest.raises(ConfigError, match="bogus_section"):
        load_settings(config, environ={})


@pytest.mark.parametrize(
    "body",
    [
        '[server]\nport = "8000"\n',
        '[plugins]\ndisabled = "geo"\n',
        "demo = 1\n",
        "[sites]\nretention_days = 1.5\n",
        "server = 5\n",
    ],
)
def test_wrong_type_is_an_error(tmp_path, body):
    config = tmp_path / "footfall.toml"
    config.write_text(body)
    with pytest.raises(ConfigError):
        load_settings(config, environ={})


def test_wrong_type_error_names_the_setting(tmp_path):
    config = tmp_path / "footfall.toml"
    config.write_text('[server]\nport = "8000"\n')
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_settings(config, environ={})


def test_invalid_toml_is_an_error(tmp_path):
    config = tmp_path / "footfall.toml"
    config.write_text("[server\nport = 1\n")
    with pytest.raises(ConfigError, match="footfall.toml"):
        load_settings(config, environ={})


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml", environ={})
