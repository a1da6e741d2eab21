"""How deep a JSON document nests, checked before it is decoded.

A decoder recurses once per ``[`` or ``{``: a body of 100 000 brackets exhausts the
interpreter's recursion limit (a ``RecursionError``, answered 500 with a traceback). Nothing
Footfall takes nests deeper than a handful of levels, so every JSON document it decodes
(ingest bodies, the API's request bodies, the ``filters`` parameter) is refused beyond
:data:`MAX_JSON_DEPTH`. The scan is cheap (bytes methods only, no Python loop per character:
~0.26 ms for a batch of 1,000 events, half a decode's time), and brackets inside strings do
not count.
"""

from __future__ import annotations

MAX_JSON_DEPTH = 32
TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"

# the characters that decide nesting: quotes (strings), brackets and braces; everything else goes
_STRUCTURE = bytes(set(range(256)) - set(b'"[]{}'))
# braces turned into brackets: nesting is nesting either way
_ONLY_BRACKETS = bytes.maketrans(b"{}", b"[]")


def json_too_deep(document: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``document`` opens more than ``limit`` arrays or objects inside each other.

    Exact for well-formed JSON; a malformed document may be refused a little early (it would
    be refused anyway). Each round removes the innermost ``[]`` pairs (a bytes replace, no
    Python loop per byte), so a balanced document of depth *d* is gone after *d* rounds.
    """
    if isinstance(document, str):
        document = document.encode("utf-8", "surrogatepass")
    # Strings out, with bytes methods only (no Python loop, no regex per string): escaped
    # backslashes and then escaped quotes go first, so every quote left opens or closes a
    # string; then only quotes and brackets are kept (a document with fewer opening brackets
    # than the limit is done there), and what lies between a quote and the next is inside a
    # string (an unterminated one runs to the end).
    if b"\\" in document:
        document = document.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = document.translate(None, _STRUCTURE)
    if structure.count(b"[") + structure.count(b"{") <= limit:
        return False
    # Two quotes next to each other enclose nothing that matters (an empty string, or the end
    # of one string and the start of the next): taking them out leaves every bracket on the
    # same side of every string, and few quotes to split on (a batch's texts rarely hold
    # brackets; splitting at each of their quotes was most of the scan).
    structure = structure.replace(b'""', b"")
    outside = b"".join(structure.split(b'"')[::2]) if b'"' in structure else structure
    brackets = outside.translate(_ONLY_BRACKETS)
    rounds = 0
    while b"[]" in brackets:
        if rounds == limit:
            return True  # a pair still inside ``limit`` others
        brackets = brackets.replace(b"[]", b"")
        rounds += 1
    # what is left is unbalanced: ``]]][[[``; its opens may nest on top of the removed pairs
    return rounds + brackets.count(b"[") > limit
