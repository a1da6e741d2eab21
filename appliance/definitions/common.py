"""What goals, funnels and segments share: their error, and the checks of names and patterns."""

from __future__ import annotations

from appliance.errors import DomainError
from appliance.filters import Filter, FilterError, check_pattern, make_filter
from appliance.identifiers import control_character, normalised


class DefinitionError(DomainError):
    """A goal, funnel or segment that cannot be stored (answered 422), or is unknown (404)."""


def checked_name(name: str, field: str = "name", required: bool = True) -> str:
    """A goal's, funnel's or segment's name: normalised, 1 to 120 characters, no control
    characters (see :mod:`appliance.identifiers`)."""
    name = normalised(name)
    if not (1 if required else 0) <= len(name) <= 120:
        raise DefinitionError(field, "1 to 120 characters")
    if problem := control_character(name):
        raise DefinitionError(field, problem)
    return name


def check_definition_pattern(pattern: str, field: str) -> None:
    try:
        check_pattern(pattern, field)
    except FilterError as error:
        raise DefinitionError(field, error.message) from None


def checked_filters(raw_filters: list, nested_segment: str) -> list[Filter]:
    """A definition's ``filters``, each ``[operator, dimension, values]``, as filters; a bad
    one is a :class:`DefinitionError` naming ``filters[i]``. A ``segment`` filter is refused
    with ``nested_segment`` as the message (a definition names its segment elsewhere, if at all)."""
    filters = []
    for index, raw in enumerate(raw_filters):
        if not isinstance(raw, list) or len(raw) != 3:
            raise DefinitionError(f"filters[{index}]", "each filter is [operator, dimension, values]")
        try:
            condition = make_filter(str(raw[0]), raw[1], raw[2])
        except FilterError as error:
            raise DefinitionError(f"filters[{index}]", error.message) from None
        if condition.dimension == "segment":
            raise DefinitionError(f"filters[{index}]", nested_segment)
        filters.append(condition)
    return filters
