"""How the offline model reads a message: words, stems, synonyms, typos. No model, no I/O.

The offline model compares what a user typed with what a team's specs say about themselves
(agent and tool names, descriptions, keywords, examples). This module makes that comparison
forgiving the ways people actually write:

- *stems*: "invoices", "invoiced" and "invoice" are one word; so are "bought" and "buy";
- *synonyms*: a small thesaurus of everyday words ("receipt" ~ "invoice", "tune" ~ "song",
  "money back" ~ "refund", "who helped" ~ "who handled") so a message need not use the
  spec's own words;
- *typos*: a word the team's specs do not know is read as the known word one or two
  keystrokes away ("tiem" -> "time", "reccomend" -> "recommend", "kilomters" -> "kilometers");
- *chat spelling*: "u", "ur", "pls", "wat", "whats".

A :class:`Lexicon` is built once per team from its specs (cached). :func:`read` turns a
message into a :class:`Reading`: the text as typed, the text with its typos corrected, and the
message's *concepts* (stems, each synonym group folded into one), which scoring compares.
:meth:`Lexicon.rephrase` rewrites a message in one tool's own words, so a tool's
``offline_args`` parser that looks for "refund" also understands "can I get my money back?".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")

STOPWORDS = frozenset(
    "a an the and or but of to in on at for from by with about as is are was were be been am do does did "
    "i me my you your we our it its this that these those what which who whom how can could would should "
    "will shall may might please tell show give get let us some any there here just like want need know "
    "have has had not no yes if then than so very much many more most also too into out up down over "
    "use using used one i'm it's what's you're don't can't isn't there's that's where when why "
    "got anything something thing things ok okay hey".split()
)

# How people type in chat, as the words the specs use.
SLANG: Mapping[str, str] = {
    "u": "you", "ur": "your", "r": "are", "pls": "please", "plz": "please", "pleas": "please",
    "wat": "what", "wut": "what", "wot": "what", "whats": "what's", "hows": "how's", "wheres": "where's",
    "thx": "thanks", "thnx": "thanks", "ty": "thanks", "im": "i'm", "ive": "i've", "dont": "don't",
    "cant": "can't", "didnt": "didn't", "doesnt": "doesn't", "isnt": "isn't", "abt": "about", "cuz": "because",
    "gimme": "give me", "wanna": "want to", "gonna": "going to", "lemme": "let me", "tmrw": "tomorrow",
    "msg": "message", "info": "information", "fav": "favourite", "fave": "favourite", "faves": "favourites",
    "luv": "love", "wud": "would", "cud": "could", "shud": "should", "hav": "have", "ya": "you", "yr": "your",
    "hrs": "hours", "mins": "minutes", "secs": "seconds", "yrs": "years", "pic": "picture", "convo": "conversation",
}

IRREGULAR: Mapping[str, str] = {
    "bought": "buy", "spent": "spend", "paid": "pay", "sold": "sell", "took": "take", "made": "make",
    "gave": "give", "told": "tell", "went": "go", "heard": "hear", "knew": "know", "thought": "think",
    "saw": "see", "was": "be", "were": "be", "did": "do", "done": "do", "better": "good", "best": "good",
    "wrote": "write", "written": "write", "ran": "run", "cost": "cost", "children": "child",
    "times": "times", "news": "news", "series": "series", "lyrics": "lyrics", "blues": "blues",
}

# Everyday words for the same thing. The first word of a group names it; phrases are allowed.
SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("buy", "purchase", "order", "shop", "bought"),
    ("spend", "pay", "cost", "expense", "spent", "paid"),
    ("invoice", "receipt", "bill", "billing"),
    ("song", "track", "tune", "single"),
    ("album", "record", "lp", "discography", "release", "ep"),
    ("artist", "band", "group", "singer", "musician", "performer"),
    ("recommend", "recommendation", "suggest", "suggestion", "idea", "advice", "pick"),
    ("favourite", "favorite", "fave", "preferred"),
    ("love", "adore", "enjoy", "dig", "fan"),
    ("time", "clock", "hour", "o'clock"),
    ("calculate", "compute", "calc", "evaluate", "solve", "work out", "figure out", "sum up"),
    ("plus", "add", "sum"),
    ("minus", "subtract", "take away", "deduct"),
    ("times", "multiply", "product"),
    ("divide", "divided", "split"),
    ("refund", "money back", "reimburse", "reimbursement", "return"),
    ("employee", "staff", "rep", "representative", "clerk", "salesperson", "help", "handle", "assist",
     "serve", "took care", "take care", "look after", "looked after"),
    ("expensive", "pricey", "priciest", "costly", "costliest", "dearest"),
    ("remember", "memorise", "memorize", "keep in mind", "note", "don't forget", "do not forget", "save"),
    ("make", "create", "build", "write", "develop"),
    ("configure", "set up", "setup", "config", "connect", "hook up", "switch to"),
    ("model", "llm"),
    ("login", "log in", "sign in", "signin", "logon", "log on"),
    ("stop", "cancel", "halt", "interrupt", "abort"),
    ("history", "past", "previous", "earlier"),
    ("newest", "latest", "last", "recent", "most recent"),
    ("oldest", "earliest"),
    ("genre", "style", "kind of music", "type of music"),
    ("email", "mail", "e-mail"),
    ("phone", "mobile", "cell", "telephone"),
    ("plugin", "extension", "addon", "add-on"),
    ("conversation", "chat", "thread"),
)


def stem(word: str) -> str:
    """A light, predictable stem: the same for "invoices", "invoiced", "invoice", "bought"/"buy"."""
    word = word.lower().replace("’", "'")
    if word in IRREGULAR:
        return IRREGULAR[word]
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes", "zes")):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix, least in (("ing", 6), ("ed", 5)):
        if len(word) >= least and word.endswith(suffix):
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
                word = word[:-1]  # "stopped" -> "stop"
            break
    if len(word) > 5 and word.endswith("ly"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """Lower-case words of ``text``, chat spellings written out ("u" -> "you")."""
    result: list[str] = []
    for w in WORD.findall(text.lower().replace("’", "'")):
        result.extend(SLANG.get(w, w).split())
    return result


def _phrase_stems(phrase: str) -> tuple[str, ...]:
    return tuple(stem(w) for w in tokens(phrase))


@lru_cache(maxsize=1)
def _thesaurus() -> tuple[dict[str, str], dict[tuple[str, ...], str]]:
    """(stem -> concept) for one-word synonyms, (stems -> concept) for phrases."""
    single: dict[str, str] = {}
    phrases: dict[tuple[str, ...], str] = {}
    for group in SYNONYMS:
        concept = stem(group[0])
        for member in group:
            key = _phrase_stems(member)
            if len(key) == 1:
                single.setdefault(key[0], concept)
            elif key:
                phrases.setdefault(key, concept)
    return single, phrases


def concept_sequence(text: str) -> list[str]:
    """The message as concepts, in order, stopwords kept: stems, each synonym group as one word."""
    single, phrases = _thesaurus()
    stems = [stem(w) for w in tokens(text)]
    longest = max((len(k) for k in phrases), default=0)
    result: list[str] = []
    i = 0
    while i < len(stems):
        for n in range(min(longest, len(stems) - i), 1, -1):
            concept = phrases.get(tuple(stems[i : i + n]))
            if concept is not None:
                result.append(concept)
                i += n
                break
        else:
            result.append(single.get(stems[i], stems[i]))
            i += 1
    return result


_STOP_STEMS = frozenset(stem(w) for w in STOPWORDS) | STOPWORDS


def concepts(text: str) -> set[str]:
    """The message's content concepts (no stopwords)."""
    return {c for c in concept_sequence(text) if c not in _STOP_STEMS and c not in STOPWORDS}


