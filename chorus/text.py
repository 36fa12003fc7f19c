"""The user's text as Chorus reads it (core: no imports from the rest of chorus)."""

from __future__ import annotations

import unicodedata


def clean_text(text: str) -> str:
    """The user's text as the model should see it: valid Unicode, no control characters.

    Lone surrogates (what invalid UTF-8 becomes after a lenient decode) turn
    into U+FFFD; control characters other than newline and tab are dropped.
    """
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cs":
            kept.append("\ufffd")
        elif category != "Cc" or ch in "\n\t":
            kept.append(ch)
    return "".join(kept).strip()
