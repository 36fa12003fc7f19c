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
    """Words without the punctuation around them or a possessive "'s", so "AC/DC?" still contains
    "ac/dc" and "Nirvana's albums" "nirvana"."""
    punctuation = ".,?!;:\"“”‘’()[]"
    words = (re.sub(r"['’]s$", "", word.strip(punctuation)).strip(punctuation) for word in text.split())
    return " ".join(filter(None, words))


# Words that say the message is about music, next to which a short name is a name ("songs by queen").
MUSIC_CUE = re.compile(
    r"\b(?:albums?|records?|discography|lps?|eps?|releases?|released|songs?|tracks?|tunes?|music|band|artist|"
    r"singer|group|stuff|anything|something|by|from)\b", re.I)
# Words of artist names that say nothing on their own ("The London Symphony Orchestra").
_NAME_FILLER = frozenset(
    "the and band group orchestra symphony philharmonic quartet quintet trio ensemble choir chamber academy "
    "various artists music musica sound sounds brothers sisters project experience company society club "
    "london berlin vienna english national royal".split())


def artists_in(text: str, known: Iterable[tuple[int, str]]) -> list[str]:
    """The artists ``text`` names, the way people name them: the whole name (:func:`names_in`,
    short names in their own case), a short name in any case next to a music word ("songs by
    queen"), a name with a slip of the fingers ("led zepelin"), or a word only one artist's name
    has ("any Coltrane albums?", "Bob Marley songs")."""
    known = list(known)
    found = names_in(text, known, exact_case_below=6)
    if found:
        return found
    folded = f" {_spaced(fold(text))} "
    cued = MUSIC_CUE.search(text) is not None
    for _id, name in sorted(known, key=lambda k: -len(k[1])):
        key = _spaced(fold(name))
        if len(key) < 2 or f" {key} " not in folded:
            continue
        escaped = re.escape(key)
        if re.search(rf" (?:by|from|of|like|love|adore|enjoy|into|about|fan of) {escaped} "
                     rf"|(?<= ){escaped} (?:albums?|songs?|tracks?|records?|"
                     rf"discography|music|tunes?|stuff) ", folded):
            return [name]
    words = folded.split()
    near = _misspelt(words, known)
    if near:
        return [near]
    if not cued and not any(w[:1].isupper() for w in text.split()[1:]):
        return []
    owner = _distinctive(words, known)
    return [owner] if owner else []


def _misspelt(words: list[str], known: list[tuple[int, str]]) -> str | None:
    """The one artist a run of the message's words spells with a slip ("led zepelin", "metalica")."""
    best: tuple[int, int, str] | None = None
    tied = False
    for _id, name in known:
        key = _spaced(fold(name))
        size = len(key.split())
        for i in range(len(words) - size + 1):
            phrase = " ".join(words[i : i + size])
            if not slip(phrase, key):
                continue
            rank = (distance(phrase, key, 2), -len(key), name)
            if best is not None and rank[:2] == best[:2] and name != best[2]:
                tied = True
            elif best is None or rank < best:
                best, tied = rank, False
    return best[2] if best and not tied else None


def slip(typed: str, name: str) -> bool:
    """Whether ``typed`` is ``name`` with a slip of the fingers: same first letter; one letter
    missing, doubled or swapped (a short name), or up to two keystrokes off (eight letters or
    more). A different short word is not a slip ("rick" is not "rock")."""
    if typed == name or typed[:1] != name[:1] or len(name) < 4 or len(typed) < 3:
        return False
    if len(name) >= 8:
        return distance(typed, name, 2) <= 2
    if len(typed) == len(name):
        return sorted(typed) == sorted(name) and distance(typed, name, 1) == 1
    return distance(typed, name, 1) == 1


