"""What plugins register: agents and tools, as plain data."""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chorus.settings import OFFLINE_MODEL

if TYPE_CHECKING:
    from os import PathLike

    from autogen_agentchat.base import ChatAgent
    from autogen_core.memory import Memory
    from autogen_core.models import ChatCompletionClient
    from autogen_core.tools import BaseTool

    from chorus.plugins._memory_api import KnowledgeBase, UserMemory
    from chorus.settings import Settings


OfflineArgs = Callable[[str], Mapping[str, Any] | None]
"""Turns a user's message into tool arguments for the offline model, or None when it can't."""


@dataclass
class ToolContext:
    """Who is asking, in which conversation: handed to a tool that declares a parameter of this type.

    Chorus binds it when it builds a conversation's team, and hides that parameter from the
    model, so a model (or a prompt injected into one) can never choose another user's id or
    data. ``memory`` is this user's memory (None for anonymous visitors or with memory off);
    ``knowledge`` the knowledge base; ``state`` a dict the conversation's tools share (for
    example a customer verified earlier in the chat). ``state`` is part of the conversation: it is
    saved with the team's checkpoint, comes back when the conversation is resumed (after a
    restart, on any worker), and is rewound with the team when the user edits an earlier message
    or stops a turn. Keep JSON values in it (str, numbers, bools, None, lists, dicts with str
    keys); anything else lasts for the session only (the log says so).
    ``user_message`` is what the user typed in the current turn (attached files left out): a
    tool can check that a value the model passed really came from the user.
    """

    user_id: str
    thread_id: str
    team: str
    memory: UserMemory | None = None
    knowledge: KnowledgeBase | None = None
    state: dict[str, Any] = field(default_factory=dict)
    user_message: str = ""


def _context_parameter(func: Callable[..., Any]) -> str | None:
    """The name of ``func``'s ToolContext parameter, if it has one."""
    try:
        return _cached_context_parameter(func)
    except TypeError:  # an unhashable callable
        return _find_context_parameter(func)


@functools.lru_cache(maxsize=1024)
def _cached_context_parameter(func: Callable[..., Any]) -> str | None:
    return _find_context_parameter(func)


def _find_context_parameter(func: Callable[..., Any]) -> str | None:
    import typing

    try:
        hints = typing.get_type_hints(func)
    except Exception:
        hints = {}
    for name, hint in hints.items():
        if hint is ToolContext:
            return name
    return None


def bind_context(func: Callable[..., Any], context: ToolContext) -> Callable[..., Any]:
    """``func`` with its ToolContext parameter filled in and removed from its signature."""
    import functools
    import typing

    name = _context_parameter(func)
    if name is None:
        return func
    hints = typing.get_type_hints(func)
    signature = inspect.signature(func)
    params = [p.replace(annotation=hints.get(p.name, p.annotation))
              for p in signature.parameters.values() if p.name != name]

    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def bound_async(*args: Any, **kwargs: Any) -> Any:
            return await func(*args, **{name: context}, **kwargs)

        bound: Callable[..., Any] = bound_async
    else:
        @functools.wraps(func)
        def bound_sync(*args: Any, **kwargs: Any) -> Any:
            return func(*args, **{name: context}, **kwargs)

        bound = bound_sync
    bound.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=params, return_annotation=hints.get("return", signature.return_annotation))
    bound.__annotations__ = {k: v for k, v in hints.items() if k != name}
    del bound.__wrapped__  # type: ignore[attr-defined]  # inspect must see the new signature
    return bound


@dataclass(frozen=True)
class ToolSpec:
    """A tool agents can call: a typed Python function (sync or async) plus hints.

    ``func``'s signature and docstring become the JSON schema a model sees, so
    annotate every parameter. A parameter annotated :class:`ToolContext` is filled
    in by Chorus (who is asking, their memory) and never shown to the model.
    ``keywords`` and ``offline_args`` only matter to
    Chorus's offline model: words in a user's message that call for this tool,
    and a parser from that message to the tool's arguments. ``examples`` are
    prompts users can try; the offline model suggests them. ``requires_approval`` makes every
    call wait for the user's Approve or Deny on the page (README, "Approvals"): for a tool with
    consequences (an order, a payment, a message sent, a file written).
    """

    func: Callable[..., Any]
    name: str = ""
    description: str = ""
    keywords: tuple[str, ...] = ()
    offline_args: OfflineArgs | None = None
    examples: tuple[str, ...] = ()
    requires_approval: bool = False

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

    def to_autogen(self, context: ToolContext | None = None) -> BaseTool[Any, Any]:
        """The AutoGen tool that agents are given (bound to ``context`` when it asks for one).

        Every chat builds its team's tools, so the costly part (a pydantic model of the
        arguments, and its JSON schema, which AutoGen would otherwise rebuild on every model
        call) is made once per tool; each chat gets a copy bound to its own context.
        """
        needs_context = _context_parameter(self.func) is not None
        if needs_context and context is None:
            raise ValueError(f"tool {self.name!r} needs a ToolContext (it runs inside a conversation)")
        template: _SchemaOnceTool | None = self.__dict__.get("_autogen_tool")
        if template is None:
            func = bind_context(self.func, context) if context is not None else self.func
            template = _schema_once_tool()(func, description=self.description, name=self.name)
            template.schema  # noqa: B018  # computed now, shared by every copy
            if needs_context:
                template._func = self.func  # never run: it must not keep the first chat's context alive
            object.__setattr__(self, "_autogen_tool", template)
        if not needs_context:
            return template  # no state of its own: one object serves every chat
        tool = copy.copy(template)
        tool._func = bind_context(self.func, context)  # type: ignore[arg-type]
        return tool


