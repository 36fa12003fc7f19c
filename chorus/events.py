"""The typed events a turn yields; every front end (page, widget, CLI, tests) reads these.

Each event is a frozen dataclass with a ``type`` tag; ``to_dict()`` gives the
JSON shape ``chorus ask --json`` prints, one event per line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

StopReason = Literal[
    "completed", "max_messages", "text_mention", "stopped", "cancelled", "error", "rejected", "budget"
]


@dataclass
class CallRecord:
    """One finished model call: what it cost and how long it took. The one description of a call:
    the turn's ``usage`` event (:meth:`UsageEvent.of`), the cost ledger's row and the trace's span
    are made from it."""

    label: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    latency_s: float
    first_chunk_s: float | None
    finish_reason: str
    started_ns: int = 0
    """Wall-clock start (``time.time_ns()``), for the turn's trace."""

    @property
    def latency_ms(self) -> float:
        return round(self.latency_s * 1000, 3)


@dataclass(frozen=True)
class TurnEvent:
    type: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}


@dataclass(frozen=True)
class SelectionEvent(TurnEvent):
    """The team chose who speaks next."""

    type: ClassVar[str] = "selection"
    agents: list[str]


@dataclass(frozen=True)
class TokenEvent(TurnEvent):
    """A streamed chunk of ``agent``'s message ``message_id``."""

    type: ClassVar[str] = "token"
    agent: str
    text: str
    message_id: str | None = None


@dataclass(frozen=True)
class MessageEvent(TurnEvent):
    """An agent's finished message (the tokens streamed before it join to ``content``)."""

    type: ClassVar[str] = "message"
    agent: str
    content: str
    message_id: str
    streamed: bool = False


@dataclass(frozen=True)
class ToolCallEvent(TurnEvent):
    """An agent asks for a tool."""

    type: ClassVar[str] = "tool_call"
    agent: str
    call_id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> Any:
        """The arguments as JSON values, or the raw text when they are not valid JSON."""
        import json

        try:
            return json.loads(self.arguments)
        except ValueError:
            return self.arguments


@dataclass(frozen=True)
class ToolResultEvent(TurnEvent):
    """A tool answered (or failed: ``is_error``)."""

    type: ClassVar[str] = "tool_result"
    agent: str
    call_id: str
    name: str
    result: str
    is_error: bool = False


@dataclass(frozen=True)
class RetrievalEvent(TurnEvent):
    """An agent was given what was retrieved for it before answering (``kind``: ``memory``)."""

    type: ClassVar[str] = "retrieval"
    agent: str
    kind: str
    items: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HandoffEvent(TurnEvent):
    """An agent handed the conversation to another."""

    type: ClassVar[str] = "handoff"
    agent: str
    target: str
    content: str = ""


@dataclass(frozen=True)
class ProgressEvent(TurnEvent):
    """A pipeline or graph moved on to its next step (``step`` counts from 1; ``total`` is a pass)."""

    type: ClassVar[str] = "progress"
    agent: str
    step: int
    total: int

    @property
    def text(self) -> str:
        """``step 3 of 5: coder`` (``step 6: writer`` once a loop has gone past one pass)."""
        return f"step {self.step}{f' of {self.total}' if self.step <= self.total else ''}: {self.agent}"


@dataclass(frozen=True)
class UsageEvent(TurnEvent):
    """One model call finished: tokens, cost (None when litellm has no price) and latency."""

    type: ClassVar[str] = "usage"
    agent: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    latency_ms: float

    @classmethod
    def of(cls, call: CallRecord) -> UsageEvent:
        return cls(agent=call.label, model=call.model, prompt_tokens=call.prompt_tokens,
                   completion_tokens=call.completion_tokens, cost=call.cost, latency_ms=call.latency_ms)


@dataclass(frozen=True)
class ApprovalEvent(TurnEvent):
    """An agent asks to run a tool that needs the user's approval; the turn waits for the answer
    (:mod:`chorus.approvals`). ``id`` names the stored request the answer goes to."""

    type: ClassVar[str] = "approval"
    id: str
    agent: str
    tool: str
    arguments: dict[str, Any]
    expires_in_s: float


@dataclass(frozen=True)
class ApprovalDoneEvent(TurnEvent):
    """What became of an approval request: ``approved``, ``denied``, ``expired``, ``cancelled``."""

    type: ClassVar[str] = "approval_done"
    id: str
    tool: str
    status: str
    reason: str = ""


@dataclass(frozen=True)
class NoticeEvent(TurnEvent):
    """Something the user should know that is not an agent's answer."""

    type: ClassVar[str] = "notice"
    text: str
    level: Literal["info", "warning"] = "info"
    code: str = ""
    """What the notice is about: ``offline_model``, ``plugin_problem`` (empty for others)."""

    def __post_init__(self) -> None:
        _scrubbed(self, "text")


@dataclass(frozen=True)
class ErrorEvent(TurnEvent):
    """The turn could not go on; ``message`` is written for the user."""

    type: ClassVar[str] = "error"
    code: str
    message: str

    def __post_init__(self) -> None:
        _scrubbed(self, "message")


@dataclass(frozen=True)
class DoneEvent(TurnEvent):
    """Always the last event of a turn."""

    type: ClassVar[str] = "done"
    stop_reason: StopReason
    detail: str = ""
    messages: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = 0.0
    duration_ms: float = 0.0
    agents: list[str] = field(default_factory=list)
    turn_id: str = ""
    """Identifies the turn in the cost ledger and its trace."""

    def __post_init__(self) -> None:
        _scrubbed(self, "detail")


def _scrubbed(event: TurnEvent, name: str) -> None:
    """What an event tells users and traces never holds a user's own provider key (a provider's error
    text may quote it): :func:`chorus.secrets.scrub` masks it, whoever made the event."""
    from chorus.secrets import scrub

    object.__setattr__(event, name, scrub(getattr(event, name)))
