"""Models that run in this process: the offline model, the scripted model, your own.

A local model sees exactly what a remote provider would (chat-completions
messages and tool definitions) and answers with text or tool calls; the model
client streams that answer like a provider's, so everything downstream of the
client is the same code for local and remote models.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from chorus.plugins._specs import AgentSpec, ToolSpec


@dataclass(frozen=True)
class ToolCall:
    """A tool call a local model wants made."""

    name: str
    arguments: Mapping[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:12]}")


@dataclass(frozen=True)
class ModelReply:
    """What a local model answers: text, tool calls, or both (text first)."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class ModelHints:
    """What Chorus tells a local model about where it is used.

    ``role`` is ``"selector"`` when the client picks the next speaker of a
    team, ``"reviewer"`` for a reviewer of an iterative team, else ``"agent"``;
    ``agent`` is the agent the client belongs to.
    ``agents`` and ``tools`` are the specs of the team's members and tools, so
    the offline model can route and call tools without understanding prose.
    """

    role: Literal["agent", "selector", "reviewer"] = "agent"
    agent: str | None = None
    team: str | None = None
    agents: Mapping[str, AgentSpec] = field(default_factory=dict)
    tools: Mapping[str, ToolSpec] = field(default_factory=dict)
    approval: str = "APPROVED"
    """A reviewer's approval phrase (``role="reviewer"``: an iterative team's ``approval``)."""
    elsewhere: tuple[OtherTeam, ...] = ()
    """The other teams the user can switch to, so a question for one of them is pointed there."""


@dataclass(frozen=True)
class OtherTeam:
    """A team of the catalog other than the one answering: its name, title and members."""

    name: str
    title: str
    agents: tuple[AgentSpec, ...]


@dataclass(frozen=True)
class ModelRequest:
    """One call to a local model."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    tool_choice: Any
    hints: ModelHints


class LocalModel(Protocol):
    """A model implemented in Python. ``token_delay`` paces the streamed chunks (seconds)."""

    token_delay: float

    async def reply(self, request: ModelRequest) -> ModelReply: ...


_LOCAL_MODELS: dict[str, Callable[[], LocalModel]] = {}


def register_local_model(name: str, factory: Callable[[], LocalModel]) -> None:
    """Make ``CHORUS_MODEL=name`` (or an agent's ``model: name``) use a local model."""
    _LOCAL_MODELS[name] = factory


def unregister_local_model(name: str) -> None:
    _LOCAL_MODELS.pop(name, None)


def local_model(name: str) -> LocalModel | None:
    """The local model registered under ``name``, or None for a litellm model string."""
    factory = _LOCAL_MODELS.get(name)
    return factory() if factory else None


def is_local_model(name: str) -> bool:
    return name in _LOCAL_MODELS


_TOKEN = re.compile(r"\s*\S+|\s+")


def split_tokens(text: str) -> list[str]:
    """Split text into word-sized chunks that join back to exactly ``text``."""
    return _TOKEN.findall(text)
