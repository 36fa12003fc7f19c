"""The one AutoGen ``ChatCompletionClient`` Chorus uses, for every model.

Remote models go through the ``openai`` client (OpenAI-compatible servers) or
``litellm.acompletion`` (every other provider; ``chorus.models.providers``), with
retries, fallbacks and circuits (``chorus.models.router``); local models
(``offline``, ``scripted``, your own) run in process. Both are
normalised into the same stream of deltas, so token streaming, tool-call
accumulation, usage, cost and cancellation are one code path.

Where the deltas come from (local, or a provider with deadlines, retries and fallbacks) is
``chorus.models._sources``; how the stream is merged and cancelled is ``chorus.models._streams``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
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
from chorus.journal import current_journal
from chorus.llm import ModelError, ModelRequestRefused, litellm, refuse_real_request
from chorus.models._convert import (
    function_calls,
    text_of,
    to_openai_messages,
    to_openai_tools,
)
from chorus.models._sources import DeltaSources, ModelStalled
from chorus.models._streams import cancellable, coalesced, finish_reason_of
from chorus.models.local import LocalModel, ModelHints, local_model, split_tokens
from chorus.models.providers import Delta
from chorus.settings import OFFLINE_MODEL

log = logging.getLogger(__name__)


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


class ChorusModelClient(DeltaSources, ChatCompletionClient):
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
        on_failure: Callable[[str, BaseException], None] | None = None,
        temperature: float | None = None,
    ) -> None:
        self.model = model
        self.temperature = temperature
        """Sent with every request to a provider when set (an admin's choice); local models ignore it."""
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
        self.on_failure = on_failure  # (label, exception) of a call that failed: AutoGen keeps only its text
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
        # In a background run, a call an earlier attempt finished is replayed from the run's
        # journal (chorus.journal), delta for delta, instead of being made again.
        journal = current_journal.get()
        journal_key = journal.key("model", self.label or self.model) if journal is not None else ""
        replay = journal.recorded(journal_key) if journal is not None else None
        kept: list[list[Any]] | None = [] if journal is not None and replay is None else None
        if replay is not None:
            self._degraded = bool(replay.get("degraded"))
            self._answered_by = replay.get("answered_by")
            raw = deltas = _replayed(replay)
        else:
            if self._local is not None:
                raw = self._local_deltas(oa_messages, oa_tools, tool_choice)
            else:
                create_args = dict(extra_create_args)
                if self.temperature is not None:
                    create_args.setdefault("temperature", self.temperature)
                raw = self._resilient_deltas(oa_messages, oa_tools, tool_choice, json_output, create_args)
            deltas = coalesced(raw)

        finished = False
        try:
            async for delta in cancellable(deltas, cancellation_token):
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
                if kept is not None:
                    kept.append([delta.text, delta.tool_calls, delta.finish_reason,
                                 list(delta.usage) if delta.usage else None])
            finished = True
        except Exception as exc:
            if self.on_failure is not None:
                self.on_failure(self.label, exc)
            raise
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
            reason = finish_reason_of(finish_reason)
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
        if journal is not None and kept is not None:  # kept before AutoGen sees the reply
            await journal.record(journal_key, {"deltas": kept, "answered_by": self._answered_by,
                                               "degraded": self._degraded})
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

    # -- helpers ----------------------------------------------------------------------------

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


__all__ = [
    "CallRecord", "ChorusModelClient", "ModelError", "ModelRequestRefused", "ModelStalled", "refuse_real_request",
    "validate_model",
]


async def _replayed(recorded: Mapping[str, Any]) -> AsyncGenerator[Delta, None]:
    """A journaled call's deltas, as they came the first time."""
    for text, tool_calls, finish_reason, usage in recorded.get("deltas", []):
        yield Delta(text=text, tool_calls=list(tool_calls or []), finish_reason=finish_reason,
                    usage=(int(usage[0]), int(usage[1])) if usage else None)

