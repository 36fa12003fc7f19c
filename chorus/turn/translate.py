"""AutoGen's stream items as Chorus's events (:mod:`chorus.events`); kinds Chorus does not show
are dropped."""

from __future__ import annotations

from typing import Any

from autogen_agentchat.messages import (
    BaseChatMessage,
    HandoffMessage,
    MemoryQueryEvent,
    ModelClientStreamingChunkEvent,
    SelectSpeakerEvent,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
)

from chorus.events import (
    HandoffEvent,
    MessageEvent,
    ProgressEvent,
    RetrievalEvent,
    SelectionEvent,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    TurnEvent,
)
from chorus.models import HANDOFF_PREFIX

USER = "user"
"""The source of the human's messages in a team."""


def translate(item: Any, streamed: set[str]) -> list[TurnEvent]:
    """AutoGen's stream items -> Chorus events (unknown kinds are ignored)."""
    if isinstance(item, ModelClientStreamingChunkEvent):
        if item.full_message_id:
            streamed.add(item.full_message_id)
        return [TokenEvent(agent=item.source, text=item.content, message_id=item.full_message_id)]
    if isinstance(item, SelectSpeakerEvent):
        return [SelectionEvent(agents=list(item.content))]
    if isinstance(item, ToolCallRequestEvent):
        return [  # a swarm's handoff is shown as the handoff, not as a tool call
            ToolCallEvent(agent=item.source, call_id=c.id, name=c.name, arguments=c.arguments) for c in item.content
            if not c.name.startswith(HANDOFF_PREFIX)
        ]
    if isinstance(item, ToolCallExecutionEvent):
        return [
            ToolResultEvent(agent=item.source, call_id=r.call_id, name=r.name, result=r.content,
                            is_error=bool(r.is_error))
            for r in item.content if not r.name.startswith(HANDOFF_PREFIX)
        ]
    if isinstance(item, MemoryQueryEvent):
        return [RetrievalEvent(agent=item.source, kind="memory", items=[str(m.content) for m in item.content])]
    if isinstance(item, HandoffMessage):
        return [HandoffEvent(agent=item.source, target=item.target, content=item.content)]
    if isinstance(item, BaseChatMessage) and item.source != USER:
        return [MessageEvent(agent=item.source, content=item.to_text(), message_id=item.id,
                             streamed=item.id in streamed)]
    return []


_STEP_EVENTS = (TokenEvent, ToolCallEvent, MessageEvent, HandoffEvent, RetrievalEvent)


class Progress:
    """Where a pipeline or graph is: a :class:`ProgressEvent` each time a member starts a step.

    A member's step runs from its first event to its message; members of a fan-out stream at the
    same time, so their interleaved events count once each."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.step = 0
        self.current: str | None = None
        self.running: set[str] = set()

    def see(self, event: TurnEvent) -> ProgressEvent | None:
        agent = getattr(event, "agent", None)
        if not isinstance(event, _STEP_EVENTS) or not isinstance(agent, str):
            return None
        started = None
        if agent not in self.running:
            self.running.add(agent)
            self.current = agent
            self.step += 1
            started = ProgressEvent(agent=agent, step=self.step, total=self.total)
        if isinstance(event, (MessageEvent, HandoffEvent)):
            self.running.discard(agent)  # its step is done: speaking again is another step
        return started
