"""The JSON nesting scan that runs before every JSON document is decoded."""

from __future__ import annotations

import json

import pytest

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


def test_decoder_would_have_failed_on_what_is_refused():
    import msgspec

    with pytest.raises(RecursionError):
        msgspec.json.decode(b"[" * 100_000 + b"]" * 100_000)
