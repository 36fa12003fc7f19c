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


_IN_PLACE = re.compile(r"\b(?:in|at|for)\s+([A-Za-z_/ ]+?)\s*(?:right now|now|today)?\s*[?.!]*$", re.I)
_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


_TIME_WORDS = re.compile(r"\b(time|clock|date|day|today|now|hour|o'clock)\b", re.I)


def _time_args(text: str) -> Mapping[str, Any] | None:
    if not _TIME_WORDS.search(text):
        return None
    match = _IN_PLACE.search(text.strip())
    if match:
        place = match.group(1).strip()
        try:
            _zone(place)
        except ValueError:
            return None
        return {"timezone": place}
    return {"timezone": "UTC"}


def _days_args(text: str) -> Mapping[str, Any] | None:
    dates = _ISO_DATE.findall(text)
    if len(dates) >= 2:
        return {"start": dates[0], "end": dates[1]}
    if len(dates) == 1:
        return {"start": "today", "end": dates[0]}
    return None


async def remember(fact: str, context: ToolContext) -> str:
    """Save a fact or preference the user told you about themselves (favourite artists, genres,
    their name...) so that later conversations can use it. Write it as one short statement."""
    if context.memory is None:
        return "Nothing was saved: memory is only kept for logged-in users."
    item = await context.memory.remember(fact)
    return f"Saved to your memory: “{item.text}” (see or delete your memories with the Memories button)."


_PREFERENCE = re.compile(
    r"\b(my (favou?rite|name|birthday)\b|i (really |also |do )?(like|love|prefer|enjoy|adore|hate|dislike|listen to)\b"
    r"|i'?m (a|an|into|allergic|vegetarian|vegan)\b|i am (a|an|into|allergic|vegetarian|vegan)\b|call me\b"
    r"|remember (that|this|me)\b)",
    re.I,
)
_QUESTION = re.compile(r"^\s*(what|which|who|whom|when|where|why|how|do|does|did|can|could|would|is|are)\b", re.I)


def _remember_args(text: str) -> Mapping[str, Any] | None:
    """A statement about the user themselves (not a question about it) is worth remembering."""
    text = text.strip()
    if not _PREFERENCE.search(text) or text.endswith("?") or _QUESTION.match(text):
        return None
    fact = re.sub(r"^(please\s+)?remember (that\s+)?", "", text, flags=re.I).strip()
    return {"fact": fact[:1].upper() + fact[1:]} if fact else None


@hookimpl
def chorus_register_tools() -> list[ToolSpec]:
    return [
        ToolSpec(
            func=remember,
            keywords=("my favourite", "my favorite", "i like", "i love", "i prefer", "remember that", "call me"),
            offline_args=_remember_args,
            examples=("My favourite artist is Miles Davis.",),
        ),
        ToolSpec(
            func=current_time,
            keywords=("what time", "time is it", "current time", "time in", "what day", "today's date", "date today"),
            offline_args=_time_args,
            examples=("What time is it in Tokyo?",),
        ),
        ToolSpec(
            func=days_between,
            keywords=("how many days", "days until", "days between", "days since", "days from"),
            offline_args=_days_args,
            examples=("How many days until 2027-01-01?",),
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
