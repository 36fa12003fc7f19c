"""Reading a user's message without a model: names, song titles and customer identities.

The offline model calls a tool when the tool's ``offline_args`` parser finds its arguments
in the message; these are the parsers' building blocks. The identity readers are also the
invoice tools' guard: they find every customer the user's message points at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from chorus_music_store._store import IdentityKind, fold, phone_digits, same_phone

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_NUMBER = r"(\+?\d[\d\s().-]{5,}\d)"
_PHONES = (
    re.compile(r"\b(?:phone|mobile|cell|telephone|tel|number)(?:\s+(?:number|no\.?))?\s*(?:is|:|=)?\s*" + _NUMBER,
               re.I),
    re.compile(r"(?<![\w+])(\+\d[\d\s().-]{5,}\d)"),
    re.compile(r"^\s*(?:it'?s\s+)?" + _NUMBER + r"\s*\.?\s*$", re.I),
)
# Customer ids are short numbers (at most 6 digits: longer ones read as phone numbers).
_IDS = (
    re.compile(r"\b(?:customer|client|account)s?\s*(?:id|number|no\.?|#)?\s*(?:is|:|=)?\s*#?(\d{1,6})(?!\d)", re.I),
    re.compile(r"\bmy\s+(?:customer\s+)?id\s*(?:is|:|=)?\s*#?(\d{1,6})(?!\d)", re.I),
    re.compile(r"\bid\s*(?:is|:|=)\s*#?(\d{1,6})(?!\d)", re.I),
    re.compile(r"^\s*(?:it'?s\s+)?#?(\d{1,6})\s*\.?\s*$", re.I),
)
_THIRD_PARTY = re.compile(
    r"\b(?:of|for|whose|their|theirs|his|her|hers|someone|somebody|another|other|else|customers)\b"
    r"|\b(?!(?:it|that|here|there|what|let|he|she|who)['’]s\b)\w+['’]s\b",  # a possessive: "customer 2's"
    re.I)
_FIRST_PERSON = re.compile(r"\b(?:my|mine|me|i|i'm|im|it's|it is|this is|here|sure|yes|yeah|ok|okay)\b", re.I)


def identities(text: str) -> list[tuple[IdentityKind, str]]:
    """Every customer identity ``text`` mentions (emails, customer ids, phone numbers), each once."""
    found: list[tuple[IdentityKind, str]] = [("email", m.group(0)) for m in EMAIL.finditer(text)]
    without_emails = EMAIL.sub(" ", text)
    for pattern in _IDS:
        found += [("id", m.group(1)) for m in pattern.finditer(without_emails)]
    for pattern in _PHONES:
        found += [("phone", m.group(1).strip()) for m in pattern.finditer(without_emails)
                  if len(phone_digits(m.group(1))) >= 7]
    unique: list[tuple[IdentityKind, str]] = []
    for item in found:
        if not any(same_identity(item[0], item[1], other) for other in unique):
            unique.append(item)
    return unique


def identification(text: str) -> tuple[IdentityKind, str] | None:
    """The identity the user gives as their own in ``text``, if they do.

    One identity (a customer id, an email or a phone number), said in the first person ("my
    email is ...", "I'm Ana, customer 1", "sure: +1 555 0101") or alone in a short reply.
    "Show the invoices of x@y.com", "customer 2's invoices" or two identities at once are not
    identifications: they name someone, they do not say who the user is.
    """
    found = identities(text)
    if len(found) != 1 or _THIRD_PARTY.search(EMAIL.sub(" ", text)):
        return None
    if not _FIRST_PERSON.search(text) and len(text.split()) > 6:
        return None
    return found[0]


def same_identity(kind: IdentityKind, value: str, other: tuple[IdentityKind, str] | None) -> bool:
    """Whether ``other`` is the identity ``kind``/``value`` (emails in any case, phone numbers by
    their digits with or without the country code, ids as numbers)."""
    if other is None or other[0] != kind:
        return False
    if kind == "email":
        return value.strip().lower() == other[1].strip().lower()
    if kind == "phone":
        return same_phone(value, other[1])
    return value.isdigit() and other[1].isdigit() and int(value) == int(other[1])


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
