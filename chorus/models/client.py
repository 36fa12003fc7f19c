"""The one AutoGen ``ChatCompletionClient`` Chorus uses, for every model.

Remote models go through the ``openai`` client (OpenAI-compatible servers) or
``litellm.acompletion`` (every other provider; ``chorus.models.providers``), with
retries, fallbacks and circuits (``chorus.models.router``); local models
(``offline``, ``scripted``, your own) run in process. Both are
normalised into the same stream of deltas, so token streaming, tool-call
accumulation, usage, cost and cancellation are one code path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Literal

from autogen_core import CancellationToken
from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelCapabilities,  # type: ignore[attr-defined]
    ModelFamily,
    ModelInfo,
    RequestUsage,
)
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from chorus.events import CallRecord
from chorus.llm import ModelError, ModelRequestRefused, litellm, refuse_real_request
from chorus.models._convert import (
    dumps_args,
    function_calls,
    text_of,
    to_openai_messages,
    to_openai_tools,
    tool_choice_arg,
)
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

log = logging.getLogger(__name__)


class ModelStalled(ModelError):
    """A reply that had begun streaming stopped: no chunk for the stall timeout."""


class DeadlinePassed(Exception):
    """A call's reply did not begin by its deadline (``CHORUS_MODEL_DEADLINE``)."""


_litellm = litellm


def validate_model(model: str) -> str | None:
    """A user-facing error for a model string neither local nor known to litellm, else None."""
    from chorus.models.local import is_local_model

    if is_local_model(model):
        return None
    litellm = _litellm()

    try:
        litellm.get_llm_provider(model)
    except Exception:
        return (
            f"Unknown model {model!r}: it is not a local model (offline, scripted) and litellm "
            "cannot tell its provider. Use a litellm model string such as 'gpt-4o-mini', "
            "'anthropic/claude-3-5-haiku-latest' or 'ollama/llama3.1'."
        )
    return None


