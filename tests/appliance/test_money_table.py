"""The one table of currency exponents (appliance.money) and the ingest checks that use it."""

from __future__ import annotations

import pytest

from appliance import money
from appliance.ingest.drafts import (
    InvalidInput,
    draft_from_collect_body,
    draft_from_conversion_body,
    draft_from_event_body,
)
from appliance.models import CollectBody, ConversionBody, EventBody


@pytest.mark.parametrize(
    ("code", "digits"),
    [("EUR", 2), ("USD", 2), ("JPY", 0), ("KRW", 0), ("CLP", 0), ("ISK", 0), ("KWD", 3), ("BHD", 3),
     ("OMR", 3), ("TND", 3), ("CLF", 4)],
)
def test_exponents_come_from_the_currency_table(code, digits):
    assert money.exponent(code) == digits


def test_known_codes_are_the_tables_codes():
    for code in ("EUR", "USD", "JPY", "KWD", "CHF", "XAF"):
        assert money.is_currency(code)
    for code in ("ZZZ", "ÄÖÜ", "ßßß", "SSSSSS", "eur", "EU", "EURO", "", None, 5, "EU\x1f"):
        assert not money.is_currency(code)


@pytest.mark.parametrize(
    ("amount", "code", "minor"),
    [(19.99, "EUR", 1999), (1.5, "KWD", 1500), (3, "JPY", 3), (0.285, "EUR", 29), (1.15, "USD", 115),
     (2.5, "JPY", 3), (1e12, "KWD", 10**15), (0.0001, "CLF", 1), (0, "EUR", 0)],
)
def test_to_minor(amount, code, minor):
    assert money.to_minor(amount, code) == minor


@pytest.mark.parametrize(
    ("minor", "code", "shown"),
    [(1500, "KWD", "1.500 KWD"), (3, "JPY", "3 JPY"), (1999, "EUR", "19.99 EUR"),
     (123456789, "USD", "1,234,567.89 USD"), (1234567, "JPY", "1,234,567 JPY"), (5, "KWD", "0.005 KWD")],
)
def test_format_minor(minor, code, shown):
    assert money.format_minor(minor, code) == shown


@pytest.mark.parametrize("code", ["EUR", "JPY", "KWD", "CLF", "USD", "BHD"])
def test_round_trip(code):
    for amount in (0.5, 1, 12.345, 99.99, 1234.5678):
        minor = money.to_minor(amount, code)
        assert money.to_minor(money.to_major(minor, code), code) == minor


def test_conversion_revenue_uses_the_table():
    def fields(amount, currency):
        draft = draft_from_conversion_body(
            ConversionBody(conversion_type="buy", metadata={"amount": amount, "currency": currency})
        )
        return draft.fields["revenue"], draft.fields["currency"]

    assert fields(1.5, "KWD") == (1500, "KWD")
    assert fields(3, "jpy") == (3, "JPY")
    assert fields(19.99, "EUR") == (1999, "EUR")
    assert fields(1, "IQD") == (money.to_minor(1, "IQD"), "IQD")


@pytest.mark.parametrize("code", ["ZZZ", "ÄÖÜ", "ßßß", "äöü", "ıSK", "XYZ"])
def test_unknown_currencies_are_refused_naming_the_field(code):
    with pytest.raises(InvalidInput) as seed:
        draft_from_conversion_body(ConversionBody(conversion_type="buy", metadata={"amount": 5, "currency": code}))
    assert seed.value.field == "metadata.currency" and seed.value.status == 422
    with pytest.raises(InvalidInput) as tracker:
        draft_from_collect_body(CollectBody(k="conversion", u="https://a.test/", n="buy", a=5, c=code))
    assert tracker.value.field == "c" and tracker.value.status == 422


@pytest.mark.parametrize("name", ["buy\x1fEUR", "a\nb", "tab\there", "nul\x00", "del\x7f", "c1\x85"])
def test_control_characters_in_names_are_refused(name):
    with pytest.raises(InvalidInput) as conversion:
        draft_from_conversion_body(ConversionBody(conversion_type=name, metadata={"amount": 5, "currency": "EUR"}))
    assert conversion.value.field == "conversion_type"
    with pytest.raises(InvalidInput) as event:
        draft_from_event_body(EventBody(event_type=name))
    assert event.value.field == "event_type"
    for kind in ("event", "conversion"):
        with pytest.raises(InvalidInput) as tracker:
            draft_from_collect_body(CollectBody(k=kind, u="https://a.test/", n=name, a=5, c="EUR"))
        assert tracker.value.field == "n"


def test_names_with_other_unicode_are_kept():
    draft = draft_from_conversion_body(ConversionBody(conversion_type="Kauf – Größe ✓", metadata={}))
    assert draft.name == "Kauf – Größe ✓"
