"""Reading a user's message without a model: names, song titles and customer identities.

The offline model calls a tool when the tool's ``offline_args`` parser finds its arguments
in the message; these are the parsers' building blocks. The identity readers are also the
invoice tools' guard: they find every customer the user's message points at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from chorus_music_store._store import IdentityKind, fold, phone_digits

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE_SAID = re.compile(
    r"\b(?:phone|mobile|cell|telephone|tel)(?:\s+(?:number|no\.?))?\s*(?:is|:|=)?\s*(\+?\d[\d\s().-]{5,}\d)", re.I)
_PHONE_PLUS = re.compile(r"(?<![\w+])(\+\d[\d\s().-]{5,}\d)")
_ID_SAID = (
    re.compile(r"\b(?:i am|i'm|im|this is|it's|it is)\s+customer\s*(?:id|number|no\.?|#)?\s*[:=]?\s*(\d+)\b", re.I),
    re.compile(r"\bcustomer\s*(?:id|number|no\.?|#)\s*(?:is|:|=)?\s*(\d+)\b", re.I),
    re.compile(r"\bmy\s+(?:customer\s+)?(?:id|number)\s*(?:is|:|=)?\s*#?(\d+)\b", re.I),
)
_ID_MENTION = re.compile(r"\b(?:customer|client|account)s?\s*(?:id|number|no\.?|#)?\s*[:=]?\s*#?(\d+)\b", re.I)
_BARE_ID = re.compile(r"^\s*(?:it'?s\s+|id\s*:?\s*)?#?(\d{1,9})\s*\.?\s*$", re.I)


_SELF_EMAIL = re.compile(
    r"(?:\bmy\s+e-?mail(?:\s+address)?\s*(?:is|:|=)?|\b(?:i am|i'm|im|this is|it's|it is)|^\s*e-?mail\s*:?)\s*"
    r"(" + EMAIL.pattern + r")", re.I)
_SELF_PHONE = re.compile(
    r"\bmy\s+(?:phone|mobile|cell|telephone)(?:\s+(?:number|no\.?))?\s*(?:is|:|=)?\s*(\+?\d[\d\s().-]{5,}\d)"
    r"|^\s*(?:phone\s*:?\s*)?(\+?\d[\d\s().-]{5,}\d)\s*$", re.I)
_BARE_EMAIL = re.compile(r"^\s*(" + EMAIL.pattern + r")\s*[.!]?\s*$")


def identification(text: str) -> tuple[IdentityKind, str] | None:
    """How the user identifies themselves in ``text``, if they do: a customer id, email or phone
    given as their own ("my email is ...", "I'm customer 7", "my phone is ...") or alone.

    "Show the invoices of x@y.com" is not an identification: it names someone, it does not
    say who the user is.
    """
    if m := _SELF_EMAIL.search(text) or _BARE_EMAIL.match(text):
        return "email", m.group(1)
    for pattern in _ID_SAID:
        if m := pattern.search(text):
            return "id", m.group(1)
    if m := _BARE_ID.match(text):
        return "id", m.group(1)
    if m := _SELF_PHONE.search(text):
        number = m.group(1) or m.group(2)
        if len(phone_digits(number)) >= 7:
            return "phone", number.strip()
    return None


def same_identity(kind: IdentityKind, value: str, other: tuple[IdentityKind, str] | None) -> bool:
    """Whether ``other`` (what the user said) is the identity ``kind``/``value`` (what a model passed)."""
    if other is None or other[0] != kind:
        return False
    if kind == "email":
        return value.strip().lower() == other[1].strip().lower()
    if kind == "phone":
        return phone_digits(value) == phone_digits(other[1])
    return value.isdigit() and other[1].isdigit() and int(value) == int(other[1])


def identities(text: str) -> list[tuple[IdentityKind, str]]:
    """Every customer identity ``text`` mentions: emails, customer numbers, phone numbers."""
    found: list[tuple[IdentityKind, str]] = [("email", m.group(0)) for m in EMAIL.finditer(text)]
    found += [("id", m.group(1)) for m in _ID_MENTION.finditer(text)]
    for pattern in _ID_SAID:
        found += [("id", m.group(1)) for m in pattern.finditer(text)]
    for pattern in (_PHONE_SAID, _PHONE_PLUS):
        found += [("phone", m.group(1)) for m in pattern.finditer(text) if len(phone_digits(m.group(1))) >= 7]
    return found


def names_in(text: str, known: Iterable[tuple[int, str]], *, exact_case_below: int = 0) -> list[str]:
    """Known names that occur in ``text`` as whole words, longest first, none inside another.

    Names shorter than ``exact_case_below`` characters must match case too ("Queen", not
    "queen"), so everyday words do not read as band names.
    """
    folded = f" {_spaced(fold(text))} "
    hits: list[str] = []
    for _id, name in sorted(known, key=lambda k: -len(k[1])):
        key = _spaced(fold(name))
        if len(key) < 2 or f" {key} " not in folded:
            continue
        if len(name) < exact_case_below and not re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text):
            continue
        if any(key in _spaced(fold(h)) for h in hits):
            continue
        hits.append(name)
    return hits


def _spaced(text: str) -> str:
    """Words without the punctuation around them, so "AC/DC?" still contains "ac/dc"."""
    return " ".join(filter(None, (word.strip(".,?!;:\"“”‘’()[]") for word in text.split())))


def clean_phrase(phrase: str) -> str:
    """A name a user typed, without quotes, trailing punctuation or leading articles."""
    phrase = phrase.strip().strip("\"“”'‘’*_").strip()
    phrase = re.sub(r"[?!.,;:]+$", "", phrase).strip().strip("\"“”'‘’").strip()
    return re.sub(r"^(?:the\s+(?:band|artist|group|singer)\s+|the\s+song\s+|the\s+track\s+)", "", phrase, flags=re.I)


_SONG_TITLE = (
    re.compile(r"\b(?:song|track|tune)s?\s+(?:called|named|titled)\s+(?P<t>.+)$", re.I),
    re.compile(r"\b(?:the|a)\s+(?:song|track|tune)\s+(?P<t>.+)$", re.I),
    re.compile(r"[\"“](?P<t>[^\"”]+)[\"”]"),
    re.compile(r"\b(?:do you have|have you got|do you sell|do you carry|is there|can i (?:buy|get))\s+(?P<t>.+)$",
               re.I),
)


def song_title(text: str) -> str | None:
    """The song a message asks about ("Do you have the song Black Dog?" -> "Black Dog")."""
    for pattern in _SONG_TITLE:
        if m := pattern.search(text.strip()):
            title = clean_phrase(re.split(r"\s+(?:by|from|on)\s+", m.group("t"), maxsplit=1)[0])
            if title:
                return title
    return None


_ARTIST_PHRASE = (
    re.compile(r"\b(?:albums?|records?|discography|songs?|tracks?|music)\s+(?:by|from|of)\s+(?P<a>.+)$", re.I),
    re.compile(r"\b(?:does|did|has)\s+(?P<a>.+?)\s+(?:have|has|got|made|make|release|released|record|recorded)\b",
               re.I),
    re.compile(r"^(?:what|which|list|show)?\s*(?P<a>.+?)(?:'s|’s)\s+(?:albums?|songs?|tracks?|records?)", re.I),
)


def artist_phrase(text: str) -> str | None:
    """The artist a message names after "albums by", "does ... have" and the like."""
    for pattern in _ARTIST_PHRASE:
        if m := pattern.search(text.strip()):
            phrase = clean_phrase(m.group("a"))
            if phrase:
                return phrase
    return None


_TASTE = re.compile(
    r"\b(?:i (?:really |also |just )?(?:love|like|enjoy|adore|dig)|i'?m (?:really )?into|i am (?:really )?into|"
    r"my favou?rite|i listen to|fan of)\b", re.I)
_QUESTION = re.compile(r"^\s*(?:what|which|who|do|does|did|can|could|would|is|are|have|has)\b", re.I)


def states_taste(text: str) -> bool:
    """Whether the message tells what the user likes (not a question about it)."""
    return bool(_TASTE.search(text)) and not _QUESTION.match(text) and not text.strip().endswith("?")
