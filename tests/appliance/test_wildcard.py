"""Wildcard patterns: the same answers as a regular expression, in time linear in the text.

The regression this guards against: ``*`` translated to ``.*`` once per star made
``*******zz`` backtrack exponentially, so one filter or one goal froze the only worker.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.definitions.common import DefinitionError
from appliance.definitions.goals import GoalInput, checked
from appliance.filters import (
    MAX_PATTERN_LENGTH,
    MAX_PATTERN_STARS,
    FilterError,
    Wildcard,
    make_filter,
    parse_filters,
)


def reference(pattern: str, text: str) -> bool:
    """The meaning of a pattern, as a regex (fine for the short inputs hypothesis draws)."""
    regex = "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern))
    return re.fullmatch(regex, text, re.S) is not None


ALPHABET = st.sampled_from("ab/*z")


@given(pattern=st.text(ALPHABET, max_size=10), text=st.text(st.sampled_from("ab/z"), max_size=14))
@settings(max_examples=600)
def test_wildcard_agrees_with_the_regex_meaning(pattern: str, text: str) -> None:
    assert Wildcard(pattern).fullmatch(text) is reference(pattern, text)


@given(
    pattern=st.text(st.sampled_from("*a/z"), min_size=1, max_size=MAX_PATTERN_LENGTH).filter(
        lambda p: p.count("*") <= MAX_PATTERN_STARS
    ),
    text=st.text(st.sampled_from("a/"), min_size=0, max_size=MAX_PATTERN_LENGTH),
)
@settings(max_examples=200, deadline=timedelta(milliseconds=250))
def test_any_allowed_pattern_on_any_allowed_path_is_bounded(pattern: str, text: str) -> None:
    # Adversarial alphabet: the text is all 'a' and '/', the pattern needs a 'z' that is
    # never there, which is what made the regex translation backtrack. The deadline is a
    # bound on blow-up (the old matcher took seconds to minutes), not a speed target.
    Wildcard(pattern).fullmatch(text)


def test_the_reported_patterns_answer_at_once() -> None:
    started = time.perf_counter()
    for stars in (8, 10, 16):
        pattern = "*" * stars + "zz"
        assert not Wildcard(pattern).fullmatch("/" + "a" * 40)
        assert not Wildcard("/" + "*" * stars + "z").fullmatch("/" + "ab/" * 23)
        assert Wildcard("/" + "*a" * stars).fullmatch("/" + "a" * 70)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("/blog/*", "/blog/", True),
        ("/blog/*", "/blog", False),
        ("*", "", True),
        ("a*a", "a", False),
        ("a*a", "aa", True),
        ("*.example.com", "www.example.com", True),
        ("*.example.com", "example.com", False),
        ("/a**b", "/ab", True),
        ("/x", "/x", True),
        ("/x", "/x/", False),
    ],
)
def test_wildcard_examples(pattern: str, text: str, expected: bool) -> None:
    assert Wildcard(pattern).fullmatch(text) is expected


def test_filters_bound_patterns() -> None:
    assert parse_filters("page==" + "*" * MAX_PATTERN_STARS + "zz")
    with pytest.raises(FilterError, match="wildcards"):
        parse_filters("page==" + "*" * (MAX_PATTERN_STARS + 1) + "zz")
    with pytest.raises(FilterError, match="characters"):
        make_filter("matches", "page", ["/" + "a" * MAX_PATTERN_LENGTH + "*"])


def test_goal_patterns_are_bounded() -> None:
    with pytest.raises(DefinitionError) as caught:
        checked(GoalInput(name="g", kind="page", page="/" + "*" * (MAX_PATTERN_STARS + 1) + "z"))
    assert caught.value.field == "page"
