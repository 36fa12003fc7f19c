"""Retries, fallbacks and a circuit breaker for model calls.

A model call tries the model, then each of ``CHORUS_MODEL_FALLBACKS`` in order
(``chorus.models._sources`` walks the list); each attempt on a model is retried
(``CHORUS_MODEL_RETRIES``, with a short backoff) when the failure may pass (a dropped connection,
a 5xx, a rate limit). Every model has a process-wide :class:`Circuit`: one that failed more than
``CHORUS_MODEL_ALLOWED_FAILS`` times within a minute, or hung once, is skipped for
``CHORUS_MODEL_COOLDOWN`` seconds, so calls go straight to the fallbacks (or to the offline model)
while it cools down. Failures that are ours, not the provider's (waiting for a connection from
our own pool when the process is overloaded, a request the provider rejects as malformed), never
open a circuit.

These used to be litellm's ``Router``; it can only call through litellm's stream wrapper, which
costs five times what the stream itself does (``chorus.models.providers``), so the walk is ours and
each attempt goes to the fastest transport for its provider.

A provider that hangs must cost a bounded wait: every attempt's HTTP reads time out after the
first-byte timeout, and the client watches the stream itself: a deadline for the reply to begin,
retries and fallbacks included, and a stall timeout between chunks (:func:`within`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

FAIL_WINDOW_S = 60.0
"""Failures count towards opening a circuit for this long (``CHORUS_MODEL_ALLOWED_FAILS`` per minute)."""


@dataclass(frozen=True)
class CircuitKey:
    """One model as one client reaches it: the same model behind another base URL or key is another."""

    model: str
    api_base: str | None
    api_key: str | None


@dataclass
class Circuit:
    """Whether a model is being skipped, and the failure that made it so."""

    failures: deque[float] = field(default_factory=deque)
    open_until: float = 0.0
    reason: str | None = None

    def is_open(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) < self.open_until

    def failed(self, reason: str, *, allowed_fails: int, cooldown_s: float, at_once: bool = False) -> bool:
        """Count a failure; open the circuit when it is one too many (or ``at_once``). Whether it opened."""
        now = time.monotonic()
        self.failures.append(now)
        while self.failures and self.failures[0] < now - FAIL_WINDOW_S:
            self.failures.popleft()
        if at_once or len(self.failures) > allowed_fails:
            self.open_until = now + cooldown_s
            self.reason = reason
            self.failures.clear()
            return True
        return False

    def succeeded(self) -> None:
        self.failures.clear()


_circuits: dict[CircuitKey, Circuit] = {}
_last_failure: dict[tuple[CircuitKey, ...], str] = {}  # per chain of models: how its last call failed
_lock = threading.Lock()


def circuit_for(key: CircuitKey) -> Circuit:
    """The process's circuit for ``key`` (it must outlive a single call)."""
    with _lock:
        circuit = _circuits.get(key)
        if circuit is None:
            circuit = _circuits[key] = Circuit()
        return circuit


def open_circuits() -> dict[str, int]:
    """How many circuits are open now in this process, by model."""
    found: dict[str, int] = {}
    with _lock:
        for key, circuit in _circuits.items():
            if circuit.is_open():
                found[key.model] = found.get(key.model, 0) + 1
    return found


def note_failure(chain: tuple[CircuitKey, ...], text: str) -> None:
    """Remember how a call over ``chain`` (a model and its fallbacks) last failed."""
    with _lock:
        _last_failure[chain] = text


def failure_that_opened(chain: tuple[CircuitKey, ...]) -> str | None:
    """How the last failed call over ``chain`` failed: the reason its models are being skipped."""
    with _lock:
        return _last_failure.get(chain)


def forget_routers() -> None:
    """Close every circuit and forget every failure; for tests."""
    with _lock:
        _circuits.clear()
        _last_failure.clear()


def backoff_s(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...) of a failed call."""
    return min(2.0, 0.1 * 2.0 ** (attempt - 1))


def provider_timeout(total: float, first_byte: float | None) -> Any:
    """The ``timeout`` of one attempt: connecting and every read on the HTTP connection wait at most
    ``first_byte`` seconds (never more than ``total``), the rest (sending, the pool) ``total``.

    The read timeout bounds the wait for the response headers, which is where a provider that
    accepts the connection and never answers leaves us.
    """
    if first_byte is None or first_byte <= 0:
        return total
    import httpx

    first = min(first_byte, total)
    return httpx.Timeout(total, connect=first, read=first)


class Silence(Exception):
    """Nothing came from the provider by the deadline :func:`within` was given."""


async def within(awaitable: Awaitable[T], deadline: float | None) -> T:
    """``awaitable``'s result; :class:`Silence` when it has none by ``deadline`` (loop time; None = wait).

    The wait is cancelled at the deadline, so the HTTP request or read under it stops too.
    """
    if deadline is None:
        return await awaitable
    timeout = asyncio.timeout_at(deadline)
    try:
        async with timeout:
            return await awaitable
    except TimeoutError:
        if timeout.expired():
            raise Silence from None
        raise


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a timeout: litellm's, openai's, httpx's, asyncio's."""
    import httpx

    return any(isinstance(e, TimeoutError | httpx.TimeoutException) or type(e).__name__ in (
        "Timeout", "APITimeoutError") for e in _causes(exc))


def is_ours(exc: BaseException) -> bool:
    """Whether a failure is this process's, not the provider's: our connection pool was exhausted
    (we are overloaded), or the provider rejected the request itself (400, 413, 422)."""
    import httpx

    for e in _causes(exc):
        if isinstance(e, httpx.PoolTimeout):
            return True
        if status_of(e) in (400, 413, 422):
            return True
    return False


def status_of(exc: BaseException) -> int | None:
    """The HTTP status a provider answered a failed call with, if it answered."""
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def may_pass(exc: BaseException) -> bool:
    """Whether retrying the same model may help: a dropped connection, a 408/409/429 or a 5xx."""
    if is_ours(exc):
        return False
    status = next((s for s in map(status_of, _causes(exc)) if s is not None), None)
    return status is None or status in (408, 409, 429) or status >= 500
