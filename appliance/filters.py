"""Filters: the conditions any stats query can carry, parsed, named and turned into row masks.

A filter is ``(operator, dimension, values)``. Operators: ``is``, ``is_not``, ``contains``,
``does_not_contain``, ``matches``, ``does_not_match``. Several values are OR-ed within one
filter; filters are AND-ed. ``matches`` takes wildcards: ``*`` stands for any run of
characters (``/`` included), everything else is literal; all comparisons are case-sensitive.
A negated operator is exactly the negation of its positive form, so ``page is_not /a``
keeps every event whose page is not ``/a`` and ``prop:plan is_not pro`` keeps events without
a ``plan`` property too.

Dimensions (the ``event:``/``visit:`` prefixes of Plausible's API are accepted and ignored):

- event fields, tested on each event: ``page``, ``hostname``, ``source``, ``channel``,
  ``referrer`` (host), ``utm_source`` … ``utm_content``, ``country``, ``region``,
  ``browser``, ``browser_version``, ``os``, ``os_version``, ``device``, ``screen``,
  ``language``, ``event`` (the event or conversion name; page views are named ``pageview``),
  ``prop:KEY`` (an event property; ``event:props:KEY`` also works), ``goal`` (a goal's name,
  see :mod:`appliance.goals`);
- visit fields, tested on the visit an event belongs to: ``entry_page``, ``exit_page``,
  ``segment`` (a saved segment's id, see :mod:`appliance.segments`).

Filters are parsed from JSON (``[["is", "page", ["/a", "/b"]], ["contains", "source", ["goo"]]]``,
Plausible API v2 style) or from the short form ``page==/a|/b;source~goo;country!=DE`` (``==``
is, ``!=`` is not, ``~`` contains, ``!~`` does not contain; ``==``/``!=`` with a ``*`` in a
value become matches / does not match).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import msgspec
import numpy as np

from appliance.nesting import TOO_DEEP, json_too_deep

OPERATORS = ("is", "is_not", "contains", "does_not_contain", "matches", "does_not_match")
NEGATED = {"is_not": "is", "does_not_contain": "contains", "does_not_match": "matches"}

# dimension -> Event field (interned string id column)
EVENT_DIMENSIONS: dict[str, str] = {
    "page": "path",
    "hostname": "hostname",
    "source": "source",
    "channel": "channel",
    "referrer": "referrer_host",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "utm_term": "utm_term",
    "utm_content": "utm_content",
    "country": "country",
    "region": "region",
    "browser": "browser",
    "browser_version": "browser_version",
    "os": "os",
    "os_version": "os_version",
    "device": "device",
    "screen": "screen",
    "language": "language",
    "event": "name",
}
VISIT_DIMENSIONS = ("entry_page", "exit_page", "segment")
PROP_PREFIX = "prop:"
MAX_FILTERS = 32
MAX_VALUES = 256


class FilterError(ValueError):
    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field = "filters"
        self.message = message
        self.status = status


class Filter(msgspec.Struct, frozen=True, array_like=True):
    """One condition: ``[operator, dimension, values]`` (also its JSON form)."""

    operator: str
    dimension: str
    values: tuple[str, ...]

    @property
    def negated(self) -> bool:
        return self.operator in NEGATED

    @property
    def positive(self) -> str:
        return NEGATED.get(self.operator, self.operator)

    @property
    def is_visit_level(self) -> bool:
        return self.dimension in VISIT_DIMENSIONS

    @property
    def prop_key(self) -> str | None:
        return self.dimension[len(PROP_PREFIX) :] if self.dimension.startswith(PROP_PREFIX) else None


def normalise_dimension(name: str) -> str:
    name = name.strip()
    for prefix in ("event:props:", "props:", "props.", "prop."):
        if name.startswith(prefix):
            return PROP_PREFIX + name[len(prefix) :]
    for prefix in ("event:", "visit:"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return {"name": "event", "goals": "goal", "referrer_host": "referrer", "path": "page"}.get(name, name)


def make_filter(operator: str, dimension: str, values) -> Filter:
    if operator not in OPERATORS:
        raise FilterError(f"unknown operator {operator!r}; use one of {', '.join(OPERATORS)}")
    dimension = normalise_dimension(str(dimension))
    known = dimension in EVENT_DIMENSIONS or dimension in VISIT_DIMENSIONS or dimension == "goal"
    if not known and not (dimension.startswith(PROP_PREFIX) and len(dimension) > len(PROP_PREFIX)):
        raise FilterError(f"unknown dimension {dimension!r}")
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list | tuple) or not values or len(values) > MAX_VALUES:
        raise FilterError(f"{dimension}: give 1 to {MAX_VALUES} values")
    if dimension == "segment" and operator not in ("is", "is_not"):
        raise FilterError("segment takes is or is_not")
    return Filter(operator, dimension, tuple(str(value) for value in values))


def parse_filters(text: str | None) -> list[Filter]:
    """Filters from a query parameter (JSON or the short form); empty for None or ''."""
    if not text or not text.strip():
        return []
    text = text.strip()
    if text.startswith("["):
        if json_too_deep(text):
            raise FilterError(TOO_DEEP, 400)
        try:
            raw = msgspec.json.decode(text)
        except msgspec.DecodeError as error:
            raise FilterError(f"not valid JSON: {error}") from None
        if not isinstance(raw, list):
            raise FilterError("expected a list of [operator, dimension, values]")
        filters = []
        for item in raw:
            if not isinstance(item, list) or len(item) != 3:
                raise FilterError("each filter is [operator, dimension, values]")
            filters.append(make_filter(str(item[0]), item[1], item[2]))
    else:
        filters = [_parse_short(part) for part in text.split(";") if part.strip()]
    if len(filters) > MAX_FILTERS:
        raise FilterError(f"at most {MAX_FILTERS} filters")
    return filters


_SHORT = re.compile(r"^\s*([\w:.\-]+)\s*(==|!=|!~|~)(.*)$", re.S)


def _parse_short(part: str) -> Filter:
    match = _SHORT.match(part)
    if not match:
        raise FilterError(f"cannot read filter {part!r}; write dimension==value")
    dimension, symbol, rest = match.groups()
    values = rest.split("|")
    wildcard = any("*" in value for value in values)
    operator = {
        "==": "matches" if wildcard else "is",
        "!=": "does_not_match" if wildcard else "is_not",
        "~": "contains",
        "!~": "does_not_contain",
    }[symbol]
    return make_filter(operator, dimension, values)


def wildcard_regex(pattern: str) -> re.Pattern:
    return re.compile("".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern)), re.S)


def text_predicate(operator: str, values: tuple[str, ...]) -> Callable[[str], bool]:
    """The *positive* test of ``operator`` (negation is applied to masks by the caller)."""
    if operator == "is":
        accepted = frozenset(values)
        return accepted.__contains__
    if operator == "contains":
        return lambda text: any(value in text for value in values)
    if operator == "matches":
        patterns = [wildcard_regex(value) for value in values]
        return lambda text: any(pattern.fullmatch(text) for pattern in patterns)
    raise FilterError(f"no positive form for {operator!r}")


class IdPredicate:
    """A text test lifted to arrays of interned ids, memoised per id for one query."""

    def __init__(self, test: Callable[[str], bool], text: Callable[[int], str]) -> None:
        self._test = test
        self._text = text
        self._memo: dict[int, bool] = {}

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        memo = self._memo
        out = np.empty(len(ids), bool)
        for index, string_id in enumerate(ids.tolist()):
            found = memo.get(string_id)
            if found is None:
                found = memo[string_id] = bool(self._test(self._text(string_id)))
            out[index] = found
        return out


def event_mask(frame, condition: Filter, text: Callable[[int], str], lookup: Callable[[str], int | None]) -> np.ndarray:
    """The *positive* mask of an event-field or property filter over ``frame``'s rows."""
    test = text_predicate(condition.positive, condition.values)
    key = condition.prop_key
    if key is not None:
        key_id = lookup(key)
        if key_id is None:
            return np.zeros(frame.size, bool)
        return frame.prop_mask([key_id], IdPredicate(test, text))
    return frame.mask(EVENT_DIMENSIONS[condition.dimension], IdPredicate(test, text))
