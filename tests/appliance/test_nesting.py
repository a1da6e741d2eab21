"""The JSON nesting scan that runs before every JSON document is decoded."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.nesting import MAX_JSON_DEPTH, json_too_deep


@pytest.mark.parametrize(
    ("document", "deep"),
    [
        (b"[" * 100_000 + b"]" * 100_000, True),
        (b'{"a":' * 1_000 + b"1" + b"}" * 1_000, True),
        (b"[" * 100_000, True),  # unterminated: still refused before the decoder recurses
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), True),
        (b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, False),
        (b"[]" * 10_000, False),  # many brackets, side by side
        (json.dumps({"note": "[{" * 1_000}).encode(), False),  # brackets inside a string
        (json.dumps({"note": '\\"' + "[" * 1_000, "x": [1, 2]}).encode(), False),  # escaped quotes
        (b'"unterminated [[[[' + b"[" * 100, False),
        (b"", False),
    ],
)
def test_json_too_deep(document, deep):
    assert json_too_deep(document) is deep


def test_strings_side_by_side_with_brackets_inside_do_not_count():
    # adjacent quotes (an empty string, one string ending where the next begins) are taken
    # out before the split at quotes; the brackets between them stay on their side
    document = json.dumps(["]]]", "", "[", "]", [[["x", "[[", ""]]]]).encode()
    assert json_too_deep(document, 3) is True
    assert json_too_deep(document, 4) is False


def test_decoder_would_have_failed_on_what_is_refused():
    import msgspec

    with pytest.raises(RecursionError):
        msgspec.json.decode(b"[" * 100_000 + b"]" * 100_000)


# -- against the true depth of any JSON document ------------------------------------------------
def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


_tricky_text = st.text(alphabet='[]{}"\\/abc\n\u00e9', max_size=12)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_tricky_text, inner, max_size=3),
    max_leaves=60,
)


@settings(max_examples=400, deadline=None)
@given(_json_values, st.integers(0, 40), st.sampled_from([0, 1, 3, MAX_JSON_DEPTH]))
def test_json_too_deep_is_exact_on_any_document(value, wrap, limit):
    for _ in range(wrap):  # deeper than the recursion draws alone reach
        value = [value] if wrap % 2 else {"k[\\\"": value}
    document = json.dumps(value, ensure_ascii=False).encode()
    assert json_too_deep(document, limit) is (_depth(value) > limit)
