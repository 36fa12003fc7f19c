"""The built-in ``assistant``: a general helper with clock, calendar and memory tools.

It registers through the same hooks as any third-party plugin; the module is
listed in :data:`chorus.plugins.DEFAULT_PLUGINS`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from chorus.plugins import AgentSpec, ToolContext, ToolSpec, hookimpl

# Cities people ask about, mapped to their IANA zone; any IANA name works too.
_CITY_ZONES: dict[str, str] = {
    "utc": "UTC", "gmt": "UTC", "london": "Europe/London", "paris": "Europe/Paris",
    "berlin": "Europe/Berlin", "madrid": "Europe/Madrid", "rome": "Europe/Rome",
    "amsterdam": "Europe/Amsterdam", "lisbon": "Europe/Lisbon", "moscow": "Europe/Moscow",
    "new york": "America/New_York", "boston": "America/New_York", "chicago": "America/Chicago",
    "denver": "America/Denver", "los angeles": "America/Los_Angeles",
    "san francisco": "America/Los_Angeles", "seattle": "America/Los_Angeles",
    "toronto": "America/Toronto", "mexico city": "America/Mexico_City",
    "sao paulo": "America/Sao_Paulo", "são paulo": "America/Sao_Paulo",
    "buenos aires": "America/Argentina/Buenos_Aires", "tokyo": "Asia/Tokyo",
    "seoul": "Asia/Seoul", "beijing": "Asia/Shanghai", "shanghai": "Asia/Shanghai",
    "hong kong": "Asia/Hong_Kong", "singapore": "Asia/Singapore", "mumbai": "Asia/Kolkata",
    "delhi": "Asia/Kolkata", "india": "Asia/Kolkata", "dubai": "Asia/Dubai",
    "sydney": "Australia/Sydney", "melbourne": "Australia/Melbourne",
    "auckland": "Pacific/Auckland", "cairo": "Africa/Cairo", "johannesburg": "Africa/Johannesburg",
    "lagos": "Africa/Lagos", "nairobi": "Africa/Nairobi",
}


def _zone(name: str) -> ZoneInfo:
    key = name.strip()
    zone = _CITY_ZONES.get(key.lower(), key)
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        lowered = {z.lower(): z for z in available_timezones()}
        match = lowered.get(zone.lower()) or next(
            (z for low, z in lowered.items() if low.endswith("/" + zone.lower().replace(" ", "_"))), None
        )
        if match is None:
            raise ValueError(
                f"unknown time zone or city {name!r}; use an IANA name such as 'Europe/Paris'"
            ) from None
        return ZoneInfo(match)


def current_time(timezone: str = "UTC") -> str:
    """The current date and time in a time zone (an IANA name such as 'Asia/Tokyo', or a city)."""
    zone = _zone(timezone)
    now = datetime.now(zone)
    return f"It is {now:%H:%M} on {now:%A %d %B %Y} in {zone.key} (UTC{now:%z})."


def days_between(start: str, end: str) -> str:
    """Days from ``start`` to ``end``, both ISO dates (YYYY-MM-DD) or 'today'."""

    def parse(value: str) -> date:
        if value.strip().lower() == "today":
            return date.today()
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a date: write it as YYYY-MM-DD or 'today'") from None

    first, second = parse(start), parse(end)
    days = (second - first).days
    return f"From {first:%A %d %B %Y} to {second:%A %d %B %Y} is {days} day{'s' if abs(days) != 1 else ''}."


_IN_PLACE = re.compile(r"\b(?:in|at|for)\s+([^\W\d][\w/ .'-]*?)\s*[?.!]*$", re.I)
_TRAILING = re.compile(
    r"[\s,]*\b(?:right now|just now|now|today|currently|at the moment|at present|please|pls|plz|thanks|"
    r"thank you|there|then|exactly|precisely)\s*[?.!]*$", re.I)
_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_IANA = re.compile(r"\b[A-Za-z]+/[A-Za-z_]+(?:/[A-Za-z_]+)?\b")
# Asking for the time or the date (not "how are you today?", not "good morning").
_TIME_WORDS = re.compile(
    r"\b(?:time|clock|date|hour|o'clock|timezone)\b|\b(?:what|which) day\b|\bday is it\b", re.I)


def _place(text: str) -> str | None:
    """The city or time zone ``text`` asks about, as typed: "in <place>" at the end (after words
    such as "right now" or "please"), else a city Chorus knows or an IANA name anywhere."""
    trimmed = text.strip()
    while (shorter := _TRAILING.sub("", trimmed)) != trimmed:
        trimmed = shorter
    match = _IN_PLACE.search(trimmed)
    if match:
        place = match.group(1).strip(" .'")
        if place.lower().startswith("the "):
            place = place[4:]
        try:
            _zone(place)
            return place
        except ValueError:
            pass
    for city in sorted(_CITY_ZONES, key=len, reverse=True):
        found = re.search(rf"(?<!\w){re.escape(city)}(?!\w)", text, re.I)
        if found:
            return str(found.group(0))
    for name in _IANA.findall(text):
        try:
            _zone(name)
            return str(name)
        except ValueError:
            continue
    return None


def _time_args(text: str) -> Mapping[str, Any] | None:
    if not _TIME_WORDS.search(text) or _DAYS_WORDS.search(text):
        return None
    if any(day != date.today() for _at, day in _dates(text, past=False)):
        return None  # "what day of the week is 2026-12-25": days_between says, the clock does not
    place = _place(text)
    if place is not None:
        return {"timezone": place}
    if _IN_PLACE.search(_TRAILING.sub("", text.strip())) and re.search(r"\b(?:in|at|for)\s+[A-Z]", text):
        return None  # a place Chorus does not know: better no answer than UTC's
    return {"timezone": "UTC"}


_MONTHS = {name: number for number, names in enumerate(
    [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"),
     ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"), ("october", "oct"),
     ("november", "nov"), ("december", "dec")], start=1) for name in names}
_MONTH = "(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?:,?\s+(\d{4}))?"
_DATES = (
    ("iso", re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")),
    ("dmy", re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}{_YEAR}\b", re.I)),
    ("mdy", re.compile(rf"\b{_MONTH}\s+{_DAY}{_YEAR}\b", re.I)),
    ("word", re.compile(r"\b(today|tomorrow|yesterday)\b", re.I)),
)
_DAYS_WORDS = re.compile(r"\b(?:how many days|days (?:until|till|til|to|since|between|from|left|ago)|"
                         r"how long (?:until|till|til|since|ago|is it|from|between)|count the days)\b", re.I)
_DAYS_CUE = re.compile(r"\b(?:days?|long|until|till|til|since|between|from|ago|left|away|count|weeks?)\b", re.I)
_SINCE = re.compile(r"\b(?:since|ago|passed|elapsed|gone by)\b", re.I)


def _dates(text: str, *, past: bool) -> list[tuple[int, date]]:
    """The dates ``text`` names, with where they start; a date without a year is the next one
    (the last one when ``past``)."""
    today = date.today()
    found: list[tuple[int, date]] = []
    taken: list[range] = []
    for kind, pattern in _DATES:
        for m in pattern.finditer(text):
            if any(m.start() in span for span in taken):
                continue
            try:
                if kind == "iso":
                    day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
                elif kind == "word":
                    offset = {"today": 0, "tomorrow": 1, "yesterday": -1}[m.group(1).lower()]
                    day = date.fromordinal(today.toordinal() + offset)
                else:
                    d, month = (m.group(1), m.group(2)) if kind == "dmy" else (m.group(2), m.group(1))
                    number = _MONTHS[month.lower().rstrip(".")]
                    year = int(m.group(3)) if m.group(3) else today.year
                    day = date(year, number, int(d))
                    if not m.group(3) and (day < today if not past else day > today):
                        day = day.replace(year=year + (-1 if past else 1))
            except ValueError:
                continue
            taken.append(range(m.start(), m.end()))
            found.append((m.start(), day))
    return sorted(found)


def _days_args(text: str) -> Mapping[str, Any] | None:
    """Two dates (ISO, "25 December 2030", "March 3, 2027", "today"), or one and today."""
    if not _DAYS_CUE.search(text) and not _ISO_DATE.search(text):
        return None
    since = bool(_SINCE.search(text))
    dates = [d for _at, d in _dates(text, past=since)]
    if len(dates) >= 2:
        return {"start": dates[0].isoformat(), "end": dates[1].isoformat()}
    if len(dates) == 1 and (_DAYS_CUE.search(text) or _ISO_DATE.search(text)):
        if dates[0] == date.today() and not _ISO_DATE.search(text):
            return None  # "what day is it today": the clock's question
        other = dates[0].isoformat()
        return {"start": other, "end": "today"} if since else {"start": "today", "end": other}
    return None


async def remember(fact: str, context: ToolContext) -> str:
    """Save a fact or preference the user told you about themselves (favourite artists, genres,
    their name...) so that later conversations can use it. Write it as one short statement."""
    if context.memory is None:
        return "Nothing was saved: memory is only kept for logged-in users."
    item = await context.memory.remember(fact)
    return f"Saved to your memory: “{item.text}” (see or delete your memories with the Memories button)."


_PREFERENCE = re.compile(
    r"\b(my (favou?rite|fave|name|birthday|birth ?date|pronouns|job|hometown|home town|partner|wife|husband|"
    r"son|daughter|kids?|children|dog|cat|pet|diet)\b"
    r"|i (really |also |do |just )?(like|love|prefer|enjoy|adore|hate|dislike|listen to)\b"
    r"|i'?m (a|an|into|allergic|vegetarian|vegan|from|based in|called|named)\b"
    r"|i am (a|an|into|allergic|vegetarian|vegan|from|based in|called|named)\b"
    r"|i (live|work|was born|grew up|study|speak)\b|call me\b|my name's\b"
    r"|remember (that|this|me|i|my)\b|keep (that|this|it) in mind|(please )?note (that|down)\b"
    r"|don'?t forget|do not forget)",
    re.I,
)
_QUESTION = re.compile(
    r"^\s*(what|which|who|whom|when|where|why|how|do|does|did|can|could|would|is|are)\b(?!['’])", re.I)
_ASIDE = re.compile(
    r"^(?:please\s+)?(?:(?:reme?m?ber|note|don'?t forget|do not forget)(?:\s+that)?[,:]?\s+)"
    r"|[,;.\s]*(?:please\s+)?(?:keep (?:that|this|it) in mind|remember (?:that|this|it)|don'?t forget (?:that|it))"
    r"[.!]*$", re.I)


def _remember_args(text: str) -> Mapping[str, Any] | None:
    """A statement about the user themselves (not a question about it) is worth remembering."""
    text = text.strip()
    if not _PREFERENCE.search(text) or text.endswith("?") or _QUESTION.match(text):
        return None
    fact = text
    while (shorter := _ASIDE.sub("", fact).strip()) != fact:
        fact = shorter
    return {"fact": fact[:1].upper() + fact[1:]} if fact else None


@hookimpl
def chorus_register_tools() -> list[ToolSpec]:
    return [
        ToolSpec(
            func=remember,
            keywords=("my favourite", "my favorite", "i like", "i love", "i prefer", "remember that", "call me",
                      "my name is", "keep in mind", "don't forget", "note that", "i live in", "i'm from"),
            offline_args=_remember_args,
            examples=("My favourite artist is Miles Davis.",),
        ),
        ToolSpec(
            func=current_time,
            keywords=("what time", "time is it", "current time", "time in", "what day", "today's date", "date today",
                      "local time", "time zone", "what hour", "clock"),
            offline_args=_time_args,
            examples=("What time is it in Tokyo?",),
        ),
        ToolSpec(
            func=days_between,
            keywords=("how many days", "days until", "days between", "days since", "days from", "days till",
                      "days left", "how long until", "how long since", "count the days"),
            offline_args=_days_args,
            examples=("How many days until 2027-01-01?", "How many days from 1 May 2026 to 1 June 2026?"),
        ),
    ]


@hookimpl
def chorus_register_agents() -> list[AgentSpec]:
    return [
        AgentSpec(
            name="assistant",
            description=(
                "A general assistant: answers everyday questions, tells the time and date anywhere, and "
                "remembers the user's preferences across conversations."
            ),
            system_message=(
                "You are a friendly, concise assistant in a team of specialist agents. Answer the "
                "user's question directly. Use your tools for the current time and for date arithmetic "
                "rather than guessing. When the user tells you a lasting fact or preference about "
                "themselves, save it with `remember`; use what you remember about them when it helps."
            ),
            tools=("current_time", "days_between", "remember"),
            keywords=("time", "date", "today", "days", "about me", "remember", "recommend"),
            examples=("What time is it in Tokyo?",),
        )
    ]
