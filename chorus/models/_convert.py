"""AutoGen messages and tools <-> the OpenAI chat-completions shapes litellm speaks."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from typing import Any

from autogen_core import FunctionCall, Image
from autogen_core.models import (
    AssistantMessage,
    FunctionExecutionResultMessage,
    LLMMessage,
    SystemMessage,
    UserMessage,
)
from autogen_core.tools import Tool, ToolSchema

_NAME_OK = re.compile(r"[^a-zA-Z0-9_-]")


def _name(source: str) -> str:
    return _NAME_OK.sub("_", source)[:64]


def _user_content(content: str | list[str | Image]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, Image):
            parts.append({"type": "image_url", "image_url": {"url": part.data_uri}})
        else:
            parts.append({"type": "text", "text": str(part)})
    return parts


def to_openai_messages(messages: Sequence[LLMMessage]) -> list[dict[str, Any]]:
    """Convert AutoGen's LLM messages to chat-completions messages.

    A message from another agent or from the user keeps its sender in
    ``name``, so the model (and the offline model) can tell speakers apart.
    """
    out: list[dict[str, Any]] = []
    for msg in messages:
        if isinstance(msg, SystemMessage):
            out.append({"role": "system", "content": msg.content})
        elif isinstance(msg, UserMessage):
            out.append({"role": "user", "content": _user_content(msg.content), "name": _name(msg.source)})
        elif isinstance(msg, AssistantMessage):
            if isinstance(msg.content, str):
                out.append({"role": "assistant", "content": msg.content})
            else:
                out.append(
                    {
                        "role": "assistant",
                        "content": msg.thought,
                        "tool_calls": [
                            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                            for c in msg.content
                        ],
                    }
                )
        elif isinstance(msg, FunctionExecutionResultMessage):
            for result in msg.content:
                out.append({"role": "tool", "tool_call_id": result.call_id, "name": result.name,
                            "content": result.content})
        else:  # pragma: no cover - AutoGen adds a new message type
            raise TypeError(f"unsupported message type {type(msg).__name__}")
    return out


def to_openai_tools(tools: Sequence[Tool | ToolSchema]) -> list[dict[str, Any]]:
    """Convert AutoGen tools (or their schemas) to chat-completions tool definitions."""
    result = []
    for tool in tools:
        schema: ToolSchema = tool.schema if isinstance(tool, Tool) else tool
        function: dict[str, Any] = {"name": schema["name"]}
        if "description" in schema:
            function["description"] = schema["description"]
        # A copy: tool schemas are made once and shared by every chat (ToolSpec.to_autogen), and
        # litellm rewrites them in place for some providers (Gemini's schema dialect).
        function["parameters"] = copy.deepcopy(schema.get("parameters")) or {"type": "object", "properties": {}}
        result.append({"type": "function", "function": function})
    return result


def tool_choice_arg(tool_choice: Tool | str) -> Any:
    if isinstance(tool_choice, Tool):
        return {"type": "function", "function": {"name": tool_choice.schema["name"]}}
    return tool_choice


def function_calls(tool_calls: dict[int, dict[str, str]]) -> list[FunctionCall]:
    """Turn accumulated streamed tool-call deltas (by index) into FunctionCalls."""
    calls = []
    for index in sorted(tool_calls):
        call = tool_calls[index]
        arguments = call.get("arguments") or "{}"
        calls.append(FunctionCall(id=call.get("id") or f"call_{index}", name=call.get("name", ""),
                                  arguments=arguments))
    return calls


def text_of(message: dict[str, Any]) -> str:
    """The plain text of a chat-completions message (content parts joined)."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content if isinstance(p, dict))


def dumps_args(args: dict[str, Any]) -> str:
    return json.dumps(args, ensure_ascii=False)
