"""How one attempt on one model reaches its provider: a stream of :class:`Delta`.

Two transports, chosen per model string:

- **OpenAI-compatible servers** (``openai/<model>`` with an ``api_base``, ``hosted_vllm/...``,
  ``custom_openai/...``: vLLM, llama.cpp, LM Studio, Ollama's ``/v1``, a gateway) go through the
  official ``openai`` client, one shared connection pool per base URL and key. Measured on one
  stream of 53 chunks, litellm's stream wrapper costs 0.52 ms of CPU per chunk and the ``openai``
  client 0.10 ms: on a loaded process this is what decides how many chats it can stream.
- **Every other provider** litellm supports (OpenAI itself, Anthropic, Gemini, Bedrock, Ollama's
  native API, ...) goes through ``litellm.acompletion``, which knows each provider's parameters.

``CHORUS_MODEL_FAST_PATH=false`` sends everything through litellm. Either way the model string,
pricing (``litellm.cost_per_token``) and token counting stay litellm's.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

from chorus.llm import litellm

# Keys of ``extra_create_args`` that are litellm's own options, not request parameters.
_LITELLM_OPTIONS = frozenset({"num_retries", "api_base", "base_url", "api_key", "timeout", "metadata",
                              "mock_response", "custom_llm_provider", "drop_params", "caching"})
_FAST_PROVIDERS = frozenset({"openai", "custom_openai", "hosted_vllm"})


@dataclass
class Delta:
    """A piece of a streamed reply, whatever sent it."""

    text: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: tuple[int, int] | None = None


@dataclass(frozen=True)
class Route:
    """Where one model's requests go: the ``openai`` client (``fast``), or litellm."""

    model: str
    """The model string as configured (what is priced and recorded)."""
    fast: bool
    wire_model: str = ""
    """The model name the provider is sent (``openai/x`` → ``x``), on the fast path."""
    base_url: str | None = None
    api_key: str | None = None


@functools.lru_cache(maxsize=256)
def route_for(model: str, api_base: str | None, api_key: str | None, fast_path: bool = True) -> Route:
    """How ``model`` is reached. Plain OpenAI (no ``api_base``) stays with litellm, which knows the
    parameters each of OpenAI's models accepts; a server of one's own speaks the protocol as is.
    ``fast_path=False`` (``CHORUS_MODEL_FAST_PATH=false``) sends every model through litellm."""
    if not fast_path:
        return Route(model, fast=False)
    try:
        wire, provider, dynamic_key, base = litellm().get_llm_provider(model, api_base=api_base)
    except Exception:
        return Route(model, fast=False)
    if provider not in _FAST_PROVIDERS or not base:
        return Route(model, fast=False)
    key = api_key or dynamic_key or os.environ.get("OPENAI_API_KEY") or "no-key"
    return Route(model, fast=True, wire_model=wire, base_url=base, api_key=key)


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], Any]] = \
    weakref.WeakKeyDictionary()
_clients_lock = threading.Lock()


def _openai_client(base_url: str, api_key: str) -> Any:
    """One ``AsyncOpenAI`` (one connection pool) per event loop, provider and key. It never retries
    on its own: retries, fallbacks and timeouts are Chorus's (``chorus.models.router``)."""
    loop = asyncio.get_running_loop()  # connections belong to the loop that opened them
    with _clients_lock:
        clients = _clients.setdefault(loop, {})
        client = clients.get((base_url, api_key))
        if client is None:
            import openai

            client = clients[(base_url, api_key)] = openai.AsyncOpenAI(
                base_url=base_url, api_key=api_key, max_retries=0, http_client=_http_client())
        return client


