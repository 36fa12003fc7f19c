"""The scripted baseline's model: AutoGen's client interface over a fixed reply, with no HTTP.

``ZeroLatencyClient`` streams ``CHORUS_SCRIPTED_REPLY`` one word per chunk with no delay (like
AutoGen's ``ReplayChatCompletionClient``), so that what is measured is the serving path only,
as Chorus is measured on its in-process scripted model. ``bench/load.py --model scripted`` uses
it; the default run uses AutoGen's own ``OpenAIChatCompletionClient`` on an HTTP provider.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, cast

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
