"""Money: the one table of currency exponents, for ingest, reports, the dashboard and the API.

Revenue is stored in integer minor units of its currency. How many digits a currency's minor
unit has (its exponent: 2 for EUR, 0 for JPY, 3 for KWD) comes from one maintained source,
the ``iso4217`` package's copy of the ISO 4217 table (the maintenance agency's published
list), never from lists of our own; so do the codes we accept: active codes with a minor
unit (codes without one — precious metals such as gold, XAU, bond-market units, the
testing and no-currency codes — are refused). Converting an
amount in (:func:`to_minor`) and showing one (:func:`format_minor`) use the same exponent, so
what is shown is what was sent.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

from iso4217 import Currency

_CODE = re.compile(r"[A-Z]{3}")
_EXPONENTS: dict[str, int] = {
    currency.code: currency.exponent
    for currency in Currency
    if currency.exponent is not None and _CODE.fullmatch(currency.code)
}


def is_currency(code: object) -> bool:
    """Whether ``code`` is a known three-letter currency code, as given (upper case)."""
    return isinstance(code, str) and code in _EXPONENTS


def exponent(code: str) -> int:
    """Digits of the minor unit of ``code`` (2 for a code outside the table)."""
    return _EXPONENTS.get(code, 2)


def to_minor(amount: float, code: str) -> int:
    """``amount`` in major units of ``code`` as integer minor units, rounded half up from its
    decimal form (``0.285`` EUR is 29 cents, though ``0.285 * 100`` is 28.499...)."""
    return int(Decimal(repr(amount)).scaleb(exponent(code)).quantize(Decimal(1), ROUND_HALF_UP))


def to_major(minor: int, code: str) -> float:
    """Integer minor units of ``code`` back in major units (for JSON figures)."""
    return minor / 10 ** exponent(code)


def format_minor(minor: int, code: str) -> str:
    """``minor`` units shown in major units with the currency's digits: ``1.500 KWD``."""
    digits = exponent(code)
    return f"{minor / 10**digits:,.{digits}f} {code}"
