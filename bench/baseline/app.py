"""The baseline for ``bench/load.py``: AutoGen in Chainlit, written the way AutoGen's docs show.

This follows AutoGen's Chainlit sample (``python/samples/agentchat_chainlit/app_team.py``): the
team is built in ``on_chat_start`` and kept in the user session; ``on_message`` runs
``team.run_stream`` and sends one ``stream_token`` per model chunk; AutoGen's event logging is
left at its defaults. Only the model differs: ``ZeroLatencyClient`` streams a fixed reply word by
word with no delay (like AutoGen's ``ReplayChatCompletionClient``), so that what is measured is
the serving path, exactly as Chorus is measured on its zero-latency scripted model.

Kept in ``bench/`` for the benchmark only; it is not part of Chorus. Run it with
``chainlit run bench/baseline/app.py --headless``; ``CHORUS_SCRIPTED_REPLY`` sets the reply.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, cast

import chainlit as cl
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TaskResult
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.messages import ModelClientStreamingChunkEvent, TextMessage
from autogen_agentchat.teams import RoundRobinGroupChat
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

REPLY = os.environ.get("CHORUS_SCRIPTED_REPLY", "Hello from the baseline.")


class ZeroLatencyClient(ChatCompletionClient):
    """Streams ``REPLY`` one word per chunk, at once."""

    def __init__(self) -> None:
        self._usage = RequestUsage(prompt_tokens=0, completion_tokens=0)

    async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:
        words = re.findall(r"\S+\s*", REPLY)
        return CreateResult(finish_reason="stop", content=REPLY, cached=False,
                            usage=RequestUsage(prompt_tokens=len(messages), completion_tokens=len(words)))

    async def create_stream(  # type: ignore[override]
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Any = "auto",
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        words = re.findall(r"\S+\s*", REPLY)
        for word in words:
            yield word
        yield CreateResult(finish_reason="stop", content=REPLY, cached=False,
                           usage=RequestUsage(prompt_tokens=len(messages), completion_tokens=len(words)))

    async def close(self) -> None:
        pass

    def actual_usage(self) -> RequestUsage:
        return self._usage

    def total_usage(self) -> RequestUsage:
        return self._usage

    def count_tokens(self, messages: Sequence[LLMMessage], **kwargs: Any) -> int:
        return 0

    def remaining_tokens(self, messages: Sequence[LLMMessage], **kwargs: Any) -> int:
        return 100_000

    @property
    def capabilities(self) -> ModelCapabilities:  # type: ignore[override]
        return cast(ModelCapabilities, self.model_info)

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(vision=False, function_calling=True, json_output=False, family=ModelFamily.UNKNOWN,
                         structured_output=False)


@cl.on_chat_start  # type: ignore[arg-type]
async def start_chat() -> None:
    model_client = ZeroLatencyClient()
    assistant = AssistantAgent(name="assistant", model_client=model_client,
                               system_message="You are a helpful assistant.", model_client_stream=True)
    guide = AssistantAgent(name="guide", model_client=model_client,
                           system_message="You explain how to use the product.", model_client_stream=True)
    # The user's message and one reply from each member, like Chorus's panel team.
    team = RoundRobinGroupChat([assistant, guide], termination_condition=MaxMessageTermination(3))
    cl.user_session.set("team", team)


@cl.on_message  # type: ignore[arg-type]
async def chat(message: cl.Message) -> None:
    team = cast(RoundRobinGroupChat, cl.user_session.get("team"))
    streaming_response: cl.Message | None = None
    async for msg in team.run_stream(task=[TextMessage(content=message.content, source="user")],
                                     cancellation_token=CancellationToken()):
        if isinstance(msg, ModelClientStreamingChunkEvent):
            if streaming_response is None:
                streaming_response = cl.Message(content="", author=msg.source)
            await streaming_response.stream_token(msg.content)
        elif streaming_response is not None:
            await streaming_response.send()
            streaming_response = None
        elif isinstance(msg, TaskResult):
            await cl.Message(content=f"Task terminated: {msg.stop_reason}", author="system").send()
