"""Where a model call's deltas come from: a local model in process, or a provider over HTTP with
deadlines, retries, fallbacks and circuits (``chorus.models.router``), degrading to the offline
model when every model failed before saying anything.

:class:`DeltaSources` is the half of :class:`~chorus.models.client.ChorusModelClient` that talks
to models; the client itself turns their deltas into AutoGen's results and usage records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

from pydantic import BaseModel

from chorus import metrics
from chorus.llm import ModelError, ModelRequestRefused, refuse_real_request
from chorus.models._convert import dumps_args, tool_choice_arg
from chorus.models.local import LocalModel, ModelHints, ModelRequest, local_model, split_tokens
from chorus.models.providers import Delta, Route, close_stream, delta_of, open_stream, route_for
from chorus.models.router import (
    CircuitKey,
    Silence,
    backoff_s,
    circuit_for,
    failure_that_opened,
    is_ours,
    is_timeout,
    may_pass,
    note_failure,
    provider_timeout,
    within,
)
from chorus.settings import OFFLINE_MODEL

log = logging.getLogger("chorus.models.client")  # the client's own log, as operators know it


class ModelStalled(ModelError):
    """A reply that had begun streaming stopped: no chunk for the stall timeout."""


class DeadlinePassed(Exception):
    """A call's reply did not begin by its deadline (``CHORUS_MODEL_DEADLINE``)."""