class ChorusModelClient(ChatCompletionClient):
    """A streaming ``ChatCompletionClient`` over litellm, or over a local model.

    ``label`` names who uses the client (an agent, or ``selector``) in usage
    records. ``on_call`` receives a :class:`CallRecord` after every call.

    Waits on a provider are bounded (None = unbounded): one attempt waits ``first_byte_timeout``
    for the provider to start answering (then it counts as failed, opening the circuit); a call
    waits ``deadline`` in all for its reply to begin, retries and fallbacks included; a reply that
    has begun may go ``stall_timeout`` without a chunk. ``timeout`` bounds the rest of one HTTP
    request (sending, the connection pool) and is the most any of those waits can be per attempt.
    """

    def __init__(
        self,
        model: str,
        *,
        label: str = "",
        hints: ModelHints | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        first_byte_timeout: float | None = 20.0,
        stall_timeout: float | None = 15.0,
        deadline: float | None = 45.0,
        forbid_real_models: bool = False,
        on_call: Callable[[CallRecord], None] | None = None,
        local: LocalModel | None = None,
        token_delay: float | None = None,
        fallbacks: Sequence[str] = (),
        retries: int = 0,
        allowed_fails: int = 3,
        cooldown_s: float = 30.0,
        degrade_to_offline: bool = False,
        on_notice: Callable[[str], None] | None = None,
        fast_path: bool = True,
    ) -> None:
        self.model = model
        self.label = label
        self.hints = hints or ModelHints(agent=label or None)
        self.api_base = api_base
        self.api_key = api_key
        self.timeout = timeout
        self.first_byte_timeout = first_byte_timeout
        self.stall_timeout = stall_timeout
        self.deadline = deadline
        self.forbid_real_models = forbid_real_models
        self.on_call = on_call
        self._local = local if local is not None else local_model(model)
        # Pacing of a local model's chunks; None keeps the model's own ``token_delay``.
        self.token_delay = token_delay
        self._total = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self._actual = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self.calls: list[CallRecord] = []
        # Resilience of real model calls (chorus.models.router), and what to do when all fail.
        self.fallbacks = tuple(fallbacks)
        self.retries = retries
        self.allowed_fails = allowed_fails
        self.cooldown_s = cooldown_s
        self.degrade_to_offline = degrade_to_offline
        self.on_notice = on_notice
        self.fast_path = fast_path  # OpenAI-compatible servers through the ``openai`` client (providers.py)
        self._degraded = False
        self._answered_by: str | None = None  # which of model and fallbacks answered the current call

    @property
    def is_local(self) -> bool:
        return self._local is not None

    # -- ChatCompletionClient -------------------------------------------------------------

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        result: CreateResult | None = None
        async for item in self.create_stream(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            json_output=json_output,
            extra_create_args=extra_create_args,
            cancellation_token=cancellation_token,
        ):
            if isinstance(item, CreateResult):
                result = item
        assert result is not None
        return result

    async def create_stream(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        oa_messages = to_openai_messages(messages)
        oa_tools = to_openai_tools(tools)
        started = time.perf_counter()
        started_ns = time.time_ns()
        first_chunk: float | None = None
        text_parts: list[str] = []
        tool_calls: dict[int, dict[str, str]] = {}
        finish_reason: str | None = None
        usage: tuple[int, int] | None = None

        self._degraded = False  # set when every model failed and the offline model answers this call
        self._answered_by = None
        if self._local is not None:
            raw = self._local_deltas(oa_messages, oa_tools, tool_choice)
        else:
            raw = self._resilient_deltas(oa_messages, oa_tools, tool_choice, json_output, extra_create_args)
        deltas = _coalesced(raw)

        finished = False
        try:
            async for delta in _cancellable(deltas, cancellation_token):
                if delta.text:
                    if first_chunk is None:
                        first_chunk = time.perf_counter() - started
                    text_parts.append(delta.text)
                    yield delta.text
                for tc in delta.tool_calls:
                    slot = tool_calls.setdefault(tc["index"], {"id": "", "name": "", "arguments": ""})
                    slot["id"] = tc.get("id") or slot["id"]
                    slot["name"] += tc.get("name") or ""
                    slot["arguments"] += tc.get("arguments") or ""
                if delta.finish_reason:
                    finish_reason = delta.finish_reason
                if delta.usage:
                    usage = delta.usage
            finished = True
        finally:
            await deltas.aclose()
            await raw.aclose()
            if not finished and (text_parts or tool_calls) and not self.is_local:
                # Cut off (stop, cancel, a broken stream) after the provider began to answer: it
                # still bills for that, so the ledger and the budgets get an estimate.
                estimate = (self._estimate_tokens(oa_messages), len(split_tokens("".join(text_parts))))
                self._report(CallRecord(
                    label=self.label, model=self.model, prompt_tokens=estimate[0], completion_tokens=estimate[1],
                    cost=self._cost(estimate), latency_s=time.perf_counter() - started, first_chunk_s=first_chunk,
                    finish_reason="cancelled", started_ns=started_ns,
                ))

        text = "".join(text_parts)
        if usage is None:
            usage = (self._estimate_tokens(oa_messages), len(split_tokens(text)) + len(tool_calls))
        request_usage = RequestUsage(prompt_tokens=usage[0], completion_tokens=usage[1])
        self._actual = request_usage
        self._total = RequestUsage(
            prompt_tokens=self._total.prompt_tokens + usage[0],
            completion_tokens=self._total.completion_tokens + usage[1],
        )
        content: str | list[Any]
        thought: str | None = None
        if tool_calls:
            content = function_calls(tool_calls)
            thought = text or None
            reason = "function_calls"
        else:
            content = text
            reason = _finish_reason(finish_reason)
            if self.hints.role == "selector" and not self.is_local:
                # In a thread: routing by keywords runs the tools' offline parsers, which may read
                # a plugin's database.
                content = await asyncio.to_thread(self._checked_selection, text, oa_messages)
        answered_by = OFFLINE_MODEL if self._degraded else (self._answered_by or self.model)
        record = CallRecord(
            label=self.label,
            model=answered_by,  # a fallback's call is recorded and priced as the fallback's
            prompt_tokens=usage[0],
            completion_tokens=usage[1],
            cost=0.0 if self._degraded else self._cost(usage, answered_by),
            latency_s=time.perf_counter() - started,
            first_chunk_s=first_chunk,
            finish_reason=reason,
            started_ns=started_ns,
        )
        self._report(record)
        yield CreateResult(
            finish_reason=reason,  # type: ignore[arg-type]
            content=content,
            usage=request_usage,
            cached=False,
            thought=thought,
        )

    def _checked_selection(self, text: str, messages: list[dict[str, Any]]) -> str:
        from chorus.models.offline import checked_selection

        choice = checked_selection(text, messages, self.hints)
        if choice != text:
            log.info("the selector (%s) named no single member (%r); routed by keywords to %s",
                     self.model, text[:200], choice)
        return choice

    async def close(self) -> None:
        return None

    def actual_usage(self) -> RequestUsage:
        return self._actual

    def total_usage(self) -> RequestUsage:
        return self._total

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        oa_messages = to_openai_messages(messages)
        if self.is_local:
            return self._estimate_tokens(oa_messages)
        litellm = _litellm()

        try:
            return int(litellm.token_counter(model=self.model, messages=oa_messages))
        except Exception:
            return self._estimate_tokens(oa_messages)

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        limit = 128_000
        if not self.is_local:
            litellm = _litellm()

            with contextlib.suppress(Exception):
                limit = int(litellm.get_max_tokens(self.model) or limit)
        return limit - self.count_tokens(messages, tools=tools)

    @property
    def capabilities(self) -> ModelCapabilities:  # type: ignore[override]
        info = self.model_info
        return {"vision": info["vision"], "function_calling": info["function_calling"],
                "json_output": info["json_output"]}

    @property
    def model_info(self) -> ModelInfo:
        if self.is_local:
            return ModelInfo(vision=False, function_calling=True, json_output=False,
                             family=ModelFamily.UNKNOWN, structured_output=False,
                             multiple_system_messages=True)
        litellm = _litellm()

        def supports(check: Callable[..., bool], default: bool) -> bool:
            try:
                return bool(check(model=self.model))
            except Exception:
                return default

        return ModelInfo(
            vision=supports(litellm.supports_vision, False),
            # Most chat models call tools; refusing tools for an unknown model would be worse.
            function_calling=True,
            json_output=supports(litellm.supports_response_schema, False),
            family=ModelFamily.UNKNOWN,
            structured_output=supports(litellm.supports_response_schema, False),
            multiple_system_messages=True,
        )

    # -- sources of deltas -------------------------------------------------------------------

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
                    opened = False
                    if circuit is not None and not is_ours(exc):
                        # A hang opens the circuit at once: each one already cost a user the first-byte
                        # timeout, and hangs a turn apart never add up to "allowed fails per minute".
                        opened = circuit.failed(failure, allowed_fails=self.allowed_fails,
                                                cooldown_s=self.cooldown_s, at_once=hang)
                    if hang or opened or not may_pass(exc):
                        break  # on to the next model
                    continue
                if circuit is not None:
                    circuit.succeeded()
                self._answered_by = key.model
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

    # -- helpers ----------------------------------------------------------------------------

    def _chain(self, api_base: str | None) -> tuple[CircuitKey, ...]:
        models = [self.model, *[m for m in dict.fromkeys(self.fallbacks) if m != self.model]]
        return tuple(CircuitKey(m, api_base, self.api_key) for m in models)

    def _tried(self) -> str:
        return f"{self.model!r} and its fallbacks {list(self.fallbacks)}" if self.fallbacks else repr(self.model)

    def _first_byte(self) -> float:
        return self.timeout if self.first_byte_timeout is None else min(self.first_byte_timeout, self.timeout)

    def _report(self, record: CallRecord) -> None:
        self.calls.append(record)
        if self.on_call is not None:
            self.on_call(record)

    def _cost(self, usage: tuple[int, int], model: str | None = None) -> float | None:
        if self.is_local:
            return 0.0
        litellm = _litellm()

        try:
            prompt_cost, completion_cost = litellm.cost_per_token(
                model=model or self.model, prompt_tokens=usage[0], completion_tokens=usage[1]
            )
            return float(prompt_cost + completion_cost)
        except Exception:
            return None  # litellm does not know this model's price

    @staticmethod
    def _estimate_tokens(messages: list[dict[str, Any]]) -> int:
        words = sum(len(split_tokens(text_of(m))) for m in messages)
        return words + 3 * len(messages)


async def _coalesced(deltas: AsyncGenerator[Delta, None]) -> AsyncGenerator[Delta, None]:
    """``deltas``, read ahead by a task of their own; text that is already waiting when the
    consumer asks for more comes as one delta.

    A provider streaming at its own pace is passed through chunk by chunk. When the process is
    busy (hundreds of chats streaming), chunks pile up in the connection's buffer; merging
    them means AutoGen, the turn and the page handle one event instead of many, which is what
    keeps a loaded process from falling further behind. The first text is never held back.
    The joined text is exactly what the provider sent.
    """
    waiting: deque[Delta | BaseException | None] = deque()
    arrived = asyncio.Event()

    async def pump() -> None:
        try:
            async for delta in deltas:
                waiting.append(delta)
                arrived.set()
            waiting.append(None)
        except asyncio.CancelledError:
            raise  # the consumer is done with the stream
        except BaseException as exc:  # raised again in the consumer, where the call is handled
            waiting.append(exc)
        finally:
            arrived.set()

    reader = asyncio.create_task(pump())
    seen_text = False
    try:
        while True:
            if not waiting:
                arrived.clear()
                await arrived.wait()
            item = waiting.popleft()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            if seen_text and _only_text(item):
                parts = [item.text or ""]
                while waiting and _only_text(waiting[0]):
                    parts.append(waiting.popleft().text or "")  # type: ignore[union-attr]
                item = Delta(text="".join(parts))
            seen_text = seen_text or bool(item.text)
            yield item
    finally:
        reader.cancel()
        await asyncio.wait([reader])  # (not ``await reader``: its cancellation is not ours to raise)


def _only_text(item: Delta | BaseException | None) -> bool:
    return isinstance(item, Delta) and bool(item.text) and not item.tool_calls and not item.finish_reason \
        and item.usage is None


async def _cancellable(
    deltas: AsyncIterator[Delta], token: CancellationToken | None
) -> AsyncGenerator[Delta, None]:
    """Yield from ``deltas`` until ``token`` is cancelled, then raise CancelledError.

    Cancelling the token cancels the task that is waiting on the model (a
    provider may keep us waiting long between chunks), but only while this
    stream is being read: the token outlives the call.
    """
    if token is None:
        async for delta in deltas:
            yield delta
        return
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    reading = True

    def interrupt() -> None:
        # The token may be cancelled from another thread: cancel the task on its own loop.
        if reading and task is not None:
            loop.call_soon_threadsafe(task.cancel)

    token.add_callback(interrupt)
    try:
        async for delta in deltas:
            if token.is_cancelled():
                raise asyncio.CancelledError("model call cancelled")
            reading = False
            yield delta
            if token.is_cancelled():  # cancelled while the consumer handled this chunk
                raise asyncio.CancelledError("model call cancelled")
            reading = True
    finally:
        reading = False


def _finish_reason(reason: str | None) -> str:
    if reason in (None, "stop", "end_turn", "eos"):
        return "stop"
    if reason in ("length", "max_tokens"):
        return "length"
    if reason == "content_filter":
        return "content_filter"
    if reason in ("tool_calls", "function_call"):
        return "function_calls"
    return "unknown"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


__all__ = [
    "CallRecord", "ChorusModelClient", "ModelError", "ModelRequestRefused", "ModelStalled", "refuse_real_request",
    "validate_model",
]
