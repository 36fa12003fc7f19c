"""Retries, fallbacks and a circuit breaker for model calls: litellm's own ``Router``.

Every real model string gets one process-wide ``litellm.Router`` whose deployments are the model
and ``CHORUS_MODEL_FALLBACKS``. The router retries a failed call (``CHORUS_MODEL_RETRIES``, with
backoff), moves on to the fallbacks in order, and takes a model that keeps failing out of
rotation for ``CHORUS_MODEL_COOLDOWN`` seconds (its cooldown is the circuit breaker: calls go
straight to the fallbacks until it is over). When every model fails, ``ChorusModelClient``
answers with the offline model and a notice instead of an error.

A provider that hangs must cost a bounded wait: every attempt's HTTP reads time out after the
first-byte timeout (so the router sees a ``Timeout``, which opens the circuit at once and moves
on to the fallbacks), and the client watches the stream itself: a deadline for the reply to
begin, retries and fallbacks included, and a stall timeout between chunks (:func:`within`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_routers: dict[RouterKey, Any] = {}
_failures: dict[RouterKey, str] = {}  # the last failure of each router's calls, in words
_lock = threading.Lock()


@dataclass(frozen=True)
class RouterKey:
    model: str
    fallbacks: tuple[str, ...]
    api_base: str | None
    api_key: str | None
    timeout: float
    retries: int
    allowed_fails: int
    cooldown_s: float
    first_byte_s: float | None = None


def router_for(key: RouterKey) -> Any:
    """The process's router for ``key`` (built once: its cooldowns must outlive a single call)."""
    with _lock:
        router = _routers.get(key)
        if router is None:
            router = _routers[key] = _build(key)
        return router


def _build(key: RouterKey) -> Any:
    from litellm.router import Router
    from litellm.types.router import AllowedFailsPolicy

    # Named per error type: litellm ignores a router-wide allowed_fails equal to its own default
    # and never cools down a model with a single deployment unless a policy names the error.
    policy = AllowedFailsPolicy(**{name: key.allowed_fails for name in (
        "RateLimitErrorAllowedFails", "InternalServerErrorAllowedFails",
        "ServiceUnavailableErrorAllowedFails", "BadGatewayErrorAllowedFails", "AuthenticationErrorAllowedFails",
        "NotFoundErrorAllowedFails")},
        # A hang opens the circuit at once: each one already cost a user the first-byte timeout, and
        # hangs a turn apart never add up to "allowed_fails within the cooldown" (litellm counts fails
        # over cooldown_s), so counting them would skip a hanging provider never.
        TimeoutErrorAllowedFails=0)

    models = [key.model, *[m for m in key.fallbacks if m != key.model]]
    model_list = []
    for model in models:
        params: dict[str, Any] = {"model": model, "timeout": provider_timeout(key.timeout, key.first_byte_s)}
        if key.api_base:
            params["api_base"] = key.api_base
        if key.api_key:
            params["api_key"] = key.api_key
        model_list.append({"model_name": model, "litellm_params": params})
    import litellm

    priced = set(litellm.model_cost)
    router = Router(
        model_list=model_list,
        fallbacks=[{key.model: models[1:]}] if len(models) > 1 else [],
        num_retries=key.retries,
        allowed_fails_policy=policy,
        cooldown_time=key.cooldown_s,
        retry_after=0,
    )
    # The router enters each model name it does not know into litellm's price map, priced at zero:
    # a model without a known price would be recorded as free rather than unpriced (cost None).
    # The entries under deployment ids are the router's own and stay.
    ids = set(router.get_model_ids())
    for name in set(litellm.model_cost) - priced - ids:
        litellm.model_cost.pop(name, None)
    return router


def provider_timeout(total: float, first_byte: float | None) -> Any:
    """litellm's ``timeout`` for one attempt: connecting and every read on the HTTP connection wait
    at most ``first_byte`` seconds (never more than ``total``), the rest (sending, the pool) ``total``.

    The read timeout bounds the wait for the response headers, which is where a provider that
    accepts the connection and never answers leaves us; raised inside litellm, it is a ``Timeout``
    the router retries, falls back on and cools the model down for.
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


def is_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a timeout: litellm's, openai's, httpx's, asyncio's."""
    import httpx

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError | httpx.TimeoutException) or type(current).__name__ in (
                "Timeout", "APITimeoutError"):
            return True
        current = current.__cause__ or current.__context__
    return False


def is_cooled_down(exc: BaseException) -> bool:
    """Whether the router refused ``exc``'s call because every model is in its cooldown (circuit open)."""
    return type(exc).__name__ == "RouterRateLimitError" or "in cooldown" in str(exc)


def note_failure(key: RouterKey, text: str) -> None:
    """Remember how ``key``'s last call failed (what opened its circuit, when it did)."""
    with _lock:
        _failures[key] = text


def failure_that_opened(key: RouterKey) -> str | None:
    """How ``key``'s last failed call failed, if one did: the reason its models are cooling down."""
    with _lock:
        return _failures.get(key)


def forget_routers() -> None:
    """Drop every router (their cooldowns with them); for tests."""
    with _lock:
        _routers.clear()
        _failures.clear()
