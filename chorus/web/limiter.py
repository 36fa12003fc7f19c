"""Rate limits on what users send (README, "Rate limits"), with the ``limits`` library.

``CHORUS_RATE_LIMITS`` caps the messages each user sends (from the page, the widget, the API and
background runs alike), ``CHORUS_UPLOAD_RATE_LIMITS`` their uploads; a visitor without a login
counts by address. With ``CHORUS_REDIS_URL`` the counts are kept in Redis, shared by every
worker; otherwise in each process. An API key's own limit (``CHORUS_API_RATE_LIMIT``,
chorus.web.api.access) uses the same storage. If Redis cannot be reached, requests are let
through (and the log says why): a limit never stops the service.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from chorus.settings import Settings

log = logging.getLogger("chorus.limits")
REDIS_TIMEOUT_S = 0.5
SKIP_AFTER_FAILURE_S = 30.0  # after a storage failure, requests pass without asking it for this long
Kind = Literal["messages", "uploads", "api"]


@dataclass(frozen=True)
class Refusal:
    """Over a limit: wait ``retry_after`` seconds; ``limit`` says which (``10 per 1 minute``)."""

    retry_after: int
    limit: str

    def message(self, what: str) -> str:
        return (f"You have sent {what} faster than this server allows ({self.limit}). You may send again in "
                f"{_duration(self.retry_after)}.")


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} s"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes" if minutes < 90 else f"{math.ceil(minutes / 60)} hours"


def storage_for(settings: Settings) -> Storage:
    """Redis (``CHORUS_REDIS_URL``), shared by every worker; else this process's memory."""
    if settings.redis_url:
        from limits.aio.storage import RedisStorage

        url = settings.redis_url
        if not url.startswith("async+"):
            url = "async+" + url
        # Short waits: a Redis that does not answer must not hold every message up.
        return RedisStorage(url, implementation="redispy", socket_connect_timeout=REDIS_TIMEOUT_S,
                            socket_timeout=REDIS_TIMEOUT_S)
    return MemoryStorage()


def _parse(setting: str, value: str) -> list[RateLimitItem]:
    try:
        return parse_many(value) if value.strip() else []
    except ValueError:
        raise ValueError(f"{setting} {value!r}: write it like '10/minute' or '100/hour;10/minute'") from None


class Limiter:
    """The limits of one server process (their counts shared through Redis when configured)."""

    def __init__(self, settings: Settings) -> None:
        self.items: dict[Kind, list[RateLimitItem]] = {
            "messages": _parse("CHORUS_RATE_LIMITS", settings.rate_limits),
            "uploads": _parse("CHORUS_UPLOAD_RATE_LIMITS", settings.upload_rate_limits),
            "api": _parse("CHORUS_API_RATE_LIMIT", settings.api_rate_limit),
        }
        self.limiter = MovingWindowRateLimiter(storage_for(settings))
        self._warned_at = 0.0
        self._skip_until = 0.0

    async def hit(self, kind: Kind, who: str) -> Refusal | None:
        """Count one ``kind`` for ``who``; a :class:`Refusal` when it is one too many."""
        if time.monotonic() < self._skip_until:
            return None
        for item in self.items[kind]:
            try:
                if await self.limiter.hit(item, "chorus", kind, who):
                    continue
                stats = await self.limiter.get_window_stats(item, "chorus", kind, who)
            except Exception as exc:  # Redis away: let it through for a while, say so (once a minute)
                self._skip_until = time.monotonic() + SKIP_AFTER_FAILURE_S
                if time.monotonic() - self._warned_at > 60:
                    self._warned_at = time.monotonic()
                    log.error("rate limits are not applied: their storage cannot be reached (%s)", exc)
                return None
            return Refusal(retry_after=max(1, math.ceil(stats.reset_time - time.time())), limit=str(item))
        return None


_limiter: Limiter | None = None


def limiter(settings: Settings) -> Limiter:
    """This process's limiter (made on first use)."""
    global _limiter
    if _limiter is None or _limiter.items["messages"] != _parse("CHORUS_RATE_LIMITS", settings.rate_limits):
        _limiter = Limiter(settings)
    return _limiter
