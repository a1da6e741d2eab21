"""Money: the one table of currency exponents, for ingest, reports, the dashboard and the API.

Revenue is stored in integer minor units of its currency. How many digits a currency's minor
unit has (its exponent: 2 for EUR, 0 for JPY, 3 for KWD) comes from one maintained source,
babel's copy of the Unicode CLDR currency data, never from lists of our own; so do the codes
we accept. Converting an amount in (:func:`to_minor`) and showing one (:func:`format_minor`)
use the same exponent, so what is shown is what was sent.

CLDR's digits are those in everyday use: for a few currencies whose minor unit is not used
(HUF, IDR, COP, IQD, ...) they say 0 where ISO 4217 lists 2 or 3.
"""

from __future__ import annotations

import functools
import re
from decimal import ROUND_HALF_UP, Decimal

from babel.numbers import get_currency_precision, list_currencies

_CODE = re.compile(r"[A-Z]{3}")
_KNOWN = frozenset(code for code in list_currencies() if _CODE.fullmatch(code))


def is_currency(code: object) -> bool:
    """Whether ``code`` is a known three-letter currency code, as given (upper case)."""
    return isinstance(code, str) and code in _KNOWN


@functools.cache
def exponent(code: str) -> int:
    """Digits of the minor unit of ``code`` (2 for an unknown code, as CLDR's default)."""
    return get_currency_precision(code)


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
