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
    RetrievalEvent,
    SelectionEvent,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
    TurnEvent,
)

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
        return [
            ToolCallEvent(agent=item.source, call_id=c.id, name=c.name, arguments=c.arguments) for c in item.content
        ]
    if isinstance(item, ToolCallExecutionEvent):
        return [
            ToolResultEvent(agent=item.source, call_id=r.call_id, name=r.name, result=r.content,
                            is_error=bool(r.is_error))
            for r in item.content
        ]
    if isinstance(item, MemoryQueryEvent):
        return [RetrievalEvent(agent=item.source, kind="memory", items=[str(m.content) for m in item.content])]
    if isinstance(item, HandoffMessage):
        return [HandoffEvent(agent=item.source, target=item.target, content=item.content)]
    if isinstance(item, BaseChatMessage) and item.source != USER:
        return [MessageEvent(agent=item.source, content=item.to_text(), message_id=item.id,
                             streamed=item.id in streamed)]
    return []
