"""Names people and sites are known by: normalised, then refused if they hide characters.

Every identifier a caller chooses (site domains and names, allowed hostnames, usernames,
emails, API key names, goal, funnel and segment names) goes through :func:`normalised`
(Unicode NFKC, surrounding white space stripped) before it is validated with a pattern's
``fullmatch`` (``re.match(...$)`` also matches before a final newline), and through
:func:`control_character` so that no name carries a newline, a NUL, an escape sequence or
an invisible format character (a right-to-left override, a zero-width space) that would
make it look like another.
"""

from __future__ import annotations

import unicodedata

# Cc: C0 and C1 controls (newline, NUL, ESC, DEL); Cf: format characters (bidi overrides,
# zero-width space and joiners); Cs: lone surrogates.
_HIDDEN = frozenset(("Cc", "Cf", "Cs"))


def normalised(text: str | None) -> str:
    return unicodedata.normalize("NFKC", text or "").strip()


def control_character(text: str) -> str | None:
    """Why ``text`` cannot be a name (its first control character), or None."""
    for character in text:
        if unicodedata.category(character) in _HIDDEN:
            return f"must not contain control characters (found U+{ord(character):04X})"
    return None