def distance(a: str, b: str, limit: int) -> int:
    """Edit distance, an adjacent swap counting one; ``limit + 1`` once it is above ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before: list[int] = []
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(row[j] + 1, current[j - 1] + 1, row[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        before, row = row, current
    return row[-1]


def names_near(text: str, known: Iterable[tuple[int, str]]) -> list[str]:
    """Known names in ``text`` as written (:func:`names_in`), else by a part of a compound name
    ("hip hop" for "Hip Hop/Rap"), else the one it misspells."""
    known = list(known)
    found = names_in(text, known)
    if found:
        return found
    parts = [(number, part) for number, name in known
             for part in re.split(r"\s*/\s*|\s+(?:&|and)\s+", name) if len(part) >= 3 and part != name]
    whole = {number: name for number, name in known}
    found = [whole[number] for number, part in parts if part in names_in(text, [(number, part)])]
    if found:
        return found[:1]
    near = _misspelt(_spaced(fold(text)).split(), known)
    return [near] if near else []


def _distinctive(words: list[str], known: list[tuple[int, str]]) -> str | None:
    """The artist whose name alone has a word of the message (five letters or more)."""
    owners: dict[str, set[str]] = {}
    for _id, name in known:
        for word in _spaced(fold(name)).split():
            if len(word) >= 5 and word.isalpha() and word not in _NAME_FILLER:
                owners.setdefault(word, set()).add(name)
    hits = {next(iter(owners[w])) for w in words if len(owners.get(w, ())) == 1}
    return hits.pop() if len(hits) == 1 else None


def folded_name(text: str) -> str:
    """A name as it is compared: folded, without punctuation around words or a polite "please"."""
    return _spaced(fold(_FILLER.sub("", text)))


def whole_name(text: str, known: Iterable[tuple[int, str]]) -> str | None:
    """The known name ``text`` is, and nothing else (a fragment such as "Led Zeppelin?" or, with a
    slip, "metalica")."""
    said = folded_name(text)
    if not said:
        return None
    known = list(known)
    for _id, name in known:
        if _spaced(fold(name)) == said:
            return name
    size = len(said.split())
    return _misspelt(said.split(), [(i, n) for i, n in known if len(_spaced(fold(n)).split()) == size])


_FILLER = re.compile(r"^\s*(?:(?:and|so|ok|okay|hey|hi|hello|please|pls)\b[\s,]*)*|"
                     r"[\s,]*\b(?:please|pls|thanks|thank you)\b[\s!.?]*$", re.I)


def clean_phrase(phrase: str) -> str:
    """A name a user typed, without quotes, trailing punctuation or leading articles."""
    phrase = phrase.strip().strip("\"“”'‘’*_").strip()
    phrase = re.sub(r"[?!.,;:]+$", "", phrase).strip().strip("\"“”'‘’").strip()
    return re.sub(r"^(?:the\s+(?:band|artist|group|singer)\s+|the\s+song\s+|the\s+track\s+)", "", phrase, flags=re.I)


_SONG_TITLE = (
    re.compile(r"\b(?:song|track|tune)s?\s+(?:called|named|titled)\s+(?P<t>.+)$", re.I),
    re.compile(r"\b(?:the|a)\s+(?:song|track|tune|single)\s+(?P<t>.+)$", re.I),
    re.compile(r"[\"“‘](?P<t>[^\"”’]+)[\"”’]|(?:^|\s)'(?P<q>[^']+)'(?:\s|[?.!]|$)"),
    re.compile(r"\bis\s+(?P<t>.+?)\s+(?:in the (?:store|shop|catalog|catalogue)|in stock|available|for sale|"
               r"on sale|sold here|on (?:the )?(?:store|site))\b", re.I),
    re.compile(r"\b(?:do you have|have you got|have you|do you sell|do you carry|do you stock|is there|"
               r"can i (?:buy|get|download)|(?:i'?m |i am )?looking for|(?:search|look) for|find me|find)\s+"
               r"(?:the\s+(?:song|track|tune)\s+|a\s+(?:song|track|tune)\s+)?(?P<t>.+)$", re.I),
)
_NOT_A_TITLE = re.compile(
    r"^(?:by|from|of|on|in|for|with|about|anything|something|stuff|everything|all|more|it|that|this)\b"
    r"|\b(?:albums?|records?|discography|songs|tracks|music|genres?|"
    r"artists?|bands?|invoices?|purchases?|orders?|recommendations?)\b", re.I)
_DETERMINER = re.compile(r"^(?:any|some|a few|the)\s+", re.I)


def song_title(text: str) -> str | None:
    """The song a message asks about ("Do you have the song Black Dog?" -> "Black Dog"); not a
    phrase about albums, artists or lists of songs ("do you have any Queen albums")."""
    for pattern in _SONG_TITLE:
        if m := pattern.search(text.strip()):
            found = m.groupdict().get("t") or m.groupdict().get("q") or ""
            title = clean_phrase(re.split(r"\s+(?:by|from|on)\s+", found, maxsplit=1)[0])
            title = _DETERMINER.sub("", title) if not re.match(r"^the\s", found.strip(), re.I) else title
            if title and not _NOT_A_TITLE.search(title):
                return title
    return None


_ARTIST_PHRASE = (
    re.compile(r"\b(?:albums?|records?|discography|songs?|tracks?|music|anything|something|stuff|everything)"
               r"\s+(?:by|from|of)\s+(?P<a>.+)$", re.I),
    re.compile(r"\b(?:does|did|has)\s+(?P<a>.+?)\s+(?:have|has|got|made|make|release|released|record|recorded)\b",
               re.I),
    re.compile(r"^(?:what|which|list|show)?\s*(?P<a>.+?)(?:'s|’s)\s+(?:albums?|songs?|tracks?|records?|discography)",
               re.I),
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
    r"\b(?:i (?:really |also |just |absolutely |do )?(?:love|like|enjoy|adore|dig)|i'?m (?:really |so |big )?into|"
    r"i am (?:really |so )?into|my favou?rite|my fave|i (?:often |mostly |usually )?listen to|fan of)\b"
    r"|^\s*(?:really |just )?(?:love|loving|adore|enjoy|big fan of|huge fan of)\b", re.I)
_QUESTION = re.compile(r"^\s*(?:what|which|who|do|does|did|can|could|would|is|are|have|has)\b", re.I)


def states_taste(text: str) -> bool:
    """Whether the message tells what the user likes (not a question about it)."""
    return bool(_TASTE.search(text)) and not _QUESTION.match(text) and not text.strip().endswith("?")


# -- the customer's own purchases -----------------------------------------------------------------

_ACCOUNT_NOUNS = re.compile(
    r"\b(?:invoices?|purchases?|orders?|receipts?|bills?|billing|spending|transactions?|order history|"
    r"purchase history)\b", re.I)
_OWN_BUYING = re.compile(
    r"\b(?:i|i've|i have|i'd|we)\s+(?:ever\s+|already\s+|just\s+|recently\s+|last\s+)?"
    r"(?:bought|purchased|paid|spent|ordered)\b"
    r"|\b(?:did|have|do)\s+i\s+(?:ever\s+|already\s+)?(?:buy|bought|pay|paid|spend|spent|order|ordered|purchase|"
    r"purchased|owe)\b|\bhow much (?:did|have|do) i\b|\bmy (?:spending|history|account)\b", re.I)
_OLDEST = re.compile(r"\b(?:oldest|earliest|first (?:purchase|order|invoice)|first time|longest ago)\b", re.I)
_BY_TOTAL = re.compile(r"\b(?:by total|total|biggest|largest|most money|highest total|by amount)\b", re.I)
_BY_PRICE = re.compile(
    r"\b(?:unit price|prices?|priced|pricier|priciest|pricey|expensive|costlier|costliest|costly|dearest|"
    r"cheapest|(?:pay|paid|cost|spent|spend) the most|highest price)\b", re.I)
_BOUGHT_THINGS = re.compile(r"\b(?:invoices?|purchases?|bought|orders?|ordered|tracks?|songs?|paid|pay)\b", re.I)
_INVOICE_NUMBER = re.compile(r"\b(?:invoice|receipt|bill)\s*(?:number|no\.?|#)?\s*#?(\d+)\b"
                             r"|\border\s*(?:number|no\.?|#)\s*#?(\d+)\b", re.I)


def invoice_number(text: str) -> int | None:
    """The invoice a message names ("invoice 98", "receipt #12", "order number 7")."""
    m = _INVOICE_NUMBER.search(text)
    return int(m.group(1) or m.group(2)) if m else None


def asks_by_price(text: str) -> bool:
    """Whether a message asks for the customer's purchases by price ("what's the most expensive
    thing I bought?", "which tracks did I pay the most for")."""
    return bool(_BY_PRICE.search(text)) and bool(_BOUGHT_THINGS.search(text) or _OWN_BUYING.search(text))