def phrase_hits(sequence: list[str], phrases: Iterable[str]) -> int:
    """How many of ``phrases`` occur in the concept ``sequence`` (as a run of whole words)."""
    padded = f" {' '.join(sequence)} "
    return sum(1 for p in phrases if (key := " ".join(concept_sequence(p))) and f" {key} " in padded)


def phrase_score(reading: Reading, phrases: Iterable[str], *, weight: int = 3) -> int:
    """``weight`` for each phrase the message says in the phrase's own words (any inflection),
    one less for each it says with a synonym ("tune" for "song")."""
    stems = f" {' '.join(reading.stems)} "
    said = f" {' '.join(reading.sequence)} "
    best: dict[str, int] = {}  # per meaning: "purchase" and "bought" are one piece of evidence
    for phrase in phrases:
        key = " ".join(concept_sequence(phrase))
        own = " ".join(stem(w) for w in tokens(phrase))
        if own and f" {own} " in stems:
            best[key] = weight
        elif key and f" {key} " in said:
            best[key] = max(best.get(key, 0), weight - 1)
    return sum(best.values())


# -- typos ----------------------------------------------------------------------------------------


def distance(a: str, b: str, limit: int) -> int:
    """Damerau-Levenshtein distance (adjacent swaps count one), or ``limit + 1`` once above it."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


def _plain_slip(typed: str, known: str) -> bool:
    """Whether a short word differs from a known one by a swap (any length from 4) or by one
    letter missing or doubled (from 5 letters): slips of the fingers, not other words."""
    if len(typed) == len(known):
        return len(typed) >= 4 and sorted(typed) == sorted(known) and distance(typed, known, 1) == 1
    if len(typed) == 3:
        return len(known) == 4 and distance(typed, known, 1) == 1  # "tme" for "time"
    if len(typed) < 5:
        return False
    return distance(typed, known, 1) == 1


def _allowed(word: str) -> int:
    """Keystrokes a misspelt word of this length may be off by (three letters: only one missing)."""
    if len(word) < 3:
        return 0
    return 1 if len(word) < 8 else 2


@dataclass(frozen=True)
class Lexicon:
    """The words a team's specs use (as stems), each with a spelling to write it back."""

    spelling: Mapping[str, str]
    """stem -> the word as the specs write it."""
    by_initial: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, texts: Iterable[str]) -> Lexicon:
        spelling: dict[str, str] = {}
        for text in texts:
            for w in tokens(text):
                if w.isalpha() and len(w) > 2:
                    key = stem(w)
                    if key not in spelling or len(w) < len(spelling[key]):
                        spelling[key] = w  # the plainest form: "plugin", not "plugins"
        for group in SYNONYMS:
            for member in group:
                for w in tokens(member):
                    spelling.setdefault(stem(w), w)
        for w in STOPWORDS:
            spelling.setdefault(stem(w), w)
        initials: dict[str, list[str]] = {}
        for s in spelling:
            initials.setdefault(s[:1], []).append(s)
        return cls(spelling=spelling, by_initial={k: tuple(v) for k, v in initials.items()})

    def knows(self, word: str) -> bool:
        return stem(word) in self.spelling

    def correction(self, word: str) -> str | None:
        """The known word ``word`` is a typo of (same first letter, one or two keystrokes off), if
        exactly one is nearest.

        Short words are held to stricter rules, since many short words are real words the team
        never mentions: four letters may only swap two letters ("tiem"); five or six may also
        miss or double one ("recipts"), but not change one ("story" is not "store").
        """
        low = word.lower()
        if not low.isalpha() or low in SLANG:
            return None
        if self.knows(low):
            known = self.spelling[stem(low)]
            # "favourit" is "favourite" cut short, not another form of it ("favourites")
            return known if low == stem(low) and known != low and known.startswith(low) else None
        limit = _allowed(low)
        if limit == 0:
            return None
        key = stem(low)
        best: tuple[int, int, int] | None = None
        found: str | None = None
        for order, known in enumerate(self.by_initial.get(low[:1], ())):
            if len(known) < 4:
                continue
            spelt = self.spelling[known]
            d = min(distance(key, known, limit), distance(low, spelt, limit))
            if d > limit or (len(low) < 7 and not (_plain_slip(low, spelt) or _plain_slip(key, known))):
                continue
            # Nearest first; between equally near words ("kilometers", "kilometres"), the one
            # nearest as typed, then the one the specs use first: the choice is always the same.
            rank = (d, distance(low, spelt, limit + 2), order)
            if best is None or rank < best:
                best, found = rank, spelt
        return found

    def correct(self, text: str) -> str:
        """``text`` with chat spellings written out and misspelt words replaced by the known word.

        Capitalised words after the first are left alone: they are names ("Coltrane").
        """
        def fix(match: re.Match[str]) -> str:
            word = match.group(0)
            slang = SLANG.get(word) if word.islower() else None
            if slang is not None:
                return slang
            if match.start() > 0 and word[:1].isupper():
                return word
            return self.correction(word) or word

        return WORD.sub(fix, text)

    def rephrase(self, text: str, own_words: Iterable[str]) -> str:
        """``text`` with each synonym replaced by the word ``own_words`` use for it ("money back"
        -> "refund" when the tool says "refund"); words it already uses stay as they are."""
        single, phrases = _thesaurus()
        theirs: dict[str, str] = {}
        used: set[str] = set()
        for text_ in own_words:
            for w in tokens(text_):
                s = stem(w)
                used.add(s)
                concept = single.get(s)
                if concept is not None:
                    theirs.setdefault(concept, w)
        if not theirs:
            return text
        out: list[str] = []
        position = 0
        words = list(WORD.finditer(text))
        i = 0
        longest = max((len(k) for k in phrases), default=0)
        while i < len(words):
            replaced = False
            for n in range(min(longest, len(words) - i), 0, -1):
                key = tuple(stem(m.group(0)) for m in words[i : i + n])
                concept = phrases.get(key) if n > 1 else single.get(key[0])
                if concept is None or concept not in theirs or (n == 1 and key[0] in used):
                    continue
                out.append(text[position : words[i].start()])
                out.append(theirs[concept])
                position = words[i + n - 1].end()
                i += n
                replaced = True
                break
            if not replaced:
                i += 1
        out.append(text[position:])
        return "".join(out)


@dataclass(frozen=True)
class Reading:
    """One message as the offline model reads it."""

    text: str
    """As typed."""
    corrected: str
    """Chat spellings written out, typos fixed (the same string when there were none)."""
    stems: tuple[str, ...]
    """The corrected message's words as stems, stopwords kept."""
    sequence: tuple[str, ...]
    """The corrected message as concepts, stopwords kept (for keyword phrases)."""
    content: frozenset[str]
    """The corrected message's content concepts."""

    def variants(self) -> tuple[str, ...]:
        """The texts worth handing a tool's parser: as typed, then corrected."""
        return (self.text,) if self.corrected == self.text else (self.text, self.corrected)


def read(text: str, lexicon: Lexicon | None = None) -> Reading:
    corrected = lexicon.correct(text) if lexicon is not None else text
    return Reading(text=text, corrected=corrected, stems=tuple(stem(w) for w in tokens(corrected)),
                   sequence=tuple(concept_sequence(corrected)), content=frozenset(concepts(corrected)))