if TYPE_CHECKING:
    from autogen_core.tools import FunctionTool as _SchemaOnceTool


@functools.cache
def _schema_once_tool() -> type[_SchemaOnceTool]:
    """AutoGen's FunctionTool, with its JSON schema computed once (made on first use, so that
    importing chorus does not import AutoGen)."""
    from autogen_core.tools import FunctionTool, ToolSchema

    class SchemaOnceTool(FunctionTool):
        _schema: ToolSchema | None = None

        @property
        def schema(self) -> ToolSchema:
            if self._schema is None:
                self._schema = super().schema
            return self._schema

        async def run(self, args: Any, cancellation_token: Any) -> Any:
            """A plugin's tool that raises SystemExit or KeyboardInterrupt fails as a tool, with an
            error the agent is told about; it does not stop the server."""
            from chorus.approvals import gated
            from chorus.journal import journaled
            from chorus.plugins._guards import current_guards

            async def run() -> Any:
                try:
                    return await FunctionTool.run(self, args, cancellation_token)
                except (SystemExit, KeyboardInterrupt, GeneratorExit) as exc:
                    raise RuntimeError(f"the tool {self.name!r} tried to stop the process "
                                       f"({type(exc).__name__}); it was stopped instead") from None

            async def call() -> Any:  # a tool that needs approval waits for it (chorus.approvals)
                return await gated(self.name, args, run)

            # In a background run, a call an earlier attempt finished is not made again: its
            # result comes from the run's journal (chorus.journal).
            result = await journaled(self.name, args, call, self.return_value_as_string)
            guards = current_guards.get()
            if guards is not None:  # the turn's input guards see it before the model does
                result = await guards.tool_result(self.name, self.return_value_as_string(result))
            return result

    return SchemaOnceTool


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
    memory: list[Memory] = field(default_factory=list)
    """AutoGen memories to give the agent (``memory=``): the user's recalled memories, when on."""
    tool_context: ToolContext | None = None
    """Who the conversation is with (see :class:`ToolContext`), for factories that need it."""
    handoffs: list[Any] = field(default_factory=list)
    """AutoGen handoffs (``handoffs=``) in a ``swarm`` team: the members this agent may hand over to.
    A factory passes them to its ``AssistantAgent``; an agent without them never hands over."""

    @property
    def offline(self) -> bool:
        """Whether this agent's model is Chorus's offline model (``CHORUS_MODEL=offline``): a factory
        may then build a deterministic agent of its own instead of one that needs a real model."""
        return getattr(self.model_client, "model", None) == OFFLINE_MODEL

    def default_agent(self) -> ChatAgent:
        """The agent Chorus builds when a spec has no factory: streams, calls tools (up to three
        rounds), reflects on their results, hands over in a swarm. A factory that only sometimes
        builds its own agent returns this otherwise."""
        from autogen_agentchat.agents import AssistantAgent

        return AssistantAgent(
            name=self.name,
            description=self.description,
            system_message=self.system_message,
            model_client=self.model_client,
            tools=list(self.tools) or None,
            model_client_stream=self.stream,
            reflect_on_tool_use=bool(self.tools),
            max_tool_iterations=3,
            memory=list(self.memory) or None,
            handoffs=list(self.handoffs) or None,
        )


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
    offline model route messages to this agent. ``team_only`` keeps the agent out of
    teams that take every agent (``members: ["*"]``): it joins only teams that name it,
    such as a team the same plugin registers. ``avatar`` is the picture beside the agent's
    messages: an emoji (``"🥁"``) or one or two letters, drawn on a colour of the agent's own,
    or the absolute path of a PNG, JPEG, GIF, WebP or SVG file (at most 512 KB) shipped in the
    plugin's package, such as ``Path(__file__).parent / "drummer.png"``; never a web address.
    Without one, the agent's initials are drawn for it (see :mod:`chorus.avatars`).
    ``temperature`` (0 to 2) is sent with the agent's requests to a provider; None leaves it to the
    provider. Admins can change prompt, model, temperature and tools per team on the admin page.
    """

    name: str
    description: str
    system_message: str = "You are a helpful assistant."
    tools: tuple[str, ...] = ()
    model: str | None = None
    factory: AgentFactory | None = None
    keywords: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    team_only: bool = False
    avatar: str | PathLike[str] | None = None
    temperature: float | None = None
    plugin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"agent name {self.name!r} must be a Python identifier")
        if self.temperature is not None and not 0 <= self.temperature <= 2:
            raise ValueError(f"agent {self.name!r}: temperature must be from 0 to 2, not {self.temperature}")
        if self.avatar is not None:
            from chorus.avatars import check_avatar

            object.__setattr__(self, "avatar", check_avatar(self.name, self.avatar))
        if not self.description.strip():
            raise ValueError(f"agent {self.name!r} needs a description (the selector routes on it)")
