"""Filters: the conditions any stats query can carry, parsed, named and turned into row masks.

A filter is ``(operator, dimension, values)``. Operators: ``is``, ``is_not``, ``contains``,
``does_not_contain``, ``matches``, ``does_not_match``. Several values are OR-ed within one
filter; filters are AND-ed. ``matches`` takes wildcards: ``*`` stands for any run of
characters (``/`` included), everything else is literal; all comparisons are case-sensitive.
A negated operator is exactly the negation of its positive form, so ``page is_not /a``
keeps every event whose page is not ``/a`` and ``prop:plan is_not pro`` keeps events without
a ``plan`` property too.

Dimensions (the ``event:``/``visit:`` prefixes of Plausible's API are accepted and ignored):

- event fields, tested on each event: ``page``, ``hostname``, ``country``, ``region``,
  ``browser``, ``browser_version``, ``os``, ``os_version``, ``device``, ``screen``,
  ``language``, ``event`` (the event or conversion name; page views are named ``pageview``),
  ``prop:KEY`` (an event property; ``event:props:KEY`` also works), ``goal`` (a goal's name,
  see :mod:`appliance.definitions.goals`);
- visit fields, tested on the visit an event belongs to, so they keep or drop whole visits:
  ``entry_page``, ``exit_page``, ``segment`` (a saved segment's id, see
  :mod:`appliance.definitions.segments`), and the visit properties ``source``, ``channel``,
  ``referrer`` (host), ``utm_source`` … ``utm_content``, tested on the visit's first event
  (:data:`appliance.dimensions.VISIT_PROPERTIES`). Engagement pings belong to no visit: a
  visit-level filter keeps the pings of visitors who have a kept visit.

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

from appliance.budget import check_budget
from appliance.dimensions import VISIT_PROPERTIES
from appliance.errors import DomainError
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


class FilterError(DomainError):
    """A filter that cannot be read or applied (answered 422, naming ``filters``)."""

    def __init__(self, message: str, field: str = "filters", status: int = 422) -> None:
        super().__init__(field, message, status)


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
        return self.dimension in VISIT_DIMENSIONS or self.dimension in VISIT_PROPERTIES

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
    values = tuple(str(value) for value in values)
    if operator in ("matches", "does_not_match"):
        for value in values:
            check_pattern(value)
    return Filter(operator, dimension, values)


def parse_filters(text: str | None) -> list[Filter]:
    """Filters from a query parameter (JSON or the short form); empty for None or ''."""
    if not text or not text.strip():
        return []
    text = text.strip()
    if text.startswith("["):
        if json_too_deep(text):
            raise FilterError(TOO_DEEP, status=400)
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


MAX_PATTERN_LENGTH = 500  # as long as the longest stored page path
MAX_PATTERN_STARS = 16


def check_pattern(pattern: str, field: str = "filters") -> str:
    """``pattern`` if it is a wildcard pattern we accept, else a FilterError naming ``field``."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise FilterError(f"a pattern is at most {MAX_PATTERN_LENGTH} characters", field)
    if pattern.count("*") > MAX_PATTERN_STARS:
        raise FilterError(f"a pattern has at most {MAX_PATTERN_STARS} '*' wildcards", field)
    return pattern


class Wildcard:
    """A ``*`` wildcard pattern matched in time linear in the text (no regular expression).

    ``*`` stands for any run of characters, everything else is literal. Runs of stars are
    one star. The literal pieces between stars are found left to right with ``str.find``,
    each at its earliest place: taking the earliest match of each piece never loses a match
    a later place would give, so there is no backtracking, whatever the pattern.
    """

    __slots__ = ("_head", "_tail", "_middle", "_exact")

    def __init__(self, pattern: str) -> None:
        pieces = pattern.split("*")
        self._exact = pattern if len(pieces) == 1 else None
        self._head = pieces[0]
        self._tail = pieces[-1] if len(pieces) > 1 else ""
        self._middle = tuple(piece for piece in pieces[1:-1] if piece)

    def fullmatch(self, text: str) -> bool:
        if self._exact is not None:
            return text == self._exact
        head, tail = self._head, self._tail
        if len(text) < len(head) + len(tail) or not text.startswith(head) or not text.endswith(tail):
            return False
        position, end = len(head), len(text) - len(tail)
        for piece in self._middle:
            found = text.find(piece, position, end)
            if found < 0:
                return False
            position = found + len(piece)
        return True


def text_predicate(operator: str, values: tuple[str, ...]) -> Callable[[str], bool]:
    """The *positive* test of ``operator`` (negation is applied to masks by the caller)."""
    if operator == "is":
        accepted = frozenset(values)
        return accepted.__contains__
    if operator == "contains":
        return lambda text: any(value in text for value in values)
    if operator == "matches":
        patterns = [Wildcard(value) for value in values]
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
                if not len(memo) & 255:
                    check_budget()
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
