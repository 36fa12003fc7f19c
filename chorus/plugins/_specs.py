"""What plugins register: agents and tools, as plain data."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autogen_agentchat.base import ChatAgent
    from autogen_core.models import ChatCompletionClient
    from autogen_core.tools import BaseTool

    from chorus.settings import Settings


OfflineArgs = Callable[[str], Mapping[str, Any] | None]
"""Turns a user's message into tool arguments for the offline model, or None when it can't."""


@dataclass(frozen=True)
class ToolSpec:
    """A tool agents can call: a typed Python function (sync or async) plus hints.

    ``func``'s signature and docstring become the JSON schema a model sees, so
    annotate every parameter. ``keywords`` and ``offline_args`` only matter to
    Chorus's offline model: words in a user's message that call for this tool,
    and a parser from that message to the tool's arguments. ``examples`` are
    prompts users can try; the offline model suggests them.
    """

    func: Callable[..., Any]
    name: str = ""
    description: str = ""
    keywords: tuple[str, ...] = ()
    offline_args: OfflineArgs | None = None
    examples: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not callable(self.func):
            raise TypeError(f"ToolSpec.func must be callable, got {self.func!r}")
        if not self.name:
            object.__setattr__(self, "name", self.func.__name__)
        if not self.description:
            doc = inspect.getdoc(self.func) or ""
            object.__setattr__(self, "description", doc.strip().split("\n\n")[0] or self.name)
        if not self.name.isidentifier():
            raise ValueError(f"tool name {self.name!r} must be a Python identifier")

    def to_autogen(self) -> BaseTool[Any, Any]:
        """The AutoGen tool that agents are given."""
        from autogen_core.tools import FunctionTool

        return FunctionTool(self.func, description=self.description, name=self.name)


@dataclass(frozen=True)
class AgentContext:
    """Everything an agent factory needs; a plugin never builds its own model client."""

    name: str
    description: str
    system_message: str
    model_client: ChatCompletionClient
    tools: list[BaseTool[Any, Any]]
    settings: Settings
    stream: bool = True
    """Whether the agent should stream tokens (``model_client_stream``); honour it in factories."""


AgentFactory = Callable[[AgentContext], "ChatAgent"]


@dataclass(frozen=True)
class AgentSpec:
    """An agent a plugin offers to teams.

    ``name`` must be a Python identifier (AutoGen's rule); it is what users see
    as the author of the agent's messages. ``description`` is what the team's
    selector reads when it picks who answers, so say what the agent is for.
    ``tools`` names tools registered by any plugin. ``model`` overrides
    ``CHORUS_MODEL`` for this agent. ``factory`` builds a custom AutoGen agent
    from an :class:`AgentContext`; without it Chorus builds a streaming
    ``AssistantAgent`` that reflects on its tool results. ``keywords`` help the
    offline model route messages to this agent.
    """

    name: str
    description: str
    system_message: str = "You are a helpful assistant."
    tools: tuple[str, ...] = ()
    model: str | None = None
    factory: AgentFactory | None = None
    keywords: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    plugin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"agent name {self.name!r} must be a Python identifier")
        if not self.description.strip():
            raise ValueError(f"agent {self.name!r} needs a description (the selector routes on it)")