class DeltaSources:
    """The model-facing half of the client (its settings are the client's; see its docstring)."""

    model: str
    label: str
    hints: ModelHints
    api_base: str | None
    api_key: str | None
    timeout: float
    first_byte_timeout: float | None
    stall_timeout: float | None
    deadline: float | None
    forbid_real_models: bool
    token_delay: float | None
    fallbacks: tuple[str, ...]
    retries: int
    allowed_fails: int
    cooldown_s: float
    degrade_to_offline: bool
    on_notice: Callable[[str], None] | None
    fast_path: bool
    _local: LocalModel | None
    _degraded: bool
    _answered_by: str | None


    async def _resilient_deltas(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        tool_choice: Any,
        json_output: bool | type[BaseModel] | None,
        extra: Mapping[str, Any],
    ) -> AsyncGenerator[Delta, None]:
        """litellm's deltas (retried, with fallbacks); when every model failed before saying
        anything, the offline model's, with a notice, rather than an error. A reply that stalls
        after some text keeps that text, with a notice."""
        shown = tool_begun = False
        try:
            async for delta in self._remote_deltas(messages, tools, tool_choice, json_output, extra):
                shown = shown or bool(delta.text)  # said something the user saw
                tool_begun = tool_begun or bool(delta.tool_calls)
                yield delta
            return
        except ModelRequestRefused:
            raise
        except ModelError as exc:
            if isinstance(exc, ModelStalled) and shown and not tool_begun:
                log.warning("%s: %s; the answer is cut off where it stopped", self.label, exc)
                if self.on_notice is not None:
                    self.on_notice(f"The model provider stopped sending in the middle of this answer ({exc}); "
                                   "it is cut off where it stopped.")
                yield Delta(finish_reason="stalled")
                return
            if shown or tool_begun or not self.degrade_to_offline:
                raise  # (what the user saw cannot be taken back; half a tool call cannot be run)
            failure = exc
        log.warning("every model failed for %s (%s); answering with the offline model", self.label, failure)
        self._degraded = True
        metrics.OFFLINE_ANSWERS.labels(self.model).inc()
        if self.on_notice is not None:
            self.on_notice(f"The model provider is not answering ({failure}). This answer comes from Chorus's "
                           "offline model; it will try the real model again with your next message.")
        async for delta in self._local_deltas(messages, tools, tool_choice, model=local_model(OFFLINE_MODEL)):
            yield delta

    async def _local_deltas(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], tool_choice: Any,
        model: LocalModel | None = None,
    ) -> AsyncGenerator[Delta, None]:
        local = model or self._local
        assert local is not None
        request = ModelRequest(self.model, messages, tools, tool_choice_arg(tool_choice), self.hints)
        reply = await local.reply(request)
        delay = local.token_delay if self.token_delay is None or model is not None else self.token_delay
        for token in split_tokens(reply.text):
            if delay:
                await asyncio.sleep(delay)
            yield Delta(text=token)
        for index, call in enumerate(reply.tool_calls):
            arguments = dumps_args(dict(call.arguments))
            half = len(arguments) // 2
            # Two pieces, like a provider streaming its arguments.
            yield Delta(tool_calls=[{"index": index, "id": call.id, "name": call.name, "arguments": arguments[:half]}])
            yield Delta(tool_calls=[{"index": index, "arguments": arguments[half:]}])
        yield Delta(finish_reason="tool_calls" if reply.tool_calls else "stop")

    async def _remote_deltas(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        tool_choice: Any,
        json_output: bool | type[BaseModel] | None,
        extra: Mapping[str, Any],
    ) -> AsyncGenerator[Delta, None]:
        """The provider's deltas: the model, then each fallback, each retried while its failure may
        pass; models whose circuit is open are skipped (``chorus.models.router``)."""
        api_base = extra.get("api_base") or extra.get("base_url") or self.api_base
        if self.forbid_real_models:
            refuse_real_request(self.model, api_base)
        kwargs: dict[str, Any] = {"messages": messages, "stream": True, "stream_options": {"include_usage": True}}
        if tools:
            kwargs["tools"] = tools
            kwargs["tool_choice"] = tool_choice_arg(tool_choice)
        if json_output is True:
            kwargs["response_format"] = {"type": "json_object"}
        elif isinstance(json_output, type):
            kwargs["response_format"] = json_output
        kwargs.update(extra)
        if api_base:
            kwargs["api_base"] = api_base
        if self.api_key:
            kwargs.setdefault("api_key", self.api_key)
        # Circuits whenever there is somewhere else to go (a fallback, a retry, the offline model,
        # which then answers at once while a failing model cools down).
        guarded = bool(self.fallbacks or self.retries or self.degrade_to_offline)
        chain = self._chain(api_base)
        loop = asyncio.get_running_loop()
        # The reply must begin (its first chunk arrive) by then, whatever retries and fallbacks do.
        begin_by = None if self.deadline is None else loop.time() + self.deadline
        timeout = provider_timeout(self.timeout, self.first_byte_timeout)
        failure: str | None = None
        for key in chain:
            circuit = circuit_for(key) if guarded else None
            if circuit is not None and circuit.is_open():
                log.info("%s: %s is skipped while it cools down (up to %g s)", self.label, key.model, self.cooldown_s)
                continue
            route = route_for(key.model, api_base, self.api_key, self.fast_path)
            if isinstance(json_output, type):
                route = Route(key.model, fast=False)  # litellm turns a pydantic type into a schema
            for attempt in range(1 + self.retries):
                if attempt:
                    pause = backoff_s(attempt)
                    if begin_by is not None and loop.time() + pause >= begin_by:
                        break
                    await asyncio.sleep(pause)
                    metrics.MODEL_RETRIES.labels(key.model).inc()
                try:
                    stream, first = await self._begin(route, {**kwargs, "model": key.model}, timeout, begin_by)
                except DeadlinePassed:
                    raise ModelError(f"model {self._tried()} failed: no answer within {self.deadline:g} s") from None
                except (asyncio.CancelledError, ModelError):
                    raise
                except Exception as exc:
                    hang = is_timeout(exc)
                    failure = f"model {self._tried()} failed: " + (
                        f"no answer within {self._first_byte():g} s" if hang else _short(exc))
                    log.info("%s: %s failed (attempt %d): %s", self.label, key.model, attempt + 1, _short(exc))
                    metrics.MODEL_ERRORS.labels(key.model).inc()
                    opened = False
                    if circuit is not None and not is_ours(exc):
                        # A hang opens the circuit at once: each one already cost a user the first-byte
                        # timeout, and hangs a turn apart never add up to "allowed fails per minute".
                        opened = circuit.failed(failure, allowed_fails=self.allowed_fails,
                                                cooldown_s=self.cooldown_s, at_once=hang)
                        if opened:
                            metrics.CIRCUITS_OPENED.labels(key.model).inc()
                    if hang or opened or not may_pass(exc):
                        break  # on to the next model
                    continue
                if circuit is not None:
                    circuit.succeeded()
                self._answered_by = key.model
                if key.model != self.model:
                    metrics.MODEL_FALLBACKS.labels(self.model, key.model).inc()
                async for delta in self._rest_of(stream, first):
                    yield delta
                return
        if failure is None:  # every model is cooling down: say why, in the words that opened the circuit
            raise ModelError(failure_that_opened(chain) or (
                f"model {self._tried()} failed: skipped, it failed moments ago (tried again after at most "
                f"{self.cooldown_s:g} s)"))
        note_failure(chain, failure)
        raise ModelError(failure)

    async def _begin(self, route: Route, kwargs: dict[str, Any], timeout: Any,
                     begin_by: float | None) -> tuple[Any, Delta]:
        """One attempt: send the request and wait for the first chunk, at most the first-byte timeout
        (then a ``TimeoutError``) and never past ``begin_by`` (then :class:`DeadlinePassed`)."""
        loop = asyncio.get_running_loop()
        by = loop.time() + self._first_byte()
        if begin_by is not None:
            by = min(by, begin_by)
        stream = None
        try:
            stream = await within(open_stream(route, kwargs, timeout), by)
            first = await within(anext(aiter(stream)), by)
            return stream, delta_of(first)
        except Silence:
            if stream is not None:
                await close_stream(stream)
            if begin_by is not None and loop.time() >= begin_by:
                raise DeadlinePassed from None
            raise TimeoutError(f"no first chunk within {self._first_byte():g} s") from None
        except StopAsyncIteration:
            raise ModelError(f"model {route.model!r} failed: it sent an empty reply") from None
        except BaseException:
            if stream is not None:
                await close_stream(stream)
            raise

    async def _rest_of(self, stream: Any, first: Delta) -> AsyncGenerator[Delta, None]:
        """A stream that has begun: its first delta, then the others, each within the stall timeout."""
        loop = asyncio.get_running_loop()
        finished = first.finish_reason is not None  # only usage and [DONE] may follow
        chunks = aiter(stream)
        try:
            yield first
            while True:
                until = None if self.stall_timeout is None else loop.time() + self.stall_timeout
                try:
                    chunk = await within(anext(chunks), until)
                except StopAsyncIteration:
                    break
                except Silence:
                    if finished:
                        break  # the reply is whole; a missing usage chunk is estimated
                    raise ModelStalled(f"model {self.model!r} sent nothing for {self.stall_timeout:g} s") from None
                delta = delta_of(chunk)
                finished = finished or delta.finish_reason is not None
                yield delta
        except (asyncio.CancelledError, GeneratorExit, ModelError):
            raise
        except Exception as exc:
            if is_timeout(exc):  # the HTTP read timeout cut a silent stream before the stall timeout did
                raise ModelStalled(f"model {self.model!r} sent nothing for {self._first_byte():g} s") from exc
            raise ModelError(f"model {self.model!r} failed while streaming: {_short(exc)}") from exc
        finally:
            await close_stream(stream)

    def _chain(self, api_base: str | None) -> tuple[CircuitKey, ...]:
        models = [self.model, *[m for m in dict.fromkeys(self.fallbacks) if m != self.model]]
        return tuple(CircuitKey(m, api_base, self.api_key) for m in models)

    def _tried(self) -> str:
        return f"{self.model!r} and its fallbacks {list(self.fallbacks)}" if self.fallbacks else repr(self.model)

    def _first_byte(self) -> float:
        return self.timeout if self.first_byte_timeout is None else min(self.first_byte_timeout, self.timeout)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]
