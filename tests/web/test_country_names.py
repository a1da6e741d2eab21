"""Country names on the dashboard and the live view come from the CLDR's territory names
(Babel), not from a table of the tz database ("Britain (UK)")."""

from __future__ import annotations

import pytest

from web.widgets import country_label, country_names


@pytest.mark.parametrize(
    ("code", "name"),
    [("GB", "United Kingdom"), ("US", "United States"), ("DE", "Germany"), ("gb", "United Kingdom")],
)
def test_a_country_reads_as_its_common_english_name(code: str, name: str) -> None:
    assert country_label(code) == name


@pytest.mark.parametrize("code", ["QQ", "ZZ", "EU", "A1"])
def test_an_unknown_code_is_shown_as_the_code(code: str) -> None:
    assert country_label(code) == code


def test_no_code_is_unknown() -> None:
    assert country_label("") == "(unknown)"


def test_the_table_covers_iso_3166_and_nothing_but_countries() -> None:
    names = country_names()
    assert len(names) > 240
    assert all(len(code) == 2 and code.isalpha() and code.isupper() for code in names)
    assert "Britain (UK)" not in names.values()


def test_other_locales_name_the_same_countries() -> None:
    """Ready for a translated UI: the same codes, named in the locale's language."""
    german = country_names("de")
    assert german["DE"] == "Deutschland"
    assert german.keys() == country_names().keys()