def _http_client() -> Any:
    """The HTTP client under the ``openai`` client: aiohttp's HTTP parser (in C) behind httpx's
    interface, the transport the ``openai`` client recommends for concurrency (a streamed chunk
    costs about half of what httpcore's pure-Python parser costs), else plain httpx."""
    import httpx
    import openai

    # Every open chat may stream at once: keep its connection alive for the next turn.
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000, keepalive_expiry=30)
    try:
        return openai.DefaultAioHttpClient(limits=limits)
    except RuntimeError:  # installed without httpx-aiohttp
        return openai.DefaultAsyncHttpxClient(limits=limits)


async def open_stream(route: Route, kwargs: Mapping[str, Any], timeout: Any) -> Any:
    """Send the request; the provider's stream of chunks (an async iterator with ``aclose``).

    ``kwargs`` are litellm's (model, messages, tools, tool_choice, response_format and extras).
    """
    if not route.fast:
        return await litellm().acompletion(**{"num_retries": 0, **kwargs, "timeout": timeout})
    body: dict[str, Any] = {"model": route.wire_model, "messages": kwargs["messages"], "stream": True,
                            "stream_options": {"include_usage": True}}
    headers: dict[str, str] = {}
    for name, value in kwargs.items():
        if name in ("model", "messages", "stream", "stream_options", "api_base") or name in _LITELLM_OPTIONS:
            continue
        if name == "extra_body":
            body.update(value or {})
        elif name == "extra_headers":
            headers.update(value or {})
        else:
            body[name] = value
    import openai

    client = _openai_client(route.base_url or "", route.api_key or "no-key")
    # The client's own ``post``: its auth, errors and server-sent events, without what
    # ``chat.completions.create`` adds per request (a walk of every message against the request's
    # types, which grows with the conversation) and per chunk (a typed object built from each
    # chunk's JSON): chunks come as the decoded JSON, read by :func:`delta_of_json`.
    options: dict[str, Any] = {"timeout": timeout}
    if headers:
        options["headers"] = headers
    return await client.post("/chat/completions", body=body, cast_to=object, stream=True,
                             stream_cls=openai.AsyncStream[object], options=options)


def delta_of_json(chunk: Any) -> Delta:
    """One chat-completions chunk, as the JSON the provider sent, as a delta."""
    delta = Delta()
    usage = chunk.get("usage")
    if usage and usage.get("prompt_tokens") is not None:
        delta.usage = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    for choice in chunk.get("choices") or ():
        d = choice.get("delta")
        if d:
            delta.text = d.get("content") or None
            for tc in d.get("tool_calls") or ():
                fn = tc.get("function") or {}
                delta.tool_calls.append({"index": tc.get("index") or 0, "id": tc.get("id"),
                                         "name": fn.get("name"), "arguments": fn.get("arguments")})
        if choice.get("finish_reason"):
            delta.finish_reason = choice["finish_reason"]
    return delta


def delta_of(chunk: Any) -> Delta:
    """One provider chunk as a delta: the decoded JSON of the fast path, or litellm's object."""
    if isinstance(chunk, dict):
        return delta_of_json(chunk)
    delta = Delta()
    usage = getattr(chunk, "usage", None)
    if usage is not None and getattr(usage, "prompt_tokens", None) is not None:
        delta.usage = (int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0))
    for choice in chunk.choices or []:
        d = choice.delta
        if d is not None:
            delta.text = d.content or None
            for tc in d.tool_calls or []:
                fn = tc.function
                delta.tool_calls.append({
                    "index": tc.index or 0,
                    "id": tc.id,
                    "name": fn.name if fn else None,
                    "arguments": fn.arguments if fn else None,
                })
        if choice.finish_reason:
            delta.finish_reason = choice.finish_reason
    return delta


async def close_stream(stream: Any) -> None:
    """Close the HTTP response now, not at garbage collection (a stopped turn ends early)."""
    close = getattr(stream, "aclose", None) or getattr(stream, "close", None)
    if close is not None:
        try:
            result = close()
            if hasattr(result, "__await__"):
                await result
        except Exception:  # a stream that is already broken cannot be closed more
            pass


AsyncDeltas = AsyncGenerator[Delta, None]