_ONE_INVOICE = re.compile(
    r"\bwho (?:helped|handled|served|assisted|dealt with|processed|took care of|looked after)\b"
    r"|\b(?:support|sales) (?:rep|representative|agent|person)\b|\bwhich (?:employee|agent|person)\b"
    r"|\bwhat was (?:on|in)\b|\bdetails (?:of|on|about)\b|\bwhat did i (?:get|buy) (?:in|on|with)\b", re.I)
_LATEST = re.compile(r"\b(?:last|latest|most recent|newest|previous|recent)\b", re.I)


def asks_latest_invoice(text: str) -> bool:
    """Whether a message asks about the customer's latest invoice without its number ("who helped
    me with my last order?", "what was on my most recent invoice?")."""
    return (invoice_number(text) is None and bool(_ONE_INVOICE.search(text)) and bool(_LATEST.search(text))
            and bool(_ACCOUNT_NOUNS.search(text) or _OWN_BUYING.search(text)))


def invoices_order(text: str) -> str | None:
    """How a message asks for the customer's invoices ("newest", "oldest", "total"), or None when
    it does not ask about them (a price list or one invoice are other requests)."""
    if not (_ACCOUNT_NOUNS.search(text) or _OWN_BUYING.search(text)):
        return None
    if asks_by_price(text) or invoice_number(text) is not None or asks_latest_invoice(text):
        return None
    if _OLDEST.search(text):
        return "oldest"
    if _BY_TOTAL.search(text):
        return "total"
    return "newest"


_BUY = re.compile(r"\b(?:buy|order|purchase)\s+(?:me\s+)?(?:the\s+|a\s+)?(?:song|track|single)\s+"
                  r"[\"“']?(?P<t>[^\"”'?!.]+?)[\"”']?\s*(?:please)?[?!.]*$", re.I)


def track_to_buy(text: str) -> str | None:
    """The track a message asks to buy ("Buy the song Black Dog" -> "Black Dog")."""
    found = _BUY.search(text.strip())
    if not found:
        return None
    title = re.split(r"\s+(?:by|from)\s+", found.group("t").strip(), maxsplit=1)[0].strip()
    return title or None
