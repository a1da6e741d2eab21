"""What goals, funnels and segments share: their error, and the checks of names and patterns."""

from __future__ import annotations

from appliance.errors import DomainError
from appliance.filters import FilterError, check_pattern
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
