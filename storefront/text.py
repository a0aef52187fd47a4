"""Free text the store keeps (names, emails, notes): what it refuses to store."""

from __future__ import annotations

import unicodedata

#: Unicode categories never fit for a name, an email or a note: controls (NUL, newlines,
#: escapes), format characters (bidi overrides and isolates U+202A-202E, U+2066-2069,
#: zero-width spaces, BOM), line/paragraph separators, surrogates, private use, unassigned.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
#: zero-width (non-)joiners: category Cf, but part of correct spelling in Persian, Hindi, ...
JOINERS = frozenset({"\u200c", "\u200d"})


def control_character(text: str | None, *, allow_joiners: bool = True, allow_newlines: bool = False) -> str | None:
    """The first character of ``text`` that must not be stored, as ``U+XXXX``; else None.

    ``allow_newlines`` keeps line breaks (LF, CR) for multi-line notes.
    """
    for char in text or "":
        if unicodedata.category(char) in REFUSED_CATEGORIES:
            if allow_joiners and char in JOINERS:
                continue
            if allow_newlines and char in "\n\r":
                continue
            return f"U+{ord(char):04X}"
    return None
