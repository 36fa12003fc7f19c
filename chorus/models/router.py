"""Retries, fallbacks and a circuit breaker for model calls: litellm's own ``Router``.

Every real model string gets one process-wide ``litellm.Router`` whose deployments are the model
and ``CHORUS_MODEL_FALLBACKS``. The router retries a failed call (``CHORUS_MODEL_RETRIES``, with
backoff), moves on to the fallbacks in order, and takes a model that keeps failing out of
rotation for ``CHORUS_MODEL_COOLDOWN`` seconds (its cooldown is the circuit breaker: calls go
straight to the fallbacks until it is over). When every model fails, ``ChorusModelClient``
answers with the offline model and a notice instead of an error.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

_routers: dict[RouterKey, Any] = {}
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
        "TimeoutErrorAllowedFails", "RateLimitErrorAllowedFails", "InternalServerErrorAllowedFails",
        "ServiceUnavailableErrorAllowedFails", "BadGatewayErrorAllowedFails", "AuthenticationErrorAllowedFails",
        "NotFoundErrorAllowedFails")})

    models = [key.model, *[m for m in key.fallbacks if m != key.model]]
    model_list = []
    for model in models:
        params: dict[str, Any] = {"model": model, "timeout": key.timeout}
        if key.api_base:
            params["api_base"] = key.api_base
        if key.api_key:
            params["api_key"] = key.api_key
        model_list.append({"model_name": model, "litellm_params": params})
    return Router(
        model_list=model_list,
        fallbacks=[{key.model: models[1:]}] if len(models) > 1 else [],
        num_retries=key.retries,
        allowed_fails_policy=policy,
        cooldown_time=key.cooldown_s,
        retry_after=0,
    )


def forget_routers() -> None:
    """Drop every router (their cooldowns with them); for tests."""
    with _lock:
        _routers.clear()
